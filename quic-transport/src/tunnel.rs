//! `sshq-tunnel/1`: a whole SSH connection, as its raw byte stream, on one
//! QUIC stream.
//!
//! This is how an unmodified OpenSSH client reaches an unmodified SSH
//! server over QUIC: `ssh -o ProxyCommand='sshq proxy %h %p'` hands its byte
//! stream to `sshq proxy`, which carries it to sshqd, which relays it to
//! the TCP SSH server its `QuicRelay` names. It is also the "all channels on
//! one stream" baseline that per-channel streams (`sshq/1`) are compared
//! against.
//!
//! On the wire (draft section "Tunnel Mode"):
//!
//! - its own ALPN, [`TUNNEL_ALPN`], so a tunnel is never mistaken for an
//!   `sshq/1` session (which starts with a control stream and userauth);
//! - the client opens one bidirectional stream and writes the SSH byte
//!   stream on it, unframed; the server answers on the same stream;
//! - a FIN is a half-close (TCP's `shutdown(SHUT_WR)`), a RESET_STREAM or
//!   STOP_SENDING with [`ErrorCode::TunnelAborted`] is a broken byte stream
//!   (a TCP reset); any other stream is refused with
//!   [`ErrorCode::StreamRefused`];
//! - the relay closes the connection with [`ErrorCode::RelayTargetUnreachable`]
//!   or [`ErrorCode::RelayBusy`] when it cannot carry the tunnel.
//!
//! The helpers here move bytes between a QUIC stream and any byte stream
//! with those rules; the client (`sshq proxy`) and the server (sshqd's
//! relay) are built on them.

use std::io;

use bytes::Bytes;
use quinn::{ConnectionError, ReadError, RecvStream, SendStream, VarInt, WriteError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::wire::ErrorCode;

/// The ALPN protocol identifier of the tunnel mode, version 1.
pub const TUNNEL_ALPN: &[u8] = b"sshq-tunnel/1";

/// How much one read from the local byte stream takes. Large reads keep
/// the per-call cost low on bulk transfers (a pipe gives at most 64 KiB at
/// a time; a TCP socket more).
const READ_CHUNK: usize = 256 * 1024;

/// Adds the tunnel ALPN to a server's TLS configuration (after `sshq/1`,
/// which stays the server's preference), so clients asking for either are
/// served. Servers that do not relay leave it out: a tunnel client is then
/// refused in the handshake with `no_application_protocol`.
pub fn offer_tunnel(tls: &mut rustls::ServerConfig) {
    if !tls.alpn_protocols.iter().any(|p| p == TUNNEL_ALPN) {
        tls.alpn_protocols.push(TUNNEL_ALPN.to_vec());
    }
}

/// Makes a client's TLS configuration (from `crate::tls::client_tls`) ask
/// for the tunnel ALPN only: a tunnel client has nothing to say in `sshq/1`.
pub fn ask_for_tunnel(tls: &mut rustls::ClientConfig) {
    // draft §11.2: a tunnel client offers only sshq-tunnel/1
    tls.alpn_protocols = vec![TUNNEL_ALPN.to_vec()];
}

/// Whether the handshake of `conn` negotiated the tunnel ALPN.
pub fn is_tunnel(conn: &quinn::Connection) -> bool {
    conn.handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.protocol)
        .is_some_and(|protocol| protocol == TUNNEL_ALPN)
}

/// Whether a failed connection attempt was the server refusing the ALPN
/// (TLS alert `no_application_protocol`, QUIC error 0x178): for a tunnel
/// client, a server that does not relay.
pub fn alpn_refused(error: &ConnectionError) -> bool {
    const NO_APPLICATION_PROTOCOL: u8 = 120;
    let code = quinn::TransportErrorCode::crypto(NO_APPLICATION_PROTOCOL);
    match error {
        ConnectionError::ConnectionClosed(close) => close.error_code == code,
        ConnectionError::TransportError(error) => error.code == code,
        _ => false,
    }
}

/// The sshq error code and reason phrase of a connection the peer closed
/// with an application CONNECTION_CLOSE; `None` for other ends (a timeout,
/// a transport error) and for codes this version does not know.
pub fn peer_close(error: &ConnectionError) -> Option<(ErrorCode, String)> {
    match error {
        ConnectionError::ApplicationClosed(close) => {
            let code = ErrorCode::from_code(close.error_code.into_inner())?;
            Some((code, String::from_utf8_lossy(&close.reason).into_owned()))
        }
        _ => None,
    }
}

