//! A byte pipe between a transport and a channel's reader: the transport
//! hands over whole chunks (`Bytes`, no copy) and waits only once `limit`
//! bytes are unread; the reader reads them through `AsyncRead`, or without
//! another copy through `AsyncBufRead`.
//!
//! The TCP transport needs a large limit: russh's session task both reads
//! and writes the connection and opens the peer's window when data
//! *arrives*, so if handing data to a channel blocked that task, a channel
//! whose reader waits on its own output (a remote `cat`) would stop the
//! task that sends that output: a deadlock. The QUIC transport uses a small
//! limit, since there blocking stops just that stream and QUIC's flow
//! control tells the peer.
//!
//! What is counted against the limit is memory, not payload: every chunk
//! costs its length plus [`CHUNK_OVERHEAD`], so a peer sending one-byte
//! packets fills the budget as fast, in memory, as one sending large ones.
//! A [`PipeBudget`] shared by all the pipes of one connection bounds their
//! sum, so many channels cannot multiply the per-pipe limit.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// What one queued chunk costs beyond its payload: the `Bytes` handle and
/// its shared header, the queue slot, the permits and the allocator's own
/// bookkeeping, rounded up (about 150 bytes were counted on x86-64).
// draft §12.7: buffered data MUST be bounded by what is allocated, not by payload octets
pub const CHUNK_OVERHEAD: usize = 256;

/// Memory that all the pipes of one connection may hold together. Clones
/// share it.
#[derive(Debug, Clone)]
pub struct PipeBudget {
    bytes: Arc<Semaphore>,
    limit: usize,
}

impl PipeBudget {
    /// A budget of `limit` bytes (as counted by the pipes: payload plus
    /// [`CHUNK_OVERHEAD`] per chunk).
    pub fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        PipeBudget {
            bytes: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// How much of the budget is free now (for tests and logs).
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }
}

/// What a queued chunk holds from the pipe's and the connection's budgets;
/// dropping it (once the chunk is read) gives both back.
#[derive(Debug)]
struct Charge {
    _pipe: OwnedSemaphorePermit,
    _connection: Option<OwnedSemaphorePermit>,
}

/// The sending end, driven by the transport.
pub struct PipeWriter {
    /// Boxed, as the request queue's are (`crate::replies::RequestSender`):
    /// tokio allocates a queue's slots 32 at a time, up front.
    chunks: Option<mpsc::UnboundedSender<Box<(Bytes, Charge)>>>,
    budget: Arc<Semaphore>,
    limit: usize,
    connection: Option<PipeBudget>,
}

/// The receiving end: the channel's `data_in` or `ext_in`.
pub struct PipeReader {
    chunks: mpsc::UnboundedReceiver<Box<(Bytes, Charge)>>,
    /// What is left of the chunk being read; its charge is released (and
    /// the budgets refilled) once it is read in full.
    current: VecDeque<(Bytes, Charge)>,
}

/// A pipe whose writer waits once `limit` bytes are unread.
pub fn pipe(limit: usize) -> (PipeReader, PipeWriter) {
    let (tx, rx) = mpsc::unbounded_channel();
    let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
    (
        PipeReader {
            chunks: rx,
            current: VecDeque::new(),
        },
        PipeWriter {
            chunks: Some(tx),
            budget: Arc::new(Semaphore::new(limit)),
            limit,
            connection: None,
        },
    )
}

/// A pipe whose writer waits once `limit` bytes are unread in it, or once
/// the pipes sharing `connection` hold all of that budget.
pub fn pipe_within(limit: usize, connection: &PipeBudget) -> (PipeReader, PipeWriter) {
    let (reader, mut writer) = pipe(limit);
    writer.connection = Some(connection.clone());
    (reader, writer)
}

/// What `len` payload bytes cost against a budget of `limit`: clamped, so
/// that an oversized chunk waits for the whole budget instead of forever.
fn cost(len: usize, limit: usize) -> Result<u32, ()> {
    u32::try_from(len.saturating_add(CHUNK_OVERHEAD).min(limit)).map_err(|_| ())
}

impl PipeWriter {
    /// Queues `data`; waits only while the reader is `limit` bytes behind
    /// (or the connection's budget is spent).
    /// Fails once the reader is gone or after [`PipeWriter::close`].
    pub async fn send(&mut self, data: Bytes) -> Result<(), ()> {
        if data.is_empty() {
            return Ok(());
        }
        let Some(chunks) = &self.chunks else {
            return Err(());
        };
        let pipe = self
            .budget
            .clone()
            .acquire_many_owned(cost(data.len(), self.limit)?)
            .await
            .map_err(|_| ())?;
        // The pipe's own permit is taken first: a stalled reader then holds
        // at most one waiting chunk's worth of the connection's budget.
        let connection = match &self.connection {
            Some(shared) => Some(
                shared
                    .bytes
                    .clone()
                    .acquire_many_owned(cost(data.len(), shared.limit)?)
                    .await
                    .map_err(|_| ())?,
            ),
            None => None,
        };
        let charge = Charge {
            _pipe: pipe,
            _connection: connection,
        };
        chunks.send(Box::new((data, charge))).map_err(|_| ())
    }

    /// End of data: the reader sees EOF once it has read what is queued.
    pub fn close(&mut self) {
        self.chunks = None;
    }
}

