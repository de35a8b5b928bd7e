//! An SSH connection over QUIC: the control stream (user authentication and
//! global requests) and the channels, one QUIC stream each.
//!
//! The control stream is the first bidirectional stream the client opens.
//! Every later bidirectional stream, opened by either side, is one channel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sshq_core::auth::{AuthPolicy, UserKey};
use sshq_core::channel::{ChannelKind, GlobalReply, GlobalRequest, OpenFailure, OpenFailureReason};
use sshq_core::error::{HandshakeError, ProtocolError, TransportError};
use sshq_core::log_escape;
use sshq_core::pipe::PipeBudget;
use sshq_core::replies::{ReplyQueue, REQUEST_QUEUE};
use sshq_core::transport::{
    Connection, ConnectionInfo, Incoming, IncomingGlobalRequest, PendingChannel, TransportKind,
};
use tokio::sync::{mpsc, oneshot, watch, Mutex};

use crate::channel::{QuicChannel, CONNECTION_PIPE_BUDGET};
use crate::wire::{
    decode_frame, encode_frame, ErrorCode, Frame, WireError, USERAUTH_EXPORTER_LABEL,
    USERAUTH_EXPORTER_LEN,
};
use crate::{keepalive, userauth};

/// How long the other side may take to send a channel's OPEN frame.
const OPEN_FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// Frames read from one stream, one at a time.
pub(crate) struct FrameReader {
    recv: quinn::RecvStream,
    buffered: BytesMut,
}

impl FrameReader {
    pub(crate) fn new(recv: quinn::RecvStream) -> Self {
        FrameReader {
            recv,
            buffered: BytesMut::new(),
        }
    }

    /// The next frame; `Ok(None)` at a clean end of the stream.
    pub(crate) async fn next(&mut self) -> Result<Option<Frame>, ReadFailure> {
        loop {
            if let Some(frame) = decode_frame(&mut self.buffered).map_err(ReadFailure::Wire)? {
                return Ok(Some(frame));
            }
            match self.recv.read_chunk(64 * 1024, true).await {
                Ok(Some(chunk)) => self.buffered.extend_from_slice(&chunk.bytes),
                Ok(None) if self.buffered.is_empty() => return Ok(None),
                // draft §6.1: a stream direction MUST end (FIN) only at a frame boundary
                Ok(None) => {
                    return Err(ReadFailure::Wire(WireError::Truncated {
                        frame: 0,
                        field: "frame",
                    }))
                }
                Err(e) => return Err(ReadFailure::Stream(e.to_string())),
            }
        }
    }

    fn into_parts(self) -> (quinn::RecvStream, BytesMut) {
        (self.recv, self.buffered)
    }
}

/// Why a stream could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadFailure {
    #[error("{0}")]
    Wire(WireError),
    #[error("stream failed: {0}")]
    Stream(String),
}

/// The outcome of the client's authentication, while it runs.
#[derive(Debug, Clone)]
pub(crate) enum AuthState {
    Pending,
    Succeeded,
    /// Every key was refused; the methods the server named.
    Refused(String),
    Failed(String),
}

/// An authenticated (or, on the client, authenticating) SSH connection over QUIC.
pub struct QuicConnection {
    conn: quinn::Connection,
    control: ControlSender,
    incoming: Mutex<mpsc::UnboundedReceiver<Incoming<QuicChannel>>>,
    global_pending: ReplyQueue<GlobalReply>,
    /// Held while a global request is registered and sent, so that
    /// requests go out in the order their replies are expected.
    global_order: Arc<Mutex<()>>,
    /// Bounds the peer's unread data over all channels.
    budget: PipeBudget,
    info: ConnectionInfo,
    auth: watch::Receiver<AuthState>,
    /// The client's endpoint, kept so that closing can wait for the
    /// CONNECTION_CLOSE to be sent before the process exits.
    endpoint: Option<quinn::Endpoint>,
}

