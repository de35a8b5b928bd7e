//! Tunnel connections (`sshq-tunnel/1`, see [`crate::tunnel`]) and the one
//! loop that relays a tunnel's stream to a local byte stream, both ways:
//! `sshq proxy` relays it to its stdin and stdout, sshqd's QuicRelay to a
//! TCP connection to its SSH server.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use quinn::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::tunnel::{self, ConnectionLost, Half};
use crate::wire::ErrorCode;

/// A QUIC connection that negotiated the tunnel ALPN, client or server side.
pub struct Tunnel {
    conn: quinn::Connection,
    /// The client's endpoint, kept so that [`Tunnel::finish`] can wait for
    /// the last packets before the process exits.
    endpoint: Option<quinn::Endpoint>,
}

/// The tunnel's one bidirectional stream.
pub struct TunnelStream {
    send: SendStream,
    recv: RecvStream,
}

/// Why a server-side tunnel never got as far as its first byte.
#[derive(Debug, thiserror::Error)]
pub enum OpeningError {
    /// The connection ended before the client opened its stream.
    #[error("connection ended before its stream: {0}")]
    Lost(ConnectionLost),
    /// The stream was reset, or the connection lost, before any data.
    #[error("stream ended before its first byte: {0}")]
    Read(String),
    /// The client finished its stream without sending anything: answer
    /// with [`EmptyStream::answer`].
    #[error("the client ended its stream without a byte")]
    Empty(EmptyStream),
}

/// A tunnel stream the client finished without a byte.
#[derive(Debug)]
pub struct EmptyStream(SendStream);

impl EmptyStream {
    /// Finishes our side too, waits at most `limit` for that to be
    /// acknowledged, and closes the connection with NO_ERROR.
    pub async fn answer(mut self, tunnel: &Tunnel, limit: Duration) {
        let _ = self.0.finish();
        tunnel::wait_acknowledged(&mut self.0, limit).await;
        tunnel.close(ErrorCode::NoError, "nothing to relay");
    }
}

impl Tunnel {
    pub(crate) fn new(conn: quinn::Connection, endpoint: Option<quinn::Endpoint>) -> Tunnel {
        Tunnel { conn, endpoint }
    }

    /// The peer's address.
    pub fn remote_address(&self) -> SocketAddr {
        self.conn.remote_address()
    }

    /// Client side: opens the tunnel's stream.
    pub async fn open_stream(&self) -> Result<TunnelStream, ConnectionLost> {
        let (send, recv) = self.conn.open_bi().await.map_err(ConnectionLost)?;
        Ok(TunnelStream { send, recv })
    }

    /// Server side: waits for the client's stream and its first bytes (at
    /// least one).
    pub async fn accept_stream(&self) -> Result<(TunnelStream, Bytes), OpeningError> {
        let (send, mut recv) = self
            .conn
            .accept_bi()
            .await
            .map_err(|e| OpeningError::Lost(ConnectionLost(e)))?;
        match recv.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => Ok((TunnelStream { send, recv }, chunk.bytes)),
            Ok(None) => Err(OpeningError::Empty(EmptyStream(send))),
            Err(e) => Err(OpeningError::Read(e.to_string())),
        }
    }

    /// Refuses, in the background, every stream the peer opens beyond the
    /// tunnel's one (see [`tunnel::refuse_other_streams`]).
    pub fn refuse_other_streams(&self) {
        tokio::spawn(tunnel::refuse_other_streams(self.conn.clone()));
    }

    /// Closes the connection with an sshq error code and reason phrase.
    pub fn close(&self, code: ErrorCode, reason: &str) {
        self.conn.close(tunnel::varint(code), reason.as_bytes());
    }

    /// Why the connection ended, if it has.
    pub fn close_reason(&self) -> Option<ConnectionLost> {
        self.conn.close_reason().map(ConnectionLost)
    }

    /// Waits at most `limit` for the peer to close the connection.
    pub async fn wait_closed(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.conn.closed()).await;
    }

    /// Client side, once closed: waits at most `limit` for the
    /// CONNECTION_CLOSE to leave before the process exits.
    pub async fn finish(&self, limit: Duration) {
        if let Some(endpoint) = &self.endpoint {
            crate::client::wait_idle(endpoint, limit).await;
        }
    }
}

