//! Send-side backpressure over one TCP connection: no queue in front of a
//! keystroke.
//!
//! Every channel of an SSH-over-TCP connection shares one ordered byte
//! stream, so whatever bulk data waits to be sent sits in front of the next
//! echo of an interactive session. It can wait in three places: russh's
//! queue of channel messages and its write buffer, the kernel's socket
//! buffer (autotuned up to `tcp_wmem`'s maximum, 4 MiB by default), and the
//! path. Only the last is needed to keep the link busy. This module bounds
//! the other two:
//!
//! - the kernel: `socket_options::tune_socket` sets `TCP_NOTSENT_LOWAT`, so the socket
//!   stops taking data once [`NOTSENT_LOWAT`] bytes wait unsent (data in
//!   flight is the congestion window's business, not a queue of ours);
//! - russh: a [`Pacer`] per connection counts the bytes of bulk channels
//!   handed to russh and not yet written to the socket, and holds a bulk
//!   channel's next write while that count is at [`SEND_BUDGET`]. The
//!   socket wrapper [`Paced`] counts what russh writes, so the count falls
//!   exactly as fast as the socket takes data: channel data is pulled into
//!   the SSH layer only when the socket can take it.
//!
//! On a slow path the budget shrinks further, to what the socket drains in
//! [`QUEUE_TIME`] (at least [`MIN_BUDGET`]), and so does the largest bulk
//! write: the measured drain rate, sampled while the socket pushes back,
//! sets how many bytes are a short wait.
//!
//! The small budgets apply only while an interactive channel (one with a
//! pty) is open on the connection: with no keystroke to protect, bulk data
//! is held only at [`BULK_ONLY_BUDGET`], however often the socket pushes
//! back (a transfer alone runs at the socket's speed; holding it at the
//! small budget cost loopback uploads four fifths of their throughput).
//!
//! Interactive channels are never held: their data goes
//! straight to russh, behind at most the budget and the low-water mark.
//! Bulk channels waiting for room are all woken when room appears and each
//! hands over at most one packet ([`MAX_BULK_WRITE`]), so they take turns
//! instead of one channel filling the budget.
//!
//! The third place, russh's session loop, reads the socket only between
//! writes; third_party/russh change 8 makes it read what has arrived
//! before it queues more output, and `paced.rs` makes its writes return at
//! once (a writer task drains them), so a write never keeps it from reading.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Notify;

/// Bulk channel bytes russh may hold that the socket has not taken yet
/// (a write is let through below it, so up to this plus
/// [`MAX_BULK_WRITE`]). russh's session task reads the socket only
/// between writes, and a write waits while the kernel holds
/// [`NOTSENT_LOWAT`] unsent: so this, divided by the link's rate, is also
/// how long a keystroke may wait to be read. At 1% loss and 50 ms RTT a
/// bulk flow gets about 300 KB/s: 32 KiB is about 0.1 s.
pub const SEND_BUDGET: usize = 32 * 1024;

/// The budget while the socket takes everything at once (no write has
/// waited for the kernel for [`PUSHBACK_MEMORY`]): nothing queues then, and
/// a deeper pipeline keeps loopback bulk transfers fast when the channel
/// writer and russh's session task take turns on a busy machine.
pub const OPEN_BUDGET: usize = 512 * 1024;

/// The budget while no interactive channel is open: no keystroke to
/// protect, so it need not shrink when the socket pushes back, but it
/// still bounds what waits in russh and in the queue in front of the
/// socket (`paced.rs`): a shell opened next would otherwise find the bulk
/// channels' whole windows queued ahead of it. The open budget: enough to
/// keep a loopback transfer's pipeline full.
pub const BULK_ONLY_BUDGET: usize = OPEN_BUDGET;

/// How long a write that had to wait for the kernel keeps the budget at
/// [`SEND_BUDGET`]. Long: on a slow or lossy link the socket pushes back
/// every few packets, and with a memory of 250 ms the budget still opened
/// now and then, putting 512 KiB (seconds at 1% loss) in front of an echo
/// (interop/run hol --quick: p99 2.8 s against 1.3 s with 32 KiB only).
const PUSHBACK_MEMORY: Duration = Duration::from_secs(5);

/// The most a bulk channel hands russh in one write (one packet): OpenSSH's
/// packet size, so that what waits in front of an echo stays small even
/// when the peer accepts 64 KiB packets.
pub const MAX_BULK_WRITE: usize = 32 * 1024;

