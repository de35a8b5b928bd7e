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
//! a payload must be consumed exactly, with no trailing bytes.
//! `draft-notes/draft-sshq-transport.md` is the specification.

use bytes::{BufMut, Bytes, BytesMut};
use sshq_core::channel::{
    ChannelKind, ChannelRequest, ExitSignal, GlobalRequest, OpenFailure, OpenFailureReason,
    PtyRequest, WindowSize,
};

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
/// signature: sshq has no "query" step).
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
    UserauthRequest(UserauthRequest),
    UserauthFailure {
        methods: String,
        partial: bool,
    },
    UserauthSuccess,
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

/// Why bytes could not be decoded; the stream (or the control stream's
/// connection) is then closed with [`ErrorCode::ProtocolError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
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
    #[error("user authentication method {0:?} is not supported (only publickey)")]
    UnsupportedMethod(String),
    #[error("unknown channel type {0:?}")]
    UnknownChannelType(String),
}

/// Splits one frame off the front of `buf` if it is complete: `Ok(None)`
/// means more bytes are needed.
pub fn decode_frame(buf: &mut BytesMut) -> Result<Option<Frame>, WireError> {
    let Some(header) = buf.get(..4) else {
        return Ok(None);
    };
    let mut len_bytes = [0u8; 4];
    len_bytes.copy_from_slice(header);
    let len = u32::from_be_bytes(len_bytes) as usize;
    // draft §6.4: a length of 0 or above 2^20 is a protocol error, before the frame's octets arrive
    if len == 0 || len > MAX_FRAME_LEN {
        return Err(WireError::BadLength(len));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let _ = buf.split_to(4);
    let mut body = buf.split_to(len).freeze();
    let kind = body.split_to(1).first().copied().unwrap_or(0);
    parse_payload(kind, body).map(Some)
}

fn parse_payload(kind: u8, payload: Bytes) -> Result<Frame, WireError> {
    let mut r = Reader {
        buf: payload,
        frame: kind,
    };
    let frame = match kind {
        msg::USERAUTH_REQUEST => {
            let user = r.utf8("user")?;
            let service = r.utf8("service")?;
            let method = r.utf8("method")?;
            // draft §7.2: a method other than publickey is a protocol error, not a USERAUTH_FAILURE
            if method != "publickey" {
                // Other methods are reserved; refuse rather than misread them.
                return Err(WireError::UnsupportedMethod(method));
            }
            // draft §7.2: has-signature FALSE (the query form) is a protocol error
            if !r.boolean("has signature")? {
                return Err(WireError::BadBool {
                    frame: kind,
                    field: "has signature",
                    value: 0,
                });
            }
            Frame::UserauthRequest(UserauthRequest {
                user,
                service,
                algorithm: r.utf8("algorithm")?,
                public_key: r.string("public key")?.to_vec(),
                signature: r.string("signature")?.to_vec(),
            })
        }
        msg::USERAUTH_FAILURE => Frame::UserauthFailure {
            methods: r.utf8("methods")?,
            partial: r.boolean("partial success")?,
        },
        msg::USERAUTH_SUCCESS => Frame::UserauthSuccess,
        msg::GLOBAL_REQUEST => {
            let name = r.utf8("request name")?;
            let want_reply = r.boolean("want reply")?;
            let request = match name.as_str() {
                "tcpip-forward" => GlobalRequest::TcpipForward {
                    address: r.utf8("address")?,
                    port: r.u32("port")?,
                },
                "cancel-tcpip-forward" => GlobalRequest::CancelTcpipForward {
                    address: r.utf8("address")?,
                    port: r.u32("port")?,
                },
                "streamlocal-forward@openssh.com" => GlobalRequest::StreamlocalForward {
                    socket_path: r.utf8("socket path")?,
                },
                "cancel-streamlocal-forward@openssh.com" => {
                    GlobalRequest::CancelStreamlocalForward {
                        socket_path: r.utf8("socket path")?,
                    }
                }
                // draft §9: an unknown global request is accepted, its data not interpreted, and answered REQUEST_FAILURE
                _ => {
                    // Unknown requests are answered "failure"; their data is opaque.
                    r.rest();
                    GlobalRequest::Other(name)
                }
            };
            Frame::GlobalRequest {
                request,
                want_reply,
            }
        }
        msg::REQUEST_SUCCESS => Frame::RequestSuccess {
            bound_port: if r.is_empty() {
                None
            } else {
                // draft §9: REQUEST_SUCCESS carries either nothing or exactly a uint32 bound port
                Some(r.u32("bound port")?)
            },
        },
        msg::REQUEST_FAILURE => Frame::RequestFailure,
        msg::CHANNEL_OPEN => Frame::ChannelOpen(parse_channel_kind(&mut r)?),
        msg::CHANNEL_OPEN_CONFIRMATION => Frame::OpenConfirmation,
        msg::CHANNEL_OPEN_FAILURE => {
            let reason = OpenFailureReason::from_code(r.u32("reason")?);
            let message = r.utf8("description")?;
            let _language = r.string("language tag")?;
            Frame::OpenFailure(OpenFailure { reason, message })
        }
        msg::CHANNEL_DATA => Frame::Data(r.rest()),
        msg::CHANNEL_EXTENDED_DATA => Frame::ExtendedData {
            data_type: r.u32("data type")?,
            data: r.rest(),
        },
        msg::CHANNEL_REQUEST => {
            let name = r.utf8("request type")?;
            let want_reply = r.boolean("want reply")?;
            Frame::ChannelRequest {
                request: parse_channel_request(&name, &mut r)?,
                want_reply,
            }
        }
        msg::CHANNEL_SUCCESS => Frame::ChannelSuccess,
        msg::CHANNEL_FAILURE => Frame::ChannelFailure,
        // draft §6.2: a frame type not in the table is a protocol error; no frame is ignored
        other => return Err(WireError::UnknownType(other)),
    };
    // draft §6.3: the payload MUST be consumed exactly; octets left over are a protocol error
    r.finish()?;
    Ok(frame)
}

fn parse_channel_kind(r: &mut Reader) -> Result<ChannelKind, WireError> {
    let name = r.utf8("channel type")?;
    Ok(match name.as_str() {
        "session" => ChannelKind::Session,
        "auth-agent@openssh.com" => ChannelKind::Agent,
        "direct-tcpip" => ChannelKind::DirectTcpip {
            host: r.utf8("host")?,
            port: r.u32("port")?,
            originator: r.utf8("originator address")?,
            originator_port: r.u32("originator port")?,
        },
        "forwarded-tcpip" => ChannelKind::ForwardedTcpip {
            connected_address: r.utf8("connected address")?,
            connected_port: r.u32("connected port")?,
            originator: r.utf8("originator address")?,
            originator_port: r.u32("originator port")?,
        },
        "direct-streamlocal@openssh.com" => ChannelKind::DirectStreamlocal {
            socket_path: r.utf8("socket path")?,
        },
        "forwarded-streamlocal@openssh.com" => ChannelKind::ForwardedStreamlocal {
            socket_path: r.utf8("socket path")?,
        },
        // draft §8.3: an unknown channel type is answered OPEN_FAILURE reason 3; its type-specific data is not parsed
        _ => return Err(WireError::UnknownChannelType(name)),
    })
}

fn parse_channel_request(name: &str, r: &mut Reader) -> Result<ChannelRequest, WireError> {
    let size = |r: &mut Reader| -> Result<WindowSize, WireError> {
        Ok(WindowSize {
            cols: r.u32("columns")?,
            rows: r.u32("rows")?,
            pix_width: r.u32("pixel width")?,
            pix_height: r.u32("pixel height")?,
        })
    };
    Ok(match name {
        "pty-req" => {
            let term = r.utf8("TERM")?;
            let size = size(r)?;
            let modes = parse_modes(&r.string("terminal modes")?, r.frame)?;
            ChannelRequest::Pty(PtyRequest { term, size, modes })
        }
        "env" => ChannelRequest::Env {
            name: r.utf8("variable name")?,
            value: r.utf8("variable value")?,
        },
        "shell" => ChannelRequest::Shell,
        "exec" => ChannelRequest::Exec(r.string("command")?.to_vec()),
        "subsystem" => ChannelRequest::Subsystem(r.utf8("subsystem name")?),
        "window-change" => ChannelRequest::WindowChange(size(r)?),
        "signal" => ChannelRequest::Signal(r.utf8("signal name")?),
        "exit-status" => ChannelRequest::ExitStatus(r.u32("exit status")?),
        "exit-signal" => {
            let signal = r.utf8("signal name")?;
            let core_dumped = r.boolean("core dumped")?;
            let message = r.utf8("error message")?;
            let _language = r.string("language tag")?;
            ChannelRequest::ExitSignal(ExitSignal {
                signal,
                core_dumped,
                message,
            })
        }
        "auth-agent-req@openssh.com" => ChannelRequest::AgentForward,
        other => {
            r.rest();
            ChannelRequest::Other(other.to_string())
        }
    })
}

/// RFC 4254 §8 encoded terminal modes: opcode byte + uint32, until
/// TTY_OP_END (0) or the end; opcodes 160 and up have no defined argument
/// size, so they end parsing, as in OpenSSH.
fn parse_modes(encoded: &[u8], frame: u8) -> Result<Vec<(u8, u32)>, WireError> {
    let mut modes = Vec::new();
    let mut rest = encoded;
    while let Some((&op, tail)) = rest.split_first() {
        // draft §8.6: terminal modes end at TTY_OP_END, at an opcode of 160 or more, or at the end of the string
        if op == 0 || op >= 160 {
            break;
        }
        let Some(value) = tail.get(..4) else {
            // draft §8.6: an opcode below 160 without a full uint32 after it is a protocol error
            return Err(WireError::Truncated {
                frame,
                field: "terminal mode",
            });
        };
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(value);
        modes.push((op, u32::from_be_bytes(bytes)));
        rest = tail.get(4..).unwrap_or_default();
    }
    Ok(modes)
}

/// A bounds-checked reader over one frame's payload.
struct Reader {
    buf: Bytes,
    frame: u8,
}

impl Reader {
    fn truncated(&self, field: &'static str) -> WireError {
        WireError::Truncated {
            frame: self.frame,
            field,
        }
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        let Some(bytes) = self.buf.get(..4) else {
            return Err(self.truncated(field));
        };
        let mut raw = [0u8; 4];
        raw.copy_from_slice(bytes);
        let _ = self.buf.split_to(4);
        Ok(u32::from_be_bytes(raw))
    }

    fn boolean(&mut self, field: &'static str) -> Result<bool, WireError> {
        let Some(&value) = self.buf.first() else {
            return Err(self.truncated(field));
        };
        let _ = self.buf.split_to(1);
        match value {
            0 => Ok(false),
            1 => Ok(true),
            // draft §6.3: a boolean MUST be 0 or 1
            value => Err(WireError::BadBool {
                frame: self.frame,
                field,
                value,
            }),
        }
    }

    fn string(&mut self, field: &'static str) -> Result<Bytes, WireError> {
        let len = self.u32(field)? as usize;
        // draft §6.3: a string longer than the rest of the payload is a protocol error
        if self.buf.len() < len {
            return Err(self.truncated(field));
        }
        Ok(self.buf.split_to(len))
    }

    fn utf8(&mut self, field: &'static str) -> Result<String, WireError> {
        let bytes = self.string(field)?;
        // draft §6.3: fields described as UTF-8 MUST be valid UTF-8
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError::NotUtf8 {
            frame: self.frame,
            field,
        })
    }

    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn finish(self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes {
                frame: self.frame,
                extra: self.buf.len(),
            })
        }
    }
}

