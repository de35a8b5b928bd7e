//! The two buffers that make a reattach lose nothing: the server's
//! [`ReplayBuffer`] of output the client has not acknowledged, and the
//! client's [`InputLog`] of input the server has not acknowledged.
//!
//! Both count bytes from the start of the session (offsets are `u64`, so
//! they never wrap), and both drop what the peer acknowledged: an idle,
//! attached session holds nothing.

use std::collections::VecDeque;

/// Chunks shorter than this take the next read's bytes too.
const JOIN_BELOW: usize = 4096;

/// Output the client may not have received yet, at most `limit` bytes of
/// it: past that the oldest is dropped, and a client reattaching from
/// before it is told its output was lost (draft §8.12.4).
#[derive(Debug)]
pub struct ReplayBuffer {
    /// Offset of the first byte of `chunks`.
    start: u64,
    chunks: VecDeque<Vec<u8>>,
    held: usize,
    limit: usize,
}

impl ReplayBuffer {
    pub fn new(limit: usize) -> ReplayBuffer {
        ReplayBuffer {
            start: 0,
            chunks: VecDeque::new(),
            held: 0,
            limit,
        }
    }

    /// Appends output; with `may_drop` (nobody attached), drops the oldest
    /// to stay within the limit and returns how many bytes went. While a
    /// client is attached nothing is dropped (its offsets must stay true):
    /// the caller stops reading the program's output at [`is_full`]
    /// instead, so the buffer exceeds the limit by at most one read.
    ///
    /// [`is_full`]: Self::is_full
    pub fn push(&mut self, bytes: Vec<u8>, may_drop: bool) -> u64 {
        if bytes.is_empty() {
            return 0;
        }
        self.held += bytes.len();
        // Small reads (a program writing a byte at a time) join the last
        // chunk, so the bookkeeping per byte stays small.
        match self.chunks.back_mut() {
            Some(last) if last.len() < JOIN_BELOW => last.extend_from_slice(&bytes),
            _ => self.chunks.push_back(bytes),
        }
        let mut dropped = 0;
        while may_drop && self.held > self.limit {
            let Some(front) = self.chunks.pop_front() else {
                break;
            };
            self.held -= front.len();
            self.start += front.len() as u64;
            dropped += front.len() as u64;
        }
        dropped
    }

    /// At or over the limit: an attached client must acknowledge before
    /// more output is read.
    pub fn is_full(&self) -> bool {
        self.held >= self.limit
    }

    /// The offset just past the last byte pushed.
    pub fn end(&self) -> u64 {
        self.start + self.held as u64
    }

    /// The offset of the oldest byte still held.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.held
    }

    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// The peer has everything before `offset`: forget it. Offsets beyond
    /// [`end`](Self::end) acknowledge what was never sent and are refused.
    pub fn ack(&mut self, offset: u64) -> Result<(), AckBeyondEnd> {
        if offset > self.end() {
            return Err(AckBeyondEnd {
                acked: offset,
                end: self.end(),
            });
        }
        while let Some(front) = self.chunks.front() {
            let front_end = self.start + front.len() as u64;
            if front_end > offset {
                break;
            }
            self.held -= front.len();
            self.start = front_end;
            self.chunks.pop_front();
        }
        Ok(())
    }

    /// Up to `max` bytes from `offset` on (empty at the end or before the
    /// start, which the caller checks with [`start`](Self::start)).
    pub fn read_from(&self, offset: u64, max: usize) -> &[u8] {
        let Some(mut skip) = offset.checked_sub(self.start) else {
            return &[];
        };
        for chunk in &self.chunks {
            let len = chunk.len() as u64;
            if skip < len {
                let from = usize::try_from(skip).unwrap_or(usize::MAX);
                let rest = chunk.get(from..).unwrap_or_default();
                return rest.get(..max.min(rest.len())).unwrap_or_default();
            }
            skip -= len;
        }
        &[]
    }
}