impl QuicConnection {
    /// Keeps the endpoint this client connection runs on (see `close`).
    pub fn set_endpoint(&mut self, endpoint: quinn::Endpoint) {
        self.endpoint = Some(endpoint);
    }

    /// The underlying QUIC connection (for statistics and tests).
    pub fn quic(&self) -> &quinn::Connection {
        &self.conn
    }

    /// The path's statistics (round-trip time, losses), for `-v`.
    pub fn path_stats(&self) -> crate::stats::PathStats {
        crate::stats::PathStats::of(&self.conn)
    }

    /// Waits for the client's authentication to finish: `Ok` once logged in,
    /// else the methods the server still offers (all keys were refused) or
    /// what broke. Servers' connections are always authenticated.
    pub async fn authenticated(&self) -> Result<(), AuthOutcome> {
        let mut auth = self.auth.clone();
        let state = auth
            .wait_for(|s| !matches!(s, AuthState::Pending))
            .await
            .map(|s| s.clone())
            .unwrap_or(AuthState::Failed("connection closed".to_string()));
        match state {
            AuthState::Succeeded => Ok(()),
            AuthState::Refused(methods) => Err(AuthOutcome::Refused { methods }),
            AuthState::Failed(why) => Err(AuthOutcome::Failed(why)),
            AuthState::Pending => Err(AuthOutcome::Failed(
                "authentication did not finish".to_string(),
            )),
        }
    }
}

/// How a client's authentication ended, when it did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthOutcome {
    #[error("permission denied ({methods})")]
    Refused { methods: String },
    #[error("authentication failed: {0}")]
    Failed(String),
}

/// What a client needs to log in over QUIC.
pub struct ClientAuth {
    pub user: String,
    pub keys: Vec<Arc<dyn UserKey>>,
}

/// Logs in on an established QUIC connection. Returns as soon as the first
/// signed request is on its way: channels opened meanwhile wait, on the
/// server, until authentication succeeds, so login, channel open and exec
/// share the same round trip. Use [`QuicConnection::authenticated`] for
/// the outcome.
pub async fn client_session(
    conn: quinn::Connection,
    auth: ClientAuth,
) -> Result<QuicConnection, TransportError> {
    let lost = |e: &dyn std::fmt::Display| TransportError::ConnectionClosed(Some(e.to_string()));
    // draft §7.1: the client opens the control stream (stream ID 0) as its first stream
    let (mut send, recv) = conn.open_bi().await.map_err(|e| lost(&e))?;
    let mut exporter = [0u8; USERAUTH_EXPORTER_LEN];
    // draft §7.3: E = TLS-Exporter("EXPORTER-sshq-userauth", "", 32) of this connection, never reused
    conn.export_keying_material(&mut exporter, USERAUTH_EXPORTER_LABEL, b"")
        .map_err(|_| ProtocolError::ExporterUnavailable)?;
    let (auth_tx, auth_rx) = watch::channel(AuthState::Pending);
    let mut keys = auth.keys.into_iter();
    // Sign and send the first request before returning (see above).
    let first = next_request(&mut keys, &auth.user, &exporter).await;
    match &first {
        Some(request) => {
            let frame = encode_frame(&Frame::UserauthRequest(request.clone()))
                .map_err(|e| TransportError::Io(e.into()))?;
            send.write_chunk(frame).await.map_err(|e| lost(&e))?;
        }
        None => {
            let _ = auth_tx.send(AuthState::Refused("publickey".to_string()));
        }
    }
    let shared = Shared::new();
    let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
    let control = spawn_control_writer(send);
    let user = auth.user.clone();
    {
        let conn = conn.clone();
        let control = control.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut reader = FrameReader::new(recv);
            if first.is_some() {
                let state =
                    client_auth_loop(&mut reader, &control, &mut keys, &user, &exporter).await;
                let succeeded = matches!(state, AuthState::Succeeded);
                let _ = auth_tx.send(state);
                if !succeeded {
                    // draft §7.6: a client with no key left closes the connection with BY_APPLICATION
                    conn.close(
                        ErrorCode::ByApplication.code().into(),
                        b"authentication failed",
                    );
                    return;
                }
            }
            // draft §7.6: the client MUST NOT accept server-initiated channel streams before USERAUTH_SUCCESS
            tokio::spawn(accept_channels(
                conn.clone(),
                incoming_tx.clone(),
                shared.budget.clone(),
            ));
            control_loop(conn, reader, control, shared, incoming_tx).await;
        });
    }
    Ok(QuicConnection::new(
        conn,
        control,
        incoming_rx,
        shared,
        auth_rx,
        auth.user,
        TransportKind::Quic,
    ))
}