/// Builds one frame's bytes.
struct Writer {
    buf: BytesMut,
}

impl Writer {
    fn new(kind: u8) -> Writer {
        let mut buf = BytesMut::with_capacity(64);
        buf.put_u32(0); // length, patched in finish()
        buf.put_u8(kind);
        Writer { buf }
    }

    fn u32(&mut self, value: u32) -> &mut Self {
        self.buf.put_u32(value);
        self
    }

    fn boolean(&mut self, value: bool) -> &mut Self {
        self.buf.put_u8(u8::from(value));
        self
    }

    fn string(&mut self, value: &[u8]) -> &mut Self {
        self.buf.put_u32(value.len() as u32);
        self.buf.put_slice(value);
        self
    }

    fn raw(&mut self, value: &[u8]) -> &mut Self {
        self.buf.put_slice(value);
        self
    }

    fn finish(&mut self) -> Bytes {
        let len = (self.buf.len() - 4) as u32;
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        std::mem::take(&mut self.buf).freeze()
    }
}

/// Encodes a frame. DATA payloads must be at most [`MAX_DATA_PAYLOAD`];
/// see [`data_header`] for the zero-copy way to send them.
pub fn encode_frame(frame: &Frame) -> Bytes {
    match frame {
        Frame::UserauthRequest(req) => Writer::new(msg::USERAUTH_REQUEST)
            .string(req.user.as_bytes())
            .string(req.service.as_bytes())
            .string(b"publickey")
            .boolean(true)
            .string(req.algorithm.as_bytes())
            .string(&req.public_key)
            .string(&req.signature)
            .finish(),
        Frame::UserauthFailure { methods, partial } => Writer::new(msg::USERAUTH_FAILURE)
            .string(methods.as_bytes())
            .boolean(*partial)
            .finish(),
        Frame::UserauthSuccess => Writer::new(msg::USERAUTH_SUCCESS).finish(),
        Frame::GlobalRequest {
            request,
            want_reply,
        } => {
            let mut w = Writer::new(msg::GLOBAL_REQUEST);
            let name = match request {
                GlobalRequest::TcpipForward { .. } => "tcpip-forward",
                GlobalRequest::CancelTcpipForward { .. } => "cancel-tcpip-forward",
                GlobalRequest::StreamlocalForward { .. } => "streamlocal-forward@openssh.com",
                GlobalRequest::CancelStreamlocalForward { .. } => {
                    "cancel-streamlocal-forward@openssh.com"
                }
                GlobalRequest::Other(name) => name.as_str(),
            };
            w.string(name.as_bytes()).boolean(*want_reply);
            match request {
                GlobalRequest::TcpipForward { address, port }
                | GlobalRequest::CancelTcpipForward { address, port } => {
                    w.string(address.as_bytes()).u32(*port);
                }
                GlobalRequest::StreamlocalForward { socket_path }
                | GlobalRequest::CancelStreamlocalForward { socket_path } => {
                    w.string(socket_path.as_bytes());
                }
                GlobalRequest::Other(_) => {}
            }
            w.finish()
        }
        Frame::RequestSuccess { bound_port } => {
            let mut w = Writer::new(msg::REQUEST_SUCCESS);
            if let Some(port) = bound_port {
                w.u32(*port);
            }
            w.finish()
        }
        Frame::RequestFailure => Writer::new(msg::REQUEST_FAILURE).finish(),
        Frame::ChannelOpen(kind) => {
            let mut w = Writer::new(msg::CHANNEL_OPEN);
            w.string(kind.wire_name().as_bytes());
            match kind {
                ChannelKind::Session | ChannelKind::Agent => {}
                ChannelKind::DirectTcpip {
                    host,
                    port,
                    originator,
                    originator_port,
                } => {
                    w.string(host.as_bytes())
                        .u32(*port)
                        .string(originator.as_bytes())
                        .u32(*originator_port);
                }
                ChannelKind::ForwardedTcpip {
                    connected_address,
                    connected_port,
                    originator,
                    originator_port,
                } => {
                    w.string(connected_address.as_bytes())
                        .u32(*connected_port)
                        .string(originator.as_bytes())
                        .u32(*originator_port);
                }
                ChannelKind::DirectStreamlocal { socket_path }
                | ChannelKind::ForwardedStreamlocal { socket_path } => {
                    w.string(socket_path.as_bytes());
                }
            }
            w.finish()
        }
        Frame::OpenConfirmation => Writer::new(msg::CHANNEL_OPEN_CONFIRMATION).finish(),
        Frame::OpenFailure(failure) => Writer::new(msg::CHANNEL_OPEN_FAILURE)
            .u32(failure.reason.code())
            .string(failure.message.as_bytes())
            .string(b"")
            .finish(),
        Frame::Data(data) => Writer::new(msg::CHANNEL_DATA).raw(data).finish(),
        Frame::ExtendedData { data_type, data } => Writer::new(msg::CHANNEL_EXTENDED_DATA)
            .u32(*data_type)
            .raw(data)
            .finish(),
        Frame::ChannelRequest {
            request,
            want_reply,
        } => encode_channel_request(request, *want_reply),
        Frame::ChannelSuccess => Writer::new(msg::CHANNEL_SUCCESS).finish(),
        Frame::ChannelFailure => Writer::new(msg::CHANNEL_FAILURE).finish(),
    }
}

