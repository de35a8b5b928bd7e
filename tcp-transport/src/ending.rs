//! How a connection ended, for [`Connection::closed`]: the trait promises
//! the reason when the connection failed, and `None` when it was closed in
//! order (a disconnect "by application", or by us).
//!
//! [`Connection::closed`]: sshq_core::transport::Connection::closed

use sshq_core::error::TransportError;
use tokio::sync::watch;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    Orderly,
    Failed(String),
}

/// Set once, by whoever learns first how the connection ended; dropping it
/// unset records an orderly end (the session simply went away).
pub(crate) struct EndingSender(watch::Sender<Option<Ending>>);

/// Waits for the end [`EndingSender`] records.
#[derive(Clone)]
pub(crate) struct EndingWatch(watch::Receiver<Option<Ending>>);

pub(crate) fn ending() -> (EndingSender, EndingWatch) {
    let (tx, rx) = watch::channel(None);
    (EndingSender(tx), EndingWatch(rx))
}

impl EndingSender {
    /// Records a failure (raw text: log sites escape it); the first record wins.
    pub(crate) fn failed(&self, why: impl std::fmt::Display) {
        self.record(Ending::Failed(why.to_string()));
    }

    pub(crate) fn orderly(&self) {
        self.record(Ending::Orderly);
    }

    fn record(&self, ending: Ending) {
        self.0.send_if_modified(|slot| match slot {
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
    /// Resolves once the connection has ended: with why, if it failed.
    pub(crate) async fn ended(&self) -> Option<TransportError> {
        let mut rx = self.0.clone();
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