async fn next_request(
    keys: &mut impl Iterator<Item = Arc<dyn UserKey>>,
    user: &str,
    exporter: &[u8],
) -> Option<crate::wire::UserauthRequest> {
    for key in keys.by_ref() {
        match userauth::signed_request(key.as_ref(), user, exporter).await {
            Ok(request) => return Some(request),
            Err(e) => tracing::debug!("skipping key {}: {e}", key.description()),
        }
    }
    None
}

async fn client_auth_loop(
    reader: &mut FrameReader,
    control: &ControlSender,
    keys: &mut impl Iterator<Item = Arc<dyn UserKey>>,
    user: &str,
    exporter: &[u8],
) -> AuthState {
    loop {
        match reader.next().await {
            Ok(Some(Frame::UserauthSuccess)) => return AuthState::Succeeded,
            Ok(Some(Frame::UserauthFailure { methods, .. })) => {
                match next_request(keys, user, exporter).await {
                    Some(request) => {
                        let Ok(frame) = encode_frame(&Frame::UserauthRequest(request)) else {
                            return AuthState::Failed("cannot encode the request".to_string());
                        };
                        if control.send(frame).await.is_err() {
                            return AuthState::Failed("connection closed".to_string());
                        }
                    }
                    None => return AuthState::Refused(methods),
                }
            }
            Ok(Some(other)) => {
                return AuthState::Failed(format!(
                    "unexpected frame during authentication: {}",
                    frame_kind(&other)
                ))
            }
            Ok(None) => {
                return AuthState::Failed("the server closed the control stream".to_string())
            }
            Err(e) => return AuthState::Failed(e.to_string()),
        }
    }
}

/// What a server needs to authenticate clients.
#[derive(Clone)]
pub struct ServerAuth {
    pub policy: Arc<dyn AuthPolicy>,
    pub login_grace_time: Option<Duration>,
    /// ClientAliveInterval (None or zero: off, sshd's default).
    pub client_alive_interval: Option<Duration>,
    /// ClientAliveCountMax (0: ask, but never give up, as in sshd).
    pub client_alive_count_max: u32,
}

/// Runs the QUIC handshake and user authentication for one incoming
/// connection; returns it once a user has logged in.
pub async fn accept(
    incoming: quinn::Incoming,
    auth: Arc<ServerAuth>,
) -> Result<QuicConnection, HandshakeError> {
    let deadline = auth
        .login_grace_time
        .map(|limit| tokio::time::Instant::now() + limit);
    let conn = handshake(incoming, deadline).await?;
    login(conn, auth, deadline).await
}

/// Runs the QUIC handshake of one incoming connection, until `deadline`.
/// The caller then looks at the negotiated ALPN (`crate::tunnel`) and
/// goes on with [`login`] for `sshq/1`.
pub async fn handshake(
    incoming: quinn::Incoming,
    deadline: Option<tokio::time::Instant>,
) -> Result<quinn::Connection, HandshakeError> {
    let connecting = incoming
        .accept()
        .map_err(|e| HandshakeError::Quic(Box::new(e)))?;
    match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline, connecting).await {
            Ok(result) => result,
            Err(_) => return Err(HandshakeError::LoginGraceTimeExpired),
        },
        None => connecting.await,
    }
    .map_err(|e| HandshakeError::Quic(Box::new(e)))
}

