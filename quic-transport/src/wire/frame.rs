//! The [`Codec`] of sshq/1's frames (draft §6): `uint32 length || byte
//! type || payload`, the payload in RFC 4251 encodings.

use sshq_core::channel::{
    ChannelKind, ChannelRequest, ExitSignal, GlobalRequest, OpenFailure, OpenFailureReason,
    PtyRequest, WindowSize,
};

use super::codec::{Codec, DecodeError, EncodeError, Reader, Writer};
use sshq_core::auth_methods::{InfoRequest, Prompt, MAX_PROMPTS};
use sshq_core::zeroize::Zeroizing;

use super::{
    msg, Frame, InfoResponse, KeyboardInteractiveRequest, OtherMethodRequest, PasswordRequest,
    UserauthRequest, MAX_FRAME_LEN,
};

/// The frame length a received header announces, checked: draft §6.4: a
/// receiver MUST treat 0 or a length over 2^20 as a protocol error without
/// waiting for the frame's octets.
pub(super) fn checked_frame_len(header: u32) -> Result<usize, DecodeError> {
    let len = usize::try_from(header).map_err(|_| DecodeError::BadLength(usize::MAX))?;
    // draft §6.4: a length of 0 or above 2^20 is a protocol error, before the frame's octets arrive
    if len == 0 || len > MAX_FRAME_LEN {
        return Err(DecodeError::BadLength(len));
    }
    Ok(len)
}

impl Codec for Frame {
    fn read(r: &mut Reader) -> Result<Frame, DecodeError> {
        let header = r.u32().ok_or(DecodeError::Truncated {
            frame: 0,
            field: "frame length",
        })?;
        let len = checked_frame_len(header)?;
        let mut body = r.take(len).map(Reader::new).ok_or(DecodeError::Truncated {
            frame: 0,
            field: "frame",
        })?;
        // len >= 1, so the type byte is there.
        let kind = body.u8().ok_or(DecodeError::BadLength(0))?;
        let mut fields = Fields {
            r: body,
            frame: kind,
        };
        let frame = read_payload(kind, &mut fields)?;
        // draft §6.3 rule 1: the payload MUST be consumed exactly.
        fields.finish()?;
        Ok(frame)
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut w = Writer::new(out);
        let start = w.position();
        w.u32(0); // the length, patched below
        let kind = self.message_number();
        w.u8(kind);
        let written = write_payload(self, &mut w).and_then(|()| {
            let len = w.position().saturating_sub(start + 4);
            // draft §6.4: a frame's length MUST NOT exceed 2^20.
            u32::try_from(len)
                .ok()
                .filter(|_| len <= MAX_FRAME_LEN)
                .ok_or(EncodeError::FrameTooLong { frame: kind, len })
        });
        match written {
            Ok(len) => {
                w.patch_u32(start, len);
                Ok(())
            }
            Err(e) => {
                w.truncate(start);
                Err(e)
            }
        }
    }
}

impl Frame {
    /// The frame's type byte (its SSH message number).
    pub fn message_number(&self) -> u8 {
        match self {
            Frame::UserauthRequest(_)
            | Frame::UserauthPassword(_)
            | Frame::UserauthKeyboardInteractive(_)
            | Frame::UserauthOtherMethod(_) => msg::USERAUTH_REQUEST,
            Frame::UserauthInfoRequest(_) => msg::USERAUTH_INFO_REQUEST,
            Frame::UserauthInfoResponse(_) => msg::USERAUTH_INFO_RESPONSE,
            Frame::UserauthFailure { .. } => msg::USERAUTH_FAILURE,
            Frame::UserauthSuccess => msg::USERAUTH_SUCCESS,
            Frame::HostCertificateRequest => msg::HOST_CERTIFICATE_REQUEST,
            Frame::HostCertificate(_) => msg::HOST_CERTIFICATE,
            Frame::GlobalRequest { .. } => msg::GLOBAL_REQUEST,
            Frame::RequestSuccess { .. } => msg::REQUEST_SUCCESS,
            Frame::RequestFailure => msg::REQUEST_FAILURE,
            Frame::ChannelOpen(_) => msg::CHANNEL_OPEN,
            Frame::OpenConfirmation => msg::CHANNEL_OPEN_CONFIRMATION,
            Frame::OpenFailure(_) => msg::CHANNEL_OPEN_FAILURE,
            Frame::Data(_) => msg::CHANNEL_DATA,
            Frame::ExtendedData { .. } => msg::CHANNEL_EXTENDED_DATA,
            Frame::ChannelRequest { .. } => msg::CHANNEL_REQUEST,
            Frame::ChannelSuccess => msg::CHANNEL_SUCCESS,
            Frame::ChannelFailure => msg::CHANNEL_FAILURE,
        }
    }
}

