//! sshqd against misbehaving clients: bad clients must not disturb the
//! sessions of others, silent ones are dropped after LoginGraceTime, and a
//! vanished client leaves no process behind.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::hostile::{closed_within, local_port, log_mentions_port, raw_tcp};
use common::{pgrep, random_bytes, show, text, wait_until, Lab, Listeners, Server, SSHQ};

/// A session long enough to be running while the bad clients come and go.
const LONG_SESSION: &str = "sleep 5; echo done";

/// Sends `first` (if any) then random bytes, and checks sshqd hangs up.
fn send_junk(port: u16, first: &[u8], what: &str) -> u16 {
    let mut stream = raw_tcp(port);
    let start = Instant::now();
    // sshqd may hang up while we write: that is fine, it is what we want.
    let _ = stream.write_all(first);
    let mut junk = random_bytes(4096);
    junk[..4].copy_from_slice(b"\xff\xfe\xfd\xfc"); // never a banner, never a sane packet length
    let _ = stream.write_all(&junk);
    assert!(
        closed_within(&mut stream, start, Duration::from_secs(10), &mut Vec::new()).is_some(),
        "{what}: sshqd kept the connection open for 10 s"
    );
    local_port(&stream)
}

/// (a) Garbage instead of a banner.
fn garbage(port: u16) -> u16 {
    send_junk(port, b"", "garbage")
}

/// (b) A valid SSH banner, then garbage.
fn banner_then_garbage(port: u16) -> u16 {
    send_junk(port, b"SSH-2.0-Robustness_1.0\r\n", "banner then garbage")
}

/// (c) Connects and says nothing: LoginGraceTime 2 must drop it.
fn silent(port: u16) -> u16 {
    let mut stream = raw_tcp(port);
    let start = Instant::now();
    let closed = closed_within(&mut stream, start, Duration::from_secs(15), &mut Vec::new());
    let Some(after) = closed else {
        panic!("silent client: still connected after 15 s despite LoginGraceTime 2");
    };
    assert!(
        after >= Duration::from_secs(1) && after <= Duration::from_secs(8),
        "silent client: dropped after {after:?}, expected about 2 s (LoginGraceTime 2)"
    );
    local_port(&stream)
}

/// (d) Starts the handshake, sends half a packet and goes away.
fn dropped_mid_handshake(port: u16) -> u16 {
    let mut stream = raw_tcp(port);
    stream
        .write_all(b"SSH-2.0-Robustness_1.0\r\n")
        .expect("send banner");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while !text(&seen).contains("SSH-2.0-") && start.elapsed() < Duration::from_secs(10) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    assert!(
        text(&seen).contains("SSH-2.0-"),
        "no server banner: {:?}",
        text(&seen)
    );
    // A KEXINIT packet announced as 1000 bytes, cut after 20.
    let mut partial = vec![0, 0, 3, 0xe8, 4, 20];
    partial.extend_from_slice(&random_bytes(14));
    stream.write_all(&partial).expect("send a partial packet");
    local_port(&stream)
}

fn accepted_logins(server: &Server) -> usize {
    server.log_text().matches("Accepted publickey").count()
}

fn expect_refused_stranger(lab: &Lab, program: &str, port: u16) {
    let out = lab.client(program, "stranger", port, &[], &["echo reached"], b"");
    assert_eq!(
        out.status.code(),
        Some(255),
        "stranger via {program}:\n{}",
        show(&out)
    );
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "stranger via {program}:\n{}",
        show(&out)
    );
    assert!(
        !text(&out.stdout).contains("reached"),
        "stranger via {program}:\n{}",
        show(&out)
    );
}

