//! A lab baseline: every channel of a connection on ONE QUIC stream.
//!
//! sshq's claim is that a stream per channel removes head-of-line blocking.
//! To measure that claim alone, the head-of-line experiment
//! (`interop/run hol`) needs a baseline that differs from sshq over QUIC in
//! nothing else: the same quinn connection, congestion controller, flow
//! control windows and channel layer, with every channel's stream replaced
//! by a *virtual* stream multiplexed onto a single QUIC stream, the
//! carrier. A packet lost on the carrier then stalls every channel, as it
//! does for SSH over TCP; a packet lost on one of sshq's own streams stalls
//! only its channel.
//!
//! So that buffering does not blur the comparison, the carrier keeps what
//! it hands quinn small, as sshq's TCP path keeps the kernel's queue small
//! (TCP_NOTSENT_LOWAT): it writes only while the bytes the peer has not yet
//! passed on to its channels stay under the congestion window plus
//! [`UNSENT_ALLOWANCE`], and it picks the next frame itself, a terminal's
//! channel first and the others in turn, as quinn's stream priorities do
//! for sshq over QUIC. What is left between the two is the one ordered
//! stream. (draft-notes, Appendix C.2.1, gives the framing.)
//!
//! This is not part of the sshq/1 protocol: both ends must be set up for it
//! (`OneStreamBaseline yes`), and it exists for measurement only.

pub(crate) mod frame;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, watch, Notify};

use frame::{CarrierError, CarrierFrame};

use crate::streams::StreamGone;
use crate::wire::ErrorCode;

/// How channels map onto QUIC streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelMapping {
    /// sshq/1: every channel on its own QUIC stream.
    #[default]
    StreamPerChannel,
    /// The lab baseline of this module: every channel on one stream.
    OneStream,
}

/// Bytes allowed beyond the congestion window between what the carrier
/// has written and what the peer has passed on: the unsent part of quinn's
/// buffer, as TCP_NOTSENT_LOWAT bounds the kernel's on the TCP path.
const UNSENT_ALLOWANCE: u64 = 16 * 1024;

/// Data one virtual stream may queue in the carrier before its writer
/// waits (a channel writes frames of up to 256 KiB; one waits behind it).
const STREAM_QUEUE: usize = 256 * 1024;

/// The peer's data the receiver holds unconsumed, at most: the connection's
/// receive window. A peer that ignores the carrier's flow control and goes
/// past it breaks the carrier.
const MAX_UNCONSUMED: u64 = 64 << 20;

/// The receiver reports what it passed on after this much, or sooner when
/// a stream's queue runs dry.
const REPORT_EVERY: u64 = 16 * 1024;

/// New streams one frame of the peer's may open (every lower unseen id
/// opens with it): the connection's limit on concurrent channels.
const MAX_OPEN_AT_ONCE: u32 = crate::tls::MAX_CONCURRENT_BIDI_STREAMS;

/// Virtual streams, ours and the peer's, that may be open at once: as many
/// as QUIC's stream limits allow each side, with room for streams whose
/// last frames are still on their way.
const MAX_STREAMS: usize = 4 * crate::tls::MAX_CONCURRENT_BIDI_STREAMS as usize;

/// A QUIC application error code for a carrier the peer broke.
const CARRIER_BROKEN: u32 = 0x10;

/// Why a carrier broke: every channel on it ends with the connection.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum CarrierFailure {
    #[error("the peer's carrier is malformed: {0}")]
    Malformed(CarrierError),
    #[error("the peer reported more bytes consumed than were sent")]
    ConsumedMoreThanSent,
    #[error("the peer sent past the carrier's flow control")]
    PastFlowControl,
    #[error("the peer wrote to stream {0}, which was never opened")]
    NeverOpened(u32),
    #[error("the peer opened stream {0}: too many streams at once")]
    TooManyStreams(u32),
    #[error("out of stream ids")]
    OutOfStreamIds,
    #[error("the peer finished the carrier stream")]
    PeerFinished,
    #[error("the carrier stream failed: {0} (do both ends run OneStreamBaseline yes?)")]
    Read(quinn::ReadError),
    #[error("the carrier stream failed: {0}")]
    Write(quinn::WriteError),
}

