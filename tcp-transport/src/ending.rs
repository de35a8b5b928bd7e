//! How a connection ended, for [`Connection::closed`]: the trait promises
//! the reason when the connection failed, and `None` when it was closed in
//! order (a disconnect "by application", or by us).
//!
//! [`Connection::closed`]: sshq_core::transport::Connection::closed

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sshq_core::error::TransportError;
use tokio::sync::watch;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    Orderly,
    Failed(String),
}

/// Set once, by whoever learns first how the connection ended; dropping it
/// unset records an orderly end (the session simply went away).
pub(crate) struct EndingSender {
    tx: watch::Sender<Option<Ending>>,
    closing_here: Arc<AtomicBool>,
}

/// Waits for the end [`EndingSender`] records.
#[derive(Clone)]
pub(crate) struct EndingWatch {
    rx: watch::Receiver<Option<Ending>>,
    closing_here: Arc<AtomicBool>,
}

pub(crate) fn ending() -> (EndingSender, EndingWatch) {
    let (tx, rx) = watch::channel(None);
    let closing_here = Arc::new(AtomicBool::new(false));
    (
        EndingSender {
            tx,
            closing_here: closing_here.clone(),
        },
        EndingWatch { rx, closing_here },
    )
}

impl EndingSender {
    /// Records a failure (raw text: log sites escape it); the first record
    /// wins. Once we are closing the connection ourselves, whatever breaks
    /// (russh ends such a session with an error) is part of an orderly end.
    pub(crate) fn failed(&self, why: impl std::fmt::Display) {
        if self.closing_here.load(Ordering::Acquire) {
            self.orderly();
        } else {
            self.record(Ending::Failed(why.to_string()));
        }
    }

    pub(crate) fn orderly(&self) {
        self.record(Ending::Orderly);
    }

    fn record(&self, ending: Ending) {
        self.tx.send_if_modified(|slot| match slot {
            Some(_) => false,
            None => {
                *slot = Some(ending);
                true
            }
        });
    }
}

impl Drop for EndingSender {
    fn drop(&mut self) {
        self.orderly();
    }
}

impl EndingWatch {
    /// We are closing the connection: its end is orderly from now on.
    pub(crate) fn closing_here(&self) {
        self.closing_here.store(true, Ordering::Release);
    }

    /// Resolves once the connection has ended: with why, if it failed.
    pub(crate) async fn ended(&self) -> Option<TransportError> {
        let mut rx = self.rx.clone();
        let ending = match rx.wait_for(Option::is_some).await {
            Ok(ending) => ending.clone(),
            // The sender is gone without a word (it records on drop, so
            // only if it was leaked): nothing to report.
            Err(_) => None,
        };
        match ending {
            Some(Ending::Failed(why)) => Some(TransportError::ConnectionClosed(Some(why))),
            Some(Ending::Orderly) | None => None,
        }
    }
}

/// The reason text of a disconnect the peer sent, or `None` when it was an
/// orderly one ("by application", what `exit` and `close` send).
pub(crate) fn disconnect_failure(code: russh::Disconnect, message: &str) -> Option<String> {
    if matches!(code, russh::Disconnect::ByApplication) {
        return None;
    }
    Some(if message.is_empty() {
        format!("disconnected by the peer ({code:?})")
    } else {
        format!("disconnected by the peer: {message}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_record_wins() {
        let (tx, watch) = ending();
        tx.failed("bad packet length");
        tx.orderly();
        drop(tx);
        let why = watch.ended().await.map(|e| e.to_string());
        assert_eq!(why.as_deref(), Some("connection closed: bad packet length"));
    }

    #[tokio::test]
    async fn errors_after_we_close_are_an_orderly_end() {
        let (tx, watch) = ending();
        watch.closing_here();
        tx.failed("Disconnected");
        assert!(watch.ended().await.is_none());
    }

    #[tokio::test]
    async fn dropped_unset_is_an_orderly_end() {
        let (tx, watch) = ending();
        let waiting = tokio::spawn(async move { watch.ended().await.is_none() });
        drop(tx);
        assert!(waiting.await.unwrap_or(false));
    }

    #[test]
    fn only_by_application_disconnects_are_orderly() {
        assert_eq!(
            disconnect_failure(russh::Disconnect::ByApplication, "bye"),
            None
        );
        assert_eq!(
            disconnect_failure(russh::Disconnect::ProtocolError, "bad").as_deref(),
            Some("disconnected by the peer: bad")
        );
    }
}
