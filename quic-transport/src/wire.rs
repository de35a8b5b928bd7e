//! The frames sshq sends on QUIC streams, and their codec.
//!
//! Sans-IO: this module turns bytes into [`Frame`]s and back, nothing more.
//! Every stream carries a sequence of frames:
//!
//! ```text
//! uint32 length    (of type + payload; 1 ..= MAX_FRAME_LEN)
//! byte   type
//! byte[length-1] payload
//! ```
//!
//! Payloads use SSH's encodings (RFC 4251 §5: uint32, string, boolean), and
//! message numbers are SSH's, so each frame reads like the RFC 4252/4254
//! message it replaces, minus the channel numbers and window fields that
//! QUIC's streams and flow control make unnecessary. Decoding is strict:
//! a payload must be consumed exactly, with no trailing bytes; encoding is
//! checked (a frame over [`MAX_FRAME_LEN`] is an [`EncodeError`]).
//! `draft-notes/draft-sshq-transport.md` is the specification.
//!
//! Every wire type implements [`Codec`] (`read` / `encode`), in the manner
//! of rustls: [`Frame`] (in `frame`), and the `direct-udp@sshq` framing
//! ([`UdpRelayTarget`], [`Datagram`], in [`udp_relay`]). Tunnel mode
//! (`crate::tunnel`) carries its byte stream unframed (draft §11.2), so it
//! has no codec. `Frame::decode`, `UdpRelayTarget::decode` and
//! `Datagram::decode` are the entry points for fuzzing.

use bytes::{Bytes, BytesMut};
use sshq_core::auth_methods::InfoRequest;
use sshq_core::channel::{ChannelKind, ChannelRequest, GlobalRequest, OpenFailure};

/// The longest frame accepted (type + payload). DATA frames are written in
/// pieces of at most [`MAX_DATA_PAYLOAD`], well below this.
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// The most payload bytes one DATA or EXTENDED_DATA frame carries.
pub const MAX_DATA_PAYLOAD: usize = 256 * 1024;

/// QUIC application error codes used in CONNECTION_CLOSE, RESET_STREAM and
/// STOP_SENDING.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    /// Normal close.
    NoError = 0x00,
    /// A frame could not be decoded, or came where it is not allowed.
    ProtocolError = 0x01,
    /// Authentication failed too many times.
    AuthFailed = 0x02,
    /// Not authenticated within LoginGraceTime.
    AuthTimeout = 0x03,
    /// A channel was abandoned (closed before an orderly end).
    ChannelClosed = 0x04,
    /// An internal failure on the side closing.
    InternalError = 0x05,
    /// The user or application ended the connection.
    ByApplication = 0x06,
    /// `sshq-tunnel/1` only (see `crate::tunnel`): the relay could not
    /// connect to the SSH server it relays to (CONNECTION_CLOSE).
    RelayTargetUnreachable = 0x07,
    /// `sshq-tunnel/1` only: the relay already carries as many tunnels as
    /// it allows (CONNECTION_CLOSE).
    RelayBusy = 0x08,
    /// `sshq-tunnel/1` only: the byte stream broke on the far side of the
    /// relay or proxy (a TCP reset, a read or write error), so the tunnel
    /// stream is abandoned rather than ended (RESET_STREAM, STOP_SENDING).
    TunnelAborted = 0x09,
    /// `sshq-tunnel/1` only: a stream other than the tunnel's one stream
    /// (RESET_STREAM, STOP_SENDING).
    StreamRefused = 0x0a,
}

impl ErrorCode {
    pub fn code(self) -> u32 {
        self as u32
    }

