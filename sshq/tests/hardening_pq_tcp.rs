//! Post-quantum key exchange on the TCP path, and one `KexAlgorithms` list
//! for both transports (issue 10): sshq and sshqd negotiate
//! sntrup761x25519-sha512 with OpenSSH 9.2 in both directions, a classical
//! list forces classical, a post-quantum-only list refuses a classical peer
//! with OpenSSH's words, and a list written in either vocabulary restricts
//! both TCP and QUIC, so dropping UDP cannot bypass a policy.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Output;
use std::time::{Duration, Instant};

use common::hostile::{client_kexinit, ssh_packet};
use common::{show, text, wait_until, Lab, Listeners, Server};
use sshq_core::kex::{resolve, Role};
use sshq_core::transport::TransportKind;

/// The sntrup761 hybrid under its IANA name (OpenSSH 9.9+, and Debian's
/// 9.2 since the backport) and under the name every OpenSSH 8.5+ knows.
const SNTRUP: &str = "sntrup761x25519-sha512";
const SNTRUP_OPENSSH: &str = "sntrup761x25519-sha512@openssh.com";

/// The `-v` line naming the key exchange (ssh's and sshq's wording).
fn kex_line(out: &Output) -> String {
    text(&out.stderr)
        .lines()
        .find(|l| l.contains("kex: algorithm: "))
        .unwrap_or("(no `kex: algorithm:` line)")
        .to_string()
}

fn ran(out: &Output, server: &Server) -> String {
    format!("{}\nserver log:\n{}", show(out), server.log_text())
}

/// The command ran, and `-v` names one of `kex` as the key exchange.
fn assert_ran_with_kex(out: &Output, server: &Server, kex: &[&str]) {
    assert_eq!(out.status.code(), Some(0), "{}", ran(out, server));
    assert_eq!(text(&out.stdout), "pq-ok\n", "{}", ran(out, server));
    let line = kex_line(out);
    assert!(
        kex.iter()
            .any(|k| line.ends_with(&format!("kex: algorithm: {k}"))),
        "expected one of {kex:?}, got {line:?}\n{}",
        ran(out, server)
    );
}

fn assert_refused_no_matching_kex(out: &Output, server: &Server) {
    assert_eq!(out.status.code(), Some(255), "{}", ran(out, server));
    assert!(
        text(&out.stderr).contains("no matching key exchange method found"),
        "{}",
        ran(out, server)
    );
    assert!(text(&out.stdout).is_empty(), "{}", ran(out, server));
}

#[test]
fn sshq_tcp_to_openssh_sshd_negotiates_sntrup761() {
    let lab = Lab::new();
    let sshd = lab.start_sshd();
    let out = lab.sshq(
        sshd.port,
        &["-v", "-o", "Transport=tcp"],
        &["echo pq-ok"],
        b"",
    );
    assert_ran_with_kex(&out, &sshd, &[SNTRUP, SNTRUP_OPENSSH]);
    // The name OpenSSH 9.0-9.8 all know, on its own.
    let only_openssh_name = format!("KexAlgorithms={SNTRUP_OPENSSH}");
    let out = lab.sshq(
        sshd.port,
        &["-v", "-o", "Transport=tcp", "-o", &only_openssh_name],
        &["echo pq-ok"],
        b"",
    );
    assert_ran_with_kex(&out, &sshd, &[SNTRUP_OPENSSH]);
}

#[test]
fn openssh_ssh_to_sshqd_negotiates_sntrup761() {
    let lab = Lab::new();
    let sshqd = lab.start_sshqd("");
    let out = lab.ssh(sshqd.port, &["-v"], &["echo pq-ok"], b"");
    assert_ran_with_kex(&out, &sshqd, &[SNTRUP, SNTRUP_OPENSSH]);
    for name in [SNTRUP, SNTRUP_OPENSSH] {
        let only = format!("KexAlgorithms={name}");
        let out = lab.ssh(sshqd.port, &["-v", "-o", &only], &["echo pq-ok"], b"");
        assert_ran_with_kex(&out, &sshqd, &[name]);
    }
}

#[test]
fn kex_algorithms_curve25519_forces_classical_both_ways() {
    let lab = Lab::new();
    let sshd = lab.start_sshd();
    let out = lab.sshq(
        sshd.port,
        &[
            "-v",
            "-o",
            "Transport=tcp",
            "-o",
            "KexAlgorithms=curve25519-sha256",
        ],
        &["echo pq-ok"],
        b"",
    );
    assert_ran_with_kex(&out, &sshd, &["curve25519-sha256"]);

    let sshqd = lab.start_sshqd("KexAlgorithms curve25519-sha256");
    let out = lab.ssh(sshqd.port, &["-v"], &["echo pq-ok"], b"");
    assert_ran_with_kex(&out, &sshqd, &["curve25519-sha256"]);
}

