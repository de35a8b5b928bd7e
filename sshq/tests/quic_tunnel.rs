//! OpenSSH over QUIC: the real `ssh` with `ProxyCommand='sshq proxy %h %p'`,
//! through sshqd's `QuicRelay`, to the real OpenSSH `sshd` (and to sshqd's
//! own TCP listener), all on loopback. Also the tunnel's rules seen from
//! outside: host-key checks on the QUIC hop, a relay whose SSH server is
//! down, an sshqd that does not relay, the cap on concurrent relays, one
//! stream per tunnel. Each test has its own lab.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    random_bytes, run_with_input, sha256, show, text, wait_until, Background, Lab, Listeners,
    Server, TcpService, SSHQ, SSHQD,
};

/// sshqd's cap on concurrent relays (`sshq::server::relay::MAX_RELAYS`).
const MAX_RELAYS: usize = sshq::server::relay::MAX_RELAYS;

/// A lab with a relaying sshqd in front of an SSH server.
struct Tunnel {
    lab: Lab,
    /// The relaying sshqd's port (UDP).
    port: u16,
    /// Its log.
    log: PathBuf,
    /// Keeps it running (a `Server` or a `Background`; killed on drop).
    _sshqd: Box<dyn std::any::Any>,
}

impl Tunnel {
    /// sshqd (QUIC only) relaying to `target_port`.
    fn to(lab: Lab, target_port: u16) -> Tunnel {
        let relay = lab.start_sshqd_on(
            &format!("Transports quic\nQuicRelay 127.0.0.1:{target_port}"),
            Listeners::Quic,
        );
        Tunnel {
            port: relay.port,
            log: relay.log.clone(),
            _sshqd: Box::new(relay),
            lab,
        }
    }

    /// `sshq proxy` as ProxyCommand, with its own known_hosts for the QUIC hop.
    fn proxy_command(&self, strict: &str) -> String {
        format!(
            "{SSHQ} proxy -o UserKnownHostsFile={} -o StrictHostKeyChecking={strict} %h %p",
            self.lab.path("known_hosts.quic").display()
        )
    }

    /// OpenSSH's `ssh` through the tunnel, running `command`.
    fn ssh(&self, extra: &[&str], command: &[&str], input: &[u8]) -> Output {
        self.ssh_strict("accept-new", extra, command, input)
    }

    fn ssh_strict(&self, strict: &str, extra: &[&str], command: &[&str], input: &[u8]) -> Output {
        let proxy = format!("ProxyCommand={}", self.proxy_command(strict));
        let mut all = vec!["-o", proxy.as_str()];
        all.extend_from_slice(extra);
        self.lab.ssh(self.port, &all, command, input)
    }

    /// `sshq proxy` run directly, with `input` as ssh's byte stream.
    fn proxy(&self, input: &[u8]) -> Output {
        let mut cmd = Command::new(SSHQ);
        cmd.args(["proxy", "-o"])
            .arg(format!(
                "UserKnownHostsFile={}",
                self.lab.path("known_hosts.quic").display()
            ))
            .args(["-o", "StrictHostKeyChecking=accept-new", "127.0.0.1"])
            .arg(self.port.to_string());
        run_with_input(&mut cmd, input)
    }

    /// An `sshq proxy` left running with its stdin open, having sent
    /// `hello` (so the relay has seen its stream).
    fn holding_proxy(&self, n: usize) -> Child {
        let mut child = Command::new(SSHQ)
            .args(["proxy", "-o"])
            .arg(format!(
                "UserKnownHostsFile={}",
                self.lab.path("known_hosts.quic").display()
            ))
            .args(["-o", "StrictHostKeyChecking=accept-new", "127.0.0.1"])
            .arg(self.port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.lab.path(&format!("holder.{n}.log"))).expect("log"))
            .spawn()
            .expect("start sshq proxy");
        child
            .stdin
            .as_mut()
            .expect("stdin")
            .write_all(b"hello\n")
            .expect("write to sshq proxy");
        child
    }

    fn relay_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// OpenSSH sshd behind a relay.
