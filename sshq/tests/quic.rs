//! What only sshq over QUIC has, on loopback: orderly disconnects seen at
//! once, one known_hosts line for both transports, sshqd's `Transports`,
//! the key-exchange choice, Transport=auto (against OpenSSH's TCP-only sshd
//! and against sshqd) and -L forwarding, where every forwarded connection
//! is its own QUIC stream. Sessions and ptys over QUIC are checks of the
//! direction matrix (tests/directions.rs, `sshq_quic_to_sshqd`). Each test
//! has its own lab.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::setup::{Dir, Setup};
use common::{concurrently, random_bytes, show, text, wait_until, Lab, Listeners, TcpService};

/// An orderly exit must reach the server at once (not at its idle timeout),
/// even for a session done within the client's first round trip.
#[test]
fn server_sees_orderly_disconnects_at_once() {
    let s = Setup::new(Dir::sshq_quic_to_sshqd);
    for _ in 0..5 {
        let out = s.run(&[], &["true"], b"");
        assert_eq!(out.status.code(), Some(0), "{}", s.show(&out));
    }
    assert_eq!(
        (s.logins_over("quic"), s.logins_over("tcp")),
        (5, 0),
        "logins by transport:\n{}",
        s.server_log()
    );
    let all_gone = wait_until(Duration::from_secs(5), || {
        s.server_log().matches("Disconnected from user").count() == 5
    });
    assert!(
        all_gone,
        "sshqd did not log 5 disconnects within 5 s:\n{}",
        s.server_log()
    );
}

/// accept-new over `first` records the host key; that same known_hosts
/// line, unchanged, then passes StrictHostKeyChecking=yes over `then`.
fn known_hosts_line_shared(first: &str, then: &str) {
    let s = Setup::new(Dir::sshq_quic_to_sshqd);
    let known_hosts = s.lab.path("known_hosts");
    let _ = std::fs::remove_file(&known_hosts);
    let first_opt = format!("Transport={first}");
    let out = s.run_as("user", "accept-new", &["-o", &first_opt], &["echo first"]);
    assert_eq!(out.status.code(), Some(0), "{}", s.show(&out));
    assert_eq!(text(&out.stdout), "first\n", "{}", s.show(&out));
    let recorded = std::fs::read_to_string(&known_hosts).unwrap_or_default();
    let lines: Vec<&str> = recorded.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "known_hosts after accept-new:\n{recorded}");
    let found = s.lab.run(
        "ssh-keygen",
        &[
            "-F".into(),
            format!("[127.0.0.1]:{}", s.port()),
            "-f".into(),
            known_hosts.display().to_string(),
        ],
        b"",
    );
    assert!(
        text(&found.stdout).contains(&s.lab.public_key_blob("host_ed25519")),
        "ssh-keygen -F does not find the server's key:\n{}\nknown_hosts:\n{recorded}",
        show(&found)
    );

    let then_opt = format!("Transport={then}");
    let out = s.run_as("user", "yes", &["-o", &then_opt], &["echo then"]);
    assert_eq!(out.status.code(), Some(0), "{}", s.show(&out));
    assert_eq!(text(&out.stdout), "then\n", "{}", s.show(&out));
    let after = std::fs::read_to_string(&known_hosts).unwrap_or_default();
    assert_eq!(after, recorded, "known_hosts changed");
    assert_eq!(
        (s.logins_over(first), s.logins_over(then)),
        (1, 1),
        "logins by transport:\n{}",
        s.server_log()
    );
}

#[test]
fn known_hosts_line_from_quic_works_over_tcp() {
    known_hosts_line_shared("quic", "tcp");
}

#[test]
fn known_hosts_line_from_tcp_works_over_quic() {
    known_hosts_line_shared("tcp", "quic");
}

