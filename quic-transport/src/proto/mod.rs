//! sshq/1 as plain state machines, after quinn-proto: bytes and `now` go
//! in, frames to send, events and the next timeout come out. Nothing here
//! does I/O or knows about tasks; `crate::conn` and `crate::channel` are the
//! drivers that move bytes between these machines and quinn's streams.
//!
//! - [`control::Control`]: the control stream (userauth, LoginGraceTime,
//!   MaxAuthTries, global requests and the order of their replies).
//! - [`channel::ChannelMachine`]: one channel stream (open, confirmation or
//!   failure, requests and replies, EOF, close, abort).
//! - [`OrderedAnswers`]: the peer's requests until our answers go out, in
//!   request order, shared by both machines.
//!
//! Every way a peer can break the protocol is one [`ProtocolError`]
//! variant, which knows the draft's error code for it.

pub mod answers;
pub mod channel;
pub mod control;
pub mod fuzzing;

pub use answers::OrderedAnswers;

use bytes::BytesMut;

use crate::wire::{decode_frame, ErrorCode, Frame, WireError};

/// What a machine asks its driver to do on its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// Write this frame.
    Frame(Frame),
    /// End our direction (FIN): our EOF on a channel, the end of the
    /// session on the control stream.
    Finish,
    /// Abandon our direction (RESET_STREAM).
    Reset(ErrorCode),
    /// Ask the peer to stop its direction (STOP_SENDING).
    StopSending(ErrorCode),
}

/// Identifies one request (global or channel) of one machine, so that a
/// reply can be matched to it whatever order the application answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Which stream a frame arrived on, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Control,
    Channel,
}

impl std::fmt::Display for StreamKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StreamKind::Control => "control stream",
            StreamKind::Channel => "channel stream",
        })
    }
}

/// Every protocol error the draft names. Messages show a frame's kind,
/// never its peer-supplied contents (a frame's body is up to 1 MiB).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// draft §6.2: a frame type not in the table.
    #[error("unknown frame type {0}")]
    UnknownFrame(u8),
    /// draft §6.3, §6.4: a frame that does not decode.
    #[error("{0}")]
    Malformed(WireError),
    /// draft §6.1, §8.8: FIN inside a frame.
    #[error("the {0} ended inside a frame")]
    FinInsideFrame(StreamKind),
    /// draft §7.1: before USERAUTH_SUCCESS, only userauth frames.
    #[error("unexpected frame during authentication: {0}")]
    FrameBeforeAuth(&'static str),
    /// draft §7.1: the control stream ended before USERAUTH_SUCCESS.
    #[error("the control stream ended before authentication")]
    ControlEndedBeforeAuth,
    /// draft §7.8: the peer reset the control stream after
    /// USERAUTH_SUCCESS.
    #[error("the peer reset the control stream")]
    ControlStreamReset,
    /// draft §7.8: the peer stopped our direction of the control stream
    /// (STOP_SENDING) after USERAUTH_SUCCESS.
    #[error("the peer stopped the control stream")]
    ControlStreamStopped,
    /// draft §7.4, §7.6: a userauth answer with no request outstanding.
    #[error("{0} without a userauth request")]
    UnsolicitedAuthReply(&'static str),
    /// draft §6.5: a well-formed frame not allowed where it arrives.
    #[error("unexpected frame on the {stream}: {frame}")]
    UnexpectedFrame {
        stream: StreamKind,
        frame: &'static str,
    },
    /// draft §9, §8.7: an answer when no request is outstanding.
    #[error("unexpected {0} reply: no request is outstanding")]
    UnsolicitedReply(StreamKind),
    /// draft §6.5: a second CHANNEL_OPEN on a stream (sshq/1 has no
    /// channel numbers: the stream is the channel, so this is the
    /// duplicate channel).
    #[error("a second CHANNEL_OPEN on one channel stream")]
    DuplicateOpen,
    /// draft §8.1: a channel stream that does not start with CHANNEL_OPEN.
    #[error("the channel stream did not start with CHANNEL_OPEN: {0}")]
    MissingOpen(&'static str),
    /// draft §8.4: the acceptor's first frame is not an answer.
    #[error("the channel's first answer frame was {0}")]
    BadOpenAnswer(&'static str),
    /// draft §10: no CHANNEL_OPEN within the time allowed.
    #[error("no CHANNEL_OPEN within the time allowed")]
    OpenTimeout,
    /// draft §5.5: a second HOST_CERTIFICATE_REQUEST, or one after a
    /// USERAUTH_REQUEST.
    #[error("HOST_CERTIFICATE_REQUEST out of place (only one, before any USERAUTH_REQUEST)")]
    HostCertificateRequestOutOfPlace,
    /// draft §7.7: a later USERAUTH_REQUEST names another user or service
    /// than the first (sshd's wording).
    #[error("change of username or service not allowed")]
    UserOrServiceChanged,
    /// draft §7.2: USERAUTH_INFO_RESPONSE whose count differs from the
    /// prompts of the outstanding USERAUTH_INFO_REQUEST.
    #[error("USERAUTH_INFO_RESPONSE with {got} responses to {expected} prompts")]
    InfoResponseCount { expected: usize, got: usize },
    /// draft §7.7 MaxAuthTries. The user name is escaped (it is logged).
    #[error("too many authentication failures for {0}")]
    TooManyAuthFailures(String),
    /// draft §7.7 LoginGraceTime.
    #[error("timeout before authentication")]
    LoginGraceTimeExpired,
}

impl ProtocolError {
    /// The draft's error code for this error (draft §10).
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::TooManyAuthFailures(_) => ErrorCode::AuthFailed,
            ProtocolError::LoginGraceTimeExpired => ErrorCode::AuthTimeout,
            _ => ErrorCode::ProtocolError,
        }
    }

    fn from_wire(error: WireError) -> ProtocolError {
        match error {
            WireError::UnknownType(kind) => ProtocolError::UnknownFrame(kind),
            other => ProtocolError::Malformed(other),
        }
    }
}

/// The frames of one direction of a stream, reassembled from its bytes.
#[derive(Debug, Default)]
pub(crate) struct FrameBuffer {
    buffered: BytesMut,
}

impl FrameBuffer {
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        self.buffered.extend_from_slice(bytes);
    }

    /// The next complete frame, if there is one.
    pub(crate) fn next(&mut self) -> Result<Option<Frame>, ProtocolError> {
        decode_frame(&mut self.buffered).map_err(ProtocolError::from_wire)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buffered.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.buffered.clear();
    }
}

/// A frame's kind, for messages: never its peer-supplied contents.
pub fn frame_kind(frame: &Frame) -> &'static str {
    match frame {
        Frame::UserauthRequest(_)
        | Frame::UserauthPassword(_)
        | Frame::UserauthKeyboardInteractive(_)
        | Frame::UserauthOtherMethod(_) => "USERAUTH_REQUEST",
        Frame::UserauthInfoRequest(_) => "USERAUTH_INFO_REQUEST",
        Frame::UserauthInfoResponse(_) => "USERAUTH_INFO_RESPONSE",
        Frame::UserauthFailure { .. } => "USERAUTH_FAILURE",
        Frame::UserauthSuccess => "USERAUTH_SUCCESS",
        Frame::HostCertificateRequest => "HOST_CERTIFICATE_REQUEST",
        Frame::HostCertificate(_) => "HOST_CERTIFICATE",
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
