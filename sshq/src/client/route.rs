//! How the client reaches a host: straight, through a jump host's
//! connection (ProxyJump), or through a ProxyCommand; and the byte streams
//! a jump host opens for the next hop.
//!
//! A TCP hop travels in a `direct-tcpip` channel of the previous hop. A
//! QUIC hop needs UDP, so its datagrams travel in a `direct-udp@sshq`
//! subsystem channel, which only sshqd offers.
//!
//! This module sits below both `connect` (which uses a route) and `jump`
//! (which builds the chain of hops with `connect`), so neither depends on
//! the other's back.

use sshq_core::channel::{ChannelKind, ChannelRequest};
use sshq_core::error::TransportError;
use sshq_core::stream::ChannelStream;
use sshq_core::transport::{Channel, ChannelControl, ChannelParts, Connection};
use sshq_quic::wire::{Codec, EncodeError, UdpRelayTarget};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// The subsystem a jump host (sshqd) offers to relay UDP datagrams.
pub const UDP_RELAY_SUBSYSTEM: &str = sshq_quic::wire::udp_relay::SUBSYSTEM;

/// How to reach the server: straight over the network, or through the
/// connection to a ProxyJump host.
#[derive(Clone, Copy)]
pub enum Route<'a> {
    Direct,
    Via(&'a AnyConnection),
    /// ProxyCommand, expanded: SSH over the command's stdin and stdout.
    Command(&'a str),
}

/// A connection over whichever transport won.
pub enum AnyConnection {
    Tcp(sshq_tcp::TcpClientConnection),
    Quic(sshq_quic::QuicConnection),
}

/// A byte stream through a hop, whichever transport carries that hop.
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> ByteStream for T {}
pub type BoxedStream = Box<dyn ByteStream>;

/// A TCP byte stream from `hop` to `host:port`, for an SSH-over-TCP hop.
pub async fn open_tcp(
    hop: &AnyConnection,
    host: &str,
    port: u16,
) -> Result<BoxedStream, TransportError> {
    let kind = ChannelKind::DirectTcpip {
        host: host.to_string(),
        port: u32::from(port),
        originator: "127.0.0.1".to_string(),
        originator_port: 0,
    };
    match hop {
        AnyConnection::Tcp(conn) => confirmed_stream(conn, kind).await,
        AnyConnection::Quic(conn) => confirmed_stream(conn, kind).await,
    }
}

/// A channel as a byte stream, once the peer has confirmed it: a refusal
/// must be reported as such, not look like a stream that ended at once.
async fn confirmed_stream<C: Connection>(
    conn: &C,
    kind: ChannelKind,
) -> Result<BoxedStream, TransportError> {
    let (data_in, data_out, control) = conn.open_channel(kind).await?.split().into_data_halves();
    control.opened().await?;
    Ok(Box::new(ChannelStream::<C::Channel>::from_halves(
        data_in, data_out, control,
    )))
}

/// Why a jump host would not relay UDP.
#[derive(Debug, thiserror::Error)]
pub enum UdpRelayError {
    #[error("{0}")]
    Transport(#[from] TransportError),
    #[error("the jump host does not relay UDP (only sshqd does, and only where forwarding is permitted)")]
    Refused,
    #[error("cannot relay UDP to {host} port {port} through the jump host: {source}")]
    Target {
        host: String,
        port: u16,
        source: EncodeError,
    },
}

/// A stream of datagrams relayed by `hop` to UDP `host:port`, for a QUIC
/// hop: a session channel running the `direct-udp@sshq` subsystem, whose
/// first bytes name the target (`string host || uint32 port`).
pub async fn open_udp_relay(
    hop: &AnyConnection,
    host: &str,
    port: u16,
) -> Result<BoxedStream, UdpRelayError> {
    match hop {
        AnyConnection::Tcp(conn) => udp_relay_on(conn, host, port).await,
        AnyConnection::Quic(conn) => udp_relay_on(conn, host, port).await,
    }
}

async fn udp_relay_on<C: Connection>(
    conn: &C,
    host: &str,
    port: u16,
) -> Result<BoxedStream, UdpRelayError> {
    // The target is checked before a channel is spent on it.
    let target = UdpRelayTarget {
        host: host.to_string(),
        port,
    }
    .to_vec()
    .map_err(|source| UdpRelayError::Target {
        host: host.to_string(),
        port,
        source,
    })?;
    let channel = conn.open_channel(ChannelKind::Session).await?;
    let ChannelParts {
        data_in,
        ext_in,
        mut data_out,
        ext_out,
        control,
        requests,
    } = channel.split();
    drop((ext_out, requests));
    let request = ChannelRequest::Subsystem(UDP_RELAY_SUBSYSTEM.to_string());
    if !control.request(request, true).await? {
        return Err(UdpRelayError::Refused);
    }
    // The relay's complaints (a refused or unreachable target) arrive as
    // extended data before it closes the channel: pass them to -v.
    tokio::spawn(log_relay_messages(ext_in));
    data_out
        .write_all(&target)
        .await
        .map_err(|e| UdpRelayError::Transport(TransportError::Io(e)))?;
    data_out
        .flush()
        .await
        .map_err(|e| UdpRelayError::Transport(TransportError::Io(e)))?;
    Ok(Box::new(ChannelStream::<C::Channel>::from_halves(
        data_in, data_out, control,
    )))
}

async fn log_relay_messages<R: tokio::io::AsyncBufRead + Unpin>(mut messages: R) {
    use tokio::io::AsyncBufReadExt;
    let mut line = String::new();
    while matches!(messages.read_line(&mut line).await, Ok(n) if n > 0) {
        tracing::debug!("jump host: {}", line.trim_end());
        line.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The draft's test vector (draft-notes/test-vectors/udp-relay.txt).
    #[test]
    fn udp_relay_target_matches_the_draft() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../draft-notes/test-vectors/udp-relay.txt"
        );
        let vectors = std::fs::read_to_string(path).expect("the draft's vectors");
        let hex = vectors
            .lines()
            .find_map(|line| line.strip_prefix("target_h_example_443 = "))
            .expect("target_h_example_443");
        let target = UdpRelayTarget {
            host: "h.example".to_string(),
            port: 443,
        };
        let encoded: String = target
            .to_vec()
            .expect("a valid target")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(encoded, hex.trim());
    }
}