/// How a QUIC connection ended, when it ended under a tunnel.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ConnectionLost(pub(crate) ConnectionError);

impl ConnectionLost {
    /// The sshq error code and reason the peer closed with, if it closed
    /// with one this version knows (see [`peer_close`]).
    pub fn peer_close(&self) -> Option<(ErrorCode, String)> {
        peer_close(&self.0)
    }
}

/// An sshq error code as QUIC carries it.
pub fn varint(code: ErrorCode) -> VarInt {
    VarInt::from_u32(code.code())
}

/// How one direction of a tunnel ended.
#[derive(Debug)]
pub enum End {
    /// The sending side ended its byte stream (EOF, then FIN, or the
    /// other way round): a half-close.
    Finished,
    /// The QUIC peer abandoned its half (RESET_STREAM or STOP_SENDING) with
    /// this code: the byte stream is broken, not ended.
    PeerAborted(u64),
    /// The local byte stream failed (a TCP reset, a closed pipe); the QUIC
    /// peer was told with [`ErrorCode::TunnelAborted`].
    LocalFailed(io::Error),
    /// The QUIC connection itself ended.
    ConnectionLost(ConnectionLost),
}

impl End {
    /// Whether this is the orderly end of its direction.
    pub fn is_finished(&self) -> bool {
        matches!(self, End::Finished)
    }
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::Finished => f.write_str("ended"),
            End::PeerAborted(code) => match ErrorCode::from_code(*code) {
                Some(ErrorCode::TunnelAborted) => f.write_str("aborted by the QUIC peer"),
                _ => write!(f, "aborted by the QUIC peer (code {code})"),
            },
            End::LocalFailed(e) => write!(f, "failed here: {e}"),
            End::ConnectionLost(e) => write!(f, "QUIC connection lost: {e}"),
        }
    }
}

/// One direction's outcome: how it ended and how many bytes it carried.
#[derive(Debug)]
pub struct Half {
    pub bytes: u64,
    pub end: End,
}

/// Copies the local byte stream `from` onto the QUIC stream `to` until
/// either ends. EOF becomes a FIN; a read error becomes RESET_STREAM with
/// [`ErrorCode::TunnelAborted`].
///
/// On [`End::Finished`] the FIN has been queued, not yet acknowledged: the
/// caller keeps `to` (returned) and waits on `stopped()` before closing the
/// connection, or the last bytes may never leave.
pub async fn send_from<R: AsyncRead + Unpin>(
    mut from: R,
    mut to: SendStream,
) -> (Half, SendStream) {
    let mut buffer = vec![0u8; READ_CHUNK];
    let mut bytes = 0u64;
    let end = loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) => {
                let _ = to.finish();
                break End::Finished;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = to.reset(varint(ErrorCode::TunnelAborted));
                break End::LocalFailed(e);
            }
        };
        let Some(data) = buffer.get(..n) else {
            // A reader claiming more than the buffer holds is a bug; treat
            // it as a broken local stream rather than panic.
            let _ = to.reset(varint(ErrorCode::TunnelAborted));
            break End::LocalFailed(io::Error::other("read returned more than asked for"));
        };
        if let Err(e) = to.write_all(data).await {
            break write_error_end(e);
        }
        bytes += n as u64;
    };
    (Half { bytes, end }, to)
}

/// Copies the QUIC stream `from` to the local byte stream `to` until either
/// ends. A FIN becomes `to.shutdown()` (for TCP, `shutdown(SHUT_WR)`); a
/// write error becomes STOP_SENDING with [`ErrorCode::TunnelAborted`].
pub async fn receive_into<W: AsyncWrite + Unpin>(mut from: RecvStream, to: &mut W) -> Half {
    let mut bytes = 0u64;
    let end = loop {
        let chunk: Bytes = match from.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => chunk.bytes,
            Ok(None) => match to.shutdown().await {
                Ok(()) => break End::Finished,
                Err(e) => break local_write_failed(&mut from, e),
            },
            Err(ReadError::Reset(code)) => break End::PeerAborted(code.into_inner()),
            Err(ReadError::ConnectionLost(e)) => break End::ConnectionLost(ConnectionLost(e)),
            Err(e) => break End::LocalFailed(io::Error::other(e.to_string())),
        };
        if let Err(e) = to.write_all(&chunk).await {
            break local_write_failed(&mut from, e);
        }
        // The next read may wait for the network: hand over what we have.
        if let Err(e) = to.flush().await {
            break local_write_failed(&mut from, e);
        }
        bytes += chunk.len() as u64;
    };
    Half { bytes, end }
}

