//! Errors that cross the transport trait. The core owns them, so the code
//! above the trait handles one set of errors whatever the transport.

use crate::channel::OpenFailure;

/// What went wrong on a connection or a channel.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The peer refused to open a channel.
    #[error("channel open refused: {0}")]
    OpenRefused(OpenFailure),
    /// The connection is gone (closed by either side or broken).
    #[error("connection closed{}", reason_suffix(.0))]
    ConnectionClosed(Option<String>),
    /// The channel is closed; nothing more can be sent on it.
    #[error("channel closed")]
    ChannelClosed,
    /// The peer broke the protocol; the connection or stream is dropped.
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// An I/O error in the words ssh prints: the system's message without
/// Rust's " (os error N)" suffix.
fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

fn reason_suffix(reason: &Option<String>) -> String {
    match reason {
        Some(r) if !r.is_empty() => format!(": {r}"),
        _ => String::new(),
    }
}

/// Why a client could not establish a session; the `sshq` binary turns each
/// into OpenSSH's message and exit status 255.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("sshq: connect to host {host} port {port}: {}", io_text(source))]
    Connect {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("sshq: Could not resolve hostname {host}: {message}")]
    Resolve { host: String, message: String },
    #[error("Connection timed out during banner exchange")]
    Timeout,
    /// The host key check failed; its messages were already shown.
    #[error("Host key verification failed.")]
    HostKeyRejected,
    #[error("{user}@{host}: Permission denied ({methods}).")]
    PermissionDenied {
        user: String,
        host: String,
        methods: String,
    },
    #[error("Unable to negotiate with {host}: {message}")]
    Negotiation { host: String, message: String },
    #[error("{0}")]
    Transport(#[from] TransportError),
    #[error("{0}")]
    Other(String),
}
