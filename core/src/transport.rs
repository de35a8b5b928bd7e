//! The transport trait: what an SSH connection and its channels can do,
//! whatever carries them.
//!
//! Two implementations exist: `sshq-tcp` (russh, every channel multiplexed on
//! one byte stream) and `sshq-quic` (every channel its own QUIC stream). The
//! trait is shaped so that nothing in it forces ordering *across* channels: a
//! channel is split into independent halves ([`ChannelParts`]), each of which
//! can be driven by its own task, and a stalled reader of one channel holds up
//! nothing but that channel wherever the transport allows it.
//!
//! Conventions that both transports follow:
//! - `data_in` / `ext_in` read what the peer sent as data / extended data
//!   (stderr); they return end-of-file once the peer sent EOF or closed.
//! - `data_out.shutdown()` sends EOF. `ext_out.shutdown()` only flushes:
//!   SSH has one EOF per channel, and it belongs to the data stream.
//! - Requests from the peer arrive on `requests`, in order; when a request
//!   wants a reply, its [`ReplyHandle`] must be answered (dropping it answers
//!   "failure"), and replies go out in the order the requests came in. The
//!   stream ends once the peer will send nothing more: over TCP when it
//!   closed the channel, over QUIC when it finished its direction (its EOF).
//! - `control.closed()` resolves once the peer can no longer receive
//!   anything on the channel (it closed or abandoned it, or the connection
//!   is gone): the signal to stop work done on its behalf.
//! - Dropping all parts of a channel closes it.

use std::future::Future;
use std::net::SocketAddr;

use tokio::io::{AsyncBufRead, AsyncWrite};
use tokio::sync::oneshot;

use crate::channel::{ChannelKind, ChannelRequest, GlobalReply, GlobalRequest, OpenFailure};
use crate::error::TransportError;

/// A live, authenticated SSH connection.
pub trait Connection: Send + Sync + 'static {
    type Channel: Channel;

    /// Opens a channel of `kind`; fails with [`TransportError::OpenRefused`]
    /// when the peer refuses it.
    fn open_channel(
        &self,
        kind: ChannelKind,
    ) -> impl Future<Output = Result<Self::Channel, TransportError>> + Send;

    /// The next channel or global request the peer starts; `None` once the
    /// connection is gone. Only one task should call this.
    fn accept(&self) -> impl Future<Output = Option<Incoming<Self::Channel>>> + Send;

    /// Sends a global request and waits for its reply.
    fn global_request(
        &self,
        request: GlobalRequest,
    ) -> impl Future<Output = Result<GlobalReply, TransportError>> + Send;

    /// Facts about the connection, for logs, `-v` and the session environment.
    fn info(&self) -> ConnectionInfo;

    /// Ends the connection with a reason the peer may log.
    fn close(&self, reason: &str) -> impl Future<Output = ()> + Send;

    /// Resolves once the connection is gone: `None` when it ended in order
    /// (closed by us, or by the peer as an application does: SSH's
    /// "by application" disconnect, QUIC's NO_ERROR), otherwise why it
    /// failed, as [`TransportError::ConnectionClosed`] with the reason (a
    /// peer's disconnect message, a broken stream, a timeout).
    fn closed(&self) -> impl Future<Output = Option<TransportError>> + Send;

    /// Asks for fresh keys now (ssh's `~R`): a new key exchange over SSH, a
    /// key update (RFC 9001, Section 6) over QUIC. Resolves once asked for,
    /// not once done. Only clients offer it; the default says so.
    fn rekey(&self) -> impl Future<Output = Result<(), TransportError>> + Send {
        async {
            Err(TransportError::Io(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "this side of the connection cannot ask for new keys",
            )))
        }
    }
}

/// One SSH channel, before it is split into halves.
pub trait Channel: Send + 'static {
    /// Buffered, so the peer's bytes can be copied on without another copy.
    type Reader: AsyncBufRead + Send + Unpin + 'static;
    type Writer: AsyncWrite + Send + Unpin + 'static;
    type Control: ChannelControl;
    type Requests: RequestStream;

    /// The kind it was opened as.
    fn kind(&self) -> &ChannelKind;

    /// Splits the channel into halves that can be used from different tasks.
    fn split(self) -> ChannelParts<Self>
    where
        Self: Sized;
}

/// The independent halves of a channel.
pub struct ChannelParts<C: Channel> {
    pub data_in: C::Reader,
    pub ext_in: C::Reader,
    pub data_out: C::Writer,
    pub ext_out: C::Writer,
    pub control: C::Control,
    pub requests: C::Requests,
}

impl<C: Channel> ChannelParts<C> {
    /// Just the data halves and the control, for a channel used as a plain
    /// byte stream (forwarded connections, -W, ProxyJump hops): extended
    /// data and the peer's requests are dropped, and so ignored.
    pub fn into_data_halves(self) -> (C::Reader, C::Writer, C::Control) {
        (self.data_in, self.data_out, self.control)
    }
}

