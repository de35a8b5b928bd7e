//! One SSH channel on one QUIC bidirectional stream.
//!
//! The stream starts with CHANNEL_OPEN from the opener and OPEN_CONFIRMATION
//! (or OPEN_FAILURE) from the other side; then DATA, EXTENDED_DATA and
//! requests flow both ways. A side's FIN is its EOF, after which it sends
//! nothing more; the channel is closed once both directions are finished.
//! QUIC's per-stream flow control replaces SSH's windows: a reader that
//! stops reading stops only this stream.
//!
//! Each channel runs two small tasks: a writer that owns the send half (so
//! frames from the data writers and the control never interleave), and a
//! reader that owns the receive half and sorts frames into data, stderr,
//! requests and replies.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use sshq_core::channel::{ChannelKind, ChannelRequest, OpenFailure, OpenFailureReason};
use sshq_core::error::TransportError;
use sshq_core::pipe::{pipe, pipe_within, PipeBudget, PipeReader, PipeWriter};
use sshq_core::replies::{request_queue, QueuedRequests, ReplyQueue, RequestSender, REQUEST_QUEUE};
use sshq_core::transport::{Channel, ChannelControl, ChannelParts, IncomingRequest, ReplyHandle};
use tokio::io::AsyncWrite;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_util::sync::PollSender;

use crate::wire::{self, decode_frame, encode_frame, ErrorCode, Frame, MAX_DATA_PAYLOAD};

/// Bytes of the peer's data buffered per channel half before the reader
/// stops reading the stream (and QUIC flow control stops the peer).
const PIPE_BUFFER: usize = 1 << 20;

/// Frames queued for the writer task per channel.
const WRITE_QUEUE: usize = 16;

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

/// What the writer task is asked to do.
enum Out {
    Frame(Bytes),
    /// A data frame's header and payload, sent without copying.
    Data(Bytes, Bytes),
    /// EOF: finish the send direction.
    Finish,
    /// Abandon the channel.
    Reset(ErrorCode),
}

/// An SSH channel on a QUIC stream.
pub struct QuicChannel {
    kind: ChannelKind,
    send: Option<quinn::SendStream>,
    recv: Option<quinn::RecvStream>,
    /// Bytes read past the OPEN frame (accepted channels).
    buffered: BytesMut,
    side: Side,
    /// The connection's budget for unread data, when it has one.
    budget: Option<PipeBudget>,
}

enum Side {
    /// We opened it; the peer's first frame answers.
    Opener,
    /// The peer opened it; the first frame we write answers. Holds the
    /// decision, so that a refused channel can say why when dropped.
    Acceptor {
        decision: oneshot::Receiver<Result<(), OpenFailure>>,
    },
}

/// The sending priority of a channel's stream (quinn sends higher first).
///
/// Sessions (terminals, commands) go before forwarded connections and
/// agent requests, as OpenSSH marks interactive traffic `lowdelay` and the
/// rest `throughput`: when the congestion window opens, a keystroke's echo
/// takes the next packet instead of waiting for its round-robin turn behind
/// a bulk forward. That turn is short (one packet), so `interop/run hol`
/// measured no difference above its noise; what an echo still waits for
/// beside bulk is the congestion window itself (draft-notes, Appendix C).
fn send_priority(kind: &ChannelKind) -> i32 {
    match kind {
        ChannelKind::Session => 1,
        _ => 0,
    }
}

/// Gives `send` the priority of its channel's kind.
fn prioritized(kind: &ChannelKind, send: quinn::SendStream) -> quinn::SendStream {
    // Fails only on a stream already closed, which has nothing left to order.
    let _ = send.set_priority(send_priority(kind));
    send
}

impl QuicChannel {
    /// A channel we open: the OPEN frame is queued now, and the channel can
    /// be used at once (requests wait for the peer's answer).
    pub(crate) fn opened(
        kind: ChannelKind,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) -> Self {
        let send = prioritized(&kind, send);
        QuicChannel {
            kind,
            send: Some(send),
            recv: Some(recv),
            buffered: BytesMut::new(),
            side: Side::Opener,
            budget: None,
        }
    }

    /// Counts the peer's unread data on this channel against `budget`, the
    /// connection's.
    pub(crate) fn within_budget(mut self, budget: &PipeBudget) -> Self {
        self.budget = Some(budget.clone());
        self
    }

    /// A channel the peer opened, after its OPEN frame was read.
    pub(crate) fn accepted(
        kind: ChannelKind,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        buffered: BytesMut,
        decision: oneshot::Receiver<Result<(), OpenFailure>>,
    ) -> Self {
        let send = prioritized(&kind, send);
        QuicChannel {
            kind,
            send: Some(send),
            recv: Some(recv),
            buffered,
            side: Side::Acceptor { decision },
            budget: None,
        }
    }
}

