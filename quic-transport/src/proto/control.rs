//! The control stream (stream 0) as a state machine: user authentication
//! with MaxAuthTries and LoginGraceTime, then global requests in both
//! directions with their replies in request order (draft §7, §9).
//!
//! The server's machine hands each USERAUTH_REQUEST out as an event and
//! waits for [`Control::auth_verdict`] (checking a signature or password
//! and asking the policy is the driver's, asynchronous, business); frames
//! behind it stay buffered meanwhile, so they are processed in order
//! afterwards. A keyboard-interactive conversation goes through
//! [`Control::send_info_request`] and [`ControlEvent::InfoResponse`]
//! until a verdict ends it. The client's machine sends the requests its
//! driver builds, one at a time (draft §7.6), and the answers to the
//! server's keyboard-interactive rounds.

use std::collections::VecDeque;
use std::time::Instant;

use sshq_core::channel::{GlobalReply, GlobalRequest};
use sshq_core::log_escape;
use sshq_core::replies::REQUEST_QUEUE;

use sshq_core::auth_methods::{name_list, AuthMethod, InfoRequest};
use sshq_core::zeroize::Zeroizing;

use super::{
    frame_kind, FrameBuffer, OrderedAnswers, ProtocolError, RequestId, StreamKind, Transmit,
};
use crate::wire::{AuthRequest, ErrorCode, Frame, InfoResponse};

/// Which end of the connection a machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// The server's verdict on the request (or keyboard-interactive answers)
/// last handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthVerdict {
    /// Logged in: USERAUTH_SUCCESS.
    Accepted,
    /// USERAUTH_FAILURE listing `can_continue`; counts toward MaxAuthTries.
    Refused { can_continue: Vec<AuthMethod> },
    /// The method succeeded but more are required (AuthenticationMethods):
    /// USERAUTH_FAILURE with partial success TRUE; not counted.
    Partial { can_continue: Vec<AuthMethod> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before USERAUTH_SUCCESS.
    Authenticating,
    /// Server: a request is out for a verdict. Client: a request is out
    /// for the server's answer.
    AwaitingVerdict,
    /// Server: a USERAUTH_INFO_REQUEST is out; the client's answers are
    /// awaited. Client: one has arrived; its driver is asking the user.
    AwaitingInfo,
    /// After USERAUTH_SUCCESS: global requests.
    Open,
    Closed,
}

/// How the connection is to end, for the driver to carry out (as
/// CONNECTION_CLOSE with `code` and `reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub code: ErrorCode,
    pub reason: String,
    /// The peer's protocol error, if that is why.
    pub error: Option<ProtocolError>,
}

/// What the control stream tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlEvent {
    /// Server: check this request, then call [`Control::auth_verdict`]
    /// (or, for keyboard-interactive, [`Control::send_info_request`]). A
    /// request that arrives during a keyboard-interactive conversation
    /// abandons it (counted as a failure).
    UserauthRequest(AuthRequest),
    /// Server: the answers to the last USERAUTH_INFO_REQUEST, one per
    /// prompt; go on with [`Control::send_info_request`] or a verdict.
    InfoResponse(InfoResponse),
    /// Client: the last request was refused (or, `partial`, succeeded with
    /// more required); send the next one ([`Control::send_userauth`]) or
    /// [`Control::give_up`]. `methods` is the server's name-list.
    UserauthFailure { methods: String, partial: bool },
    /// Client: a keyboard-interactive round; answer with
    /// [`Control::send_info_response`] or [`Control::give_up`].
    InfoRequest(InfoRequest),
    /// Client: the server's answer to [`Control::request_host_certificate`]
    /// (empty: it has none). Decide on it before sending a request.
    HostCertificate(bytes::Bytes),
    /// USERAUTH_SUCCESS was sent (server) or received (client).
    Authenticated,
    /// The peer's global request; answer it with [`Control::answer`]
    /// (in any order: the replies go out in request order).
    GlobalRequest {
        id: RequestId,
        request: GlobalRequest,
        want_reply: bool,
    },
    /// The reply to our request `id`.
    GlobalReply { id: RequestId, reply: GlobalReply },
    /// The connection is to be closed.
    Closed(Close),
}

/// Why a request of ours could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("not authenticated yet")]
    NotAuthenticated,
    #[error("the connection is closed")]
    Closed,
    #[error("{got} answers to {expected} keyboard-interactive prompts")]
    AnswerCount { expected: usize, got: usize },
    #[error("no keyboard-interactive round is waiting for answers")]
    NoInfoRequest,
}