/// What happened to our direction of a virtual stream (see
/// [`SharedSend::stopped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendFate {
    Open,
    /// Finished or reset by us, and handed to quinn.
    Done,
    /// The peer asked us to stop, or the carrier broke.
    Stopped,
}

/// One item a virtual stream queues for the carrier.
enum Pending {
    Data(Bytes),
    Fin,
    Reset(u32),
}

/// A virtual stream's state inside the carrier.
struct Virtual {
    /// Ours, waiting for the writer.
    pending: VecDeque<Pending>,
    pending_bytes: usize,
    interactive: bool,
    send_fate: watch::Sender<SendFate>,
    /// Woken when `pending` has room again.
    send_room: Arc<Notify>,
    send_closed: bool,
    /// The peer's, waiting for the channel to read them.
    received: VecDeque<Bytes>,
    received_fin: bool,
    received_reset: bool,
    /// Woken when `received` or its end changes.
    readable: Arc<Notify>,
    recv_closed: bool,
}

impl Virtual {
    fn new() -> Virtual {
        Virtual {
            pending: VecDeque::new(),
            pending_bytes: 0,
            interactive: false,
            send_fate: watch::channel(SendFate::Open).0,
            send_room: Arc::new(Notify::new()),
            send_closed: false,
            received: VecDeque::new(),
            received_fin: false,
            received_reset: false,
            readable: Arc::new(Notify::new()),
            recv_closed: false,
        }
    }

    /// Both directions are over for both the channel and the carrier.
    fn is_over(&self) -> bool {
        self.send_closed && self.pending.is_empty() && self.recv_closed
    }
}

/// The carrier's shared state.
struct State {
    streams: HashMap<u32, Virtual>,
    /// Streams with something pending, in the order they get their turn.
    ready: VecDeque<u32>,
    /// Control frames (STOP, CONSUMED), which go before any data.
    control: VecDeque<CarrierFrame>,
    next_local: u32,
    /// The peer's streams are above this once seen (None: none yet).
    highest_remote: Option<u32>,
    /// DATA bytes written, and the peer's report of what it passed on.
    written: u64,
    peer_consumed: u64,
    /// Ours: held unconsumed, and passed on but not yet reported.
    unconsumed: u64,
    unreported: u64,
    broken: Option<CarrierFailure>,
    incoming: Option<mpsc::UnboundedSender<(SharedSend, SharedRecv)>>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer task: something to send, or room to send it.
    writer: Notify,
    conn: quinn::Connection,
    /// Streams we open have this parity (the client's even, the server's odd).
    local_parity: u32,
}

/// The carrier of one connection: a handle to open virtual streams.
#[derive(Clone)]
pub(crate) struct Carrier {
    shared: Arc<Shared>,
}

impl Carrier {
    /// Starts the carrier on the QUIC stream (`send`, `recv`) of `conn`;
    /// virtual streams the peer opens arrive on the returned receiver.
    pub(crate) fn start(
        conn: quinn::Connection,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) -> (Carrier, mpsc::UnboundedReceiver<(SharedSend, SharedRecv)>) {
        let local_parity = match conn.side() {
            quinn::Side::Client => 0,
            quinn::Side::Server => 1,
        };
        let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(local_parity, Some(incoming_tx))),
            writer: Notify::new(),
            conn,
            local_parity,
        });
        tokio::spawn(write_carrier(shared.clone(), send));
        tokio::spawn(read_carrier(shared.clone(), recv));
        (Carrier { shared }, incoming_rx)
    }

    /// Opens a virtual stream; the peer learns of it with its first byte.
    pub(crate) fn open(&self) -> Result<(SharedSend, SharedRecv), CarrierFailure> {
        let mut state = self.shared.lock();
        if let Some(why) = &state.broken {
            return Err(why.clone());
        }
        let id = state.next_local;
        state.next_local = id.checked_add(2).ok_or(CarrierFailure::OutOfStreamIds)?;
        Ok(new_stream(&self.shared, &mut state, id))
    }
}