impl Drop for QuicChannel {
    fn drop(&mut self) {
        // Dropped before split: if this was a refusal, tell the peer why.
        let Side::Acceptor { decision } = &mut self.side else {
            return;
        };
        let (Some(mut send), Ok(Err(failure))) = (self.send.take(), decision.try_recv()) else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = send
                    .write_chunk(encode_frame(&Frame::OpenFailure(failure)))
                    .await;
                let _ = send.finish();
            });
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
        let new_pipe = || match &self.budget {
            Some(budget) => pipe_within(PIPE_BUFFER, budget),
            None => pipe(PIPE_BUFFER),
        };
        let (data_rx, data_tx) = new_pipe();
        let (ext_rx, ext_tx) = new_pipe();
        let (requests_tx, requests_rx) = request_queue();
        let pending = ReplyQueue::default();
        let opener = matches!(self.side, Side::Opener);
        let (open_tx, open_rx) = watch::channel(if opener {
            OpenState::Waiting
        } else {
            OpenState::Confirmed
        });

        let first = if opener {
            encode_frame(&Frame::ChannelOpen(self.kind.clone()))
        } else {
            encode_frame(&Frame::OpenConfirmation)
        };
        let (closed_tx, closed_rx) = watch::channel(false);
        let closed_tx = Arc::new(closed_tx);
        let abandoned = Arc::new(Notify::new());
        // Answers owed to the peer's requests; our FIN waits for them.
        let (replies_due_tx, replies_due_rx) = watch::channel(0usize);
        if let Some(send) = self.send.take() {
            tokio::spawn(write_loop(
                send,
                first,
                out_rx,
                closed_tx.clone(),
                replies_due_rx,
            ));
        }
        if let Some(recv) = self.recv.take() {
            tokio::spawn(read_loop(ReadLoop {
                recv,
                buffered: std::mem::take(&mut self.buffered),
                awaiting_answer: opener,
                open: open_tx,
                data: data_tx,
                ext: ext_tx,
                requests: requests_tx,
                pending: pending.clone(),
                out: out_tx.clone(),
                closed: closed_tx,
                abandoned: abandoned.clone(),
                replies_due: Arc::new(replies_due_tx),
            }));
        }
        ChannelParts {
            data_in: data_rx,
            ext_in: ext_rx,
            data_out: ChannelWriter::new(out_tx.clone(), None),
            ext_out: ChannelWriter::new(out_tx.clone(), Some(1)),
            control: QuicControl {
                out: out_tx,
                pending,
                open: open_rx,
                order: tokio::sync::Mutex::new(()),
                closed: closed_rx,
                abandoned,
            },
            requests: requests_rx,
        }
    }
}

async fn write_loop(
    mut send: quinn::SendStream,
    first: Bytes,
    mut out: mpsc::Receiver<Out>,
    closed: Arc<watch::Sender<bool>>,
    replies_due: watch::Receiver<usize>,
) {
    // The peer stopping our direction (or the connection ending) closes the
    // channel for us even while we have nothing to send.
    // (A plain finish that the peer acknowledges is not a close.)
    let stopped = send.stopped();
    tokio::spawn(async move {
        if !matches!(stopped.await, Ok(None)) {
            let _ = closed.send(true);
        }
    });
    write_frames(&mut send, first, &mut out, replies_due).await;
}

async fn write_frames(
    send: &mut quinn::SendStream,
    first: Bytes,
    out: &mut mpsc::Receiver<Out>,
    replies_due: watch::Receiver<usize>,
) {
    if send.write_chunk(first).await.is_err() {
        return;
    }
    while let Some(item) = out.recv().await {
        let result = match item {
            Out::Frame(frame) => send.write_chunk(frame).await.map_err(|_| ()),
            Out::Data(header, payload) => send
                .write_all_chunks(&mut [header, payload])
                .await
                .map_err(|_| ()),
            Out::Finish => {
                finish_after_replies(send, out, replies_due).await;
                return;
            }
            Out::Reset(code) => {
                let _ = send.reset(code.code().into());
                return;
            }
        };
        if result.is_err() {
            return;
        }
    }
    // Every writer is gone without EOF: close our direction anyway.
    let _ = send.finish();
}