/// User authentication on a connection from [`handshake`], until
/// `deadline` (LoginGraceTime, counted from before the handshake);
/// returns the connection once a user has logged in.
pub async fn login(
    conn: quinn::Connection,
    auth: Arc<ServerAuth>,
    deadline: Option<tokio::time::Instant>,
) -> Result<QuicConnection, HandshakeError> {
    let result = match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline, server_login(&conn, &auth)).await
        {
            Ok(result) => result,
            Err(_) => {
                // draft §7.7: LoginGraceTime expiry after the handshake closes with AUTH_TIMEOUT (0x03)
                conn.close(
                    ErrorCode::AuthTimeout.code().into(),
                    b"timeout before authentication",
                );
                return Err(HandshakeError::LoginGraceTimeExpired);
            }
        },
        None => server_login(&conn, &auth).await,
    };
    let (user, send, reader) = match result {
        Ok(ok) => ok,
        Err(e) => {
            let code = match e {
                // draft §7.7: reaching MaxAuthTries closes with AUTH_FAILED instead of a last USERAUTH_FAILURE
                HandshakeError::TooManyFailures(_) => ErrorCode::AuthFailed,
                // draft §7.1: before USERAUTH_SUCCESS any other frame, an ended or undecodable control stream closes with PROTOCOL_ERROR
                _ => ErrorCode::ProtocolError,
            };
            conn.close(code.code().into(), e.to_string().as_bytes());
            return Err(e);
        }
    };
    // Logged in: the normal stream and flow-control limits apply now.
    // draft §7.7: stream and flow-control credit is raised only when USERAUTH_SUCCESS is sent
    crate::preauth::lift(&conn);
    let control = spawn_control_writer(send);
    if let Ok(success) = encode_frame(&Frame::UserauthSuccess) {
        let _ = control.send(success).await;
    }
    let shared = Shared::new();
    if let Some(interval) = auth.client_alive_interval.filter(|i| !i.is_zero()) {
        let alive = keepalive::ClientAlive {
            interval,
            count_max: auth.client_alive_count_max,
        };
        tokio::spawn(keepalive::watch_client(
            conn.clone(),
            control.clone(),
            shared.global_pending.clone(),
            shared.global_order.clone(),
            alive,
            user.clone(),
        ));
    }
    let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
    tokio::spawn(accept_channels(
        conn.clone(),
        incoming_tx.clone(),
        shared.budget.clone(),
    ));
    tokio::spawn(control_loop(
        conn.clone(),
        reader,
        control.clone(),
        shared.clone(),
        incoming_tx,
    ));
    let (_, auth_rx) = watch::channel(AuthState::Succeeded);
    Ok(QuicConnection::new(
        conn,
        control,
        incoming_rx,
        shared,
        auth_rx,
        user,
        TransportKind::Quic,
    ))
}

