//! A byte pipe that lets russh hand over a channel's data without waiting,
//! up to a large bound.
//!
//! russh's session task both reads and writes the connection, and it opens
//! the peer's window as soon as data *arrives*, not when it is consumed. If
//! handing data to a channel could block that task, a channel whose reader
//! waits on its own output (a remote `cat`) would stop the task that sends
//! that output: a deadlock. So the hand-over only blocks once a channel has
//! [`PIPE_LIMIT`] bytes unread; below that the task moves on at once.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Unread bytes one channel half may hold before the hand-over waits.
pub(crate) const PIPE_LIMIT: usize = 64 * 1024 * 1024;

/// The sending end, driven by the channel's demultiplexer.
pub(crate) struct PipeWriter {
    chunks: Option<mpsc::UnboundedSender<(Bytes, OwnedSemaphorePermit)>>,
    budget: Arc<Semaphore>,
}

/// The receiving end: the channel's `data_in` or `ext_in`.
pub struct PipeReader {
    chunks: mpsc::UnboundedReceiver<(Bytes, OwnedSemaphorePermit)>,
    /// What is left of the chunk being read; its permit is released (and
    /// the budget refilled) once it is read in full.
    current: VecDeque<(Bytes, OwnedSemaphorePermit)>,
}

pub(crate) fn pipe() -> (PipeReader, PipeWriter) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        PipeReader {
            chunks: rx,
            current: VecDeque::new(),
        },
        PipeWriter {
            chunks: Some(tx),
            budget: Arc::new(Semaphore::new(PIPE_LIMIT)),
        },
    )
}

impl PipeWriter {
    /// Queues `data`; waits only while the reader is [`PIPE_LIMIT`] behind.
    /// Fails once the reader is gone or after [`PipeWriter::close`].
    pub(crate) async fn send(&mut self, data: Bytes) -> Result<(), ()> {
        if data.is_empty() {
            return Ok(());
        }
        let Some(chunks) = &self.chunks else {
            return Err(());
        };
        // A chunk is at most one SSH packet, far below the limit; clamp
        // anyway so an oversized one cannot wait forever.
        let cost = u32::try_from(data.len().min(PIPE_LIMIT)).map_err(|_| ())?;
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(cost)
            .await
            .map_err(|_| ())?;
        chunks.send((data, permit)).map_err(|_| ())
    }

    /// End of data: the reader sees EOF once it has read what is queued.
    pub(crate) fn close(&mut self) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn bytes_arrive_in_order_then_eof() {
        let (mut reader, mut writer) = pipe();
        writer.send(Bytes::from_static(b"hello ")).await.unwrap();
        writer.send(Bytes::from_static(b"world")).await.unwrap();
        writer.close();
        let mut got = Vec::new();
        reader.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello world");
    }

    #[tokio::test]
    async fn small_reads_split_chunks() {
        let (mut reader, mut writer) = pipe();
        writer.send(Bytes::from_static(b"abcdef")).await.unwrap();
        let mut two = [0u8; 2];
        reader.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"ab");
        reader.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"cd");
    }

    #[tokio::test]
    async fn writer_waits_only_past_the_limit() {
        let (mut reader, mut writer) = pipe();
        let chunk = Bytes::from(vec![7u8; 1024 * 1024]);
        for _ in 0..(PIPE_LIMIT / chunk.len()) {
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
        let (reader, mut writer) = pipe();
        drop(reader);
        assert!(writer.send(Bytes::from_static(b"x")).await.is_err());
    }
}