fn openssh_tunnel() -> (Tunnel, Server) {
    let lab = Lab::new();
    let sshd = lab.start_sshd();
    let tunnel = Tunnel::to(lab, sshd.port);
    (tunnel, sshd)
}

#[test]
fn openssh_through_the_tunnel_keeps_exit_status_stderr_and_16_mib_each_way() {
    let (t, _sshd) = openssh_tunnel();

    let out = t.ssh(&[], &["echo out; echo err >&2; exit 42"], b"");
    assert_eq!(out.status.code(), Some(42), "{}", show(&out));
    assert_eq!(text(&out.stdout), "out\n", "{}", show(&out));
    assert!(text(&out.stderr).contains("err"), "{}", show(&out));
    // ssh hangs up its ProxyCommand (SIGHUP) as it exits: the proxy closes
    // the QUIC connection then, so the relay ends at once, not after the
    // idle timeout, and nobody is told of a failure.
    assert!(!text(&out.stderr).contains("sshq proxy"), "{}", show(&out));
    assert!(
        wait_until(Duration::from_secs(3), || t
            .relay_log()
            .contains("closed after")),
        "the relay did not end promptly: {}",
        t.relay_log()
    );

    // Upload: what sshd's side received is what we sent.
    let blob = random_bytes(16 << 20);
    let out = t.ssh(&[], &["sha256sum"], &blob);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(
        text(&out.stdout).split_whitespace().next(),
        Some(sha256(&blob).as_str())
    );

    // Download: the file sshd's side reads arrives intact.
    let file = t.lab.path("download.bin");
    std::fs::write(&file, &blob).expect("write the blob");
    let out = t.ssh(&[], &["cat", &file.display().to_string()], b"");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(out.stdout.len(), blob.len());
    assert!(out.stdout == blob, "downloaded bytes differ");

    // The relay logged the tunnels like sshd logs connections.
    let log = t.relay_log();
    assert!(log.contains("Relay from 127.0.0.1 port"), "{log}");
    // ... and the local end of the TCP connection the SSH server sees
    // (draft §12.9), so that its log lines can be traced to the client.
    assert!(log.contains("started (from 127.0.0.1 port "), "{log}");
    assert!(log.contains("bytes from the client (ended)"), "{log}");
    // The QUIC hop's key went to its own known_hosts, as a usual entry.
    let known = std::fs::read_to_string(t.lab.path("known_hosts.quic")).expect("known_hosts");
    assert!(
        known.contains(&format!("[127.0.0.1]:{} ssh-ed25519", t.port)),
        "{known}"
    );
}

#[test]
fn local_forwarding_works_through_the_tunnel() {
    let (t, _sshd) = openssh_tunnel();
    let echo = TcpService::start(|mut stream| {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            if stream.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let local = common::free_port();
    let mut args = t.lab.client_args(
        "user",
        "accept-new",
        t.port,
        &[
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-L",
            &format!("127.0.0.1:{local}:127.0.0.1:{}", echo.port),
        ],
        &[],
    );
    args.insert(0, format!("ProxyCommand={}", t.proxy_command("accept-new")));
    args.insert(0, "-o".into());
    let mut ssh = Background::spawn("ssh", &args, t.lab.path("ssh-L.log"));
    let mut connected = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            connected = TcpStream::connect(("127.0.0.1", local)).ok();
            connected.is_some() || !ssh.alive()
        }),
        "the forward never listened: {}",
        ssh.log_text()
    );
    let mut stream = connected.unwrap_or_else(|| panic!("ssh -L exited: {}", ssh.log_text()));
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream
        .write_all(b"through ssh, QUIC and sshd\n")
        .expect("write");
    stream.shutdown(Shutdown::Write).expect("shutdown");
    let mut back = Vec::new();
    stream.read_to_end(&mut back).expect("read the echo");
    assert_eq!(text(&back), "through ssh, QUIC and sshd\n");
}