/// While the socket pushes back, the budget is also at most what the
/// socket drains in this long (and the largest bulk write at most the
/// budget): on a slow path, 32 KiB is a long wait in front of a keystroke
/// (at 1% loss and 50 ms RTT a CUBIC flow drains about 250 KB/s, and 64 KiB
/// of budget and write took a quarter of a second); at 50 Mbit/s this is
/// 125 KB, and [`SEND_BUDGET`] applies.
const QUEUE_TIME: Duration = Duration::from_millis(20);

/// The smallest budget, however slow the path: a few packets, so that bulk
/// data still moves in writes of a useful size.
pub const MIN_BUDGET: usize = 4 * 1024;

/// How often the drain rate is sampled (see [`Pacer::written`]).
const RATE_INTERVAL: Duration = Duration::from_millis(100);

/// `TCP_NOTSENT_LOWAT` on sshq's and sshqd's TCP sockets: unsent bytes the
/// kernel accepts. Data in flight is the congestion window's; this is only
/// the queue behind it, kept to half a packet of ours.
pub const NOTSENT_LOWAT: u32 = 16 * 1024;

/// How long a held bulk write waits for the socket to make progress before
/// it assumes the counted bytes will never be written (russh drops the data
/// of a channel that closed with data still queued) and forgets them. Only
/// reached when nothing at all is written and no write is blocked, so it
/// never fires while the socket is merely slow.
const STALE_AFTER: Duration = Duration::from_millis(100);

/// One connection's count of bulk bytes in russh not yet on the socket.
#[derive(Clone)]
pub(crate) struct Pacer {
    state: Arc<PacerState>,
}

struct PacerState {
    budget: usize,
    /// Bulk bytes handed to russh and not yet seen written to the socket.
    queued: AtomicUsize,
    /// Every byte written to the socket so far: shows progress.
    written: AtomicU64,
    /// A socket write is waiting for the kernel to take data.
    write_blocked: AtomicBool,
    /// When a socket write last had to wait (milliseconds after `epoch`,
    /// plus one; 0: never).
    last_pushback_ms: AtomicU64,
    epoch: std::time::Instant,
    /// Signalled when bytes reach the socket.
    room: Notify,
    /// Interactive channels open on the connection. With none there is no
    /// keystroke to protect, and bulk data is not held at all: the socket's
    /// own backpressure paces it, at full speed.
    interactive_open: AtomicUsize,
    /// The socket's drain rate, bytes per second (0: not measured yet),
    /// sampled every [`RATE_INTERVAL`] while the socket pushes back (when it
    /// does not, writes are limited by the sender, not the path).
    drain_rate: AtomicU64,
    /// The last rate sample: when (as `last_pushback_ms`) and `written` then.
    sampled_ms: AtomicU64,
    sampled_written: AtomicU64,
}

impl Pacer {
    pub(crate) fn new(budget: usize) -> Pacer {
        Pacer {
            state: Arc::new(PacerState {
                budget,
                queued: AtomicUsize::new(0),
                written: AtomicU64::new(0),
                write_blocked: AtomicBool::new(false),
                last_pushback_ms: AtomicU64::new(0),
                epoch: std::time::Instant::now(),
                room: Notify::new(),
                interactive_open: AtomicUsize::new(0),
                drain_rate: AtomicU64::new(0),
                sampled_ms: AtomicU64::new(0),
                sampled_written: AtomicU64::new(0),
            }),
        }
    }

    fn has_room(&self) -> bool {
        let budget = match self.state.interactive_open.load(Ordering::Acquire) {
            0 => BULK_ONLY_BUDGET,
            _ => self.budget(),
        };
        self.state.queued.load(Ordering::Acquire) < budget
    }

    fn interactive_opened(&self) {
        self.state.interactive_open.fetch_add(1, Ordering::AcqRel);
    }

