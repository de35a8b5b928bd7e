//! One SSH channel on one QUIC bidirectional stream.
//!
//! The stream starts with CHANNEL_OPEN from the opener and OPEN_CONFIRMATION
//! (or OPEN_FAILURE) from the other side; then DATA, EXTENDED_DATA and
//! requests flow both ways. A side's FIN is its EOF, after which it sends
//! nothing more; the channel is closed once both directions are finished.
//! QUIC's per-stream flow control replaces SSH's windows: a reader that
//! stops reading stops only this stream.
//!
//! The channel's protocol state lives in a sans-IO
//! [`ChannelMachine`](crate::proto::channel::ChannelMachine). Each channel
//! runs two small tasks: a writer that owns the send half (so frames from
//! the data writers and the machine never interleave), and a driver that
//! owns the receive half and the machine: it feeds the stream's bytes and
//! the application's requests and answers in, and hands the machine's
//! events to the pipes and queues the application reads.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use sshq_core::channel::{ChannelKind, ChannelRequest, OpenFailure};
use sshq_core::error::TransportError;
use sshq_core::pipe::{pipe, pipe_within, PipeBudget, PipeReader, PipeWriter};
use sshq_core::replies::{request_queue, QueuedRequests, RequestSender};
use sshq_core::transport::{Channel, ChannelControl, ChannelParts, IncomingRequest, ReplyHandle};
use tokio::io::AsyncWrite;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::PollSender;

use crate::conn::now;
use crate::preauth_credit::PreauthCredit;
use crate::proto::channel::{ChannelEnd, ChannelEvent, ChannelMachine, RequestRefused};
use crate::proto::{RequestId, Transmit};
use crate::streams::{RecvHalf, SendHalf};
use crate::wire::{self, encode_frame, ErrorCode, MAX_DATA_PAYLOAD};

/// Bytes of the peer's data buffered per channel half before the reader
/// stops reading the stream (and QUIC flow control stops the peer).
const PIPE_BUFFER: usize = 1 << 20;

/// Frames queued for the writer task per channel.
const WRITE_QUEUE: usize = 16;

/// Commands queued for a channel's driver.
const COMMAND_QUEUE: usize = 16;

/// The peer's unread data over all the channels of one connection, counted
/// as memory (see `sshq_core::pipe`): the connection's receive window, so
/// that what QUIC lets the peer send and what we hold once it is read from
/// QUIC stay of one size whatever the number of streams.
pub(crate) const CONNECTION_PIPE_BUDGET: usize = 64 << 20;

/// DATA payloads shorter than this are copied out of the stream's read
/// buffer: a few stalled bytes must not keep a whole 64 KiB buffer (and
/// every frame decoded from it) alive. Larger ones are handed on as they are.
const COPY_BELOW: usize = 16 * 1024;

/// Where a channel we opened stands with the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OpenState {
    Waiting,
    Confirmed,
    Refused(OpenFailure),
}

/// What the writer task is asked to do. Queued boxed, as `Command` is:
/// tokio allocates a queue's slots 32 at a time when it is made, and every
/// channel of every idle session has both queues (bench-idle's heap
/// profile); a pointer per slot keeps that small.
enum Out {
    Frame(Bytes),
    /// A data frame's header and payload, sent without copying.
    Data(Bytes, Bytes),
    /// EOF: finish the send direction.
    Finish,
    /// Abandon the channel.
    Reset(ErrorCode),
    /// A pty was requested on the channel: its stream goes first from now
    /// on ([`INTERACTIVE_PRIORITY`]).
    Interactive,
}

