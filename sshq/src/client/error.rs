//! The client's own errors, in the words `sshq` prints (OpenSSH's where it
//! has some): what goes wrong before or around a connection that is not the
//! transport's to say. They travel as [`ConnectError::Setup`]'s source, or
//! stand alone where the client fails without connecting.

use sshq_core::error::{ConnectError, TransportError};

use super::cli::BadDestination;
use super::config::ConfigError;
use super::session::SessionError;
use crate::forward::ForwardError;

/// Why `sshq` ends with status 255; `Display` is what it prints on stderr
/// (nothing when the message was already shown).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No destination: ssh's usage.
    #[error("usage: {}", super::USAGE)]
    Usage,
    #[error("{0}")]
    BadDestination(#[from] BadDestination),
    #[error("Bad port '{0}'")]
    BadPort(String),
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("Cannot fork into background without a command to execute.")]
    BackgroundWithoutCommand,
    /// -f: the background copy could not be started.
    #[error("sshq: cannot go to the background: {0}")]
    Background(std::io::Error),
    /// -f: the background copy could not be waited for.
    #[error("sshq: {0}")]
    BackgroundWait(std::io::Error),
    /// Connecting or logging in failed (a rejected host key prints nothing
    /// more: its transcript ended with that line).
    #[error("{}", ssh_message(.0))]
    Connect(#[from] ConnectError),
    #[error("{0}")]
    Forward(#[from] ForwardError),
    /// ServerAliveInterval ran out; the keepalive watchdog's message.
    #[error("{0}")]
    ServerAliveTimeout(String),
    /// -W with a target that is not `host:port`.
    #[error("Bad stdio forwarding specification '{0}'")]
    BadStdioTarget(String),
    /// -W: the server would not open the channel.
    #[error("channel 0: open failed: {0}\nstdio forwarding failed")]
    StdioOpen(TransportError),
    #[error("{0}")]
    Session(#[from] SessionError),
    /// The connection under a reattachable session went; the session is
    /// resumed on a new one (this is never printed as the last word).
    #[error("sshq: connection lost: {0}")]
    SessionLost(String),
    /// Reconnecting to a held session gave up.
    #[error("sshq: the session is gone: {0}")]
    ReattachGaveUp(String),
    /// SIGHUP or SIGTERM while reconnecting.
    #[error("Killed by signal {0}.")]
    KilledWhileDisconnected(i32),
    /// `~.` while reconnecting.
    #[error("Connection to {0} closed.")]
    TerminatedWhileDisconnected(String),
}

/// What ssh prints when it cannot establish a session, for `e`; empty for a
/// rejected host key (its transcript, ending in "Host key verification
/// failed.", was already written).
pub fn ssh_message(e: &ConnectError) -> String {
    match e {
        ConnectError::Connect { host, port, source } => {
            format!(
                "sshq: connect to host {host} port {port}: {}",
                io_text(source)
            )
        }
        ConnectError::Resolve { host, message } => {
            format!("sshq: Could not resolve hostname {host}: {message}")
        }
        ConnectError::Timeout => "Connection timed out during banner exchange".to_string(),
        ConnectError::HostKeyRejected => String::new(),
        ConnectError::PermissionDenied {
            user,
            host,
            methods,
        } => format!("{user}@{host}: Permission denied ({methods})."),
        ConnectError::Negotiation { host, message } => {
            format!("Unable to negotiate with {host}: {message}")
        }
        ConnectError::Transport(e) => e.to_string(),
        ConnectError::Setup(e) => e.to_string(),
    }
}

/// An I/O error in the words ssh prints: the system's message without
/// Rust's " (os error N)" suffix.
pub(crate) fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// Why the client could not set a connection up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("sshq: cannot run ProxyCommand '{command}': {source}")]
    ProxyCommand {
        command: String,
        source: std::io::Error,
    },
    /// The name resolved to no address at all.
    #[error("no address to connect to")]
    NoAddress,
    /// Over QUIC a server proves its Ed25519 host key; known_hosts has
    /// only keys of other types for it.
    #[error(
        "{}: {host} is known only by its {} host key, but over QUIC servers identify {}",
        program.name(), known_types.join(", "), program.ed25519_advice()
    )]
    NoEd25519HostKey {
        program: Program,
        host: String,
        known_types: Vec<String>,
    },
    #[error(
        "sshq: ProxyCommand carries one byte stream, which SSH over QUIC cannot use; \
         use -o Transport=tcp (or auto) with ProxyCommand, or `sshq proxy` on the far side"
    )]
    ProxyCommandOverQuic,
    /// KexAlgorithms names nothing usable (the parser's error as source).
    #[error("sshq: {0}")]
    KexAlgorithms(sshq_core::error::BoxError),
    /// QUIC or TLS could not be set up locally (before any packet left).
    #[error("sshq: {0}")]
    QuicSetup(sshq_core::error::BoxError),
    /// The server answered QUIC but not the application protocol asked for.
    #[error("{}", alpn_refused(host, *port, alpn))]
    AlpnRefused {
        host: String,
        port: u16,
        alpn: Vec<u8>,
    },
    #[error(
        "sshq: {host} port {port}: the QUIC server failed authentication: {why}. \
         It may not be the server you meant (possible man-in-the-middle attack)."
    )]
    QuicAuthenticity {
        host: String,
        port: u16,
        why: String,
    },
    #[error("sshq: {host} port {port}: the QUIC handshake failed: {why}")]
    QuicHandshake {
        host: String,
        port: u16,
        why: String,
    },
}

