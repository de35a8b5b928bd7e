//! The messages between sshqd and a session holder (see [`super::holder`]),
//! over a Unix socket that only root (or sshqd's own user) can reach.
//!
//! A message is `uint32 length`, then `length` bytes: a type byte and its
//! body, in the encoding of the session frames (`crate::reattach::wire`).
//! Both ends are the same program, but a holder outlives the sshqd that
//! started it and may meet a newer one, so every body is still parsed
//! whole and checked: a message with bytes left over, an unknown type or a
//! length beyond [`MAX_MESSAGE`] ends the attachment, never the holder.

use std::path::PathBuf;
use std::time::Duration;

use sshq_core::channel::{PtyRequest, WindowSize};

use super::super::logging::LogSetup;
use super::super::process::{ExitStatus, Program, SessionUser, SpawnRequest};
use crate::reattach::wire::{put_string, Reader, Token, WireError};

/// The version of these messages; SPAWN and ATTACH carry it, and a holder
/// refuses another, so that an sshqd and a holder of different builds that
/// changed them never misread each other.
pub const VERSION: u32 = 1;

/// The largest message body: a SPAWN with its environment, or channel data
/// (at most [`MAX_DATA`] per message).
pub const MAX_MESSAGE: usize = 256 * 1024;

/// The most channel bytes one DATA message carries.
pub const MAX_DATA: usize = 64 * 1024;

/// A message of the link, either way.
pub trait Message: Sized {
    fn encode(&self, out: &mut Vec<u8>);
    /// One message from the front of `buf`, and the bytes it took;
    /// `Ok(None)` while more bytes are needed.
    fn decode(buf: &[u8]) -> Result<Option<(Self, usize)>, HolderWireError>;
}

/// What a new holder runs, and how it holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnOrder {
    pub token: Token,
    /// Where the holder listens for later attachments.
    pub socket: PathBuf,
    pub hold: Duration,
    pub buffer: usize,
    /// For log lines: who started the session.
    pub label: String,
    pub log: LogSetup,
    pub request: SpawnRequest,
}

/// Who asks to attach, checked by the holder against the session's user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachOrder {
    pub token: Token,
    pub uid: u32,
    pub user: String,
    pub peer: String,
    /// `None` for the attachment that started the session; else the
    /// client's RESUME count of output received.
    pub resume_from: Option<u64>,
}

/// From sshqd to a holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToHolder {
    /// First and only once, on a new holder's socket pair.
    Spawn(Box<SpawnOrder>),
    /// First on every attachment (after SPAWN on the first).
    Attach(AttachOrder),
    /// Bytes of the channel's data stream from the client.
    ClientData(Vec<u8>),
    /// The client's data stream ended.
    ClientEof,
    /// A window-change request; `id` names its reply (0: none wanted).
    WindowChange { id: u32, size: WindowSize },
    /// A signal request; `id` names its reply (0: none wanted).
    Signal { id: u32, name: String },
    /// The channel is gone.
    ChannelClosed,
}

/// From a holder to sshqd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromHolder {
    /// The program runs, as process `pid`.
    Started { pid: u32 },
    /// It could not start; why, for the client.
    Failed(String),
    /// Bytes for the channel's data stream to the client.
    ServerData(Vec<u8>),
    /// The data stream to the client ends.
    ServerEof,
    /// The program ended: send `exit-status` or `exit-signal`.
    Exit(ExitStatus),
    /// The answer to request `id`.
    Reply { id: u32, ok: bool },
    /// Close the channel.
    Close,
    /// A newer attachment took the session: the connection this one came
    /// on is stale.
    Superseded,
    /// The session is over: sshqd forgets what it kept for it.
    Ended,
}