#[test]
fn bad_clients_do_not_disturb_others() {
    let lab = Lab::new();
    let mut server = lab.start_sshqd("LoginGraceTime 2");
    let port = server.port;
    let dropped: Vec<(&str, u16)> = std::thread::scope(|scope| {
        let long_ssh = scope.spawn(|| lab.ssh(port, &[], &[LONG_SESSION], b""));
        let long_sshq = scope.spawn(|| lab.sshq(port, &[], &[LONG_SESSION], b""));
        assert!(
            wait_until(Duration::from_secs(20), || accepted_logins(&server) >= 2),
            "the long sessions did not log in; sshqd log:\n{}",
            server.log_text()
        );
        let bad: Vec<(&str, std::thread::ScopedJoinHandle<u16>)> = vec![
            ("garbage", scope.spawn(|| garbage(port))),
            (
                "banner then garbage",
                scope.spawn(|| banner_then_garbage(port)),
            ),
            ("silent", scope.spawn(|| silent(port))),
            (
                "dropped mid-handshake",
                scope.spawn(|| dropped_mid_handshake(port)),
            ),
        ];
        expect_refused_stranger(&lab, SSHQ, port);
        expect_refused_stranger(&lab, "ssh", port);
        let dropped = bad
            .into_iter()
            .map(|(what, handle)| {
                (
                    what,
                    handle
                        .join()
                        .unwrap_or_else(|_| panic!("{what}: failed (see above)")),
                )
            })
            .collect();
        for (client, handle) in [("ssh", long_ssh), ("sshq", long_sshq)] {
            let out = handle.join().expect("long session thread");
            assert_eq!(
                out.status.code(),
                Some(0),
                "long session via {client}:\n{}",
                show(&out)
            );
            assert_eq!(
                text(&out.stdout),
                "done\n",
                "long session via {client}:\n{}",
                show(&out)
            );
        }
        dropped
    });
    for (client, out) in [
        ("ssh", lab.ssh(port, &[], &["echo again"], b"")),
        ("sshq", lab.sshq(port, &[], &["echo again"], b"")),
    ] {
        assert_eq!(
            out.status.code(),
            Some(0),
            "new session via {client}:\n{}",
            show(&out)
        );
        assert_eq!(
            text(&out.stdout),
            "again\n",
            "new session via {client}:\n{}",
            show(&out)
        );
    }
    assert!(server.alive(), "sshqd died; log:\n{}", server.log_text());
    for (what, client_port) in dropped {
        assert!(
            wait_until(Duration::from_secs(10), || log_mentions_port(
                &server.log_text(),
                client_port
            )),
            "sshqd's log does not mention the {what} client (port {client_port}):\n{}",
            server.log_text()
        );
    }
}

/// Kills whatever still runs with `pattern` in its command line (by pid),
/// so a failed test leaves nothing behind.
struct LeftoverReaper(String);

impl Drop for LeftoverReaper {
    fn drop(&mut self) {
        for pid in pgrep(&self.0) {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// A started client, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `sleep 300` under a unique name through sshqd, kills the client
/// (SIGKILL, so it cannot say goodbye) and checks the sleep goes away.
/// Over TCP the kernel tells sshqd at once that a killed client is gone.
const TCP_BOUND: Duration = Duration::from_secs(10);
/// Over QUIC nothing does: sshqd notices at its idle timeout, set to 20 s.
const QUIC_BOUND: Duration = Duration::from_secs(40);

fn no_child_left_behind(program: &str, extra: &[&str], bound: Duration) {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("QuicIdleTimeout 20", Listeners::Both);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let marker = format!("marker-{}-{nanos}", std::process::id());
    // The full name appears only in the sleep's own command line, not in
    // the client's or the shells' (which hold "$m-marker-...").
    let name = format!("sshq-{marker}");
    let _reaper = LeftoverReaper(name.clone());
    let script = format!("bash -c 'm=sshq; exec -a \"$m-{marker}\" sleep 300'");
    let args = lab.client_args("user", "accept-new", server.port, extra, &[&script]);
    let mut client = Running(
        Command::new(program)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the client"),
    );
    assert!(
        wait_until(Duration::from_secs(20), || !pgrep(&name).is_empty()),
        "the remote `sleep 300` never showed up as {name}; sshqd log:\n{}",
        server.log_text()
    );
    client.0.kill().expect("kill the client");
    let _ = client.0.wait();
    let gone = wait_until(bound, || pgrep(&name).is_empty());
    assert!(
        gone,
        "{bound:?} after {program} {extra:?} was killed, sshqd left {name} running (pids {:?}); log:\n{}",
        pgrep(&name),
        server.log_text()
    );
}

#[test]
fn no_child_left_behind_ssh() {
    no_child_left_behind("ssh", &[], TCP_BOUND);
}

#[test]
fn no_child_left_behind_ssh_with_pty() {
    no_child_left_behind("ssh", &["-tt"], TCP_BOUND);
}

#[test]
fn no_child_left_behind_sshq() {
    no_child_left_behind(SSHQ, &["-o", "Transport=tcp"], TCP_BOUND);
}

#[test]
fn no_child_left_behind_sshq_quic() {
    no_child_left_behind(SSHQ, &["-o", "Transport=quic"], QUIC_BOUND);
}

// With a pty, sshq asks for a reattachable session, which sshqd holds
// after a lost connection by design (tests/reattach.rs covers that, and
// its end after ClientReattachTimeout): these ask for an ordinary one.

#[test]
fn no_child_left_behind_sshq_with_pty() {
    let extra = ["-tt", "-o", "Transport=tcp", "-o", "Reattach=no"];
    no_child_left_behind(SSHQ, &extra, TCP_BOUND);
}

#[test]
fn no_child_left_behind_sshq_quic_with_pty() {
    let extra = ["-tt", "-o", "Transport=quic", "-o", "Reattach=no"];
    no_child_left_behind(SSHQ, &extra, QUIC_BOUND);
}
