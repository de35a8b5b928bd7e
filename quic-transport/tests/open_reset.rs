//! draft §8.4: an open whose stream the opener reset before the acceptor's
//! answer starts nothing. A real quinn client (logged in with sshq's own
//! client, then writing a channel stream by hand) opens a session channel
//! with a pipelined `exec` of a command that leaves a marker file, and
//! resets the stream while the server application holds its decision; the
//! application then accepts and runs every `exec` it is handed, as a
//! session server does. No marker may appear.
//!
//! The order is made deterministic without sleeps: the OPEN and the exec
//! go in one write (one STREAM frame, so both are buffered when the server
//! offers the channel); the decision waits until a second channel, opened
//! after the reset, has reached the server application. The client sends
//! the RESET_STREAM before that second stream's data, and the server
//! handles a connection's frames in order, so the reset is known by then
//! (only a lost loopback packet could reorder them). The second channel is
//! accepted the same way and must leave its marker: the harness does run
//! what it is handed.

#[allow(dead_code)]
mod lab;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sshq_core::auth::{FileKey, UserKey};
use sshq_core::channel::{ChannelKind, ChannelRequest};
use sshq_core::transport::{Channel, Connection, Incoming, PendingChannel, RequestStream};
use sshq_quic::wire::{self, Frame};
use sshq_quic::{endpoint, kx, tls, ClientAuth, QuicChannel, QuicConnection, ServerAuth};

use lab::{keygen, step, TestPolicy, TrustHostKey, USER};

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Both ends of a logged-in connection, and what keeps them alive.
struct LoggedIn {
    server: QuicConnection,
    /// The client's quinn connection, for channel streams written by hand.
    raw: quinn::Connection,
    _session: QuicConnection,
    _endpoints: [quinn::Endpoint; 2],
}

async fn logged_in(dir: &Path) -> LoggedIn {
    let host = keygen(dir, "host");
    let user = keygen(dir, "user");
    let provider = || kx::crypto_provider(kx::DEFAULT_KEX).expect("crypto provider");
    let server_tls = tls::server_tls(&host, provider()).expect("server TLS");
    let server_config = tls::server_config(server_tls).expect("quinn server config");
    let server_endpoint =
        endpoint::server_endpoint(loopback(), server_config).expect("server endpoint");
    let addr = server_endpoint.local_addr().expect("server address");
    let auth = Arc::new(ServerAuth {
        policy: Arc::new(TestPolicy::new(user.public_key().clone(), 6)),
        login_grace_time: None,
        client_alive_interval: None,
        client_alive_count_max: 3,
        channel_mapping: Default::default(),
        host_certificate: Default::default(),
    });
    let accepting = server_endpoint.clone();
    let server = async move {
        let incoming = accepting.accept().await.expect("a QUIC client");
        sshq_quic::accept(incoming, auth).await.expect("login")
    };
    let verifier = Arc::new(TrustHostKey(host.public_key().clone()));
    let client_tls = tls::client_tls(verifier, provider()).expect("client TLS");
    let client_config = tls::client_config(client_tls).expect("quinn client config");
    let client_endpoint = endpoint::client_endpoint(loopback()).expect("client endpoint");
    let connecting = client_endpoint
        .connect_with(client_config, addr, "sshq")
        .expect("connect");
    let client = async move {
        let conn = connecting.await.expect("QUIC handshake");
        let raw = conn.clone();
        let auth = ClientAuth {
            host: "sshq-test".to_string(),
            user: USER.to_string(),
            auth_options: Default::default(),
            keys: vec![Arc::new(FileKey::new(user, "user")) as Arc<dyn UserKey>],
        };
        let session = sshq_quic::client_session(conn, auth)
            .await
            .expect("client session");
        session.authenticated().await.expect("QUIC login");
        (raw, session)
    };
    let (server, (raw, session)) = step("login", async { tokio::join!(server, client) }).await;
    LoggedIn {
        server,
        raw,
        _session: session,
        _endpoints: [server_endpoint, client_endpoint],
    }
}

fn encode(frame: &Frame) -> Bytes {
    wire::encode_frame(frame).expect("a test frame encodes")
}

