//! What an SSH channel is, independent of what carries it (RFC 4254).
//!
//! These are the values that cross the transport trait: the kind of channel a
//! side asks to open, the requests made on a channel, and the reasons a
//! channel can be refused. The TCP transport maps them onto SSH packets with
//! russh; the QUIC transport encodes them into its own stream frames.

use std::fmt;

/// The kind of a channel and the data that comes with opening it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelKind {
    /// `session`: a shell, a command or a subsystem.
    Session,
    /// `direct-tcpip`: the client asks the server to connect somewhere (-L, -D).
    DirectTcpip {
        host: String,
        port: u32,
        originator: String,
        originator_port: u32,
    },
    /// `forwarded-tcpip`: the server hands the client a connection that
    /// arrived on a port forwarded with `tcpip-forward` (-R).
    ForwardedTcpip {
        connected_address: String,
        connected_port: u32,
        originator: String,
        originator_port: u32,
    },
    /// `direct-streamlocal@openssh.com`: like direct-tcpip, to a Unix socket.
    DirectStreamlocal { socket_path: String },
    /// `forwarded-streamlocal@openssh.com`: like forwarded-tcpip, from a Unix socket.
    ForwardedStreamlocal { socket_path: String },
    /// `auth-agent@openssh.com`: the server reaches the client's ssh-agent.
    Agent,
}

impl ChannelKind {
    /// The channel type name on the SSH wire.
    pub fn wire_name(&self) -> &'static str {
        match self {
            ChannelKind::Session => "session",
            ChannelKind::DirectTcpip { .. } => "direct-tcpip",
            ChannelKind::ForwardedTcpip { .. } => "forwarded-tcpip",
            ChannelKind::DirectStreamlocal { .. } => "direct-streamlocal@openssh.com",
            ChannelKind::ForwardedStreamlocal { .. } => "forwarded-streamlocal@openssh.com",
            ChannelKind::Agent => "auth-agent@openssh.com",
        }
    }
}

/// A terminal's size, in characters and in pixels (pixels are 0 when unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowSize {
    pub cols: u32,
    pub rows: u32,
    pub pix_width: u32,
    pub pix_height: u32,
}

/// A `pty-req`: the terminal type, its size and its modes as RFC 4254 §8
/// opcode/value pairs (the TTY_OP_END terminator is not included).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PtyRequest {
    pub term: String,
    pub size: WindowSize,
    pub modes: Vec<(u8, u32)>,
}

/// A request made on a channel (RFC 4254 §6 and OpenSSH's extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelRequest {
    Pty(PtyRequest),
    Env {
        name: String,
        value: String,
    },
    Shell,
    /// The command as bytes: SSH does not promise UTF-8.
    Exec(Vec<u8>),
    Subsystem(String),
    WindowChange(WindowSize),
    /// A signal name without the "SIG" prefix, e.g. "TERM".
    Signal(String),
    ExitStatus(u32),
    ExitSignal(ExitSignal),
    /// `auth-agent-req@openssh.com`: forward the client's agent.
    AgentForward,
    /// [`END_OF_WRITE`] and any other request without a variant: its
    /// type name, kept so it can be acted on, logged or refused.
    Unknown {
        name: String,
    },
}

/// OpenSSH's `eow@openssh.com` ("end of write", want reply false): the
/// client can no longer write out the channel's data, so sshd closes the
/// program's output (which then gets SIGPIPE). A [`ChannelRequest::Unknown`].
pub const END_OF_WRITE: &str = "eow@openssh.com";

impl ChannelRequest {
    /// The request type name on the SSH wire.
    pub fn wire_name(&self) -> &str {
        match self {
            ChannelRequest::Pty(_) => "pty-req",
            ChannelRequest::Env { .. } => "env",
            ChannelRequest::Shell => "shell",
            ChannelRequest::Exec(_) => "exec",
            ChannelRequest::Subsystem(_) => "subsystem",
            ChannelRequest::WindowChange(_) => "window-change",
            ChannelRequest::Signal(_) => "signal",
            ChannelRequest::ExitStatus(_) => "exit-status",
            ChannelRequest::ExitSignal(_) => "exit-signal",
            ChannelRequest::AgentForward => "auth-agent-req@openssh.com",
            ChannelRequest::Unknown { name } => name,
        }
    }
}

/// How a remote process died by a signal (`exit-signal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitSignal {
    /// Without the "SIG" prefix, e.g. "KILL".
    pub signal: String,
    pub core_dumped: bool,
    pub message: String,
}

/// Why a channel open was refused (RFC 4254 §5.1 reason codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenFailureReason {
    AdministrativelyProhibited,
    ConnectFailed,
    UnknownChannelType,
    ResourceShortage,
}

impl OpenFailureReason {
    /// The RFC 4254 reason code.
    pub fn code(self) -> u32 {
        match self {
            OpenFailureReason::AdministrativelyProhibited => 1,
            OpenFailureReason::ConnectFailed => 2,
            OpenFailureReason::UnknownChannelType => 3,
            OpenFailureReason::ResourceShortage => 4,
        }
    }

    /// The reason for a code; unknown codes read as "connect failed", the
    /// most neutral of the four, so a peer cannot make us misreport.
    pub fn from_code(code: u32) -> Self {
        match code {
            1 => OpenFailureReason::AdministrativelyProhibited,
            3 => OpenFailureReason::UnknownChannelType,
            4 => OpenFailureReason::ResourceShortage,
            _ => OpenFailureReason::ConnectFailed,
        }
    }
}

impl fmt::Display for OpenFailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // OpenSSH's words for the codes (channels.c reason2txt).
        f.write_str(match self {
            OpenFailureReason::AdministrativelyProhibited => "administratively prohibited",
            OpenFailureReason::ConnectFailed => "connect failed",
            OpenFailureReason::UnknownChannelType => "unknown channel type",
            OpenFailureReason::ResourceShortage => "resource shortage",
        })
    }
}

/// A refused channel open, as the peer explained it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenFailure {
    pub reason: OpenFailureReason,
    pub message: String,
}

impl fmt::Display for OpenFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.reason, self.message)
        }
    }
}

/// A connection-wide request (RFC 4254 §4) such as remote port forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobalRequest {
    TcpipForward {
        address: String,
        port: u32,
    },
    CancelTcpipForward {
        address: String,
        port: u32,
    },
    StreamlocalForward {
        socket_path: String,
    },
    CancelStreamlocalForward {
        socket_path: String,
    },
    /// `keepalive@openssh.com` and other requests without a variant: the
    /// request name, for this side to act on or refuse.
    Unknown {
        name: String,
    },
}

/// The answer to a global request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobalReply {
    /// Accepted; for `tcpip-forward` with port 0, the port the server bound.
    Success {
        bound_port: Option<u32>,
    },
    Failure,
}
