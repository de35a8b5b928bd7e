//! The server side of SSH over a byte stream: russh's server session, with
//! its channels and requests handed to the code above the transport trait.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use russh::keys::PrivateKey;
use russh::server::{
    Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Response, Session, VerifiedCertificate,
    VerifiedPublicKey,
};
use russh::{ChannelId, MethodKind, MethodSet};
use sshq_core::auth::AuthPolicy;
use sshq_core::channel::{
    ChannelKind, ChannelRequest, GlobalReply, GlobalRequest, PtyRequest, WindowSize, END_OF_WRITE,
};
use sshq_core::error::{HandshakeError, ProtocolError, TransportError};
use sshq_core::kex::Role;
use sshq_core::log_escape;
use sshq_core::pipe::PipeBudget;
use sshq_core::replies::{request_queue, RequestSender};
use sshq_core::ssh_key::Certificate;
use sshq_core::transport::{
    Connection, ConnectionInfo, Incoming, IncomingGlobalRequest, IncomingRequest, ReplyHandle,
    TransportKind,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::channel::{core_modes, signal_name_of, Side, TcpChannel, CONNECTION_HANDOVER_LIMIT};
use crate::ending::EndingWatch;
pub use crate::kex::KexList;
use crate::paced::Paced;
use crate::pacing::{Interactive, Pacer, SEND_BUDGET};
use crate::server_auth::{Authenticator, LoggedIn};

/// A server-side channel over TCP.
pub type ServerChannel = TcpChannel<Msg>;

/// What the server needs to run SSH over a byte stream.
#[derive(Clone)]
pub struct ServerParams {
    /// Host keys, in the order to offer them; at least one.
    pub host_keys: Vec<PrivateKey>,
    /// HostCertificate: OpenSSH certificates of some of the host keys,
    /// offered to clients that ask for certificate host key algorithms.
    pub host_certificates: Vec<Certificate>,
    /// Who may log in with which key.
    pub policy: Arc<dyn AuthPolicy>,
    /// How long a client may take to authenticate (None: no limit).
    pub login_grace_time: Option<Duration>,
    /// Whether `auth-agent-req@openssh.com` is accepted.
    pub allow_agent_forwarding: bool,
    /// ClientAliveInterval: after this long without a packet from the
    /// client, ask it for an answer (None: never, sshd's default).
    pub client_alive_interval: Option<Duration>,
    /// ClientAliveCountMax: unanswered requests after which the client is
    /// dropped (0: never drop, as in sshd).
    pub client_alive_count_max: u32,
    /// Key exchange algorithms in order of preference
    /// ([`KexList::server_default`] leaves out the large Diffie-Hellman groups).
    pub kex: KexList,
}

/// An authenticated server-side SSH connection over a byte stream.
pub struct TcpServerConnection {
    handle: russh::server::Handle,
    /// Bounds the client's unread data over all channels (see `channel.rs`).
    budget: PipeBudget,
    /// Holds bulk channel data until the socket can take it.
    pacer: Pacer,
    incoming: Mutex<mpsc::UnboundedReceiver<Incoming<ServerChannel>>>,
    info: ConnectionInfo,
    ending: EndingWatch,
    /// Closes the socket when the client lingers after a disconnect.
    cutter: crate::cut::Cutter,
}

/// How long a client may take to close its side after sshqd sent it
/// SSH_MSG_DISCONNECT. russh waits for the client's EOF (bounded only by
/// its inactivity timeout, which sshqd turns off), so a client that never
/// reads or never closes would keep the connection, and everything that
/// hangs on it, forever; sshd exits, closing the socket, once the message
/// is written.
pub const DISCONNECT_LINGER: Duration = Duration::from_secs(3);

/// Sends SSH_MSG_DISCONNECT, then closes the socket [`DISCONNECT_LINGER`]
/// later whatever the client did (if the session has not ended by then).
pub(crate) async fn disconnect_and_cut(
    handle: &russh::server::Handle,
    cutter: &crate::cut::Cutter,
    reason: russh::Disconnect,
    description: String,
) {
    let cutter = cutter.clone();
    tokio::spawn(async move {
        tokio::time::sleep(DISCONNECT_LINGER).await;
        cutter.cut();
    });
    let _ = handle.disconnect(reason, description, String::new()).await;
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
    let (ending_tx, ending_rx) = crate::ending::ending();
    let session_handle = Arc::new(OnceLock::new());
    let logged_in_as = Arc::new(OnceLock::new());
    let budget = PipeBudget::new(CONNECTION_HANDOVER_LIMIT);
    let pacer = Pacer::new(SEND_BUDGET);
    let stream = Paced::new(stream, pacer.clone());
    // Cut when the grace time (which covers the whole handshake) runs out,
    // or when a client lingers after our disconnect: that ends russh's
    // session task whatever it waits for.
    let (stream, cutter) = crate::cut::Cuttable::new(stream);
    let handler = ServerHandler {
        budget: budget.clone(),
        pacer: pacer.clone(),
        interactive: HashMap::new(),
        params: params.clone(),
        incoming: incoming_tx,
        channels: HashMap::new(),
        authenticated: Some(auth_tx),
        auth: Authenticator::new(
            params.policy.clone(),
            peer_addr,
            session_handle.clone(),
            cutter.clone(),
            logged_in_as.clone(),
        ),
    };
    let deadline = params
        .login_grace_time
        .map(|limit| tokio::time::Instant::now() + limit);
    let within_grace = |fut| crate::cut::before(deadline, fut);
    let handshake = async {
        let running = russh::server::run_stream(Arc::new(config), stream, handler)
            .await
            .map_err(|e| HandshakeError::Closed(Some(Box::new(e))))?;
        let handle = running.handle();
        // The handler disconnects with it when MaxAuthTries is reached.
        let _ = session_handle.set(handle.clone());
        let (ended_tx, ended_rx) = oneshot::channel();
        tokio::spawn(async move {
            // The session's outcome, for `closed()`; dropped unset, it
            // reads as an orderly end.
            let ending = ending_tx;
            match running.await {
                Err(russh::Error::KeepaliveTimeout) => {
                    let user = logged_in_as.get().map(String::as_str).unwrap_or("");
                    tracing::info!(
                        "Timeout, client not responding from {}",
                        log_escape::connection_id(user, peer_addr)
                    );
                    ending.failed(russh::Error::KeepaliveTimeout);
                }
                Err(e) => {
                    tracing::debug!("session ended: {e}");
                    ending.failed(&e);
                    // Raw: the log site escapes and caps it (log_escape).
                    let _ = ended_tx.send(e);
                }
                Ok(()) => ending.orderly(),
            }
        });
        let Ok((user, credential)) = auth_rx.await else {
            // The session ended before login: say why (a bad MAC, no common
            // algorithm, ...), as sshd does, when russh has said so by now.
            let why = tokio::time::timeout(Duration::from_millis(200), ended_rx)
                .await
                .ok()
                .and_then(Result::ok)
                .map(|e| Box::new(e) as sshq_core::error::BoxError);
            return Err(HandshakeError::Closed(why));
        };
        Ok::<_, HandshakeError>((handle, user, credential))
    };
    let (handle, user, credential) = match within_grace(handshake).await {
        Some(result) => result?,
        None => {
            cutter.cut();
            return Err(HandshakeError::LoginGraceTimeExpired);
        }
    };
    Ok(TcpServerConnection {
        handle,
        budget,
        pacer,
        incoming: Mutex::new(incoming_rx),
        info: ConnectionInfo {
            transport: TransportKind::Tcp,
            local_addr,
            peer_addr,
            user,
            credential,
            kex: None,
        },
        ending: ending_rx,
        cutter,
    })
}

/// How many attempts beyond MaxAuthTries russh's own limit allows (see
/// `russh_config`).
const RUSSH_AUTH_SLACK: usize = 4;

/// sshqd's identification string over TCP. Its software version starts
/// with "OpenSSH" because OpenSSH's client keys its extensions on that
/// (compat.c: only a peer matching `OpenSSH*` gets `SSH_NEW_OPENSSH`):
/// without it ssh never sends `eow@openssh.com`, and `ssh host yes | head
/// -1` runs until ssh is killed. `OpenSSH_sshq_` matches none of the
/// version-specific bug patterns (`OpenSSH_2*` ... `OpenSSH_7.7*`), claims no
/// OpenSSH version, and names the server; the other thing it turns on is
/// ssh's `no-more-sessions@openssh.com` (want reply false), which sshqd
/// ignores as any non-OpenSSH server does.
const SERVER_ID: &str = concat!("SSH-2.0-OpenSSH_sshq_", env!("CARGO_PKG_VERSION"));

pub(crate) fn russh_config(params: &ServerParams) -> russh::server::Config {
    // russh lists these only when it refuses a request by itself before
    // the handler has answered any (a bad signature as the very first
    // request): every answer of the handler names the user's own methods
    // (server_auth.rs). russh calls the handler for every method whatever
    // this holds, so the handler decides; publickey, sshq's default, is
    // the list that promises nothing a user may lack.
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    let mut config = russh::server::Config {
        keys: params.host_keys.clone(),
        certificates: params.host_certificates.clone(),
        methods,
        // MaxAuthTries is counted by the handler, the way sshd counts it
        // (russh takes 0 as "no limit"). russh's own limit stops the
        // refusals the handler never hears of (see AuthFailures). It is a
        // few above ours (russh also counts the first "none"): the
        // handler's disconnect, with sshd's "Too many authentication
        // failures", is queued on the session's handle and must land before
        // russh's own one when the client answers the last refusal at once.
        max_auth_attempts: (params.policy.max_auth_tries() as usize)
            .saturating_add(RUSSH_AUTH_SLACK),
        // An idle session lives until the client goes away, as with sshd;
        // ClientAliveInterval is how an administrator bounds silence.
        inactivity_timeout: None,
        keepalive_interval: params.client_alive_interval.filter(|i| !i.is_zero()),
        keepalive_max: params.client_alive_count_max as usize,
        // Failed attempts are answered at once: OpenSSH adds no delay to
        // publickey failures either, and the attempt limit bounds guessing.
        auth_rejection_time: Duration::from_millis(0),
        auth_rejection_time_initial: Some(Duration::from_millis(0)),
        nodelay: true,
        // Larger packets than russh's default keep bulk transfers cheap;
        // the window is OpenSSH's (see CHANNEL_WINDOW).
        window_size: crate::CHANNEL_WINDOW,
        maximum_packet_size: 65535,
        server_id: russh::SshId::Standard(std::borrow::Cow::Borrowed(SERVER_ID)),
        // Windows are granted as the application reads (window.rs).
        window_on_consume: true,
        ..Default::default()
    };
    config.preferred.kex = std::borrow::Cow::Owned(params.kex.russh_names());
    config
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
                return Err(ProtocolError::WrongSideOpen {
                    side: Role::Server,
                    kind: kind.wire_name().to_string(),
                }
                .into())
            }
        }
        .map_err(|e| crate::open_error(e, closed))?;
        // Requests on channels the server opened are not expected; the
        // stream ends when the channel does.
        let (_tx, requests) = request_queue();
        Ok(TcpChannel::new(
            kind,
            channel,
            Side::Server {
                requests,
                handle: self.handle.clone(),
            },
        )
        .within_budget(&self.budget)
        .paced_by(&self.pacer))
    }

    async fn accept(&self) -> Option<Incoming<ServerChannel>> {
        self.incoming.lock().await.recv().await
    }

    async fn global_request(&self, request: GlobalRequest) -> Result<GlobalReply, TransportError> {
        Err(ProtocolError::UnsendableGlobalRequest {
            transport: TransportKind::Tcp,
            side: Role::Server,
            request,
        }
        .into())
    }

    fn info(&self) -> ConnectionInfo {
        self.info.clone()
    }

    async fn close(&self, reason: &str) {
        self.ending.closing_here();
        disconnect_and_cut(
            &self.handle,
            &self.cutter,
            russh::Disconnect::ByApplication,
            reason.to_string(),
        )
        .await;
    }

    async fn closed(&self) -> Option<TransportError> {
        self.ending.ended().await
    }
}

