//! Errors that cross the transport trait. The core owns them, so the code
//! above the trait handles one set of errors whatever the transport. One
//! enum per failure domain: a connection or channel in use
//! ([`TransportError`], with the peer's or our own protocol breaches in
//! [`ProtocolError`]), a server accepting a client ([`HandshakeError`]) and
//! a client reaching a server ([`ConnectError`]).

use crate::channel::{GlobalRequest, OpenFailure};
use crate::kex::Role;
use crate::log_escape;
use crate::transport::TransportKind;

/// A failure from a library or the client, kept as the source it is.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

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
    /// A channel request after our EOF. Over sshq/1 EOF is the stream's
    /// FIN, which nothing can follow (draft §8.8); SSH over TCP allows it.
    #[error("channel request after EOF: nothing can follow EOF on this channel")]
    RequestAfterEof,
    /// A channel request wanting a reply after the peer's EOF: over sshq/1
    /// the peer can no longer answer (draft §8.7). Send it without asking
    /// for a reply, or not at all.
    #[error("channel request wants a reply after the peer's EOF, which cannot be answered")]
    ReplyAfterPeerEof,
    /// The protocol was broken; the connection or stream is dropped.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// A breach of the SSH protocol (or of sshq/1's framing): by the peer, or a
/// request this side of this transport has no way to send.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// A channel request that only the other side sends (exit-signal from
    /// a client, say).
    #[error("only a {} sends {request}", role_name(.sender))]
    RequestFromWrongSide { request: &'static str, sender: Role },
    /// A channel request the transport has no message for on this side.
    #[error("the {} transport cannot send a '{request}' request on this side", upper(.transport))]
    UnsendableRequest {
        transport: TransportKind,
        request: String,
    },
    /// A channel kind only the other side opens (`direct-tcpip` from a
    /// server, say).
    #[error("a {} does not open {kind} channels", role_name(.side))]
    WrongSideOpen { side: Role, kind: String },
    /// A global request the transport does not send from this side.
    #[error("the {} transport does not send {request:?} as a {}", upper(.transport), role_name(.side))]
    UnsendableGlobalRequest {
        transport: TransportKind,
        side: Role,
        request: GlobalRequest,
    },
    /// The TLS exporter that binds user authentication to the QUIC
    /// connection gave nothing.
    #[error("the TLS exporter is unavailable")]
    ExporterUnavailable,
    /// A message of the wrong kind at this point of the protocol (only the
    /// kind's name: never the peer's contents).
    #[error("expected {expected}, got {got}")]
    UnexpectedMessage {
        expected: &'static str,
        got: &'static str,
    },
    /// Bytes that do not decode (the decoder's error as source). Shown
    /// escaped: decoder errors may quote the peer's bytes.
    #[error("{}", log_escape::peer_text(&.0.to_string()))]
    Undecodable(BoxError),
    /// A message this side built does not fit the wire format (a field
    /// or frame over its length limit; the encoder's error as source).
    #[error("cannot encode a message: {0}")]
    Unencodable(BoxError),
    /// A breach found by a transport's own protocol state machine (sshq/1's
    /// control and channel machines; their typed error as source). Shown
    /// escaped: it may name what the peer sent.
    #[error("{}", log_escape::peer_text(&.0.to_string()))]
    Violation(BoxError),
}

/// Why a server dropped a client before it had a session, whatever the
/// transport. The texts are sshd's where it has one (they are logged, and
/// over QUIC sent as the close reason).
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The QUIC (TLS) handshake failed; quinn's error as source.
    #[error("QUIC handshake failed: {0}")]
    Quic(BoxError),
    #[error("timeout before authentication")]
    LoginGraceTimeExpired,
    /// The user name in it is escaped (it is logged).
    #[error("too many authentication failures for {0}")]
    TooManyFailures(String),
    #[error("protocol error before authentication: {0}")]
    Protocol(#[from] ProtocolError),
    /// The client went away or the session broke; why, when known (raw:
    /// the log site escapes and caps it).
    #[error("connection closed before authentication{}", source_suffix(.0))]
    Closed(Option<BoxError>),
}

fn role_name(role: &Role) -> &'static str {
    match role {
        Role::Client => "client",
        Role::Server => "server",
    }
}

/// A transport's name as prose writes it ("TCP", "QUIC").
fn upper(transport: &TransportKind) -> String {
    transport.to_string().to_uppercase()
}

fn reason_suffix(reason: &Option<String>) -> String {
    match reason {
        Some(r) if !r.is_empty() => format!(": {r}"),
        _ => String::new(),
    }
}

fn source_suffix(source: &Option<BoxError>) -> String {
    reason_suffix(&source.as_ref().map(|e| e.to_string()))
}

/// Why a client could not establish a session. `Display` is for logs; the
/// `sshq` binary words each for users as OpenSSH does (exit status 255).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No TCP connection (or UDP socket) to the server.
    #[error("cannot connect to {host} port {port}: {source}")]
    Connect {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("cannot resolve {host}: {message}")]
    Resolve { host: String, message: String },
    /// The server sent no SSH version line in time.
    #[error("timed out during the banner exchange")]
    Timeout,
    /// The host key check failed; its messages were already shown.
    #[error("host key rejected")]
    HostKeyRejected,
    /// Every authentication method was refused; `methods` are those the
    /// server still offered.
    #[error("{user}@{host}: authentication refused (methods left: {methods})")]
    PermissionDenied {
        user: String,
        host: String,
        methods: String,
    },
    /// No algorithm in common with the server.
    #[error("no common algorithm with {host}: {message}")]
    Negotiation { host: String, message: String },
    #[error("{0}")]
    Transport(#[from] TransportError),
    /// The client could not set the connection up (a ProxyCommand that
    /// will not run, a bad KexAlgorithms, ...): its own error, in its own
    /// words, as source.
    #[error("{0}")]
    Setup(BoxError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecodable_bytes_are_escaped_in_messages() {
        let inner: BoxError = "bad \x1b[31m name".into();
        let shown = ProtocolError::Undecodable(inner).to_string();
        assert!(!shown.contains('\x1b'), "{shown:?}");
        assert!(shown.starts_with("bad "), "{shown:?}");
    }

    #[test]
    fn closed_handshake_names_its_cause() {
        let plain = HandshakeError::Closed(None).to_string();
        assert_eq!(plain, "connection closed before authentication");
        let why = HandshakeError::Closed(Some("bad MAC".into())).to_string();
        assert_eq!(why, "connection closed before authentication: bad MAC");
    }

    #[test]
    fn protocol_errors_keep_their_wording() {
        let e = TransportError::from(ProtocolError::WrongSideOpen {
            side: Role::Client,
            kind: "forwarded-tcpip".to_string(),
        });
        assert_eq!(
            e.to_string(),
            "protocol error: a client does not open forwarded-tcpip channels"
        );
        let e = ProtocolError::RequestFromWrongSide {
            request: "exit-signal",
            sender: Role::Server,
        };
        assert_eq!(e.to_string(), "only a server sends exit-signal");
    }
}
