//! One channel stream as a state machine (draft §8): CHANNEL_OPEN and its
//! answer, requests and their replies in request order, data, EOF (FIN),
//! close (both FINs) and abort (RESET_STREAM / STOP_SENDING).
//!
//! The opener's machine starts by sending CHANNEL_OPEN and may send
//! requests at once (draft §8.9). The acceptor's machine waits for
//! CHANNEL_OPEN, hands the channel type out, and holds whatever the opener
//! pipelined behind it until the application decides.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sshq_core::channel::{ChannelKind, ChannelRequest, OpenFailure, OpenFailureReason};
use sshq_core::log_escape;
use sshq_core::replies::REQUEST_QUEUE;

use super::{
    frame_kind, FrameBuffer, OrderedAnswers, ProtocolError, RequestId, StreamKind, Transmit,
};
use crate::wire::{ErrorCode, Frame, WireError};

/// The only extended data type (draft §8.5): standard error.
pub const EXTENDED_DATA_STDERR: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenPhase {
    /// Acceptor: the stream's CHANNEL_OPEN has not arrived yet.
    AwaitingOpen,
    /// Acceptor: CHANNEL_OPEN arrived; the application decides.
    Deciding,
    /// Opener: waiting for CONFIRMATION or FAILURE.
    AwaitingAnswer,
    Open,
    /// Refused, aborted or broken: nothing more happens.
    Ended,
}

/// How a channel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEnd {
    /// Both directions ended with FIN.
    Orderly,
    /// The open was refused (by either side).
    Refused,
    /// The peer reset its direction or stopped ours, or the connection
    /// is gone (draft §8.8: closed by the peer).
    PeerAborted,
    /// We abandoned it (draft §8.8, CHANNEL_CLOSED).
    Abandoned,
    /// The peer broke the protocol on this stream (draft §6.5).
    Error(ProtocolError),
}

/// What a channel tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEvent {
    /// Acceptor: the peer asks to open a channel of this kind; call
    /// [`ChannelMachine::accept`] or [`ChannelMachine::refuse`].
    OpenRequested(ChannelKind),
    /// Opener: the peer confirmed the open.
    Confirmed,
    /// Opener: the peer refused the open (or ended the stream first).
    Refused(OpenFailure),
    Data(Bytes),
    /// Standard error (other extended data types are dropped, draft §8.5).
    ExtendedData(Bytes),
    /// The peer's request; answer it with [`ChannelMachine::answer`] if it
    /// wants a reply.
    Request {
        id: RequestId,
        request: ChannelRequest,
        want_reply: bool,
    },
    /// The reply to our request `id`.
    Reply {
        id: RequestId,
        success: bool,
    },
    /// The peer's FIN: its EOF.
    Eof,
    /// The channel is over.
    Closed(ChannelEnd),
}

/// Why a request could not be sent; the driver refuses the call at once
/// instead of sending a frame the protocol forbids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestRefused {
    /// The channel is closed (or not open to the application yet).
    #[error("the channel is closed")]
    Closed,
    /// Our EOF (FIN) is sent or asked for: nothing can follow it.
    #[error("the channel's EOF was sent: no request can follow it")]
    AfterOurEof,
    /// The peer's EOF (FIN) arrived: it can no longer answer.
    #[error("the peer sent EOF: a request wanting a reply cannot be answered")]
    ReplyAfterPeerEof,
}

/// One channel's state machine.
#[derive(Debug)]
pub struct ChannelMachine {
    phase: OpenPhase,
    input: FrameBuffer,
    open_deadline: Option<Instant>,
    peer_finished: bool,
    eof_reported: bool,
    we_finished: bool,
    /// The peer's want-reply requests until their answers go out, and our
    /// FIN while it waits for them (draft §8.7: answers go out before FIN).
    answers: OrderedAnswers<bool>,
    our_requests: VecDeque<RequestId>,
    next_id: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ChannelEvent>,
    ended: bool,
    /// The peer stopped our direction before it answered the open.
    stopped_before_answer: bool,
}

impl ChannelMachine {
    fn new(phase: OpenPhase) -> Self {
        ChannelMachine {
            phase,
            input: FrameBuffer::default(),
            open_deadline: None,
            peer_finished: false,
            eof_reported: false,
            we_finished: false,
            answers: OrderedAnswers::default(),
            our_requests: VecDeque::new(),
            next_id: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            ended: false,
            stopped_before_answer: false,
        }
    }

