//! Where a connection's channels get their streams: a QUIC stream each
//! (sshq/1), or a virtual stream on the one-stream baseline's carrier
//! ([`crate::one_stream`]). Opening and accepting channels goes through
//! here; the channel layer above is the same for both.

use std::sync::Arc;
use std::time::Duration;

use sshq_core::channel::OpenFailure;
use sshq_core::error::TransportError;
use sshq_core::pipe::PipeBudget;
use sshq_core::transport::{Incoming, PendingChannel};
use tokio::sync::{mpsc, oneshot, OnceCell};

use crate::channel::{QuicChannel, CONNECTION_PIPE_BUDGET};
use crate::conn::{now, until};
use crate::one_stream::{Carrier, ChannelMapping, SharedRecv, SharedSend};
use crate::proto::channel::{ChannelEvent, ChannelMachine};
use crate::streams::{RecvHalf, SendHalf};
use crate::tls::{INITIAL_BIDI_STREAMS, MAX_CONCURRENT_BIDI_STREAMS};
use crate::wire::ErrorCode;

/// How long the other side may take to send a channel's OPEN frame.
const OPEN_FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// The queue of what the peer opens and asks, boxed: tokio's unbounded
/// queue allocates its slots 32 at a time, and an unboxed `Incoming` made
/// that first block ~13 KiB of every idle connection (bench-idle's profile).
pub(crate) type IncomingSender = mpsc::UnboundedSender<Box<Incoming<QuicChannel>>>;

/// Opens and accepts one connection's channel streams.
#[derive(Clone)]
pub(crate) struct ChannelStreams {
    conn: quinn::Connection,
    mapping: ChannelMapping,
    /// The one-stream baseline's carrier, once opened (the client opens it
    /// with its first channel; the server accepts it).
    carrier: Arc<OnceCell<Carrier>>,
    /// Bounds the peer's unread data over all channels.
    budget: PipeBudget,
    /// Where the channels the peer opens on a carrier we start go (weak:
    /// the connection's own accept loop decides when accepting ends).
    incoming: mpsc::WeakUnboundedSender<Box<Incoming<QuicChannel>>>,
}

impl ChannelStreams {
    pub(crate) fn new(
        conn: quinn::Connection,
        mapping: ChannelMapping,
        incoming: &IncomingSender,
    ) -> Self {
        ChannelStreams {
            conn,
            mapping,
            carrier: Arc::new(OnceCell::new()),
            budget: PipeBudget::new(CONNECTION_PIPE_BUDGET),
            incoming: incoming.downgrade(),
        }
    }

    /// The connection's budget for the peer's unread data.
    pub(crate) fn budget(&self) -> &PipeBudget {
        &self.budget
    }

    /// The streams of a channel we open.
    pub(crate) async fn open(&self) -> Result<(SendHalf, RecvHalf), TransportError> {
        let lost = |why: String| TransportError::ConnectionClosed(Some(why));
        if self.mapping == ChannelMapping::StreamPerChannel {
            let (send, recv) = self.conn.open_bi().await.map_err(|e| lost(e.to_string()))?;
            return Ok((SendHalf::Quic(send), RecvHalf::Quic(recv)));
        }
        let carrier = match self.conn.side() {
            quinn::Side::Client => {
                self.carrier
                    .get_or_try_init(|| async {
                        let (send, recv) =
                            self.conn.open_bi().await.map_err(|e| lost(e.to_string()))?;
                        let (carrier, peer_streams) = Carrier::start(self.conn.clone(), send, recv);
                        if let Some(incoming) = self.incoming.upgrade() {
                            tokio::spawn(self.clone().accept_virtual(peer_streams, incoming));
                        }
                        Ok::<_, TransportError>(carrier)
                    })
                    .await?
            }
            quinn::Side::Server => self.carrier.get().ok_or_else(|| {
                lost("one-stream baseline: the client has opened no channel yet".to_string())
            })?,
        };
        let (send, recv) = carrier.open().map_err(|e| lost(e.to_string()))?;
        Ok((SendHalf::Shared(send), RecvHalf::Shared(recv)))
    }

    /// Accepts the channels the peer opens, until the connection ends.
    pub(crate) async fn accept(self, incoming: IncomingSender) {
        if self.mapping == ChannelMapping::OneStream && self.conn.side() == quinn::Side::Server {
            return self.accept_carrier(incoming).await;
        }
        // Every further bidirectional stream is a channel the peer opens.
        let mut credit = StreamCredit::new(self.conn.clone());
        while let Ok((send, recv)) = self.conn.accept_bi().await {
            credit.stream_accepted();
            tokio::spawn(receive_open(
                SendHalf::Quic(send),
                RecvHalf::Quic(recv),
                incoming.clone(),
                self.budget.clone(),
            ));
        }
    }

    /// The server's side of the one-stream baseline: the client's first
    /// channel stream is the carrier; any other stream is refused.
    async fn accept_carrier(self, incoming: IncomingSender) {
        let Ok((send, recv)) = self.conn.accept_bi().await else {
            return;
        };
        let (carrier, peer_streams) = Carrier::start(self.conn.clone(), send, recv);
        // Set once, here: the client opens one carrier.
        let _ = self.carrier.set(carrier);
        tokio::spawn(self.clone().accept_virtual(peer_streams, incoming));
        while let Ok((mut send, mut recv)) = self.conn.accept_bi().await {
            tracing::debug!("one-stream baseline: a second channel stream, refused");
            let _ = send.reset(ErrorCode::StreamRefused.code().into());
            let _ = recv.stop(ErrorCode::StreamRefused.code().into());
        }
    }

