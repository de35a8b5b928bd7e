//! An SSH connection over QUIC: the control stream (user authentication and
//! global requests) and the channels, one QUIC stream each.
//!
//! The control stream is the first bidirectional stream the client opens.
//! Every later bidirectional stream, opened by either side, is one channel.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sshq_core::auth::{AuthPolicy, UserKey};
use sshq_core::channel::{ChannelKind, GlobalReply, GlobalRequest};
use sshq_core::error::{HandshakeError, ProtocolError as TransportProtocolError, TransportError};
use sshq_core::transport::{
    Connection, ConnectionInfo, Incoming, IncomingGlobalRequest, TransportKind,
};
use tokio::sync::{mpsc, oneshot, watch, Mutex};

use crate::channel::QuicChannel;
use crate::channel_streams::ChannelStreams;
use crate::client_auth::{ClientLogin, Next};
use crate::keepalive;
use crate::one_stream::ChannelMapping;
use crate::preauth_credit::{PreauthCredit, PREAUTH_CHANNEL_BUDGET};
use crate::proto::control::{Close, Control, ControlEvent};
use crate::proto::{ProtocolError, RequestId, Transmit};
use crate::wire::{encode_frame, ErrorCode, USERAUTH_EXPORTER_LABEL, USERAUTH_EXPORTER_LEN};

/// The drivers' clock: tokio's, so that the machines and the timers that
/// wake them agree.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Runs `future` until `deadline`; None if the deadline came first.
pub(crate) async fn until<F: Future>(deadline: Option<Instant>, future: F) -> Option<F::Output> {
    match deadline {
        Some(deadline) => {
            let deadline = tokio::time::Instant::from_std(deadline);
            tokio::time::timeout_at(deadline, future).await.ok()
        }
        None => Some(future.await),
    }
}

/// The single conversion of the sans-IO machines' errors to the errors
/// that cross the transport trait.
impl From<ProtocolError> for TransportError {
    fn from(error: ProtocolError) -> Self {
        TransportError::Protocol(TransportProtocolError::Violation(Box::new(error)))
    }
}

/// Resolves when the peer sends STOP_SENDING for our direction (Some), or
/// our FIN is acknowledged (None).
type StopWatch =
    Pin<Box<dyn Future<Output = Result<Option<quinn::VarInt>, quinn::StoppedError>> + Send>>;

/// Moves bytes between the control stream and its [`Control`] machine.
pub(crate) struct ControlDriver {
    conn: quinn::Connection,
    pub(crate) machine: Control,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    /// The peer's STOP_SENDING reaches us even while we have nothing to
    /// write; None once it has resolved.
    stop: Option<StopWatch>,
}

impl ControlDriver {
    pub(crate) fn new(
        conn: quinn::Connection,
        machine: Control,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) -> Self {
        let stop: StopWatch = Box::pin(send.stopped());
        ControlDriver {
            conn,
            machine,
            send,
            recv,
            stop: Some(stop),
        }
    }

    /// Writes what the machine has to send; Err once the stream is gone.
    pub(crate) async fn flush(&mut self) -> Result<(), quinn::WriteError> {
        while let Some(transmit) = self.machine.poll_transmit() {
            match transmit {
                Transmit::Frame(frame) => match encode_frame(&frame) {
                    Ok(bytes) => match self.send.write_chunk(bytes).await {
                        Ok(()) => {}
                        // The peer's STOP_SENDING: the machine decides
                        // what that means (draft §7.8); its close follows.
                        Err(quinn::WriteError::Stopped(_)) => {
                            self.machine.handle_peer_stop();
                            return Ok(());
                        }
                        Err(e) => return Err(e),
                    },
                    // Only a frame this side built can be too big (a
                    // request over MAX_FRAME_LEN): end the connection
                    // rather than send a frame the peer must refuse.
                    Err(e) => {
                        tracing::warn!("control stream: {e}");
                        self.conn
                            .close(ErrorCode::InternalError.code().into(), b"oversized frame");
                        return Err(quinn::WriteError::ConnectionLost(
                            quinn::ConnectionError::LocallyClosed,
                        ));
                    }
                },
                Transmit::Finish => {
                    let _ = self.send.finish();
                }
                Transmit::Reset(code) => {
                    let _ = self.send.reset(code.code().into());
                }
                Transmit::StopSending(code) => {
                    let _ = self.recv.stop(code.code().into());
                }
            }
        }
        Ok(())
    }