/// What the channel's handles ask of its driver.
///
/// Who holds a sender of these, and why, is one rule: a sender is strong
/// exactly while it stands for something the application can still do
/// with the channel. Each handle holds one (the two writers and the
/// control), and so does each reply handle of the peer's want-reply
/// requests until it is answered or dropped (its task forwards the
/// answer). Everything the driver or the writer keeps for itself
/// ([`Core::answers`], the writer's watch on STOP_SENDING) is weak: so
/// the driver's queue ends exactly when the application has let go of
/// every part, which is what closes the channel (our FIN once the answers
/// owed are out), and an answer never goes missing while our FIN waits
/// for it (draft §8.7).
enum Command {
    Request {
        request: ChannelRequest,
        want_reply: bool,
        reply: oneshot::Sender<Result<bool, TransportError>>,
    },
    /// The application's answer to the peer's request `id`.
    Answer { id: RequestId, success: bool },
    /// Our EOF.
    Finish,
    /// Give the channel up (draft §8.8, Abort).
    Abandon,
    /// The peer stopped our direction, or the connection is gone.
    PeerStopped,
}

/// An SSH channel on a QUIC stream.
pub struct QuicChannel {
    kind: ChannelKind,
    send: Option<SendHalf>,
    recv: Option<RecvHalf>,
    machine: Option<ChannelMachine>,
    /// The acceptor's decision, so that a refused channel can say why
    /// when dropped.
    decision: Option<oneshot::Receiver<Result<(), OpenFailure>>>,
    /// The connection's budget for unread data, when it has one.
    budget: Option<PipeBudget>,
    /// The client's pre-authentication send credit (draft §7.6), which
    /// this channel's writer draws from.
    credit: Option<PreauthCredit>,
}

/// The sending priority of a channel's stream (quinn sends higher first).
///
/// Sessions (terminals, commands) go before forwarded connections and
/// agent requests, as OpenSSH marks interactive traffic `lowdelay` and the
/// rest `throughput`; a session with a pty (a terminal) goes before every
/// other stream ([`INTERACTIVE_PRIORITY`], set when the pty is requested,
/// on both ends), so a `scp` or `rsync` session does not share a terminal's
/// rank. When the congestion window opens, a keystroke's echo takes the next
/// packet instead of waiting for its round-robin turn behind bulk data,
/// however much of it quinn holds unsent; what an echo still waits for
/// beside bulk is the congestion window and the path's queue (draft-notes,
/// Appendix C).
fn send_priority(kind: &ChannelKind) -> i32 {
    match kind {
        ChannelKind::Session => 1,
        _ => 0,
    }
}

/// The priority of a channel that carries a terminal (a pty was requested).
const INTERACTIVE_PRIORITY: i32 = 2;

/// Gives `send` the priority of its channel's kind.
fn prioritized(kind: &ChannelKind, send: SendHalf) -> SendHalf {
    send.set_priority(send_priority(kind), false);
    send
}

impl QuicChannel {
    /// A channel we open: the OPEN frame is queued now, and the channel can
    /// be used at once (requests wait for the peer's answer).
    pub(crate) fn opened(kind: ChannelKind, send: SendHalf, recv: RecvHalf) -> Self {
        let send = prioritized(&kind, send);
        QuicChannel {
            machine: Some(ChannelMachine::opener(kind.clone())),
            kind,
            send: Some(send),
            recv: Some(recv),
            decision: None,
            budget: None,
            credit: None,
        }
    }

    /// Counts the peer's unread data on this channel against `budget`, the
    /// connection's.
    pub(crate) fn within_budget(mut self, budget: &PipeBudget) -> Self {
        self.budget = Some(budget.clone());
        self
    }

    /// Makes this channel's writes, its OPEN frame included, draw from the
    /// connection's pre-authentication credit.
    pub(crate) fn with_preauth_credit(mut self, credit: Option<&PreauthCredit>) -> Self {
        self.credit = credit.cloned();
        self
    }

    /// A channel the peer opened, after its OPEN frame was read by
    /// `machine` (which holds whatever the peer pipelined behind it).
    pub(crate) fn accepted(
        kind: ChannelKind,
        send: SendHalf,
        recv: RecvHalf,
        machine: ChannelMachine,
        decision: oneshot::Receiver<Result<(), OpenFailure>>,
    ) -> Self {
        let send = prioritized(&kind, send);
        QuicChannel {
            kind,
            send: Some(send),
            recv: Some(recv),
            machine: Some(machine),
            decision: Some(decision),
            budget: None,
            credit: None,
        }
    }
}