    fn interactive_closed(&self) {
        let _ =
            self.state
                .interactive_open
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                    Some(open.saturating_sub(1))
                });
        // Bulk writers held for its sake may go on.
        self.state.room.notify_waiters();
    }

    /// The small budget while the socket pushes back (smaller still on a
    /// slow path, see [`QUEUE_TIME`]), else the open one.
    fn budget(&self) -> usize {
        if self.pushed_back_within(PUSHBACK_MEMORY) {
            self.small_budget()
        } else {
            self.state.budget.max(OPEN_BUDGET)
        }
    }

    /// The configured budget, cut to [`QUEUE_TIME`] of the measured drain
    /// rate, never below [`MIN_BUDGET`] (nor above the configured one).
    fn small_budget(&self) -> usize {
        let configured = self.state.budget;
        let rate = self.state.drain_rate.load(Ordering::Acquire);
        if rate == 0 {
            return configured;
        }
        let per_queue_time = rate.saturating_mul(QUEUE_TIME.as_millis() as u64) / 1000;
        let adapted = usize::try_from(per_queue_time).unwrap_or(usize::MAX);
        adapted.max(MIN_BUDGET).min(configured)
    }

    /// The most a bulk channel may hand russh in one write.
    fn write_limit(&self) -> usize {
        if self.state.interactive_open.load(Ordering::Acquire) == 0 {
            return MAX_BULK_WRITE;
        }
        MAX_BULK_WRITE.min(self.budget())
    }

    /// Whether a socket write had to wait in the last `within`.
    fn pushed_back_within(&self, within: Duration) -> bool {
        let last = self.state.last_pushback_ms.load(Ordering::Acquire);
        last != 0 && self.now_ms().saturating_sub(last - 1) < within.as_millis() as u64
    }

    /// Samples the drain rate once per [`RATE_INTERVAL`], from the bytes
    /// written since the last sample; a sample counts only if the socket
    /// pushed back during it (else the sender, not the path, set the pace).
    fn sample_rate(&self) {
        let now = self.now_ms();
        let since = self.state.sampled_ms.load(Ordering::Acquire);
        let elapsed = now.saturating_sub(since);
        if elapsed < RATE_INTERVAL.as_millis() as u64 {
            return;
        }
        // One writer samples; a racing one finds the new mark and returns.
        if self
            .state
            .sampled_ms
            .compare_exchange(since, now, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let written = self.state.written.load(Ordering::Acquire);
        let before = self.state.sampled_written.swap(written, Ordering::AcqRel);
        if since == 0 || !self.pushed_back_within(Duration::from_millis(elapsed)) {
            return;
        }
        let sample = written.saturating_sub(before).saturating_mul(1000) / elapsed.max(1);
        let old = self.state.drain_rate.load(Ordering::Acquire);
        // A moving average over about four samples.
        let rate = if old == 0 {
            sample
        } else {
            (old * 3 + sample) / 4
        };
        self.state.drain_rate.store(rate, Ordering::Release);
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.state.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// Notes that the socket made a write wait.
    fn pushed_back(&self) {
        let now = self.now_ms().saturating_add(1);
        self.state.last_pushback_ms.store(now, Ordering::Release);
    }

    /// Counts bytes a bulk channel handed to russh.
    fn handed_over(&self, bytes: usize) {
        self.state.queued.fetch_add(bytes, Ordering::AcqRel);
    }

    /// Notes whether a socket write is waiting for the kernel to take data
    /// (a wait is a pushback).
    pub(crate) fn write_waiting(&self, waiting: bool) {
        self.state.write_blocked.store(waiting, Ordering::Release);
        if waiting {
            self.pushed_back();
        }
    }

    /// Counts bytes written to the socket. They include packet
    /// overhead and other channels' data, so the count of bulk bytes may
    /// fall slightly faster than the truth: a few percent of the budget.
    pub(crate) fn written(&self, bytes: usize) {
        let _ = self
            .state
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                Some(queued.saturating_sub(bytes))
            });
        self.state.written.fetch_add(bytes as u64, Ordering::AcqRel);
        self.sample_rate();
        if self.has_room() {
            self.state.room.notify_waiters();
        }
    }

    /// Resolves once a bulk channel may hand russh more data.
    async fn until_room(self) {
        loop {
            let notified = self.state.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.has_room() {
                return;
            }
            let before = self.state.written.load(Ordering::Acquire);
            if tokio::time::timeout(STALE_AFTER, notified).await.is_ok() {
                continue;
            }
            let progressed = self.state.written.load(Ordering::Acquire) != before;
            if !progressed && !self.state.write_blocked.load(Ordering::Acquire) {
                // Nothing was written and nothing waits to be: whatever is
                // still counted was dropped by russh (see STALE_AFTER).
                tracing::debug!("send pacing: forgetting bytes russh never wrote");
                self.state.queued.store(0, Ordering::Release);
                return;
            }
        }
    }
}