    pub fn from_code(code: u64) -> Option<ErrorCode> {
        Some(match code {
            0x00 => ErrorCode::NoError,
            0x01 => ErrorCode::ProtocolError,
            0x02 => ErrorCode::AuthFailed,
            0x03 => ErrorCode::AuthTimeout,
            0x04 => ErrorCode::ChannelClosed,
            0x05 => ErrorCode::InternalError,
            0x06 => ErrorCode::ByApplication,
            0x07 => ErrorCode::RelayTargetUnreachable,
            0x08 => ErrorCode::RelayBusy,
            0x09 => ErrorCode::TunnelAborted,
            0x0a => ErrorCode::StreamRefused,
            _ => return None,
        })
    }
}

/// Message numbers (SSH's, where SSH has one).
pub mod msg {
    pub const USERAUTH_REQUEST: u8 = 50;
    pub const USERAUTH_FAILURE: u8 = 51;
    pub const USERAUTH_SUCCESS: u8 = 52;
    /// RFC 4256's keyboard-interactive rounds (draft §7.2).
    pub const USERAUTH_INFO_REQUEST: u8 = 60;
    pub const USERAUTH_INFO_RESPONSE: u8 = 61;
    /// sshq's own, from SSH's local-extension range (RFC 4250 §4.1.2).
    pub const HOST_CERTIFICATE_REQUEST: u8 = 192;
    pub const HOST_CERTIFICATE: u8 = 193;
    pub const GLOBAL_REQUEST: u8 = 80;
    pub const REQUEST_SUCCESS: u8 = 81;
    pub const REQUEST_FAILURE: u8 = 82;
    pub const CHANNEL_OPEN: u8 = 90;
    pub const CHANNEL_OPEN_CONFIRMATION: u8 = 91;
    pub const CHANNEL_OPEN_FAILURE: u8 = 92;
    pub const CHANNEL_DATA: u8 = 94;
    pub const CHANNEL_EXTENDED_DATA: u8 = 95;
    pub const CHANNEL_REQUEST: u8 = 98;
    pub const CHANNEL_SUCCESS: u8 = 99;
    pub const CHANNEL_FAILURE: u8 = 100;
}

/// A public-key user authentication request (RFC 4252 §7, always with a
/// signature: sshq has no "query" step). The other methods have their own
/// types ([`PasswordRequest`], [`KeyboardInteractiveRequest`],
/// [`OtherMethodRequest`]; [`AuthRequest`] is any of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserauthRequest {
    pub user: String,
    pub service: String,
    pub algorithm: String,
    /// The SSH public key blob.
    pub public_key: Vec<u8>,
    /// The SSH signature blob over [`userauth_signed_data`].
    pub signature: Vec<u8>,
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// USERAUTH_REQUEST, method `publickey`.
    UserauthRequest(UserauthRequest),
    /// USERAUTH_REQUEST, method `password`.
    UserauthPassword(PasswordRequest),
    /// USERAUTH_REQUEST, method `keyboard-interactive`.
    UserauthKeyboardInteractive(KeyboardInteractiveRequest),
    /// USERAUTH_REQUEST, any other method (answered USERAUTH_FAILURE).
    UserauthOtherMethod(OtherMethodRequest),
    UserauthFailure {
        methods: String,
        partial: bool,
    },
    UserauthSuccess,
    /// Server: one keyboard-interactive round (RFC 4256 §3.2).
    UserauthInfoRequest(InfoRequest),
    /// Client: the answers to that round (RFC 4256 §3.4).
    UserauthInfoResponse(InfoResponse),
    /// Client, before any USERAUTH_REQUEST: asks for the server's host
    /// certificate (draft §5.5).
    HostCertificateRequest,
    /// Server: the OpenSSH certificate of the host key TLS presented, or
    /// empty when it has none (draft §5.5).
    HostCertificate(Bytes),
    GlobalRequest {
        request: GlobalRequest,
        want_reply: bool,
    },
    /// `bound_port` is present only in answer to tcpip-forward with port 0.
    RequestSuccess {
        bound_port: Option<u32>,
    },
    RequestFailure,
    ChannelOpen(ChannelKind),
    OpenConfirmation,
    OpenFailure(OpenFailure),
    Data(Bytes),
    ExtendedData {
        data_type: u32,
        data: Bytes,
    },
    ChannelRequest {
        request: ChannelRequest,
        want_reply: bool,
    },
    ChannelSuccess,
    ChannelFailure,
}

