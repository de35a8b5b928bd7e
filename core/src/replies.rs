//! Waiting for replies that arrive in request order, as SSH's channel and
//! global request replies do. Every transport needs this; it lives here so
//! each does not keep its own queue of senders.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::transport::{IncomingRequest, RequestStream};

/// Replies owed to us, oldest first. Clones share the queue.
#[derive(Debug)]
pub struct ReplyQueue<T> {
    waiting: Arc<Mutex<VecDeque<oneshot::Sender<T>>>>,
}

impl<T> Clone for ReplyQueue<T> {
    fn clone(&self) -> Self {
        ReplyQueue {
            waiting: self.waiting.clone(),
        }
    }
}

impl<T> Default for ReplyQueue<T> {
    fn default() -> Self {
        ReplyQueue {
            waiting: Arc::default(),
        }
    }
}

impl<T> ReplyQueue<T> {
    /// Registers a request about to be sent; the receiver gets its reply,
    /// or an error if the queue is cleared first. Callers must send the
    /// request in the same order they register it.
    pub fn expect(&self) -> Option<oneshot::Receiver<T>> {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().ok()?.push_back(tx);
        Some(rx)
    }

    /// Delivers the next reply; `false` when nobody was waiting for one
    /// (the peer answered a request we did not make).
    pub fn resolve(&self, reply: T) -> bool {
        let waiter = self.waiting.lock().ok().and_then(|mut w| w.pop_front());
        match waiter {
            Some(waiter) => {
                let _ = waiter.send(reply);
                true
            }
            None => false,
        }
    }

    /// Fails every outstanding wait: the channel or connection is gone.
    pub fn clear(&self) {
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.clear();
        }
    }
}

/// Requests from the peer that may wait, per channel, for the code that
/// handles them. Once that many are queued the transport stops reading the
/// peer (over QUIC just that channel's stream; over TCP the connection,
/// whose other channels the peer is then holding up itself): a flood of
/// requests, or of requests whose replies the peer never reads, is slowed
/// to the pace at which they are handled instead of growing a queue.
// draft §8.10: stop reading a stream while a bounded number of the peer's requests wait
pub const REQUEST_QUEUE: usize = 32;

/// Where a transport's reader task queues the peer's requests for a channel.
///
/// The queue holds boxed requests: tokio's queue allocates its slots 32 at
/// a time when it is made, and every channel of every idle session has
/// one, so a slot is kept to a pointer (bench-idle's heap profile).
#[derive(Debug, Clone)]
pub struct RequestSender(mpsc::Sender<Box<IncomingRequest>>);

/// The request a [`RequestSender`] could not queue: the channel's handler
/// is gone.
#[derive(Debug)]
pub struct HandlerGone;

impl RequestSender {
    /// Queues `request`, waiting while [`REQUEST_QUEUE`] requests wait.
    pub async fn send(&self, request: IncomingRequest) -> Result<(), HandlerGone> {
        self.0
            .send(Box::new(request))
            .await
            .map_err(|_| HandlerGone)
    }
}

/// A bounded queue of [`REQUEST_QUEUE`] requests for one channel.
pub fn request_queue() -> (RequestSender, QueuedRequests) {
    let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
    (RequestSender(tx), QueuedRequests { rx })
}

/// The requests a transport's reader task queues for one channel.
#[derive(Debug)]
pub struct QueuedRequests {
    rx: mpsc::Receiver<Box<IncomingRequest>>,
}

impl RequestStream for QueuedRequests {
    async fn next(&mut self) -> Option<IncomingRequest> {
        self.rx.recv().await.map(|request| *request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replies_go_to_waiters_in_order() {
        let queue = ReplyQueue::default();
        let first = queue.expect().unwrap();
        let second = queue.clone().expect().unwrap();
        assert!(queue.resolve(true));
        assert!(queue.resolve(false));
        assert!(first.await.unwrap());
        assert!(!second.await.unwrap());
        assert!(!queue.resolve(true), "a reply nobody asked for");
    }

    #[tokio::test]
    async fn clearing_fails_the_waiters() {
        let queue = ReplyQueue::<bool>::default();
        let waiter = queue.expect().unwrap();
        queue.clear();
        assert!(waiter.await.is_err());
    }

    #[tokio::test]
    async fn the_request_queue_is_bounded() {
        let (tx, mut requests) = request_queue();
        let request = || IncomingRequest {
            request: crate::channel::ChannelRequest::Shell,
            reply: crate::transport::ReplyHandle::none(),
        };
        // tokio's timeout polls the send once before looking at the
        // clock: a zero timeout fails exactly when that send has to wait.
        let queued_at_once = |tx: &RequestSender| {
            let tx = tx.clone();
            async move { tokio::time::timeout(std::time::Duration::ZERO, tx.send(request())).await }
        };
        for _ in 0..REQUEST_QUEUE {
            assert!(matches!(queued_at_once(&tx).await, Ok(Ok(()))));
        }
        assert!(
            queued_at_once(&tx).await.is_err(),
            "a full queue takes no more"
        );
        assert!(requests.next().await.is_some());
        assert!(matches!(queued_at_once(&tx).await, Ok(Ok(()))));
    }
}
