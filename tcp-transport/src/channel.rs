//! A russh channel seen through the core's channel trait.
//!
//! russh hands each channel one queue of messages (data, stderr, EOF,
//! requests, replies). A small task per channel ("the demultiplexer") sorts
//! that queue into the independent halves the trait promises: a byte pipe for
//! data, one for stderr, a queue of requests, and the replies to our own
//! requests. Over TCP every channel still shares one ordered byte stream; the
//! halves only keep one slow reader from blocking the other halves of the
//! same channel beyond what TCP itself imposes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use russh::{ChannelMsg, ChannelWriteHalf, Sig};
use sshq_core::channel::{ChannelKind, ChannelRequest, ExitSignal, PtyRequest, WindowSize};
use sshq_core::error::{ProtocolError, TransportError};
use sshq_core::kex::Role;
use sshq_core::pipe::{pipe, pipe_within, PipeBudget, PipeWriter};
use sshq_core::replies::{request_queue, QueuedRequests, ReplyQueue, RequestSender};
use sshq_core::transport::TransportKind;
use sshq_core::transport::{
    Channel, ChannelControl, ChannelParts, IncomingRequest, ReplyHandle, RequestStream,
};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, Mutex, Notify};

use crate::pacing::{Interactive, Pacer, WriterPacing};
use crate::window::{grant_consumed, Consumed, ConsumingReader};

/// Unread bytes one channel half may hold before russh's session task
/// waits (see `sshq_core::pipe` for why it must be large here), counted
/// as the memory they take (payload plus a per-chunk overhead).
const HANDOVER_LIMIT: usize = 64 * 1024 * 1024;

/// The same for all the channels of one server-side connection together:
/// windows are granted only as the application reads (window.rs), but
/// russh passes on data beyond the window too, so without this a client
/// that ignores the window could make sshqd hold 64 MiB per channel half
/// times every channel it opens. Four halves' worth: bulk
/// transfers on a few channels still never wait for each other.
// draft §12.7: buffered channel data MUST be bounded per connection, counted by allocation
pub(crate) const CONNECTION_HANDOVER_LIMIT: usize = 4 * HANDOVER_LIMIT;

/// Which side of the connection a channel belongs to: servers answer
/// requests through their handler (see `server.rs`), clients never get
/// requests that want a reply.
pub(crate) enum Side {
    Client,
    /// Server side: requests are fed in by the server handler, which must
    /// answer them before russh reads the next packet.
    Server {
        requests: QueuedRequests,
        /// exit-signal can only be sent through the server's session handle.
        handle: russh::server::Handle,
    },
}

/// A boxed russh channel writer (russh's writer types cannot be named).
pub type BoxWriter = Pin<Box<dyn AsyncWrite + Send + 'static>>;

/// An SSH channel carried by russh.
pub struct TcpChannel<S: From<(russh::ChannelId, ChannelMsg)> + Send + Sync + 'static> {
    kind: ChannelKind,
    inner: russh::Channel<S>,
    side: Side,
    /// For a channel the peer opened: becomes true once our confirmation
    /// has been queued. Nothing may be sent on the channel before that, or
    /// the peer would drop it as data for a channel it does not know yet
    /// (a forwarded SSH server's banner was lost this way).
    confirmed: Option<watch::Receiver<bool>>,
    /// The connection's budget for the peer's unread data, if it has one.
    budget: Option<PipeBudget>,
    /// The connection's send pacing (see `pacing.rs`), if it has one.
    pacer: Option<Pacer>,
    /// Set once a pty is requested on the channel: its data then goes
    /// ahead of bulk channels' data.
    interactive: Interactive,
}