    /// Reads once from the stream into the machine, or hands it the
    /// peer's STOP_SENDING, whichever comes first (the peer's reset and
    /// stop included: the machine decides what they mean); Err if the
    /// stream cannot be read any more (the connection is gone).
    pub(crate) async fn read(&mut self) -> Result<(), quinn::ReadError> {
        let read = self.recv.read_chunk(64 * 1024, true);
        let result = match self.stop.as_mut() {
            Some(stop) => tokio::select! {
                read = read => Some(read),
                stopped = stop => {
                    self.stop = None;
                    if let Ok(Some(_code)) = stopped {
                        self.machine.handle_peer_stop();
                    }
                    // Our FIN acknowledged, or the connection lost (the
                    // next read says so): nothing for the machine.
                    None
                }
            },
            None => Some(read.await),
        };
        match result {
            None => {}
            Some(Ok(Some(chunk))) => self.machine.handle_bytes(now(), &chunk.bytes),
            Some(Ok(None)) => self.machine.handle_fin(now()),
            Some(Err(quinn::ReadError::Reset(_))) => self.machine.handle_peer_reset(),
            Some(Err(e)) => return Err(e),
        }
        Ok(())
    }

    /// Carries out the machine's decision to end the connection.
    fn close(&self, close: &Close) {
        self.conn
            .close(close.code.code().into(), close.reason.as_bytes());
    }
}

/// What a connection's handles ask of its control-stream driver.
pub(crate) enum Command {
    /// Send a global request (want reply) and hand its reply back.
    Request {
        request: GlobalRequest,
        reply: oneshot::Sender<GlobalReply>,
    },
    /// The application's answer to the peer's request `id`.
    Answer { id: RequestId, reply: GlobalReply },
    /// End the session: FIN on the control stream.
    Finish,
}

/// Commands waiting for the control-stream driver. Bounded, so that a
/// peer that stops reading the control stream stops our requests too.
pub(crate) type CommandSender = mpsc::Sender<Command>;

/// Commands queued for the control-stream driver.
const CONTROL_QUEUE: usize = 64;

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
    commands: CommandSender,
    incoming: Mutex<mpsc::UnboundedReceiver<Box<Incoming<QuicChannel>>>>,
    info: ConnectionInfo,
    auth: watch::Receiver<AuthState>,
    /// The client's endpoint, kept so that closing can wait for the
    /// CONNECTION_CLOSE to be sent before the process exits.
    endpoint: Option<quinn::Endpoint>,
    /// The client's channels share this until USERAUTH_SUCCESS (draft §7.6).
    preauth_credit: Option<PreauthCredit>,
    /// Where channels get their streams, and the budget for their unread data.
    streams: ChannelStreams,
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
    /// The server as the user named it (ssh's `%h` after canonicalisation),
    /// for the password prompt "user@host's password: ".
    pub host: String,
    pub keys: Vec<Arc<dyn UserKey>>,
    /// Passwords, keyboard-interactive and the order of methods.
    pub auth_options: sshq_core::auth_methods::ClientAuthOptions,
}

/// Logs in on an established QUIC connection. Returns as soon as the first
/// request is on its way (signed; or, when a password comes first, once the
/// user has typed it): channels opened meanwhile wait, on the
/// server, until authentication succeeds, so login, channel open and exec
/// share the same round trip. Use [`QuicConnection::authenticated`] for
/// the outcome.
pub async fn client_session(
    conn: quinn::Connection,
    auth: ClientAuth,
) -> Result<QuicConnection, TransportError> {
    client_session_with(conn, auth, ChannelMapping::StreamPerChannel).await
}

