//! sshq's QUIC protocol driven directly with quinn: a real in-process server
//! built from the crate's public API (endpoint, TLS, key exchange, `accept`
//! with a small test policy), hostile or odd clients writing frames by hand
//! with the public `wire` module, and normal clients (`client_session`)
//! beside them that must not notice.

mod lab;

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use sshq_core::auth::FileKey;
use sshq_core::channel::{ChannelRequest, GlobalRequest, WindowSize};
use sshq_quic::wire::{self, ErrorCode, Frame};

/// Test frames always fit; the checked encoder's error would be a test bug.
fn encode_frame(frame: &Frame) -> Bytes {
    sshq_quic::wire::encode_frame(frame).expect("a test frame encodes")
}

use lab::{data, normal_echo, open_session, step, Fixture, RawChannel, RawClient};

// --- frames --------------------------------------------------------------

/// A frame of any type (known or not) around `payload`.
fn raw_frame(kind: u8, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_u32(payload.len() as u32 + 1);
    buf.put_u8(kind);
    buf.put_slice(payload);
    buf.freeze()
}

/// `frame` with `extra` bytes after its payload, its length field counting them.
fn with_trailing(frame: &[u8], extra: &[u8]) -> Bytes {
    raw_frame(frame[4], &[&frame[5..], extra].concat())
}

/// A length field of 0 (below the minimum) and one past MAX_FRAME_LEN.
fn bad_lengths() -> [Bytes; 2] {
    let too_long = (wire::MAX_FRAME_LEN as u32 + 1).to_be_bytes();
    [
        Bytes::from_static(&[0, 0, 0, 0, wire::msg::CHANNEL_DATA]),
        Bytes::from([&too_long[..], &[wire::msg::CHANNEL_DATA]].concat()),
    ]
}

/// A frame type no one defines.
const UNKNOWN_TYPE: u8 = 7;

/// An OPEN frame of a channel type that does not exist.
fn open_unknown_type() -> Bytes {
    let name = b"x-no-such-channel@example.com";
    let mut payload = (name.len() as u32).to_be_bytes().to_vec();
    payload.extend_from_slice(name);
    raw_frame(wire::msg::CHANNEL_OPEN, &payload)
}

fn window_change() -> Bytes {
    let size = WindowSize {
        cols: 80,
        rows: 24,
        pix_width: 0,
        pix_height: 0,
    };
    encode_frame(&Frame::ChannelRequest {
        request: ChannelRequest::WindowChange(size),
        want_reply: false,
    })
}

// --- the tests -----------------------------------------------------------

/// (a) A signed request is bound to its connection's TLS exporter: the
/// exact bytes that logged in on connection 1 are refused on connection 2,
/// where a request signed for connection 2 then succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userauth_request_replayed_on_another_connection_is_refused() {
    let f = Fixture::new(6, None);
    let mut first = f.raw().await;
    let captured = first.signed(&f.user_key).await;
    first.send_control(&captured).await;
    assert_eq!(first.replies.next().await, Ok(Some(Frame::UserauthSuccess)));

    let mut second = f.raw().await;
    assert_ne!(
        first.exporter, second.exporter,
        "two connections, one exporter value"
    );
    second.send_control(&captured).await;
    assert!(
        matches!(
            second.replies.next().await,
            Ok(Some(Frame::UserauthFailure { .. }))
        ),
        "the replayed request was not refused"
    );
    let genuine = second.signed(&f.user_key).await;
    second.send_control(&genuine).await;
    assert_eq!(
        second.replies.next().await,
        Ok(Some(Frame::UserauthSuccess))
    );
    RawChannel::session(&second.conn)
        .await
        .echo(b"after replay")
        .await;
    assert_eq!(f.server.events(|e| e.logins), 2);
}