impl<S: From<(russh::ChannelId, ChannelMsg)> + Send + Sync + 'static> TcpChannel<S> {
    pub(crate) fn new(kind: ChannelKind, inner: russh::Channel<S>, side: Side) -> Self {
        TcpChannel {
            kind,
            inner,
            side,
            confirmed: None,
            budget: None,
            pacer: None,
            interactive: Interactive::default(),
        }
    }

    /// Holds this channel's data while the connection's `pacer` says the
    /// socket has enough queued, unless the channel is interactive.
    pub(crate) fn paced_by(mut self, pacer: &Pacer) -> Self {
        self.interactive.attach(pacer);
        self.pacer = Some(pacer.clone());
        self
    }

    /// The flag that marks this channel interactive (for a server, which
    /// sees the pty request outside the channel).
    pub(crate) fn interactive(&self) -> Interactive {
        self.interactive.clone()
    }

    /// Counts the peer's unread data on this channel against `budget`, the
    /// connection's (see `sshq_core::pipe`).
    pub(crate) fn within_budget(mut self, budget: &PipeBudget) -> Self {
        self.budget = Some(budget.clone());
        self
    }

    /// Holds everything we send until `confirmed` becomes true.
    pub(crate) fn sending_after(mut self, confirmed: watch::Receiver<bool>) -> Self {
        self.confirmed = Some(confirmed);
        self
    }
}

/// Resolves once the channel may carry what we send.
async fn until_confirmed(confirmed: Option<watch::Receiver<bool>>) {
    if let Some(mut confirmed) = confirmed {
        // An error means the open was refused or abandoned: the writes
        // that follow then fail on their own.
        let _ = confirmed.wait_for(|c| *c).await;
    }
}

fn gate(confirmed: &Option<watch::Receiver<bool>>) -> Option<Gate> {
    confirmed
        .clone()
        .map(|c| Box::pin(until_confirmed(Some(c))) as Gate)
}

type Gate = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Held by every part of a split channel. russh does not close a channel
/// whose handles are dropped, so the demultiplexer does: once every part
/// is gone (the receivers of one watch), it sends CHANNEL_CLOSE, which is
/// what the trait promises for a channel nobody holds any more.
type PartOfChannel = watch::Receiver<()>;

impl<S: From<(russh::ChannelId, ChannelMsg)> + Send + Sync + 'static> Channel for TcpChannel<S> {
    type Reader = ChannelReader;
    type Writer = ChannelWriter;
    type Control = TcpControl<S>;
    type Requests = ChannelRequests;

    fn kind(&self) -> &ChannelKind {
        &self.kind
    }

    fn split(self) -> ChannelParts<Self> {
        let (read_half, write_half) = self.inner.split();
        let new_pipe = || match &self.budget {
            Some(budget) => pipe_within(HANDOVER_LIMIT, budget),
            None => pipe(HANDOVER_LIMIT),
        };
        let (data_rx, data_tx) = new_pipe();
        let (ext_rx, ext_tx) = new_pipe();
        let pending = ReplyQueue::default();
        let id = write_half.id();
        let (requests, demux_requests, server) = match self.side {
            Side::Client => {
                let (tx, rx) = request_queue();
                (rx, Some(tx), None)
            }
            Side::Server { requests, handle } => (requests, None, Some((handle, id))),
        };
        let (closed_tx, closed_rx) = watch::channel(false);
        let closed_here = Arc::new(Notify::new());
        let consumed = Arc::new(Consumed::default());
        let pacing = || {
            self.pacer
                .clone()
                .map(|pacer| WriterPacing::new(pacer, self.interactive.clone()))
        };
        let (parts_tx, part) = watch::channel(());
        let data_out = ChannelWriter {
            inner: Box::pin(write_half.make_writer()),
            eof_on_shutdown: true,
            gate: gate(&self.confirmed),
            pacing: pacing(),
            _part: part.clone(),
        };
        let ext_out = ChannelWriter {
            inner: Box::pin(write_half.make_writer_ext(Some(1))),
            eof_on_shutdown: false,
            gate: gate(&self.confirmed),
            pacing: pacing(),
            _part: part.clone(),
        };
        let grant = write_half.window_grant();
        let write = Arc::new(Mutex::new(write_half));
        tokio::spawn(demultiplex(
            read_half,
            Halves {
                data: data_tx,
                ext: ext_tx,
                consumed: consumed.clone(),
                requests: demux_requests,
            },
            pending.clone(),
            closed_tx,
            closed_here.clone(),
            LastPart {
                parts: parts_tx,
                write: write.clone(),
                confirmed: self.confirmed.clone(),
            },
        ));
        tokio::spawn(grant_consumed(grant, consumed.clone(), closed_rx.clone()));
        ChannelParts {
            data_in: ChannelReader {
                inner: ConsumingReader::new(data_rx, consumed.clone()),
                _part: part.clone(),
            },
            ext_in: ChannelReader {
                inner: ConsumingReader::new(ext_rx, consumed),
                _part: part.clone(),
            },
            data_out,
            ext_out,
            control: TcpControl {
                write,
                pending,
                server,
                closed: closed_rx,
                closed_here,
                confirmed: self.confirmed,
                interactive: self.interactive,
                _part: part.clone(),
            },
            requests: ChannelRequests {
                inner: requests,
                _part: part,
            },
        }
    }
}