#[test]
fn post_quantum_only_refuses_a_classical_peer_clearly() {
    let lab = Lab::new();
    // sshq, post-quantum only, against an sshd that only does curve25519.
    let sshd = lab.start_sshd_with("KexAlgorithms curve25519-sha256");
    let pq_only = format!("KexAlgorithms={SNTRUP_OPENSSH},mlkem768x25519-sha256");
    let out = lab.sshq(
        sshd.port,
        &["-o", "Transport=tcp", "-o", &pq_only],
        &["echo pq-ok"],
        b"",
    );
    assert_refused_no_matching_kex(&out, &sshd);
    assert!(
        text(&out.stderr).contains("Their offer: curve25519-sha256"),
        "{}",
        ran(&out, &sshd)
    );

    // sshqd, post-quantum only in QUIC's words, against a classical ssh:
    // the QUIC name restricts TCP as well.
    let sshqd = lab.start_sshqd("KexAlgorithms x25519-sntrup761");
    let out = lab.ssh(
        sshqd.port,
        &["-o", "KexAlgorithms=curve25519-sha256"],
        &["echo pq-ok"],
        b"",
    );
    assert_refused_no_matching_kex(&out, &sshqd);
    assert!(
        text(&out.stderr).contains(&format!("Their offer: {SNTRUP},{SNTRUP_OPENSSH},")),
        "{}",
        ran(&out, &sshqd)
    );
}

#[test]
fn sshqd_default_refuses_the_costly_diffie_hellman_groups() {
    let lab = Lab::new();
    let sshqd = lab.start_sshqd("");
    let big_groups = "KexAlgorithms=diffie-hellman-group-exchange-sha256,\
                      diffie-hellman-group16-sha512,diffie-hellman-group18-sha512";
    let out = lab.ssh(sshqd.port, &["-o", big_groups], &["echo pq-ok"], b"");
    assert_refused_no_matching_kex(&out, &sshqd);
    // The 2048-bit group stays for clients without elliptic curves.
    let out = lab.ssh(
        sshqd.port,
        &["-v", "-o", "KexAlgorithms=diffie-hellman-group14-sha256"],
        &["echo pq-ok"],
        b"",
    );
    assert_ran_with_kex(&out, &sshqd, &["diffie-hellman-group14-sha256"]);
}

#[test]
fn an_openssh_style_list_restricts_quic_too() {
    let lab = Lab::new();
    let sshqd = lab.start_sshqd_on(
        &format!("Transports quic,tcp\nKexAlgorithms {SNTRUP_OPENSSH}"),
        Listeners::Both,
    );
    // Over QUIC, the sshqd accepts only the sntrup761 group...
    let out = lab.sshq(
        sshqd.port,
        &["-v", "-o", "Transport=quic"],
        &["echo pq-ok"],
        b"",
    );
    assert_eq!(out.status.code(), Some(0), "{}", ran(&out, &sshqd));
    assert!(
        text(&out.stderr).contains("key exchange x25519-sntrup761"),
        "{}",
        ran(&out, &sshqd)
    );
    // ...so a client offering plain X25519 (by its OpenSSH name) is refused.
    let out = lab.sshq(
        sshqd.port,
        &[
            "-o",
            "Transport=quic",
            "-o",
            "KexAlgorithms=curve25519-sha256",
        ],
        &["echo pq-ok"],
        b"",
    );
    assert_eq!(out.status.code(), Some(255), "{}", ran(&out, &sshqd));
    assert!(
        text(&out.stderr).contains("no key exchange algorithm in common"),
        "{}",
        ran(&out, &sshqd)
    );

    // A client list QUIC can do nothing with fails QUIC with the reason.
    let out = lab.sshq(
        sshqd.port,
        &[
            "-o",
            "Transport=quic",
            "-o",
            "KexAlgorithms=diffie-hellman-group14-sha256",
        ],
        &["echo pq-ok"],
        b"",
    );
    assert_eq!(out.status.code(), Some(255), "{}", ran(&out, &sshqd));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no matching key exchange method found") && stderr.contains("quic"),
        "{}",
        ran(&out, &sshqd)
    );
}

#[test]
fn transport_auto_keeps_the_policy_over_tcp() {
    let lab = Lab::new();
    // No QUIC listener, and only classical key exchange over TCP: a
    // post-quantum-only client (in QUIC's words) must not end up classical.
    let classical = lab.start_sshqd("Transports tcp\nKexAlgorithms curve25519-sha256");
    let out = lab.sshq(
        classical.port,
        &[
            "-o",
            "KexAlgorithms=x25519-sntrup761,x25519-mlkem768",
            "-o",
            "QuicFallbackTimeout=100ms",
        ],
        &["echo pq-ok"],
        b"",
    );
    assert_refused_no_matching_kex(&out, &classical);

    // A list QUIC can do nothing with: auto uses TCP, which can.
    let both = lab.start_sshqd_on("Transports quic,tcp", Listeners::Both);
    let out = lab.sshq(
        both.port,
        &["-v", "-o", "KexAlgorithms=diffie-hellman-group14-sha256"],
        &["echo pq-ok"],
        b"",
    );
    assert_ran_with_kex(&out, &both, &["diffie-hellman-group14-sha256"]);
}