/// (b) A malformed frame on a channel stream, first or later, resets that
/// stream with PROTOCOL_ERROR; a channel beside it, and another client,
/// carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_channel_frames_reset_only_their_stream() {
    let f = Fixture::new(6, None);
    let client = f.raw_logged_in().await;
    let mut healthy = RawChannel::session(&client.conn).await;
    healthy.echo(b"before").await;

    let [zero_length, too_long] = bad_lengths();
    let unknown = raw_frame(UNKNOWN_TYPE, b"");
    let first_frames = [
        ("length 0 as the first frame", zero_length.clone()),
        (
            "length past the maximum as the first frame",
            too_long.clone(),
        ),
        ("an unknown type as the first frame", unknown.clone()),
        (
            "OPEN with trailing bytes",
            with_trailing(&open_session(), b"xyz"),
        ),
    ];
    for (what, bytes) in first_frames {
        RawChannel::start(&client.conn, &bytes)
            .await
            .expect_protocol_reset(what)
            .await;
    }
    let later_frames = [
        ("length 0 after the open", zero_length),
        ("length past the maximum after the open", too_long),
        ("an unknown type after the open", unknown),
        (
            "window-change with trailing bytes",
            with_trailing(&window_change(), &[0; 4]),
        ),
    ];
    for (what, bytes) in later_frames {
        let mut channel = RawChannel::session(&client.conn).await;
        channel.write(&bytes).await.expect("write the bad frame");
        channel.expect_protocol_reset(what).await;
    }

    healthy.echo(b"after").await;
    healthy.finish().await;
    assert!(
        client.conn.close_reason().is_none(),
        "the connection was closed"
    );
    let (_endpoint, other) = f.normal().await;
    normal_echo(&other, b"another client").await;
}

/// (c) An unknown channel type is refused with OPEN_FAILURE reason 3 and
/// the connection stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_channel_type_gets_open_failure_3() {
    let f = Fixture::new(6, None);
    let client = f.raw_logged_in().await;
    let mut refused = RawChannel::start(&client.conn, &open_unknown_type()).await;
    match refused.frames.next().await {
        Ok(Some(Frame::OpenFailure(failure))) => {
            assert_eq!(failure.reason.code(), 3, "reason: {failure:?}")
        }
        other => panic!("expected OPEN_FAILURE, got {other:?}"),
    }
    assert_eq!(
        refused.frames.next().await,
        Ok(None),
        "the refused stream's end"
    );

    let mut channel = RawChannel::session(&client.conn).await;
    channel.echo(b"still up").await;
    channel.finish().await;
    assert!(
        client.conn.close_reason().is_none(),
        "the connection was closed"
    );
    assert_eq!(f.server.events(|e| e.channels), 1, "channels served");
}

/// (d) A malformed or misplaced frame on the control stream closes that
/// connection with PROTOCOL_ERROR; a client already connected and a new
/// one are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_control_frame_closes_the_connection() {
    let f = Fixture::new(6, None);
    let (_endpoint, bystander) = f.normal().await;
    let forward = encode_frame(&Frame::GlobalRequest {
        request: GlobalRequest::TcpipForward {
            address: "127.0.0.1".to_string(),
            port: 0,
        },
        want_reply: true,
    });
    let [zero_length, too_long] = bad_lengths();
    let cases = [
        ("length 0", zero_length),
        ("length past the maximum", too_long),
        ("an unknown type", raw_frame(UNKNOWN_TYPE, b"")),
        (
            "tcpip-forward with trailing bytes",
            with_trailing(&forward, b"!"),
        ),
        ("DATA on the control stream", data(b"misplaced")),
    ];
    for (what, bytes) in cases {
        let mut client = f.raw_logged_in().await;
        client.send_control(&bytes).await;
        assert_eq!(
            client.close_code().await,
            Ok(ErrorCode::ProtocolError.code() as u64),
            "{what}"
        );
        normal_echo(&bystander, what.as_bytes()).await;
    }
    let (_endpoint, newcomer) = f.normal().await;
    normal_echo(&newcomer, b"newcomer").await;
}

/// (e) MaxAuthTries refusals end the connection with AUTH_FAILED; the
/// earlier ones are answered USERAUTH_FAILURE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_auth_failures_close_with_auth_failed() {
    let f = Fixture::new(3, None);
    let mut client = f.raw().await;
    for attempt in 1..=2 {
        let request = client.signed(&f.stranger).await;
        client.send_control(&request).await;
        assert!(
            matches!(
                client.replies.next().await,
                Ok(Some(Frame::UserauthFailure { .. }))
            ),
            "attempt {attempt} was not answered USERAUTH_FAILURE"
        );
    }
    let request = client.signed(&f.stranger).await;
    client.send_control(&request).await;
    assert_eq!(
        client.close_code().await,
        Ok(ErrorCode::AuthFailed.code() as u64)
    );
    assert!(
        f.server
            .wait_events(|e| e.refused.iter().any(|r| r.contains("too many")))
            .await,
        "server: {:?}",
        f.server.events(|e| format!("{e:?}"))
    );
    let (_endpoint, other) = f.normal().await;
    normal_echo(&other, b"the next client").await;
}