/// A message that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HolderWireError {
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("message of {0} bytes is longer than the {MAX_MESSAGE} allowed")]
    TooLong(usize),
    #[error("unknown message type {0}")]
    UnknownType(u8),
    #[error("{what}: {value} is not a valid value")]
    BadValue { what: &'static str, value: u32 },
    #[error("a {what} is not UTF-8")]
    NotUtf8 { what: &'static str },
    #[error("unknown syslog facility {0}")]
    UnknownFacility(String),
    #[error("holder messages of version {0}, not {VERSION}")]
    Version(u32),
}

const SPAWN: u8 = 1;
const ATTACH: u8 = 2;
const CLIENT_DATA: u8 = 3;
const CLIENT_EOF: u8 = 4;
const WINDOW_CHANGE: u8 = 5;
const SIGNAL: u8 = 6;
const CHANNEL_CLOSED: u8 = 7;
const STARTED: u8 = 64;
const FAILED: u8 = 65;
const SERVER_DATA: u8 = 66;
const SERVER_EOF: u8 = 67;
const EXIT_STATUS: u8 = 68;
const EXIT_SIGNAL: u8 = 69;
const REPLY: u8 = 70;
const CLOSE: u8 = 71;
const SUPERSEDED: u8 = 72;
const ENDED: u8 = 73;

/// Reserves the length, lets `body` write, then fills the length in.
fn framed(out: &mut Vec<u8>, kind: u8, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(kind);
    body(out);
    let length = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
    if let Some(slot) = out.get_mut(start..start + 4) {
        slot.copy_from_slice(&length.to_be_bytes());
    }
}

/// Splits one message off the front of `buf`: `Ok(None)` while more bytes
/// are needed, else its type, its body and how many bytes it took.
/// A message's type, its body, and the bytes it took in all.
type Split<'a> = (u8, &'a [u8], usize);

fn split(buf: &[u8]) -> Result<Option<Split<'_>>, HolderWireError> {
    let Some(header) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let length = u32::from_be_bytes(*header) as usize;
    if length > MAX_MESSAGE {
        return Err(HolderWireError::TooLong(length));
    }
    let Some(message) = buf.get(4..4 + length) else {
        return Ok(None);
    };
    let (&kind, body) = message.split_first().ok_or(WireError::Empty)?;
    Ok(Some((kind, body, 4 + length)))
}

fn text(r: &mut Reader<'_>, what: &'static str) -> Result<String, HolderWireError> {
    let bytes = r.string()?;
    String::from_utf8(bytes.to_vec()).map_err(|_| HolderWireError::NotUtf8 { what })
}

fn path(r: &mut Reader<'_>) -> Result<PathBuf, WireError> {
    use std::os::unix::ffi::OsStrExt;
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(r.string()?)))
}

fn put_path(out: &mut Vec<u8>, path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    put_string(out, path.as_os_str().as_bytes());
}

fn put_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&n.to_be_bytes());
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    put_u32(out, u32::try_from(n).unwrap_or(u32::MAX));
}

fn put_size(out: &mut Vec<u8>, size: &WindowSize) {
    for n in [size.cols, size.rows, size.pix_width, size.pix_height] {
        put_u32(out, n);
    }
}

fn size(r: &mut Reader<'_>) -> Result<WindowSize, WireError> {
    Ok(WindowSize {
        cols: r.u32()?,
        rows: r.u32()?,
        pix_width: r.u32()?,
        pix_height: r.u32()?,
    })
}

fn flag(r: &mut Reader<'_>, what: &'static str) -> Result<bool, HolderWireError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(HolderWireError::BadValue {
            what,
            value: u32::from(other),
        }),
    }
}

/// The most entries a SPAWN's lists may claim; the message's size bounds
/// them anyway, this keeps a bad count from reserving memory first.
const MAX_ENTRIES: u32 = 4096;

fn count(r: &mut Reader<'_>, what: &'static str) -> Result<u32, HolderWireError> {
    let n = r.u32()?;
    if n > MAX_ENTRIES {
        return Err(HolderWireError::BadValue { what, value: n });
    }
    Ok(n)
}

