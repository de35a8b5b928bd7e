//! A byte stream that can be cut from outside: the way to end a russh
//! session that is stuck waiting on a slow or silent peer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Default)]
struct CutState {
    cut: AtomicBool,
    /// The task last blocked on the stream, woken when the stream is cut.
    waiter: Mutex<Option<Waker>>,
}

/// Wraps a stream; after [`Cutter::cut`] every read and write fails.
pub(crate) struct Cuttable<S> {
    inner: S,
    state: Arc<CutState>,
}

/// Cuts the stream it was made with.
#[derive(Clone)]
pub(crate) struct Cutter {
    state: Arc<CutState>,
}

impl<S> Cuttable<S> {
    pub(crate) fn new(inner: S) -> (Self, Cutter) {
        let state = Arc::new(CutState::default());
        (
            Cuttable {
                inner,
                state: state.clone(),
            },
            Cutter { state },
        )
    }

    fn check(&self, cx: &Context<'_>) -> io::Result<()> {
        if let Ok(mut waiter) = self.state.waiter.lock() {
            *waiter = Some(cx.waker().clone());
        }
        if self.state.cut.load(Ordering::Acquire) {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connection cut"));
        }
        Ok(())
    }
}

impl Cutter {
    pub(crate) fn cut(&self) {
        self.state.cut.store(true, Ordering::Release);
        if let Ok(mut waiter) = self.state.waiter.lock() {
            if let Some(waker) = waiter.take() {
                waker.wake();
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Cuttable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Cuttable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Runs `fut` until `deadline` (if any); `None` when the deadline passed.
pub(crate) async fn before<F: Future>(
    deadline: Option<tokio::time::Instant>,
    fut: F,
) -> Option<F::Output> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, fut).await.ok(),
        None => Some(fut.await),
    }
}