/// One frame's payload, read field by field; errors name the frame type
/// and the field.
struct Fields {
    r: Reader,
    frame: u8,
}

impl Fields {
    fn truncated(&self, field: &'static str) -> DecodeError {
        DecodeError::Truncated {
            frame: self.frame,
            field,
        }
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.r.u32().ok_or_else(|| self.truncated(field))
    }

    fn boolean(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.r.u8() {
            None => Err(self.truncated(field)),
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            // draft §6.3 rule 2: a boolean MUST be 0 or 1.
            Some(value) => Err(DecodeError::BadBool {
                frame: self.frame,
                field,
                value,
            }),
        }
    }

    /// draft §6.3 rule 3: a string longer than the rest of the payload is
    /// a protocol error.
    fn string(&mut self, field: &'static str) -> Result<bytes::Bytes, DecodeError> {
        self.r.string().ok_or_else(|| self.truncated(field))
    }

    /// draft §6.3 rule 4: fields described as UTF-8 MUST be valid UTF-8.
    fn utf8(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let bytes = self.string(field)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::NotUtf8 {
            frame: self.frame,
            field,
        })
    }

    fn rest(&mut self) -> bytes::Bytes {
        self.r.rest()
    }

    fn finish(&self) -> Result<(), DecodeError> {
        match self.r.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes {
                frame: self.frame,
                extra,
            }),
        }
    }
}

fn read_payload(kind: u8, r: &mut Fields) -> Result<Frame, DecodeError> {
    Ok(match kind {
        msg::USERAUTH_REQUEST => {
            let user = r.utf8("user")?;
            let service = r.utf8("service")?;
            let method = r.utf8("method")?;
            read_userauth_request(kind, user, service, method, r)?
        }
        msg::USERAUTH_FAILURE => Frame::UserauthFailure {
            methods: r.utf8("methods")?,
            partial: r.boolean("partial success")?,
        },
        msg::USERAUTH_SUCCESS => Frame::UserauthSuccess,
        msg::USERAUTH_INFO_REQUEST => Frame::UserauthInfoRequest(read_info_request(r)?),
        msg::USERAUTH_INFO_RESPONSE => {
            let count = prompt_count(r, "num-responses")?;
            let mut responses = Vec::with_capacity(count);
            for _ in 0..count {
                responses.push(Zeroizing::new(r.utf8("response")?));
            }
            Frame::UserauthInfoResponse(InfoResponse { responses })
        }
        msg::HOST_CERTIFICATE_REQUEST => Frame::HostCertificateRequest,
        msg::HOST_CERTIFICATE => Frame::HostCertificate(r.string("host certificate")?),
        msg::GLOBAL_REQUEST => {
            let name = r.utf8("request name")?;
            let want_reply = r.boolean("want reply")?;
            Frame::GlobalRequest {
                request: read_global_request(name, r)?,
                want_reply,
            }
        }
        msg::REQUEST_SUCCESS => Frame::RequestSuccess {
            bound_port: if r.r.is_empty() {
                None
            } else {
                // draft §9: REQUEST_SUCCESS carries either nothing or exactly a uint32 bound port
                Some(r.u32("bound port")?)
            },
        },
        msg::REQUEST_FAILURE => Frame::RequestFailure,
        msg::CHANNEL_OPEN => Frame::ChannelOpen(read_channel_kind(r)?),
        msg::CHANNEL_OPEN_CONFIRMATION => Frame::OpenConfirmation,
        msg::CHANNEL_OPEN_FAILURE => {
            let reason = OpenFailureReason::from_code(r.u32("reason")?);
            let message = r.utf8("description")?;
            let _language = r.string("language tag")?;
            Frame::OpenFailure(OpenFailure { reason, message })
        }
        // draft §6.3 rule 1: data is "the rest of the frame".
        msg::CHANNEL_DATA => Frame::Data(r.rest()),
        msg::CHANNEL_EXTENDED_DATA => Frame::ExtendedData {
            data_type: r.u32("data type")?,
            data: r.rest(),
        },
        msg::CHANNEL_REQUEST => {
            let name = r.utf8("request type")?;
            let want_reply = r.boolean("want reply")?;
            Frame::ChannelRequest {
                request: read_channel_request(name, r)?,
                want_reply,
            }
        }
        msg::CHANNEL_SUCCESS => Frame::ChannelSuccess,
        msg::CHANNEL_FAILURE => Frame::ChannelFailure,
        // draft §6.2: a frame whose type is not in the table is a protocol error.
        other => return Err(DecodeError::UnknownType(other)),
    })
}