/// An acknowledgement of bytes that were never sent: a broken or hostile
/// peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("acknowledgement of {acked} bytes, but only {end} were sent")]
pub struct AckBeyondEnd {
    pub acked: u64,
    pub end: u64,
}

/// The client's input since the server last acknowledged it: what a
/// reattach sends again. Bounded by the caller, which stops reading the
/// terminal once [`len`](Self::len) passes its limit.
#[derive(Debug, Default)]
pub struct InputLog {
    /// Offset of the first byte of `bytes`.
    start: u64,
    bytes: VecDeque<u8>,
}

impl InputLog {
    pub fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend(bytes);
    }

    /// The offset just past the last byte pushed.
    pub fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The server has everything before `offset`.
    pub fn ack(&mut self, offset: u64) -> Result<(), AckBeyondEnd> {
        if offset > self.end() {
            return Err(AckBeyondEnd {
                acked: offset,
                end: self.end(),
            });
        }
        let drop = usize::try_from(offset.saturating_sub(self.start)).unwrap_or(usize::MAX);
        self.bytes.drain(..drop.min(self.bytes.len()));
        self.start = self.start.max(offset);
        Ok(())
    }

    /// Everything from `offset` on, to send again after a reattach.
    pub fn since(&self, offset: u64) -> Vec<u8> {
        let skip = usize::try_from(offset.saturating_sub(self.start)).unwrap_or(usize::MAX);
        self.bytes.iter().skip(skip).copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_keeps_what_is_unacknowledged() {
        let mut buffer = ReplayBuffer::new(100);
        assert_eq!(buffer.push(b"hello ".to_vec(), true), 0);
        assert_eq!(buffer.push(b"world".to_vec(), true), 0);
        assert_eq!(buffer.end(), 11);
        assert_eq!(buffer.read_from(3, 100), b"lo world");
        assert_eq!(buffer.read_from(6, 2), b"wo");
        assert_eq!(buffer.read_from(11, 100), b"");
        // Small writes joined one chunk, which stays whole until all of it
        // is acknowledged.
        buffer.ack(8).unwrap();
        assert_eq!((buffer.start(), buffer.len()), (0, 11));
        assert_eq!(buffer.read_from(8, 100), b"rld");
        buffer.ack(11).unwrap();
        assert_eq!(buffer.read_from(2, 100), b"", "before the start");
        assert!(buffer.is_empty());
        assert_eq!(buffer.ack(12), Err(AckBeyondEnd { acked: 12, end: 11 }));
    }

    #[test]
    fn replay_drops_the_oldest_beyond_its_limit() {
        let mut buffer = ReplayBuffer::new(10 * JOIN_BELOW);
        buffer.push(vec![1; 6 * JOIN_BELOW], true);
        buffer.push(vec![2; 4 * JOIN_BELOW], true);
        assert!(buffer.is_full());
        assert_eq!(buffer.push(vec![3; 3], true), 6 * JOIN_BELOW as u64);
        let start = 6 * JOIN_BELOW as u64;
        assert_eq!(
            (buffer.start(), buffer.end()),
            (start, start + 4 * JOIN_BELOW as u64 + 3)
        );
        assert_eq!(buffer.read_from(start, 100), [2; 100]);
        // Attached: nothing is dropped, the caller waits instead.
        assert_eq!(buffer.push(vec![4; JOIN_BELOW], false), 0);
        assert_eq!(buffer.start(), start);
    }

    #[test]
    fn input_log_resends_from_any_acknowledged_offset() {
        let mut log = InputLog::default();
        log.push(b"echo hi\r");
        log.push(b"ls\r");
        assert_eq!(log.since(5), b"hi\rls\r");
        log.ack(8).unwrap();
        assert_eq!((log.len(), log.since(8)), (3, b"ls\r".to_vec()));
        // An older offset than already acknowledged resends only what is left.
        assert_eq!(log.since(2), b"ls\r");
        assert!(log.ack(20).is_err());
        log.ack(11).unwrap();
        assert!(log.is_empty());
        assert_eq!(log.end(), 11);
    }
}