struct ServerHandler {
    params: Arc<ServerParams>,
    /// The connection's budget for unread channel data.
    budget: PipeBudget,
    /// The connection's send pacing, for the channels the client opens.
    pacer: Pacer,
    /// Each open channel's interactive flag, set by a pty request.
    interactive: HashMap<ChannelId, Interactive>,
    incoming: mpsc::UnboundedSender<Incoming<ServerChannel>>,
    /// Where each open channel's requests go.
    channels: HashMap<ChannelId, RequestSender>,
    /// The user, and the key or certificate if one was used, that logged
    /// in, for the connection's info.
    authenticated: Option<oneshot::Sender<LoggedIn>>,
    /// User authentication (server_auth.rs).
    auth: Authenticator,
}

impl ServerHandler {
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
        let (requests_tx, requests_rx) = request_queue();
        self.channels.insert(id, requests_tx);
        let channel = TcpChannel::new(
            kind.clone(),
            channel,
            Side::Server {
                requests: requests_rx,
                handle,
            },
        )
        .within_budget(&self.budget)
        .paced_by(&self.pacer);
        self.interactive.insert(id, channel.interactive());
        crate::offer_channel(&self.incoming, kind, channel, reply);
    }

    /// Passes a request to the channel's owner, answering it if the client
    /// asked for an answer.
    async fn deliver_as_asked(
        &mut self,
        channel: ChannelId,
        request: ChannelRequest,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let answer = session.channel_wants_reply(channel);
        self.deliver(channel, request, answer, session).await
    }

    /// Passes a request to the channel's owner. `answer` is the client's
    /// own want-reply flag (`Session::channel_wants_reply`, russh change 5),
    /// or false where russh answers by itself. When a reply is wanted,
    /// waits for the decision and answers before russh reads the next
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
        // A full queue (REQUEST_QUEUE) makes russh wait here before it
        // reads the client's next packet: backpressure, not a growing queue.
        if !answer {
            let _ = requests
                .send(IncomingRequest {
                    request,
                    reply: ReplyHandle::none(),
                })
                .await;
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        let sent = requests
            .send(IncomingRequest {
                request,
                reply: ReplyHandle::new(tx),
            })
            .await
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

    fn disconnect_instead_of_failure(&mut self) -> Option<String> {
        self.auth.disconnect_instead_of_failure()
    }

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        Ok(self.auth.none(user).await)
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(self.auth.password(user, password).await)
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.auth.publickey_offered(user, offer).await)
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self
            .auth
            .publickey_verified(user, key.public_key, key.security_key)
            .await)
    }

    async fn auth_openssh_certificate_verified(
        &mut self,
        user: &str,
        certificate: VerifiedCertificate<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self
            .auth
            .certificate_verified(user, certificate.certificate, certificate.security_key)
            .await)
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        // Submethods are hints sshd ignores too (PAM decides what to ask).
        Ok(match response {
            None => self.auth.keyboard_interactive_start(user).await,
            Some(response) => {
                let answers: Vec<_> = response.collect();
                self.auth.keyboard_interactive_answers(user, answers).await
            }
        })
    }

    async fn auth_succeeded(&mut self, _session: &mut Session) -> Result<(), Self::Error> {
        if let (Some(tx), Some(logged_in)) = (self.authenticated.take(), self.auth.take_completed())
        {
            let _ = tx.send(logged_in);
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
        self.interactive.remove(&channel);
        Ok(())
    }

    /// `eow@openssh.com`: the client's output is gone. Passed on like any
    /// request the channel's owner may act on (the session stops reading
    /// the program's output, as sshd does); russh never confirms it.
    async fn channel_eow(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let request = ChannelRequest::Unknown {
            name: END_OF_WRITE.to_string(),
        };
        self.deliver(channel, request, false, session).await
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
        // A terminal's echoes go ahead of bulk data (see pacing.rs).
        if let Some(interactive) = self.interactive.get(&channel) {
            interactive.mark();
        }
        self.deliver_as_asked(channel, request, session).await
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
        self.deliver_as_asked(channel, request, session).await
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.deliver_as_asked(channel, ChannelRequest::Shell, session)
            .await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.deliver_as_asked(channel, ChannelRequest::Exec(data.to_vec()), session)
            .await
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let request = ChannelRequest::Subsystem(name.to_string());
        self.deliver_as_asked(channel, request, session).await
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
        self.deliver_as_asked(channel, request, session).await
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: russh::Sig,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let request = ChannelRequest::Signal(signal_name_of(&signal));
        self.deliver_as_asked(channel, request, session).await
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
mod tests {
    use super::*;
    use sshq_core::ssh_key::PublicKey;

    struct NoOne;

    impl AuthPolicy for NoOne {
        fn publickey_allowed<'a>(
            &'a self,
            _user: &'a str,
            _key: &'a PublicKey,
        ) -> sshq_core::auth::BoxFuture<'a, bool> {
            Box::pin(async { false })
        }
        fn max_auth_tries(&self) -> u32 {
            6
        }
    }

    fn params(interval: Option<Duration>, count_max: u32) -> ServerParams {
        ServerParams {
            host_keys: Vec::new(),
            host_certificates: Vec::new(),
            policy: Arc::new(NoOne),
            login_grace_time: None,
            allow_agent_forwarding: false,
            client_alive_interval: interval,
            client_alive_count_max: count_max,
            kex: KexList::server_default(),
        }
    }

    #[test]
    fn idle_sessions_have_no_inactivity_timeout() {
        // russh's default would end an idle shell after 600 s.
        let config = russh_config(&params(None, 3));
        assert_eq!(config.inactivity_timeout, None);
        assert_eq!(config.keepalive_interval, None);
    }

    #[test]
    fn client_alive_settings_reach_russh() {
        let config = russh_config(&params(Some(Duration::from_secs(15)), 2));
        assert_eq!(config.inactivity_timeout, None);
        assert_eq!(config.keepalive_interval, Some(Duration::from_secs(15)));
        assert_eq!(config.keepalive_max, 2);
        // ClientAliveInterval 0 is off, as in sshd.
        let config = russh_config(&params(Some(Duration::ZERO), 3));
        assert_eq!(config.keepalive_interval, None);
    }
}