/// Where the demultiplexer puts what the peer sends.
struct Halves {
    data: PipeWriter,
    ext: PipeWriter,
    /// Data nobody will read counts as consumed (see `window.rs`).
    consumed: Arc<Consumed>,
    /// Client side only (the server handler feeds the server's requests).
    requests: Option<RequestSender>,
}

/// What the demultiplexer needs to close the channel once its last part
/// is dropped.
struct LastPart<S: From<(russh::ChannelId, ChannelMsg)> + Send + Sync + 'static> {
    parts: watch::Sender<()>,
    write: Arc<Mutex<ChannelWriteHalf<S>>>,
    confirmed: Option<watch::Receiver<bool>>,
}

impl<S: From<(russh::ChannelId, ChannelMsg)> + Send + Sync + 'static> LastPart<S> {
    /// Waits until every part of the channel is dropped, then closes it.
    async fn close_when_dropped(&self) {
        self.parts.closed().await;
        until_confirmed(self.confirmed.clone()).await;
        let _ = self.write.lock().await.close().await;
    }
}

/// Sorts russh's per-channel message queue into the channel's halves.
async fn demultiplex<S: From<(russh::ChannelId, ChannelMsg)> + Send + Sync + 'static>(
    mut read_half: russh::ChannelReadHalf,
    halves: Halves,
    pending: ReplyQueue<bool>,
    closed: watch::Sender<bool>,
    closed_here: Arc<Notify>,
    last_part: LastPart<S>,
) {
    // A reader that went away just means nobody wants the rest of that
    // half: its sends fail and are ignored (the data counts as consumed),
    // so the other halves and the replies still flow.
    let Halves {
        mut data,
        mut ext,
        consumed,
        requests,
    } = halves;
    let dropped = last_part.close_when_dropped();
    tokio::pin!(dropped);
    loop {
        // Once we have sent CHANNEL_CLOSE, russh forgets the channel and
        // drops the peer's answering CLOSE without passing it on, so the
        // queue would never end: our own close ends it, whether asked for
        // (close()) or because every part was dropped.
        let msg = tokio::select! {
            msg = read_half.wait() => msg,
            () = closed_here.notified() => None,
            () = &mut dropped => None,
        };
        let Some(msg) = msg else { break };
        match msg {
            ChannelMsg::Data { data: bytes } => {
                let len = bytes.len() as u64;
                if data.send(bytes).await.is_err() {
                    consumed.add(len);
                }
            }
            ChannelMsg::ExtendedData {
                data: bytes,
                ext: 1,
            } => {
                let len = bytes.len() as u64;
                if ext.send(bytes).await.is_err() {
                    consumed.add(len);
                }
            }
            ChannelMsg::ExtendedData { data: bytes, .. } => {
                // Only stderr (1) is defined; other codes are dropped.
                consumed.add(bytes.len() as u64);
            }
            ChannelMsg::Eof => {
                data.close();
                ext.close();
            }
            ChannelMsg::Close => break,
            ChannelMsg::Success | ChannelMsg::Failure => {
                // A reply nobody asked for is ignored: russh owns this
                // session's protocol checks.
                let _ = pending.resolve(matches!(msg, ChannelMsg::Success));
            }
            other => {
                if let (Some(requests), Some(request)) = (&requests, request_from_peer(other)) {
                    let _ = requests
                        .send(IncomingRequest {
                            request,
                            reply: ReplyHandle::none(),
                        })
                        .await;
                }
            }
        }
    }
    data.close();
    ext.close();
    let _ = closed.send(true);
    // Anyone still waiting for a reply learns the channel is closed.
    pending.clear();
}