    /// Offers the virtual streams the peer opens on the carrier.
    async fn accept_virtual(
        self,
        mut peer_streams: mpsc::UnboundedReceiver<(SharedSend, SharedRecv)>,
        incoming: IncomingSender,
    ) {
        while let Some((send, recv)) = peer_streams.recv().await {
            tokio::spawn(receive_open(
                SendHalf::Shared(send),
                RecvHalf::Shared(recv),
                incoming.clone(),
                self.budget.clone(),
            ));
        }
    }
}

/// Reads a stream's OPEN frame and offers the channel; a stream that does
/// not start with one is reset, and only that stream suffers.
async fn receive_open(
    mut send: SendHalf,
    mut recv: RecvHalf,
    incoming: IncomingSender,
    budget: PipeBudget,
) {
    let mut machine = ChannelMachine::acceptor(now(), OPEN_FRAME_TIMEOUT);
    let kind = loop {
        match machine.poll_event() {
            Some(ChannelEvent::OpenRequested(kind)) => break Some(kind),
            Some(_) => break None,
            None => {}
        }
        if !machine.wants_input() {
            break None;
        }
        match until(machine.poll_timeout(), recv.read(64 * 1024)).await {
            None => machine.handle_timeout(now()),
            Some(Ok(Some(bytes))) => machine.handle_bytes(now(), &bytes),
            Some(Ok(None)) => machine.handle_fin(now()),
            Some(Err(_)) => machine.handle_peer_abort(),
        }
    };
    let kind = match kind {
        // draft §8.4: an open the opener already gave up is not offered at all
        Some(_) if crate::channel::opener_gave_up(&send, &mut recv) => {
            machine.handle_peer_abort();
            None
        }
        kind => kind,
    };
    let Some(kind) = kind else {
        // Refused (an unknown type), broken or given up: carry out what
        // the machine decided, on this stream only.
        crate::channel::write_final(&mut send, &mut recv, &mut machine).await;
        return;
    };
    let (decide_tx, decide_rx) = oneshot::channel::<Result<(), OpenFailure>>();
    let channel =
        QuicChannel::accepted(kind.clone(), send, recv, machine, decide_rx).within_budget(&budget);
    let _ = incoming.send(Box::new(Incoming::Channel(PendingChannel::new(
        kind, channel, decide_tx,
    ))));
}

/// The peer's credit for opening channel streams, raised ahead of its
/// demand: it starts at [`INITIAL_BIDI_STREAMS`] (quinn allocates the state
/// of every stream allowed, so an idle session keeps a small table) and
/// doubles whenever the peer has opened within [`HEADROOM`] streams of it,
/// up to [`MAX_CONCURRENT_BIDI_STREAMS`]. The count is of streams ever
/// accepted, an upper bound on those open at once, so credit never lags
/// behind what the peer has open: a burst of opens waits at most one round
/// trip for the next MAX_STREAMS.
struct StreamCredit {
    conn: quinn::Connection,
    accepted: u32,
    granted: u32,
}

/// How close to its credit the peer may come before it is raised.
const HEADROOM: u32 = 8;

impl StreamCredit {
    fn new(conn: quinn::Connection) -> Self {
        StreamCredit {
            conn,
            accepted: 0,
            granted: INITIAL_BIDI_STREAMS,
        }
    }

    fn stream_accepted(&mut self) {
        self.accepted = self.accepted.saturating_add(1);
        if self.accepted.saturating_add(HEADROOM) < self.granted
            || self.granted >= MAX_CONCURRENT_BIDI_STREAMS
        {
            return;
        }
        self.granted = next_credit(self.granted);
        self.conn
            .set_max_concurrent_bi_streams(quinn::VarInt::from_u32(self.granted));
    }
}

/// The credit after `granted`: double, but straight to the maximum when
/// doubling would leave less than an eighth of the new credit to go.
/// quinn announces a raise (MAX_STREAMS) only when it adds more than an
/// eighth of the new credit, so a last step of 256 -> 258 would never be
/// sent and the peer's 257th channel would wait forever.
fn next_credit(granted: u32) -> u32 {
    let doubled = granted.saturating_mul(2);
    if doubled.saturating_add(doubled / 8) >= MAX_CONCURRENT_BIDI_STREAMS {
        MAX_CONCURRENT_BIDI_STREAMS
    } else {
        doubled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_reaches_the_maximum_in_steps_quinn_announces() {
        let mut granted = INITIAL_BIDI_STREAMS;
        let mut steps = vec![granted];
        while granted < MAX_CONCURRENT_BIDI_STREAMS {
            let next = next_credit(granted);
            // quinn-proto's StreamsState::queue_max_stream_id sends
            // MAX_STREAMS only for a raise of more than an eighth.
            assert!(
                next - granted > next / 8,
                "{granted} -> {next} would not be announced"
            );
            granted = next;
            steps.push(granted);
        }
        assert_eq!(steps, [32, 64, 128, MAX_CONCURRENT_BIDI_STREAMS]);
    }
}