impl Drop for QuicChannel {
    fn drop(&mut self) {
        // Dropped before split: if this was a refusal, tell the peer why.
        let Some(decision) = &mut self.decision else {
            return;
        };
        let Ok(Err(failure)) = decision.try_recv() else {
            return;
        };
        let (Some(mut send), Some(mut recv), Some(mut machine)) =
            (self.send.take(), self.recv.take(), self.machine.take())
        else {
            return;
        };
        machine.refuse(failure);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                write_final(&mut send, &mut recv, &mut machine).await;
            });
        }
    }
}

/// Carries out the last transmits of a channel that never opened (a
/// refusal, or a stream broken before its OPEN frame).
pub(crate) async fn write_final(
    send: &mut SendHalf,
    recv: &mut RecvHalf,
    machine: &mut ChannelMachine,
) {
    while let Some(transmit) = machine.poll_transmit() {
        match transmit {
            Transmit::Frame(frame) => {
                let Ok(bytes) = encode_frame(&frame) else {
                    // Only a frame this side built can be oversized.
                    send.reset(ErrorCode::InternalError);
                    return;
                };
                if send.write_chunks(&mut [bytes]).await.is_err() {
                    return;
                }
            }
            Transmit::Finish => send.finish(),
            Transmit::Reset(code) => send.reset(code),
            Transmit::StopSending(code) => recv.stop(code),
        }
    }
}

impl Channel for QuicChannel {
    type Reader = PipeReader;
    type Writer = ChannelWriter;
    type Control = QuicControl;
    type Requests = QueuedRequests;

    fn kind(&self) -> &ChannelKind {
        &self.kind
    }

    fn split(mut self) -> ChannelParts<Self> {
        let (out_tx, out_rx) = mpsc::channel(WRITE_QUEUE);
        let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let new_pipe = || match &self.budget {
            Some(budget) => pipe_within(PIPE_BUFFER, budget),
            None => pipe(PIPE_BUFFER),
        };
        let (data_rx, data_tx) = new_pipe();
        let (ext_rx, ext_tx) = new_pipe();
        let (requests_tx, requests_rx) = request_queue();
        // Split means accepted: a refusal drops the channel unsplit.
        let opener = self.decision.take().is_none();
        let mut machine = self
            .machine
            .take()
            .unwrap_or_else(|| ChannelMachine::opener(self.kind.clone()));
        if !opener {
            if let (Some(send), Some(recv)) = (&self.send, &mut self.recv) {
                // draft §8.4: an open the opener gave up before our answer is closed, nothing started
                // (what it pipelined never reaches the application).
                if opener_gave_up(send, recv) {
                    machine.handle_peer_abort();
                }
            }
        }
        machine.accept(now());
        let (open_tx, open_rx) = watch::channel(if opener {
            OpenState::Waiting
        } else {
            OpenState::Confirmed
        });
        // The first frame (OPEN, or the confirmation) goes into the fresh
        // queue now, before any data the application writes.
        if let Some(Transmit::Frame(frame)) = machine.poll_transmit() {
            match encode_frame(&frame) {
                Ok(bytes) => {
                    let _ = out_tx.try_send(Box::new(Out::Frame(bytes)));
                }
                Err(e) => {
                    tracing::warn!("channel stream: {e}");
                    let _ = out_tx.try_send(Box::new(Out::Reset(ErrorCode::InternalError)));
                }
            }
        }
        let (closed_tx, closed_rx) = watch::channel(false);
        if let Some(send) = self.send.take() {
            let credit = self.credit.take();
            tokio::spawn(write_loop(send, out_rx, commands_tx.downgrade(), credit));
        }
        if let Some(recv) = self.recv.take() {
            tokio::spawn(
                Driver {
                    core: Core {
                        recv,
                        machine,
                        open: open_tx,
                        waiting: HashMap::new(),
                        out: out_tx.clone(),
                        closed: closed_tx,
                        answers: commands_tx.downgrade(),
                    },
                    data: data_tx,
                    ext: ext_tx,
                    requests: Some(requests_tx),
                }
                .run(commands_rx),
            );
        }
        ChannelParts {
            data_in: data_rx,
            ext_in: ext_rx,
            data_out: ChannelWriter::new(out_tx.clone(), commands_tx.clone(), None),
            ext_out: ChannelWriter::new(out_tx, commands_tx.clone(), Some(1)),
            control: QuicControl {
                commands: commands_tx,
                open: open_rx,
                closed: closed_rx,
            },
            requests: requests_rx,
        }
    }
}