/// The method-specific fields of a USERAUTH_REQUEST (draft §7.2).
fn read_userauth_request(
    kind: u8,
    user: String,
    service: String,
    method: String,
    r: &mut Fields,
) -> Result<Frame, DecodeError> {
    Ok(match method.as_str() {
        "publickey" => {
            // draft §7.2: has-signature FALSE (the query form) is a protocol error
            if !r.boolean("has signature")? {
                return Err(DecodeError::BadBool {
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
        "password" => {
            let exporter = read_exporter(r)?;
            // draft §7.2: the password-change form (boolean TRUE) is a protocol error
            if r.boolean("change password")? {
                return Err(DecodeError::PasswordChange);
            }
            Frame::UserauthPassword(PasswordRequest {
                user,
                service,
                exporter,
                password: Zeroizing::new(r.utf8("password")?),
            })
        }
        "keyboard-interactive" => {
            let exporter = read_exporter(r)?;
            let _deprecated_language = r.string("language tag")?;
            Frame::UserauthKeyboardInteractive(KeyboardInteractiveRequest {
                user,
                service,
                exporter,
                submethods: r.utf8("submethods")?,
            })
        }
        // draft §7.2: another method name is answered USERAUTH_FAILURE; its fields are not read
        _ => {
            r.rest();
            Frame::UserauthOtherMethod(OtherMethodRequest {
                user,
                service,
                method,
            })
        }
    })
}

/// The exporter value E that binds a password or keyboard-interactive
/// request to its connection (draft §7.2): exactly 32 octets.
fn read_exporter(r: &mut Fields) -> Result<Vec<u8>, DecodeError> {
    let exporter = r.string("exporter value")?;
    if exporter.len() != super::USERAUTH_EXPORTER_LEN {
        return Err(DecodeError::ExporterLength(exporter.len()));
    }
    Ok(exporter.to_vec())
}

/// A keyboard-interactive count, bounded before anything is allocated for
/// it (draft §7.2: at most MAX_PROMPTS).
fn prompt_count(r: &mut Fields, field: &'static str) -> Result<usize, DecodeError> {
    let count = r.u32(field)?;
    match usize::try_from(count) {
        Ok(n) if n <= MAX_PROMPTS => Ok(n),
        _ => Err(DecodeError::TooManyPrompts {
            frame: r.frame,
            count,
        }),
    }
}

fn read_info_request(r: &mut Fields) -> Result<InfoRequest, DecodeError> {
    let name = r.utf8("name")?;
    let instruction = r.utf8("instruction")?;
    let _language = r.string("language tag")?;
    let count = prompt_count(r, "num-prompts")?;
    let mut prompts = Vec::with_capacity(count);
    for _ in 0..count {
        prompts.push(Prompt {
            text: r.utf8("prompt")?,
            echo: r.boolean("echo")?,
        });
    }
    Ok(InfoRequest {
        name,
        instruction,
        prompts,
    })
}

fn read_global_request(name: String, r: &mut Fields) -> Result<GlobalRequest, DecodeError> {
    Ok(match name.as_str() {
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
        "cancel-streamlocal-forward@openssh.com" => GlobalRequest::CancelStreamlocalForward {
            socket_path: r.utf8("socket path")?,
        },
        // draft §9: an unknown global request is accepted, its data not interpreted, and answered REQUEST_FAILURE
        _ => {
            // Unknown requests are answered "failure"; their data is opaque
            // (draft §6.3 rule 1's exception).
            r.rest();
            GlobalRequest::Unknown { name }
        }
    })
}

fn read_channel_kind(r: &mut Fields) -> Result<ChannelKind, DecodeError> {
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
        _ => return Err(DecodeError::UnknownChannelType(name)),
    })
}

fn read_window_size(r: &mut Fields) -> Result<WindowSize, DecodeError> {
    Ok(WindowSize {
        cols: r.u32("columns")?,
        rows: r.u32("rows")?,
        pix_width: r.u32("pixel width")?,
        pix_height: r.u32("pixel height")?,
    })
}

fn read_channel_request(name: String, r: &mut Fields) -> Result<ChannelRequest, DecodeError> {
    Ok(match name.as_str() {
        "pty-req" => {
            let term = r.utf8("TERM")?;
            let size = read_window_size(r)?;
            let modes = read_modes(r.string("terminal modes")?, r.frame)?;
            ChannelRequest::Pty(PtyRequest { term, size, modes })
        }
        "env" => ChannelRequest::Env {
            name: r.utf8("variable name")?,
            value: r.utf8("variable value")?,
        },
        "shell" => ChannelRequest::Shell,
        "exec" => ChannelRequest::Exec(r.string("command")?.to_vec()),
        "subsystem" => ChannelRequest::Subsystem(r.utf8("subsystem name")?),
        "window-change" => ChannelRequest::WindowChange(read_window_size(r)?),
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
        _ => {
            r.rest();
            ChannelRequest::Unknown { name }
        }
    })
}

/// RFC 4254 §8 encoded terminal modes: opcode byte + uint32, until
/// TTY_OP_END (0) or the end; opcodes 160 and up have no defined argument
/// size, so they end parsing, as in OpenSSH.
fn read_modes(encoded: bytes::Bytes, frame: u8) -> Result<Vec<(u8, u32)>, DecodeError> {
    let mut r = Reader::new(encoded);
    let mut modes = Vec::new();
    while let Some(op) = r.u8() {
        // draft §8.6: terminal modes end at TTY_OP_END, at an opcode of 160 or more, or at the end of the string
        if op == TTY_OP_END || op >= FIRST_OPAQUE_MODE {
            break;
        }
        // draft §8.6: an opcode below 160 without a full uint32 after it is a protocol error
        let value = r.u32().ok_or(DecodeError::Truncated {
            frame,
            field: "terminal mode",
        })?;
        modes.push((op, value));
    }
    Ok(modes)
}

const TTY_OP_END: u8 = 0;
const FIRST_OPAQUE_MODE: u8 = 160;

fn write_payload(frame: &Frame, w: &mut Writer) -> Result<(), EncodeError> {
    match frame {
        Frame::UserauthRequest(req) => {
            write_userauth_fields(w, &req.user, &req.service, &req.algorithm, &req.public_key)?;
            w.string("signature", &req.signature)?;
        }
        Frame::UserauthPassword(req) => {
            write_userauth_head(w, &req.user, &req.service, "password")?
                .string("exporter value", &req.exporter)?
                .boolean(false)
                .string("password", req.password.as_bytes())?;
        }
        Frame::UserauthKeyboardInteractive(req) => {
            write_userauth_head(w, &req.user, &req.service, "keyboard-interactive")?
                .string("exporter value", &req.exporter)?
                .string("language tag", b"")?
                .string("submethods", req.submethods.as_bytes())?;
        }
        Frame::UserauthOtherMethod(req) => {
            write_userauth_head(w, &req.user, &req.service, &req.method)?;
        }
        Frame::UserauthInfoRequest(request) => {
            w.string("name", request.name.as_bytes())?
                .string("instruction", request.instruction.as_bytes())?
                .string("language tag", b"")?
                .u32(checked_prompt_count(request.prompts.len())?);
            for prompt in &request.prompts {
                w.string("prompt", prompt.text.as_bytes())?
                    .boolean(prompt.echo);
            }
        }
        Frame::UserauthInfoResponse(response) => {
            w.u32(checked_prompt_count(response.responses.len())?);
            for answer in &response.responses {
                w.string("response", answer.as_bytes())?;
            }
        }
        Frame::UserauthFailure { methods, partial } => {
            w.string("methods", methods.as_bytes())?.boolean(*partial);
        }
        Frame::HostCertificate(certificate) => {
            w.string("host certificate", certificate)?;
        }
        Frame::GlobalRequest {
            request,
            want_reply,
        } => write_global_request(w, request, *want_reply)?,
        Frame::RequestSuccess { bound_port } => {
            if let Some(port) = bound_port {
                w.u32(*port);
            }
        }
        Frame::ChannelOpen(kind) => write_channel_kind(w, kind)?,
        Frame::OpenFailure(failure) => {
            w.u32(failure.reason.code())
                .string("description", failure.message.as_bytes())?
                .string("language tag", b"")?;
        }
        Frame::Data(data) => {
            w.raw(data);
        }
        Frame::ExtendedData { data_type, data } => {
            w.u32(*data_type).raw(data);
        }
        Frame::ChannelRequest {
            request,
            want_reply,
        } => write_channel_request(w, request, *want_reply)?,
        Frame::UserauthSuccess
        | Frame::HostCertificateRequest
        | Frame::RequestFailure
        | Frame::OpenConfirmation
        | Frame::ChannelSuccess
        | Frame::ChannelFailure => {}
    }
    Ok(())
}

/// A count of prompts or answers we send: the peer refuses more than
/// MAX_PROMPTS, so they are not sent.
fn checked_prompt_count(count: usize) -> Result<u32, EncodeError> {
    u32::try_from(count)
        .ok()
        .filter(|_| count <= MAX_PROMPTS)
        .ok_or(EncodeError::TooManyPrompts(count))
}

/// The fields every USERAUTH_REQUEST starts with.
fn write_userauth_head<'w, 'o>(
    w: &'w mut Writer<'o>,
    user: &str,
    service: &str,
    method: &str,
) -> Result<&'w mut Writer<'o>, EncodeError> {
    w.string("user", user.as_bytes())?
        .string("service", service.as_bytes())?
        .string("method", method.as_bytes())
}

/// The USERAUTH_REQUEST fields up to the signature, shared by the frame
/// and by the signed data (draft §7.3).
pub(super) fn write_userauth_fields(
    w: &mut Writer,
    user: &str,
    service: &str,
    algorithm: &str,
    public_key: &[u8],
) -> Result<(), EncodeError> {
    write_userauth_head(w, user, service, "publickey")?
        .boolean(true)
        .string("algorithm", algorithm.as_bytes())?
        .string("public key", public_key)?;
    Ok(())
}

fn write_global_request(
    w: &mut Writer,
    request: &GlobalRequest,
    want_reply: bool,
) -> Result<(), EncodeError> {
    let name = match request {
        GlobalRequest::TcpipForward { .. } => "tcpip-forward",
        GlobalRequest::CancelTcpipForward { .. } => "cancel-tcpip-forward",
        GlobalRequest::StreamlocalForward { .. } => "streamlocal-forward@openssh.com",
        GlobalRequest::CancelStreamlocalForward { .. } => "cancel-streamlocal-forward@openssh.com",
        GlobalRequest::Unknown { name } => name.as_str(),
    };
    w.string("request name", name.as_bytes())?
        .boolean(want_reply);
    match request {
        GlobalRequest::TcpipForward { address, port }
        | GlobalRequest::CancelTcpipForward { address, port } => {
            w.string("address", address.as_bytes())?.u32(*port);
        }
        GlobalRequest::StreamlocalForward { socket_path }
        | GlobalRequest::CancelStreamlocalForward { socket_path } => {
            w.string("socket path", socket_path.as_bytes())?;
        }
        GlobalRequest::Unknown { .. } => {}
    }
    Ok(())
}

fn write_channel_kind(w: &mut Writer, kind: &ChannelKind) -> Result<(), EncodeError> {
    w.string("channel type", kind.wire_name().as_bytes())?;
    match kind {
        ChannelKind::Session | ChannelKind::Agent => {}
        ChannelKind::DirectTcpip {
            host,
            port,
            originator,
            originator_port,
        } => {
            w.string("host", host.as_bytes())?
                .u32(*port)
                .string("originator address", originator.as_bytes())?
                .u32(*originator_port);
        }
        ChannelKind::ForwardedTcpip {
            connected_address,
            connected_port,
            originator,
            originator_port,
        } => {
            w.string("connected address", connected_address.as_bytes())?
                .u32(*connected_port)
                .string("originator address", originator.as_bytes())?
                .u32(*originator_port);
        }
        ChannelKind::DirectStreamlocal { socket_path }
        | ChannelKind::ForwardedStreamlocal { socket_path } => {
            w.string("socket path", socket_path.as_bytes())?;
        }
    }
    Ok(())
}

fn write_window_size(w: &mut Writer, s: &WindowSize) {
    w.u32(s.cols).u32(s.rows).u32(s.pix_width).u32(s.pix_height);
}

fn write_channel_request(
    w: &mut Writer,
    request: &ChannelRequest,
    want_reply: bool,
) -> Result<(), EncodeError> {
    w.string("request type", request.wire_name().as_bytes())?
        .boolean(want_reply);
    match request {
        ChannelRequest::Pty(pty) => {
            w.string("TERM", pty.term.as_bytes())?;
            write_window_size(w, &pty.size);
            let mut modes = Vec::with_capacity(pty.modes.len().saturating_mul(5) + 1);
            for &(op, value) in &pty.modes {
                modes.push(op);
                modes.extend_from_slice(&value.to_be_bytes());
            }
            modes.push(TTY_OP_END);
            w.string("terminal modes", &modes)?;
        }
        ChannelRequest::Env { name, value } => {
            w.string("variable name", name.as_bytes())?
                .string("variable value", value.as_bytes())?;
        }
        ChannelRequest::Shell | ChannelRequest::AgentForward | ChannelRequest::Unknown { .. } => {}
        ChannelRequest::Exec(command) => {
            w.string("command", command)?;
        }
        ChannelRequest::Subsystem(name) => {
            w.string("subsystem name", name.as_bytes())?;
        }
        ChannelRequest::WindowChange(s) => write_window_size(w, s),
        ChannelRequest::Signal(name) => {
            w.string("signal name", name.as_bytes())?;
        }
        ChannelRequest::ExitStatus(status) => {
            w.u32(*status);
        }
        ChannelRequest::ExitSignal(exit) => {
            w.string("signal name", exit.signal.as_bytes())?
                .boolean(exit.core_dumped)
                .string("error message", exit.message.as_bytes())?
                .string("language tag", b"")?;
        }
    }
    Ok(())
}