/// The pacing of one channel writer: its connection's [`Pacer`], and
/// whether the channel is interactive (then it is never held).
pub(crate) struct WriterPacing {
    pacer: Pacer,
    interactive: Interactive,
    waiting: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// This write was let through and russh has not accepted it yet: it
    /// is not held again (russh may already have taken window for it).
    admitted: bool,
}

impl WriterPacing {
    pub(crate) fn new(pacer: Pacer, interactive: Interactive) -> WriterPacing {
        WriterPacing {
            pacer,
            interactive,
            waiting: None,
            admitted: false,
        }
    }

    /// The part of `buf` a write may hand russh at once.
    pub(crate) fn limit<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        if self.interactive.get() {
            buf
        } else {
            buf.get(..self.pacer.write_limit()).unwrap_or(buf)
        }
    }

    /// Ready once this channel may hand russh a write.
    pub(crate) fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.admitted || self.interactive.get() {
            self.waiting = None;
            return Poll::Ready(());
        }
        if self.waiting.is_none() && !self.pacer.has_room() {
            self.waiting = Some(Box::pin(self.pacer.clone().until_room()));
        }
        if let Some(waiting) = &mut self.waiting {
            std::task::ready!(waiting.as_mut().poll(cx));
            self.waiting = None;
        }
        self.admitted = true;
        Poll::Ready(())
    }

    /// Counts a write russh accepted.
    pub(crate) fn handed_over(&mut self, bytes: usize) {
        self.admitted = false;
        if !self.interactive.get() {
            self.pacer.handed_over(bytes);
        }
    }
}

/// Whether a channel carries an interactive session (a pty was requested
/// on it), shared by the channel's writers and whoever sees the request.
/// While one is open on a connection, its [`Pacer`] holds bulk data; once
/// the last clone of the flag is gone (the channel and its parts dropped),
/// the connection counts it closed.
#[derive(Clone, Default)]
pub(crate) struct Interactive(Arc<InteractiveFlag>);

#[derive(Default)]
struct InteractiveFlag {
    marked: AtomicBool,
    pacer: std::sync::OnceLock<Pacer>,
}

impl Interactive {
    pub(crate) fn mark(&self) {
        if !self.0.marked.swap(true, Ordering::AcqRel) {
            if let Some(pacer) = self.0.pacer.get() {
                pacer.interactive_opened();
            }
        }
    }

    pub(crate) fn get(&self) -> bool {
        self.0.marked.load(Ordering::Acquire)
    }

    /// Ties the flag to its connection's pacer (once; later calls are
    /// ignored).
    pub(crate) fn attach(&self, pacer: &Pacer) {
        if self.0.pacer.set(pacer.clone()).is_ok() && self.get() {
            pacer.interactive_opened();
        }
    }
}