/// (f) A client that finishes the QUIC handshake but never logs in is
/// dropped once LoginGraceTime has passed: silent, or stuck mid-frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_grace_time_drops_clients_that_never_authenticate() {
    const GRACE: Duration = Duration::from_secs(2);
    const SLACK: Duration = Duration::from_secs(3);
    let f = Fixture::new(6, Some(GRACE));
    let (_endpoint, silent) = f.quic().await;
    let started = Instant::now();
    let mut stuck = f.raw().await;
    stuck.send_control(&[0, 0, 0]).await; // part of a length field
    for (what, conn) in [("silent", &silent), ("stuck mid-frame", &stuck.conn)] {
        let closed = step("grace", conn.closed()).await;
        let after = started.elapsed();
        assert!(
            after <= GRACE + SLACK,
            "{what}: closed only after {after:?}"
        );
        let code = match &closed {
            quinn::ConnectionError::ApplicationClosed(close) => close.error_code.into_inner(),
            other => panic!("{what}: closed by {other}, not by the server"),
        };
        println!("{what}: closed after {after:?} with code {code:#x}");
        assert!(
            code == ErrorCode::AuthTimeout.code() as u64
                || code == ErrorCode::NoError.code() as u64,
            "{what}: closed with code {code:#x}"
        );
    }
    assert!(
        f.server
            .wait_events(|e| e.refused.iter().filter(|r| r.contains("timeout")).count() == 2)
            .await,
        "server: {:?}",
        f.server.events(|e| format!("{e:?}"))
    );
    let (_endpoint, other) = f.normal().await;
    normal_echo(&other, b"in time").await;
}

/// Opens three session channels (OPEN, exec, DATA) before any userauth
/// request is written, then logs in with `key`.
async fn channels_then_login(f: &Fixture, key: &FileKey) -> (RawClient, Vec<RawChannel>) {
    let mut client = f.raw().await; // the control stream is opened first
    let exec = encode_frame(&Frame::ChannelRequest {
        request: ChannelRequest::Exec(b"echo early".to_vec()),
        want_reply: true,
    });
    let mut channels = Vec::new();
    for _ in 0..3 {
        let first = [open_session(), exec.clone(), data(b"early")].concat();
        channels.push(RawChannel::start(&client.conn, &first).await);
    }
    // Let the channels' frames reach the server before the login.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let request = client.signed(key).await;
    client.send_control(&request).await;
    (client, channels)
}

/// (g) Channels opened before a login that fails are never handed to the
/// server, and get no answer; after a login that succeeds they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_opened_before_failed_auth_are_not_processed() {
    let f = Fixture::new(1, None);
    let (client, channels) = channels_then_login(&f, &f.stranger).await;
    assert_eq!(
        client.close_code().await,
        Ok(ErrorCode::AuthFailed.code() as u64)
    );
    for (i, mut channel) in channels.into_iter().enumerate() {
        let answer = channel.frames.next().await;
        assert!(answer.is_err(), "channel {i} got an answer: {answer:?}");
    }
    assert!(f.server.wait_events(|e| !e.refused.is_empty()).await);
    assert_eq!(
        f.server.events(|e| (e.logins, e.channels)),
        (0, 0),
        "(logins, channels served)"
    );

    // The contrast: the same channels after a login that succeeds.
    let (mut client, channels) = channels_then_login(&f, &f.user_key).await;
    assert_eq!(
        client.replies.next().await,
        Ok(Some(Frame::UserauthSuccess))
    );
    for mut channel in channels {
        assert_eq!(
            channel.frames.next().await,
            Ok(Some(Frame::OpenConfirmation))
        );
        channel.send.finish().expect("EOF");
        // The exec reply and the echo travel independently: any order.
        let (mut replies, mut echoed) = (Vec::new(), Vec::new());
        while let Some(frame) = channel.frames.next().await.expect("the channel's frames") {
            match frame {
                Frame::Data(bytes) => echoed.extend_from_slice(&bytes),
                other => replies.push(other),
            }
        }
        assert_eq!(
            (replies, echoed.as_slice()),
            (vec![Frame::ChannelSuccess], &b"early"[..])
        );
    }
    assert_eq!(f.server.events(|e| (e.logins, e.channels)), (1, 3));
}