/// Reads userauth requests until one succeeds; the control stream's halves
/// come back with the user name.
async fn server_login(
    conn: &quinn::Connection,
    auth: &ServerAuth,
) -> Result<(String, quinn::SendStream, FrameReader), HandshakeError> {
    // draft §7.7: the server reads no stream but the control stream before USERAUTH_SUCCESS
    let (mut send, recv) = conn
        .accept_bi()
        .await
        .map_err(|_| HandshakeError::Closed(None))?;
    let mut exporter = [0u8; USERAUTH_EXPORTER_LEN];
    conn.export_keying_material(&mut exporter, USERAUTH_EXPORTER_LABEL, b"")
        .map_err(|_| ProtocolError::ExporterUnavailable)?;
    let mut reader = FrameReader::new(recv);
    let mut failures = 0u32;
    let peer = conn.remote_address();
    loop {
        let request = match reader.next().await {
            Ok(Some(Frame::UserauthRequest(request))) => request,
            // Only the frame's kind: its body is the peer's, up to 1 MiB.
            Ok(Some(other)) => {
                return Err(HandshakeError::Protocol(ProtocolError::UnexpectedMessage {
                    expected: "a userauth request",
                    got: frame_kind(&other),
                }))
            }
            Ok(None) => return Err(HandshakeError::Closed(None)),
            Err(e) => return Err(ProtocolError::Undecodable(Box::new(e)).into()),
        };
        // As sshd (auth2.c): once MaxAuthTries requests have failed, the
        // next is not looked at; so MaxAuthTries 0 lets nobody in.
        // draft §7.7: a request arriving when the failure count already equals MaxAuthTries is not examined
        if failures >= auth.policy.max_auth_tries() {
            return Err(too_many_failures(&request.user, peer));
        }
        // The policy keeps its blocking work (files, user database) off
        // the async workers itself.
        let checked = userauth::verify(&request, &exporter, auth.policy.as_ref()).await;
        match checked {
            Ok(_key) => return Ok((request.user, send, reader)),
            Err(refusal) => {
                failures = failures.saturating_add(1);
                // OpenSSH's wording ("from ADDR port N"), which log
                // watchers such as fail2ban match.
                tracing::info!(
                    "Failed publickey for {} from {} port {} over quic: {}",
                    log_escape::peer_text(&request.user),
                    peer.ip(),
                    peer.port(),
                    log_escape::peer_text(&refusal.to_string())
                );
                if failures >= auth.policy.max_auth_tries() {
                    return Err(too_many_failures(&request.user, peer));
                }
                let failure = Frame::UserauthFailure {
                    // draft §7.4: USERAUTH_FAILURE lists publickey with partial success FALSE and never says why
                    methods: "publickey".to_string(),
                    partial: false,
                };
                let failure =
                    encode_frame(&failure)
                    .map_err(|e| HandshakeError::Protocol(ProtocolError::Unencodable(Box::new(e))))?;
                send.write_chunk(failure)
                    .await
                    .map_err(|_| HandshakeError::Closed(None))?;
            }
        }
    }
}

/// sshd's auth_maxtries_exceeded: its log line, and the error that closes
/// the connection with "Too many authentication failures".
fn too_many_failures(user: &str, peer: SocketAddr) -> HandshakeError {
    let user = log_escape::peer_text(user);
    tracing::error!(
        "maximum authentication attempts exceeded for {user} from {} port {} ssh2",
        peer.ip(),
        peer.port()
    );
    HandshakeError::TooManyFailures(user)
}

/// A frame's kind, for messages: never its peer-supplied contents.
fn frame_kind(frame: &Frame) -> &'static str {
    match frame {
        Frame::UserauthRequest(_) => "USERAUTH_REQUEST",
        Frame::UserauthFailure { .. } => "USERAUTH_FAILURE",
        Frame::UserauthSuccess => "USERAUTH_SUCCESS",
        Frame::GlobalRequest { .. } => "GLOBAL_REQUEST",
        Frame::RequestSuccess { .. } => "REQUEST_SUCCESS",
        Frame::RequestFailure => "REQUEST_FAILURE",
        Frame::ChannelOpen(_) => "CHANNEL_OPEN",
        Frame::OpenConfirmation => "CHANNEL_OPEN_CONFIRMATION",
        Frame::OpenFailure(_) => "CHANNEL_OPEN_FAILURE",
        Frame::Data(_) => "CHANNEL_DATA",
        Frame::ExtendedData { .. } => "CHANNEL_EXTENDED_DATA",
        Frame::ChannelRequest { .. } => "CHANNEL_REQUEST",
        Frame::ChannelSuccess => "CHANNEL_SUCCESS",
        Frame::ChannelFailure => "CHANNEL_FAILURE",
    }
}

