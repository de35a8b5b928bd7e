//! One direction of the emulated link, as a pure state machine.
//!
//! Like quinn-proto, [`Link`] does no IO and reads no clock: the caller hands
//! it packets with the time they arrived ([`Link::handle_packet`]), asks for
//! packets that are due ([`Link::poll_transmit`]) and learns when to come back
//! ([`Link::poll_timeout`]). Tests drive it with virtual time.
//!
//! A packet goes through these stages, in this order:
//! 1. blackout: while the link is down every packet is dropped; with UDP
//!    blocked (a network that passes only TCP), every UDP packet is;
//! 2. loss: random loss, then Gilbert-Elliott bursty loss;
//! 3. bottleneck: at a limited rate, a packet waits for the packets ahead of
//!    it and is then serialized; the queue is bounded and drops at the tail;
//! 4. delay line: the one-way delay plus jitter;
//! 5. delivery: a packet that comes due while a blackout is on is dropped
//!    too (a blackout cuts the path, including what was on its way).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use crate::options::LinkConfig;

/// Packet counters of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LinkStats {
    /// Packets offered to the link.
    pub received: u64,
    /// Packets delivered to the far end.
    pub forwarded: u64,
    pub forwarded_bytes: u64,
    /// Dropped by random or Gilbert-Elliott loss.
    pub dropped_loss: u64,
    /// Dropped because the bottleneck queue was full.
    pub dropped_queue: u64,
    /// Dropped because the link was blacked out on arrival or at delivery.
    pub dropped_blackout: u64,
    /// UDP packets dropped while UDP is blocked.
    pub dropped_udp_blocked: u64,
}

/// What happened to a packet handed to [`Link::handle_packet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The packet is on its way and will come out of `poll_transmit`.
    Accepted,
    Dropped(DropReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    Loss,
    Queue,
    Blackout,
    UdpBlocked,
}

/// A packet in the delay line, ordered so that [`BinaryHeap`] (a max-heap)
/// pops the earliest delivery first, and packets due at the same instant in
/// the order they arrived.
struct Scheduled {
    deliver_at: Instant,
    sequence: u64,
    packet: Vec<u8>,
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.deliver_at, other.sequence).cmp(&(self.deliver_at, self.sequence))
    }
}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scheduled {}

/// Whether an IP packet carries UDP: IPv4's protocol field, IPv6's next
/// header (the lab sends no extension headers).
fn is_udp(packet: &[u8]) -> bool {
    const UDP: u8 = 17;
    match packet.first().map(|b| b >> 4) {
        Some(4) => packet.get(9) == Some(&UDP),
        Some(6) => packet.get(6) == Some(&UDP),
        _ => false,
    }
}

pub struct Link {
    config: LinkConfig,
    rng: Xoshiro256PlusPlus,
    blackout: bool,
    udp_blocked: bool,
    /// Current Gilbert-Elliott state.
    in_bad_state: bool,
    /// When each packet still at the bottleneck finishes serializing, oldest
    /// first; its length is the queue occupancy.
    bottleneck: VecDeque<Instant>,
    /// When the bottleneck finishes the last packet queued so far.
    bottleneck_free_at: Option<Instant>,
    delay_line: BinaryHeap<Scheduled>,
    /// Latest delivery time handed out, so order-preserving jitter never
    /// schedules a packet ahead of an earlier one.
    last_delivery: Option<Instant>,
    next_sequence: u64,
    stats: LinkStats,
}

impl Link {
    /// A link with these settings whose random choices follow `seed`.
    pub fn new(config: LinkConfig, seed: u64) -> Link {
        Link {
            config,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            blackout: false,
            udp_blocked: false,
            in_bad_state: false,
            bottleneck: VecDeque::new(),
            bottleneck_free_at: None,
            delay_line: BinaryHeap::new(),
            last_delivery: None,
            next_sequence: 0,
            stats: LinkStats::default(),
        }
    }

    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// New settings apply to packets arriving from now on; packets already
    /// past the bottleneck keep the delivery time they were given.
    pub fn set_config(&mut self, config: LinkConfig) {
        self.config = config;
    }

    pub fn set_blackout(&mut self, on: bool) {
        self.blackout = on;
    }

    pub fn blackout(&self) -> bool {
        self.blackout
    }

    /// Drops UDP from now on (or no longer), as a network that lets only
    /// TCP through does.
    pub fn set_udp_blocked(&mut self, on: bool) {
        self.udp_blocked = on;
    }