/// Registers stream `id` and returns its two halves.
fn new_stream(shared: &Arc<Shared>, state: &mut State, id: u32) -> (SharedSend, SharedRecv) {
    let stream = Virtual::new();
    let halves = (
        SharedSend {
            shared: shared.clone(),
            id,
            room: stream.send_room.clone(),
            fate: stream.send_fate.subscribe(),
            done: false,
        },
        SharedRecv {
            shared: shared.clone(),
            id,
            readable: stream.readable.clone(),
            done: false,
        },
    );
    state.streams.insert(id, stream);
    halves
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug; the state is still
        // consistent enough to shut down with.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The carrier is unusable from now on: every stream learns it.
    fn break_carrier(&self, why: CarrierFailure) {
        let mut state = self.lock();
        if state.broken.is_some() {
            return;
        }
        tracing::debug!("one-stream carrier: {why}");
        state.broken = Some(why);
        state.incoming = None;
        for stream in state.streams.values() {
            stream.send_fate.send_replace(SendFate::Stopped);
            stream.send_room.notify_one();
            stream.readable.notify_one();
        }
        drop(state);
        self.writer.notify_one();
    }
}

impl State {
    fn new(
        local_parity: u32,
        incoming: Option<mpsc::UnboundedSender<(SharedSend, SharedRecv)>>,
    ) -> State {
        State {
            streams: HashMap::new(),
            ready: VecDeque::new(),
            control: VecDeque::new(),
            next_local: local_parity,
            highest_remote: None,
            written: 0,
            peer_consumed: 0,
            unconsumed: 0,
            unreported: 0,
            broken: None,
            incoming,
        }
    }

    /// Queues `item` for stream `id` and gives the stream a turn.
    fn queue(&mut self, id: u32, item: Pending) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if let Pending::Data(bytes) = &item {
            stream.pending_bytes += bytes.len();
        }
        if stream.pending.is_empty() && !self.ready.contains(&id) {
            self.ready.push_back(id);
        }
        stream.pending.push_back(item);
    }

    /// Drops stream `id` once neither side has a use for it.
    fn forget_if_over(&mut self, id: u32) {
        if self.streams.get(&id).is_some_and(Virtual::is_over) {
            self.streams.remove(&id);
        }
    }

    /// Counts `len` bytes passed on to a channel (or dropped for one that
    /// is over) and queues a CONSUMED frame when one is due: after
    /// [`REPORT_EVERY`], or at once when the stream `ran_dry`. True if a
    /// frame was queued (the writer is then to be woken).
    fn pass_on(&mut self, len: usize, ran_dry: bool) -> bool {
        let len = len as u64;
        self.unconsumed = self.unconsumed.saturating_sub(len);
        self.unreported += len;
        let due = (self.unreported >= REPORT_EVERY || ran_dry) && self.unreported > 0;
        while due && self.unreported > 0 {
            let bytes = u32::try_from(self.unreported).unwrap_or(u32::MAX);
            self.unreported -= u64::from(bytes);
            self.control.push_back(CarrierFrame::Consumed { bytes });
        }
        due
    }

    /// The next frame for the writer, if one may go now. `window` is
    /// what may be outstanding: the congestion window plus the allowance.
    fn next_frame(&mut self, window: u64) -> Option<CarrierFrame> {
        if let Some(frame) = self.control.pop_front() {
            return Some(frame);
        }
        // Streams forgotten or emptied (a reset drops what was queued)
        // lose their turn.
        let streams = &self.streams;
        self.ready
            .retain(|id| streams.get(id).is_some_and(|s| !s.pending.is_empty()));
        // A terminal's channel first, then the others in turn.
        let position = self
            .ready
            .iter()
            .position(|id| self.streams.get(id).is_some_and(|s| s.interactive))
            .unwrap_or(0);
        let id = *self.ready.get(position)?;
        let stream = self.streams.get_mut(&id)?;
        // A terminal's keystrokes and echoes go into quinn's buffer at once,
        // as they do on sshq's own streams; bulk data waits for the window.
        let outstanding = self.written.saturating_sub(self.peer_consumed);
        let held = matches!(stream.pending.front(), Some(Pending::Data(_)))
            && !stream.interactive
            && outstanding >= window;
        if held {
            return None;
        }
        self.ready.remove(position);
        let frame = match stream.pending.pop_front()? {
            Pending::Data(bytes) => {
                stream.pending_bytes -= bytes.len();
                self.written += bytes.len() as u64;
                CarrierFrame::Data {
                    stream: id,
                    payload: bytes,
                }
            }
            Pending::Fin => CarrierFrame::Fin { stream: id },
            Pending::Reset(code) => CarrierFrame::Reset { stream: id, code },
        };
        stream.send_room.notify_one();
        if stream.pending.is_empty() {
            if stream.send_closed {
                stream.send_fate.send_if_modified(|fate| {
                    let open = *fate == SendFate::Open;
                    if open {
                        *fate = SendFate::Done;
                    }
                    open
                });
            }
            self.forget_if_over(id);
        } else {
            self.ready.push_back(id);
        }
        Some(frame)
    }
}