/// State shared by a connection and its control-stream task.
#[derive(Clone)]
struct Shared {
    global_pending: ReplyQueue<GlobalReply>,
    global_order: Arc<Mutex<()>>,
    budget: PipeBudget,
}

impl Shared {
    fn new() -> Self {
        Shared {
            global_pending: ReplyQueue::default(),
            global_order: Arc::default(),
            budget: PipeBudget::new(CONNECTION_PIPE_BUDGET),
        }
    }
}

impl QuicConnection {
    fn new(
        conn: quinn::Connection,
        control: ControlSender,
        incoming: mpsc::UnboundedReceiver<Incoming<QuicChannel>>,
        shared: Shared,
        auth: watch::Receiver<AuthState>,
        user: String,
        transport: TransportKind,
    ) -> Self {
        let info = ConnectionInfo {
            transport,
            local_addr: None,
            peer_addr: Some(conn.remote_address()),
            user,
            kex: None,
        };
        QuicConnection {
            conn,
            control,
            incoming: Mutex::new(incoming),
            global_pending: shared.global_pending,
            global_order: shared.global_order,
            budget: shared.budget,
            info,
            auth,
            endpoint: None,
        }
    }

    /// Records the negotiated key exchange for `info()`.
    pub fn set_kex(&mut self, kex: Option<String>) {
        self.info.kex = kex;
    }

    /// Records the local address for `info()` (quinn does not know it for
    /// wildcard binds).
    pub fn set_local_addr(&mut self, addr: Option<SocketAddr>) {
        self.info.local_addr = addr;
    }
}

/// Frames waiting for the control stream's writer. Bounded, so that a peer
/// that stops reading the control stream stops our replies (and, through
/// them, our reading of its requests) instead of queueing them.
type ControlSender = mpsc::Sender<Bytes>;

/// Frames queued for the control stream's writer.
const CONTROL_QUEUE: usize = 64;

fn spawn_control_writer(mut send: quinn::SendStream) -> ControlSender {
    let (tx, mut rx) = mpsc::channel::<Bytes>(CONTROL_QUEUE);
    tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            // Frames are never empty; an empty item asks for FIN.
            if frame.is_empty() {
                break;
            }
            if send.write_chunk(frame).await.is_err() {
                return;
            }
        }
        let _ = send.finish();
    });
    tx
}

