//! The socket under russh: writes queue here and a task of their own
//! drains them, so russh's session task never waits on the network to go
//! on reading it.
//!
//! russh's session loop writes its output and waits until the stream has
//! taken it before it reads again. With `TCP_NOTSENT_LOWAT` (see
//! `pacing.rs`) the socket takes little at a time, and two ends that both
//! have more to send than the other reads then wait for each other
//! forever: each one's receive buffer is full because its own session task
//! is stuck in a write (a 16 MiB full-duplex `-L` echo stalled this way).
//! OpenSSH's loop never has this problem: it polls reading and writing
//! separately. Here [`Paced`] gives russh the same: its writes go to an
//! in-memory queue at once, a writer task moves the queue to the socket
//! as the kernel takes it, and russh's reads go straight to the socket.
//!
//! The queue is not a place for data to wait: the connection's [`Pacer`]
//! keeps channel data out of russh while the queue and russh hold more than
//! its budget, and counts the bytes as the writer task hands them to the
//! kernel. Only russh's own messages (window grants, replies, keepalives)
//! enter unpaced. [`QUEUE_LIMIT`] bounds the queue against a peer that
//! grants window and then reads nothing: past it, russh's writes wait, as
//! they would on a full socket.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::sync::Notify;

use crate::pacing::Pacer;

/// Bytes the queue holds before russh's writes wait: far above what the
/// pacer lets in (its budgets are at most a few MiB), so only a peer that
/// stops reading reaches it.
pub const QUEUE_LIMIT: usize = 32 * 1024 * 1024;

/// Chunks joined into one write to the socket, at most.
const WRITE_BATCH: usize = 256 * 1024;

/// How long output still queued when russh lets go of the stream may take
/// to reach the peer (a DISCONNECT, the last of a channel's data). Without
/// a bound, a peer that stops reading would keep the socket and this task
/// alive after its session ended.
const LINGER: Duration = Duration::from_secs(10);

/// The socket under russh: reads go to the socket, writes to a queue that a
/// writer task drains (see the module documentation).
pub(crate) struct Paced<S> {
    read: ReadHalf<S>,
    queue: Arc<Queue>,
}

#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    /// Wakes the writer task: data queued, or the end of output (its
    /// waiters register before they look at the state, so
    /// `notify_waiters` loses nothing).
    more: Notify,
}

#[derive(Default)]
struct QueueState {
    chunks: VecDeque<Vec<u8>>,
    len: usize,
    /// russh shut its output down, or dropped the stream: the writer task
    /// sends what is queued and then ends.
    closing: bool,
    /// The writer task has ended; `failed` says why, if it was an error.
    ended: bool,
    failed: Option<(io::ErrorKind, String)>,
    /// russh's session task, waiting for room or for the shutdown to end.
    waiting: Option<Waker>,
}

impl QueueState {
    fn failure(&self) -> Option<io::Error> {
        self.failed
            .as_ref()
            .map(|(kind, text)| io::Error::new(*kind, text.clone()))
    }

    fn wake_session(&mut self) {
        if let Some(waker) = self.waiting.take() {
            waker.wake();
        }
    }
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // Nothing panics while holding the lock; a poisoned one still holds
        // consistent counts.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<S> Paced<S>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    /// Wraps `stream`, starting the writer task that drains the queue into
    /// it and counts what it writes for `pacer`.
    pub(crate) fn new(stream: S, pacer: Pacer) -> Paced<S> {
        let (read, write) = tokio::io::split(stream);
        let queue = Arc::new(Queue::default());
        tokio::spawn(drain(write, queue.clone(), pacer));
        Paced { read, queue }
    }
}

impl<S> Drop for Paced<S> {
    fn drop(&mut self) {
        // What russh queued (a DISCONNECT, say) still goes out.
        self.queue.lock().closing = true;
        self.queue.more.notify_waiters();
    }
}

/// Moves queued output to the socket until output is closed and sent, or
/// the socket fails.
async fn drain<S: AsyncWrite>(socket: WriteHalf<S>, queue: Arc<Queue>, pacer: Pacer) {
    let lingering = queue.clone();
    let draining = drain_until_closed(socket, queue, pacer);
    tokio::pin!(draining);
    // Until output is closed, as long as the connection lasts; after that,
    // at most LINGER.
    let closed = async {
        loop {
            let more = lingering.more.notified();
            tokio::pin!(more);
            more.as_mut().enable();
            if lingering.lock().closing {
                tokio::time::sleep(LINGER).await;
                return;
            }
            more.await;
        }
    };
    tokio::select! {
        () = &mut draining => {}
        () = closed => {
            tracing::debug!("TCP output: the peer took nothing for {LINGER:?} after the session ended");
            end(&lingering, Some(io::ErrorKind::TimedOut.into()));
        }
    }
}

/// [`drain`] without the bound on lingering.
async fn drain_until_closed<S: AsyncWrite>(
    mut socket: WriteHalf<S>,
    queue: Arc<Queue>,
    pacer: Pacer,
) {
    loop {
        let more = queue.more.notified();
        tokio::pin!(more);
        more.as_mut().enable();
        let (batch, closing) = {
            let mut state = queue.lock();
            (take_batch(&mut state.chunks), state.closing)
        };
        let Some(batch) = batch else {
            if closing {
                let result = socket.shutdown().await;
                end(&queue, result.err());
                return;
            }
            more.await;
            continue;
        };
        if let Err(error) = write_counted(&mut socket, &batch, &pacer).await {
            end(&queue, Some(error));
            return;
        }
        let mut state = queue.lock();
        state.len = state.len.saturating_sub(batch.len());
        state.wake_session();
    }
}