/// Writes the carrier: control frames first, then the streams' data as
/// the outstanding bytes allow.
async fn write_carrier(shared: Arc<Shared>, mut send: quinn::SendStream) {
    loop {
        let notified = shared.writer.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let window = shared.conn.stats().path.cwnd + UNSENT_ALLOWANCE;
        let next = {
            let mut state = shared.lock();
            if state.broken.is_some() {
                let _ = send.reset(CARRIER_BROKEN.into());
                return;
            }
            state.next_frame(window)
        };
        let Some(frame) = next else {
            notified.await;
            continue;
        };
        let written = match &frame {
            CarrierFrame::Data { payload, .. } => {
                let header = Bytes::copy_from_slice(&frame.header());
                send.write_all_chunks(&mut [header, payload.clone()]).await
            }
            other => send.write_all_chunks(&mut [other.encode()]).await,
        };
        if let Err(e) = written {
            shared.break_carrier(CarrierFailure::Write(e));
            return;
        }
    }
}

/// Reads the carrier and hands each frame to its virtual stream.
async fn read_carrier(shared: Arc<Shared>, mut recv: quinn::RecvStream) {
    let mut buf = BytesMut::new();
    loop {
        loop {
            match CarrierFrame::decode(&mut buf) {
                Ok(Some(frame)) => {
                    if let Err(why) = deliver(&shared, frame) {
                        let _ = recv.stop(CARRIER_BROKEN.into());
                        shared.break_carrier(why);
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // Most likely a peer that does not run the baseline:
                    // its first channel's OPEN frame is no carrier frame.
                    // The whole connection is of no use to it; say why.
                    let reason: &[u8] = match shared.conn.side() {
                        quinn::Side::Server => {
                            b"this server carries every channel on one stream \
                              (OneStreamBaseline yes, a lab baseline); connect with \
                              -o OneStreamBaseline=yes"
                        }
                        quinn::Side::Client => b"malformed one-stream carrier",
                    };
                    shared
                        .conn
                        .close(ErrorCode::ProtocolError.code().into(), reason);
                    shared.break_carrier(CarrierFailure::Malformed(e));
                    return;
                }
            }
        }
        match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            Ok(None) => {
                shared.break_carrier(CarrierFailure::PeerFinished);
                return;
            }
            Err(e) => {
                shared.break_carrier(CarrierFailure::Read(e));
                return;
            }
        }
    }
}

/// Applies one of the peer's frames; an error breaks the carrier.
fn deliver(shared: &Arc<Shared>, frame: CarrierFrame) -> Result<(), CarrierFailure> {
    let mut state = shared.lock();
    match frame {
        CarrierFrame::Consumed { bytes } => {
            state.peer_consumed += u64::from(bytes);
            if state.peer_consumed > state.written {
                return Err(CarrierFailure::ConsumedMoreThanSent);
            }
            drop(state);
            shared.writer.notify_one();
        }
        CarrierFrame::Data {
            stream: id,
            payload,
        } => {
            let len = payload.len();
            state.unconsumed += len as u64;
            if state.unconsumed > MAX_UNCONSUMED {
                return Err(CarrierFailure::PastFlowControl);
            }
            let known = stream_for_peer_frame(shared, &mut state, id)?;
            let readable = known.and_then(|stream| {
                (!stream.recv_closed).then(|| {
                    stream.received.push_back(payload);
                    stream.readable.clone()
                })
            });
            match readable {
                Some(readable) => readable.notify_one(),
                // A stream already over: its bytes count as passed on.
                None => {
                    if state.pass_on(len, true) {
                        drop(state);
                        shared.writer.notify_one();
                    }
                }
            }
        }
        CarrierFrame::Fin { stream: id } | CarrierFrame::Reset { stream: id, .. } => {
            let reset = matches!(frame, CarrierFrame::Reset { .. });
            if let Some(stream) = stream_for_peer_frame(shared, &mut state, id)? {
                if reset {
                    stream.received_reset = true;
                } else {
                    stream.received_fin = true;
                }
                stream.readable.notify_one();
            }
        }
        CarrierFrame::Stop { stream: id, .. } => {
            if let Some(stream) = state.streams.get_mut(&id) {
                stream.send_fate.send_replace(SendFate::Stopped);
                stream.send_room.notify_one();
            }
        }
    }
    Ok(())
}