/// Requests a server sends to a client on a channel.
fn request_from_peer(msg: ChannelMsg) -> Option<ChannelRequest> {
    match msg {
        ChannelMsg::ExitStatus { exit_status } => Some(ChannelRequest::ExitStatus(exit_status)),
        ChannelMsg::ExitSignal {
            signal_name,
            core_dumped,
            error_message,
            ..
        } => Some(ChannelRequest::ExitSignal(ExitSignal {
            signal: signal_name_of(&signal_name),
            core_dumped,
            message: error_message,
        })),
        _ => None,
    }
}

/// russh's signal enum as the SSH name (no "SIG" prefix).
pub(crate) fn signal_name_of(sig: &Sig) -> String {
    match sig {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(name) => name.as_str(),
    }
    .to_string()
}

/// The SSH signal name as russh's enum.
pub(crate) fn sig_of(name: &str) -> Sig {
    match name {
        "ABRT" => Sig::ABRT,
        "ALRM" => Sig::ALRM,
        "FPE" => Sig::FPE,
        "HUP" => Sig::HUP,
        "ILL" => Sig::ILL,
        "INT" => Sig::INT,
        "KILL" => Sig::KILL,
        "PIPE" => Sig::PIPE,
        "QUIT" => Sig::QUIT,
        "SEGV" => Sig::SEGV,
        "TERM" => Sig::TERM,
        "USR1" => Sig::USR1,
        other => Sig::Custom(other.to_string()),
    }
}

/// Terminal modes as russh's typed opcodes; opcodes russh does not know are
/// dropped (the server would ignore them too, RFC 4254 §8).
pub(crate) fn russh_modes(modes: &[(u8, u32)]) -> Vec<(russh::Pty, u32)> {
    modes
        .iter()
        .filter_map(|&(op, value)| russh::Pty::from_u8(op).map(|pty| (pty, value)))
        .collect()
}

/// russh's typed terminal modes back as RFC 4254 opcodes.
pub(crate) fn core_modes(modes: &[(russh::Pty, u32)]) -> Vec<(u8, u32)> {
    modes
        .iter()
        .map(|&(pty, value)| (pty as u8, value))
        .collect()
}

/// The peer's data or stderr on one channel.
pub struct ChannelReader {
    inner: ConsumingReader,
    _part: PartOfChannel,
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncBufRead for ChannelReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        Pin::new(&mut self.get_mut().inner).poll_fill_buf(cx)
    }

    fn consume(mut self: Pin<&mut Self>, amt: usize) {
        Pin::new(&mut self.inner).consume(amt)
    }
}

/// The peer's requests on one channel.
pub struct ChannelRequests {
    inner: QueuedRequests,
    _part: PartOfChannel,
}

impl RequestStream for ChannelRequests {
    async fn next(&mut self) -> Option<IncomingRequest> {
        self.inner.next().await
    }
}

/// Our data or stderr for one channel.
pub struct ChannelWriter {
    inner: BoxWriter,
    /// Only the data writer sends EOF: SSH has one EOF per channel.
    eof_on_shutdown: bool,
    /// Until the channel is confirmed (see `TcpChannel::confirmed`).
    gate: Option<Gate>,
    /// Holds bulk data until the socket can take it (see `pacing.rs`).
    pacing: Option<WriterPacing>,
    _part: PartOfChannel,
}

impl ChannelWriter {
    fn poll_gate(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(gate) = &mut self.gate {
            std::task::ready!(gate.as_mut().poll(cx));
            self.gate = None;
        }
        Poll::Ready(())
    }
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_gate(cx));
        let buf = match &mut self.pacing {
            Some(pacing) => {
                std::task::ready!(pacing.poll_room(cx));
                pacing.limit(buf)
            }
            None => buf,
        };
        let written = std::task::ready!(self.inner.as_mut().poll_write(cx, buf));
        if let (Ok(bytes), Some(pacing)) = (&written, &mut self.pacing) {
            pacing.handed_over(*bytes);
        }
        Poll::Ready(written)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_gate(cx));
        self.inner.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_gate(cx));
        if self.eof_on_shutdown {
            self.inner.as_mut().poll_shutdown(cx)
        } else {
            self.inner.as_mut().poll_flush(cx)
        }
    }
}

