//! A QUIC endpoint whose UDP datagrams travel over a byte stream.
//!
//! This is how a QUIC connection reaches its server through a ProxyJump
//! host: the jump host relays the datagrams between an SSH channel and a
//! UDP socket (the `direct-udp@sshq` subsystem in the draft). QUIC still
//! runs end to end, so the jump host sees only ciphertext.
//!
//! On the stream each datagram is `uint16 length || payload`, in both
//! directions (`crate::wire::udp_relay` is the codec). The stream is reliable and ordered, so inner QUIC sees no
//! loss from it; when the stream's own queue is full a datagram is dropped,
//! as a congested UDP path would drop it, and QUIC recovers as it always does.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use crate::wire::Datagram;

/// Datagrams queued in each direction before new ones are dropped. A few
/// hundred full-size datagrams cover the bandwidth-delay product of the
/// links this is used on without hiding congestion from QUIC for long.
const QUEUED_DATAGRAMS: usize = 512;

/// Writes one datagram in the stream framing.
pub async fn write_datagram<W: AsyncWrite + Unpin>(out: &mut W, datagram: &[u8]) -> io::Result<()> {
    let header = Datagram::header(datagram.len())?;
    out.write_all(&header).await?;
    out.write_all(datagram).await
}

/// Reads one datagram in the stream framing; `None` at a clean end of
/// stream (between datagrams). An end in the middle of one is an error.
///
/// Not cancel-safe: a datagram half read when the future is dropped is
/// lost, and the framing with it. Anything that races reads against other
/// work (a `select!`) must use a [`DatagramReader`] instead.
pub async fn read_datagram<R: AsyncRead + Unpin>(input: &mut R) -> io::Result<Option<Bytes>> {
    let mut length = [0u8; 2];
    match input.read(&mut length[..1]).await? {
        0 => return Ok(None),
        _ => input.read_exact(&mut length[1..]).await?,
    };
    let mut datagram = vec![0u8; usize::from(u16::from_be_bytes(length))];
    input.read_exact(&mut datagram).await?;
    Ok(Some(Bytes::from(datagram)))
}

/// Reads datagrams in the stream framing, keeping a partly received one
/// across calls, so that [`DatagramReader::next`] is cancel-safe: dropping
/// its future (another `select!` branch won) loses no byte, and the next
/// call carries on where the last one stopped.
#[derive(Debug, Default)]
pub struct DatagramReader {
    /// Bytes read from the stream and not yet returned as a datagram.
    pending: BytesMut,
}

/// How much one read from the stream may take: a few full datagrams, so a
/// busy relay does not pay a system call or a wake-up per datagram.
const READ_AHEAD: usize = 4 * (2 + u16::MAX as usize);

impl DatagramReader {
    pub fn new() -> DatagramReader {
        DatagramReader::default()
    }

    /// The next datagram; `None` at a clean end of stream (between
    /// datagrams). An end in the middle of one is an error.
    ///
    /// Cancel-safe: the only await is a `read_buf` into our own buffer,
    /// which tokio guarantees reads nothing when it is dropped unfinished.
    pub async fn next<R: AsyncRead + Unpin>(&mut self, input: &mut R) -> io::Result<Option<Bytes>> {
        loop {
            if let Some(datagram) = self.take_complete() {
                return Ok(Some(datagram));
            }
            self.pending.reserve(READ_AHEAD);
            if input.read_buf(&mut self.pending).await? == 0 {
                return match self.pending.is_empty() {
                    true => Ok(None),
                    false => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the stream ended inside a datagram",
                    )),
                };
            }
        }
    }

    /// Splits off the first datagram if all of it has arrived.
    fn take_complete(&mut self) -> Option<Bytes> {
        Datagram::split_complete(&mut self.pending)
    }
}

/// A client endpoint whose only peer, `peer`, is reached through `stream`.
/// `peer` is the address the far end relays to; QUIC uses it only as a label.
pub fn client_endpoint_over_stream<S>(stream: S, peer: SocketAddr) -> io::Result<quinn::Endpoint>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let socket = StreamSocket::start(stream, peer);
    quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        None,
        Arc::new(socket),
        Arc::new(quinn::TokioRuntime),
    )
}

/// The datagram socket quinn sees.
struct StreamSocket {
    peer: SocketAddr,
    outgoing: mpsc::Sender<Bytes>,
    /// quinn polls from its one endpoint driver, so this lock never waits.
    incoming: Mutex<mpsc::Receiver<Bytes>>,
}

impl fmt::Debug for StreamSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamSocket(peer {})", self.peer)
    }
}

impl StreamSocket {
    fn start<S>(stream: S, peer: SocketAddr) -> StreamSocket
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read_half, write_half) = tokio::io::split(stream);
        let (outgoing, to_stream) = mpsc::channel(QUEUED_DATAGRAMS);
        let (from_stream, incoming) = mpsc::channel(QUEUED_DATAGRAMS);
        tokio::spawn(pump_to_stream(to_stream, write_half));
        tokio::spawn(pump_from_stream(read_half, from_stream));
        StreamSocket {
            peer,
            outgoing,
            incoming: Mutex::new(incoming),
        }
    }
}

/// Writes queued datagrams, flushing whenever the queue runs dry so a lone
/// packet is never held back. Ends (and half-closes the stream) once the
/// endpoint is gone.
async fn pump_to_stream<W: AsyncWrite + Unpin>(mut queue: mpsc::Receiver<Bytes>, stream: W) {
    let mut out = BufWriter::new(stream);
    while let Some(datagram) = queue.recv().await {
        if write_datagram(&mut out, &datagram).await.is_err() {
            return;
        }
        if queue.is_empty() && out.flush().await.is_err() {
            return;
        }
    }
    let _ = out.shutdown().await;
}

