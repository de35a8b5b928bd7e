//! The lab of the protocol tests: a real in-process sshq QUIC server built
//! from the crate's public API (endpoint, TLS, key exchange, `accept` with a
//! small test policy) whose channels echo, keys made by ssh-keygen, a client
//! that writes frames by hand, and sshq's own client.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sshq_core::auth::{AuthPolicy, FileKey, ServerKeyVerifier, UserKey};
use sshq_core::channel::ChannelKind;
use sshq_core::ssh_key::{PrivateKey, PublicKey};
use sshq_core::transport::{Channel, ChannelControl, Connection, Incoming, RequestStream};
use sshq_quic::wire::{self, decode_frame, ErrorCode, Frame, UserauthRequest};

/// Test frames always fit; the checked encoder's error would be a test bug.
fn encode_frame(frame: &Frame) -> Bytes {
    sshq_quic::wire::encode_frame(frame).expect("a test frame encodes")
}
use sshq_quic::one_stream::ChannelMapping;
use sshq_quic::{endpoint, kx, tls, ClientAuth, QuicConnection, ServerAuth};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The user the test policy lets in (with the user key only).
pub const USER: &str = "tester";

/// Limit on any one step (a frame, a close, a login): only against hangs.
pub const STEP: Duration = Duration::from_secs(20);

// --- the server ---------------------------------------------------------

/// Lets [`USER`] in with one key; allows `max_tries` attempts.
pub struct TestPolicy {
    key: PublicKey,
    max_tries: u32,
}

impl TestPolicy {
    pub fn new(key: PublicKey, max_tries: u32) -> TestPolicy {
        TestPolicy { key, max_tries }
    }
}

impl AuthPolicy for TestPolicy {
    fn publickey_allowed<'a>(
        &'a self,
        user: &'a str,
        key: &'a PublicKey,
    ) -> sshq_core::auth::BoxFuture<'a, bool> {
        let allowed = user == USER && key.key_data() == self.key.key_data();
        Box::pin(async move { allowed })
    }

    fn max_auth_tries(&self) -> u32 {
        self.max_tries
    }
}

/// What the server saw.
#[derive(Default, Debug)]
pub struct Events {
    pub logins: usize,
    /// Every `accept` that failed, as text.
    pub refused: Vec<String>,
    /// Channels handed to the server after login.
    pub channels: usize,
}

pub struct TestServer {
    addr: SocketAddr,
    events: Arc<Mutex<Events>>,
    _endpoint: quinn::Endpoint,
}

impl TestServer {
    /// A server on a free loopback port with every key exchange sshq has.
    fn start(
        host_key: &PrivateKey,
        policy: Arc<dyn AuthPolicy>,
        grace: Option<Duration>,
        mapping: ChannelMapping,
    ) -> TestServer {
        let provider = kx::crypto_provider(kx::DEFAULT_KEX).expect("crypto provider");
        let tls = tls::server_tls(host_key, provider).expect("server TLS");
        let config = tls::server_config(tls).expect("quinn server config");
        let bind = SocketAddr::from(([127, 0, 0, 1], 0));
        let endpoint = endpoint::server_endpoint(bind, config).expect("server endpoint");
        let addr = endpoint.local_addr().expect("server address");
        let auth = Arc::new(ServerAuth {
            policy,
            login_grace_time: grace,
            client_alive_interval: None,
            client_alive_count_max: 3,
            channel_mapping: mapping,
            host_certificate: Default::default(),
        });
        let events = Arc::new(Mutex::new(Events::default()));
        tokio::spawn(accept_loop(endpoint.clone(), auth, events.clone()));
        TestServer {
            addr,
            events,
            _endpoint: endpoint,
        }
    }

    pub fn events<T>(&self, read: impl FnOnce(&Events) -> T) -> T {
        read(&self.events.lock().expect("events"))
    }