fn encode_spawn(order: &SpawnOrder, out: &mut Vec<u8>) {
    put_u32(out, VERSION);
    put_string(out, &order.token.0);
    put_path(out, &order.socket);
    put_u64(out, order.hold.as_secs());
    put_u64(out, order.buffer as u64);
    put_string(out, order.label.as_bytes());
    put_string(out, order.log.filter.as_bytes());
    match &order.log.syslog {
        None => out.push(0),
        Some(facility) => {
            out.push(1);
            put_string(out, facility.name().as_bytes());
        }
    }
    let req = &order.request;
    put_string(out, req.user.name.as_bytes());
    put_u32(out, req.user.uid);
    put_u32(out, req.user.gid);
    put_path(out, &req.user.home);
    put_path(out, &req.user.shell);
    match &req.program {
        Program::Shell => out.push(0),
        Program::Command(command) => {
            out.push(1);
            put_string(out, command);
        }
        Program::Subsystem(line) => {
            out.push(2);
            put_string(out, line.as_bytes());
        }
    }
    match &req.pty {
        None => out.push(0),
        Some(pty) => {
            out.push(1);
            put_string(out, pty.term.as_bytes());
            put_size(out, &pty.size);
            put_len(out, pty.modes.len());
            for (opcode, value) in &pty.modes {
                out.push(*opcode);
                put_u32(out, *value);
            }
        }
    }
    for list in [&req.env, &req.user_env] {
        put_len(out, list.len());
        for (name, value) in list {
            put_string(out, name.as_bytes());
            put_string(out, value.as_bytes());
        }
    }
    put_string(out, req.ssh_connection.as_bytes());
    match &req.auth_sock {
        None => out.push(0),
        Some(sock) => {
            out.push(1);
            put_path(out, sock);
        }
    }
    // SPAWN only ever goes to a holder of this very build (sshqd runs
    // /proc/self/exe), so a field added here needs no new VERSION, which
    // would keep a restarted sshqd from the holders started before.
    match &req.pam_service {
        None => out.push(0),
        Some(service) => {
            out.push(1);
            put_string(out, service.as_bytes());
        }
    }
}

fn decode_spawn(r: &mut Reader<'_>) -> Result<SpawnOrder, HolderWireError> {
    use super::super::logging::SyslogFacility;
    let version = r.u32()?;
    if version != VERSION {
        return Err(HolderWireError::Version(version));
    }
    let token = r.token()?;
    let socket = path(r)?;
    let hold = Duration::from_secs(r.u64()?);
    let buffer = usize::try_from(r.u64()?).unwrap_or(usize::MAX);
    let label = text(r, "label")?;
    let filter = text(r, "log filter")?;
    let syslog = match flag(r, "log sink")? {
        false => None,
        true => {
            let name = text(r, "syslog facility")?;
            Some(SyslogFacility::parse(&name).ok_or(HolderWireError::UnknownFacility(name))?)
        }
    };
    let user = SessionUser {
        name: text(r, "user name")?,
        uid: r.u32()?,
        gid: r.u32()?,
        home: path(r)?,
        shell: path(r)?,
    };
    let program = match r.u8()? {
        0 => Program::Shell,
        1 => Program::Command(r.string()?.to_vec()),
        2 => Program::Subsystem(text(r, "subsystem")?),
        other => {
            return Err(HolderWireError::BadValue {
                what: "program kind",
                value: u32::from(other),
            })
        }
    };
    let pty = match flag(r, "pty")? {
        false => None,
        true => {
            let term = text(r, "terminal type")?;
            let size = size(r)?;
            let n = count(r, "terminal modes")?;
            let mut modes = Vec::new();
            for _ in 0..n {
                modes.push((r.u8()?, r.u32()?));
            }
            Some(PtyRequest { term, size, modes })
        }
    };
    let mut lists = [Vec::new(), Vec::new()];
    for env in &mut lists {
        let n = count(r, "environment")?;
        for _ in 0..n {
            env.push((text(r, "variable name")?, text(r, "variable value")?));
        }
    }
    let [env, user_env] = lists;
    let ssh_connection = text(r, "SSH_CONNECTION")?;
    let auth_sock = match flag(r, "agent socket")? {
        false => None,
        true => Some(path(r)?),
    };
    let pam_service = match flag(r, "PAM service")? {
        false => None,
        true => Some(text(r, "PAM service")?),
    };
    Ok(SpawnOrder {
        token,
        socket,
        hold,
        buffer,
        label,
        log: LogSetup { filter, syslog },
        request: SpawnRequest {
            user,
            program,
            pty,
            env,
            user_env,
            ssh_connection,
            auth_sock,
            pam_service,
        },
    })
}