fn encode_channel_request(request: &ChannelRequest, want_reply: bool) -> Bytes {
    let mut w = Writer::new(msg::CHANNEL_REQUEST);
    w.string(request.wire_name().as_bytes()).boolean(want_reply);
    let size = |w: &mut Writer, s: &WindowSize| {
        w.u32(s.cols).u32(s.rows).u32(s.pix_width).u32(s.pix_height);
    };
    match request {
        ChannelRequest::Pty(pty) => {
            w.string(pty.term.as_bytes());
            size(&mut w, &pty.size);
            let mut modes = Vec::with_capacity(pty.modes.len() * 5 + 1);
            for &(op, value) in &pty.modes {
                modes.push(op);
                modes.extend_from_slice(&value.to_be_bytes());
            }
            modes.push(0); // TTY_OP_END
            w.string(&modes);
        }
        ChannelRequest::Env { name, value } => {
            w.string(name.as_bytes()).string(value.as_bytes());
        }
        ChannelRequest::Shell | ChannelRequest::AgentForward | ChannelRequest::Other(_) => {}
        ChannelRequest::Exec(command) => {
            w.string(command);
        }
        ChannelRequest::Subsystem(name) => {
            w.string(name.as_bytes());
        }
        ChannelRequest::WindowChange(s) => size(&mut w, s),
        ChannelRequest::Signal(name) => {
            w.string(name.as_bytes());
        }
        ChannelRequest::ExitStatus(status) => {
            w.u32(*status);
        }
        ChannelRequest::ExitSignal(exit) => {
            w.string(exit.signal.as_bytes())
                .boolean(exit.core_dumped)
                .string(exit.message.as_bytes())
                .string(b"");
        }
    }
    w.finish()
}

