//! The server side of SSH over a byte stream: russh's server session, with
//! its channels and requests handed to the code above the transport trait.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::PrivateKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{ChannelId, MethodKind, MethodSet};
use sshq_core::auth::AuthPolicy;
use sshq_core::channel::{
    ChannelKind, ChannelRequest, GlobalReply, GlobalRequest, PtyRequest, WindowSize,
};
use sshq_core::error::TransportError;
use sshq_core::transport::{
    Connection, ConnectionInfo, Incoming, IncomingGlobalRequest, IncomingRequest, ReplyHandle,
    TransportKind,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch, Mutex};

use crate::channel::{core_modes, signal_name_of, Side, TcpChannel};

/// A server-side channel over TCP.
pub type ServerChannel = TcpChannel<Msg>;

/// What the server needs to run SSH over a byte stream.
pub struct ServerParams {
    /// Host keys, in the order to offer them; at least one.
    pub host_keys: Vec<PrivateKey>,
    /// Who may log in with which key.
    pub policy: Arc<dyn AuthPolicy>,
    /// How long a client may take to authenticate (None: no limit).
    pub login_grace_time: Option<Duration>,
    /// Whether `auth-agent-req@openssh.com` is accepted.
    pub allow_agent_forwarding: bool,
}

/// Why a client was dropped before it had a session.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("timeout before authentication")]
    LoginGraceTimeExpired,
    #[error("connection closed before authentication{}", .0.as_deref().map(|e| format!(": {e}")).unwrap_or_default())]
    Closed(Option<String>),
}

/// How much of an error text that may quote the peer (e.g. its algorithm
/// lists) goes into a log line.
const PEER_ERROR_MAX_CHARS: usize = 200;

/// `text` with control characters escaped (a newline cannot forge a log
/// line) and cut to [`PEER_ERROR_MAX_CHARS`].
fn peer_error_text(text: &str) -> String {
    let escaped: String = text.escape_debug().collect();
    if escaped.chars().count() <= PEER_ERROR_MAX_CHARS {
        return escaped;
    }
    let cut: String = escaped.chars().take(PEER_ERROR_MAX_CHARS).collect();
    format!("{cut}...")
}

/// An authenticated server-side SSH connection over a byte stream.
pub struct TcpServerConnection {
    handle: russh::server::Handle,
    incoming: Mutex<mpsc::UnboundedReceiver<Incoming<ServerChannel>>>,
    info: ConnectionInfo,
    closed: watch::Receiver<Option<String>>,
}

/// Runs the SSH handshake and user authentication on `stream`; returns the
/// connection once a user has logged in.
pub async fn accept<S>(
    stream: S,
    local_addr: Option<SocketAddr>,
    peer_addr: Option<SocketAddr>,
    params: Arc<ServerParams>,
) -> Result<TcpServerConnection, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = russh_config(&params);
    let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
    let (auth_tx, auth_rx) = oneshot::channel();
    let (closed_tx, closed_rx) = watch::channel(None);
    let handler = ServerHandler {
        params: params.clone(),
        incoming: incoming_tx,
        channels: HashMap::new(),
        authenticated: Some(auth_tx),
        user: None,
        attempts: 0,
        _closed: ClosedSignal(closed_tx),
    };
    // The grace time covers the whole handshake; when it runs out the
    // stream is cut, which ends russh's session task whatever it waits for.
    let (stream, cutter) = crate::cut::Cuttable::new(stream);
    let deadline = params
        .login_grace_time
        .map(|limit| tokio::time::Instant::now() + limit);
    let within_grace = |fut| crate::cut::before(deadline, fut);
    let handshake = async {
        let running = russh::server::run_stream(Arc::new(config), stream, handler)
            .await
            .map_err(|e| HandshakeError::Closed(Some(e.to_string())))?;
        let handle = running.handle();
        let (ended_tx, ended_rx) = oneshot::channel();
        tokio::spawn(async move {
            if let Err(e) = running.await {
                tracing::debug!("session ended: {e}");
                let _ = ended_tx.send(peer_error_text(&e.to_string()));
            }
        });
        let Ok(user) = auth_rx.await else {
            // The session ended before login: say why (a bad MAC, no common
            // algorithm, ...), as sshd does, when russh has said so by now.
            let why = tokio::time::timeout(Duration::from_millis(200), ended_rx)
                .await
                .ok()
                .and_then(Result::ok);
            return Err(HandshakeError::Closed(why));
        };
        Ok::<_, HandshakeError>((handle, user))
    };
    let (handle, user) = match within_grace(handshake).await {
        Some(result) => result?,
        None => {
            cutter.cut();
            return Err(HandshakeError::LoginGraceTimeExpired);
        }
    };
    Ok(TcpServerConnection {
        handle,
        incoming: Mutex::new(incoming_rx),
        info: ConnectionInfo {
            transport: TransportKind::Tcp,
            local_addr,
            peer_addr,
            user,
            kex: None,
        },
        closed: closed_rx,
    })
}

