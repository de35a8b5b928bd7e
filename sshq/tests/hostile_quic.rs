//! sshqd's QUIC side (sshq/1) against hostile peers, protocol level: frames
//! written by hand on the control stream and on channel streams (bad and
//! oversized lengths, truncation, unknown types and channel kinds, frames
//! out of order, replies nobody asked for), replayed and mismatched
//! signatures, stream floods before and after login, many tiny frames,
//! garbage datagrams instead of QUIC, and a foreign ALPN.
//!
//! Every case checks three things: sshqd refused clearly (the QUIC error
//! code the draft gives, and/or a log line naming the peer), sshqd is
//! still running, and a legitimate `sshq` client works right after.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::hostile::{assert_unharmed, expect_logged};
use common::raw_quic::{
    client_config, client_endpoint, data, exec, load_private, load_public, open_session, raw_frame,
    string, userauth, Next, RawClient,
};
use common::{random_bytes, text, Lab, Listeners, Server};
use sshq_core::ssh_key::{PrivateKey, PublicKey};
use sshq_quic::wire::{msg, ErrorCode, MAX_FRAME_LEN};
use sshq_test_kit::quinn;

/// A lab with sshqd serving QUIC (and TCP), and the keys a raw client needs.
struct QuicLab {
    lab: Lab,
    server: Server,
    host: PublicKey,
    user_key: PrivateKey,
    stranger: PrivateKey,
}

impl QuicLab {
    fn start(extra: &str) -> QuicLab {
        let lab = Lab::new();
        let server = lab.start_sshqd_on(&format!("Transports quic,tcp\n{extra}"), Listeners::Both);
        QuicLab {
            host: load_public(&lab.path("host_ed25519.pub")),
            user_key: load_private(&lab.path("user")),
            stranger: load_private(&lab.path("stranger")),
            lab,
            server,
        }
    }

    async fn raw(&self) -> RawClient {
        RawClient::connect(self.server.port, &self.host).await
    }

    async fn logged_in(&self) -> RawClient {
        let mut client = self.raw().await;
        client.login(&self.user_key, &self.lab.user).await;
        client
    }

    /// The final checks, off the async threads (they run real clients).
    async fn unharmed(self, what: &str) {
        let what = what.to_string();
        tokio::task::spawn_blocking(move || {
            let QuicLab {
                lab, mut server, ..
            } = self;
            assert_unharmed(&lab, &mut server, true, &what);
        })
        .await
        .expect("the final checks");
    }
}

/// A length field past MAX_FRAME_LEN, then a type octet and a few octets.
fn too_long_frame() -> Vec<u8> {
    let mut bytes = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes().to_vec();
    bytes.push(msg::CHANNEL_DATA);
    bytes.extend_from_slice(&[0; 16]);
    bytes
}

/// A 4 GiB - 1 length field: must be refused without waiting for the octets.
fn four_gib_frame() -> Vec<u8> {
    let mut bytes = vec![0xff, 0xff, 0xff, 0xff, msg::CHANNEL_DATA];
    bytes.extend_from_slice(&[0; 16]);
    bytes
}

const UNKNOWN_TYPE: u8 = 7;

fn request_success() -> Vec<u8> {
    raw_frame(msg::REQUEST_SUCCESS, b"")
}

// --- the control stream before login: each closes with PROTOCOL_ERROR -----