/// [`client_session`] with a choice of channel mapping: `OneStream` is the
/// lab baseline of [`crate::one_stream`], which the server must run too.
pub async fn client_session_with(
    conn: quinn::Connection,
    auth: ClientAuth,
    mapping: ChannelMapping,
) -> Result<QuicConnection, TransportError> {
    match client_session_judged(conn, auth, mapping, None).await {
        Ok(session) => Ok(session),
        Err(SessionStart::Transport(e)) => Err(e),
        Err(SessionStart::HostKeyRejected) => Err(TransportError::ConnectionClosed(Some(
            "Host key verification failed.".to_string(),
        ))),
    }
}

/// Why a session could not start.
pub(crate) enum SessionStart {
    /// The host-key policy refused the server once its certificate (or its
    /// lack of one) was known (draft §5.5).
    HostKeyRejected,
    Transport(TransportError),
}

impl From<TransportError> for SessionStart {
    fn from(error: TransportError) -> Self {
        SessionStart::Transport(error)
    }
}

impl From<TransportProtocolError> for SessionStart {
    fn from(error: TransportProtocolError) -> Self {
        SessionStart::Transport(error.into())
    }
}

/// [`client_session_with`] for a connection whose host key still waits
/// for the server's certificate (`pending`): that is settled first, and
/// nothing else is sent before (draft §5.5).
pub(crate) async fn client_session_judged(
    conn: quinn::Connection,
    auth: ClientAuth,
    mapping: ChannelMapping,
    pending: Option<crate::host_certificate::PendingHostKey>,
) -> Result<QuicConnection, SessionStart> {
    let lost = |e: &dyn std::fmt::Display| TransportError::ConnectionClosed(Some(e.to_string()));
    let (send, recv) = conn.open_bi().await.map_err(|e| lost(&e))?;
    let mut exporter = [0u8; USERAUTH_EXPORTER_LEN];
    conn.export_keying_material(&mut exporter, USERAUTH_EXPORTER_LABEL, b"")
        .map_err(|_| TransportProtocolError::ExporterUnavailable)?;
    let (auth_tx, auth_rx) = watch::channel(AuthState::Pending);
    let ClientAuth {
        user,
        host,
        keys,
        auth_options,
    } = auth;
    let preferred = sshq_core::auth_methods::name_list(&auth_options.preferred);
    let mut login = ClientLogin::new(user.clone(), host, keys, auth_options, exporter);
    let mut driver = ControlDriver::new(conn.clone(), Control::client(), send, recv);
    if let Some(pending) = pending {
        let certificate = host_certificate(&mut driver).await?;
        if !pending.decide(certificate).await {
            conn.close(
                ErrorCode::ByApplication.code().into(),
                b"host key verification failed",
            );
            return Err(SessionStart::HostKeyRejected);
        }
    }
    // draft §7.6: channel data before USERAUTH_SUCCESS is bounded.
    let credit = PreauthCredit::new(PREAUTH_CHANNEL_BUDGET);
    // Build and send the first request before returning (see above).
    let has_request = match login.first().await {
        Next::Request(request) => {
            driver.machine.send_userauth(request);
            driver.flush().await.map_err(|e| lost(&e))?;
            true
        }
        Next::Nothing => {
            let _ = auth_tx.send(AuthState::Refused(preferred));
            // No request will need the credit.
            credit.lift();
            false
        }
    };
    let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
    let streams = ChannelStreams::new(conn.clone(), mapping, &incoming_tx);
    let (commands_tx, commands_rx) = mpsc::channel(CONTROL_QUEUE);
    {
        let conn = conn.clone();
        let streams = streams.clone();
        let answers = commands_tx.clone();
        let credit = credit.clone();
        tokio::spawn(async move {
            if has_request {
                let state = login.run(&mut driver).await;
                // Authentication is over: channel data need not wait any
                // more (after a failure, the connection is closing).
                credit.lift();
                let succeeded = matches!(state, AuthState::Succeeded);
                let _ = auth_tx.send(state);
                if !succeeded {
                    conn.close(
                        ErrorCode::ByApplication.code().into(),
                        b"authentication failed",
                    );
                    return;
                }
            }
            // draft §7.6: server-initiated channels only after USERAUTH_SUCCESS.
            tokio::spawn(streams.accept(incoming_tx.clone()));
            run_control(driver, commands_rx, answers, incoming_tx).await;
        });
    }
    let mut session = QuicConnection::new(conn, commands_tx, incoming_rx, streams, auth_rx, user);
    session.preauth_credit = Some(credit);
    Ok(session)
}