    /// Waits (bounded) until `condition` holds on the events.
    pub async fn wait_events(&self, condition: impl Fn(&Events) -> bool) -> bool {
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
pub fn keygen(dir: &Path, name: &str) -> PrivateKey {
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
pub struct TrustHostKey(pub PublicKey);

impl ServerKeyVerifier for TrustHostKey {
    fn verify(&self, key: &PublicKey) -> bool {
        key.key_data() == self.0.key_data()
    }
}

/// A server, its keys, and the user's and a stranger's keys.
pub struct Fixture {
    pub server: TestServer,
    host: PublicKey,
    pub user_key: Arc<FileKey>,
    pub stranger: Arc<FileKey>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new(max_tries: u32, grace: Option<Duration>) -> Fixture {
        Fixture::with_mapping(max_tries, grace, ChannelMapping::StreamPerChannel)
    }

    /// A fixture whose server maps channels onto streams as `mapping` says.
    pub fn with_mapping(
        max_tries: u32,
        grace: Option<Duration>,
        mapping: ChannelMapping,
    ) -> Fixture {
        let policy = move |user: PublicKey| -> Arc<dyn AuthPolicy> {
            Arc::new(TestPolicy::new(user, max_tries))
        };
        Fixture::with_policy(policy, grace, mapping)
    }

    /// A fixture whose server asks the policy `make` builds for the user's
    /// public key.
    pub fn with_policy(
        make: impl FnOnce(PublicKey) -> Arc<dyn AuthPolicy>,
        grace: Option<Duration>,
        mapping: ChannelMapping,
    ) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let host_key = keygen(dir.path(), "host");
        let user = keygen(dir.path(), "user");
        let stranger = keygen(dir.path(), "stranger");
        let policy = make(user.public_key().clone());
        Fixture {
            server: TestServer::start(&host_key, policy, grace, mapping),
            host: host_key.public_key().clone(),
            user_key: Arc::new(FileKey::new(user, "user")),
            stranger: Arc::new(FileKey::new(stranger, "stranger")),
            _dir: dir,
        }
    }

    /// A QUIC connection to the server, TLS done, nothing sent yet.
    pub async fn quic(&self) -> (quinn::Endpoint, quinn::Connection) {
        let provider = kx::crypto_provider(kx::DEFAULT_KEX).expect("crypto provider");
        let verifier = Arc::new(TrustHostKey(self.host.clone()));
        let tls = tls::client_tls(verifier, provider).expect("client TLS");
        let config = tls::client_config(tls).expect("quinn client config");
        let endpoint = endpoint::client_endpoint(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("client endpoint");
        let connecting = endpoint
            .connect_with(config, self.server.addr, "sshq")
            .expect("connect");
        let conn = step("QUIC handshake", connecting)
            .await
            .expect("QUIC handshake");
        (endpoint, conn)
    }

    /// A hand-driven client with its control stream open.
    pub async fn raw(&self) -> RawClient {
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
    pub async fn raw_logged_in(&self) -> RawClient {
        let mut client = self.raw().await;
        let request = client.signed(&self.user_key).await;
        client.send_control(&request).await;
        assert_eq!(
            client.replies.next().await,
            Ok(Some(Frame::UserauthSuccess))
        );
        client
    }

    /// sshq's own client, logged in with the user key.
    pub async fn normal(&self) -> (quinn::Endpoint, QuicConnection) {
        self.normal_with(ChannelMapping::StreamPerChannel).await
    }

    /// sshq's own client mapping channels as `mapping` says, logged in.
    pub async fn normal_with(&self, mapping: ChannelMapping) -> (quinn::Endpoint, QuicConnection) {
        let (endpoint, conn) = self.quic().await;
        let auth = ClientAuth {
            host: "sshq-test".to_string(),
            user: USER.to_string(),
            auth_options: Default::default(),
            keys: vec![self.user_key.clone() as Arc<dyn UserKey>],
        };
        let session = sshq_quic::client_session_with(conn, auth, mapping)
            .await
            .expect("client session");
        step("login", session.authenticated())
            .await
            .expect("normal client login");
        (endpoint, session)
    }
}

/// Runs one step of a test, failing it if the step hangs.
pub async fn step<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, work)
        .await
        .unwrap_or_else(|_| panic!("{what}: no progress within {STEP:?}"))
}

/// Frames read from one stream.
pub struct Frames {
    recv: quinn::RecvStream,
    buf: BytesMut,
}

impl Frames {
    pub fn new(recv: quinn::RecvStream) -> Frames {
        Frames {
            recv,
            buf: BytesMut::new(),
        }
    }

    /// The next frame; `Ok(None)` at the stream's clean end; `Err` with
    /// what went wrong (reset, connection lost, bad frame).
    pub async fn next(&mut self) -> Result<Option<Frame>, String> {
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

    /// Asks the peer to stop sending on this stream (STOP_SENDING).
    #[allow(dead_code)] // control_stream.rs only
    pub fn stop(&mut self, code: u32) {
        let _ = self.recv.stop(quinn::VarInt::from_u32(code));
    }

    /// Reads (discarding data) until the peer resets the stream; its code.
    pub async fn reset_code(&mut self) -> Result<u64, String> {
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
pub struct RawClient {
    pub conn: quinn::Connection,
    pub control: quinn::SendStream,
    pub replies: Frames,
    pub exporter: [u8; wire::USERAUTH_EXPORTER_LEN],
    _endpoint: quinn::Endpoint,
}

impl RawClient {
    /// A USERAUTH_REQUEST frame signed by `key` over this connection's exporter.
    pub async fn signed(&self, key: &FileKey) -> Bytes {
        signed_frame(key, &self.exporter).await
    }

    pub async fn send_control(&mut self, bytes: &[u8]) {
        step("control write", self.control.write_all(bytes))
            .await
            .expect("write on the control stream");
    }

    /// How the server closed the connection: the application error code.
    pub async fn close_code(&self) -> Result<u64, String> {
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
    let data = wire::userauth_signed_data(exporter, USER, "ssh-connection", &algorithm, &blob)
        .expect("signed data");
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
pub struct RawChannel {
    pub send: quinn::SendStream,
    pub frames: Frames,
}

impl RawChannel {
    /// Opens a stream and writes `first` on it (an OPEN frame, or junk).
    pub async fn start(conn: &quinn::Connection, first: &[u8]) -> RawChannel {
        let (mut send, recv) = step("open a stream", conn.open_bi())
            .await
            .expect("open a stream");
        step("write", send.write_all(first))
            .await
            .expect("write the first frame");
        RawChannel {
            send,
            frames: Frames::new(recv),
        }
    }

    /// A session channel the server confirmed.
    pub async fn session(conn: &quinn::Connection) -> RawChannel {
        let mut channel = RawChannel::start(conn, &open_session()).await;
        assert_eq!(
            channel.frames.next().await,
            Ok(Some(Frame::OpenConfirmation))
        );
        channel
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        step("write", self.send.write_all(bytes))
            .await
            .map_err(|e| e.to_string())
    }

    /// Sends `message` as DATA and checks the echo comes back.
    pub async fn echo(&mut self, message: &[u8]) {
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
    pub async fn finish(mut self) {
        self.send.finish().expect("finish");
        assert_eq!(self.frames.next().await, Ok(None), "the server's EOF");
    }

    /// Expects the server to reset this stream and stop reading it, both
    /// with PROTOCOL_ERROR.
    pub async fn expect_protocol_reset(mut self, what: &str) {
        let code = ErrorCode::ProtocolError.code() as u64;
        assert_eq!(
            self.frames.reset_code().await,
            Ok(code),
            "{what}: RESET_STREAM"
        );
        let stopped = step("stopped", self.send.stopped()).await;
        assert_eq!(
            stopped.map(|c| c.map(|c| c.into_inner())),
            Ok(Some(code)),
            "{what}: STOP_SENDING"
        );
    }
}

// --- frames --------------------------------------------------------------

pub fn open_session() -> Bytes {
    encode_frame(&Frame::ChannelOpen(ChannelKind::Session))
}

pub fn data(bytes: &[u8]) -> Bytes {
    encode_frame(&Frame::Data(Bytes::copy_from_slice(bytes)))
}

/// Opens a session channel on a normal client and checks an echo.
pub async fn normal_echo(session: &QuicConnection, message: &[u8]) {
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
