//! Giving memory back to the system once connections have ended.
//!
//! sshqd is one multi-threaded process: what a connection allocated is
//! freed when it ends, but glibc's malloc keeps freed pages inside its
//! arenas unless they sit at the very top of a heap. Measured with
//! `interop/run bench-idle`, sshqd's RSS after 1,000 idle sessions had all
//! closed stayed where it was with them open (~200 MiB), where OpenSSH's
//! per-connection processes give everything back as they exit. So, a
//! moment after connections end, sshqd asks malloc to return free pages
//! (`malloc_trim`, which also releases whole free pages in the middle of
//! its heaps). One trim covers every connection that ended before it runs,
//! so a burst of closes costs one trim, and it runs off the async workers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long after a connection ended the trim runs: long enough for a
/// burst of closes to share it, short enough to be prompt.
const DELAY: Duration = Duration::from_secs(2);

/// Whether a trim is scheduled and has not started yet.
static PENDING: AtomicBool = AtomicBool::new(false);

/// Schedules a trim unless one is already waiting (which will cover this
/// connection too, since it starts later).
pub fn connection_ended() {
    if PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async {
        tokio::time::sleep(DELAY).await;
        // Cleared before trimming, so a connection ending during the trim
        // schedules the next one.
        PENDING.store(false, Ordering::Release);
        let _ = tokio::task::spawn_blocking(release_free_memory).await;
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim takes no pointers and only walks glibc's own
    // allocator state under its locks; 0 asks it to keep no padding.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}