mod auth;
mod codec;
mod frame;
pub mod udp_relay;

pub use auth::{
    same_exporter, AuthRequest, InfoResponse, KeyboardInteractiveRequest, OtherMethodRequest,
    PasswordRequest,
};
pub use codec::{decode_all, Codec, DecodeError, EncodeError, Reader, Writer};
pub use udp_relay::{Datagram, UdpRelayTarget};

/// The name decoding errors had before the codecs were split by type;
/// kept so existing callers read on.
pub type WireError = DecodeError;

/// Splits one frame off the front of `buf` if it is complete: `Ok(None)`
/// means more bytes are needed. A bad length is an error as soon as the
/// 4-byte header is there.
pub fn decode_frame(buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
    let Some(header) = buf.get(..4) else {
        return Ok(None);
    };
    let mut len_bytes = [0u8; 4];
    len_bytes.copy_from_slice(header);
    let len = frame::checked_frame_len(u32::from_be_bytes(len_bytes))?;
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let whole = buf.split_to(4 + len).freeze();
    decode_all(Reader::new(whole)).map(Some)
}

impl Frame {
    /// Decodes `bytes`, which must hold exactly one whole frame (the
    /// public entry point for fuzzing and tests).
    pub fn decode(bytes: &[u8]) -> Result<Frame, DecodeError> {
        <Frame as Codec>::decode(bytes)
    }
}

/// Encodes a frame; a frame over [`MAX_FRAME_LEN`], or a field whose
/// length does not fit its encoding, is an error and nothing is produced.
/// DATA payloads should be at most [`MAX_DATA_PAYLOAD`]; see
/// [`data_header`] for the zero-copy way to send them.
pub fn encode_frame(frame: &Frame) -> Result<Bytes, EncodeError> {
    frame.to_vec().map(Bytes::from)
}

/// The 5-byte header of a DATA (data_type None) or 9-byte header of an
/// EXTENDED_DATA frame whose payload of `len` bytes is sent separately,
/// so bulk data is never copied to be framed.
pub fn data_header(data_type: Option<u32>, len: usize) -> Result<Bytes, EncodeError> {
    let (kind, fields) = match data_type {
        None => (msg::CHANNEL_DATA, 1),
        Some(_) => (msg::CHANNEL_EXTENDED_DATA, 5),
    };
    let frame_len = len.saturating_add(fields);
    // draft §6.4: a frame's length MUST NOT exceed 2^20.
    let length = u32::try_from(frame_len)
        .ok()
        .filter(|_| frame_len <= MAX_FRAME_LEN)
        .ok_or(EncodeError::FrameTooLong {
            frame: kind,
            len: frame_len,
        })?;
    let mut out = Vec::with_capacity(9);
    let mut w = Writer::new(&mut out);
    w.u32(length).u8(kind);
    if let Some(t) = data_type {
        w.u32(t);
    }
    Ok(Bytes::from(out))
}

/// The bytes a userauth signature covers: RFC 4252 §7's, with the session
/// identifier replaced by `exporter`, this connection's TLS exporter value,
/// so a signature made for one QUIC connection is worthless on any other
/// (draft §7.3).
pub fn userauth_signed_data(
    exporter: &[u8],
    user: &str,
    service: &str,
    algorithm: &str,
    public_key: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out);
    w.string("exporter value", exporter)?
        .u8(msg::USERAUTH_REQUEST);
    frame::write_userauth_fields(&mut w, user, service, algorithm, public_key)?;
    Ok(out)
}

/// The TLS exporter label and length for [`userauth_signed_data`].
pub const USERAUTH_EXPORTER_LABEL: &[u8] = b"EXPORTER-sshq-userauth";
pub const USERAUTH_EXPORTER_LEN: usize = 32;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;