#[test]
fn unknown_relay_key_with_strict_checking_is_refused() {
    let (t, _sshd) = openssh_tunnel();
    let out = t.ssh_strict("yes", &[], &["echo ran"], b"");
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    assert!(!text(&out.stdout).contains("ran"), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "No ED25519 host key is known for [127.0.0.1]:{} and you have requested strict checking.",
            t.port
        )),
        "{err}"
    );
    assert!(err.contains("Host key verification failed."), "{err}");
    // Nothing reached the relay's SSH server.
    assert!(!t.relay_log().contains("started"), "{}", t.relay_log());
}

#[test]
fn changed_relay_key_is_refused() {
    let (t, _sshd) = openssh_tunnel();
    let other = t.lab.public_key_blob("other_host_ed25519");
    std::fs::write(
        t.lab.path("known_hosts.quic"),
        format!("[127.0.0.1]:{} ssh-ed25519 {other}\n", t.port),
    )
    .expect("known_hosts");
    let out = t.ssh(&[], &["echo ran"], b"");
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    assert!(!text(&out.stdout).contains("ran"), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains("WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!"),
        "{err}"
    );
    assert!(err.contains("Host key verification failed."), "{err}");
}

#[test]
fn relay_whose_ssh_server_is_down_says_so() {
    let lab = Lab::new();
    // A port nothing listens on: bound, then released.
    let dead = common::free_port();
    let t = Tunnel::to(lab, dead);
    let out = t.proxy(b"SSH-2.0-test\r\n");
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    assert!(out.stdout.is_empty(), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "sshq proxy: relay at 127.0.0.1:{} could not reach its SSH server: 127.0.0.1:{dead}: Connection refused",
            t.port
        )),
        "{err}"
    );
    let log = t.relay_log();
    assert!(
        log.contains(&format!("cannot reach SSH server 127.0.0.1:{dead}")),
        "{log}"
    );

    // Through ssh, the same message reaches the user.
    let out = t.ssh(&[], &["true"], b"");
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("could not reach its SSH server"),
        "{}",
        show(&out)
    );
}

#[test]
fn a_reset_from_the_ssh_server_is_reported_as_a_broken_stream() {
    let lab = Lab::new();
    // Closing a socket with unread data makes the kernel send a reset.
    let resetting = TcpService::start(|stream| {
        let mut probe = [0u8; 1];
        let _ = stream.peek(&mut probe);
        std::thread::sleep(Duration::from_millis(200));
        drop(stream);
    });
    let t = Tunnel::to(lab, resetting.port);
    let out = t.proxy(b"SSH-2.0-test\r\n");
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "sshq proxy: relay at 127.0.0.1:{}: its connection to the SSH server broke",
            t.port
        )),
        "{err}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || t
            .relay_log()
            .contains("closed after")),
        "{}",
        t.relay_log()
    );
    assert!(t.relay_log().contains("reset"), "{}", t.relay_log());
}

#[test]
fn sshqd_without_quic_relay_refuses_tunnels() {
    let lab = Lab::new();
    let sshqd = lab.start_sshqd_on("Transports quic", Listeners::Quic);
    let mut cmd = Command::new(SSHQ);
    cmd.args(["proxy", "-o"])
        .arg(format!(
            "UserKnownHostsFile={}",
            lab.path("known_hosts.quic").display()
        ))
        .args(["-o", "StrictHostKeyChecking=accept-new", "127.0.0.1"])
        .arg(sshqd.port.to_string());
    let out = run_with_input(&mut cmd, b"SSH-2.0-test\r\n");
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "sshq proxy: 127.0.0.1 port {} does not relay SSH connections: its sshqd has no QuicRelay",
            sshqd.port
        )),
        "{err}"
    );
}

#[test]
fn sshq_sessions_still_work_on_a_relaying_port() {
    let (t, _sshd) = openssh_tunnel();
    let out = t.lab.sshq(
        t.port,
        &["-o", "Transport=quic"],
        &["echo over sshq/1; exit 7"],
        b"",
    );
    assert_eq!(out.status.code(), Some(7), "{}", show(&out));
    assert_eq!(text(&out.stdout), "over sshq/1\n");
    // And the tunnel on the same port at the same time.
    let out = t.ssh(&[], &["echo over the tunnel"], b"");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(text(&out.stdout), "over the tunnel\n");
}