/// Whether the opener of a channel we are accepting has already reset its
/// direction or stopped ours, as far as the stream shows right now.
pub(crate) fn opener_gave_up(send: &SendHalf, recv: &mut RecvHalf) -> bool {
    recv.is_reset_now() || send.is_stopped_now()
}

async fn write_loop(
    mut send: SendHalf,
    mut out: mpsc::Receiver<Box<Out>>,
    driver: mpsc::WeakSender<Box<Command>>,
    credit: Option<PreauthCredit>,
) {
    // The peer stopping our direction (or the connection ending) closes the
    // channel for us even while we have nothing to send.
    // (A plain finish that the peer acknowledges is not a close.)
    let stopped = send.stopped();
    tokio::spawn(async move {
        if stopped.await {
            if let Some(driver) = driver.upgrade() {
                let _ = driver.send(Box::new(Command::PeerStopped)).await;
            }
        }
    });
    while let Some(item) = out.recv().await {
        let item = *item;
        if let Some(credit) = &credit {
            let len = match &item {
                Out::Frame(frame) => frame.len(),
                Out::Data(header, payload) => header.len().saturating_add(payload.len()),
                Out::Finish | Out::Reset(_) | Out::Interactive => 0,
            };
            credit.take(len).await;
        }
        let result = match item {
            Out::Frame(frame) => send.write_chunks(&mut [frame]).await,
            Out::Data(header, payload) => send.write_chunks(&mut [header, payload]).await,
            Out::Finish => {
                send.finish();
                return;
            }
            Out::Reset(code) => {
                send.reset(code);
                return;
            }
            Out::Interactive => {
                send.set_priority(INTERACTIVE_PRIORITY, true);
                continue;
            }
        };
        if result.is_err() {
            return;
        }
    }
    // Every writer is gone without EOF: close our direction anyway.
    send.finish();
}

/// Moves one channel's bytes, requests and answers through its machine.
struct Driver {
    core: Core,
    /// Where the peer's data and requests go; waiting on them (flow
    /// control) never stops the commands (see [`Driver::deliver`]).
    data: PipeWriter,
    ext: PipeWriter,
    /// Dropped at the peer's EOF: no request can follow it (draft §8.8),
    /// and the application's request loop ends there.
    requests: Option<RequestSender>,
}

/// The machine and what it writes to.
struct Core {
    recv: RecvHalf,
    machine: ChannelMachine,
    open: watch::Sender<OpenState>,
    /// Our requests waiting for their replies.
    waiting: HashMap<RequestId, oneshot::Sender<Result<bool, TransportError>>>,
    out: mpsc::Sender<Box<Out>>,
    closed: watch::Sender<bool>,
    /// Where the application's answers come back; weak (see [`Command`]):
    /// when it no longer upgrades, no part of the channel is left to answer.
    answers: mpsc::WeakSender<Box<Command>>,
}

/// The commands from the channel's handles, until they are all gone (the
/// peer's data may still be read then).
struct Commands {
    rx: mpsc::Receiver<Box<Command>>,
    open: bool,
}

impl Commands {
    /// Every part of the channel is gone (see [`Command`]): that closes
    /// the channel, as the trait promises. Our EOF goes out once the
    /// answers owed are (draft §8.7); the peer's data is still read, and
    /// dropped, until its own EOF ends the channel.
    fn let_go(&mut self, core: &mut Core) {
        self.open = false;
        core.machine.finish();
    }
}

