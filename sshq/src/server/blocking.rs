//! Blocking work kept off tokio's worker threads.
//!
//! A few threads serve every connection: one call that waits on NSS (a
//! passwd lookup that asks LDAP), on a fork/exec, or on the file system
//! would stall every other client for as long. Such calls run on the
//! blocking pool instead, and the caller gives up after a time limit (the
//! thread itself cannot be cancelled; it ends when the call returns).

use std::time::Duration;

/// How long a user-database lookup may take before the login is dropped.
pub const USER_LOOKUP_LIMIT: Duration = Duration::from_secs(30);

/// How long starting a session's program (group lookup, fork, exec) may
/// take before the request is refused.
pub const SPAWN_LIMIT: Duration = Duration::from_secs(30);

/// Why blocking work produced no result.
#[derive(Debug, thiserror::Error)]
pub enum BlockingError {
    #[error("{what} took longer than {} s", .limit.as_secs())]
    TimedOut { what: &'static str, limit: Duration },
    #[error("{what} failed: the worker thread panicked")]
    Panicked { what: &'static str },
}

/// Runs `work` on tokio's blocking pool and waits at most `limit` for it.
pub async fn off_worker<T: Send + 'static>(
    what: &'static str,
    limit: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BlockingError> {
    match tokio::time::timeout(limit, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(_)) => Err(BlockingError::Panicked { what }),
        Err(_) => Err(BlockingError::TimedOut { what, limit }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn slow_work_does_not_stall_the_worker_and_times_out() {
        // On a single-threaded runtime a blocking call on the worker would
        // also stop the ticker below.
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = ticks.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let result = off_worker("a slow lookup", Duration::from_millis(200), || {
            std::thread::sleep(Duration::from_secs(1))
        })
        .await;
        ticker.abort();
        assert!(matches!(result, Err(BlockingError::TimedOut { .. })));
        assert!(ticks.load(std::sync::atomic::Ordering::Relaxed) >= 5);
    }

    #[tokio::test]
    async fn quick_work_returns_its_result() {
        let result = off_worker("a sum", Duration::from_secs(5), || 2 + 2).await;
        assert_eq!(result.unwrap(), 4);
    }
}