    /// A channel we open: CHANNEL_OPEN is the first transmit (draft §8.1).
    pub fn opener(kind: ChannelKind) -> Self {
        let mut machine = ChannelMachine::new(OpenPhase::AwaitingAnswer);
        machine
            .transmits
            .push_back(Transmit::Frame(Frame::ChannelOpen(kind)));
        machine
    }

    /// A stream the peer opened: its CHANNEL_OPEN must come within
    /// `open_timeout`.
    pub fn acceptor(now: Instant, open_timeout: Duration) -> Self {
        let mut machine = ChannelMachine::new(OpenPhase::AwaitingOpen);
        machine.open_deadline = now.checked_add(open_timeout);
        machine
    }

    /// Whether the channel is open (confirmed, or accepted by us).
    pub fn is_open(&self) -> bool {
        self.phase == OpenPhase::Open
    }

    /// Whether the channel is over: both FINs, or ended otherwise.
    pub fn is_closed(&self) -> bool {
        self.ended
    }

    /// Whether the driver should read more of the stream. Not while the
    /// application decides on the open, nor while the peer's unanswered
    /// requests fill the queue (draft §8.10).
    pub fn wants_input(&self) -> bool {
        !self.peer_finished
            && !matches!(self.phase, OpenPhase::Ended | OpenPhase::Deciding)
            && self.answers.len() < REQUEST_QUEUE
    }