/// The stream a peer frame for `id` belongs to: a known one, a new one the
/// peer opens (offered to the connection), or None for one already over.
///
/// The peer numbers its streams in the order it opens them, but their first
/// frames may reach the carrier in another order (each channel's writer
/// runs on its own); so, as in QUIC, a new id opens every lower id of the
/// peer's that was not seen yet.
fn stream_for_peer_frame<'s>(
    shared: &Arc<Shared>,
    state: &'s mut State,
    id: u32,
) -> Result<Option<&'s mut Virtual>, CarrierFailure> {
    if !state.streams.contains_key(&id) {
        if id % 2 == shared.local_parity {
            // One of ours that is over (or was never opened).
            if id >= state.next_local {
                return Err(CarrierFailure::NeverOpened(id));
            }
            return Ok(None);
        }
        let first_unseen = state
            .highest_remote
            .map_or(Some(1 - shared.local_parity), |highest| {
                highest.checked_add(2)
            });
        let Some(first_unseen) = first_unseen.filter(|first| *first <= id) else {
            // Seen before, and over.
            return Ok(None);
        };
        let opening = (id - first_unseen) / 2 + 1;
        if opening > MAX_OPEN_AT_ONCE || state.streams.len() >= MAX_STREAMS {
            return Err(CarrierFailure::TooManyStreams(id));
        }
        state.highest_remote = Some(id);
        for opened in (first_unseen..=id).step_by(2) {
            offer_peer_stream(shared, state, opened);
        }
    }
    Ok(state.streams.get_mut(&id))
}

/// Registers the peer's new stream `id` and offers it to the connection;
/// refuses it both ways when nobody accepts channels any more.
fn offer_peer_stream(shared: &Arc<Shared>, state: &mut State, id: u32) {
    let halves = new_stream(shared, state, id);
    let refused = match &state.incoming {
        Some(incoming) => incoming.send(halves).err().map(|e| e.0),
        None => Some(halves),
    };
    if let Some((mut send, mut recv)) = refused {
        // Dropped disarmed: their Drop would take the lock we hold.
        send.done = true;
        recv.done = true;
        state.streams.remove(&id);
        state.control.push_back(CarrierFrame::Stop {
            stream: id,
            code: 0,
        });
        state.control.push_back(CarrierFrame::Reset {
            stream: id,
            code: 0,
        });
        shared.writer.notify_one();
    }
}

/// Our direction of a virtual stream.
pub(crate) struct SharedSend {
    shared: Arc<Shared>,
    id: u32,
    room: Arc<Notify>,
    fate: watch::Receiver<SendFate>,
    done: bool,
}

impl SharedSend {
    /// Queues `chunks` in order, waiting while the stream's queue is full.
    pub(crate) async fn write_chunks(&mut self, chunks: &mut [Bytes]) -> Result<(), StreamGone> {
        for chunk in chunks.iter_mut() {
            let mut chunk = std::mem::take(chunk);
            while !chunk.is_empty() {
                let piece = chunk.split_to(chunk.len().min(frame::MAX_DATA as usize));
                self.queue_data(piece).await?;
            }
        }
        Ok(())
    }

    async fn queue_data(&mut self, piece: Bytes) -> Result<(), StreamGone> {
        loop {
            let room = self.room.notified();
            {
                let mut state = self.shared.lock();
                let gone = state.broken.is_some() || *self.fate.borrow() != SendFate::Open;
                let stream = state.streams.get(&self.id).filter(|_| !gone && !self.done);
                let Some(stream) = stream else {
                    return Err(StreamGone);
                };
                if stream.pending_bytes < STREAM_QUEUE {
                    state.queue(self.id, Pending::Data(piece));
                    drop(state);
                    self.shared.writer.notify_one();
                    return Ok(());
                }
            }
            room.await;
        }
    }