#[test]
fn sshqd_relays_to_its_own_tcp_listener() {
    // "Whole SSH in one QUIC stream" with sshqd as the SSH server: QUIC in,
    // relayed to the same sshqd's SSH-over-TCP listener.
    let lab = Lab::new();
    let port = common::free_port();
    let config = lab.write_sshqd_config(
        port,
        &[lab.path("host_ed25519")],
        &format!("Transports quic,tcp\nQuicRelay 127.0.0.1:{port}"),
    );
    let log = lab.path("sshqd-self.log");
    let sshqd = Background::spawn(
        SSHQD,
        &[
            "-D".to_string(),
            "-e".to_string(),
            "-f".to_string(),
            config.display().to_string(),
        ],
        log,
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            let log = sshqd.log_text();
            log.contains(&format!("port {port} (QUIC)"))
                && TcpStream::connect(("127.0.0.1", port)).is_ok()
        }),
        "sshqd did not start: {}",
        sshqd.log_text()
    );
    let t = Tunnel {
        port,
        log: sshqd.log.clone(),
        _sshqd: Box::new(sshqd),
        lab,
    };
    let out = t.ssh(&[], &["echo via sshqd over tcp; exit 3"], b"");
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert_eq!(text(&out.stdout), "via sshqd over tcp\n");
    let log = t.relay_log();
    assert!(log.contains("Relay from 127.0.0.1"), "{log}");
    assert!(log.contains("Accepted publickey"), "{log}");
}

/// Echoes what it reads until EOF, then closes: a byte stream for the
/// relay to carry when the test needs no SSH server.
fn echo(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buf) {
        if stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

#[test]
fn concurrent_relays_are_capped() {
    let lab = Lab::new();
    let service = TcpService::start(echo);
    let t = Tunnel::to(lab, service.port);
    let mut holders: Vec<Child> = (0..MAX_RELAYS).map(|n| t.holding_proxy(n)).collect();
    let started = |t: &Tunnel| t.relay_log().matches(" started").count();
    assert!(
        wait_until(Duration::from_secs(60), || started(&t) >= MAX_RELAYS),
        "only {} of {MAX_RELAYS} relays started; relay log:\n{}",
        started(&t),
        t.relay_log()
    );

    let out = t.proxy(b"one too many\n");
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "sshq proxy: relay at 127.0.0.1:{} is busy",
            t.port
        )),
        "{err}"
    );
    assert!(t.relay_log().contains("refused: already relaying"));

    // One holder ends its byte stream: its relay ends, and a slot is free.
    let mut first = holders.remove(0);
    drop(first.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Ok(Some(status)) = first.try_wait() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "the holder did not end cleanly"
    );
    let out = t.proxy(b"now there is room\n");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(text(&out.stdout), "now there is room\n");

    for mut holder in holders {
        let _ = holder.kill();
        let _ = holder.wait();
    }
}

/// Accepts exactly the lab's host key: the test's own QUIC client checks
/// the relay as sshq would, without known_hosts.
struct LabHostKey(sshq_core::ssh_key::PublicKey);

impl sshq_core::auth::ServerKeyVerifier for LabHostKey {
    fn verify(&self, key: &sshq_core::ssh_key::PublicKey) -> bool {
        key.key_data() == self.0.key_data()
    }
}

