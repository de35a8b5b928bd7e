//! Helpers of the hostile-input suites (`hostile_tcp.rs`, `hostile_quic.rs`):
//! raw sockets that misbehave, and the three things every case checks
//! afterwards — sshqd said why it refused (its log names the peer), it is
//! still running, and a legitimate client still gets its work done.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::{show, text, wait_until, Lab, Server, SSHQ};

/// A raw TCP connection to sshqd whose reads time out quickly, so that
/// [`closed_within`] can poll it.
pub fn raw_tcp(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to sshqd");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    stream
}

pub fn local_port(stream: &TcpStream) -> u16 {
    stream.local_addr().map(|a| a.port()).unwrap_or(0)
}

/// Reads (and keeps) until sshqd closes the connection (EOF or reset);
/// how long after `since` that was, or `None` if still open after `limit`.
pub fn closed_within(
    stream: &mut TcpStream,
    since: Instant,
    limit: Duration,
    seen: &mut Vec<u8>,
) -> Option<Duration> {
    let mut buf = [0u8; 16 * 1024];
    while since.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Some(since.elapsed()),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return Some(since.elapsed()),
        }
    }
    None
}

/// Writes `bytes`, ignoring a server that hangs up meanwhile (that is
/// often the point).
pub fn write_ignoring_hangup(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes);
}

/// Whether `log` names client port `port` ("... port 41234", not 412345).
pub fn log_mentions_port(log: &str, port: u16) -> bool {
    let needle = format!("port {port}");
    log.match_indices(&needle).any(|(at, _)| {
        !log[at + needle.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

/// Waits (up to 10 s) until sshqd's log has a line about client port
/// `port`; returns that line, or fails the test with `what` and the log.
pub fn expect_logged(server: &Server, port: u16, what: &str) -> String {
    let found = wait_until(Duration::from_secs(10), || {
        log_mentions_port(&server.log_text(), port)
    });
    let log = server.log_text();
    assert!(
        found,
        "{what}: sshqd's log says nothing about client port {port}:\n{log}"
    );
    log.lines()
        .find(|l| log_mentions_port(l, port))
        .unwrap_or_default()
        .to_string()
}

/// The client options that pick a transport for the legitimate client.
pub fn transport_opt(quic: bool) -> [&'static str; 2] {
    if quic {
        ["-o", "Transport=quic"]
    } else {
        ["-o", "Transport=tcp"]
    }
}

/// After an attack: sshqd still runs, and a real `sshq` (over QUIC or TCP)
/// logs in and runs a command as if nothing had happened.
pub fn assert_unharmed(lab: &Lab, server: &mut Server, quic: bool, what: &str) {
    assert!(
        server.alive(),
        "{what}: sshqd died; its log:\n{}",
        server.log_text()
    );
    let out = lab.client(
        SSHQ,
        "user",
        server.port,
        &transport_opt(quic),
        &["echo unharmed"],
        b"",
    );
    assert_eq!(
        (out.status.code(), text(&out.stdout).as_str()),
        (Some(0), "unharmed\n"),
        "{what}: a legitimate client afterwards:\n{}\nsshqd log:\n{}",
        show(&out),
        server.log_text()
    );
}

/// An address on loopback other than 127.0.0.1 (Linux routes all of
/// 127/8 to lo), to tell an attacker's connections from others in logs.
pub fn attacker_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 2], port))
}

/// An SSH binary packet (RFC 4253 §6) around `payload`, before any keys:
/// no MAC, zero padding to a multiple of 8, at least 4 bytes of it.
pub fn ssh_packet(payload: &[u8]) -> Vec<u8> {
    let mut padding = 8 - (5 + payload.len()) % 8;
    if padding < 4 {
        padding += 8;
    }
    let packet_length = 1 + payload.len() + padding;
    let mut packet = (packet_length as u32).to_be_bytes().to_vec();
    packet.push(padding as u8);
    packet.extend_from_slice(payload);
    packet.extend(std::iter::repeat_n(0u8, padding));
    packet
}

/// A client SSH_MSG_KEXINIT packet offering only `kex`, and for the rest
/// what an sshqd with an Ed25519 host key accepts; no guessed packet follows.
pub fn client_kexinit(kex: &str) -> Vec<u8> {
    let mut payload = vec![20u8]; // SSH_MSG_KEXINIT
    payload.extend_from_slice(&[0x5a; 16]); // cookie
    for list in [
        kex,
        "ssh-ed25519",
        "aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr",
        "aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr",
        "hmac-sha2-256-etm@openssh.com,hmac-sha2-256",
        "hmac-sha2-256-etm@openssh.com,hmac-sha2-256",
        "none",
        "none",
        "",
        "",
    ] {
        payload.extend_from_slice(&(list.len() as u32).to_be_bytes());
        payload.extend_from_slice(list.as_bytes());
    }
    payload.push(0); // first_kex_packet_follows
    payload.extend_from_slice(&0u32.to_be_bytes()); // reserved
    ssh_packet(&payload)
}