impl AsyncRead for PipeReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if let Some((chunk, _charge)) = self.current.front_mut() {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk.split_to(n));
                if chunk.is_empty() {
                    self.current.pop_front();
                }
                return Poll::Ready(Ok(()));
            }
            match self.chunks.poll_recv(cx) {
                Poll::Ready(Some(next)) => self.current.push_back(*next),
                // All senders gone: EOF.
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncBufRead for PipeReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        while this.current.is_empty() {
            match this.chunks.poll_recv(cx) {
                Poll::Ready(Some(next)) if next.0.is_empty() => {}
                Poll::Ready(Some(next)) => this.current.push_back(*next),
                Poll::Ready(None) => return Poll::Ready(Ok(&[])),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(this
            .current
            .front()
            .map(|(chunk, _)| &chunk[..])
            .unwrap_or_default()))
    }

    fn consume(mut self: Pin<&mut Self>, amount: usize) {
        if let Some((chunk, _charge)) = self.current.front_mut() {
            let n = amount.min(chunk.len());
            let _ = chunk.split_to(n);
            if chunk.is_empty() {
                self.current.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};

    const LIMIT: usize = 64 * 1024 * 1024;

    #[tokio::test]
    async fn buffered_reads_see_whole_chunks() {
        let (mut reader, mut writer) = pipe(LIMIT);
        writer.send(Bytes::from_static(b"abc")).await.unwrap();
        writer.send(Bytes::from_static(b"def")).await.unwrap();
        writer.close();
        assert_eq!(reader.fill_buf().await.unwrap(), b"abc");
        reader.consume(2);
        assert_eq!(reader.fill_buf().await.unwrap(), b"c");
        reader.consume(1);
        assert_eq!(reader.fill_buf().await.unwrap(), b"def");
        reader.consume(3);
        assert!(reader.fill_buf().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn bytes_arrive_in_order_then_eof() {
        let (mut reader, mut writer) = pipe(LIMIT);
        writer.send(Bytes::from_static(b"hello ")).await.unwrap();
        writer.send(Bytes::from_static(b"world")).await.unwrap();
        writer.close();
        let mut got = Vec::new();
        reader.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello world");
    }

    #[tokio::test]
    async fn small_reads_split_chunks() {
        let (mut reader, mut writer) = pipe(LIMIT);
        writer.send(Bytes::from_static(b"abcdef")).await.unwrap();
        let mut two = [0u8; 2];
        reader.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"ab");
        reader.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"cd");
    }

    #[tokio::test]
    async fn writer_waits_only_past_the_limit() {
        let (mut reader, mut writer) = pipe(LIMIT);
        let chunk = Bytes::from(vec![7u8; 1024 * 1024]);
        for _ in 0..(LIMIT / (chunk.len() + CHUNK_OVERHEAD)) {
            writer.send(chunk.clone()).await.unwrap();
        }
        // Full: the next send must wait until the reader takes something.
        let blocked = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            writer.send(chunk.clone()),
        )
        .await;
        assert!(blocked.is_err(), "send past the limit must wait");
        let mut first = vec![0u8; chunk.len()];
        reader.read_exact(&mut first).await.unwrap();
        writer.send(chunk.clone()).await.unwrap();
    }

    #[tokio::test]
    async fn send_fails_after_reader_is_gone() {
        let (reader, mut writer) = pipe(LIMIT);
        drop(reader);
        assert!(writer.send(Bytes::from_static(b"x")).await.is_err());
    }

    #[tokio::test]
    async fn tiny_chunks_are_charged_their_overhead() {
        // 100 one-byte chunks must not fit where 100 payload bytes would.
        let limit = 10 * (1 + CHUNK_OVERHEAD);
        let (_reader, mut writer) = pipe(limit);
        let mut queued = 0;
        for _ in 0..100 {
            let send = writer.send(Bytes::from_static(b"x"));
            match tokio::time::timeout(std::time::Duration::from_millis(50), send).await {
                Ok(result) => {
                    result.unwrap();
                    queued += 1;
                }
                Err(_) => break,
            }
        }
        assert_eq!(queued, 10, "one-byte chunks queued before the writer waits");
    }

    #[tokio::test]
    async fn pipes_of_one_connection_share_its_budget() {
        let budget = PipeBudget::new(4 * (1024 + CHUNK_OVERHEAD));
        let (_a_reader, mut a) = pipe_within(LIMIT, &budget);
        let (mut b_reader, mut b) = pipe_within(LIMIT, &budget);
        let chunk = Bytes::from(vec![1u8; 1024]);
        for _ in 0..2 {
            a.send(chunk.clone()).await.unwrap();
            b.send(chunk.clone()).await.unwrap();
        }
        assert_eq!(budget.available(), 0);
        // Both pipes are far below their own limit, yet the next chunk waits.
        let blocked =
            tokio::time::timeout(std::time::Duration::from_millis(100), a.send(chunk.clone()))
                .await;
        assert!(
            blocked.is_err(),
            "the connection's budget must bound all pipes"
        );
        // Reading from one pipe frees budget for the other.
        let mut first = vec![0u8; 1024];
        b_reader.read_exact(&mut first).await.unwrap();
        a.send(chunk).await.unwrap();
    }
}