#[test]
fn a_second_stream_is_refused_and_the_first_carries_on() {
    use sshq_test_kit::quinn;
    let lab = Lab::new();
    let service = TcpService::start(echo);
    let t = Tunnel::to(lab, service.port);
    let host_key = sshq_core::ssh_key::PublicKey::from_openssh(
        &std::fs::read_to_string(t.lab.path("host_ed25519.pub")).expect("host key"),
    )
    .expect("parse the host key");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let provider = sshq_quic::kx::crypto_provider(sshq_quic::kx::DEFAULT_KEX).expect("kex");
        let mut tls =
            sshq_quic::tls::client_tls(Arc::new(LabHostKey(host_key)), provider).expect("tls");
        sshq_quic::tunnel::ask_for_tunnel(&mut tls);
        let config = sshq_quic::tls::client_config(tls).expect("quic config");
        let endpoint = sshq_quic::endpoint::client_endpoint("127.0.0.1:0".parse().expect("addr"))
            .expect("endpoint");
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], t.port));
        let conn = tokio::time::timeout(
            Duration::from_secs(10),
            endpoint
                .connect_with(config, addr, "sshq")
                .expect("connect"),
        )
        .await
        .expect("handshake in time")
        .expect("handshake");
        let limit = Duration::from_secs(10);

        let (mut send, mut recv) = conn.open_bi().await.expect("first stream");
        send.write_all(b"first ").await.expect("write");
        let mut echoed = [0u8; 6];
        tokio::time::timeout(limit, recv.read_exact(&mut echoed))
            .await
            .expect("echo in time")
            .expect("echo");
        assert_eq!(&echoed, b"first ");

        let (mut send2, mut recv2) = conn.open_bi().await.expect("second stream");
        send2.write_all(b"second").await.expect("write");
        let refused = tokio::time::timeout(limit, recv2.read_to_end(1024))
            .await
            .expect("refusal in time");
        match refused {
            Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => assert_eq!(
                code.into_inner(),
                u64::from(sshq_quic::wire::ErrorCode::StreamRefused.code())
            ),
            other => panic!("second stream not refused: {other:?}"),
        }

        send.write_all(b"still carried").await.expect("write");
        send.finish().expect("finish");
        let rest = tokio::time::timeout(limit, recv.read_to_end(1024))
            .await
            .expect("end in time")
            .expect("read to the end");
        assert_eq!(text(&rest), "still carried");
        conn.close(0u32.into(), b"done");
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    });
    assert!(t.relay_log().contains("closed after"), "{}", t.relay_log());
}

#[test]
fn a_host_named_proxy_is_reached_after_a_double_dash() {
    // `sshq proxy` is the proxy; `sshq -- proxy` is a host called "proxy".
    let lab = Lab::new();
    let sshqd = lab.start_sshqd("");
    let home = lab.path("home");
    std::fs::create_dir_all(home.join(".ssh")).expect("home");
    std::fs::write(
        home.join(".ssh/config"),
        format!(
            "Host proxy\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  IdentityFile {}\n  \
             IdentitiesOnly yes\n  BatchMode yes\n  UserKnownHostsFile {}\n  \
             StrictHostKeyChecking accept-new\n",
            sshqd.port,
            lab.user,
            lab.path("user").display(),
            lab.path("known_hosts").display()
        ),
    )
    .expect("config");
    let mut cmd = Command::new(SSHQ);
    cmd.env("HOME", &home)
        .args(["--", "proxy", "echo named proxy"]);
    let out = run_with_input(&mut cmd, b"");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(text(&out.stdout), "named proxy\n");
}

#[test]
fn an_ssh_config_naming_sshq_proxy_serves_ssh_and_the_proxy() {
    // The usual setup: one Host block with ProxyCommand, read by ssh and by
    // `sshq proxy` alike (%n: the name as typed, so the block matches both).
    let (t, _sshd) = openssh_tunnel();
    let config = t.lab.path("ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host tunnelled\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  \
             IdentityFile {key}\n  IdentitiesOnly yes\n  BatchMode yes\n  \
             UserKnownHostsFile {known}\n  StrictHostKeyChecking accept-new\n  \
             ProxyCommand {SSHQ} proxy -F {config} %n %p\n",
            port = t.port,
            user = t.lab.user,
            key = t.lab.path("user").display(),
            known = t.lab.path("known_hosts").display(),
            config = config.display(),
        ),
    )
    .expect("ssh_config");
    let args = vec![
        "-F".to_string(),
        config.display().to_string(),
        "tunnelled".to_string(),
        "echo configured".to_string(),
    ];
    let out = t.lab.run("ssh", &args, b"");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(text(&out.stdout), "configured\n");
}
