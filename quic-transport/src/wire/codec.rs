//! The codec machinery every sshq wire type shares: the [`Codec`] trait, a
//! bounds-checked [`Reader`], a checked [`Writer`], and one error enum for
//! each direction ([`DecodeError`], [`EncodeError`]).
//!
//! Decoding is strict: a top-level item must use its bytes exactly
//! ([`decode_all`]), and every length is checked against what is left
//! before anything is taken. Encoding is checked too: a length that does
//! not fit its field, or a frame over [`MAX_FRAME_LEN`], is an
//! [`EncodeError`] for the caller to report, never a truncated length on
//! the wire.

use bytes::Bytes;

use super::MAX_FRAME_LEN;

/// A wire type with a strict decoder and a checked encoder.
pub trait Codec: Sized {
    /// Appends the encoding of `self` to `out`. On error `out` is left as
    /// it was.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// Reads one item from the front of `r`, leaving what follows it.
    fn read(r: &mut Reader) -> Result<Self, DecodeError>;

    /// Decodes `bytes`, which must hold exactly one item.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_all(Reader::new(Bytes::copy_from_slice(bytes)))
    }

    /// The encoding of `self`, on its own.
    fn to_vec(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }
}

/// Reads one `T` that must use all of `r`'s bytes: anything left over is
/// an error, not the start of something else.
pub fn decode_all<T: Codec>(mut r: Reader) -> Result<T, DecodeError> {
    let item = T::read(&mut r)?;
    match r.remaining() {
        0 => Ok(item),
        extra => Err(DecodeError::UnconsumedBytes { extra }),
    }
}

/// Why bytes could not be decoded; the stream (or the control stream's
/// connection) is then closed with `ErrorCode::ProtocolError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame length {0} is out of range (1..={MAX_FRAME_LEN})")]
    BadLength(usize),
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    #[error("frame type {frame} ended early while reading {field}")]
    Truncated { frame: u8, field: &'static str },
    #[error("frame type {frame} has {extra} trailing bytes")]
    TrailingBytes { frame: u8, extra: usize },
    #[error("frame type {frame}: {field} is not valid UTF-8")]
    NotUtf8 { frame: u8, field: &'static str },
    #[error("frame type {frame}: boolean {field} is {value}, not 0 or 1")]
    BadBool {
        frame: u8,
        field: &'static str,
        value: u8,
    },
    #[error("the exporter value of a userauth request is {0} octets, not 32")]
    ExporterLength(usize),
    #[error("a password request asks to change the password, which sshq/1 does not allow")]
    PasswordChange,
    #[error("frame type {frame} has {count} prompts or responses (at most {max})", max = sshq_core::auth_methods::MAX_PROMPTS)]
    TooManyPrompts { frame: u8, count: u32 },
    #[error("unknown channel type {0:?}")]
    UnknownChannelType(String),
    #[error("{extra} bytes follow the end of the message")]
    UnconsumedBytes { extra: usize },
    #[error("the target ended early")]
    TargetTruncated,
    #[error("a target host name of {0} bytes (1 to 255 allowed)")]
    TargetHostLength(u32),
    #[error("the target host name is not UTF-8")]
    TargetHostNotUtf8,
    #[error("target port {0} (1 to 65535 allowed)")]
    TargetPort(u32),
    #[error("the stream ended inside a datagram")]
    DatagramTruncated,
}

/// Why a value could not be encoded: it does not fit the wire format, so
/// nothing is sent. For a frame this is a local error (a command line or
/// environment value too large for one frame), not the peer's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("frame type {frame} would be {len} bytes long, over the limit of {MAX_FRAME_LEN}")]
    FrameTooLong { frame: u8, len: usize },
    #[error("{field} is {len} bytes long, too long for an SSH string")]
    StringTooLong { field: &'static str, len: usize },
    #[error("a datagram of {0} bytes is too large to relay (at most 65535)")]
    DatagramTooLong(usize),
    #[error("host name of {0} bytes cannot be relayed to (1 to 255 bytes)")]
    TargetHostLength(usize),
    #[error("port 0 cannot be relayed to")]
    TargetPort,
    #[error("{0} keyboard-interactive prompts or answers do not fit one frame (at most {max})", max = sshq_core::auth_methods::MAX_PROMPTS)]
    TooManyPrompts(usize),
}

/// A bounds-checked cursor over received bytes. Every method checks the
/// bytes are there before taking them; `None` means "not enough bytes".
#[derive(Debug, Clone, Default)]
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    pub fn new(buf: Bytes) -> Reader {
        Reader { buf }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next `n` bytes, without copying; `None` (taking nothing) if
    /// fewer are left.
    pub fn take(&mut self, n: usize) -> Option<Bytes> {
        if self.buf.len() < n {
            return None;
        }
        Some(self.buf.split_to(n))
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut raw = [0u8; N];
        raw.copy_from_slice(self.buf.get(..N)?);
        let _ = self.buf.split_to(N);
        Some(raw)
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    pub fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    /// An RFC 4251 `string`: uint32 length, then that many bytes. `None`
    /// (the length may have been consumed) if the bytes are not all there.
    pub fn string(&mut self) -> Option<Bytes> {
        let len = usize::try_from(self.u32()?).ok()?;
        self.take(len)
    }

    /// Everything left.
    pub fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }
}

/// Appends encoded fields to an output buffer, checking every length.
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Writer<'a> {
        Writer { out }
    }

    /// How many bytes the buffer holds (a mark for [`Writer::patch_u32`]).
    pub fn position(&self) -> usize {
        self.out.len()
    }

    pub fn u8(&mut self, value: u8) -> &mut Self {
        self.out.push(value);
        self
    }

    pub fn u16(&mut self, value: u16) -> &mut Self {
        self.out.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn u32(&mut self, value: u32) -> &mut Self {
        self.out.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// An RFC 4251 boolean: always 0 or 1 (draft §6.3 rule 2 binds senders too).
    pub fn boolean(&mut self, value: bool) -> &mut Self {
        self.u8(u8::from(value))
    }

    pub fn raw(&mut self, value: &[u8]) -> &mut Self {
        self.out.extend_from_slice(value);
        self
    }

    /// An RFC 4251 `string`; `field` names it in the error if its length
    /// does not fit a uint32.
    pub fn string(&mut self, field: &'static str, value: &[u8]) -> Result<&mut Self, EncodeError> {
        let len = u32::try_from(value.len()).map_err(|_| EncodeError::StringTooLong {
            field,
            len: value.len(),
        })?;
        Ok(self.u32(len).raw(value))
    }

    /// Overwrites the four bytes at `at` (written earlier as a placeholder)
    /// with `value`.
    pub fn patch_u32(&mut self, at: usize, value: u32) {
        if let Some(slot) = self.out.get_mut(at..).and_then(|tail| tail.get_mut(..4)) {
            slot.copy_from_slice(&value.to_be_bytes());
        }
    }

    /// Drops everything written after `at`, to undo a failed encoding.
    pub fn truncate(&mut self, at: usize) {
        self.out.truncate(at);
    }
}

/// For callers whose errors are I/O errors (stream writers): a value that
/// cannot be encoded is invalid input.
impl From<EncodeError> for std::io::Error {
    fn from(e: EncodeError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}