/// Global requests and their replies, after authentication.
async fn control_loop(
    conn: quinn::Connection,
    mut reader: FrameReader,
    control: ControlSender,
    shared: Shared,
    incoming: mpsc::UnboundedSender<Incoming<QuicChannel>>,
) {
    // Our replies to the peer's requests go out in request order. The
    // peer's requests wait in a bounded queue until handled and their reply
    // written, so a peer that floods requests, or never reads the replies,
    // finds the control stream no longer read (see `replies::REQUEST_QUEUE`).
    let (order_tx, mut order_rx) =
        mpsc::channel::<(oneshot::Receiver<GlobalReply>, bool)>(REQUEST_QUEUE);
    let replier = control.clone();
    tokio::spawn(async move {
        while let Some((waiter, want_reply)) = order_rx.recv().await {
            let reply = waiter.await.unwrap_or(GlobalReply::Failure);
            if !want_reply {
                continue;
            }
            let frame = match reply {
                GlobalReply::Success { bound_port } => Frame::RequestSuccess { bound_port },
                GlobalReply::Failure => Frame::RequestFailure,
            };
            let Ok(frame) = encode_frame(&frame) else {
                return;
            };
            if replier.send(frame).await.is_err() {
                return;
            }
        }
    });
    loop {
        let frame = match reader.next().await {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                // The peer is done with the connection (a client at the end
                // of its session): close it, so both sides agree at once.
                tracing::debug!("{}: control stream finished", conn.remote_address());
                // draft §7.8: FIN on the control stream after authentication ends the connection with NO_ERROR
                conn.close(ErrorCode::NoError.code().into(), b"session ended");
                return;
            }
            Err(ReadFailure::Stream(e)) => {
                tracing::debug!("{}: control stream ended: {e}", conn.remote_address());
                return;
            }
            Err(ReadFailure::Wire(e)) => {
                // draft §6.5: a decoding error on the control stream closes the connection with PROTOCOL_ERROR
                conn.close(
                    ErrorCode::ProtocolError.code().into(),
                    e.to_string().as_bytes(),
                );
                return;
            }
        };
        match frame {
            Frame::GlobalRequest {
                request,
                want_reply,
            } => {
                let (tx, rx) = oneshot::channel();
                if order_tx.send((rx, want_reply)).await.is_err() {
                    return;
                }
                let reply = Some(tx);
                let _ = incoming.send(Incoming::GlobalRequest(IncomingGlobalRequest {
                    request,
                    reply,
                }));
            }
            Frame::RequestSuccess { .. } | Frame::RequestFailure => {
                let reply = match frame {
                    Frame::RequestSuccess { bound_port } => GlobalReply::Success { bound_port },
                    _ => GlobalReply::Failure,
                };
                // draft §9: a global reply when no request is outstanding closes the connection with PROTOCOL_ERROR
                if !shared.global_pending.resolve(reply) {
                    conn.close(
                        ErrorCode::ProtocolError.code().into(),
                        b"unexpected global reply",
                    );
                    return;
                }
            }
            other => {
                let why = format!(
                    "unexpected frame on the control stream: {}",
                    frame_kind(&other)
                );
                // draft §7.8: after authentication only GLOBAL_REQUEST and its answers may arrive on the control stream
                conn.close(ErrorCode::ProtocolError.code().into(), why.as_bytes());
                return;
            }
        }
    }
}

/// Every further bidirectional stream is a channel the peer opens.
async fn accept_channels(
    conn: quinn::Connection,
    incoming: mpsc::UnboundedSender<Incoming<QuicChannel>>,
    budget: PipeBudget,
) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        tokio::spawn(receive_open(send, recv, incoming.clone(), budget.clone()));
    }
}

/// Reads a stream's OPEN frame and offers the channel; a stream that does
/// not start with one is reset, and only that stream suffers.
async fn receive_open(
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    incoming: mpsc::UnboundedSender<Incoming<QuicChannel>>,
    budget: PipeBudget,
) {
    let mut reader = FrameReader::new(recv);
    // draft §8.1: a stream whose CHANNEL_OPEN has not arrived within 30 s is reset with PROTOCOL_ERROR
    let first = tokio::time::timeout(OPEN_FRAME_TIMEOUT, reader.next()).await;
    let kind = match first {
        Ok(Ok(Some(Frame::ChannelOpen(kind)))) => kind,
        // draft §8.3: unknown channel type: OPEN_FAILURE reason 3 then FIN; pipelined frames are discarded
        Ok(Err(ReadFailure::Wire(WireError::UnknownChannelType(name)))) => {
            let failure = OpenFailure {
                reason: OpenFailureReason::UnknownChannelType,
                message: format!("unknown channel type \"{}\"", log_escape::peer_text(&name)),
            };
            if let Ok(failure) = encode_frame(&Frame::OpenFailure(failure)) {
                let _ = send.write_chunk(failure).await;
            }
            let _ = send.finish();
            return;
        }
        _ => {
            let (mut recv, _) = reader.into_parts();
            // draft §6.5: a bad first frame on a channel stream resets only that stream (STOP_SENDING + RESET_STREAM, PROTOCOL_ERROR)
            let _ = recv.stop(ErrorCode::ProtocolError.code().into());
            let _ = send.reset(ErrorCode::ProtocolError.code().into());
            return;
        }
    };
    let (recv, buffered) = reader.into_parts();
    let (decide_tx, decide_rx) = oneshot::channel();
    let channel =
        QuicChannel::accepted(kind.clone(), send, recv, buffered, decide_rx).within_budget(&budget);
    let _ = incoming.send(Incoming::Channel(PendingChannel::new(
        kind, channel, decide_tx,
    )));
}