fn russh_config(params: &ServerParams) -> russh::server::Config {
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    russh::server::Config {
        keys: params.host_keys.clone(),
        methods,
        max_auth_attempts: params.policy.max_auth_tries() as usize,
        // Failed attempts are answered at once: OpenSSH adds no delay to
        // publickey failures either, and the attempt limit bounds guessing.
        auth_rejection_time: Duration::from_millis(0),
        auth_rejection_time_initial: Some(Duration::from_millis(0)),
        nodelay: true,
        // Larger packets than russh's default keep bulk transfers cheap;
        // the window is OpenSSH's (see CHANNEL_WINDOW).
        window_size: crate::CHANNEL_WINDOW,
        maximum_packet_size: 65535,
        ..Default::default()
    }
}

impl Connection for TcpServerConnection {
    type Channel = ServerChannel;

    async fn open_channel(&self, kind: ChannelKind) -> Result<ServerChannel, TransportError> {
        let closed = || TransportError::ConnectionClosed(None);
        let channel = match &kind {
            ChannelKind::Agent => self.handle.channel_open_agent().await,
            ChannelKind::Session => self.handle.channel_open_session().await,
            ChannelKind::ForwardedTcpip {
                connected_address,
                connected_port,
                originator,
                originator_port,
            } => {
                self.handle
                    .channel_open_forwarded_tcpip(
                        connected_address.clone(),
                        *connected_port,
                        originator.clone(),
                        *originator_port,
                    )
                    .await
            }
            ChannelKind::ForwardedStreamlocal { socket_path } => {
                self.handle
                    .channel_open_forwarded_streamlocal(socket_path.clone())
                    .await
            }
            ChannelKind::DirectTcpip { .. } | ChannelKind::DirectStreamlocal { .. } => {
                return Err(TransportError::Protocol(format!(
                    "a server does not open {} channels",
                    kind.wire_name()
                )))
            }
        }
        .map_err(|e| crate::open_error(e, closed))?;
        // Requests on channels the server opened are not expected; the
        // stream ends when the channel does.
        let (_tx, requests) = mpsc::unbounded_channel();
        Ok(TcpChannel::new(
            kind,
            channel,
            Side::Server {
                requests,
                handle: self.handle.clone(),
            },
        ))
    }

    async fn accept(&self) -> Option<Incoming<ServerChannel>> {
        self.incoming.lock().await.recv().await
    }

    async fn global_request(&self, request: GlobalRequest) -> Result<GlobalReply, TransportError> {
        Err(TransportError::Protocol(format!(
            "sshqd sends no global requests ({request:?})"
        )))
    }

    fn info(&self) -> ConnectionInfo {
        self.info.clone()
    }

    async fn close(&self, reason: &str) {
        let _ = self
            .handle
            .disconnect(
                russh::Disconnect::ByApplication,
                reason.to_string(),
                String::new(),
            )
            .await;
    }

    async fn closed(&self) -> Option<TransportError> {
        let mut closed = self.closed.clone();
        let _ = closed.wait_for(|reason| reason.is_some()).await;
        None
    }
}

/// Fires when the handler (and so the russh session) is dropped.
struct ClosedSignal(watch::Sender<Option<String>>);

impl Drop for ClosedSignal {
    fn drop(&mut self) {
        let _ = self.0.send(Some(String::new()));
    }
}

struct ServerHandler {
    params: Arc<ServerParams>,
    incoming: mpsc::UnboundedSender<Incoming<ServerChannel>>,
    /// Where each open channel's requests go.
    channels: HashMap<ChannelId, mpsc::UnboundedSender<IncomingRequest>>,
    authenticated: Option<oneshot::Sender<String>>,
    user: Option<String>,
    attempts: u32,
    _closed: ClosedSignal,
}

impl ServerHandler {
    fn reject() -> Auth {
        let mut methods = MethodSet::empty();
        methods.push(MethodKind::PublicKey);
        Auth::Reject {
            proceed_with_methods: Some(methods),
            partial_success: false,
        }
    }

    /// Hands a channel the peer opened to the code above, and confirms or
    /// refuses it with its answer.
    fn offer_channel(
        &mut self,
        kind: ChannelKind,
        channel: russh::Channel<Msg>,
        reply: ChannelOpenHandle,
        handle: russh::server::Handle,
    ) {
        let id = channel.id();
        let (requests_tx, requests_rx) = mpsc::unbounded_channel();
        self.channels.insert(id, requests_tx);
        let channel = TcpChannel::new(
            kind.clone(),
            channel,
            Side::Server {
                requests: requests_rx,
                handle,
            },
        );
        crate::offer_channel(&self.incoming, kind, channel, reply);
    }