/// The next write to the socket: the first queued chunk, joined with those
/// after it up to [`WRITE_BATCH`] (a copy only when there are several, and
/// no buffer kept between writes: an idle connection holds none).
fn take_batch(chunks: &mut VecDeque<Vec<u8>>) -> Option<Vec<u8>> {
    let mut batch = chunks.pop_front()?;
    while let Some(next) = chunks.front() {
        if batch.len() + next.len() > WRITE_BATCH {
            break;
        }
        batch.extend_from_slice(next);
        chunks.pop_front();
    }
    Some(batch)
}

/// Writes all of `bytes`, telling the pacer when the kernel makes the write
/// wait and how many bytes it took.
async fn write_counted<W: AsyncWrite + Unpin>(
    socket: &mut W,
    mut bytes: &[u8],
    pacer: &Pacer,
) -> io::Result<()> {
    while !bytes.is_empty() {
        let written = std::future::poll_fn(|cx| {
            let result = Pin::new(&mut *socket).poll_write(cx, bytes);
            pacer.write_waiting(result.is_pending());
            result
        })
        .await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        pacer.written(written);
        bytes = bytes.get(written..).unwrap_or_default();
    }
    Ok(())
}

/// Marks the writer task ended (with `error`, if any) and wakes russh.
fn end(queue: &Queue, error: Option<io::Error>) {
    let mut state = queue.lock();
    state.ended = true;
    state.chunks.clear();
    state.len = 0;
    state.failed = error.map(|e| (e.kind(), e.to_string()));
    state.wake_session();
}

impl<S: AsyncRead> AsyncRead for Paced<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl<S> AsyncWrite for Paced<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let queue = self.queue.clone();
        let mut state = queue.lock();
        if let Some(error) = state.failure() {
            return Poll::Ready(Err(error));
        }
        if state.ended || state.closing {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if state.len >= QUEUE_LIMIT {
            state.waiting = Some(cx.waker().clone());
            return Poll::Pending;
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        state.chunks.push_back(buf.to_vec());
        state.len += buf.len();
        drop(state);
        queue.more.notify_waiters();
        Poll::Ready(Ok(buf.len()))
    }

    /// Queued output is the writer task's: there is nothing to flush here
    /// (a failed socket shows at the next write).
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.queue.lock().failure() {
            Some(error) => Poll::Ready(Err(error)),
            None => Poll::Ready(Ok(())),
        }
    }

    /// Ends once everything queued is written and the socket shut down.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let queue = self.queue.clone();
        let mut state = queue.lock();
        if state.ended {
            return Poll::Ready(state.failure().map_or(Ok(()), Err));
        }
        state.waiting = Some(cx.waker().clone());
        let newly = !state.closing;
        state.closing = true;
        drop(state);
        if newly {
            queue.more.notify_waiters();
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn writes_return_at_once_and_reach_the_peer_in_order_then_shutdown_ends_it() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let mut paced = Paced::new(ours, Pacer::new(100));
        // Far more than the duplex buffer: with nobody reading yet, the
        // writes must still return (the queue takes them).
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for chunk in data.chunks(7_000) {
            paced.write_all(chunk).await.expect("queued");
        }
        let reader = tokio::spawn(async move {
            let mut back = Vec::new();
            theirs.read_to_end(&mut back).await.map(|_| back)
        });
        paced
            .shutdown()
            .await
            .expect("shut down after the queue drained");
        let back = reader.await.expect("reader").expect("read");
        assert_eq!(back, data);
    }

    #[tokio::test]
    async fn reading_goes_on_while_the_peer_reads_nothing() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let mut paced = Paced::new(ours, Pacer::new(100));
        paced.write_all(&[7u8; 100_000]).await.expect("queued");
        theirs.write_all(b"keystroke").await.expect("peer writes");
        let mut got = [0u8; 9];
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            paced.read_exact(&mut got),
        )
        .await
        .expect("read while our own output waits")
        .expect("read");
        assert_eq!(&got, b"keystroke");
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_reads_nothing_is_let_go_after_the_linger() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut paced = Paced::new(ours, Pacer::new(100));
        paced.write_all(&[1u8; 10_000]).await.expect("queued");
        drop(paced);
        tokio::time::sleep(LINGER * 2).await;
        // The writer task has given up and dropped its half: the peer sees
        // what fitted in its buffer, then the end.
        let mut back = Vec::new();
        tokio::time::timeout(LINGER, theirs.read_to_end(&mut back))
            .await
            .expect("the writer let go")
            .expect("read");
        assert!(back.len() < 10_000, "read {} bytes", back.len());
    }

    #[tokio::test]
    async fn a_dropped_stream_still_sends_what_was_queued() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut paced = Paced::new(ours, Pacer::new(100));
        paced.write_all(b"goodbye").await.expect("queued");
        drop(paced);
        let mut back = Vec::new();
        theirs.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, b"goodbye");
    }
}