impl ToHolder {
    /// The message's name, for log lines.
    pub fn name(&self) -> &'static str {
        match self {
            ToHolder::Spawn(_) => "SPAWN",
            ToHolder::Attach(_) => "ATTACH",
            ToHolder::ClientData(_) => "CLIENT_DATA",
            ToHolder::ClientEof => "CLIENT_EOF",
            ToHolder::WindowChange { .. } => "WINDOW_CHANGE",
            ToHolder::Signal { .. } => "SIGNAL",
            ToHolder::ChannelClosed => "CHANNEL_CLOSED",
        }
    }
}

impl Message for ToHolder {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ToHolder::Spawn(order) => framed(out, SPAWN, |out| encode_spawn(order, out)),
            ToHolder::Attach(order) => framed(out, ATTACH, |out| {
                put_u32(out, VERSION);
                put_string(out, &order.token.0);
                put_u32(out, order.uid);
                put_string(out, order.user.as_bytes());
                put_string(out, order.peer.as_bytes());
                match order.resume_from {
                    None => out.push(0),
                    Some(received) => {
                        out.push(1);
                        put_u64(out, received);
                    }
                }
            }),
            ToHolder::ClientData(bytes) => framed(out, CLIENT_DATA, |out| {
                out.extend_from_slice(bytes);
            }),
            ToHolder::ClientEof => framed(out, CLIENT_EOF, |_| {}),
            ToHolder::WindowChange { id, size } => framed(out, WINDOW_CHANGE, |out| {
                put_u32(out, *id);
                put_size(out, size);
            }),
            ToHolder::Signal { id, name } => framed(out, SIGNAL, |out| {
                put_u32(out, *id);
                put_string(out, name.as_bytes());
            }),
            ToHolder::ChannelClosed => framed(out, CHANNEL_CLOSED, |_| {}),
        }
    }

    fn decode(buf: &[u8]) -> Result<Option<(ToHolder, usize)>, HolderWireError> {
        let Some((kind, body, used)) = split(buf)? else {
            return Ok(None);
        };
        let mut r = Reader::new(body, "holder message");
        let message = match kind {
            SPAWN => ToHolder::Spawn(Box::new(decode_spawn(&mut r)?)),
            ATTACH => {
                let version = r.u32()?;
                if version != VERSION {
                    return Err(HolderWireError::Version(version));
                }
                ToHolder::Attach(AttachOrder {
                    token: r.token()?,
                    uid: r.u32()?,
                    user: text(&mut r, "user name")?,
                    peer: text(&mut r, "peer")?,
                    resume_from: match flag(&mut r, "resume")? {
                        false => None,
                        true => Some(r.u64()?),
                    },
                })
            }
            CLIENT_DATA => ToHolder::ClientData(r.rest().to_vec()),
            CLIENT_EOF => ToHolder::ClientEof,
            WINDOW_CHANGE => ToHolder::WindowChange {
                id: r.u32()?,
                size: size(&mut r)?,
            },
            SIGNAL => ToHolder::Signal {
                id: r.u32()?,
                name: text(&mut r, "signal name")?,
            },
            CHANNEL_CLOSED => ToHolder::ChannelClosed,
            other => return Err(HolderWireError::UnknownType(other)),
        };
        r.finish()?;
        Ok(Some((message, used)))
    }
}