impl From<SetupError> for ConnectError {
    fn from(e: SetupError) -> Self {
        ConnectError::Setup(Box::new(e))
    }
}

/// Which program reports: `sshq` or `sshq proxy` (their advice differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    Sshq,
    Proxy,
}

impl Program {
    fn name(self) -> &'static str {
        match self {
            Program::Sshq => "sshq",
            Program::Proxy => "sshq proxy",
        }
    }

    fn ed25519_advice(self) -> &'static str {
        match self {
            Program::Sshq => {
                "themselves by their Ed25519 host key. Use -o Transport=tcp, or add the server's \
                 Ed25519 key to known_hosts after checking its fingerprint."
            }
            Program::Proxy => {
                "themselves by their Ed25519 host key; add the server's Ed25519 key to \
                 known_hosts after checking its fingerprint."
            }
        }
    }
}

fn alpn_refused(host: &str, port: u16, alpn: &[u8]) -> String {
    if alpn == sshq_quic::tunnel::TUNNEL_ALPN {
        format!(
            "sshq proxy: {host} port {port} does not relay SSH connections: its sshqd has no \
             QuicRelay (it refused ALPN sshq-tunnel/1). Connect with sshq instead, or set \
             QuicRelay in that server's sshqd_config."
        )
    } else {
        format!(
            "sshq: {host} port {port} answers QUIC but refused ALPN {}: it is not an sshq server; \
             try -o Transport=tcp",
            String::from_utf8_lossy(alpn)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_in_ssh_words() {
        let refused = ConnectError::Connect {
            host: "h".to_string(),
            port: 2,
            source: std::io::Error::from_raw_os_error(111),
        };
        assert_eq!(
            ClientError::from(refused).to_string(),
            "sshq: connect to host h port 2: Connection refused"
        );
        let denied = ConnectError::PermissionDenied {
            user: "u".to_string(),
            host: "h".to_string(),
            methods: "publickey".to_string(),
        };
        assert_eq!(ssh_message(&denied), "u@h: Permission denied (publickey).");
        assert_eq!(
            ClientError::from(ConnectError::HostKeyRejected).to_string(),
            ""
        );
    }

    #[test]
    fn setup_errors_read_as_before_through_connect_error() {
        let e = ConnectError::from(SetupError::NoEd25519HostKey {
            program: Program::Sshq,
            host: "h".to_string(),
            known_types: vec!["ssh-rsa".to_string(), "ecdsa-sha2-nistp256".to_string()],
        });
        assert_eq!(
            e.to_string(),
            "sshq: h is known only by its ssh-rsa, ecdsa-sha2-nistp256 host key, but over QUIC \
             servers identify themselves by their Ed25519 host key. Use -o Transport=tcp, or add \
             the server's Ed25519 key to known_hosts after checking its fingerprint."
        );
        let e = ConnectError::from(SetupError::AlpnRefused {
            host: "h".to_string(),
            port: 22,
            alpn: b"sshq/1".to_vec(),
        });
        assert_eq!(
            e.to_string(),
            "sshq: h port 22 answers QUIC but refused ALPN sshq/1: it is not an sshq server; \
             try -o Transport=tcp"
        );
    }
}