impl Connection for QuicConnection {
    type Channel = QuicChannel;

    async fn open_channel(&self, kind: ChannelKind) -> Result<QuicChannel, TransportError> {
        // A CHANNEL_OPEN that cannot be encoded (a path over the frame
        // limit) is refused here, before a stream is spent on it.
        encode_frame(&Frame::ChannelOpen(kind.clone()))
            .map_err(|e| TransportError::Io(e.into()))?;
        let (send, recv) = self
            .conn
            .open_bi()
            .await
            .map_err(|e| TransportError::ConnectionClosed(Some(e.to_string())))?;
        Ok(QuicChannel::opened(kind, send, recv).within_budget(&self.budget))
    }

    async fn accept(&self) -> Option<Incoming<QuicChannel>> {
        self.incoming.lock().await.recv().await
    }

    async fn global_request(&self, request: GlobalRequest) -> Result<GlobalReply, TransportError> {
        // Encoded before a reply is expected, so a failure leaves no
        // reply slot behind.
        let frame = encode_frame(&Frame::GlobalRequest {
            request,
            want_reply: true,
        })
        .map_err(|e| TransportError::Io(e.into()))?;
        let rx = {
            let _order = self.global_order.lock().await;
            let rx = self
                .global_pending
                .expect()
                .ok_or(TransportError::ConnectionClosed(None))?;
            self.control
                .send(frame)
                .await
                .map_err(|_| TransportError::ConnectionClosed(None))?;
            rx
        };
        rx.await.map_err(|_| TransportError::ConnectionClosed(None))
    }

    fn info(&self) -> ConnectionInfo {
        self.info.clone()
    }

    async fn close(&self, reason: &str) {
        // The client ends a session by finishing its control stream; the
        // server answers by closing the connection (see `control_loop`).
        // Closing on our own straight away is not enough: a client that is
        // done within its first round trip may not have seen HANDSHAKE_DONE
        // yet, and its CONNECTION_CLOSE then travels in the Handshake space,
        // which the server has already discarded, so the server would only
        // notice at its idle timeout.
        let peer_closed = self.endpoint.is_some()
            // Bounded, like the wait below: a peer that reads nothing must
            // not hold up our close.
            && matches!(
                // draft §7.8: the client ends a session with FIN on the control stream and waits briefly for the server's close
                tokio::time::timeout(Duration::from_millis(500), self.control.send(Bytes::new()))
                    .await,
                Ok(Ok(()))
            )
            && tokio::time::timeout(Duration::from_millis(500), self.conn.closed())
                .await
                .is_ok();
        if peer_closed {
            return; // nothing left to send
        }
        // draft §10: an orderly end of a connection is NO_ERROR (0x00)
        // An orderly end is NO_ERROR; ByApplication is for aborts.
        self.conn
            .close(ErrorCode::NoError.code().into(), reason.as_bytes());
        // quinn sends CONNECTION_CLOSE from the endpoint's task: wait until
        // it has, or the process may exit first.
        if let Some(endpoint) = &self.endpoint {
            let _ = tokio::time::timeout(Duration::from_millis(300), endpoint.wait_idle()).await;
        }
    }

    async fn closed(&self) -> Option<TransportError> {
        let error = self.conn.closed().await;
        match error {
            quinn::ConnectionError::LocallyClosed => None,
            quinn::ConnectionError::ApplicationClosed(close)
                if close.error_code.into_inner() == 0 =>
            {
                None
            }
            other => Some(TransportError::ConnectionClosed(Some(other.to_string()))),
        }
    }
}
