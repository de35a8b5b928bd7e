//! The client never trusts a peer it should not (issue 10, items 6 and 12).
//!
//! - A changed host key let through by StrictHostKeyChecking=no turns off
//!   agent and port forwarding (-A, -L, -R, -D) with OpenSSH's messages,
//!   over QUIC and TCP, against sshqd and OpenSSH's sshd, and through
//!   ProxyJump; ExitOnForwardFailure then ends the connection as ssh does.
//! - Transport=auto falls back to TCP only when QUIC does not get through
//!   (a closed or silent UDP port), never after a QUIC server failed
//!   authentication: each hostile QUIC server here shares its port number
//!   with a real sshqd on TCP, so a fallback would show as a session.

mod common;

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::agent::Agent;
use common::setup::{Dir, Setup};
use common::{run_with_input, show, text, wait_until, Background, Lab, Listeners, SSHQ, SSHQD};
use sshq_test_kit::quinn;
use sshq_test_kit::rustls;

const AGENT_NOTICE: &str = "Agent forwarding is disabled to avoid man-in-the-middle attacks.";
const PORT_NOTICE: &str = "Port forwarding is disabled to avoid man-in-the-middle attacks.";
const CHANGED_WARNING: &str = "WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!";

/// Free loopback TCP ports for the -L, -R and -D listeners of one run.
struct ForwardPorts {
    local: u16,
    remote: u16,
    dynamic: u16,
}

impl ForwardPorts {
    fn new() -> ForwardPorts {
        ForwardPorts {
            local: common::free_port(),
            remote: common::free_port(),
            dynamic: common::free_port(),
        }
    }

    /// `-A -L ... -R ... -D ...`, each forward aimed at `target` (any open
    /// TCP port: only whether the listeners exist is looked at).
    fn flags(&self, target: u16) -> Vec<String> {
        vec![
            "-A".into(),
            "-L".into(),
            format!("127.0.0.1:{}:127.0.0.1:{target}", self.local),
            "-R".into(),
            format!("127.0.0.1:{}:127.0.0.1:{target}", self.remote),
            "-D".into(),
            format!("127.0.0.1:{}", self.dynamic),
        ]
    }

    /// What the remote side runs: the agent socket it was given, and
    /// whether each forward's listener exists (client and server are both
    /// on this machine, so the remote shell can try the client's -L and -D).
    fn probe(&self) -> String {
        let open = |name: &str, port: u16| {
            format!(
                "if (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; \
                 then echo {name}=open; else echo {name}=closed; fi"
            )
        };
        format!(
            "echo AUTH=${{SSH_AUTH_SOCK:-none}}; {}; {}; {}",
            open("L", self.local),
            open("R", self.remote),
            open("D", self.dynamic)
        )
    }
}