/// Our FIN, once every answer owed to the peer has been written.
///
/// Nothing can follow a FIN, not even the answer to a request. Answers
/// reach this writer through `read_loop`'s reply task, so a FIN queued
/// right after answering could overtake them: a command that exited at
/// once had its exit status and FIN written before the exec request's
/// CHANNEL_SUCCESS, which was then lost, and the client took the exec as
/// failed (sshq issue 10: ~15% of `exit 3` sessions once sshqd started
/// programs on the blocking pool). Frames that still come (the answers)
/// are written; data after EOF is dropped.
async fn finish_after_replies(
    send: &mut quinn::SendStream,
    out: &mut mpsc::Receiver<Out>,
    mut replies_due: watch::Receiver<usize>,
) {
    loop {
        let item = tokio::select! {
            // A reply is queued before its count is taken back.
            biased;
            item = out.recv() => item,
            // Also ends when the reply task is gone (nothing more is owed).
            _ = replies_due.wait_for(|due| *due == 0) => break,
        };
        match item {
            Some(Out::Frame(frame)) => {
                if send.write_chunk(frame).await.is_err() {
                    return;
                }
            }
            Some(Out::Data(..) | Out::Finish) => {}
            Some(Out::Reset(code)) => {
                let _ = send.reset(code.code().into());
                return;
            }
            None => break,
        }
    }
    let _ = send.finish();
}

struct ReadLoop {
    recv: quinn::RecvStream,
    buffered: BytesMut,
    awaiting_answer: bool,
    open: watch::Sender<OpenState>,
    data: PipeWriter,
    ext: PipeWriter,
    requests: RequestSender,
    pending: ReplyQueue<bool>,
    out: mpsc::Sender<Out>,
    closed: Arc<watch::Sender<bool>>,
    /// Set when our side gives the channel up (`QuicControl::abandon`).
    abandoned: Arc<Notify>,
    /// Answers owed to the peer: counted up here, down once the reply task
    /// has queued the answer for the writer (see `finish_after_replies`).
    replies_due: Arc<watch::Sender<usize>>,
}

