//! ProxyJump (-J), stdio forwarding (-W) and -f, with real servers: sshqd
//! jump hosts over TCP and QUIC in every mix, OpenSSH's sshd as a jump host
//! and as the destination, and OpenSSH's ssh using sshqd as its jump host
//! and sshq -W as its ProxyCommand.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    random_bytes, run_with_input, run_with_timeout, sha256, show, text, wait_until, Lab, Listeners,
    Server, TcpService, SSHQ,
};

/// A lab with sshqd servers serving QUIC and TCP, and a config file naming
/// each server `jN` (TCP) and `jNq` (QUIC), so that a hop's transport is
/// set the OpenSSH way: by ssh_config, which applies to every hop.
struct Jumps {
    lab: Lab,
    servers: Vec<Server>,
    config: PathBuf,
}

impl Jumps {
    fn new(count: usize, extra: &str) -> Jumps {
        let lab = Lab::new();
        let servers: Vec<Server> = (0..count)
            .map(|_| lab.start_sshqd_on(&format!("Transports quic,tcp\n{extra}"), Listeners::Both))
            .collect();
        let config = lab.path("jump_config");
        let mut text = String::new();
        for (i, server) in servers.iter().enumerate() {
            for (suffix, transport) in [("", "tcp"), ("q", "quic")] {
                text.push_str(&format!(
                    "Host j{i}{suffix}\n  HostName 127.0.0.1\n  Port {}\n  Transport {transport}\n",
                    server.port
                ));
            }
        }
        text.push_str(&format!(
            "Host *\n  User {user}\n  IdentityFile {key}\n  IdentitiesOnly yes\n  BatchMode yes\n  \
             UserKnownHostsFile {kh}\n  StrictHostKeyChecking accept-new\n",
            user = lab.user,
            key = lab.path("user").display(),
            kh = lab.path("known_hosts").display(),
        ));
        std::fs::write(&config, text).expect("config");
        Jumps {
            lab,
            servers,
            config,
        }
    }

