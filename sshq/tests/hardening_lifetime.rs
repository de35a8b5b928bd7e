//! Issue 10, items 9-11, against real clients: ClientAliveInterval and
//! ClientAliveCountMax over both transports, MaxAuthTries counted as sshd
//! counts it (real sshd beside sshqd in the same test), peer text escaped
//! in logs, and logs sent to syslog when sshqd runs without -e.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{show, text, wait_tcp, wait_until, Lab, Listeners, Server, SSHQ, SSHQD};

/// ClientAliveInterval 1, ClientAliveCountMax 2: a silent client is
/// dropped after about three seconds, as sshd would drop it.
const ALIVE: &str = "ClientAliveInterval 1\nClientAliveCountMax 2\n";

/// A client started in the background, killed (and continued) on drop.
struct Client(Child);

impl Client {
    fn spawn(program: &str, args: &[String]) -> Client {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Client(child)
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal the client");
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.signal_quietly(nix::sys::signal::Signal::SIGCONT);
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Client {
    fn signal_quietly(&self, signal: nix::sys::signal::Signal) -> nix::Result<()> {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        nix::sys::signal::kill(pid, signal)
    }
}

/// Logs in with `program` (a long command), stops the client once logged
/// in, and checks sshqd gives up on it with sshd's log line within a few
/// intervals. `extra` chooses the transport.
fn stopped_client_is_dropped(program: &str, extra: &[&str], listeners: Listeners) {
    let lab = Lab::new();
    let server = lab.start_sshqd_on(&format!("{ALIVE}Transports quic,tcp"), listeners);
    let args = lab.client_args("user", "accept-new", server.port, extra, &["sleep 60"]);
    let client = Client::spawn(program, &args);
    assert!(
        wait_until(Duration::from_secs(20), || server
            .log_text()
            .contains("Accepted publickey")),
        "the client did not log in; sshqd's log:\n{}",
        server.log_text()
    );
    client.signal(nix::sys::signal::Signal::SIGSTOP);
    let stopped = Instant::now();
    let expected = format!(
        "Timeout, client not responding from user {} 127.0.0.1 port",
        lab.user
    );
    assert!(
        wait_until(Duration::from_secs(15), || server
            .log_text()
            .contains(&expected)),
        "sshqd did not drop the stopped client within 15 s; its log:\n{}",
        server.log_text()
    );
    let took = stopped.elapsed();
    // Three silent intervals (plus the one the stop fell into); far less
    // than QUIC's 20 s idle timeout or russh's old 600 s.
    assert!(
        took >= Duration::from_millis(1500) && took <= Duration::from_secs(8),
        "dropped after {took:?}, expected about 3 s"
    );
    assert!(
        wait_until(Duration::from_secs(10), || server
            .log_text()
            .contains("Disconnected from user")),
        "the session did not end after the timeout; sshqd's log:\n{}",
        server.log_text()
    );
}

#[test]
fn client_alive_drops_a_stopped_openssh_client_over_tcp() {
    stopped_client_is_dropped("ssh", &[], Listeners::Both);
}

#[test]
fn client_alive_drops_a_stopped_sshq_client_over_quic() {
    stopped_client_is_dropped(SSHQ, &["-o", "Transport=quic"], Listeners::Both);
}

/// An idle but living client outlasts many intervals: it answers (OpenSSH's
/// ssh over TCP; sshq over QUIC, where QUIC keep-alives also flow).
fn live_idle_client_stays(program: &str, extra: &[&str]) {
    let lab = Lab::new();
    let server = lab.start_sshqd_on(&format!("{ALIVE}Transports quic,tcp"), Listeners::Both);
    let out = lab.client(
        program,
        "user",
        server.port,
        extra,
        &["sleep 6; echo still here"],
        b"",
    );
    assert!(out.status.success(), "{program}: {}", show(&out));
    assert_eq!(text(&out.stdout), "still here\n");
    assert!(
        !server.log_text().contains("Timeout, client not responding"),
        "{}",
        server.log_text()
    );
}

#[test]
fn client_alive_keeps_a_live_idle_openssh_client_over_tcp() {
    live_idle_client_stays("ssh", &[]);
}

#[test]
fn client_alive_keeps_a_live_idle_sshq_client_over_quic() {
    live_idle_client_stays(SSHQ, &["-o", "Transport=quic"]);
}

#[test]
fn an_idle_quic_session_outlives_the_quic_idle_timeout() {
    // No ClientAliveInterval: only QUIC's own keep-alives (the client's,
    // every 15 s) flow, and 25 s of silence is past the 20 s idle timeout
    // the server asks for.
    let lab = Lab::new();
    let server = lab.start_sshqd_on("Transports quic\nQuicIdleTimeout 20", Listeners::Quic);
    let out = lab.sshq(
        server.port,
        &["-o", "Transport=quic"],
        &["sleep 25; echo still here"],
        b"",
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        show(&out),
        server.log_text()
    );
    assert_eq!(text(&out.stdout), "still here\n");
}

#[test]
fn client_alive_keywords_are_checked_as_sshd_checks_them() {
    let lab = Lab::new();
    let port = common::free_port();
    for (line, message) in [
        ("ClientAliveInterval soon", "invalid time value"),
        (
            "ClientAliveCountMax -1",
            "ClientAliveCountMax integer value",
        ),
        ("SyslogFacility KERN", "unsupported log facility 'KERN'"),
    ] {
        let config = lab.write_sshqd_config(port, &[lab.path("host_ed25519")], line);
        let out = lab.sshqd_refusing(&config);
        assert!(
            !out.status.success() && text(&out.stderr).contains(message),
            "{line}: {}",
            show(&out)
        );
    }
}

/// Writes wrong keys `wrong1`..`wrongN` into the lab (once).
fn wrong_keys(lab: &Lab, n: usize) {
    for i in 1..=n {
        let name = format!("wrong{i}");
        if !lab.path(&name).exists() {
            lab.keygen(&name, "ed25519", &name);
        }
    }
}

/// A login with `wrong` refused keys first, then the right one.
fn login_after_wrong_keys(
    lab: &Lab,
    program: &str,
    port: u16,
    wrong: usize,
    extra: &[&str],
) -> Output {
    let mut args: Vec<String> = Vec::new();
    for i in 1..=wrong {
        args.push("-i".into());
        args.push(lab.path(&format!("wrong{i}")).display().to_string());
    }
    // client_args puts the right key (-i user) first: rebuild without it.
    let base = lab.client_args("user", "accept-new", port, extra, &["echo in"]);
    let (user_key, rest) = base.split_at(2);
    args.extend(rest.iter().cloned());
    let target_at = args.len() - 2;
    args.insert(target_at, user_key[1].clone());
    args.insert(target_at, user_key[0].clone());
    lab.run(program, &args, b"")
}

fn logged_in(out: &Output) -> bool {
    out.status.success() && text(&out.stdout) == "in\n"
}

/// MaxAuthTries `max`: `wrong` refused keys, then the right one; whether
/// that logs in, on sshd and on sshqd (both transports).
fn max_auth_tries_case(max: Option<u32>, wrong: usize) {
    let lab = Lab::new();
    wrong_keys(&lab, wrong);
    let line = max
        .map(|m| format!("MaxAuthTries {m}\n"))
        .unwrap_or_default();
    let sshd = lab.start_sshd_with(&line);
    let sshqd = lab.start_sshqd_on(&format!("{line}Transports quic,tcp"), Listeners::Both);
    // What sshd does is the reference.
    let reference = login_after_wrong_keys(&lab, "ssh", sshd.port, wrong, &[]);
    let expect_in = match max {
        Some(0) => false,
        Some(m) => wrong < m as usize,
        None => wrong < 6,
    };
    assert_eq!(
        logged_in(&reference),
        expect_in,
        "sshd, MaxAuthTries {max:?}, {wrong} wrong keys: {}",
        show(&reference)
    );
    let tcp = login_after_wrong_keys(&lab, "ssh", sshqd.port, wrong, &[]);
    assert_eq!(
        logged_in(&tcp),
        expect_in,
        "sshqd over TCP, MaxAuthTries {max:?}, {wrong} wrong keys: {}\nsshqd's log:\n{}",
        show(&tcp),
        sshqd.log_text()
    );
    if !expect_in {
        // The same words as sshd's, in ssh's "Received disconnect" line.
        assert!(
            text(&reference.stderr).contains("Too many authentication failures")
                == text(&tcp.stderr).contains("Too many authentication failures"),
            "sshd: {}\nsshqd: {}",
            show(&reference),
            show(&tcp)
        );
    }
    let quic = login_after_wrong_keys(&lab, SSHQ, sshqd.port, wrong, &["-o", "Transport=quic"]);
    assert_eq!(
        logged_in(&quic),
        expect_in,
        "sshqd over QUIC, MaxAuthTries {max:?}, {wrong} wrong keys: {}\nsshqd's log:\n{}",
        show(&quic),
        sshqd.log_text()
    );
    if !expect_in && wrong > 0 {
        assert!(
            sshqd
                .log_text()
                .contains("maximum authentication attempts exceeded for"),
            "{}",
            sshqd.log_text()
        );
    }
}

#[test]
fn max_auth_tries_zero_lets_nobody_in() {
    max_auth_tries_case(Some(0), 0);
}

#[test]
fn max_auth_tries_one_allows_only_the_first_key() {
    max_auth_tries_case(Some(1), 0);
    max_auth_tries_case(Some(1), 1);
}

#[test]
fn max_auth_tries_default_is_six_refusals() {
    max_auth_tries_case(None, 5);
    max_auth_tries_case(None, 6);
}

/// A user name meant to forge a log line.
const FORGING_USER: &str = "evil\nAccepted publickey for root from 10.9.8.7 port 1 over tcp\x1b[2J";
const ESCAPED_USER: &str =
    "evil\\012Accepted publickey for root from 10.9.8.7 port 1 over tcp\\033[2J";

fn forging_login(lab: &Lab, port: u16, transport: &str) -> Output {
    let mut args = lab.client_opts("user");
    args.extend(
        [
            "-o",
            &format!("Transport={transport}"),
            "-p",
            &port.to_string(),
            "-l",
            FORGING_USER,
            "127.0.0.1",
            "true",
        ]
        .map(String::from),
    );
    lab.run(SSHQ, &args, b"")
}

#[test]
fn peer_text_cannot_forge_log_lines() {
    let lab = Lab::new();
    let server: Server = lab.start_sshqd_on("Transports quic,tcp", Listeners::Both);
    for transport in ["tcp", "quic"] {
        let out = forging_login(&lab, server.port, transport);
        assert!(!out.status.success(), "{transport}: {}", show(&out));
    }
    let log = server.log_text();
    assert!(
        !log.lines()
            .any(|l| l.contains("Accepted publickey for root") && !l.contains("evil\\012")),
        "a forged line reached the log:\n{log}"
    );
    assert!(
        log.contains(ESCAPED_USER),
        "no escaped user name in:\n{log}"
    );
    assert!(!log.contains('\x1b'), "an escape sequence reached the log");
}

/// Runs sshqd `-D` (no `-e`) in a private mount namespace whose /dev/log is
/// `socket`: a fresh /dev (tmpfs) gets the real device nodes bound in, and
/// /dev/log is the test's socket.
fn sshqd_with_private_dev_log(lab: &Lab, socket: &Path, config: &Path) -> Child {
    let stage = lab.path("realdev");
    std::fs::create_dir_all(&stage).expect("stage dir");
    let script = r#"set -e
mount --make-rprivate /
mount --rbind /dev "$STAGE"
mount -t tmpfs -o mode=755 sshq-test-dev /dev
for entry in "$STAGE"/* "$STAGE"/.[!.]*; do
  [ -e "$entry" ] || [ -L "$entry" ] || continue
  name=${entry##*/}
  if [ -L "$entry" ]; then cp -a "$entry" "/dev/$name"
  elif [ -d "$entry" ]; then mkdir "/dev/$name"; mount --rbind "$entry" "/dev/$name"
  else : > "/dev/$name"; mount --bind "$entry" "/dev/$name"; fi
done
: > /dev/log
mount --bind "$SOCKET" /dev/log
exec "$SSHQD" -D -f "$CONFIG"
"#;
    Command::new("unshare")
        .args(["--mount", "sh", "-c", script])
        .env("STAGE", &stage)
        .env("SOCKET", socket)
        .env("SSHQD", SSHQD)
        .env("CONFIG", config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(lab.path("sshqd-syslog.stderr")).expect("stderr file"))
        .spawn()
        .expect("unshare (util-linux) must be installed")
}

#[test]
fn without_dash_e_logs_go_to_syslog() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (CI runs as root): it makes a mount namespace"
    );
    let lab = Lab::new();
    let socket_path = lab.path("devlog.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the syslog socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let port = common::free_port();
    let config = lab.write_sshqd_config(
        port,
        &[lab.path("host_ed25519")],
        "Transports quic,tcp\nSyslogFacility LOCAL3",
    );
    let mut sshqd = sshqd_with_private_dev_log(&lab, &socket_path, &config);
    let pid = sshqd.id();
    wait_tcp(port);
    let ok = lab.sshq(port, &["-o", "Transport=tcp"], &["echo", "ok"], b"");
    let forged = forging_login(&lab, port, "quic");
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 65536];
    let wanted = |lines: &Vec<String>| {
        lines.iter().any(|l| l.contains("Accepted publickey"))
            && lines.iter().any(|l| l.contains("evil\\012"))
    };
    while Instant::now() < deadline && !wanted(&lines) {
        if let Ok(n) = socket.recv(&mut buf) {
            lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let _ = sshqd.kill();
    let _ = sshqd.wait();
    let stderr = std::fs::read_to_string(lab.path("sshqd-syslog.stderr")).unwrap_or_default();
    assert!(
        ok.status.success(),
        "{}\nsshqd's stderr:\n{stderr}",
        show(&ok)
    );
    assert!(!forged.status.success(), "{}", show(&forged));
    // <PRI> is facility * 8 + severity: LOCAL3 (19) and INFO (6) = 158.
    let accepted = format!("sshqd[{pid}]: Accepted publickey for {}", lab.user);
    let line = lines.iter().find(|l| l.contains(&accepted));
    assert!(
        line.is_some_and(|l| l.starts_with("<158>")),
        "no `{accepted}` at LOCAL3.INFO in the syslog datagrams: {lines:#?}\nsshqd's stderr:\n{stderr}"
    );
    // One datagram, escaped: the user name cannot start a line of its own.
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("sshqd[{pid}]: ")) && l.contains(ESCAPED_USER)),
        "no escaped user name in the syslog datagrams: {lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains('\n') || l.contains('\x1b')),
        "{lines:#?}"
    );
    assert!(
        !stderr.contains("Accepted publickey"),
        "without -e nothing goes to stderr:\n{stderr}"
    );
}