/// The control stream's state machine.
#[derive(Debug)]
pub struct Control {
    role: Role,
    phase: Phase,
    input: FrameBuffer,
    /// The peer's FIN has arrived (processed once `input` is drained).
    peer_finished: bool,
    login_deadline: Option<Instant>,
    max_auth_tries: u32,
    failures: u32,
    /// The user of the request out for a verdict (escaped), for the
    /// MaxAuthTries message.
    last_user: Option<String>,
    /// Server: the user and service of the first request, which later
    /// ones must repeat (draft §7.7).
    login_for: Option<(String, String)>,
    /// Server: the request out for a verdict is the first and names
    /// `none`, which sshd does not count as a failure.
    uncounted_none: bool,
    /// Server: the request (or answers) out for a verdict belong to a
    /// keyboard-interactive conversation, so a round may follow. Client:
    /// the request (or answers) awaiting the server's reply do, so a
    /// USERAUTH_INFO_REQUEST may come.
    in_conversation: bool,
    /// The prompts of the USERAUTH_INFO_REQUEST out (server) or being
    /// answered (client).
    info_prompts: usize,
    /// The peer's global requests until their replies go out, in order.
    peer_requests: OrderedAnswers<GlobalReply>,
    our_requests: VecDeque<RequestId>,
    next_id: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ControlEvent>,
    finished: bool,
    /// Server: the certificate of its TLS host key, sent when asked
    /// (draft §5.5); empty when it has none.
    host_certificate: bytes::Bytes,
    /// Whether HOST_CERTIFICATE_REQUEST was sent (client) or answered
    /// (server), or a USERAUTH_REQUEST came first: it may come only once,
    /// before any request.
    host_certificate_asked: bool,
    /// Client: asked and not yet answered.
    host_certificate_pending: bool,
}

impl Control {
    /// A server's control stream. `login_deadline` is LoginGraceTime
    /// counted from the connection's first packet (None: no limit).
    pub fn server(now: Instant, login_deadline: Option<Instant>, max_auth_tries: u32) -> Self {
        let mut control = Control::new(Role::Server, login_deadline, max_auth_tries);
        control.handle_timeout(now);
        control
    }

    /// A client's control stream; send the first request with
    /// [`Control::send_userauth`].
    pub fn client() -> Self {
        Control::new(Role::Client, None, u32::MAX)
    }

    fn new(role: Role, login_deadline: Option<Instant>, max_auth_tries: u32) -> Self {
        Control {
            role,
            phase: Phase::Authenticating,
            input: FrameBuffer::default(),
            peer_finished: false,
            login_deadline,
            max_auth_tries,
            failures: 0,
            last_user: None,
            login_for: None,
            uncounted_none: false,
            in_conversation: false,
            info_prompts: 0,
            peer_requests: OrderedAnswers::default(),
            our_requests: VecDeque::new(),
            next_id: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            finished: false,
            host_certificate: bytes::Bytes::new(),
            host_certificate_asked: false,
            host_certificate_pending: false,
        }
    }

    /// Server: the OpenSSH certificate (blob) of the host key its TLS
    /// handshake presents, sent to a client that asks (draft §5.5).
    pub fn with_host_certificate(mut self, certificate: bytes::Bytes) -> Self {
        self.host_certificate = certificate;
        self
    }