impl Driver {
    async fn run(mut self, rx: mpsc::Receiver<Box<Command>>) {
        let mut commands = Commands { rx, open: true };
        let mut recv_done = false;
        loop {
            self.core.flush().await;
            if !self.handle_events(&mut commands).await {
                break;
            }
            self.core.flush().await;
            let reading = !recv_done && self.core.machine.wants_input();
            if !reading && !commands.open {
                break;
            }
            let core = &mut self.core;
            tokio::select! {
                read = core.recv.read(64 * 1024), if reading => match read {
                    Ok(Some(bytes)) => core.machine.handle_bytes(now(), &bytes),
                    Ok(None) => {
                        recv_done = true;
                        core.machine.handle_fin(now());
                    }
                    Err(_) => {
                        // Reset by the peer, or the connection is gone.
                        recv_done = true;
                        core.machine.handle_peer_abort();
                    }
                },
                command = commands.rx.recv(), if commands.open => match command {
                    Some(command) => core.command(*command).await,
                    None => commands.let_go(core),
                },
            }
        }
        self.data.close();
        self.ext.close();
        self.requests = None;
    }

    /// Waits for `delivery` (room in a pipe or the request queue) while
    /// still taking commands, so that a full pipe never holds up our
    /// requests, answers, EOF or abort. False if the channel ended first.
    async fn deliver<F: std::future::Future>(
        core: &mut Core,
        commands: &mut Commands,
        delivery: F,
    ) -> bool {
        tokio::pin!(delivery);
        loop {
            tokio::select! {
                _ = &mut delivery => return true,
                command = commands.rx.recv(), if commands.open => match command {
                    Some(command) => {
                        core.command(*command).await;
                        core.flush().await;
                        if core.machine.is_closed() {
                            return false;
                        }
                    }
                    None => {
                        commands.let_go(core);
                        core.flush().await;
                    }
                },
            }
        }
    }

    /// Delivers the machine's events; false once the channel is over.
    async fn handle_events(&mut self, commands: &mut Commands) -> bool {
        let Driver {
            core,
            data,
            ext,
            requests,
        } = self;
        while let Some(event) = core.machine.poll_event() {
            match event {
                ChannelEvent::Confirmed => {
                    let _ = core.open.send(OpenState::Confirmed);
                }
                ChannelEvent::Refused(failure) => {
                    let _ = core.open.send(OpenState::Refused(failure));
                }
                // Waiting here is the flow control: the stream stops being read.
                ChannelEvent::Data(bytes) => {
                    Self::deliver(core, commands, data.send(compact(bytes))).await;
                }
                ChannelEvent::ExtendedData(bytes) => {
                    Self::deliver(core, commands, ext.send(compact(bytes))).await;
                }
                ChannelEvent::Request {
                    id,
                    request,
                    want_reply,
                } => {
                    if matches!(request, ChannelRequest::Pty(_)) {
                        // The terminal's output goes first (see send_priority).
                        let _ = core.out.send(Box::new(Out::Interactive)).await;
                    }
                    let reply = match (want_reply, core.answers.upgrade()) {
                        (false, _) => ReplyHandle::none(),
                        // A strong sender (see [`Command`]), held until the
                        // application answers or drops the handle: the answer
                        // must reach the machine even when the application
                        // lets go of the rest of the channel first (a program
                        // that exited at once), since our FIN waits for it.
                        (true, Some(answers)) => {
                            let (tx, rx) = oneshot::channel();
                            tokio::spawn(async move {
                                let success = rx.await.unwrap_or(false);
                                let _ = answers
                                    .send(Box::new(Command::Answer { id, success }))
                                    .await;
                            });
                            ReplyHandle::new(tx)
                        }
                        // No part of the channel is left: nobody can answer.
                        (true, None) => {
                            core.machine.answer(now(), id, false);
                            ReplyHandle::none()
                        }
                    };
                    let incoming = IncomingRequest { request, reply };
                    if let Some(requests) = requests {
                        Self::deliver(core, commands, requests.send(incoming)).await;
                    }
                }
                ChannelEvent::Reply { id, success } => {
                    if let Some(waiter) = core.waiting.remove(&id) {
                        let _ = waiter.send(Ok(success));
                    }
                }
                ChannelEvent::Eof => {
                    data.close();
                    ext.close();
                    *requests = None;
                }
                ChannelEvent::Closed(end) => {
                    core.ended(end).await;
                    return false;
                }
                ChannelEvent::OpenRequested(_) => {}
            }
        }
        true
    }
}