/// CHANNEL_OPEN session and an exec of `touch <marker>`, as one write.
fn open_with_exec(marker: &Path) -> Vec<u8> {
    let command = format!("touch '{}'", marker.display());
    let exec = Frame::ChannelRequest {
        request: ChannelRequest::Exec(command.into_bytes()),
        want_reply: true,
    };
    [
        encode(&Frame::ChannelOpen(ChannelKind::Session)),
        encode(&exec),
    ]
    .concat()
}

async fn next_channel(server: &QuicConnection) -> PendingChannel<QuicChannel> {
    loop {
        match step("a channel", server.accept()).await {
            Some(Incoming::Channel(pending)) => return pending,
            Some(Incoming::GlobalRequest(_)) => continue,
            None => panic!("the connection ended"),
        }
    }
}

/// Accepts the channel and runs every exec it is handed, as a session
/// server would; ends when the channel's requests end.
fn accept_and_run(pending: PendingChannel<QuicChannel>) -> tokio::task::JoinHandle<usize> {
    let parts = pending.accept().split();
    let mut requests = parts.requests;
    tokio::spawn(async move {
        let _keep = (parts.data_in, parts.data_out, parts.control);
        let mut started = 0;
        while let Some(incoming) = requests.next().await {
            if let ChannelRequest::Exec(command) = &incoming.request {
                let command = String::from_utf8_lossy(command).into_owned();
                let status = tokio::process::Command::new("sh")
                    .args(["-c", &command])
                    .status()
                    .await
                    .expect("run sh");
                assert!(status.success(), "{command}");
                started += 1;
            }
            incoming.reply.send(true);
        }
        started
    })
}

/// The frames the server sends on `recv` up to its answer to the exec.
async fn frames_until_reply(recv: &mut quinn::RecvStream) -> Vec<Frame> {
    let mut buffered = BytesMut::new();
    let mut frames = Vec::new();
    loop {
        while let Some(frame) = wire::decode_frame(&mut buffered).expect("a valid frame") {
            let reply = matches!(frame, Frame::ChannelSuccess | Frame::ChannelFailure);
            frames.push(frame);
            if reply {
                return frames;
            }
        }
        match step("the server's answer", recv.read_chunk(64 * 1024, true)).await {
            Ok(Some(chunk)) => buffered.extend_from_slice(&chunk.bytes),
            other => panic!("the stream ended before the answer: {other:?} after {frames:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_reset_before_the_decision_starts_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lab = logged_in(dir.path()).await;
    let (server, raw) = (&lab.server, &lab.raw);
    let given_up: PathBuf = dir.path().join("marker-of-the-reset-open");
    let kept: PathBuf = dir.path().join("marker-of-the-kept-open");

    // The opener pipelines OPEN and exec, and the server application holds
    // its decision on that channel.
    let (mut send, _recv) = step("open a stream", raw.open_bi()).await.expect("stream");
    step("write", send.write_all(&open_with_exec(&given_up)))
        .await
        .expect("write OPEN and exec");
    let held = next_channel(server).await;

    // The opener gives up before any answer.
    send.reset(0u32.into()).expect("reset the stream");

    // A second channel, opened after the reset (see the file comment).
    let (mut send2, mut recv2) = step("open a stream", raw.open_bi()).await.expect("stream");
    step("write", send2.write_all(&open_with_exec(&kept)))
        .await
        .expect("write OPEN and exec");
    let second = next_channel(server).await;

    // Now the decisions: both accepted, every exec handed out is run.
    let reset_channel = accept_and_run(held);
    let kept_channel = accept_and_run(second);
    let frames = frames_until_reply(&mut recv2).await;
    assert_eq!(
        frames,
        vec![Frame::OpenConfirmation, Frame::ChannelSuccess],
        "the kept channel is confirmed and its exec answered"
    );
    assert!(kept.exists(), "the harness runs what it is handed");
    let started = step("the reset channel ends", reset_channel)
        .await
        .expect("its task");
    assert_eq!(started, 0, "a program was started for a reset open");
    assert!(!given_up.exists(), "the reset open's command ran");
    send2.finish().expect("finish the kept channel");
    let _ = step("the kept channel ends", kept_channel).await;
}