    /// Client: asks for the server's host certificate (draft §5.5). Only
    /// before the first request; the answer comes as
    /// [`ControlEvent::HostCertificate`], and no request may be sent
    /// before it.
    pub fn request_host_certificate(&mut self) {
        if self.role != Role::Client
            || self.phase != Phase::Authenticating
            || self.host_certificate_asked
        {
            return;
        }
        self.host_certificate_asked = true;
        self.host_certificate_pending = true;
        self.transmits
            .push_back(Transmit::Frame(Frame::HostCertificateRequest));
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn is_authenticated(&self) -> bool {
        self.phase == Phase::Open
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Whether the driver should read more of the stream: not while a
    /// verdict is pending or the peer's requests fill the queue, so that a
    /// peer that floods requests finds the stream no longer read (draft
    /// §8.10), and not after the peer's FIN.
    pub fn wants_input(&self) -> bool {
        match self.phase {
            Phase::Closed => false,
            Phase::AwaitingVerdict if self.role == Role::Server => false,
            _ => !self.peer_finished && self.peer_requests.len() < REQUEST_QUEUE,
        }
    }

    /// Bytes read from the control stream.
    pub fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        if self.phase == Phase::Closed {
            return;
        }
        self.input.extend(bytes);
        self.process(now);
    }

    /// The peer's FIN on the control stream.
    pub fn handle_fin(&mut self, now: Instant) {
        self.peer_finished = true;
        self.process(now);
    }

    /// The peer reset its direction of the control stream (RESET_STREAM).
    pub fn handle_peer_reset(&mut self) {
        self.handle_peer_abort(ProtocolError::ControlStreamReset);
    }

    /// The peer asked us to stop sending on the control stream
    /// (STOP_SENDING). After our own FIN that asks for nothing: our
    /// direction is over already.
    pub fn handle_peer_stop(&mut self) {
        if !self.finished {
            self.handle_peer_abort(ProtocolError::ControlStreamStopped);
        }
    }

    /// The control stream lives as long as the connection; either end
    /// aborting it ends the connection.
    fn handle_peer_abort(&mut self, after_auth: ProtocolError) {
        match self.phase {
            Phase::Authenticating | Phase::AwaitingVerdict | Phase::AwaitingInfo => {
                // draft §7.1: the control stream ending before USERAUTH_SUCCESS.
                self.fail(ProtocolError::ControlEndedBeforeAuth)
            }
            // draft §7.8: RESET_STREAM or STOP_SENDING on the control stream after USERAUTH_SUCCESS closes the connection with PROTOCOL_ERROR
            Phase::Open => self.fail(after_auth),
            Phase::Closed => {}
        }
    }

    /// One frame, as if its bytes had been read (for tests and fuzzing).
    pub fn handle_frame(&mut self, now: Instant, frame: Frame) {
        // A frame that does not encode is fed as nothing (tests and
        // fuzzing only hand in frames that decoded).
        let bytes = crate::wire::encode_frame(&frame).unwrap_or_default();
        self.handle_bytes(now, &bytes);
    }

    /// The next frame (or FIN) to write on the control stream.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ControlEvent> {
        self.events.pop_front()
    }