impl Core {
    async fn command(&mut self, command: Command) {
        match command {
            Command::Request {
                request,
                want_reply,
                reply,
            } => {
                if matches!(request, ChannelRequest::Pty(_)) {
                    // Our keystrokes go first (see send_priority).
                    let _ = self.out.send(Box::new(Out::Interactive)).await;
                }
                match self.machine.send_request(request, want_reply) {
                    Ok(Some(id)) => {
                        self.waiting.insert(id, reply);
                    }
                    Ok(None) => {
                        // Queued for the writer before the caller goes on.
                        self.flush().await;
                        let _ = reply.send(Ok(true));
                    }
                    Err(refused) => {
                        let _ = reply.send(Err(self.refusal(refused)));
                    }
                }
            }
            Command::Answer { id, success } => self.machine.answer(now(), id, success),
            Command::Finish => self.machine.finish(),
            Command::Abandon => self.machine.abandon(),
            Command::PeerStopped => self.machine.handle_peer_stop(),
        }
    }

    fn closed_error(&self) -> TransportError {
        match &*self.open.borrow() {
            OpenState::Refused(failure) => TransportError::OpenRefused(failure.clone()),
            _ => TransportError::ChannelClosed,
        }
    }

    /// Why a request of the application's is refused before it is sent.
    fn refusal(&self, refused: RequestRefused) -> TransportError {
        match refused {
            RequestRefused::Closed => self.closed_error(),
            // draft §8.8: nothing can follow our FIN
            RequestRefused::AfterOurEof => TransportError::RequestAfterEof,
            // draft §8.7: no want-reply request after the peer's FIN
            RequestRefused::ReplyAfterPeerEof => TransportError::ReplyAfterPeerEof,
        }
    }

    /// Hands the machine's transmits to the writer (and the stream).
    async fn flush(&mut self) {
        while let Some(transmit) = self.machine.poll_transmit() {
            let out = match transmit {
                Transmit::Frame(frame) => match encode_frame(&frame) {
                    Ok(bytes) => Out::Frame(bytes),
                    // Only a frame this side built (a request over
                    // MAX_FRAME_LEN) can fail: the channel cannot go on.
                    Err(e) => {
                        tracing::warn!("channel stream: {e}");
                        Out::Reset(ErrorCode::InternalError)
                    }
                },
                Transmit::Finish => Out::Finish,
                Transmit::Reset(code) => Out::Reset(code),
                Transmit::StopSending(code) => {
                    self.recv.stop(code);
                    continue;
                }
            };
            // The writer is gone only once the stream is.
            let _ = self.out.send(Box::new(out)).await;
        }
    }

    /// The channel is over: say so, and fail what still waits for a reply.
    async fn ended(&mut self, end: ChannelEnd) {
        if let ChannelEnd::Error(e) = &end {
            tracing::debug!("channel stream: {e}");
        }
        if end != ChannelEnd::Orderly {
            let _ = self.closed.send(true);
        }
        self.flush().await;
        let error = match end {
            ChannelEnd::Error(e) => TransportError::from(e),
            _ => self.closed_error(),
        };
        for (_, waiter) in self.waiting.drain() {
            let _ = waiter.send(Err(clone_error(&error)));
        }
    }
}

/// A copy of the errors a channel's requests fail with.
fn clone_error(error: &TransportError) -> TransportError {
    match error {
        TransportError::OpenRefused(failure) => TransportError::OpenRefused(failure.clone()),
        TransportError::Protocol(e) => TransportError::Protocol(
            sshq_core::error::ProtocolError::Violation(e.to_string().into()),
        ),
        _ => TransportError::ChannelClosed,
    }
}