/// `Transports quic`: nothing listens on TCP, QUIC works.
#[test]
fn transports_quic_only_has_no_tcp_listener() {
    let s = Setup::quic_with("Transports quic", Listeners::Quic);
    let refused = TcpStream::connect(("127.0.0.1", s.port()));
    assert!(
        matches!(&refused, Err(e) if e.kind() == ErrorKind::ConnectionRefused),
        "TCP connect to port {}: {refused:?}",
        s.port()
    );
    let out = s.run_as(
        "user",
        "accept-new",
        &["-o", "Transport=tcp"],
        &["echo reached"],
    );
    assert_eq!(out.status.code(), Some(255), "{}", s.show(&out));
    assert!(!text(&out.stdout).contains("reached"), "{}", s.show(&out));
    assert!(
        text(&out.stderr).contains("Connection refused"),
        "{}",
        s.show(&out)
    );
    let out = s.run(&[], &["echo over quic"], b"");
    assert_eq!(out.status.code(), Some(0), "{}", s.show(&out));
    assert_eq!(text(&out.stdout), "over quic\n", "{}", s.show(&out));
}

/// The key exchange `-v` reports: "... over quic; key exchange NAME".
fn reported_kex(out: &Output) -> Option<String> {
    text(&out.stderr).lines().find_map(|l| {
        let (_, rest) = l.split_once("over quic; key exchange ")?;
        Some(rest.trim().to_string())
    })
}

#[test]
fn kex_algorithms_choice_is_used_and_reported() {
    let s = Setup::new(Dir::sshq_quic_to_sshqd);
    let out = s.run(&["-v", "-o", "KexAlgorithms=x25519"], &["echo ok"], b"");
    assert_eq!(out.status.code(), Some(0), "{}", s.show(&out));
    assert_eq!(text(&out.stdout), "ok\n", "{}", s.show(&out));
    assert_eq!(
        reported_kex(&out).as_deref(),
        Some("x25519"),
        "{}",
        s.show(&out)
    );

    let out = s.run(&["-v"], &["echo ok"], b"");
    assert_eq!(out.status.code(), Some(0), "{}", s.show(&out));
    assert_eq!(
        reported_kex(&out).as_deref(),
        Some("x25519-sntrup761"),
        "{}",
        s.show(&out)
    );
}