/// Sends requests on a russh channel and matches the replies, which SSH
/// returns in request order.
pub struct TcpControl<S: From<(russh::ChannelId, ChannelMsg)> + Send + Sync + 'static> {
    /// Held while a request is sent, so that the order of the reply queue
    /// is the order on the wire (shared with the window grants and with
    /// the demultiplexer, which closes the channel once every part is
    /// dropped).
    write: Arc<Mutex<ChannelWriteHalf<S>>>,
    pending: ReplyQueue<bool>,
    server: Option<(russh::server::Handle, russh::ChannelId)>,
    /// Set by the demultiplexer when the peer closed the channel.
    closed: watch::Receiver<bool>,
    /// Tells the demultiplexer that we closed the channel.
    closed_here: Arc<Notify>,
    /// See `TcpChannel::confirmed`.
    confirmed: Option<watch::Receiver<bool>>,
    /// Marked when we request a pty (see `TcpChannel::interactive`).
    interactive: Interactive,
    _part: PartOfChannel,
}

impl<S: From<(russh::ChannelId, ChannelMsg)> + Send + Sync + 'static> ChannelControl
    for TcpControl<S>
{
    async fn request(
        &self,
        request: ChannelRequest,
        want_reply: bool,
    ) -> Result<bool, TransportError> {
        until_confirmed(self.confirmed.clone()).await;
        if let ChannelRequest::ExitSignal(exit) = &request {
            let Some((handle, id)) = &self.server else {
                return Err(ProtocolError::RequestFromWrongSide {
                    request: "exit-signal",
                    sender: Role::Server,
                }
                .into());
            };
            return handle
                .exit_signal_request(
                    *id,
                    sig_of(&exit.signal),
                    exit.core_dumped,
                    exit.message.clone(),
                    String::new(),
                )
                .await
                .map(|()| true)
                .map_err(|_| TransportError::ChannelClosed);
        }
        if matches!(request, ChannelRequest::Pty(_)) {
            self.interactive.mark();
        }
        let write = self.write.lock().await;
        let reply = match want_reply {
            true => Some(self.pending.expect().ok_or(TransportError::ChannelClosed)?),
            false => None,
        };
        send_request(&write, request, want_reply).await?;
        drop(write);
        match reply {
            Some(rx) => rx.await.map_err(|_| TransportError::ChannelClosed),
            None => Ok(true),
        }
    }

    async fn opened(&self) -> Result<(), TransportError> {
        // open_channel returned only once the peer had confirmed.
        Ok(())
    }

    async fn close(&self) {
        until_confirmed(self.confirmed.clone()).await;
        let _ = self.write.lock().await.close().await;
        self.closed_here.notify_one();
    }

    async fn closed(&self) {
        let mut closed = self.closed.clone();
        let _ = closed.wait_for(|c| *c).await;
    }
}

async fn send_request<S: From<(russh::ChannelId, ChannelMsg)> + Send + Sync + 'static>(
    write: &ChannelWriteHalf<S>,
    request: ChannelRequest,
    want_reply: bool,
) -> Result<(), TransportError> {
    let result = match request {
        ChannelRequest::Pty(PtyRequest { term, size, modes }) => {
            write
                .request_pty(
                    want_reply,
                    &term,
                    size.cols,
                    size.rows,
                    size.pix_width,
                    size.pix_height,
                    &russh_modes(&modes),
                )
                .await
        }
        ChannelRequest::Env { name, value } => write.set_env(want_reply, name, value).await,
        ChannelRequest::Shell => write.request_shell(want_reply).await,
        ChannelRequest::Exec(command) => write.exec(want_reply, command).await,
        ChannelRequest::Subsystem(name) => write.request_subsystem(want_reply, name).await,
        ChannelRequest::WindowChange(WindowSize {
            cols,
            rows,
            pix_width,
            pix_height,
        }) => write.window_change(cols, rows, pix_width, pix_height).await,
        ChannelRequest::Signal(name) => write.signal(sig_of(&name)).await,
        ChannelRequest::ExitStatus(status) => write.exit_status(status).await,
        ChannelRequest::AgentForward => write.agent_forward(want_reply).await,
        ChannelRequest::ExitSignal(_) | ChannelRequest::Unknown { .. } => {
            return Err(ProtocolError::UnsendableRequest {
                transport: TransportKind::Tcp,
                request: request.wire_name().to_string(),
            }
            .into())
        }
    };
    result.map_err(|_| TransportError::ChannelClosed)
}