impl Message for FromHolder {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            FromHolder::Started { pid } => framed(out, STARTED, |out| put_u32(out, *pid)),
            FromHolder::Failed(why) => framed(out, FAILED, |out| put_string(out, why.as_bytes())),
            FromHolder::ServerData(bytes) => framed(out, SERVER_DATA, |out| {
                out.extend_from_slice(bytes);
            }),
            FromHolder::ServerEof => framed(out, SERVER_EOF, |_| {}),
            FromHolder::Exit(ExitStatus::Code(code)) => {
                framed(out, EXIT_STATUS, |out| put_u32(out, *code));
            }
            FromHolder::Exit(ExitStatus::Signal { name, core_dumped }) => {
                framed(out, EXIT_SIGNAL, |out| {
                    put_string(out, name.as_bytes());
                    out.push(u8::from(*core_dumped));
                });
            }
            FromHolder::Reply { id, ok } => framed(out, REPLY, |out| {
                put_u32(out, *id);
                out.push(u8::from(*ok));
            }),
            FromHolder::Close => framed(out, CLOSE, |_| {}),
            FromHolder::Superseded => framed(out, SUPERSEDED, |_| {}),
            FromHolder::Ended => framed(out, ENDED, |_| {}),
        }
    }

    fn decode(buf: &[u8]) -> Result<Option<(FromHolder, usize)>, HolderWireError> {
        let Some((kind, body, used)) = split(buf)? else {
            return Ok(None);
        };
        let mut r = Reader::new(body, "holder message");
        let message = match kind {
            STARTED => FromHolder::Started { pid: r.u32()? },
            FAILED => FromHolder::Failed(text(&mut r, "failure")?),
            SERVER_DATA => FromHolder::ServerData(r.rest().to_vec()),
            SERVER_EOF => FromHolder::ServerEof,
            EXIT_STATUS => FromHolder::Exit(ExitStatus::Code(r.u32()?)),
            EXIT_SIGNAL => FromHolder::Exit(ExitStatus::Signal {
                name: text(&mut r, "signal name")?,
                core_dumped: flag(&mut r, "core dumped")?,
            }),
            REPLY => FromHolder::Reply {
                id: r.u32()?,
                ok: flag(&mut r, "reply")?,
            },
            CLOSE => FromHolder::Close,
            SUPERSEDED => FromHolder::Superseded,
            ENDED => FromHolder::Ended,
            other => return Err(HolderWireError::UnknownType(other)),
        };
        r.finish()?;
        Ok(Some((message, used)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::logging::SyslogFacility;

    fn spawn_order() -> SpawnOrder {
        SpawnOrder {
            token: Token([7; 32]),
            socket: "/run/sshqd/sessions/1000.00".into(),
            hold: Duration::from_secs(3600),
            buffer: 1 << 20,
            label: "user from 127.0.0.1 port 4000".into(),
            log: LogSetup {
                filter: "info,russh=warn".into(),
                syslog: Some(SyslogFacility::Local(3)),
            },
            request: SpawnRequest {
                user: SessionUser {
                    name: "user".into(),
                    uid: 1000,
                    gid: 1000,
                    home: "/home/user".into(),
                    shell: "/bin/bash".into(),
                },
                program: Program::Command(b"top \xff".to_vec()),
                pty: Some(PtyRequest {
                    term: "xterm".into(),
                    size: WindowSize {
                        cols: 80,
                        rows: 24,
                        pix_width: 0,
                        pix_height: 0,
                    },
                    modes: vec![(53, 1), (128, 38400)],
                }),
                env: vec![("LANG".into(), "C.UTF-8".into())],
                user_env: vec![("TZ".into(), "UTC".into())],
                ssh_connection: "127.0.0.1 4000 127.0.0.1 22".into(),
                auth_sock: Some("/tmp/sshq-x/agent.1".into()),
                pam_service: Some("sshd".into()),
            },
        }
    }

    fn to_holder(message: ToHolder) {
        let mut bytes = Vec::new();
        message.encode(&mut bytes);
        bytes.extend_from_slice(b"next");
        let (decoded, used) = ToHolder::decode(&bytes).unwrap().unwrap();
        assert_eq!(decoded, message);
        assert_eq!(used, bytes.len() - 4);
        for cut in 0..used {
            assert!(ToHolder::decode(&bytes[..cut]).unwrap().is_none());
        }
    }

    fn from_holder(message: FromHolder) {
        let mut bytes = Vec::new();
        message.encode(&mut bytes);
        let (decoded, used) = FromHolder::decode(&bytes).unwrap().unwrap();
        assert_eq!(decoded, message);
        assert_eq!(used, bytes.len());
    }

    #[test]
    fn every_message_round_trips() {
        to_holder(ToHolder::Spawn(Box::new(spawn_order())));
        let mut plain = spawn_order();
        plain.log.syslog = None;
        plain.request.pty = None;
        plain.request.auth_sock = None;
        plain.request.pam_service = None;
        plain.request.program = Program::Shell;
        to_holder(ToHolder::Spawn(Box::new(plain)));
        for resume_from in [None, Some(0), Some(u64::MAX)] {
            to_holder(ToHolder::Attach(AttachOrder {
                token: Token([1; 32]),
                uid: 0,
                user: "root".into(),
                peer: "root from ::1 port 2".into(),
                resume_from,
            }));
        }
        to_holder(ToHolder::ClientData(b"ls\r".to_vec()));
        to_holder(ToHolder::ClientData(Vec::new()));
        to_holder(ToHolder::ClientEof);
        to_holder(ToHolder::WindowChange {
            id: 9,
            size: WindowSize {
                cols: 1,
                rows: 2,
                pix_width: 3,
                pix_height: 4,
            },
        });
        to_holder(ToHolder::Signal {
            id: u32::MAX,
            name: "INT".into(),
        });
        to_holder(ToHolder::ChannelClosed);
        from_holder(FromHolder::Started { pid: 42 });
        from_holder(FromHolder::Failed("no such shell".into()));
        from_holder(FromHolder::ServerData(vec![0; MAX_DATA]));
        from_holder(FromHolder::ServerEof);
        from_holder(FromHolder::Exit(ExitStatus::Code(3)));
        from_holder(FromHolder::Exit(ExitStatus::Signal {
            name: "KILL".into(),
            core_dumped: true,
        }));
        from_holder(FromHolder::Reply { id: 1, ok: false });
        from_holder(FromHolder::Close);
        from_holder(FromHolder::Superseded);
        from_holder(FromHolder::Ended);
    }

    #[test]
    fn bad_messages_are_refused() {
        let refused = |bytes: &[u8]| ToHolder::decode(bytes).is_err();
        // Too long, empty, unknown type.
        assert!(refused(&((MAX_MESSAGE + 1) as u32).to_be_bytes()));
        assert!(refused(&[0, 0, 0, 0]));
        assert!(refused(&[0, 0, 0, 1, 99]));
        // A reply type sent the wrong way.
        assert!(refused(&[0, 0, 0, 1, CLOSE]));
        // Trailing bytes after CLIENT_EOF.
        assert!(refused(&[0, 0, 0, 2, CLIENT_EOF, 0]));
        // Another version of ATTACH.
        let mut bytes = Vec::new();
        ToHolder::Attach(AttachOrder {
            token: Token([1; 32]),
            uid: 0,
            user: "root".into(),
            peer: String::new(),
            resume_from: None,
        })
        .encode(&mut bytes);
        bytes[8] = 2;
        assert!(matches!(
            ToHolder::decode(&bytes),
            Err(HolderWireError::Version(2))
        ));
        // A flag that is neither 0 nor 1.
        let mut bytes = Vec::new();
        FromHolder::Reply { id: 1, ok: true }.encode(&mut bytes);
        let last = bytes.len() - 1;
        bytes[last] = 2;
        assert!(FromHolder::decode(&bytes).is_err());
        // A SPAWN cut anywhere inside its body.
        let mut bytes = Vec::new();
        ToHolder::Spawn(Box::new(spawn_order())).encode(&mut bytes);
        for cut in 5..bytes.len() {
            let mut short = bytes[..cut].to_vec();
            let length = (cut - 4) as u32;
            short[..4].copy_from_slice(&length.to_be_bytes());
            assert!(refused(&short), "cut at {cut}");
        }
    }
}