async fn read_loop(mut r: ReadLoop) {
    // Replies to the peer's requests go out in order, from one task. Both
    // this queue and the requests' are bounded: a peer that floods requests
    // and never reads the replies soon finds this stream no longer read.
    let (reply_tx, mut reply_rx) = mpsc::channel::<oneshot::Receiver<bool>>(REQUEST_QUEUE);
    let reply_out = r.out.clone();
    let replies_due = r.replies_due.clone();
    tokio::spawn(async move {
        while let Some(answer) = reply_rx.recv().await {
            let ok = answer.await.unwrap_or(false);
            let frame = if ok {
                Frame::ChannelSuccess
            } else {
                Frame::ChannelFailure
            };
            let queued = reply_out.send(Out::Frame(encode_frame(&frame))).await;
            replies_due.send_modify(|due| *due = due.saturating_sub(1));
            if queued.is_err() {
                return;
            }
        }
    });
    let outcome = loop {
        match decode_frame(&mut r.buffered) {
            Ok(Some(frame)) => {
                if let Err(code) = r.handle(frame, &reply_tx).await {
                    break Err(code);
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!("channel stream: {e}");
                break Err(ErrorCode::ProtocolError);
            }
        }
        let read = tokio::select! {
            read = r.recv.read_chunk(64 * 1024, true) => read,
            () = r.abandoned.notified() => {
                // STOP_SENDING is what tells the peer, even after its FIN
                // or ours (a RESET_STREAM after an acknowledged FIN is not).
                let _ = r.recv.stop(ErrorCode::ChannelClosed.code().into());
                let _ = r.closed.send(true);
                break Ok(());
            }
        };
        match read {
            Ok(Some(chunk)) => r.buffered.extend_from_slice(&chunk.bytes),
            Ok(None) if r.buffered.is_empty() => break Ok(()),
            Ok(None) => break Err(ErrorCode::ProtocolError), // FIN inside a frame
            Err(_) => {
                // Reset by the peer, or the connection is gone.
                let _ = r.closed.send(true);
                break Ok(());
            }
        }
    };
    if let Err(code) = outcome {
        let _ = r.closed.send(true);
        let _ = r.recv.stop(code.code().into());
        let _ = r.out.send(Out::Reset(code)).await;
    }
    if r.awaiting_answer {
        let _ = r.open.send(OpenState::Refused(OpenFailure {
            reason: OpenFailureReason::ConnectFailed,
            message: "the channel stream ended before the peer answered".to_string(),
        }));
    }
    r.data.close();
    r.ext.close();
    r.pending.clear();
}

impl ReadLoop {
    async fn handle(
        &mut self,
        frame: Frame,
        replies: &mpsc::Sender<oneshot::Receiver<bool>>,
    ) -> Result<(), ErrorCode> {
        if self.awaiting_answer {
            self.awaiting_answer = false;
            return match frame {
                Frame::OpenConfirmation => {
                    let _ = self.open.send(OpenState::Confirmed);
                    Ok(())
                }
                Frame::OpenFailure(failure) => {
                    let _ = self.open.send(OpenState::Refused(failure));
                    // Nothing more will come; end quietly.
                    Err(ErrorCode::NoError)
                }
                _ => Err(ErrorCode::ProtocolError),
            };
        }
        match frame {
            Frame::Data(bytes) => {
                // Blocking here is the flow control: the stream stops being read.
                let _ = self.data.send(compact(bytes)).await;
            }
            Frame::ExtendedData { data_type: 1, data } => {
                let _ = self.ext.send(compact(data)).await;
            }
            Frame::ExtendedData { .. } => {} // other types are defined by no one; dropped as in SSH
            Frame::ChannelRequest {
                request,
                want_reply,
            } => {
                let reply = if want_reply {
                    let (tx, rx) = oneshot::channel();
                    self.replies_due.send_modify(|due| *due += 1);
                    if replies.send(rx).await.is_err() {
                        // The reply task is gone: this answer is never owed.
                        self.replies_due
                            .send_modify(|due| *due = due.saturating_sub(1));
                    }
                    ReplyHandle::new(tx)
                } else {
                    ReplyHandle::none()
                };
                let _ = self.requests.send(IncomingRequest { request, reply }).await;
            }
            Frame::ChannelSuccess | Frame::ChannelFailure => {
                if !self.pending.resolve(matches!(frame, Frame::ChannelSuccess)) {
                    return Err(ErrorCode::ProtocolError); // a reply nobody asked for
                }
            }
            _ => return Err(ErrorCode::ProtocolError),
        }
        Ok(())
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
    out: PollSender<Out>,
    data_type: Option<u32>,
}

impl ChannelWriter {
    fn new(out: mpsc::Sender<Out>, data_type: Option<u32>) -> Self {
        ChannelWriter {
            out: PollSender::new(out),
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
        let header = wire::data_header(self.data_type, n);
        match self.out.send_item(Out::Data(header, payload)) {
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
        if std::task::ready!(self.out.poll_reserve(cx)).is_err() {
            return Poll::Ready(Ok(())); // already closed
        }
        let _ = self.out.send_item(Out::Finish);
        self.out.close();
        Poll::Ready(Ok(()))
    }
}

/// Sends requests on a QUIC channel and matches replies, which come in order.
pub struct QuicControl {
    out: mpsc::Sender<Out>,
    pending: ReplyQueue<bool>,
    open: watch::Receiver<OpenState>,
    /// Held while a request is queued, so the reply queue has wire order.
    order: tokio::sync::Mutex<()>,
    closed: watch::Receiver<bool>,
    abandoned: Arc<Notify>,
}

impl ChannelControl for QuicControl {
    async fn request(
        &self,
        request: ChannelRequest,
        want_reply: bool,
    ) -> Result<bool, TransportError> {
        let reply = {
            let _order = self.order.lock().await;
            let reply = match want_reply {
                // A refusal that arrived first is why the channel is closed.
                true => Some(self.pending.expect().ok_or_else(|| self.closed_error())?),
                false => None,
            };
            let frame = encode_frame(&Frame::ChannelRequest {
                request,
                want_reply,
            });
            self.out
                .send(Out::Frame(frame))
                .await
                .map_err(|_| self.closed_error())?;
            reply
        };
        let Some(reply) = reply else {
            return Ok(true);
        };
        match reply.await {
            Ok(ok) => Ok(ok),
            Err(_) => Err(self.closed_error()),
        }
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
        let _ = self.out.send(Out::Finish).await;
    }

    async fn closed(&self) {
        let mut closed = self.closed.clone();
        let _ = closed.wait_for(|c| *c).await;
    }

    /// A FIN would only be EOF here: abandoning stops the peer's direction
    /// and resets ours with CHANNEL_CLOSED, which the peer takes as the
    /// channel closed (draft §8.8, "Abort").
    async fn abandon(&self) {
        self.abandoned.notify_one();
        let _ = self.out.send(Out::Reset(ErrorCode::ChannelClosed)).await;
    }
}

impl QuicControl {
    /// The error for a request that cannot be made or answered: the
    /// peer's refusal of the open, if that is what closed the channel.
    fn closed_error(&self) -> TransportError {
        self.refusal().unwrap_or(TransportError::ChannelClosed)
    }

    /// Why the channel is unusable, if the peer refused to open it.
    fn refusal(&self) -> Option<TransportError> {
        match &*self.open.borrow() {
            OpenState::Refused(failure) => Some(TransportError::OpenRefused(failure.clone())),
            _ => None,
        }
    }
}