    /// Passes a request to the channel's owner. When the client may want a
    /// reply, waits for the decision and answers before russh reads the next
    /// packet: russh tracks one pending reply per channel, and OpenSSH
    /// pipelines pty-req, env and exec without waiting.
    async fn deliver(
        &mut self,
        channel: ChannelId,
        request: ChannelRequest,
        answer: bool,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let Some(requests) = self.channels.get(&channel) else {
            return if answer {
                session.channel_failure(channel)
            } else {
                Ok(())
            };
        };
        if !answer {
            let _ = requests.send(IncomingRequest {
                request,
                reply: ReplyHandle::none(),
            });
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        let sent = requests
            .send(IncomingRequest {
                request,
                reply: ReplyHandle::new(tx),
            })
            .is_ok();
        if sent && rx.await.unwrap_or(false) {
            session.channel_success(channel)
        } else {
            session.channel_failure(channel)
        }
    }
}

impl russh::server::Handler for ServerHandler {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Self::reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.params.policy.publickey_allowed(user, offer.public_key) {
            Ok(Auth::Accept)
        } else {
            self.attempts += 1;
            tracing::info!("publickey offer refused for {user}");
            Ok(Self::reject())
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.params.policy.publickey_allowed(user, key.public_key) {
            self.user = Some(user.to_string());
            Ok(Auth::Accept)
        } else {
            Ok(Self::reject())
        }
    }

    async fn auth_succeeded(&mut self, _session: &mut Session) -> Result<(), Self::Error> {
        if let (Some(tx), Some(user)) = (self.authenticated.take(), self.user.clone()) {
            let _ = tx.send(user);
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: russh::Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.offer_channel(ChannelKind::Session, channel, reply, session.handle());
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: russh::Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let kind = ChannelKind::DirectTcpip {
            host: host_to_connect.to_string(),
            port: port_to_connect,
            originator: originator_address.to_string(),
            originator_port,
        };
        self.offer_channel(kind, channel, reply, session.handle());
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        channel: russh::Channel<Msg>,
        socket_path: &str,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let kind = ChannelKind::DirectStreamlocal {
            socket_path: socket_path.to_string(),
        };
        self.offer_channel(kind, channel, reply, session.handle());
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Ends the channel's request stream.
        self.channels.remove(&channel);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let request = ChannelRequest::Pty(PtyRequest {
            term: term.to_string(),
            size: WindowSize {
                cols: col_width,
                rows: row_height,
                pix_width,
                pix_height,
            },
            modes: core_modes(modes),
        });
        self.deliver(channel, request, true, session).await
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let request = ChannelRequest::Env {
            name: variable_name.to_string(),
            value: variable_value.to_string(),
        };
        self.deliver(channel, request, true, session).await
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.deliver(channel, ChannelRequest::Shell, true, session)
            .await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.deliver(channel, ChannelRequest::Exec(data.to_vec()), true, session)
            .await
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let request = ChannelRequest::Subsystem(name.to_string());
        self.deliver(channel, request, true, session).await
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let request = ChannelRequest::WindowChange(WindowSize {
            cols: col_width,
            rows: row_height,
            pix_width,
            pix_height,
        });
        self.deliver(channel, request, false, session).await
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: russh::Sig,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let request = ChannelRequest::Signal(signal_name_of(&signal));
        self.deliver(channel, request, false, session).await
    }

    async fn agent_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        // russh answers this one itself from the returned value.
        if !self.params.allow_agent_forwarding {
            return Ok(false);
        }
        self.deliver(channel, ChannelRequest::AgentForward, false, session)
            .await?;
        Ok(true)
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let request = GlobalRequest::TcpipForward {
            address: address.to_string(),
            port: *port,
        };
        match self.global(request).await {
            GlobalReply::Success { bound_port } => {
                if let Some(bound) = bound_port {
                    *port = bound;
                }
                Ok(true)
            }
            GlobalReply::Failure => Ok(false),
        }
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let request = GlobalRequest::CancelTcpipForward {
            address: address.to_string(),
            port,
        };
        Ok(matches!(
            self.global(request).await,
            GlobalReply::Success { .. }
        ))
    }

    async fn streamlocal_forward(
        &mut self,
        socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let request = GlobalRequest::StreamlocalForward {
            socket_path: socket_path.to_string(),
        };
        Ok(matches!(
            self.global(request).await,
            GlobalReply::Success { .. }
        ))
    }

    async fn cancel_streamlocal_forward(
        &mut self,
        socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let request = GlobalRequest::CancelStreamlocalForward {
            socket_path: socket_path.to_string(),
        };
        Ok(matches!(
            self.global(request).await,
            GlobalReply::Success { .. }
        ))
    }
}

impl ServerHandler {
    async fn global(&mut self, request: GlobalRequest) -> GlobalReply {
        let (tx, rx) = oneshot::channel();
        let incoming = Incoming::GlobalRequest(IncomingGlobalRequest {
            request,
            reply: Some(tx),
        });
        if self.incoming.send(incoming).is_err() {
            return GlobalReply::Failure;
        }
        rx.await.unwrap_or(GlobalReply::Failure)
    }
}

#[cfg(test)]
mod peer_error_text_tests {
    use super::{peer_error_text, PEER_ERROR_MAX_CHARS};

    #[test]
    fn newlines_are_escaped_and_long_texts_cut() {
        assert_eq!(
            peer_error_text("No common Kex\nForged: line"),
            "No common Kex\\nForged: line"
        );
        let long = peer_error_text(&"a".repeat(10_000));
        assert_eq!(long.chars().count(), PEER_ERROR_MAX_CHARS + 3);
        assert!(long.ends_with("..."));
    }
}