    /// `sshq -F config [-J jumps] -o Transport=final -p port user@127.0.0.1 command`.
    fn sshq(
        &self,
        jumps: &str,
        transport: &str,
        port: u16,
        extra: &[&str],
        command: &[&str],
    ) -> std::process::Output {
        let mut args: Vec<String> = vec!["-F".into(), self.config.display().to_string()];
        if !jumps.is_empty() {
            args.extend(["-J".into(), jumps.into()]);
        }
        args.extend([
            "-o".into(),
            format!("Transport={transport}"),
            "-p".into(),
            port.to_string(),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(self.lab.target());
        args.extend(command.iter().map(|s| s.to_string()));
        self.lab.run(SSHQ, &args, b"")
    }

    fn logs(&self) -> String {
        self.servers
            .iter()
            .map(|s| format!("--- sshqd on {}:\n{}", s.port, s.log_text()))
            .collect()
    }
}

/// Every mix of transports over one jump host, QUIC to the destination
/// included; the jump host's log shows it carried the connection.
#[test]
fn one_jump_host_in_every_mix_of_transports() {
    let jumps = Jumps::new(2, "");
    let destination = jumps.servers[1].port;
    for hop in ["j0", "j0q"] {
        for last in ["tcp", "quic"] {
            let out = jumps.sshq(hop, last, destination, &["-v"], &["echo through; exit 3"]);
            assert_ran(
                &out,
                3,
                "through\n",
                &format!("-J {hop}, Transport={last}\n{}", jumps.logs()),
            );
            let stderr = text(&out.stderr);
            assert!(
                stderr.contains(&format!("over {last}")),
                "-J {hop}: the destination was not reached over {last}: {stderr}"
            );
        }
    }
    let jump_log = jumps.servers[0].log_text();
    assert!(
        jump_log.contains(&format!("direct-tcpip to 127.0.0.1 port {destination}")),
        "the jump host did not carry the TCP connection:\n{jump_log}"
    );
    assert!(
        jump_log.contains(&format!("relaying UDP to 127.0.0.1 port {destination}")),
        "the jump host did not relay the QUIC connection:\n{jump_log}"
    );
}

/// Two jump hosts, a different transport on each hop, and 1 MiB through
/// the whole chain byte for byte.
#[test]
fn two_jump_hosts_carry_data_intact() {
    let jumps = Jumps::new(3, "");
    let data = random_bytes(1 << 20);
    let mut args: Vec<String> = vec![
        "-F".into(),
        jumps.config.display().to_string(),
        "-J".into(),
        "j0q,j1".into(),
        "-o".into(),
        "Transport=quic".into(),
        "-p".into(),
        jumps.servers[2].port.to_string(),
        jumps.lab.target(),
        "sha256sum".into(),
    ];
    let out = run_with_input(Command::new(SSHQ).args(&args), &data);
    assert!(
        out.status.success() && text(&out.stdout).starts_with(&sha256(&data)),
        "{}\n{}",
        show(&out),
        jumps.logs()
    );
    // Each hop's host key was checked and recorded under its own name.
    let known = std::fs::read_to_string(jumps.lab.path("known_hosts")).unwrap_or_default();
    for server in &jumps.servers {
        assert!(
            known.contains(&format!("[127.0.0.1]:{}", server.port)),
            "no known_hosts line for {}:\n{known}",
            server.port
        );
    }
    // A bad hop name fails before anything is connected.
    args[3] = "j0,".into();
    let out = jumps.lab.run(SSHQ, &args, b"");
    assert_failed(&out, "invalid destination", &jumps.logs());
}

/// A jump host whose key changed stops the connection at that hop, with
/// OpenSSH's warning, and the destination is never reached.
#[test]
fn a_jump_hosts_changed_key_stops_the_chain() {
    let jumps = Jumps::new(2, "");
    let jump = jumps.servers[0].port;
    jumps.lab.write_known_hosts(jump, "other_host_ed25519");
    for hop in ["j0", "j0q"] {
        let out = jumps.sshq(hop, "tcp", jumps.servers[1].port, &[], &["echo reached"]);
        assert_eq!(out.status.code(), Some(255), "-J {hop}: {}", show(&out));
        assert!(
            text(&out.stderr).contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
                && !text(&out.stdout).contains("reached"),
            "-J {hop}: {}",
            show(&out)
        );
    }
}

/// OpenSSH's sshd as the jump host: TCP to the destination works through
/// it; it cannot relay UDP, so Transport=quic says so and auto uses TCP.
#[test]
fn openssh_sshd_as_the_jump_host() {
    let jumps = Jumps::new(1, "");
    let sshd = jumps.lab.start_sshd();
    let hop = format!("{}@127.0.0.1:{}", jumps.lab.user, sshd.port);
    let destination = jumps.servers[0].port;
    for transport in ["tcp", "auto"] {
        let out = jumps.sshq(&hop, transport, destination, &[], &["echo through"]);
        assert_ran(&out, 0, "through\n", &format!("Transport={transport}"));
    }
    let out = jumps.sshq(&hop, "quic", destination, &[], &["echo through"]);
    assert_failed(&out, "does not relay UDP", &jumps.logs());
}

/// OpenSSH's sshd as the destination, through an sshqd jump host over QUIC.
#[test]
fn openssh_sshd_as_the_destination() {
    let jumps = Jumps::new(1, "");
    let sshd = jumps.lab.start_sshd();
    let out = jumps.sshq("j0q", "tcp", sshd.port, &[], &["echo through"]);
    assert_ran(&out, 0, "through\n", &jumps.logs());
}

/// OpenSSH's ssh -J with sshqd as its jump host.
#[test]
fn openssh_ssh_jumps_through_sshqd() {
    let jumps = Jumps::new(2, "");
    let mut args = vec!["-F".to_string(), jumps.config.display().to_string()];
    args.extend([
        "-J".to_string(),
        format!("{}@127.0.0.1:{}", jumps.lab.user, jumps.servers[0].port),
        "-p".to_string(),
        jumps.servers[1].port.to_string(),
        jumps.lab.target(),
        "echo through".to_string(),
    ]);
    // OpenSSH rejects sshq's own keywords in the shared config.
    std::fs::write(
        &jumps.config,
        std::fs::read_to_string(&jumps.config)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.contains("Transport"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .expect("config");
    let out = jumps.lab.run("ssh", &args, b"");
    assert_ran(&out, 0, "through\n", &jumps.logs());
}

/// Asserts that a run exited with `code` having printed exactly `stdout`.
fn assert_ran(out: &std::process::Output, code: i32, stdout: &str, context: &str) {
    assert_eq!(
        (out.status.code(), text(&out.stdout).as_str()),
        (Some(code), stdout),
        "{context}: {}",
        show(out)
    );
}

/// Asserts that a run failed with 255, its stderr saying `words`.
fn assert_failed(out: &std::process::Output, words: &str, context: &str) {
    assert_eq!(out.status.code(), Some(255), "{context}: {}", show(out));
    assert!(
        text(&out.stderr).contains(words),
        "{context}: {}",
        show(out)
    );
}

/// An echo service: every byte back, then a half-close.
fn echo_service() -> TcpService {
    TcpService::start(|mut stream| {
        let mut reader = stream.try_clone().expect("clone");
        let _ = std::io::copy(&mut reader, &mut stream);
        let _ = stream.shutdown(Shutdown::Write);
    })
}

/// -W over both transports: 1 MiB through stdin/stdout byte for byte; a
/// refused target and a bad specification fail as ssh's do.
#[test]
fn stdio_forwarding() {
    let jumps = Jumps::new(1, "PermitOpen 127.0.0.1:1 127.0.0.1:2 localhost:*\n");
    let echo = echo_service();
    let data = random_bytes(1 << 20);
    for transport in ["j0", "j0q"] {
        let target = format!("localhost:{}", echo.port);
        let out = run_with_input(
            Command::new(SSHQ).args([
                "-F",
                &jumps.config.display().to_string(),
                "-W",
                &target,
                transport,
            ]),
            &data,
        );
        assert!(
            out.status.success() && out.stdout == data,
            "-W over {transport}: {} ({} bytes back)",
            show(&out),
            out.stdout.len()
        );
    }
    // Each failure exits 255 with ssh's words, or the server's reason.
    let w = |target: &str, via: &str| {
        let args: Vec<String> = ["-F", &jumps.config.display().to_string(), "-W", target, via]
            .iter()
            .map(|s| s.to_string())
            .collect();
        jumps.lab.run(SSHQ, &args, b"")
    };
    for (target, via, words) in [
        ("127.0.0.1:1", "j0", "stdio forwarding failed"),
        ("127.0.0.1:3", "j0q", "not permitted"),
        (
            "nohostport",
            "j0",
            "Bad stdio forwarding specification 'nohostport'",
        ),
    ] {
        let out = w(target, via);
        assert_eq!(out.status.code(), Some(255), "-W {target}: {}", show(&out));
        assert!(
            text(&out.stderr).contains(words),
            "-W {target}: {}",
            show(&out)
        );
    }
}

/// OpenSSH's ssh with `sshq -W %h:%p` as its ProxyCommand, the way
/// ProxyJump is built in OpenSSH, reaching an sshqd through another.
#[test]
fn sshq_w_as_openssh_proxycommand() {
    let jumps = Jumps::new(2, "");
    let proxy = format!("{SSHQ} -F {} -W %h:%p j0q", jumps.config.display());
    let out = jumps.lab.ssh(
        jumps.servers[1].port,
        &["-o", &format!("ProxyCommand={proxy}")],
        &["echo through; exit 4"],
        b"",
    );
    assert_ran(&out, 4, "through\n", &jumps.logs());
}

/// -f: the command returns once logged in, with the forward working in the
/// background; without a command it is refused as by ssh; a failed login
/// is reported by the foreground process with 255.
#[test]
fn background_after_login() {
    let jumps = Jumps::new(1, "");
    let echo = echo_service();
    let listen = common::free_port();
    let log = jumps.lab.path("background.log");
    for transport in ["j0", "j0q"] {
        let spec = format!("{listen}:127.0.0.1:{}", echo.port);
        let status = Command::new(SSHQ)
            .args([
                "-F",
                &jumps.config.display().to_string(),
                "-f",
                "-N",
                "-L",
                &spec,
                transport,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .status()
            .expect("run sshq -f");
        assert!(
            status.success(),
            "sshq -f over {transport}: {status:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        // Logged in and listening before the foreground process returned.
        let mut stream = TcpStream::connect(("127.0.0.1", listen)).expect("the forward listens");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        stream.write_all(b"ping").expect("write");
        stream.shutdown(Shutdown::Write).expect("shutdown");
        let mut back = Vec::new();
        stream.read_to_end(&mut back).expect("read");
        assert_eq!(back, b"ping", "over {transport}");
        // The background sshq is the one holding the forward's port.
        let pids = common::pgrep(&format!("-N -L {spec} {transport}$"));
        assert!(!pids.is_empty(), "no background sshq found");
        for pid in pids {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        assert!(
            wait_until(Duration::from_secs(10), || TcpStream::connect((
                "127.0.0.1",
                listen
            ))
            .is_err()),
            "the background sshq did not stop"
        );
    }
    let out = jumps.lab.run(
        SSHQ,
        &[
            "-F".into(),
            jumps.config.display().to_string(),
            "-f".into(),
            "j0".into(),
        ],
        b"",
    );
    assert_failed(
        &out,
        "Cannot fork into background without a command to execute.",
        &jumps.logs(),
    );
    let mut cmd = Command::new(SSHQ);
    cmd.args([
        "-F",
        &jumps.config.display().to_string(),
        "-f",
        "-l",
        "no-such-user-sshq",
        "j0q",
        "true",
    ]);
    let out = run_with_timeout(&mut cmd, b"", Duration::from_secs(30));
    assert_failed(&out, "Permission denied", &jumps.logs());
}

/// sshq's own ProxyCommand (ssh's tokens expanded, run under /bin/sh),
/// here `sshq -W %h:%p` through a QUIC jump host; Transport=quic cannot use
/// a byte stream and says so.
#[test]
fn sshq_proxycommand() {
    let jumps = Jumps::new(2, "");
    let proxy = format!(
        "ProxyCommand={SSHQ} -F '{}' -W %h:%p j0q",
        jumps.config.display()
    );
    let destination = jumps.servers[1].port;
    let out = jumps.sshq("", "auto", destination, &["-o", &proxy], &["echo through"]);
    assert_ran(&out, 0, "through\n", &jumps.logs());
    assert!(
        jumps.servers[0]
            .log_text()
            .contains(&format!("direct-tcpip to 127.0.0.1 port {destination}")),
        "{}",
        jumps.logs()
    );
    let out = jumps.sshq("", "quic", destination, &["-o", &proxy], &["echo through"]);
    assert_failed(&out, "ProxyCommand carries one byte stream", &jumps.logs());
}