/// Sends `bytes` on a fresh connection's control stream before login (and
/// FIN when `finish`), expects CONNECTION_CLOSE with PROTOCOL_ERROR promptly
/// and a log line; then the usual checks.
async fn control_before_login(bytes: &[u8], finish: bool, what: &str) {
    let q = QuicLab::start("LoginGraceTime 60");
    let mut client = q.raw().await;
    let port = client.local_port();
    let started = Instant::now();
    client.send_control(bytes).await;
    if finish {
        let _ = client.control.finish();
    }
    client.expect_close(ErrorCode::ProtocolError, what).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{what}: closed only after {:?} (LoginGraceTime 60)",
        started.elapsed()
    );
    let line = expect_logged(&q.server, port, what);
    println!("{what}: sshqd logged: {line}");
    q.unharmed(what).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_zero_length_frame() {
    control_before_login(&[0, 0, 0, 0, msg::USERAUTH_REQUEST], false, "length 0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_four_gib_length() {
    control_before_login(&four_gib_frame(), false, "a 4 GiB length").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_length_one_past_the_maximum() {
    control_before_login(&too_long_frame(), false, "MAX_FRAME_LEN + 1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_unknown_frame_type() {
    control_before_login(
        &raw_frame(UNKNOWN_TYPE, b"trailing junk"),
        false,
        "an unknown frame type",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_truncated_frame_then_fin() {
    let q_frame = raw_frame(msg::USERAUTH_REQUEST, &[0; 64]);
    control_before_login(&q_frame[..20], true, "a frame cut by FIN").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_malformed_userauth_request() {
    // A user name whose string length runs past the frame.
    let mut payload = Vec::new();
    payload.extend_from_slice(&1000u32.to_be_bytes());
    payload.extend_from_slice(b"root");
    control_before_login(
        &raw_frame(msg::USERAUTH_REQUEST, &payload),
        false,
        "a string past the frame's end",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsolicited_reply_before_login() {
    control_before_login(&request_success(), false, "REQUEST_SUCCESS before login").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_frame_on_the_control_stream() {
    control_before_login(&open_session(), false, "CHANNEL_OPEN on the control stream").await;
}

// --- the control stream after login -------------------------------------

/// Sends `bytes` on a logged-in connection's control stream; expects
/// CONNECTION_CLOSE with PROTOCOL_ERROR, a bystander unaffected.
async fn control_after_login(make: impl Fn(&QuicLab, &RawClient) -> Vec<u8>, what: &str) {
    let q = QuicLab::start("");
    let bystander = q.logged_in().await;
    let mut client = q.logged_in().await;
    let bytes = make(&q, &client);
    client.send_control(&bytes).await;
    client.expect_close(ErrorCode::ProtocolError, what).await;
    let mut session = bystander.session().await;
    assert_eq!(
        session.run("echo bystander").await,
        (b"bystander\n".to_vec(), Some(0)),
        "{what}: another connection"
    );
    q.unharmed(what).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsolicited_reply_on_the_control_stream() {
    control_after_login(|_, _| request_success(), "REQUEST_SUCCESS with no request").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userauth_request_after_login() {
    control_after_login(
        |q, client| userauth(&q.user_key, &client.exporter, &q.lab.user, &q.lab.user),
        "a second USERAUTH_REQUEST",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_four_gib_length_after_login() {
    control_after_login(|_, _| four_gib_frame(), "a 4 GiB length after login").await;
}

// --- channel streams: each resets only its stream -------------------------

/// Writes `bytes` on a new stream (after a confirmed OPEN when `opened`),
/// expects RESET_STREAM with PROTOCOL_ERROR, and a session beside it on the
/// same connection to carry on.
async fn channel_reset(bytes: &[u8], opened: bool, what: &str) {
    let q = QuicLab::start("");
    let client = q.logged_in().await;
    let mut healthy = client.session().await;
    let mut bad = if opened {
        let mut channel = client.session().await;
        channel.write(bytes).await;
        channel
    } else {
        client.stream(bytes).await
    };
    bad.expect_protocol_reset(what).await;
    assert_eq!(
        healthy.run("echo beside").await,
        (b"beside\n".to_vec(), Some(0)),
        "{what}: the channel beside it"
    );
    assert!(
        client.conn.close_reason().is_none(),
        "{what}: the whole connection was closed"
    );
    q.unharmed(what).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_length_one_past_the_maximum() {
    channel_reset(&too_long_frame(), true, "MAX_FRAME_LEN + 1 on a channel").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_four_gib_length() {
    channel_reset(&four_gib_frame(), true, "a 4 GiB length on a channel").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_zero_length_as_first_frame() {
    channel_reset(
        &[0, 0, 0, 0, msg::CHANNEL_OPEN],
        false,
        "length 0 as the OPEN",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_unknown_frame_type() {
    channel_reset(
        &raw_frame(UNKNOWN_TYPE, b"x"),
        true,
        "an unknown type on a channel",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_request_before_open() {
    channel_reset(&exec("echo early", true), false, "exec before CHANNEL_OPEN").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_before_open() {
    channel_reset(&data(b"no channel yet"), false, "DATA before CHANNEL_OPEN").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_open_on_one_stream() {
    channel_reset(&open_session(), true, "a second CHANNEL_OPEN").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_confirmation_from_the_opener() {
    channel_reset(
        &raw_frame(msg::CHANNEL_OPEN_CONFIRMATION, b""),
        true,
        "CHANNEL_OPEN_CONFIRMATION sent by the opener",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsolicited_reply_on_a_channel() {
    channel_reset(
        &raw_frame(msg::CHANNEL_SUCCESS, b""),
        true,
        "CHANNEL_SUCCESS with no request",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userauth_request_on_a_channel() {
    channel_reset(
        &raw_frame(msg::USERAUTH_REQUEST, b""),
        true,
        "USERAUTH_REQUEST on a channel",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_with_a_boolean_of_2() {
    let mut payload = Vec::new();
    string(&mut payload, b"exec");
    payload.push(2);
    string(&mut payload, b"true");
    channel_reset(
        &raw_frame(msg::CHANNEL_REQUEST, &payload),
        true,
        "want-reply 2",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_frame_cut_by_fin() {
    let q = QuicLab::start("");
    let client = q.logged_in().await;
    let mut channel = client.session().await;
    channel.write(&data(b"0123456789")[..8]).await;
    let _ = channel.send.finish();
    channel
        .expect_protocol_reset("a DATA frame cut by FIN")
        .await;
    q.unharmed("a DATA frame cut by FIN").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_channel_kind_with_data_after_it() {
    let q = QuicLab::start("");
    let client = q.logged_in().await;
    let mut first = Vec::new();
    string(&mut first, b"x-no-such-channel@example.com");
    first.extend_from_slice(b"opaque type-specific data");
    let mut bytes = raw_frame(msg::CHANNEL_OPEN, &first);
    bytes.extend_from_slice(&data(b"data after the refused open"));
    bytes.extend_from_slice(&exec("echo never", true));
    let mut channel = client.stream(&bytes).await;
    match channel.frames.next().await {
        Next::Frame(msg::CHANNEL_OPEN_FAILURE, payload) => {
            assert_eq!(payload.get(..4), Some(&3u32.to_be_bytes()[..]), "reason")
        }
        other => panic!("expected OPEN_FAILURE, got {other:?}"),
    }
    let end = channel.frames.next().await;
    assert!(
        matches!(end, Next::End | Next::Reset(_)),
        "after OPEN_FAILURE: {end:?}"
    );
    let mut session = client.session().await;
    assert_eq!(
        session.run("echo still").await,
        (b"still\n".to_vec(), Some(0))
    );
    q.unharmed("unknown channel kind").await;
}

// --- user authentication ----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_replayed_from_another_connection() {
    let q = QuicLab::start("");
    let mut first = q.raw().await;
    let captured = userauth(&q.user_key, &first.exporter, &q.lab.user, &q.lab.user);
    first.send_control(&captured).await;
    assert_eq!(
        first.replies.next().await,
        Next::Frame(msg::USERAUTH_SUCCESS, Vec::new())
    );
    let mut second = q.raw().await;
    let port = second.local_port();
    second.send_control(&captured).await;
    match second.replies.next().await {
        Next::Frame(msg::USERAUTH_FAILURE, _) => {}
        other => panic!("a replayed signature: {other:?}"),
    }
    let line = expect_logged(&q.server, port, "replayed signature");
    assert!(line.contains("Failed publickey"), "logged: {line}");
    // The genuine request for this connection then works.
    second.login(&q.user_key, &q.lab.user).await;
    q.unharmed("replayed signature").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_for_another_user() {
    let q = QuicLab::start("");
    let mut client = q.raw().await;
    let port = client.local_port();
    // Signed for "nobody", sent as the lab's user (whose key it is).
    let request = userauth(&q.user_key, &client.exporter, &q.lab.user, "nobody");
    client.send_control(&request).await;
    match client.replies.next().await {
        Next::Frame(msg::USERAUTH_FAILURE, _) => {}
        other => panic!("a signature over another user name: {other:?}"),
    }
    let line = expect_logged(&q.server, port, "signature for another user");
    assert!(line.contains("Failed publickey"), "logged: {line}");
    q.unharmed("signature for another user").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_failed_attempts() {
    let q = QuicLab::start("MaxAuthTries 2");
    let mut client = q.raw().await;
    let port = client.local_port();
    let request = userauth(&q.stranger, &client.exporter, &q.lab.user, &q.lab.user);
    client.send_control(&request).await;
    client.send_control(&request).await;
    client
        .expect_close(ErrorCode::AuthFailed, "MaxAuthTries 2")
        .await;
    expect_logged(&q.server, port, "MaxAuthTries");
    q.unharmed("MaxAuthTries").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_after_the_handshake() {
    let q = QuicLab::start("LoginGraceTime 2");
    let client = q.raw().await;
    let port = client.local_port();
    let started = Instant::now();
    client
        .expect_close(ErrorCode::AuthTimeout, "silent client")
        .await;
    assert!(started.elapsed() < Duration::from_secs(8));
    expect_logged(&q.server, port, "silent client");
    q.unharmed("silent client").await;
}

// --- not sshq/1 at all ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_instead_of_quic() {
    let q = QuicLab::start("");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let target = ("127.0.0.1", q.server.port);
    for i in 0..500 {
        let mut junk = random_bytes(if i % 2 == 0 { 1200 } else { 40 });
        if i % 3 == 0 {
            junk[0] = 0xc0; // a long header ...
            junk[1..5].copy_from_slice(&[0, 0, 0, 1]); // ... of QUIC v1, then junk
        }
        let _ = socket.send_to(&junk, target);
    }
    // Junk is dropped. The answers allowed: version negotiation for an
    // unknown version, and, for junk that parses as a QUIC v1 Initial, an
    // Initial carrying CONNECTION_CLOSE (quinn closes an Initial whose
    // connection ID is too short or whose token is invalid, RFC 9000
    // §7.2 and §8.1.3, before decrypting it). Nothing else, and never
    // more than one answer per datagram that could draw one.
    let could_answer = (0..500).filter(|i| i % 3 == 0).count() + 500;
    let (mut negotiations, mut closes) = (0, 0);
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        let long_header = n >= 5 && buf[0] & 0x80 != 0;
        if long_header && buf[1..5] == [0, 0, 0, 0] {
            negotiations += 1;
        } else if long_header && buf[0] & 0x30 == 0 && buf[1..5] == [0, 0, 0, 1] {
            closes += 1;
        } else {
            panic!(
                "sshqd answered junk with something other than version negotiation or an \
                 Initial close: {:?}",
                &buf[..n.min(16)]
            );
        }
    }
    assert!(
        negotiations + closes <= could_answer,
        "{negotiations} + {closes} answers to 500 datagrams"
    );
    println!("500 junk datagrams: {negotiations} version negotiations, {closes} Initial closes");
    q.unharmed("garbage datagrams").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_alpn_is_refused_in_the_handshake() {
    let q = QuicLab::start("");
    let endpoint = client_endpoint([127, 0, 0, 1]);
    let port = endpoint.local_addr().expect("address").port();
    let config = client_config(&q.host, b"h3");
    let connecting = endpoint
        .connect_with(config, ([127, 0, 0, 1], q.server.port).into(), "sshq")
        .expect("connect");
    match tokio::time::timeout(Duration::from_secs(10), connecting).await {
        Ok(Err(quinn::ConnectionError::ConnectionClosed(close))) => {
            // TLS alert no_application_protocol (120) as QUIC CRYPTO_ERROR.
            assert_eq!(u64::from(close.error_code), 0x178, "the close: {close:?}");
        }
        other => panic!(
            "a handshake with ALPN h3: {:?}",
            other.map(|r| r.map(|_| ()))
        ),
    }
    expect_logged(&q.server, port, "foreign ALPN");
    q.unharmed("foreign ALPN").await;
}

// --- floods -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_flood_before_login() {
    let q = QuicLab::start("LoginGraceTime 60");
    let mut client = q.raw().await;
    // As many streams as the peer allows, each opening a session and
    // running a command: none may be served before login.
    let first = [open_session(), exec("echo leaked", false)].concat();
    let mut opened = Vec::new();
    for _ in 0..3000 {
        match tokio::time::timeout(Duration::from_millis(500), client.conn.open_bi()).await {
            Ok(Ok((mut send, recv))) => {
                let _ = send.write_all(&first).await;
                opened.push((send, recv));
            }
            _ => break, // the peer's stream limit: fine
        }
    }
    println!("{} streams opened before login", opened.len());
    // A bad login: the streams must never be served.
    let request = userauth(&q.stranger, &client.exporter, &q.lab.user, &q.lab.user);
    for _ in 0..6 {
        client.send_control(&request).await;
    }
    let code = client.close_code().await;
    assert_eq!(code, Ok(u64::from(ErrorCode::AuthFailed.code())));
    for (_, mut recv) in opened.into_iter().take(50) {
        let got = recv.read_chunk(1024, true).await;
        assert!(
            !matches!(got, Ok(Some(_))),
            "a stream opened before a failed login got an answer"
        );
    }
    q.unharmed("a stream flood before login").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_flood_after_login() {
    let q = QuicLab::start("");
    let client = q.logged_in().await;
    let mut opened = Vec::new();
    for _ in 0..2000 {
        match tokio::time::timeout(Duration::from_secs(2), client.conn.open_bi()).await {
            Ok(Ok((mut send, recv))) => {
                let _ = send.write_all(&open_session()).await;
                opened.push((send, recv));
            }
            _ => break,
        }
    }
    println!("{} session streams opened at once", opened.len());
    assert!(opened.len() >= 100, "only {} streams", opened.len());
    // The connection and the server survive; the flooder can stop.
    drop(opened);
    q.unharmed("a stream flood after login").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tiny_frames() {
    let q = QuicLab::start("");
    let client = q.logged_in().await;
    let mut channel = client.session().await;
    channel.write(&exec("wc -c", false)).await;
    const FRAMES: usize = 50_000;
    let one = data(b"x");
    let all: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * FRAMES)
        .collect();
    channel.write(&all).await;
    let _ = channel.send.finish();
    let (out, status) = channel.frames.output().await;
    assert_eq!(
        (text(&out).trim().to_string(), status),
        (FRAMES.to_string(), Some(0))
    );
    q.unharmed("50,000 one-octet DATA frames").await;
}
