//! The two halves of a channel's stream: a QUIC stream of its own (sshq/1),
//! or a virtual stream on the one-stream baseline's carrier
//! ([`crate::one_stream`]). The channel layer sees only these.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use crate::one_stream::{SharedRecv, SharedSend};
use crate::wire::ErrorCode;

/// The stream is gone: reset, stopped, or its connection lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamGone;

/// Our direction of a channel's stream.
pub(crate) enum SendHalf {
    Quic(quinn::SendStream),
    Shared(SharedSend),
}

/// The peer's direction of a channel's stream.
pub(crate) enum RecvHalf {
    Quic(quinn::RecvStream),
    Shared(SharedRecv),
}

impl SendHalf {
    /// Sets the quinn stream priority; on the carrier, any priority above
    /// a session's marks the terminal's stream, which goes first.
    pub(crate) fn set_priority(&self, priority: i32, interactive: bool) {
        match self {
            // Fails only on a stream already closed, which has nothing left to order.
            SendHalf::Quic(send) => {
                let _ = send.set_priority(priority);
            }
            SendHalf::Shared(send) if interactive => send.set_interactive(),
            SendHalf::Shared(_) => {}
        }
    }

    /// Writes `chunks` in order, waiting for flow control.
    pub(crate) async fn write_chunks(&mut self, chunks: &mut [Bytes]) -> Result<(), StreamGone> {
        match self {
            SendHalf::Quic(send) => send.write_all_chunks(chunks).await.map_err(|_| StreamGone),
            SendHalf::Shared(send) => send.write_chunks(chunks).await.map_err(|_| StreamGone),
        }
    }

    /// Ends our direction after what was written.
    pub(crate) fn finish(&mut self) {
        match self {
            // Fails only on a stream already finished or reset.
            SendHalf::Quic(send) => {
                let _ = send.finish();
            }
            SendHalf::Shared(send) => send.finish(),
        }
    }

    /// Abandons our direction.
    pub(crate) fn reset(&mut self, code: ErrorCode) {
        match self {
            SendHalf::Quic(send) => {
                let _ = send.reset(code.code().into());
            }
            SendHalf::Shared(send) => send.reset(code.code()),
        }
    }

    /// Resolves once our direction is over: `true` if the peer stopped it
    /// or the connection went away, `false` after our own orderly finish.
    pub(crate) fn stopped(&self) -> Pin<Box<dyn Future<Output = bool> + Send + 'static>> {
        match self {
            SendHalf::Quic(send) => {
                let stopped = send.stopped();
                Box::pin(async move { !matches!(stopped.await, Ok(None)) })
            }
            SendHalf::Shared(send) => Box::pin(send.stopped()),
        }
    }

    /// Whether the peer has stopped our direction already.
    pub(crate) fn is_stopped_now(&self) -> bool {
        match self {
            SendHalf::Quic(send) => matches!(ready_now(send.stopped()), Some(Ok(Some(_)))),
            SendHalf::Shared(send) => send.is_stopped(),
        }
    }
}

impl RecvHalf {
    /// The next bytes (at most `max` on a QUIC stream), `None` at the
    /// peer's FIN.
    pub(crate) async fn read(&mut self, max: usize) -> Result<Option<Bytes>, StreamGone> {
        match self {
            RecvHalf::Quic(recv) => match recv.read_chunk(max, true).await {
                Ok(chunk) => Ok(chunk.map(|c| c.bytes)),
                Err(_) => Err(StreamGone),
            },
            RecvHalf::Shared(recv) => recv.read().await.map_err(|_| StreamGone),
        }
    }

    /// Asks the peer to stop sending.
    pub(crate) fn stop(&mut self, code: ErrorCode) {
        match self {
            // Fails only on a stream already stopped or finished.
            RecvHalf::Quic(recv) => {
                let _ = recv.stop(code.code().into());
            }
            RecvHalf::Shared(recv) => recv.stop(code.code()),
        }
    }

    /// Whether the peer has reset its direction already.
    pub(crate) fn is_reset_now(&mut self) -> bool {
        match self {
            RecvHalf::Quic(recv) => matches!(ready_now(recv.received_reset()), Some(Ok(Some(_)))),
            RecvHalf::Shared(recv) => recv.is_reset(),
        }
    }
}

/// The output of `future` if it is ready without waiting.
fn ready_now<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}