    /// When [`Control::handle_timeout`] is next due: the LoginGraceTime
    /// deadline while not authenticated.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Authenticating | Phase::AwaitingVerdict | Phase::AwaitingInfo => {
                self.login_deadline
            }
            Phase::Open | Phase::Closed => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.poll_timeout() else {
            return;
        };
        if now >= deadline {
            // draft §7.7: LoginGraceTime ends the connection (AUTH_TIMEOUT).
            self.fail(ProtocolError::LoginGraceTimeExpired);
        }
    }

    /// Server: the verdict on the request (or keyboard-interactive
    /// answers) last handed out.
    pub fn auth_verdict(&mut self, now: Instant, verdict: AuthVerdict) {
        if self.role != Role::Server || self.phase != Phase::AwaitingVerdict {
            return;
        }
        self.in_conversation = false;
        let uncounted = std::mem::take(&mut self.uncounted_none);
        match verdict {
            AuthVerdict::Accepted => {
                self.transmits
                    .push_back(Transmit::Frame(Frame::UserauthSuccess));
                self.phase = Phase::Open;
                self.events.push_back(ControlEvent::Authenticated);
            }
            AuthVerdict::Refused { can_continue } => {
                self.phase = Phase::Authenticating;
                if !uncounted && !self.count_failure() {
                    return;
                }
                self.send_failure(&can_continue, false);
            }
            // draft §7.4: partial success does not count as a failure.
            AuthVerdict::Partial { can_continue } => {
                self.phase = Phase::Authenticating;
                self.send_failure(&can_continue, true);
            }
        }
        self.process(now);
    }

    /// Counts one failed attempt; false (and the connection closing) when
    /// that reaches MaxAuthTries.
    fn count_failure(&mut self) -> bool {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= self.max_auth_tries {
            // draft §7.7: at MaxAuthTries, AUTH_FAILED instead of the
            // last USERAUTH_FAILURE.
            let user = self.last_user.take().unwrap_or_default();
            self.fail(ProtocolError::TooManyAuthFailures(user));
            return false;
        }
        true
    }

    fn send_failure(&mut self, can_continue: &[AuthMethod], partial: bool) {
        self.transmits
            .push_back(Transmit::Frame(Frame::UserauthFailure {
                methods: name_list(can_continue),
                partial,
            }));
    }

    /// Server: a keyboard-interactive round for the conversation whose
    /// request (or answers) is out for a verdict. The answers come as
    /// [`ControlEvent::InfoResponse`]. At most
    /// [`sshq_core::auth_methods::MAX_PROMPTS`] prompts (the driver
    /// checks; more could not be encoded).
    pub fn send_info_request(&mut self, request: InfoRequest) {
        if self.role != Role::Server
            || self.phase != Phase::AwaitingVerdict
            || !self.in_conversation
        {
            return;
        }
        self.info_prompts = request.prompts.len();
        self.transmits
            .push_back(Transmit::Frame(Frame::UserauthInfoRequest(request)));
        // draft §7.8: AWAIT_INFO reads the client's answers.
        self.phase = Phase::AwaitingInfo;
    }

    /// Client: send a request (draft §7.6: one at a time; draft §5.5: not
    /// while a host certificate is awaited).
    pub fn send_userauth(&mut self, request: impl Into<AuthRequest>) {
        if self.role != Role::Client
            || self.phase != Phase::Authenticating
            || self.host_certificate_pending
        {
            return;
        }
        let request = request.into();
        self.in_conversation = matches!(request, AuthRequest::KeyboardInteractive(_));
        self.host_certificate_asked = true;
        self.transmits
            .push_back(Transmit::Frame(request.into_frame()));
        self.phase = Phase::AwaitingVerdict;
    }

    /// Client: the answers to the keyboard-interactive round last handed
    /// out, one per prompt (draft §7.2).
    pub fn send_info_response(
        &mut self,
        responses: Vec<Zeroizing<String>>,
    ) -> Result<(), SendError> {
        match (self.role, self.phase) {
            (_, Phase::Closed) => return Err(SendError::Closed),
            (Role::Client, Phase::AwaitingInfo) => {}
            _ => return Err(SendError::NoInfoRequest),
        }
        if responses.len() != self.info_prompts {
            return Err(SendError::AnswerCount {
                expected: self.info_prompts,
                got: responses.len(),
            });
        }
        self.transmits
            .push_back(Transmit::Frame(Frame::UserauthInfoResponse(InfoResponse {
                responses,
            })));
        self.in_conversation = true;
        self.phase = Phase::AwaitingVerdict;
        Ok(())
    }

    /// Client: nothing is left to try, or the user gave up; the connection
    /// ends (BY_APPLICATION, draft §7.6).
    pub fn give_up(&mut self) {
        self.close(Close {
            code: ErrorCode::ByApplication,
            reason: "authentication failed".to_string(),
            error: None,
        });
    }

    /// Sends a global request of ours; the reply comes as
    /// [`ControlEvent::GlobalReply`] with the id returned (None when no
    /// reply is wanted).
    pub fn send_global_request(
        &mut self,
        request: GlobalRequest,
        want_reply: bool,
    ) -> Result<Option<RequestId>, SendError> {
        match self.phase {
            Phase::Open => {}
            Phase::Closed => return Err(SendError::Closed),
            // draft §7.6: no GLOBAL_REQUEST before USERAUTH_SUCCESS.
            _ => return Err(SendError::NotAuthenticated),
        }
        if self.finished {
            return Err(SendError::Closed);
        }
        self.transmits
            .push_back(Transmit::Frame(Frame::GlobalRequest {
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

    /// Our answer to the peer's request `id`. Replies go out in the order
    /// of the requests (draft §9), so this one may wait for earlier ones.
    pub fn answer(&mut self, now: Instant, id: RequestId, reply: GlobalReply) {
        self.peer_requests.answer(id, reply);
        while let Some(released) = self.peer_requests.release() {
            if released.wants_reply && !self.finished && self.phase != Phase::Closed {
                let frame = match released.answer {
                    GlobalReply::Success { bound_port } => Frame::RequestSuccess { bound_port },
                    GlobalReply::Failure => Frame::RequestFailure,
                };
                self.transmits.push_back(Transmit::Frame(frame));
            }
        }
        // Room in the queue again: frames already read may go on.
        self.process(now);
    }

    /// Ends our side of the control stream (FIN): the client's end of the
    /// session (draft §7.1). Nothing is sent after it.
    pub fn finish(&mut self) {
        if !self.finished && self.phase != Phase::Closed {
            self.finished = true;
            self.transmits.push_back(Transmit::Finish);
        }
    }

    fn next_request_id(&mut self) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    fn fail(&mut self, error: ProtocolError) {
        // The sshq client, while authenticating, closes with BY_APPLICATION
        // (draft §6.5, Appendix A item 3).
        let code = if self.role == Role::Client && self.phase != Phase::Open {
            ErrorCode::ByApplication
        } else {
            error.code()
        };
        self.close(Close {
            code,
            // Decoding errors may quote the peer (a method or type name).
            reason: log_escape::peer_text(&error.to_string()),
            error: Some(error),
        });
    }

    fn close(&mut self, close: Close) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        self.input.clear();
        self.peer_requests.clear();
        self.our_requests.clear();
        self.events.push_back(ControlEvent::Closed(close));
    }

    /// Handles the buffered frames while the machine can take them.
    fn process(&mut self, now: Instant) {
        self.handle_timeout(now);
        loop {
            if self.phase == Phase::Closed {
                return;
            }
            let blocked = (self.role == Role::Server && self.phase == Phase::AwaitingVerdict)
                || self.peer_requests.len() >= REQUEST_QUEUE;
            if blocked {
                return;
            }
            match self.input.next() {
                Ok(Some(frame)) => self.handle_decoded(frame),
                Ok(None) => break,
                // draft §6.5: a decoding error on the control stream ends
                // the connection.
                Err(e) => return self.fail(e),
            }
        }
        if self.peer_finished {
            self.handle_peer_fin();
        }
    }

    fn handle_peer_fin(&mut self) {
        if !self.input.is_empty() {
            // draft §6.1: FIN only at a frame boundary.
            return self.fail(ProtocolError::FinInsideFrame(StreamKind::Control));
        }
        if self.phase == Phase::Open {
            // draft §7.1: FIN after authentication ends the connection
            // with NO_ERROR.
            return self.close(Close {
                code: ErrorCode::NoError,
                reason: "session ended".to_string(),
                error: None,
            });
        }
        // draft §7.1: the control stream ending before USERAUTH_SUCCESS.
        self.fail(ProtocolError::ControlEndedBeforeAuth);
    }

    fn handle_decoded(&mut self, frame: Frame) {
        match (self.role, self.phase) {
            (Role::Server, Phase::Authenticating) => self.server_auth_frame(frame),
            (Role::Server, Phase::AwaitingInfo) => self.server_info_frame(frame),
            (
                Role::Client,
                Phase::Authenticating | Phase::AwaitingVerdict | Phase::AwaitingInfo,
            ) => self.client_auth_frame(frame),
            (_, Phase::Open) => self.open_frame(frame),
            _ => {}
        }
    }

    fn server_auth_frame(&mut self, frame: Frame) {
        if frame == Frame::HostCertificateRequest {
            // draft §5.5: once, before any USERAUTH_REQUEST.
            if self.host_certificate_asked {
                return self.fail(ProtocolError::HostCertificateRequestOutOfPlace);
            }
            self.host_certificate_asked = true;
            let certificate = self.host_certificate.clone();
            self.transmits
                .push_back(Transmit::Frame(Frame::HostCertificate(certificate)));
            return;
        }
        if let Frame::UserauthInfoResponse(_) = frame {
            // draft §7.8: answers with no round outstanding.
            return self.fail(ProtocolError::UnsolicitedAuthReply(frame_kind(&frame)));
        }
        match AuthRequest::from_frame(frame) {
            Ok(request) => self.server_request(request),
            // draft §7.1: before USERAUTH_SUCCESS the client sends only
            // USERAUTH_REQUEST (and the answers to keyboard-interactive).
            Err(frame) => self.fail(ProtocolError::FrameBeforeAuth(frame_kind(&frame))),
        }
    }

    /// Server, AWAIT_INFO (draft §7.8): the answers to the round out, or a
    /// new request that abandons the conversation.
    fn server_info_frame(&mut self, frame: Frame) {
        match frame {
            Frame::UserauthInfoResponse(response) => {
                // draft §7.2: one response per prompt of the outstanding round
                if response.responses.len() != self.info_prompts {
                    return self.fail(ProtocolError::InfoResponseCount {
                        expected: self.info_prompts,
                        got: response.responses.len(),
                    });
                }
                self.phase = Phase::AwaitingVerdict;
                self.events.push_back(ControlEvent::InfoResponse(response));
            }
            frame => match AuthRequest::from_frame(frame) {
                Ok(request) => {
                    // draft §7.8: a new request abandons the conversation,
                    // which counts as one failed attempt (no
                    // USERAUTH_FAILURE of its own: the new request gets the
                    // only answer).
                    self.in_conversation = false;
                    self.phase = Phase::Authenticating;
                    if self.count_failure() {
                        self.server_request(request);
                    }
                }
                Err(frame) => self.fail(ProtocolError::FrameBeforeAuth(frame_kind(&frame))),
            },
        }
    }

    fn server_request(&mut self, request: AuthRequest) {
        // draft §7.7: a request arriving when the failures already equal
        // MaxAuthTries is not examined (so MaxAuthTries 0 lets nobody in).
        if self.failures >= self.max_auth_tries {
            let user = log_escape::peer_text(request.user());
            return self.fail(ProtocolError::TooManyAuthFailures(user));
        }
        // draft §7.7: the first request fixes the user and the service.
        let this = (request.user().to_string(), request.service().to_string());
        match &self.login_for {
            None => {
                // sshd lets a first `none` request go uncounted.
                self.uncounted_none = request.method_name() == "none";
                self.login_for = Some(this);
            }
            Some(first) if *first == this => {}
            Some(_) => return self.fail(ProtocolError::UserOrServiceChanged),
        }
        self.last_user = Some(log_escape::peer_text(request.user()));
        self.host_certificate_asked = true;
        self.in_conversation = matches!(request, AuthRequest::KeyboardInteractive(_));
        self.phase = Phase::AwaitingVerdict;
        self.events
            .push_back(ControlEvent::UserauthRequest(request));
    }

    fn client_auth_frame(&mut self, frame: Frame) {
        let awaiting = self.phase == Phase::AwaitingVerdict;
        if self.phase == Phase::AwaitingInfo {
            // draft §7.8: the server waits for our answers; it sends
            // nothing meanwhile.
            return self.fail(ProtocolError::UnsolicitedAuthReply(frame_kind(&frame)));
        }
        match frame {
            Frame::HostCertificate(certificate) if self.host_certificate_pending => {
                self.host_certificate_pending = false;
                self.events
                    .push_back(ControlEvent::HostCertificate(certificate));
            }
            Frame::HostCertificate(_) => {
                self.fail(ProtocolError::UnsolicitedAuthReply("HOST_CERTIFICATE"))
            }
            Frame::UserauthSuccess
            | Frame::UserauthFailure { .. }
            | Frame::UserauthInfoRequest(_)
                if !awaiting =>
            {
                // draft §7.6: one request at a time, so one answer each.
                self.fail(ProtocolError::UnsolicitedAuthReply(frame_kind(&frame)))
            }
            Frame::UserauthSuccess => {
                self.phase = Phase::Open;
                self.events.push_back(ControlEvent::Authenticated);
            }
            Frame::UserauthFailure { methods, partial } => {
                self.phase = Phase::Authenticating;
                self.in_conversation = false;
                self.events
                    .push_back(ControlEvent::UserauthFailure { methods, partial });
            }
            // draft §7.8: a round only in answer to a keyboard-interactive
            // request or to our answers.
            Frame::UserauthInfoRequest(request) if self.in_conversation => {
                self.info_prompts = request.prompts.len();
                self.phase = Phase::AwaitingInfo;
                self.events.push_back(ControlEvent::InfoRequest(request));
            }
            Frame::UserauthInfoRequest(_) => {
                self.fail(ProtocolError::UnsolicitedAuthReply("USERAUTH_INFO_REQUEST"))
            }
            // draft §7.1: the server sends nothing else before success.
            other => self.fail(ProtocolError::FrameBeforeAuth(frame_kind(&other))),
        }
    }

    fn open_frame(&mut self, frame: Frame) {
        match frame {
            Frame::GlobalRequest {
                request,
                want_reply,
            } => {
                let id = self.next_request_id();
                self.peer_requests.arrived(id, want_reply);
                self.events.push_back(ControlEvent::GlobalRequest {
                    id,
                    request,
                    want_reply,
                });
            }
            Frame::RequestSuccess { .. } | Frame::RequestFailure => {
                // draft §9: an answer when none is outstanding closes the
                // connection with PROTOCOL_ERROR.
                let Some(id) = self.our_requests.pop_front() else {
                    return self.fail(ProtocolError::UnsolicitedReply(StreamKind::Control));
                };
                let reply = match frame {
                    Frame::RequestSuccess { bound_port } => GlobalReply::Success { bound_port },
                    _ => GlobalReply::Failure,
                };
                self.events
                    .push_back(ControlEvent::GlobalReply { id, reply });
            }
            other => self.fail(ProtocolError::UnexpectedFrame {
                stream: StreamKind::Control,
                frame: frame_kind(&other),
            }),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod auth_tests;