/// Runs `program` against the setup's server with the lab's options
/// (StrictHostKeyChecking=`strict`), `extra`, the forwards of `ports` and
/// their probe, with the agent's socket.
fn run_forwarding(
    setup: &Setup,
    program: &str,
    strict: &str,
    extra: &[String],
    ports: &ForwardPorts,
    agent: &Agent,
) -> Output {
    let mut flags: Vec<String> = extra.to_vec();
    flags.extend(ports.flags(setup.port()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let probe = ports.probe();
    let args = setup.args("user", strict, &flags, &[probe.as_str()]);
    run_with_input(
        Command::new(program)
            .args(&args)
            .env("SSH_AUTH_SOCK", &agent.socket),
        b"",
    )
}

/// Everything forwarded: the positive control.
fn assert_all_forwarded(out: &Output) {
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", show(out));
    assert!(
        stdout.contains("AUTH=/") && stdout.contains("L=open"),
        "forwarding did not work with the right key: {}",
        show(out)
    );
    assert!(
        stdout.contains("R=open") && stdout.contains("D=open"),
        "{}",
        show(out)
    );
    let stderr = text(&out.stderr);
    assert!(!stderr.contains(AGENT_NOTICE), "{}", show(out));
}

/// Nothing forwarded, the session itself ran, OpenSSH's lines printed.
fn assert_nothing_forwarded(out: &Output) {
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{}", show(out));
    assert!(stderr.contains(CHANGED_WARNING), "{}", show(out));
    assert!(
        stderr.contains(AGENT_NOTICE) && stderr.contains(PORT_NOTICE),
        "OpenSSH's notices missing: {}",
        show(out)
    );
    for line in ["AUTH=none", "L=closed", "R=closed", "D=closed"] {
        assert!(stdout.contains(line), "{line} expected: {}", show(out));
    }
}

/// sshqd serving QUIC and TCP; sshq chooses the transport in each run.
fn both_transports() -> Setup {
    Setup::sshqd_in(Lab::new(), "Transports quic,tcp", Listeners::Both)
}

fn transport(name: &str) -> Vec<String> {
    vec!["-o".into(), format!("Transport={name}")]
}

#[test]
fn a_changed_key_let_through_turns_off_agent_and_port_forwarding_on_both_transports() {
    let setup = both_transports();
    let agent = Agent::start(&setup.lab);
    // auto as well: the acceptance check's default (QUIC wins there).
    for name in ["quic", "tcp", "auto"] {
        setup.lab.write_known_hosts(setup.port(), "host_ed25519");
        let ports = ForwardPorts::new();
        let out = run_forwarding(&setup, SSHQ, "no", &transport(name), &ports, &agent);
        assert_all_forwarded(&out);

        setup
            .lab
            .write_known_hosts(setup.port(), "other_host_ed25519");
        let ports = ForwardPorts::new();
        let out = run_forwarding(&setup, SSHQ, "no", &transport(name), &ports, &agent);
        assert_nothing_forwarded(&out);
        assert!(
            text(&out.stderr).matches(AGENT_NOTICE).count() == 1,
            "one notice over {name}: {}",
            show(&out)
        );
    }
}

#[test]
fn exit_on_forward_failure_ends_the_connection_like_ssh() {
    let setup = both_transports();
    let agent = Agent::start(&setup.lab);
    setup
        .lab
        .write_known_hosts(setup.port(), "other_host_ed25519");
    for name in ["quic", "tcp"] {
        let mut extra = transport(name);
        extra.extend(["-o".to_string(), "ExitOnForwardFailure=yes".to_string()]);
        let out = run_forwarding(&setup, SSHQ, "no", &extra, &ForwardPorts::new(), &agent);
        assert_eq!(out.status.code(), Some(255), "{}", show(&out));
        assert!(
            text(&out.stderr).contains("Error: forwarding disabled due to host key check failure"),
            "{}",
            show(&out)
        );
        assert!(!text(&out.stdout).contains("AUTH="), "{}", show(&out));
    }
    // Without forwarding, nothing is turned off and the session runs.
    let args = setup.args(
        "user",
        "no",
        &["-o", "ExitOnForwardFailure=yes"],
        &["echo", "ran"],
    );
    let out = setup.lab.run(SSHQ, &args, b"");
    assert_eq!(text(&out.stdout).trim(), "ran", "{}", show(&out));
    assert!(!text(&out.stderr).contains(AGENT_NOTICE), "{}", show(&out));
}

#[test]
fn against_openssh_sshd_the_same_lines_as_openssh_ssh() {
    let sshd = Setup::new(Dir::sshq_to_sshd);
    let agent = Agent::start(&sshd.lab);
    sshd.lab
        .write_known_hosts(sshd.port(), "other_host_ed25519");
    let out = run_forwarding(
        &sshd,
        SSHQ,
        "no",
        &transport("tcp"),
        &ForwardPorts::new(),
        &agent,
    );
    assert_nothing_forwarded(&out);
    // OpenSSH's own ssh, same setup: the lines sshq prints are its lines.
    let ssh = run_forwarding(&sshd, "ssh", "no", &[], &ForwardPorts::new(), &agent);
    assert_nothing_forwarded(&ssh);
    let notices = |out: &Output| -> Vec<String> {
        text(&out.stderr)
            .lines()
            .filter(|line| line.contains("forwarding is disabled"))
            .map(|line| line.trim_end().to_string())
            .collect()
    };
    assert_eq!(
        notices(&out),
        notices(&ssh),
        "sshq: {}\nssh: {}",
        show(&out),
        show(&ssh)
    );
}

/// Two sshqd (QUIC and TCP) and a config naming the first `hop`; `Host *`
/// sets the lab's key, known_hosts and StrictHostKeyChecking=no, which (as
/// ssh_config) applies to the hop as well as the destination.
struct JumpLab {
    hop: common::Server,
    /// The destination's sshqd, and the lab.
    destination: Setup,
    config: PathBuf,
}

impl JumpLab {
    fn new() -> JumpLab {
        let destination = both_transports();
        let lab = &destination.lab;
        let hop = lab.start_sshqd_on("Transports quic,tcp", Listeners::Both);
        let config = lab.path("jump_config");
        let settings = format!(
            "Host hop\n  HostName 127.0.0.1\n  Port {}\n  User {user}\n\
             Host *\n  IdentityFile {key}\n  IdentitiesOnly yes\n  BatchMode yes\n  \
             UserKnownHostsFile {kh}\n  StrictHostKeyChecking no\n",
            hop.port,
            user = lab.user,
            key = lab.path("user").display(),
            kh = lab.path("known_hosts").display(),
        );
        std::fs::write(&config, settings).expect("config");
        JumpLab {
            hop,
            destination,
            config,
        }
    }

    /// known_hosts with `hop_key` for the hop and `destination_key` for the destination.
    fn known_hosts(&self, hop_key: &str, destination_key: &str) {
        let line = |port: u16, key: &str| {
            format!(
                "[127.0.0.1]:{port} ssh-ed25519 {}\n",
                self.destination.lab.public_key_blob(key)
            )
        };
        let text = line(self.hop.port, hop_key) + &line(self.destination.port(), destination_key);
        std::fs::write(self.destination.lab.path("known_hosts"), text).expect("known_hosts");
    }

    fn run(&self, transport_name: &str, ports: &ForwardPorts, agent: &Agent) -> Output {
        let mut args: Vec<String> = vec![
            "-F".into(),
            self.config.display().to_string(),
            "-J".into(),
            "hop".into(),
            "-o".into(),
            format!("Transport={transport_name}"),
            "-p".into(),
            self.destination.port().to_string(),
        ];
        args.extend(ports.flags(self.destination.port()));
        args.push(self.destination.lab.target());
        args.push(ports.probe());
        run_with_input(
            Command::new(SSHQ)
                .args(&args)
                .env("SSH_AUTH_SOCK", &agent.socket),
            b"",
        )
    }
}

#[test]
fn through_a_jump_host_the_destination_key_decides_the_destination_forwarding() {
    let jumps = JumpLab::new();
    let agent = Agent::start(&jumps.destination.lab);
    for name in ["quic", "tcp"] {
        // The destination's key changed: its forwarding is off.
        jumps.known_hosts("host_ed25519", "other_host_ed25519");
        let out = jumps.run(name, &ForwardPorts::new(), &agent);
        assert_nothing_forwarded(&out);

        // Only the hop's key changed: the hop carries no forwarding of its
        // own (as OpenSSH's `ssh -W` hop), and the destination's session
        // runs end to end through it with its own, matching key.
        jumps.known_hosts("other_host_ed25519", "host_ed25519");
        let out = jumps.run(name, &ForwardPorts::new(), &agent);
        assert!(
            text(&out.stderr).contains(CHANGED_WARNING),
            "{}",
            show(&out)
        );
        assert_all_forwarded(&out);
    }
}

/// sshqd serving TCP only, with the lab's host key (known_hosts has it):
/// what a fallback from a hostile QUIC server on the same port would reach.
fn tcp_only_sshqd() -> Setup {
    let setup = Setup::sshqd_in(Lab::new(), "Transports tcp", Listeners::Tcp);
    setup.lab.write_known_hosts(setup.port(), "host_ed25519");
    setup
}

/// sshq -v with Transport=auto against the setup's port.
fn auto(tcp: &Setup, extra: &[&str]) -> (Output, Duration) {
    let mut flags = vec!["-v", "-o", "Transport=auto"];
    flags.extend_from_slice(extra);
    let args = tcp.args("user", "accept-new", &flags, &["echo", "session-ran"]);
    let started = Instant::now();
    let out = tcp.lab.run(SSHQ, &args, b"");
    (out, started.elapsed())
}

fn assert_no_session(out: &Output, tcp: &Setup) {
    assert_eq!(out.status.code(), Some(255), "{}", show(out));
    assert!(!text(&out.stdout).contains("session-ran"), "{}", show(out));
    let log = tcp.server.log_text();
    assert!(
        !log.contains("Accepted publickey"),
        "a TCP session happened: {log}"
    );
}

#[test]
fn auto_stops_at_a_quic_server_showing_a_changed_key() {
    let tcp = tcp_only_sshqd();
    // On the same port number, over UDP: sshqd with another host key.
    let config = tcp.lab.write_sshqd_config(
        tcp.port(),
        &[tcp.lab.path("other_host_ed25519")],
        "Transports quic",
    );
    let mut impostor = Background::spawn(
        SSHQD,
        &[
            "-D".into(),
            "-e".into(),
            "-f".into(),
            config.display().to_string(),
        ],
        tcp.lab.path("impostor.log"),
    );
    let listening = format!("port {} (QUIC)", tcp.port());
    assert!(
        wait_until(Duration::from_secs(10), || impostor
            .log_text()
            .contains(&listening)),
        "impostor did not start: {}",
        impostor.log_text()
    );
    assert!(impostor.alive());
    let (out, _) = auto(&tcp, &[]);
    assert_no_session(&out, &tcp);
    let stderr = text(&out.stderr);
    assert!(stderr.contains(CHANGED_WARNING), "{}", show(&out));
    assert!(
        stderr.contains("Host key verification failed."),
        "{}",
        show(&out)
    );
}

/// A QUIC server on UDP `port` speaking sshq/1 that shows `shown`'s public
/// key as its identity but signs its handshakes with `signer`: what a man
/// in the middle replaying the real server's key looks like.
fn impostor_quic_server(
    runtime: &tokio::runtime::Runtime,
    lab: &Lab,
    port: u16,
    shown: &str,
    signer: &str,
) -> quinn::Endpoint {
    use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
    let (shown_public, _) = lab.ed25519_parts(shown);
    let (_, signer_pkcs8) = lab.ed25519_parts(signer);
    let spki =
        sshq_quic::tls::ed25519_spki(&sshq_core::ssh_key::public::Ed25519PublicKey(shown_public));
    let signing_key =
        rustls::crypto::ring::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(signer_pkcs8))
            .expect("signing key");
    let certified = rustls::sign::CertifiedKey::new(vec![CertificateDer::from(spki)], signing_key);
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("tls13")
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(
        rustls::server::AlwaysResolvesServerRawPublicKeys::new(Arc::new(certified)),
    ));
    tls.alpn_protocols = vec![sshq_quic::tls::ALPN.to_vec()];
    let config = sshq_quic::tls::server_config(tls).expect("quic config");
    let _entered = runtime.enter();
    let endpoint =
        quinn::Endpoint::server(config, ([127, 0, 0, 1], port).into()).expect("udp port");
    let accepting = endpoint.clone();
    runtime.spawn(async move {
        while let Some(incoming) = accepting.accept().await {
            tokio::spawn(async move { drop(incoming.await) });
        }
    });
    endpoint
}

