//! The control stream's rules that only show with real QUIC streams
//! (draft §7.6, §7.8; Appendix A items 4 and 25), between sshq's client or
//! server and a peer driven by hand with quinn.

// The lab is shared with protocol.rs; this test uses only part of it.
#[allow(dead_code)]
mod lab;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lab::{keygen, step, Fixture, Frames, TrustHostKey, USER};
use sshq_core::auth::UserKey;
use sshq_core::channel::ChannelKind;
use sshq_core::transport::{Channel, Connection};

use sshq_quic::wire::{encode_frame, ErrorCode, Frame};
use sshq_quic::{endpoint, kx, tls, ClientAuth, QuicConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// How a hand-driven peer abandons its control stream.
#[derive(Debug, Clone, Copy)]
enum Abort {
    /// RESET_STREAM on our direction.
    Reset,
    /// STOP_SENDING on the peer's direction.
    StopSending,
}

/// Any code: the rule does not depend on it.
const ABORT_CODE: u32 = 0;

fn protocol_error() -> u64 {
    u64::from(ErrorCode::ProtocolError.code())
}

/// A logged-in client that resets (or stops) its control stream: sshq's
/// server closes the connection with PROTOCOL_ERROR (draft §7.8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_closes_when_the_client_aborts_its_control_stream_after_login() {
    let f = Fixture::new(6, None);
    for abort in [Abort::Reset, Abort::StopSending] {
        let mut client = f.raw_logged_in().await;
        // The session works before the abort.
        lab::RawChannel::session(&client.conn)
            .await
            .echo(b"before")
            .await;
        match abort {
            Abort::Reset => {
                let _ = client.control.reset(quinn::VarInt::from_u32(ABORT_CODE));
            }
            Abort::StopSending => client.replies.stop(ABORT_CODE),
        }
        assert_eq!(
            client.close_code().await,
            Ok(protocol_error()),
            "{abort:?} on the control stream after login"
        );
    }
}

/// Before login, STOP_SENDING on the control stream counts as its end: the
/// server closes with PROTOCOL_ERROR at once, not at LoginGraceTime (here
/// none) or its next write (draft §7.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_closes_when_the_client_stops_its_control_stream_before_login() {
    let f = Fixture::new(6, None);
    let mut client = f.raw().await;
    let refused = client.signed(&f.stranger).await;
    client.send_control(&refused).await;
    assert!(matches!(
        client.replies.next().await,
        Ok(Some(Frame::UserauthFailure { .. }))
    ));
    client.replies.stop(ABORT_CODE);
    assert_eq!(client.close_code().await, Ok(protocol_error()));
}

/// A server driven by hand: it logs whoever asks in, then aborts its
/// control stream when told to, and reports how the client closed.
async fn hand_server(abort: Abort) -> (SocketAddr, sshq_core::ssh_key::PublicKey, Aborter) {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = keygen(dir.path(), "host");
    let provider = kx::crypto_provider(kx::DEFAULT_KEX).expect("crypto provider");
    let config = tls::server_config(tls::server_tls(&host, provider).expect("server TLS"))
        .expect("quinn server config");
    let bind = SocketAddr::from(([127, 0, 0, 1], 0));
    let endpoint = endpoint::server_endpoint(bind, config).expect("server endpoint");
    let addr = endpoint.local_addr().expect("server address");
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let (closed_tx, closed_rx) = oneshot::channel();
    tokio::spawn(async move {
        let incoming = endpoint.accept().await.expect("a connection");
        let conn = incoming.await.expect("handshake");
        let (mut send, recv) = conn.accept_bi().await.expect("the control stream");
        let mut frames = Frames::new(recv);
        let first = frames.next().await;
        assert!(
            matches!(first, Ok(Some(Frame::UserauthRequest(_)))),
            "the client's first frame: {first:?}"
        );
        let success = encode_frame(&Frame::UserauthSuccess).expect("encodes");
        send.write_all(&success).await.expect("USERAUTH_SUCCESS");
        // Abort only once the client has seen USERAUTH_SUCCESS: a reset
        // may discard what is not delivered yet.
        let _ = go_rx.await;
        match abort {
            Abort::Reset => {
                let _ = send.reset(quinn::VarInt::from_u32(ABORT_CODE));
            }
            Abort::StopSending => frames.stop(ABORT_CODE),
        }
        let _ = closed_tx.send(conn.closed().await);
        drop(endpoint);
    });
    let key = host.public_key().clone();
    // The key files are read; the directory may go.
    drop(dir);
    (
        addr,
        key,
        Aborter {
            go: go_tx,
            closed: closed_rx,
        },
    )
}

struct Aborter {
    go: oneshot::Sender<()>,
    closed: oneshot::Receiver<quinn::ConnectionError>,
}