/// Client: asks for the server's host certificate and waits for it
/// (draft §5.5); empty when the server has none.
async fn host_certificate(driver: &mut ControlDriver) -> Result<bytes::Bytes, TransportError> {
    let lost = |why: String| TransportError::ConnectionClosed(Some(why));
    driver.machine.request_host_certificate();
    loop {
        driver.flush().await.map_err(|e| lost(e.to_string()))?;
        while let Some(event) = driver.machine.poll_event() {
            match event {
                ControlEvent::HostCertificate(certificate) => return Ok(certificate),
                ControlEvent::Closed(close) => return Err(lost(close.reason)),
                _ => {}
            }
        }
        driver.read().await.map_err(|e| lost(e.to_string()))?;
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
    /// StreamPerChannel (sshq/1), or the one-stream lab baseline
    /// (`OneStreamBaseline yes`, see [`crate::one_stream`]).
    pub channel_mapping: ChannelMapping,
    /// The OpenSSH certificate (blob) of the Ed25519 host key TLS
    /// presents, sent to clients that ask (draft §5.5); empty for none.
    pub host_certificate: bytes::Bytes,
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
    handshake_with(incoming, None, deadline).await
}

/// [`handshake`] under `config` instead of the endpoint's own server
/// configuration.
pub(crate) async fn handshake_with(
    incoming: quinn::Incoming,
    config: Option<Arc<quinn::ServerConfig>>,
    deadline: Option<tokio::time::Instant>,
) -> Result<quinn::Connection, HandshakeError> {
    let connecting = match config {
        Some(config) => incoming.accept_with(config),
        None => incoming.accept(),
    }
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
    let deadline = deadline.map(tokio::time::Instant::into_std);
    let crate::server_login::LoggedIn {
        user,
        credential,
        mut driver,
    } = crate::server_login::server_login(&conn, &auth, deadline).await?;
    // Logged in: the normal stream and flow-control limits apply now
    // (draft §7.7, pre-authentication credit).
    crate::preauth::lift(&conn);
    let _ = driver.flush().await; // USERAUTH_SUCCESS
    let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
    let streams = ChannelStreams::new(conn.clone(), auth.channel_mapping, &incoming_tx);
    let (commands_tx, commands_rx) = mpsc::channel(CONTROL_QUEUE);
    if let Some(interval) = auth.client_alive_interval.filter(|i| !i.is_zero()) {
        let alive = keepalive::ClientAlive {
            interval,
            count_max: auth.client_alive_count_max,
        };
        tokio::spawn(keepalive::watch_client(
            conn.clone(),
            commands_tx.clone(),
            alive,
            user.clone(),
        ));
    }
    // draft §7.7: channel streams are read only after USERAUTH_SUCCESS.
    tokio::spawn(streams.clone().accept(incoming_tx.clone()));
    tokio::spawn(run_control(
        driver,
        commands_rx,
        commands_tx.clone(),
        incoming_tx,
    ));
    let (_, auth_rx) = watch::channel(AuthState::Succeeded);
    let mut connection =
        QuicConnection::new(conn, commands_tx, incoming_rx, streams, auth_rx, user);
    connection.info.credential = credential;
    Ok(connection)
}

impl QuicConnection {
    fn new(
        conn: quinn::Connection,
        commands: CommandSender,
        incoming: mpsc::UnboundedReceiver<Box<Incoming<QuicChannel>>>,
        streams: ChannelStreams,
        auth: watch::Receiver<AuthState>,
        user: String,
    ) -> Self {
        let info = ConnectionInfo {
            transport: TransportKind::Quic,
            local_addr: None,
            peer_addr: Some(conn.remote_address()),
            user,
            credential: None,
            kex: None,
        };
        QuicConnection {
            conn,
            commands,
            incoming: Mutex::new(incoming),
            info,
            auth,
            endpoint: None,
            preauth_credit: None,
            streams,
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

/// Global requests and their replies, after authentication: the control
/// machine orders the replies, this loop moves bytes and commands.
async fn run_control(
    mut driver: ControlDriver,
    mut commands: mpsc::Receiver<Command>,
    answers: CommandSender,
    incoming: crate::channel_streams::IncomingSender,
) {
    // Our requests waiting for their replies.
    let mut waiting: HashMap<RequestId, oneshot::Sender<GlobalReply>> = HashMap::new();
    loop {
        if driver.flush().await.is_err() {
            return;
        }
        while let Some(event) = driver.machine.poll_event() {
            match event {
                ControlEvent::GlobalRequest { id, request, .. } => {
                    let (tx, rx) = oneshot::channel();
                    let answers = answers.clone();
                    tokio::spawn(async move {
                        let reply = rx.await.unwrap_or(GlobalReply::Failure);
                        let _ = answers.send(Command::Answer { id, reply }).await;
                    });
                    let _ =
                        incoming.send(Box::new(Incoming::GlobalRequest(IncomingGlobalRequest {
                            request,
                            reply: Some(tx),
                        })));
                }
                ControlEvent::GlobalReply { id, reply } => {
                    if let Some(waiter) = waiting.remove(&id) {
                        let _ = waiter.send(reply);
                    }
                }
                ControlEvent::Closed(close) => {
                    // A finished control stream (the client at the end of
                    // its session) is closed at once, so both sides agree.
                    tracing::debug!(
                        "{}: control stream ended: {}",
                        driver.conn.remote_address(),
                        close.reason
                    );
                    driver.close(&close);
                    return;
                }
                _ => {}
            }
        }
        if driver.flush().await.is_err() {
            return;
        }
        let reading = driver.machine.wants_input();
        tokio::select! {
            read = driver.read(), if reading => {
                if let Err(e) = read {
                    tracing::debug!("{}: control stream ended: {e}", driver.conn.remote_address());
                    return;
                }
            }
            command = commands.recv() => match command {
                Some(Command::Request { request, reply }) => {
                    if let Ok(Some(id)) = driver.machine.send_global_request(request, true) {
                        waiting.insert(id, reply);
                    }
                }
                Some(Command::Answer { id, reply }) => driver.machine.answer(now(), id, reply),
                Some(Command::Finish) => driver.machine.finish(),
                None => return,
            },
        }
    }
}

impl Connection for QuicConnection {
    type Channel = QuicChannel;

    async fn open_channel(&self, kind: ChannelKind) -> Result<QuicChannel, TransportError> {
        let (send, recv) = self.streams.open().await?;
        Ok(QuicChannel::opened(kind, send, recv)
            .within_budget(self.streams.budget())
            .with_preauth_credit(self.preauth_credit.as_ref()))
    }

    async fn rekey(&self) -> Result<(), TransportError> {
        // QUIC updates the 1-RTT keys in place; the peer follows the key
        // phase bit. No round trip, nothing for the user to wait for.
        self.conn.force_key_update();
        Ok(())
    }

    async fn accept(&self) -> Option<Incoming<QuicChannel>> {
        self.incoming
            .lock()
            .await
            .recv()
            .await
            .map(|incoming| *incoming)
    }

    async fn global_request(&self, request: GlobalRequest) -> Result<GlobalReply, TransportError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Request { request, reply })
            .await
            .map_err(|_| TransportError::ConnectionClosed(None))?;
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
                tokio::time::timeout(Duration::from_millis(500), self.commands.send(Command::Finish))
                    .await,
                Ok(Ok(()))
            )
            && tokio::time::timeout(Duration::from_millis(500), self.conn.closed())
                .await
                .is_ok();
        if peer_closed {
            return; // nothing left to send
        }
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