/// Sending requests on a channel.
pub trait ChannelControl: Send + Sync + 'static {
    /// Sends `request`; with `want_reply`, waits and returns whether the peer
    /// accepted it, otherwise returns `true` once it is sent.
    fn request(
        &self,
        request: ChannelRequest,
        want_reply: bool,
    ) -> impl Future<Output = Result<bool, TransportError>> + Send;

    /// Resolves once the peer has confirmed a channel we opened, or fails
    /// with why it refused. Transports that wait for the confirmation in
    /// `open_channel` resolve at once; sshq/1 pipelines the open, so this is
    /// where a refusal surfaces on a channel that sends no request first
    /// (a -W or ProxyJump stream, which must not look like an empty one).
    fn opened(&self) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Closes the channel in both directions.
    fn close(&self) -> impl Future<Output = ()> + Send;

    /// Resolves once the peer can no longer receive on this channel.
    fn closed(&self) -> impl Future<Output = ()> + Send;

    /// Gives the channel up before its orderly end, e.g. when nobody reads
    /// its output any more: the peer must stop the work done for it (as
    /// OpenSSH's sshd does when the reader of `ssh host yes | head -1`
    /// goes away). Where the transport has a close message, that is it.
    fn abandon(&self) -> impl Future<Output = ()> + Send {
        self.close()
    }
}

/// Requests arriving on a channel from the peer.
pub trait RequestStream: Send + 'static {
    /// The next request, or `None` once the channel is closed.
    fn next(&mut self) -> impl Future<Output = Option<IncomingRequest>> + Send;
}

/// A request from the peer, with the means to answer it if it wants a reply.
#[derive(Debug)]
pub struct IncomingRequest {
    pub request: ChannelRequest,
    pub reply: ReplyHandle,
}

/// Answers one channel or global request. Dropping it unanswered answers
/// "failure" where a reply is expected, so a forgotten reply never hangs a peer.
#[derive(Debug)]
pub struct ReplyHandle {
    sender: Option<oneshot::Sender<bool>>,
}

impl ReplyHandle {
    /// A handle whose answer goes to `sender`; the transport awaits the
    /// other end.
    pub fn new(sender: oneshot::Sender<bool>) -> Self {
        ReplyHandle {
            sender: Some(sender),
        }
    }

    /// For requests that want no reply.
    pub fn none() -> Self {
        ReplyHandle { sender: None }
    }

    /// Whether the peer waits for an answer.
    pub fn wants_reply(&self) -> bool {
        self.sender.is_some()
    }

    /// Answers the request.
    pub fn send(mut self, ok: bool) {
        if let Some(sender) = self.sender.take() {
            // The transport may have gone away; then no one is waiting.
            let _ = sender.send(ok);
        }
    }
}

impl Drop for ReplyHandle {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(false);
        }
    }
}

/// Something the peer started on the connection.
pub enum Incoming<C> {
    /// A channel the peer wants to open; accept or refuse it.
    Channel(PendingChannel<C>),
    /// A global request (e.g. `tcpip-forward`).
    GlobalRequest(IncomingGlobalRequest),
}

/// A channel open from the peer, waiting for our decision.
pub struct PendingChannel<C> {
    kind: ChannelKind,
    decide: oneshot::Sender<Result<(), OpenFailure>>,
    channel: C,
}

impl<C> PendingChannel<C> {
    /// Built by a transport: `channel` becomes usable once `decide` gets `Ok`.
    pub fn new(
        kind: ChannelKind,
        channel: C,
        decide: oneshot::Sender<Result<(), OpenFailure>>,
    ) -> Self {
        PendingChannel {
            kind,
            decide,
            channel,
        }
    }

    pub fn kind(&self) -> &ChannelKind {
        &self.kind
    }

    /// Confirms the open and hands over the channel.
    pub fn accept(self) -> C {
        let _ = self.decide.send(Ok(()));
        self.channel
    }

    /// Refuses the open, telling the peer why.
    pub fn reject(self, failure: OpenFailure) {
        let _ = self.decide.send(Err(failure));
    }
}

/// A global request from the peer. Dropping `reply` answers failure.
pub struct IncomingGlobalRequest {
    pub request: GlobalRequest,
    pub reply: Option<oneshot::Sender<GlobalReply>>,
}

/// Which transport carries a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Tcp,
    Quic,
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportKind::Tcp => "tcp",
            TransportKind::Quic => "quic",
        })
    }
}

/// Facts about a connection.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub transport: TransportKind,
    pub local_addr: Option<SocketAddr>,
    pub peer_addr: Option<SocketAddr>,
    /// The authenticated user (server side) or the user we logged in as.
    pub user: String,
    /// Server side: the key or certificate the user logged in with (the
    /// options of the authorized_keys line or certificate that let it in
    /// apply to the connection).
    pub credential: Option<crate::auth::UserCredential>,
    /// The negotiated key exchange, e.g. "curve25519-sha256", when known.
    pub kex: Option<String>,
}