    /// Ends our direction after what is queued (QUIC's FIN).
    pub(crate) fn finish(&mut self) {
        self.close(Pending::Fin);
    }

    /// Abandons our direction (QUIC's RESET_STREAM).
    pub(crate) fn reset(&mut self, code: u32) {
        self.close(Pending::Reset(code));
    }

    fn close(&mut self, item: Pending) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let mut state = self.shared.lock();
        if let Some(stream) = state.streams.get_mut(&self.id) {
            stream.send_closed = true;
            if let Pending::Reset(_) = item {
                // What was queued and not yet written goes nowhere.
                stream.pending.clear();
                stream.pending_bytes = 0;
            }
        }
        state.queue(self.id, item);
        drop(state);
        self.shared.writer.notify_one();
    }

    /// A terminal's stream: its frames go before the others' from now on.
    pub(crate) fn set_interactive(&self) {
        if let Some(stream) = self.shared.lock().streams.get_mut(&self.id) {
            stream.interactive = true;
        }
    }

    /// Resolves once our direction is over: `true` if the peer stopped it
    /// (or the carrier broke), `false` once we finished it ourselves.
    pub(crate) fn stopped(&self) -> impl std::future::Future<Output = bool> + Send + 'static {
        let mut fate = self.fate.clone();
        async move {
            match fate.wait_for(|f| *f != SendFate::Open).await {
                Ok(f) => *f == SendFate::Stopped,
                // The stream is forgotten: it was over.
                Err(_) => false,
            }
        }
    }

    /// Whether the peer has already stopped our direction.
    pub(crate) fn is_stopped(&self) -> bool {
        *self.fate.borrow() == SendFate::Stopped
    }
}

impl Drop for SharedSend {
    fn drop(&mut self) {
        // As a dropped quinn stream: what was written still goes, then FIN.
        self.finish();
    }
}

/// The peer's direction of a virtual stream.
pub(crate) struct SharedRecv {
    shared: Arc<Shared>,
    id: u32,
    readable: Arc<Notify>,
    done: bool,
}

impl SharedRecv {
    /// The next bytes, `None` at the peer's FIN, an error once it reset
    /// the stream or the carrier broke.
    pub(crate) async fn read(&mut self) -> Result<Option<Bytes>, StreamGone> {
        loop {
            let readable = self.readable.notified();
            {
                let mut state = self.shared.lock();
                let broken = state.broken.is_some();
                let Some(stream) = state.streams.get_mut(&self.id) else {
                    return Err(StreamGone);
                };
                if let Some(bytes) = stream.received.pop_front() {
                    let ran_dry = stream.received.is_empty();
                    if state.pass_on(bytes.len(), ran_dry) {
                        drop(state);
                        self.shared.writer.notify_one();
                    }
                    return Ok(Some(bytes));
                }
                if stream.received_reset || broken {
                    return Err(StreamGone);
                }
                if stream.received_fin {
                    self.done = true;
                    stream.recv_closed = true;
                    state.forget_if_over(self.id);
                    return Ok(None);
                }
            }
            readable.await;
        }
    }

    /// Asks the peer to stop sending (QUIC's STOP_SENDING); what it already
    /// sent is dropped on arrival.
    pub(crate) fn stop(&mut self, code: u32) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let mut state = self.shared.lock();
        let Some(stream) = state.streams.get_mut(&self.id) else {
            return;
        };
        stream.recv_closed = true;
        let dropped: usize = stream.received.drain(..).map(|b| b.len()).sum();
        let over = stream.received_fin || stream.received_reset;
        if !over {
            state.control.push_back(CarrierFrame::Stop {
                stream: self.id,
                code,
            });
        }
        state.pass_on(dropped, true);
        state.forget_if_over(self.id);
        drop(state);
        self.shared.writer.notify_one();
    }

    /// Whether the peer has already reset its direction.
    pub(crate) fn is_reset(&self) -> bool {
        let state = self.shared.lock();
        state
            .streams
            .get(&self.id)
            .is_some_and(|stream| stream.received_reset)
    }
}

impl Drop for SharedRecv {
    fn drop(&mut self) {
        // As a dropped quinn stream: the peer is told to stop.
        self.stop(0);
    }
}

#[cfg(test)]
mod tests;
