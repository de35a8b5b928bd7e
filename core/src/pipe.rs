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

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// The sending end, driven by the transport.
pub struct PipeWriter {
    chunks: Option<mpsc::UnboundedSender<(Bytes, OwnedSemaphorePermit)>>,
    budget: Arc<Semaphore>,
    limit: usize,
}

/// The receiving end: the channel's `data_in` or `ext_in`.
pub struct PipeReader {
    chunks: mpsc::UnboundedReceiver<(Bytes, OwnedSemaphorePermit)>,
    /// What is left of the chunk being read; its permit is released (and
    /// the budget refilled) once it is read in full.
    current: VecDeque<(Bytes, OwnedSemaphorePermit)>,
}

/// A pipe whose writer waits once `limit` bytes are unread.
pub fn pipe(limit: usize) -> (PipeReader, PipeWriter) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        PipeReader {
            chunks: rx,
            current: VecDeque::new(),
        },
        PipeWriter {
            chunks: Some(tx),
            budget: Arc::new(Semaphore::new(limit.min(Semaphore::MAX_PERMITS))),
            limit,
        },
    )
}

impl PipeWriter {
    /// Queues `data`; waits only while the reader is `limit` bytes behind.
    /// Fails once the reader is gone or after [`PipeWriter::close`].
    pub async fn send(&mut self, data: Bytes) -> Result<(), ()> {
        if data.is_empty() {
            return Ok(());
        }
        let Some(chunks) = &self.chunks else {
            return Err(());
        };
        // A chunk is at most one SSH packet, far below the limit; clamp
        // anyway so an oversized one cannot wait forever.
        let cost = u32::try_from(data.len().min(self.limit)).map_err(|_| ())?;
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(cost)
            .await
            .map_err(|_| ())?;
        chunks.send((data, permit)).map_err(|_| ())
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
            if let Some((chunk, _permit)) = self.current.front_mut() {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk.split_to(n));
                if chunk.is_empty() {
                    self.current.pop_front();
                }
                return Poll::Ready(Ok(()));
            }
            match self.chunks.poll_recv(cx) {
                Poll::Ready(Some(next)) => self.current.push_back(next),
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
                Poll::Ready(Some(next)) => this.current.push_back(next),
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
        if let Some((chunk, _permit)) = self.current.front_mut() {
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
        for _ in 0..(LIMIT / chunk.len()) {
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
}