/// How a relay went: each direction's outcome (`None` if it was cut short
/// when the other broke or the relay was interrupted).
pub struct Relayed<W> {
    /// From the local byte stream to the QUIC peer.
    pub outbound: Option<Half>,
    /// From the QUIC peer to the local byte stream.
    pub inbound: Option<Half>,
    /// The local writer, given back (e.g. to reset a TCP connection).
    pub writer: W,
    /// Whether `interrupt` fired (and its grace time ran out or both
    /// directions ended meanwhile).
    pub interrupted: bool,
    /// The stream's sending half, once its direction has ended.
    send: Option<SendStream>,
}

impl<W> Relayed<W> {
    /// Whether both directions ended in order (EOF and FIN both ways).
    pub fn both_finished(&self) -> bool {
        [&self.outbound, &self.inbound]
            .iter()
            .all(|half| half.as_ref().is_some_and(|h| h.end.is_finished()))
    }

    /// If the outbound direction ended in order: waits at most `limit` for
    /// the peer to acknowledge its last bytes, so that closing the
    /// connection afterwards loses nothing.
    pub async fn wait_acknowledged(&mut self, limit: Duration) {
        let finished = self.outbound.as_ref().is_some_and(|h| h.end.is_finished());
        if let (true, Some(send)) = (finished, self.send.as_mut()) {
            tunnel::wait_acknowledged(send, limit).await;
        }
    }
}

/// Relays `stream` to a local byte stream until both directions have
/// ended, or one is aborted (then the other is abandoned: the caller
/// closes the connection and resets its side), or `interrupt` fired and
/// `grace` has passed since.
///
/// `reader` is copied to the peer (EOF becomes a FIN), the peer's bytes to
/// `writer` (a FIN becomes `writer.shutdown()`): see [`tunnel::send_from`]
/// and [`tunnel::receive_into`].
pub async fn relay<R, W, I>(
    stream: TunnelStream,
    reader: R,
    mut writer: W,
    interrupt: I,
    grace: Duration,
) -> Relayed<W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    I: Future<Output = ()>,
{
    let TunnelStream { send, recv } = stream;
    let mut outbound_done: Option<(Half, SendStream)> = None;
    let mut inbound_done: Option<Half> = None;
    let mut interrupted = false;
    {
        let outbound = tunnel::send_from(reader, send);
        let inbound = tunnel::receive_into(recv, &mut writer);
        let grace_over = tokio::time::sleep(Duration::MAX);
        tokio::pin!(outbound, inbound, interrupt, grace_over);
        // Each branch runs once; the loop ends when both directions have,
        // or one aborts, or the grace time after an interrupt is over.
        while outbound_done.is_none() || inbound_done.is_none() {
            tokio::select! {
                result = &mut outbound, if outbound_done.is_none() => {
                    let aborted = !result.0.end.is_finished();
                    outbound_done = Some(result);
                    if aborted { break; }
                }
                half = &mut inbound, if inbound_done.is_none() => {
                    let aborted = !half.end.is_finished();
                    inbound_done = Some(half);
                    if aborted { break; }
                }
                () = &mut interrupt, if !interrupted => {
                    interrupted = true;
                    let until = tokio::time::Instant::now() + grace;
                    grace_over.as_mut().reset(until);
                }
                () = &mut grace_over, if interrupted => break,
            }
        }
    }
    let (outbound, send) = match outbound_done {
        Some((half, send)) => (Some(half), Some(send)),
        None => (None, None),
    };
    Relayed {
        outbound,
        inbound: inbound_done,
        writer,
        interrupted,
        send,
    }
}