#[test]
fn auto_stops_at_a_quic_server_that_cannot_sign_for_its_key() {
    let tcp = tcp_only_sshqd();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _impostor = impostor_quic_server(
        &runtime,
        &tcp.lab,
        tcp.port(),
        "host_ed25519",
        "other_host_ed25519",
    );
    let (out, _) = auto(&tcp, &[]);
    assert_no_session(&out, &tcp);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("failed authentication") && stderr.contains("CertificateVerify"),
        "the reason must be given: {}",
        show(&out)
    );
    assert!(stderr.contains("not falling back to TCP"), "{}", show(&out));
}

#[test]
fn auto_uses_tcp_when_the_udp_port_is_closed_and_says_why() {
    let tcp = tcp_only_sshqd();
    let (out, _) = auto(&tcp, &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(text(&out.stdout).trim(), "session-ran");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no QUIC handshake within 300 ms") && stderr.contains("using TCP"),
        "-v must say why TCP: {}",
        show(&out)
    );
}

#[test]
fn auto_uses_tcp_after_quic_fallback_timeout_when_udp_is_a_black_hole() {
    let tcp = tcp_only_sshqd();
    // Bound and never read: every QUIC packet disappears.
    let _black_hole = UdpSocket::bind(("127.0.0.1", tcp.port())).expect("udp port");
    let (out, elapsed) = auto(&tcp, &["-o", "QuicFallbackTimeout=1500ms"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(text(&out.stdout).trim(), "session-ran");
    assert!(
        elapsed >= Duration::from_millis(1500),
        "TCP started early: {elapsed:?}"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no QUIC handshake within 1500 ms") && stderr.contains("TCP won the race"),
        "-v must say why TCP: {}",
        show(&out)
    );
}
