//! Receive windows granted when the application has consumed the data.
//!
//! russh grants a channel's window back as soon as data arrives (its
//! reader is expected to keep up). sshq hands arriving data to a pipe the
//! application reads at its own pace, so granting on arrival let a peer
//! fill that pipe (up to its 64 MiB limit) while the application read
//! nothing: a queue the window exists to prevent. With russh's
//! `window_on_consume` (third_party/russh/PATCHES.md, change 7) the window
//! is granted here instead: [`ConsumingReader`] counts what the
//! application reads, and [`grant_consumed`] returns it to the peer in
//! steps of [`GRANT_STEP`], as OpenSSH's channel_check_window does once
//! enough has been consumed.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use russh::{ChannelMsg, WindowGrant};
use sshq_core::pipe::PipeReader;
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};
use tokio::sync::{watch, Notify};

/// Consumed bytes are granted back once this many have gathered: an
/// eighth of the window, so the peer always has most of it and a bulk
/// transfer is not slowed, without a WINDOW_ADJUST per read.
pub(crate) const GRANT_STEP: u64 = crate::CHANNEL_WINDOW as u64 / 8;

/// One channel's consumed and not yet granted bytes (data and stderr
/// share the channel's window).
#[derive(Default)]
pub(crate) struct Consumed {
    bytes: AtomicU64,
    ready: Notify,
}

impl Consumed {
    /// Counts `bytes` the application has read, or that nobody will read
    /// (a reader that went away: the peer must not stall on them).
    pub(crate) fn add(&self, bytes: u64) {
        let total = self
            .bytes
            .fetch_add(bytes, Ordering::AcqRel)
            .saturating_add(bytes);
        if total >= GRANT_STEP {
            self.ready.notify_one();
        }
    }

    fn take(&self) -> u64 {
        self.bytes.swap(0, Ordering::AcqRel)
    }
}

/// Grants the peer what the application consumed on a channel, until the
/// channel closes. The grants go ahead of any channel data queued in the
/// session (russh's priority queue): behind data that waits for the peer's
/// window they could stall both directions of a full-duplex channel.
pub(crate) async fn grant_consumed<S>(
    grant: WindowGrant<S>,
    consumed: Arc<Consumed>,
    mut closed: watch::Receiver<bool>,
) where
    S: From<(russh::ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    loop {
        tokio::select! {
            () = consumed.ready.notified() => {}
            _ = closed.wait_for(|c| *c) => return,
        }
        let mut bytes = consumed.take();
        while bytes > 0 {
            // russh caps the grant at the configured window.
            let step = u32::try_from(bytes).unwrap_or(u32::MAX);
            bytes -= u64::from(step);
            if grant.consumed(step).is_err() {
                return; // the session is gone
            }
        }
    }
}

/// A channel half's reader that counts what the application consumes.
pub struct ConsumingReader {
    inner: PipeReader,
    consumed: Arc<Consumed>,
}

impl ConsumingReader {
    pub(crate) fn new(inner: PipeReader, consumed: Arc<Consumed>) -> ConsumingReader {
        ConsumingReader { inner, consumed }
    }
}

impl Drop for ConsumingReader {
    /// What was left unread will never be: the whole window goes back to
    /// the peer (russh caps the grant), and later data is discarded and
    /// granted as it arrives (see the demultiplexer in `channel.rs`).
    fn drop(&mut self) {
        self.consumed.add(u64::from(crate::CHANNEL_WINDOW));
    }
}

impl AsyncRead for ConsumingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        if read > 0 {
            self.consumed.add(read as u64);
        }
        result
    }
}

impl AsyncBufRead for ConsumingReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        Pin::new(&mut self.get_mut().inner).poll_fill_buf(cx)
    }

    fn consume(mut self: Pin<&mut Self>, amt: usize) {
        Pin::new(&mut self.inner).consume(amt);
        self.consumed.add(amt as u64);
    }
}