#[test]
fn bad_kex_lists_are_refused_at_configuration_time() {
    let lab = Lab::new();
    let config = lab.write_sshqd_config(
        common::free_port(),
        &[lab.path("host_ed25519")],
        "KexAlgorithms sntrup761x25519-sha512,no-such-kex",
    );
    let out = lab.sshqd_refusing(&config);
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("Bad SSH2 KexAlgorithms")
            && text(&out.stderr).contains("no-such-kex"),
        "{}",
        show(&out)
    );

    // A list that leaves the QUIC listener nothing, with QUIC served.
    let config = lab.write_sshqd_config(
        common::free_port(),
        &[lab.path("host_ed25519")],
        "Transports quic,tcp\nKexAlgorithms diffie-hellman-group14-sha256",
    );
    let out = lab.sshqd_refusing(&config);
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("no matching key exchange method found"),
        "{}",
        show(&out)
    );

    let out = lab.sshq(1, &["-o", "KexAlgorithms=bogus"], &["true"], b"");
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("Bad SSH2 KexAlgorithms 'bogus'"),
        "{}",
        show(&out)
    );
}

#[test]
fn kex_names_map_across_transports() {
    let tcp = |spec| resolve(Some(spec), TransportKind::Tcp, Role::Client).unwrap();
    let quic = |spec| resolve(Some(spec), TransportKind::Quic, Role::Client).unwrap();
    assert_eq!(quic(SNTRUP_OPENSSH), ["x25519-sntrup761"]);
    assert_eq!(quic(SNTRUP), ["x25519-sntrup761"]);
    assert_eq!(quic("mlkem768x25519-sha256"), ["x25519-mlkem768"]);
    assert_eq!(quic("curve25519-sha256@libssh.org"), ["x25519"]);
    assert_eq!(tcp("x25519-mlkem768"), ["mlkem768x25519-sha256"]);
    assert_eq!(tcp("x25519-sntrup761"), [SNTRUP, SNTRUP_OPENSSH]);
    assert_eq!(
        tcp("x25519"),
        ["curve25519-sha256", "curve25519-sha256@libssh.org"]
    );
    // Defaults: post-quantum first on both, as OpenSSH 10 orders them.
    assert_eq!(
        resolve(None, TransportKind::Tcp, Role::Server).unwrap()[..3],
        ["mlkem768x25519-sha256", SNTRUP, SNTRUP_OPENSSH]
    );
}

/// Reads exactly `n` bytes, or `None` if sshqd closed the connection (or
/// went quiet for 10 s) first.
fn read_n(stream: &mut TcpStream, n: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    let start = Instant::now();
    while got < n && start.elapsed() < Duration::from_secs(10) {
        match stream.read(&mut buf[got..]) {
            Ok(0) => return None,
            Ok(k) => got += k,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return None,
        }
    }
    (got == n).then_some(buf)
}

/// The payload of the next unencrypted packet sshqd sends.
fn read_packet(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let length = read_n(stream, 4)?;
    let length = u32::from_be_bytes(length.try_into().unwrap()) as usize;
    assert!((5..=35000).contains(&length), "packet_length {length}");
    let body = read_n(stream, length)?;
    let padding = body[0] as usize;
    Some(body[1..length - padding].to_vec())
}