impl Drop for InteractiveFlag {
    fn drop(&mut self) {
        if *self.marked.get_mut() {
            if let Some(pacer) = self.pacer.get() {
                pacer.interactive_closed();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_budget_holds_bulk_until_the_socket_takes_bytes() {
        let pacer = Pacer::new(100);
        let _shell = open_shell(&pacer);
        pacer.pushed_back(); // a congested socket: the small budget applies
        let mut bulk = WriterPacing::new(pacer.clone(), Interactive::default());
        assert!(bulk
            .poll_room(&mut Context::from_waker(&futures_noop_waker()))
            .is_ready());
        bulk.handed_over(100);
        let waker = futures_noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(
            bulk.poll_room(&mut cx).is_pending(),
            "a full budget holds bulk"
        );
        // A blocked socket write: the counted bytes are not forgotten.
        pacer.state.write_blocked.store(true, Ordering::Release);
        tokio::time::sleep(STALE_AFTER * 2).await;
        pacer.pushed_back(); // still congested, however long the sleep took
        assert!(
            bulk.poll_room(&mut cx).is_pending(),
            "still held while the socket is blocked"
        );
        pacer.written(40);
        assert!(
            bulk.poll_room(&mut cx).is_ready(),
            "room once the socket took bytes"
        );
        assert_eq!(pacer.state.queued.load(Ordering::Acquire), 60);
    }

    #[tokio::test]
    async fn the_open_budget_applies_until_the_socket_pushes_back() {
        let pacer = Pacer::new(100);
        let _shell = open_shell(&pacer);
        pacer.handed_over(1000);
        assert!(
            pacer.has_room(),
            "a socket that never waited: the open budget"
        );
        pacer.pushed_back();
        assert!(!pacer.has_room(), "after a pushback: the small budget");
        let fresh = Pacer::new(100);
        let _fresh_shell = open_shell(&fresh);
        fresh.handed_over(OPEN_BUDGET);
        assert!(!fresh.has_room(), "never beyond the open budget");
    }

    #[tokio::test]
    async fn an_interactive_channel_is_never_held_and_never_counted() {
        let pacer = Pacer::new(100);
        pacer.handed_over(1000);
        let interactive = Interactive::default();
        interactive.mark();
        let mut shell = WriterPacing::new(pacer.clone(), interactive);
        let waker = futures_noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(shell.poll_room(&mut cx).is_ready());
        shell.handed_over(10);
        assert_eq!(pacer.state.queued.load(Ordering::Acquire), 1000);
    }

    #[tokio::test]
    async fn bytes_russh_never_writes_are_forgotten_once_the_socket_is_idle() {
        let pacer = Pacer::new(100);
        let _shell = open_shell(&pacer);
        pacer.pushed_back();
        pacer.handed_over(100);
        tokio::time::timeout(STALE_AFTER * 5, pacer.clone().until_room())
            .await
            .expect("an idle socket frees the budget");
        assert!(pacer.has_room());
    }

    /// An interactive channel on `pacer`'s connection, open while held.
    fn open_shell(pacer: &Pacer) -> Interactive {
        let shell = Interactive::default();
        shell.attach(pacer);
        shell.mark();
        shell
    }

    #[tokio::test]
    async fn without_an_interactive_channel_bulk_is_held_only_at_the_open_budget() {
        let pacer = Pacer::new(100);
        pacer.pushed_back();
        pacer.handed_over(OPEN_BUDGET / 2);
        assert!(pacer.has_room(), "no keystroke to protect: the open budget");
        let shell = open_shell(&pacer);
        assert!(!pacer.has_room(), "a shell opened: the budget applies");
        let writer_clone = shell.clone();
        drop(shell);
        assert!(!pacer.has_room(), "still open while any part holds it");
        drop(writer_clone);
        assert!(pacer.has_room(), "the shell is gone: the open budget again");
        pacer.handed_over(OPEN_BUDGET);
        assert!(!pacer.has_room(), "never beyond the open budget");
    }

    #[tokio::test]
    async fn a_slow_path_shrinks_the_budget_and_the_writes() {
        let pacer = Pacer::new(SEND_BUDGET);
        let _shell = open_shell(&pacer);
        pacer.pushed_back();
        assert_eq!(pacer.budget(), SEND_BUDGET, "no rate measured yet");
        // The socket drains 100 KB/s while it pushes back: 20 ms of that is
        // 2 KB, below the floor.
        pacer.state.drain_rate.store(100_000, Ordering::Release);
        assert_eq!(pacer.budget(), MIN_BUDGET);
        assert_eq!(pacer.write_limit(), MIN_BUDGET);
        // 1 MB/s: 20 KB.
        pacer.state.drain_rate.store(1_000_000, Ordering::Release);
        assert_eq!(pacer.budget(), 20_000);
        // A fast path keeps the configured budget and packet size.
        pacer.state.drain_rate.store(50_000_000, Ordering::Release);
        assert_eq!(pacer.budget(), SEND_BUDGET);
        assert_eq!(pacer.write_limit(), MAX_BULK_WRITE);
    }

    #[tokio::test]
    async fn the_rate_is_sampled_only_while_the_socket_pushes_back() {
        let pacer = Pacer::new(SEND_BUDGET);
        // The first sample only sets the mark.
        pacer.written(1);
        tokio::time::sleep(RATE_INTERVAL + Duration::from_millis(20)).await;
        pacer.written(50_000);
        assert_eq!(
            pacer.state.drain_rate.load(Ordering::Acquire),
            0,
            "no pushback: the sender set the pace, not the path"
        );
        tokio::time::sleep(RATE_INTERVAL + Duration::from_millis(20)).await;
        pacer.pushed_back();
        pacer.written(12_000);
        let rate = pacer.state.drain_rate.load(Ordering::Acquire);
        assert!(
            (20_000..=120_000).contains(&rate),
            "about 12 KB over about 120 ms: {rate} B/s"
        );
    }

    fn futures_noop_waker() -> std::task::Waker {
        std::task::Waker::noop().clone()
    }
}