/// The 5-byte header of a DATA (data_type None) or 9-byte header of an
/// EXTENDED_DATA frame whose payload of `len` bytes is sent separately,
/// so bulk data is never copied to be framed.
pub fn data_header(data_type: Option<u32>, len: usize) -> Bytes {
    let mut buf = BytesMut::with_capacity(9);
    match data_type {
        None => {
            buf.put_u32((len + 1) as u32);
            buf.put_u8(msg::CHANNEL_DATA);
        }
        Some(t) => {
            buf.put_u32((len + 5) as u32);
            buf.put_u8(msg::CHANNEL_EXTENDED_DATA);
            buf.put_u32(t);
        }
    }
    buf.freeze()
}

/// The bytes a userauth signature covers: RFC 4252 §7's, with the session
/// identifier replaced by `exporter`, this connection's TLS exporter value,
/// so a signature made for one QUIC connection is worthless on any other.
pub fn userauth_signed_data(
    exporter: &[u8],
    user: &str,
    service: &str,
    algorithm: &str,
    public_key: &[u8],
) -> Vec<u8> {
    let mut w = Writer {
        buf: BytesMut::new(),
    };
    w.string(exporter);
    w.buf.put_u8(msg::USERAUTH_REQUEST);
    w.string(user.as_bytes())
        .string(service.as_bytes())
        .string(b"publickey")
        .boolean(true)
        .string(algorithm.as_bytes())
        .string(public_key);
    w.buf.to_vec()
}

/// The TLS exporter label and length for [`userauth_signed_data`].
pub const USERAUTH_EXPORTER_LABEL: &[u8] = b"EXPORTER-sshq-userauth";
pub const USERAUTH_EXPORTER_LEN: usize = 32;

#[cfg(test)]
mod tests;