/// A DATA payload as it should be queued: small ones copied out of the
/// buffer they were decoded from (see [`COPY_BELOW`]).
fn compact(payload: Bytes) -> Bytes {
    if payload.len() < COPY_BELOW {
        Bytes::copy_from_slice(&payload)
    } else {
        payload
    }
}

/// Our data (or stderr) for one channel, framed and handed to the writer.
pub struct ChannelWriter {
    out: PollSender<Box<Out>>,
    /// EOF goes through the channel's machine.
    driver: PollSender<Box<Command>>,
    data_type: Option<u32>,
}

impl ChannelWriter {
    fn new(
        out: mpsc::Sender<Box<Out>>,
        driver: mpsc::Sender<Box<Command>>,
        data_type: Option<u32>,
    ) -> Self {
        ChannelWriter {
            out: PollSender::new(out),
            driver: PollSender::new(driver),
            data_type,
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the channel is closed")
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if std::task::ready!(self.out.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(closed()));
        }
        let n = buf.len().min(MAX_DATA_PAYLOAD);
        let payload = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
        let header = match wire::data_header(self.data_type, n) {
            Ok(header) => header,
            Err(e) => return Poll::Ready(Err(e.into())),
        };
        match self.out.send_item(Box::new(Out::Data(header, payload))) {
            Ok(()) => Poll::Ready(Ok(n)),
            Err(_) => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Frames go to the writer task as they are written.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Only the data writer's shutdown is EOF (SSH has one EOF per channel).
        if self.data_type.is_some() {
            return Poll::Ready(Ok(()));
        }
        if std::task::ready!(self.driver.poll_reserve(cx)).is_err() {
            return Poll::Ready(Ok(())); // already closed
        }
        let _ = self.driver.send_item(Box::new(Command::Finish));
        self.driver.close();
        self.out.close();
        Poll::Ready(Ok(()))
    }
}

/// Sends requests on a QUIC channel; its driver matches the replies.
pub struct QuicControl {
    commands: mpsc::Sender<Box<Command>>,
    open: watch::Receiver<OpenState>,
    closed: watch::Receiver<bool>,
}

impl ChannelControl for QuicControl {
    async fn request(
        &self,
        request: ChannelRequest,
        want_reply: bool,
    ) -> Result<bool, TransportError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Box::new(Command::Request {
                request,
                want_reply,
                reply,
            }))
            .await
            .map_err(|_| self.closed_error())?;
        answer.await.unwrap_or_else(|_| Err(self.closed_error()))
    }

    async fn opened(&self) -> Result<(), TransportError> {
        let mut open = self.open.clone();
        let state = open
            .wait_for(|state| *state != OpenState::Waiting)
            .await
            .map_err(|_| TransportError::ChannelClosed)?
            .clone();
        match state {
            OpenState::Refused(failure) => Err(TransportError::OpenRefused(failure)),
            OpenState::Confirmed | OpenState::Waiting => Ok(()),
        }
    }

    async fn close(&self) {
        let _ = self.commands.send(Box::new(Command::Finish)).await;
    }

    async fn closed(&self) {
        let mut closed = self.closed.clone();
        let _ = closed.wait_for(|c| *c).await;
    }

    /// A FIN would only be EOF here: abandoning stops the peer's direction
    /// and resets ours with CHANNEL_CLOSED, which the peer takes as the
    /// channel closed (draft §8.8, "Abort").
    async fn abandon(&self) {
        let _ = self.commands.send(Box::new(Command::Abandon)).await;
    }
}

impl QuicControl {
    /// The error for a request that cannot be made or answered: the
    /// peer's refusal of the open, if that is what closed the channel.
    fn closed_error(&self) -> TransportError {
        match &*self.open.borrow() {
            OpenState::Refused(failure) => TransportError::OpenRefused(failure.clone()),
            _ => TransportError::ChannelClosed,
        }
    }
}