    pub fn udp_blocked(&self) -> bool {
        self.udp_blocked
    }

    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Packets accepted but not yet delivered or dropped.
    pub fn in_flight(&self) -> usize {
        self.delay_line.len()
    }

    /// Offers a packet that arrived at `now`.
    pub fn handle_packet(&mut self, now: Instant, packet: Vec<u8>) -> Verdict {
        self.stats.received += 1;
        if self.blackout {
            self.stats.dropped_blackout += 1;
            return Verdict::Dropped(DropReason::Blackout);
        }
        if self.udp_blocked && is_udp(&packet) {
            self.stats.dropped_udp_blocked += 1;
            return Verdict::Dropped(DropReason::UdpBlocked);
        }
        if self.is_lost() {
            self.stats.dropped_loss += 1;
            return Verdict::Dropped(DropReason::Loss);
        }
        let Some(sent_at) = self.pass_bottleneck(now, packet.len()) else {
            self.stats.dropped_queue += 1;
            return Verdict::Dropped(DropReason::Queue);
        };
        let mut deliver_at = sent_at + self.sample_delay();
        if !self.config.jitter_reorder {
            if let Some(last) = self.last_delivery {
                deliver_at = deliver_at.max(last);
            }
        }
        self.last_delivery = Some(
            self.last_delivery
                .map_or(deliver_at, |last| last.max(deliver_at)),
        );
        self.delay_line.push(Scheduled {
            deliver_at,
            sequence: self.next_sequence,
            packet,
        });
        self.next_sequence += 1;
        Verdict::Accepted
    }

    /// The next packet due at or before `now`, if any. Call until `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        // Bounded by the delay line's length: each turn removes one packet.
        while self
            .delay_line
            .peek()
            .is_some_and(|next| next.deliver_at <= now)
        {
            let due = self.delay_line.pop()?;
            if self.blackout {
                self.stats.dropped_blackout += 1;
                continue;
            }
            self.stats.forwarded += 1;
            self.stats.forwarded_bytes += due.packet.len() as u64;
            return Some(due.packet);
        }
        None
    }

    /// When the next packet comes due; `None` when nothing is in flight.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.delay_line.peek().map(|next| next.deliver_at)
    }

    /// Draws the loss decision for one packet. Random loss and the
    /// Gilbert-Elliott model are independent; either can drop the packet.
    fn is_lost(&mut self) -> bool {
        let mut lost = self.config.loss > 0.0 && self.rng.random::<f64>() < self.config.loss;
        if let Some(model) = self.config.gilbert_elliott {
            let switch = if self.in_bad_state {
                model.bad_to_good
            } else {
                model.good_to_bad
            };
            if self.rng.random::<f64>() < switch {
                self.in_bad_state = !self.in_bad_state;
            }
            let loss = if self.in_bad_state {
                model.loss_in_bad
            } else {
                model.loss_in_good
            };
            lost |= self.rng.random::<f64>() < loss;
        }
        lost
    }

    /// Returns when a packet of `len` bytes arriving at `now` has been fully
    /// serialized onto the bottleneck, or `None` if the queue is full.
    /// Without a rate limit the packet passes at once.
    fn pass_bottleneck(&mut self, now: Instant, len: usize) -> Option<Instant> {
        let Some(rate) = self.config.rate_bits_per_sec else {
            return Some(now);
        };
        while self.bottleneck.front().is_some_and(|&done| done <= now) {
            self.bottleneck.pop_front();
        }
        if self.bottleneck.len() >= self.config.queue_packets {
            return None;
        }
        let start = self.bottleneck_free_at.map_or(now, |free| free.max(now));
        // Rates are validated to at least 1 kbit/s, so this stays far below
        // u64 nanoseconds; `as` saturates rather than wrapping in any case.
        let transmission = Duration::from_nanos((len as f64 * 8.0 * 1e9 / rate).round() as u64);
        let done = start + transmission;
        self.bottleneck_free_at = Some(done);
        self.bottleneck.push_back(done);
        Some(done)
    }

    /// The configured delay plus a uniform jitter offset, never below zero.
    fn sample_delay(&mut self) -> Duration {
        let delay = self.config.delay;
        let jitter = self.config.jitter;
        if jitter.is_zero() {
            return delay;
        }
        // Delay and jitter are at most an hour (validated), well within i64 ns.
        let jitter_ns = jitter.as_nanos() as i64;
        let offset_ns = self.rng.random_range(-jitter_ns..=jitter_ns);
        let total_ns = (delay.as_nanos() as i64).saturating_add(offset_ns).max(0);
        Duration::from_nanos(total_ns as u64)
    }
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;