    pub fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        if self.phase == OpenPhase::Ended {
            return;
        }
        self.input.extend(bytes);
        self.process(now);
    }

    /// One frame, as if its bytes had been read (tests and fuzzing).
    pub fn handle_frame(&mut self, now: Instant, frame: Frame) {
        // A frame that does not encode is fed as nothing (tests and
        // fuzzing only hand in frames that decoded).
        let bytes = crate::wire::encode_frame(&frame).unwrap_or_default();
        self.handle_bytes(now, &bytes);
    }

    /// The peer's FIN.
    pub fn handle_fin(&mut self, now: Instant) {
        self.peer_finished = true;
        self.process(now);
    }

    /// The peer reset its direction, stopped ours, or the connection is
    /// gone (draft §8.8: the channel is closed by the peer).
    pub fn handle_peer_abort(&mut self) {
        if self.phase == OpenPhase::AwaitingAnswer {
            self.events.push_back(ChannelEvent::Refused(stream_ended()));
        }
        self.end(ChannelEnd::PeerAborted);
    }

    /// The peer stopped our direction (STOP_SENDING). Before the open is
    /// answered, that is the acceptor's refusal under way (draft §8.4): its
    /// answer, still to be read, says why, so only the answer ends the
    /// channel. Otherwise the channel is closed by the peer (draft §8.8).
    pub fn handle_peer_stop(&mut self) {
        if self.phase == OpenPhase::AwaitingAnswer {
            self.stopped_before_answer = true;
            return;
        }
        self.end(ChannelEnd::PeerAborted);
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ChannelEvent> {
        self.events.pop_front()
    }

    /// The deadline for the peer's CHANNEL_OPEN, while it is awaited.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            OpenPhase::AwaitingOpen => self.open_deadline,
            _ => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|deadline| now >= deadline) {
            self.fail(ProtocolError::OpenTimeout);
        }
    }

    /// Acceptor: confirm the open; what the opener pipelined is processed
    /// now, as if it came after the confirmation (draft §8.9).
    pub fn accept(&mut self, now: Instant) {
        if self.phase != OpenPhase::Deciding {
            return;
        }
        // draft §8.1: the acceptor's first frame answers the open.
        self.transmits
            .push_front(Transmit::Frame(Frame::OpenConfirmation));
        self.phase = OpenPhase::Open;
        self.process(now);
    }

    /// Acceptor: refuse the open. The pipelined frames are discarded, and
    /// the answer is followed by FIN (draft §8.4).
    pub fn refuse(&mut self, failure: OpenFailure) {
        if !matches!(self.phase, OpenPhase::Deciding | OpenPhase::AwaitingOpen) {
            return;
        }
        self.transmits.clear();
        self.transmits
            .push_back(Transmit::Frame(Frame::OpenFailure(failure)));
        self.transmits.push_back(Transmit::Finish);
        self.transmits
            .push_back(Transmit::StopSending(ErrorCode::NoError));
        self.we_finished = true;
        self.end(ChannelEnd::Refused);
    }

    /// Sends a request; the reply comes as [`ChannelEvent::Reply`] with the
    /// id returned (None when no reply is wanted). Requests may be sent
    /// before the open is confirmed (draft §8.9).
    pub fn send_request(
        &mut self,
        request: ChannelRequest,
        want_reply: bool,
    ) -> Result<Option<RequestId>, RequestRefused> {
        if self.ended || self.phase == OpenPhase::Deciding {
            return Err(RequestRefused::Closed);
        }
        // draft §8.8: nothing after our FIN (nor after it was asked for).
        if self.we_finished || self.answers.fin_held() {
            return Err(RequestRefused::AfterOurEof);
        }
        // draft §8.7: no want-reply request after the peer's FIN.
        if want_reply && self.peer_finished {
            return Err(RequestRefused::ReplyAfterPeerEof);
        }
        self.transmits
            .push_back(Transmit::Frame(Frame::ChannelRequest {
                request,
                want_reply,
            }));
        if !want_reply {
            return Ok(None);
        }
        let id = self.next_request_id();
        self.our_requests.push_back(id);
        Ok(Some(id))
    }

    /// Our answer to the peer's request `id`; answers go out in request
    /// order (draft §8.7), so this one may wait for earlier ones.
    pub fn answer(&mut self, now: Instant, id: RequestId, success: bool) {
        self.answers.answer(id, success);
        while let Some(released) = self.answers.release() {
            if !self.we_finished && !self.ended {
                let frame = match released.answer {
                    true => Frame::ChannelSuccess,
                    false => Frame::ChannelFailure,
                };
                self.transmits.push_back(Transmit::Frame(frame));
            }
        }
        if self.answers.fin_due() {
            self.finish();
        }
        self.process(now);
    }

    /// Our EOF: FIN on our direction (draft §8.8).
    /// Answers still owed to the peer go first: nothing can follow our
    /// FIN, so a program that exits at once must not lose the answer to
    /// the `exec` that started it.
    pub fn finish(&mut self) {
        if self.we_finished || self.ended {
            return;
        }
        // draft §8.7: every answer owed is sent before FIN
        if !self.answers.request_fin() {
            return;
        }
        self.we_finished = true;
        self.transmits.push_back(Transmit::Finish);
        self.check_closed();
    }

    /// Abandons the channel (draft §8.8, Abort): STOP_SENDING, which
    /// reaches the peer even after FINs, and RESET_STREAM, CHANNEL_CLOSED.
    pub fn abandon(&mut self) {
        if self.ended {
            return;
        }
        self.transmits
            .push_back(Transmit::StopSending(ErrorCode::ChannelClosed));
        self.transmits
            .push_back(Transmit::Reset(ErrorCode::ChannelClosed));
        self.end(ChannelEnd::Abandoned);
    }

    fn next_request_id(&mut self) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    fn end(&mut self, how: ChannelEnd) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.phase = OpenPhase::Ended;
        self.input.clear();
        self.answers.clear();
        self.our_requests.clear();
        self.events.push_back(ChannelEvent::Closed(how));
    }

    /// draft §6.5: a protocol error on a channel stream ends only that
    /// channel, with STOP_SENDING and RESET_STREAM PROTOCOL_ERROR.
    fn fail(&mut self, error: ProtocolError) {
        if self.ended {
            return;
        }
        if self.phase == OpenPhase::AwaitingAnswer {
            self.events.push_back(ChannelEvent::Refused(stream_ended()));
        }
        let code = error.code();
        self.transmits.push_back(Transmit::StopSending(code));
        self.transmits.push_back(Transmit::Reset(code));
        self.end(ChannelEnd::Error(error));
    }

    fn check_closed(&mut self) {
        if self.we_finished && self.eof_reported && self.phase == OpenPhase::Open {
            self.end(ChannelEnd::Orderly);
        }
    }

    fn process(&mut self, now: Instant) {
        self.handle_timeout(now);
        loop {
            if !matches!(
                self.phase,
                OpenPhase::AwaitingOpen | OpenPhase::AwaitingAnswer | OpenPhase::Open
            ) || self.answers.len() >= REQUEST_QUEUE
            {
                return;
            }
            match self.input.next() {
                Ok(Some(frame)) => self.handle_decoded(frame),
                Ok(None) => break,
                Err(ProtocolError::Malformed(WireError::UnknownChannelType(name)))
                    if self.phase == OpenPhase::AwaitingOpen =>
                {
                    // draft §8.3: an unknown channel type is refused with
                    // reason 3, not a protocol error.
                    return self.refuse(OpenFailure {
                        reason: OpenFailureReason::UnknownChannelType,
                        message: format!(
                            "unknown channel type \"{}\"",
                            log_escape::peer_text(&name)
                        ),
                    });
                }
                Err(e) => return self.fail(e),
            }
        }
        if self.peer_finished && !self.eof_reported {
            self.handle_peer_fin();
        }
    }

    fn handle_peer_fin(&mut self) {
        if !self.input.is_empty() {
            // draft §8.8: a FIN inside a frame is a protocol error.
            return self.fail(ProtocolError::FinInsideFrame(StreamKind::Channel));
        }
        match self.phase {
            OpenPhase::AwaitingOpen => self.fail(ProtocolError::MissingOpen("FIN")),
            OpenPhase::AwaitingAnswer => {
                // draft §8.4: FIN before any answer is a failed open.
                self.events.push_back(ChannelEvent::Refused(stream_ended()));
                self.transmits
                    .push_back(Transmit::StopSending(ErrorCode::NoError));
                self.transmits
                    .push_back(Transmit::Reset(ErrorCode::NoError));
                self.end(ChannelEnd::Refused);
            }
            OpenPhase::Open => {
                self.eof_reported = true;
                self.events.push_back(ChannelEvent::Eof);
                self.check_closed();
            }
            OpenPhase::Deciding | OpenPhase::Ended => {}
        }
    }

    fn handle_decoded(&mut self, frame: Frame) {
        match self.phase {
            OpenPhase::AwaitingOpen => match frame {
                Frame::ChannelOpen(kind) => {
                    self.phase = OpenPhase::Deciding;
                    self.events.push_back(ChannelEvent::OpenRequested(kind));
                }
                // draft §8.1: the opener's first frame is CHANNEL_OPEN.
                other => self.fail(ProtocolError::MissingOpen(frame_kind(&other))),
            },
            OpenPhase::AwaitingAnswer => match frame {
                Frame::OpenConfirmation => {
                    self.phase = OpenPhase::Open;
                    self.events.push_back(ChannelEvent::Confirmed);
                    if self.stopped_before_answer {
                        self.end(ChannelEnd::PeerAborted);
                    }
                }
                Frame::OpenFailure(failure) => {
                    // draft §8.4: the opener fails what it pipelined and
                    // ends the stream with NO_ERROR.
                    self.events.push_back(ChannelEvent::Refused(failure));
                    self.transmits
                        .push_back(Transmit::StopSending(ErrorCode::NoError));
                    self.transmits
                        .push_back(Transmit::Reset(ErrorCode::NoError));
                    self.end(ChannelEnd::Refused);
                }
                // draft §8.4: any other first frame is a protocol error.
                other => self.fail(ProtocolError::BadOpenAnswer(frame_kind(&other))),
            },
            OpenPhase::Open => self.open_frame(frame),
            OpenPhase::Deciding | OpenPhase::Ended => {}
        }
    }

    fn open_frame(&mut self, frame: Frame) {
        match frame {
            Frame::Data(data) => self.events.push_back(ChannelEvent::Data(data)),
            Frame::ExtendedData {
                data_type: EXTENDED_DATA_STDERR,
                data,
            } => self.events.push_back(ChannelEvent::ExtendedData(data)),
            // draft §8.5: other extended data types are discarded.
            Frame::ExtendedData { .. } => {}
            Frame::ChannelRequest {
                request,
                want_reply,
            } => {
                // draft §8.7: after our FIN a request wanting an answer is
                // ignored, since no answer can follow the FIN.
                if want_reply && self.we_finished {
                    return;
                }
                let id = self.next_request_id();
                if want_reply {
                    self.answers.arrived(id, true);
                }
                self.events.push_back(ChannelEvent::Request {
                    id,
                    request,
                    want_reply,
                });
            }
            Frame::ChannelSuccess | Frame::ChannelFailure => {
                // draft §8.7: an answer when no request is outstanding is a
                // protocol error.
                let Some(id) = self.our_requests.pop_front() else {
                    return self.fail(ProtocolError::UnsolicitedReply(StreamKind::Channel));
                };
                let success = frame == Frame::ChannelSuccess;
                self.events.push_back(ChannelEvent::Reply { id, success });
            }
            // draft §6.5: a second CHANNEL_OPEN is the duplicate channel.
            Frame::ChannelOpen(_) => self.fail(ProtocolError::DuplicateOpen),
            other => self.fail(ProtocolError::UnexpectedFrame {
                stream: StreamKind::Channel,
                frame: frame_kind(&other),
            }),
        }
    }
}

/// The failure reported when the stream ends before the peer answered
/// (draft §8.4: "connect failed").
fn stream_ended() -> OpenFailure {
    OpenFailure {
        reason: OpenFailureReason::ConnectFailed,
        message: "the channel stream ended before the peer answered".to_string(),
    }
}

#[cfg(test)]
mod tests;