/// sshq's client logged in to `addr`.
async fn sshq_client(
    addr: SocketAddr,
    host: sshq_core::ssh_key::PublicKey,
    keys: Vec<Arc<dyn UserKey>>,
) -> (quinn::Endpoint, QuicConnection) {
    let provider = kx::crypto_provider(kx::DEFAULT_KEX).expect("crypto provider");
    let verifier = Arc::new(TrustHostKey(host));
    let config = tls::client_config(tls::client_tls(verifier, provider).expect("client TLS"))
        .expect("quinn client config");
    let endpoint =
        endpoint::client_endpoint(SocketAddr::from(([127, 0, 0, 1], 0))).expect("client endpoint");
    let connecting = endpoint
        .connect_with(config, addr, "sshq")
        .expect("connect");
    let conn = step("QUIC handshake", connecting)
        .await
        .expect("QUIC handshake");
    let auth = ClientAuth {
        host: "sshq-test".to_string(),
        user: USER.to_string(),
        auth_options: Default::default(),
        keys,
    };
    let session = sshq_quic::client_session(conn, auth)
        .await
        .expect("client session");
    (endpoint, session)
}

/// A server that resets (or stops) its control stream after login: sshq's
/// client closes the connection with PROTOCOL_ERROR (draft §7.8).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_closes_when_the_server_aborts_its_control_stream_after_login() {
    // Only for a user key.
    let keys = Fixture::new(6, None);
    for abort in [Abort::Reset, Abort::StopSending] {
        let (addr, host, aborter) = hand_server(abort).await;
        let (_endpoint, session) =
            sshq_client(addr, host, vec![keys.user_key.clone() as Arc<dyn UserKey>]).await;
        step("login", session.authenticated())
            .await
            .expect("logged in");
        let _ = aborter.go.send(());
        let closed = step("the client's close", aborter.closed)
            .await
            .expect("the server saw the connection end");
        match closed {
            quinn::ConnectionError::ApplicationClosed(close) => assert_eq!(
                close.error_code.into_inner(),
                protocol_error(),
                "{abort:?}: the client's close code"
            ),
            other => panic!("{abort:?}: the client did not close with a code: {other}"),
        }
        assert!(
            session.quic().close_reason().is_some(),
            "{abort:?}: the client's connection is still open"
        );
    }
}

/// A client session that offers a key the server refuses, then the user's.
async fn stranger_then_user(f: &Fixture, conn: quinn::Connection) -> QuicConnection {
    let auth = ClientAuth {
        host: "sshq-test".to_string(),
        user: USER.to_string(),
        auth_options: Default::default(),
        keys: vec![
            f.stranger.clone() as Arc<dyn UserKey>,
            f.user_key.clone() as Arc<dyn UserKey>,
        ],
    };
    sshq_quic::client_session(conn, auth)
        .await
        .expect("client session")
}

/// More channel data than the server's whole pre-authentication window
/// (64 KiB), pipelined before login, with a first key the server refuses:
/// the client still sends its second key's request, logs in before
/// LoginGraceTime, and the data follows (draft §7.6, Appendix A item 25).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_data_leaves_room_for_the_next_userauth_request() {
    // Well below the lab's step limit: a client whose second request is
    // stuck behind flow control is closed with AUTH_TIMEOUT instead.
    let grace = Duration::from_secs(10);
    let f = Fixture::new(6, Some(grace));
    let (endpoint, conn) = f.quic().await;
    let session = stranger_then_user(&f, conn).await;
    let channel = step("open", session.open_channel(ChannelKind::Session))
        .await
        .expect("open a session channel before login");
    let mut parts = channel.split();
    let sent: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
    let writer = {
        let sent = sent.clone();
        let mut data_out = parts.data_out;
        tokio::spawn(async move {
            data_out.write_all(&sent).await.expect("write");
            data_out.shutdown().await.expect("EOF");
        })
    };
    let login = step("login", session.authenticated()).await;
    assert!(
        login.is_ok(),
        "the second key's request did not get through: {login:?}"
    );
    step("write", writer).await.expect("the writer");
    let mut back = Vec::new();
    step("echo", parts.data_in.read_to_end(&mut back))
        .await
        .expect("read the echo");
    assert!(
        back == sent,
        "the echo differs ({} octets back)",
        back.len()
    );
    assert_eq!(f.server.events(|e| e.logins), 1);
    session.close("done").await;
    drop(endpoint);
}

/// A global request made while the first key is being refused is held
/// until USERAUTH_SUCCESS (draft §7.6; Appendix A item 7): the server,
/// which would close the connection on a GLOBAL_REQUEST before login,
/// logs the client in with its second key and answers the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_request_before_login_waits_for_it() {
    let f = Fixture::new(6, None);
    let (_endpoint, conn) = f.quic().await;
    let session = stranger_then_user(&f, conn).await;
    let request = sshq_core::channel::GlobalRequest::Unknown {
        name: "keepalive@openssh.com".to_string(),
    };
    let (reply, login) = step("request and login", async {
        tokio::join!(session.global_request(request), session.authenticated())
    })
    .await;
    assert!(login.is_ok(), "login: {login:?}");
    // The lab's server refuses every global request, after login.
    assert!(
        matches!(reply, Ok(sshq_core::channel::GlobalReply::Failure)),
        "the request's reply: {reply:?}"
    );
    assert_eq!(f.server.events(|e| e.logins), 1);
}
