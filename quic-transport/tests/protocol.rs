//! sshq's QUIC protocol driven directly with quinn: a real in-process server
//! built from the crate's public API (endpoint, TLS, key exchange, `accept`
//! with a small test policy), hostile or odd clients writing frames by hand
//! with the public `wire` module, and normal clients (`client_session`)
//! beside them that must not notice.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use sshq_core::auth::{AuthPolicy, FileKey, ServerKeyVerifier, UserKey};
use sshq_core::channel::{ChannelKind, ChannelRequest, GlobalRequest, WindowSize};
use sshq_core::ssh_key::{PrivateKey, PublicKey};
use sshq_core::transport::{Channel, ChannelControl, Connection, Incoming, RequestStream};
use sshq_quic::quinn;
use sshq_quic::wire::{self, decode_frame, encode_frame, ErrorCode, Frame, UserauthRequest};
use sshq_quic::{endpoint, kx, tls, ClientAuth, QuicConnection, ServerAuth};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The user the test policy lets in (with the user key only).
const USER: &str = "tester";

/// Limit on any one step (a frame, a close, a login): only against hangs.
const STEP: Duration = Duration::from_secs(20);

// --- the server ---------------------------------------------------------

/// Lets [`USER`] in with one key; allows `max_tries` attempts.
struct TestPolicy {
    key: PublicKey,
    max_tries: u32,
}

impl AuthPolicy for TestPolicy {
    fn publickey_allowed(&self, user: &str, key: &PublicKey) -> bool {
        user == USER && key.key_data() == self.key.key_data()
    }

    fn max_auth_tries(&self) -> u32 {
        self.max_tries
    }
}

/// What the server saw.
#[derive(Default, Debug)]
struct Events {
    logins: usize,
    /// Every `accept` that failed, as text.
    refused: Vec<String>,
    /// Channels handed to the server after login.
    channels: usize,
}

struct TestServer {
    addr: SocketAddr,
    events: Arc<Mutex<Events>>,
    _endpoint: quinn::Endpoint,
}

impl TestServer {
    /// A server on a free loopback port with every key exchange sshq has.
    fn start(host_key: &PrivateKey, policy: TestPolicy, grace: Option<Duration>) -> TestServer {
        let provider = kx::crypto_provider(kx::DEFAULT_KEX).expect("crypto provider");
        let tls = tls::server_tls(host_key, provider).expect("server TLS");
        let config = tls::server_config(tls).expect("quinn server config");
        let bind = SocketAddr::from(([127, 0, 0, 1], 0));
        let endpoint = endpoint::server_endpoint(bind, config).expect("server endpoint");
        let addr = endpoint.local_addr().expect("server address");
        let auth = Arc::new(ServerAuth {
            policy: Arc::new(policy),
            login_grace_time: grace,
        });
        let events = Arc::new(Mutex::new(Events::default()));
        tokio::spawn(accept_loop(endpoint.clone(), auth, events.clone()));
        TestServer {
            addr,
            events,
            _endpoint: endpoint,
        }
    }

    fn events<T>(&self, read: impl FnOnce(&Events) -> T) -> T {
        read(&self.events.lock().expect("events"))
    }

    /// Waits (bounded) until `condition` holds on the events.
    async fn wait_events(&self, condition: impl Fn(&Events) -> bool) -> bool {
        let deadline = Instant::now() + STEP;
        while Instant::now() < deadline {
            if self.events(&condition) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, auth: Arc<ServerAuth>, events: Arc<Mutex<Events>>) {
    while let Some(incoming) = endpoint.accept().await {
        let (auth, events) = (auth.clone(), events.clone());
        tokio::spawn(async move {
            match sshq_quic::accept(incoming, auth).await {
                Ok(conn) => {
                    events.lock().expect("events").logins += 1;
                    serve(conn, events).await;
                }
                Err(e) => events.lock().expect("events").refused.push(e.to_string()),
            }
        });
    }
}

/// Every channel is an echo: requests succeed, data comes back, EOF ends it.
async fn serve(conn: QuicConnection, events: Arc<Mutex<Events>>) {
    while let Some(incoming) = conn.accept().await {
        let Incoming::Channel(pending) = incoming else {
            continue; // global requests: dropping the reply answers failure
        };
        events.lock().expect("events").channels += 1;
        let parts = pending.accept().split();
        let mut requests = parts.requests;
        tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                request.reply.send(true);
            }
        });
        let (mut data_in, mut data_out, control) = (parts.data_in, parts.data_out, parts.control);
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut data_in, &mut data_out).await;
            let _ = data_out.shutdown().await;
            control.closed().await;
        });
    }
}