#[test]
fn kex_algorithms_mismatch_fails_naming_what_we_offered() {
    let s = Setup::quic_with(
        "Transports quic,tcp\nKexAlgorithms x25519-sntrup761",
        Listeners::Both,
    );
    let out = s.run(
        &["-o", "KexAlgorithms=x25519-mlkem768"],
        &["echo reached"],
        b"",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{}", s.show(&out));
    assert!(!text(&out.stdout).contains("reached"), "{}", s.show(&out));
    assert!(
        stderr.contains("no key exchange algorithm in common")
            && stderr.contains("x25519-mlkem768"),
        "the message does not say what we offered:\n{}",
        s.show(&out)
    );
}

/// OpenSSH's sshd listens on TCP only: auto gives up on QUIC and runs the
/// command over TCP.
#[test]
fn auto_falls_back_to_tcp_against_openssh() {
    let lab = Lab::new();
    let sshd = lab.start_sshd();
    // Nothing answers QUIC there: the UDP port is free.
    drop(UdpSocket::bind(("127.0.0.1", sshd.port)).expect("the sshd port is in use on UDP"));
    let out = lab.sshq(
        sshd.port,
        &["-v", "-o", "Transport=auto"],
        &["exit 42"],
        b"",
    );
    let stderr = text(&out.stderr);
    let shown = format!("{}\nsshd log:\n{}", show(&out), sshd.log_text());
    assert_eq!(out.status.code(), Some(42), "{shown}");
    assert!(
        stderr.contains("Transport=auto")
            && (stderr.contains("falling back to TCP") || stderr.contains("using TCP")),
        "-v does not say it fell back to TCP:\n{shown}"
    );
    assert!(stderr.contains(" over tcp"), "{shown}");
}

#[test]
fn auto_uses_quic_against_sshqd() {
    let s = Setup::new(Dir::sshq_quic_to_sshqd);
    let out = s.run_as(
        "user",
        "accept-new",
        &["-v", "-o", "Transport=auto"],
        &["exit 42"],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(42), "{}", s.show(&out));
    assert!(
        stderr.contains("Transport=auto") && stderr.contains(" over quic"),
        "-v does not say QUIC was used:\n{}",
        s.show(&out)
    );
    assert_eq!(
        (s.logins_over("quic"), s.logins_over("tcp")),
        (1, 0),
        "{}",
        s.server_log()
    );
}

// --- -L forwarding over QUIC -------------------------------------------

/// How a test client talks to [`forward_target`]: its first byte chooses.
const ECHO: u8 = b'E';
const PAYLOAD: u8 = b'P';
const FIREHOSE: u8 = b'F';

/// Bytes [`PAYLOAD`] sends for each id.
const PAYLOAD_LEN: usize = 48 * 1024;

/// Limit on any one socket read or write in these tests.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// The known payload for connection `id` (xorshift, seeded by the id).
fn payload(id: u32) -> Vec<u8> {
    let mut x = u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..PAYLOAD_LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// The TCP server behind the forwards. After the first byte: ECHO echoes
/// until EOF; PAYLOAD reads a u32 id and sends [`payload`]; FIREHOSE
/// sends without end, counting bytes in `fired`. No first byte: nothing.
fn forward_target(fired: Arc<AtomicU64>) -> TcpService {
    TcpService::start(move |mut stream| {
        let mut mode = [0u8; 1];
        if stream.read_exact(&mut mode).is_err() {
            return;
        }
        match mode[0] {
            ECHO => {
                let mut reader = stream.try_clone().expect("clone");
                let _ = std::io::copy(&mut reader, &mut stream);
                let _ = stream.shutdown(Shutdown::Write);
            }
            PAYLOAD => {
                let mut id = [0u8; 4];
                if stream.read_exact(&mut id).is_ok() {
                    let _ = stream.write_all(&payload(u32::from_be_bytes(id)));
                }
            }
            FIREHOSE => {
                let chunk = vec![0x5a; 64 * 1024];
                while stream.write_all(&chunk).is_ok() {
                    fired.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            }
            _ => {}
        }
    })
}

fn connect_local(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the forward");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream
}

/// Sends `data` through an ECHO connection while reading the echo; returns
/// what came back by EOF.
fn echo_through(port: u16, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = connect_local(port);
    let mut writer = stream.try_clone()?;
    let sent = data.to_vec();
    let writing = std::thread::spawn(move || -> std::io::Result<()> {
        writer.write_all(&[ECHO])?;
        writer.write_all(&sent)?;
        writer.shutdown(Shutdown::Write)
    });
    let mut back = Vec::new();
    stream.read_to_end(&mut back)?;
    writing.join().expect("writer thread")?;
    Ok(back)
}

#[test]
fn local_forward_50_concurrent_connections() {
    let s = Setup::new(Dir::sshq_quic_to_sshqd);
    let target = forward_target(Arc::default());
    let (client, local) = s.local_forward(&[], target.port);
    let failures = concurrently(50, move |i| {
        let data = random_bytes(256 * 1024 + i as usize);
        match echo_through(local, &data) {
            Ok(back) if back == data => Ok(()),
            Ok(back) => Err(format!(
                "{} bytes back, differing from the {} sent",
                back.len(),
                data.len()
            )),
            Err(e) => Err(e.to_string()),
        }
    });
    s.assert_none_failed(&failures, 50, &client);
}

#[test]
fn local_forward_200_channels_on_one_connection() {
    let s = Setup::new(Dir::sshq_quic_to_sshqd);
    let target = forward_target(Arc::default());
    let (client, local) = s.local_forward(&[], target.port);
    let failures = concurrently(200, move |id| {
        let mut stream = connect_local(local);
        let mut request = vec![PAYLOAD];
        request.extend_from_slice(&id.to_be_bytes());
        stream.write_all(&request).map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        stream.read_to_end(&mut got).map_err(|e| e.to_string())?;
        if got == payload(id) {
            Ok(())
        } else {
            Err(format!(
                "{} bytes, not the {PAYLOAD_LEN}-byte payload of id {id}",
                got.len()
            ))
        }
    });
    s.assert_none_failed(&failures, 200, &client);
    // One QUIC connection carried them all.
    assert_eq!(s.logins_over("quic"), 1, "{}", s.server_log());
}

/// Connection A receives a flood it never reads, until flow control stops
/// it; connection B, through the same sshq, still round-trips.
#[test]
fn stalled_forward_does_not_stall_another() {
    let s = Setup::new(Dir::sshq_quic_to_sshqd);
    let fired = Arc::new(AtomicU64::new(0));
    let target = forward_target(fired.clone());
    let (client, local) = s.local_forward(&[], target.port);

    let mut a = connect_local(local);
    a.write_all(&[FIREHOSE]).expect("start the flood");
    // Stalled: the flood stops growing for a second (every buffer on the way is full).
    let mut last = u64::MAX;
    let stalled = wait_until(Duration::from_secs(30), || {
        std::thread::sleep(Duration::from_millis(950));
        let now = fired.load(Ordering::Relaxed);
        let same = now == last && now > 0;
        last = now;
        same
    });
    assert!(
        stalled,
        "the flood to unread connection A never stopped ({} bytes sent)",
        fired.load(Ordering::Relaxed)
    );
    println!("A stalled after {} bytes", fired.load(Ordering::Relaxed));

    let data = random_bytes(1 << 20);
    let started = Instant::now();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let sent = data.clone();
    std::thread::spawn(move || {
        let _ = done_tx.send(echo_through(local, &sent));
    });
    let b = done_rx.recv_timeout(Duration::from_secs(20));
    let flooded = fired.load(Ordering::Relaxed);
    match b {
        Ok(Ok(back)) => assert!(back == data, "B: {} bytes back, not the {} sent", back.len(), data.len()),
        Ok(Err(e)) => panic!("B failed after {:?}: {e}\nsshq log:\n{}", started.elapsed(), client.log_text()),
        Err(_) => panic!(
            "B's round trip did not complete within 20 s while A was stalled ({flooded} bytes queued for A)\n\
             sshq log:\n{}\n{}",
            client.log_text(),
            s.server_log()
        ),
    }
    // A was stalled, not broken: its data is still there to read.
    let mut first = vec![0u8; 1 << 20];
    a.read_exact(&mut first).expect("read A after B");
    assert!(first.iter().all(|&b| b == 0x5a), "A's data is corrupted");
}

/// A host known_hosts records only by its ECDSA key: over TCP sshq asks
/// for that key type (as ssh does) instead of calling it changed; QUIC,
/// which only carries the Ed25519 key, is skipped by Transport=auto and
/// refused with an explanation by Transport=quic.
#[test]
fn host_known_only_by_ecdsa_key() {
    let lab = Lab::new();
    lab.keygen("host_ecdsa", "ecdsa", "host-ecdsa");
    let config = format!(
        "Transports quic,tcp\nHostKey {}",
        lab.path("host_ecdsa").display()
    );
    let s = Setup::quic_in(lab, &config, Listeners::Both);
    s.lab.write_known_hosts(s.port(), "host_ecdsa");

    let tcp = s.run_as("user", "yes", &["-o", "Transport=tcp"], &["echo via-tcp"]);
    assert_eq!(text(&tcp.stdout), "via-tcp\n", "{}", s.show(&tcp));

    let auto = s.run_as(
        "user",
        "yes",
        &["-o", "Transport=auto", "-v"],
        &["echo via-auto"],
    );
    assert_eq!(text(&auto.stdout), "via-auto\n", "{}", s.show(&auto));
    assert!(
        text(&auto.stderr).contains("no Ed25519 key"),
        "-v should say why QUIC was skipped:\n{}",
        s.show(&auto)
    );

    let quic = s.run_as("user", "yes", &["-o", "Transport=quic"], &["echo via-quic"]);
    assert_eq!(quic.status.code(), Some(255), "{}", s.show(&quic));
    assert!(
        text(&quic.stderr).contains("known only by its ecdsa-sha2-nistp256 host key"),
        "{}",
        s.show(&quic)
    );
    assert!(
        !text(&quic.stderr).contains("CHANGED"),
        "not a changed key:\n{}",
        s.show(&quic)
    );
    assert_eq!(
        (s.logins_over("tcp"), s.logins_over("quic")),
        (2, 0),
        "{}",
        s.server_log()
    );
}