/// Queues datagrams read from the stream, dropping them when quinn falls
/// behind, until the stream ends.
async fn pump_from_stream<R: AsyncRead + Unpin>(mut stream: R, queue: mpsc::Sender<Bytes>) {
    let mut reader = DatagramReader::new();
    while let Ok(Some(datagram)) = reader.next(&mut stream).await {
        match queue.try_send(datagram) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

impl AsyncUdpSocket for StreamSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let size = transmit
            .segment_size
            .unwrap_or(transmit.contents.len())
            .max(1);
        for datagram in transmit.contents.chunks(size) {
            match self.outgoing.try_send(Bytes::copy_from_slice(datagram)) {
                // A full queue drops the datagram, as a congested path would.
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(relay_gone()),
            }
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let Ok(mut incoming) = self.incoming.lock() else {
            return Poll::Ready(Err(relay_gone()));
        };
        let mut filled = 0;
        while filled < bufs.len().min(meta.len()) {
            let next = if filled == 0 {
                match incoming.poll_recv(cx) {
                    Poll::Ready(next) => next,
                    Poll::Pending => return Poll::Pending,
                }
            } else {
                incoming.try_recv().ok()
            };
            let Some(datagram) = next else {
                if filled == 0 {
                    return Poll::Ready(Err(relay_gone()));
                }
                break;
            };
            let Some(buf) = bufs.get_mut(filled) else {
                break;
            };
            // quinn sizes its buffers for the largest datagram it accepts;
            // anything larger is not QUIC and is dropped.
            let Some(target) = buf.get_mut(..datagram.len()) else {
                continue;
            };
            target.copy_from_slice(&datagram);
            if let Some(slot) = meta.get_mut(filled) {
                *slot = RecvMeta {
                    addr: self.peer,
                    len: datagram.len(),
                    stride: datagram.len(),
                    ecn: None,
                    dst_ip: None,
                };
            }
            filled += 1;
        }
        Poll::Ready(Ok(filled))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        let unspecified = match self.peer.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        Ok(SocketAddr::new(unspecified, 0))
    }

    fn may_fragment(&self) -> bool {
        false
    }
}

fn relay_gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the jump host stopped relaying this QUIC connection's datagrams",
    )
}

/// Sending never waits: a full queue drops instead (see `try_send`).
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads raced against another branch that keeps winning (as in a
    /// relay's `select!`) lose nothing: every datagram arrives whole, in
    /// order, though the stream delivers a few bytes at a time.
    #[tokio::test]
    async fn a_datagram_reader_survives_cancelled_reads() {
        let payload = |n: u32| -> Vec<u8> { (0..(n * 13) % 700).map(|i| (i ^ n) as u8).collect() };
        let (mut tx, mut rx) = tokio::io::duplex(7);
        tokio::spawn(async move {
            for n in 0..300 {
                write_datagram(&mut tx, &payload(n)).await.unwrap();
            }
        });
        let mut reader = DatagramReader::new();
        let (mut got, mut cancelled) = (Vec::new(), 0);
        while got.len() < 300 {
            tokio::select! {
                biased;
                next = reader.next(&mut rx) => got.push(next.unwrap().unwrap()),
                () = tokio::task::yield_now() => cancelled += 1,
            }
        }
        assert!(cancelled > 100, "the reads were hardly ever cancelled");
        for (n, datagram) in (0..).zip(&got) {
            assert_eq!(&datagram[..], &payload(n)[..], "datagram {n}");
        }
        assert!(reader.next(&mut rx).await.unwrap().is_none());
        // A stream that ends inside a datagram is an error, not an end.
        assert!(DatagramReader::new()
            .next(&mut &b"\x00\x05hel"[..])
            .await
            .is_err());

        // The same race breaks `read_datagram`, which is what sshqd's relay
        // used in its `select!`: the harness above does catch the bug.
        let (mut tx, mut rx) = tokio::io::duplex(7);
        tokio::spawn(async move {
            for n in 0..300 {
                write_datagram(&mut tx, &payload(n)).await.unwrap();
            }
        });
        let mut intact = 0u32;
        loop {
            tokio::select! {
                biased;
                next = read_datagram(&mut rx) => match next {
                    Ok(Some(datagram)) if datagram[..] == payload(intact)[..] => intact += 1,
                    _ => break,
                },
                () = tokio::task::yield_now() => {}
            }
        }
        assert!(intact < 300, "a plain read_datagram survived cancellation");
    }

    #[tokio::test]
    async fn framing_round_trips_and_rejects_truncation() {
        let mut encoded = Vec::new();
        write_datagram(&mut encoded, b"hello").await.unwrap();
        write_datagram(&mut encoded, b"").await.unwrap();
        assert_eq!(encoded, b"\x00\x05hello\x00\x00");
        let mut input = &encoded[..];
        assert_eq!(
            read_datagram(&mut input).await.unwrap().unwrap(),
            &b"hello"[..]
        );
        assert_eq!(read_datagram(&mut input).await.unwrap().unwrap(), &b""[..]);
        assert!(read_datagram(&mut input).await.unwrap().is_none());
        // Cut inside the length, and inside the payload.
        assert!(read_datagram(&mut &b"\x00"[..]).await.is_err());
        assert!(read_datagram(&mut &b"\x00\x05hel"[..]).await.is_err());
        let too_big = vec![0u8; 65536];
        assert!(write_datagram(&mut Vec::new(), &too_big).await.is_err());
    }
}