// --- keys and connections ----------------------------------------------

/// A key made by the real ssh-keygen in `dir`.
fn keygen(dir: &Path, name: &str) -> PrivateKey {
    let path = dir.join(name);
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen must be installed (openssh-client)");
    assert!(status.success(), "ssh-keygen failed");
    let text = std::fs::read_to_string(&path).expect("read the key");
    PrivateKey::from_openssh(text).expect("parse the key")
}

/// Trusts exactly the test server's host key.
struct TrustHostKey(PublicKey);

impl ServerKeyVerifier for TrustHostKey {
    fn verify(&self, key: &PublicKey) -> bool {
        key.key_data() == self.0.key_data()
    }
}

/// A server, its keys, and the user's and a stranger's keys.
struct Fixture {
    server: TestServer,
    host: PublicKey,
    user_key: Arc<FileKey>,
    stranger: Arc<FileKey>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new(max_tries: u32, grace: Option<Duration>) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let host_key = keygen(dir.path(), "host");
        let user = keygen(dir.path(), "user");
        let stranger = keygen(dir.path(), "stranger");
        let policy = TestPolicy {
            key: user.public_key().clone(),
            max_tries,
        };
        Fixture {
            server: TestServer::start(&host_key, policy, grace),
            host: host_key.public_key().clone(),
            user_key: Arc::new(FileKey::new(user, "user")),
            stranger: Arc::new(FileKey::new(stranger, "stranger")),
            _dir: dir,
        }
    }

    /// A QUIC connection to the server, TLS done, nothing sent yet.
    async fn quic(&self) -> (quinn::Endpoint, quinn::Connection) {
        let provider = kx::crypto_provider(kx::DEFAULT_KEX).expect("crypto provider");
        let verifier = Arc::new(TrustHostKey(self.host.clone()));
        let tls = tls::client_tls(verifier, provider).expect("client TLS");
        let config = tls::client_config(tls).expect("quinn client config");
        let endpoint = endpoint::client_endpoint(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("client endpoint");
        let connecting = endpoint
            .connect_with(config, self.server.addr, "sshq")
            .expect("connect");
        let conn = step("QUIC handshake", connecting).await.expect("QUIC handshake");
        (endpoint, conn)
    }

    /// A hand-driven client with its control stream open.
    async fn raw(&self) -> RawClient {
        let (endpoint, conn) = self.quic().await;
        let mut exporter = [0u8; wire::USERAUTH_EXPORTER_LEN];
        conn.export_keying_material(&mut exporter, wire::USERAUTH_EXPORTER_LABEL, b"")
            .expect("TLS exporter");
        let (send, recv) = step("control stream", conn.open_bi())
            .await
            .expect("open the control stream");
        RawClient {
            conn,
            control: send,
            replies: Frames::new(recv),
            exporter,
            _endpoint: endpoint,
        }
    }

    /// A hand-driven client logged in with the user key.
    async fn raw_logged_in(&self) -> RawClient {
        let mut client = self.raw().await;
        let request = client.signed(&self.user_key).await;
        client.send_control(&request).await;
        assert_eq!(client.replies.next().await, Ok(Some(Frame::UserauthSuccess)));
        client
    }

    /// sshq's own client, logged in with the user key.
    async fn normal(&self) -> (quinn::Endpoint, QuicConnection) {
        let (endpoint, conn) = self.quic().await;
        let auth = ClientAuth {
            user: USER.to_string(),
            keys: vec![self.user_key.clone() as Arc<dyn UserKey>],
        };
        let session = sshq_quic::client_session(conn, auth)
            .await
            .expect("client session");
        step("login", session.authenticated())
            .await
            .expect("normal client login");
        (endpoint, session)
    }
}

/// Runs one step of a test, failing it if the step hangs.
async fn step<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, work)
        .await
        .unwrap_or_else(|_| panic!("{what}: no progress within {STEP:?}"))
}

/// Frames read from one stream.
struct Frames {
    recv: quinn::RecvStream,
    buf: BytesMut,
}

impl Frames {
    fn new(recv: quinn::RecvStream) -> Frames {
        Frames {
            recv,
            buf: BytesMut::new(),
        }
    }