fn local_write_failed(from: &mut RecvStream, e: io::Error) -> End {
    let _ = from.stop(varint(ErrorCode::TunnelAborted));
    End::LocalFailed(e)
}

fn write_error_end(e: WriteError) -> End {
    match e {
        WriteError::Stopped(code) => End::PeerAborted(code.into_inner()),
        WriteError::ConnectionLost(e) => End::ConnectionLost(ConnectionLost(e)),
        other => End::LocalFailed(io::Error::other(other.to_string())),
    }
}

/// Waits (at most `limit`) until the peer has acknowledged everything sent
/// on `send`, so that closing the connection afterwards loses nothing.
pub async fn wait_acknowledged(send: &mut SendStream, limit: std::time::Duration) {
    let _ = tokio::time::timeout(limit, send.stopped()).await;
}

/// Refuses every stream the peer opens beyond the tunnel's one: bidi and
/// uni alike are reset and stopped with [`ErrorCode::StreamRefused`] as
/// soon as they arrive. Runs until the connection ends.
pub async fn refuse_other_streams(conn: quinn::Connection) {
    // draft §11.2: any stream other than the tunnel's is refused with STREAM_REFUSED
    let refused = varint(ErrorCode::StreamRefused);
    loop {
        tokio::select! {
            bi = conn.accept_bi() => match bi {
                Ok((mut send, mut recv)) => {
                    tracing::debug!("tunnel: refusing stream {} (one stream per tunnel)", send.id());
                    let _ = send.reset(refused);
                    let _ = recv.stop(refused);
                }
                Err(_) => return,
            },
            uni = conn.accept_uni() => match uni {
                Ok(mut recv) => {
                    let _ = recv.stop(refused);
                }
                Err(_) => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use quinn::{ApplicationClose, ConnectionClose, TransportErrorCode};

    #[test]
    fn a_relaying_server_offers_both_protocols_sshq_first() {
        let provider = crate::kx::crypto_provider(crate::kx::DEFAULT_KEX).expect("provider");
        let key = sshq_core::ssh_key::PrivateKey::from(
            sshq_core::ssh_key::private::Ed25519Keypair::from_seed(&[7; 32]),
        );
        let mut tls = crate::tls::server_tls(&key, provider).expect("tls");
        offer_tunnel(&mut tls);
        offer_tunnel(&mut tls);
        assert_eq!(
            tls.alpn_protocols,
            [crate::tls::ALPN.to_vec(), TUNNEL_ALPN.to_vec()]
        );
    }

    #[test]
    fn a_refused_alpn_is_recognised() {
        let refused = ConnectionError::ConnectionClosed(ConnectionClose {
            error_code: TransportErrorCode::crypto(120),
            frame_type: None,
            reason: Bytes::new(),
        });
        assert!(alpn_refused(&refused));
        let other_alert = ConnectionError::ConnectionClosed(ConnectionClose {
            error_code: TransportErrorCode::crypto(40),
            frame_type: None,
            reason: Bytes::new(),
        });
        assert!(!alpn_refused(&other_alert));
        assert!(!alpn_refused(&ConnectionError::TimedOut));
    }

    #[test]
    fn relay_closes_are_decoded_with_their_reason() {
        let close = |code: u32, reason: &'static [u8]| {
            ConnectionError::ApplicationClosed(ApplicationClose {
                error_code: VarInt::from_u32(code),
                reason: Bytes::from_static(reason),
            })
        };
        assert_eq!(
            peer_close(&close(0x07, b"127.0.0.1:22: Connection refused")),
            Some((
                ErrorCode::RelayTargetUnreachable,
                "127.0.0.1:22: Connection refused".to_string()
            ))
        );
        assert_eq!(
            peer_close(&close(0x08, b"")),
            Some((ErrorCode::RelayBusy, String::new()))
        );
        // Unknown codes are nobody's business but the generic message's.
        assert_eq!(peer_close(&close(0x3f, b"?")), None);
        assert_eq!(peer_close(&ConnectionError::TimedOut), None);
    }
}