/// Whether sshqd closes the connection within 10 s (reading and dropping
/// whatever it still sends).
fn closed_within_10s(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

/// Connects over raw TCP, exchanges banners and KEXINITs choosing `kex`
/// (checking sshqd offers it, so it is what both sides negotiate), then
/// sends `init` as the key exchange's first message. Returns the stream and
/// the payload of sshqd's answer, `None` if it hung up instead.
fn kex_with_init(port: u16, kex: &str, init: &[u8]) -> (TcpStream, Option<Vec<u8>>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to sshqd");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    stream
        .write_all(b"SSH-2.0-ShortKexInit_1.0\r\n")
        .expect("send banner");
    stream
        .write_all(&client_kexinit(kex))
        .expect("send KEXINIT");
    // sshqd's banner line, then its KEXINIT.
    let mut line = Vec::new();
    while !line.ends_with(b"\n") {
        line.extend(read_n(&mut stream, 1).expect("sshqd's banner"));
    }
    assert!(line.starts_with(b"SSH-2.0-"), "banner {:?}", text(&line));
    let server_kexinit = read_packet(&mut stream).expect("sshqd's KEXINIT");
    assert_eq!(server_kexinit[0], 20, "SSH_MSG_KEXINIT expected");
    // After the type byte and the 16-byte cookie: the kex name-list.
    let len = u32::from_be_bytes(server_kexinit[17..21].try_into().unwrap()) as usize;
    let offered = text(&server_kexinit[21..21 + len]);
    assert!(
        offered.split(',').any(|name| name == kex),
        "sshqd does not offer {kex}: {offered}"
    );
    stream.write_all(&ssh_packet(init)).expect("send the init");
    let answer = read_packet(&mut stream);
    (stream, answer)
}

/// A key exchange message too short to hold its length field must make
/// sshqd close that connection, without a panic, and go on serving others.
/// (russh 0.65.1's `server_dh` reads the length unchecked; its server state
/// machine decodes the message first and refuses it there, and the vendored
/// russh now checks in `server_dh` too: third_party/russh/PATCHES.md,
/// change 2. This test holds the behaviour end to end, whichever refuses.)
#[test]
fn a_truncated_kex_ecdh_init_is_refused_without_a_panic() {
    let lab = Lab::new();
    let mut sshqd = lab.start_sshqd("");

    // The framing and KEXINIT are right: a well-formed curve25519 init
    // (the base point, u = 9) gets SSH_MSG_KEX_ECDH_REPLY.
    let mut good = vec![30u8, 0, 0, 0, 32, 9];
    good.extend_from_slice(&[0u8; 31]);
    let (_stream, answer) = kex_with_init(sshqd.port, "curve25519-sha256", &good);
    assert_eq!(
        answer.as_ref().and_then(|a| a.first()),
        Some(&31),
        "expected SSH_MSG_KEX_ECDH_REPLY\nsshqd log:\n{}",
        sshqd.log_text()
    );

    // SSH_MSG_KEX_ECDH_INIT (30, also ML-KEM's KEX_HYBRID_INIT) and two bytes
    // of a four-byte length, under each kind of exchange sshqd offers.
    let short_init = [30u8, 0, 0];
    for kex in [
        "curve25519-sha256",
        "mlkem768x25519-sha256",
        SNTRUP,
        "ecdh-sha2-nistp256",
        "diffie-hellman-group14-sha256",
    ] {
        let (mut stream, answer) = kex_with_init(sshqd.port, kex, &short_init);
        assert!(
            answer.is_none() || answer.as_ref().is_some_and(|a| a[0] == 1),
            "{kex}: sshqd answered a 3-byte init with {answer:?}\nsshqd log:\n{}",
            sshqd.log_text()
        );
        assert!(
            closed_within_10s(&mut stream),
            "{kex}: sshqd kept the connection open\nsshqd log:\n{}",
            sshqd.log_text()
        );
    }

    // Each connection's task has ended by now; a panic would be logged.
    std::thread::sleep(Duration::from_millis(300));
    assert!(sshqd.alive(), "sshqd died\n{}", sshqd.log_text());
    let log = sshqd.log_text();
    assert!(!log.contains("panicked"), "sshqd panicked:\n{log}");

    // And it still serves a normal login.
    let out = lab.sshq(
        sshqd.port,
        &["-v", "-o", "Transport=tcp"],
        &["echo pq-ok"],
        b"",
    );
    assert_ran_with_kex(&out, &sshqd, &["mlkem768x25519-sha256"]);
    assert!(
        wait_until(Duration::from_secs(1), || sshqd.alive()),
        "sshqd died after the login"
    );
    assert!(
        !sshqd.log_text().contains("panicked"),
        "{}",
        sshqd.log_text()
    );
}

/// The code russh runs to combine the two secrets of
/// sntrup761x25519-sha512 (third_party/russh, see its PATCHES.md), checked
/// here since the vendored crate's own tests are not part of the workspace.
#[path = "../../third_party/russh/src/kex/hybrid_sntrup/secret.rs"]
mod russh_sntrup_secret;

#[test]
fn hybrid_secret_combination_known_answer() {
    // sntrup761 key 00..1f, X25519 secret 20..3f: K = SHA-512(00..3f),
    // computed independently (Python hashlib.sha512(bytes(range(64)))).
    let sntrup_key: Vec<u8> = (0u8..32).collect();
    let mut x25519 = [0u8; 32];
    for (byte, value) in x25519.iter_mut().zip(32u8..) {
        *byte = value;
    }
    let k = russh_sntrup_secret::combine_secrets(&sntrup_key, &x25519);
    let hex: String = k.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "ee4320ebaf3fdb4f2c832b137200c08e235e0fa7bbd0eb1740c7063ba8a0d151\
         da77e003398e1714a955d475b05e3e950b639503b452ec185de4229bc4873949"
    );
    assert_eq!(k.len(), russh_sntrup_secret::COMBINED_SECRET_SIZE);
}