    /// The next frame; `Ok(None)` at the stream's clean end; `Err` with
    /// what went wrong (reset, connection lost, bad frame).
    async fn next(&mut self) -> Result<Option<Frame>, String> {
        loop {
            if let Some(frame) = decode_frame(&mut self.buf).map_err(|e| e.to_string())? {
                return Ok(Some(frame));
            }
            match step("reading a frame", self.recv.read_chunk(64 * 1024, true)).await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.bytes),
                Ok(None) if self.buf.is_empty() => return Ok(None),
                Ok(None) => return Err("the stream ended inside a frame".to_string()),
                Err(e) => return Err(format!("stream: {e}")),
            }
        }
    }

    /// Reads (discarding data) until the peer resets the stream; its code.
    async fn reset_code(&mut self) -> Result<u64, String> {
        loop {
            match step("waiting for a reset", self.recv.read_chunk(64 * 1024, true)).await {
                Ok(Some(_)) => {}
                Ok(None) => return Err("the stream finished cleanly, not reset".to_string()),
                Err(quinn::ReadError::Reset(code)) => return Ok(code.into_inner()),
                Err(e) => return Err(format!("not a reset: {e}")),
            }
        }
    }
}

/// A client that writes frames by hand.
struct RawClient {
    conn: quinn::Connection,
    control: quinn::SendStream,
    replies: Frames,
    exporter: [u8; wire::USERAUTH_EXPORTER_LEN],
    _endpoint: quinn::Endpoint,
}

impl RawClient {
    /// A USERAUTH_REQUEST frame signed by `key` over this connection's exporter.
    async fn signed(&self, key: &FileKey) -> Bytes {
        signed_frame(key, &self.exporter).await
    }

    async fn send_control(&mut self, bytes: &[u8]) {
        step("control write", self.control.write_all(bytes))
            .await
            .expect("write on the control stream");
    }

    /// How the server closed the connection: the application error code.
    async fn close_code(&self) -> Result<u64, String> {
        match step("waiting for the close", self.conn.closed()).await {
            quinn::ConnectionError::ApplicationClosed(close) => Ok(close.error_code.into_inner()),
            other => Err(format!("closed otherwise: {other}")),
        }
    }
}

/// A USERAUTH_REQUEST frame as sshq's client builds it, bound to `exporter`.
async fn signed_frame(key: &FileKey, exporter: &[u8]) -> Bytes {
    let public = key.public_key();
    let algorithm = public.algorithm().as_str().to_string();
    let blob = public.to_bytes().expect("public key blob");
    let data = wire::userauth_signed_data(exporter, USER, "ssh-connection", &algorithm, &blob);
    let signature = key.sign(&data, None).await.expect("sign");
    encode_frame(&Frame::UserauthRequest(UserauthRequest {
        user: USER.to_string(),
        service: "ssh-connection".to_string(),
        algorithm,
        public_key: blob,
        signature,
    }))
}

/// A channel stream written by hand.
struct RawChannel {
    send: quinn::SendStream,
    frames: Frames,
}

impl RawChannel {
    /// Opens a stream and writes `first` on it (an OPEN frame, or junk).
    async fn start(conn: &quinn::Connection, first: &[u8]) -> RawChannel {
        let (mut send, recv) = step("open a stream", conn.open_bi())
            .await
            .expect("open a stream");
        step("write", send.write_all(first)).await.expect("write the first frame");
        RawChannel {
            send,
            frames: Frames::new(recv),
        }
    }

    /// A session channel the server confirmed.
    async fn session(conn: &quinn::Connection) -> RawChannel {
        let mut channel = RawChannel::start(conn, &open_session()).await;
        assert_eq!(channel.frames.next().await, Ok(Some(Frame::OpenConfirmation)));
        channel
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        step("write", self.send.write_all(bytes))
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends `message` as DATA and checks the echo comes back.
    async fn echo(&mut self, message: &[u8]) {
        self.write(&data(message)).await.expect("write DATA");
        let mut back = Vec::new();
        while back.len() < message.len() {
            match self.frames.next().await {
                Ok(Some(Frame::Data(bytes))) => back.extend_from_slice(&bytes),
                other => panic!("waiting for the echo of {message:?}: {other:?}"),
            }
        }
        assert_eq!(back, message, "the echo");
    }

    /// Sends EOF and checks the server ends its side cleanly.
    async fn finish(mut self) {
        self.send.finish().expect("finish");
        assert_eq!(self.frames.next().await, Ok(None), "the server's EOF");
    }

    /// Expects the server to reset this stream and stop reading it, both
    /// with PROTOCOL_ERROR.
    async fn expect_protocol_reset(mut self, what: &str) {
        let code = ErrorCode::ProtocolError.code() as u64;
        assert_eq!(self.frames.reset_code().await, Ok(code), "{what}: RESET_STREAM");
        let stopped = step("stopped", self.send.stopped()).await;
        assert_eq!(
            stopped.map(|c| c.map(|c| c.into_inner())),
            Ok(Some(code)),
            "{what}: STOP_SENDING"
        );
    }
}

// --- frames --------------------------------------------------------------

fn open_session() -> Bytes {
    encode_frame(&Frame::ChannelOpen(ChannelKind::Session))
}

fn data(bytes: &[u8]) -> Bytes {
    encode_frame(&Frame::Data(Bytes::copy_from_slice(bytes)))
}

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

/// Opens a session channel on a normal client and checks an echo.
async fn normal_echo(session: &QuicConnection, message: &[u8]) {
    let channel = step("open", session.open_channel(ChannelKind::Session))
        .await
        .expect("open a session channel");
    let mut parts = channel.split();
    parts.data_out.write_all(message).await.expect("write");
    parts.data_out.shutdown().await.expect("EOF");
    let mut back = Vec::new();
    step("echo", parts.data_in.read_to_end(&mut back))
        .await
        .expect("read the echo");
    assert_eq!(back, message, "a normal client's echo");
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
    assert_ne!(first.exporter, second.exporter, "two connections, one exporter value");
    second.send_control(&captured).await;
    assert!(
        matches!(second.replies.next().await, Ok(Some(Frame::UserauthFailure { .. }))),
        "the replayed request was not refused"
    );
    let genuine = second.signed(&f.user_key).await;
    second.send_control(&genuine).await;
    assert_eq!(second.replies.next().await, Ok(Some(Frame::UserauthSuccess)));
    RawChannel::session(&second.conn).await.echo(b"after replay").await;
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
        ("length past the maximum as the first frame", too_long.clone()),
        ("an unknown type as the first frame", unknown.clone()),
        ("OPEN with trailing bytes", with_trailing(&open_session(), b"xyz")),
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
        ("window-change with trailing bytes", with_trailing(&window_change(), &[0; 4])),
    ];
    for (what, bytes) in later_frames {
        let mut channel = RawChannel::session(&client.conn).await;
        channel.write(&bytes).await.expect("write the bad frame");
        channel.expect_protocol_reset(what).await;
    }

    healthy.echo(b"after").await;
    healthy.finish().await;
    assert!(client.conn.close_reason().is_none(), "the connection was closed");
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
    assert_eq!(refused.frames.next().await, Ok(None), "the refused stream's end");

    let mut channel = RawChannel::session(&client.conn).await;
    channel.echo(b"still up").await;
    channel.finish().await;
    assert!(client.conn.close_reason().is_none(), "the connection was closed");
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
        ("tcpip-forward with trailing bytes", with_trailing(&forward, b"!")),
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
            matches!(client.replies.next().await, Ok(Some(Frame::UserauthFailure { .. }))),
            "attempt {attempt} was not answered USERAUTH_FAILURE"
        );
    }
    let request = client.signed(&f.stranger).await;
    client.send_control(&request).await;
    assert_eq!(client.close_code().await, Ok(ErrorCode::AuthFailed.code() as u64));
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
        assert!(after <= GRACE + SLACK, "{what}: closed only after {after:?}");
        let code = match &closed {
            quinn::ConnectionError::ApplicationClosed(close) => close.error_code.into_inner(),
            other => panic!("{what}: closed by {other}, not by the server"),
        };
        println!("{what}: closed after {after:?} with code {code:#x}");
        assert!(
            code == ErrorCode::AuthTimeout.code() as u64 || code == ErrorCode::NoError.code() as u64,
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
    assert_eq!(client.close_code().await, Ok(ErrorCode::AuthFailed.code() as u64));
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
    assert_eq!(client.replies.next().await, Ok(Some(Frame::UserauthSuccess)));
    for mut channel in channels {
        assert_eq!(channel.frames.next().await, Ok(Some(Frame::OpenConfirmation)));
        channel.send.finish().expect("EOF");
        // The exec reply and the echo travel independently: any order.
        let (mut replies, mut echoed) = (Vec::new(), Vec::new());
        while let Some(frame) = channel.frames.next().await.expect("the channel's frames") {
            match frame {
                Frame::Data(bytes) => echoed.extend_from_slice(&bytes),
                other => replies.push(other),
            }
        }
        assert_eq!((replies, echoed.as_slice()), (vec![Frame::ChannelSuccess], &b"early"[..]));
    }
    assert_eq!(f.server.events(|e| (e.logins, e.channels)), (1, 3));
}
