//! Who may start a connection before logging in: sshd's MaxStartups,
//! PerSourceMaxStartups and PerSourcePenalties, shared by both transports.
//!
//! [`Admission`] is a plain state machine: every call takes the time
//! (`now`), and the random early drop takes its dice roll as an argument,
//! so it is unit-tested with virtual time and fixed rolls. [`gate`] wraps
//! it for the listeners: a lock, the real clock, logging, and a permit per
//! connection that gives its slot back when the user has logged in or the
//! connection ends.
//!
//! Everything it tracks is bounded: per-source counts exist only for
//! connections holding a slot (at most MaxStartups' full), and the penalty
//! table holds at most max-sources4 + max-sources6 entries, dropping the
//! soonest to expire when full (sshd's permissive overflow).

pub mod gate;
pub mod keywords;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Instant;

use keywords::{mask, Overflow, Penalties, PreauthLimits};

/// How an unauthenticated connection ended, for PerSourcePenalties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The user logged in: no penalty.
    Authenticated,
    /// Handed to something that authenticates on its own (a QuicRelay
    /// tunnel): no penalty.
    HandedOff,
    /// Closed after one or more refused authentication attempts.
    AuthFailed,
    /// Closed without attempting authentication.
    NoAuth,
    /// LoginGraceTime ran out.
    GraceExceeded,
    /// The connection's task panicked.
    Crash,
}

/// Why a penalty was imposed; the texts are sshd's (srclimit.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PenaltyReason {
    Crash,
    AuthFail,
    NoAuth,
    GraceExceeded,
}

impl PenaltyReason {
    pub fn text(self) -> &'static str {
        match self {
            PenaltyReason::Crash => "penalty: caused crash",
            PenaltyReason::AuthFail => "penalty: failed authentication",
            PenaltyReason::NoAuth => "penalty: connections without attempting authentication",
            PenaltyReason::GraceExceeded => "penalty: exceeded LoginGraceTime",
        }
    }
}

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The source is serving a penalty.
    Penalised(PenaltyReason),
    /// The penalty table is full and overflow is deny-all.
    TooManyPenalised,
    /// MaxStartups: random early drop, or full.
    MaxStartups,
    /// PerSourceMaxStartups.
    PerSource,
}

impl Refusal {
    /// The end of sshd's "drop connection #N from ... on ..." line.
    pub fn log_text(self) -> &'static str {
        match self {
            Refusal::Penalised(reason) => reason.text(),
            Refusal::TooManyPenalised => "too many penalised addresses",
            // sshd says "Maxstartups" for both limits.
            Refusal::MaxStartups | Refusal::PerSource => "Maxstartups",
        }
    }
}

/// A connection's hold on a MaxStartups slot; give it back with
/// [`Admission::finish`]. Deliberately not `Clone`.
#[derive(Debug)]
pub struct Ticket {
    peer: IpAddr,
    source: IpAddr,
}

#[derive(Debug, Clone, Copy)]
struct Penalty {
    expiry: Instant,
    active: bool,
    reason: PenaltyReason,
}

/// The pre-authentication accounting of one server.
#[derive(Debug)]
pub struct Admission {
    limits: PreauthLimits,
    penalties_config: Penalties,
    per_source_limit: Option<u32>,
    /// Connections holding a slot: not yet logged in (sshd's "startups").
    unauthenticated: u32,
    /// Slots held per source block; an entry exists only while non-zero.
    per_source: HashMap<IpAddr, u32>,
    penalties: HashMap<IpAddr, Penalty>,
    /// The same penalties, soonest expiry first.
    by_expiry: BTreeSet<(Instant, IpAddr)>,
    /// Penalties per address family, for max-sources4/6.
    count4: usize,
    count6: usize,
}

impl Admission {
    pub fn new(limits: PreauthLimits) -> Self {
        Admission {
            penalties_config: limits.penalties.resolve(),
            per_source_limit: limits.per_source_limit(),
            limits,
            unauthenticated: 0,
            per_source: HashMap::new(),
            penalties: HashMap::new(),
            by_expiry: BTreeSet::new(),
            count4: 0,
            count6: 0,
        }
    }

    /// Unauthenticated connections now holding a slot.
    pub fn unauthenticated(&self) -> u32 {
        self.unauthenticated
    }

    /// Penalties now tracked (active or deferred).
    pub fn tracked_penalties(&self) -> usize {
        self.penalties.len()
    }

    /// Sources now holding at least one slot.
    pub fn tracked_sources(&self) -> usize {
        self.per_source.len()
    }

    /// Decides on a new connection from `peer`. `roll` is a uniformly
    /// random number in 0..100 for MaxStartups' random early drop. Checks
    /// run in sshd's order: penalties, then MaxStartups, then the per-source
    /// limit.
    pub fn admit(&mut self, peer: IpAddr, now: Instant, roll: u32) -> Result<Ticket, Refusal> {
        let peer = peer.to_canonical();
        let source = self.source_of(peer);
        if let Some(refusal) = self.penalty_refusal(peer, source, now) {
            return Err(refusal);
        }
        // draft §12.6: a server MUST limit unauthenticated connections, both transports counted together
        if self.should_drop(roll) {
            return Err(Refusal::MaxStartups);
        }
        let held = self.per_source.get(&source).copied().unwrap_or(0);
        // draft §12.6: a server MUST also limit unauthenticated connections per source
        if self.per_source_limit.is_some_and(|limit| held >= limit) {
            return Err(Refusal::PerSource);
        }
        self.per_source.insert(source, held + 1);
        self.unauthenticated += 1;
        Ok(Ticket { peer, source })
    }

    /// Gives a slot back, and penalises the source if the connection ended
    /// without a login. Returns the penalty log line, if one is due.
    pub fn finish(&mut self, ticket: Ticket, ending: Ending, now: Instant) -> Option<String> {
        self.unauthenticated = self.unauthenticated.saturating_sub(1);
        match self.per_source.get_mut(&ticket.source) {
            Some(held) if *held > 1 => *held -= 1,
            _ => {
                self.per_source.remove(&ticket.source);
            }
        }
        let reason = match ending {
            Ending::Authenticated | Ending::HandedOff => return None,
            Ending::AuthFailed => PenaltyReason::AuthFail,
            Ending::NoAuth => PenaltyReason::NoAuth,
            Ending::GraceExceeded => PenaltyReason::GraceExceeded,
            Ending::Crash => PenaltyReason::Crash,
        };
        self.penalise(ticket.peer, reason, now)
    }

    /// Whether QUIC should ask new clients to prove their address (Retry)
    /// before any key-exchange work: once half of MaxStartups' start are
    /// unauthenticated, so spoofed sources cannot fill the slots or the
    /// penalty table.
    pub fn wants_address_validation(&self) -> bool {
        // draft §12.6: above a threshold below the concurrency limit, answer Initials with Retry
        self.unauthenticated >= (self.limits.max_startups.start / 2).max(1)
    }

    fn source_of(&self, peer: IpAddr) -> IpAddr {
        let bits = if peer.is_ipv4() {
            self.limits.net_block_v4
        } else {
            self.limits.net_block_v6
        };
        mask(peer, bits).unwrap_or(peer)
    }

    /// sshd's should_drop_connection: nothing below start, everything from
    /// full on, and in between a probability rising linearly from rate%.
    fn should_drop(&self, roll: u32) -> bool {
        let ms = self.limits.max_startups;
        let startups = self.unauthenticated;
        if startups < ms.start {
            return false;
        }
        if startups >= ms.full || ms.rate >= 100 {
            return true;
        }
        let span = u64::from(ms.full - ms.start).max(1);
        let percent =
            u64::from(ms.rate) + u64::from(100 - ms.rate) * u64::from(startups - ms.start) / span;
        u64::from(roll % 100) < percent
    }

    fn family_full(&self, addr: IpAddr) -> (bool, Overflow) {
        let c = &self.penalties_config;
        if addr.is_ipv4() {
            (self.count4 >= c.max_sources4 as usize, c.overflow4)
        } else {
            (self.count6 >= c.max_sources6 as usize, c.overflow6)
        }
    }

    fn penalty_refusal(&mut self, peer: IpAddr, source: IpAddr, now: Instant) -> Option<Refusal> {
        if !self.penalties_config.enabled || self.limits.exempt(peer) {
            return None;
        }
        self.expire(now);
        if let (true, Overflow::DenyAll) = self.family_full(peer) {
            return Some(Refusal::TooManyPenalised);
        }
        let penalty = self.penalties.get(&source)?;
        (penalty.active && penalty.expiry > now).then_some(Refusal::Penalised(penalty.reason))
    }

    /// sshd's srclimit_penalise: a new penalty is active at once if longer
    /// than min; repeated ones add up (to at most max) and activate once
    /// more than min remains.
    fn penalise(&mut self, peer: IpAddr, reason: PenaltyReason, now: Instant) -> Option<String> {
        let c = self.penalties_config;
        if !c.enabled || self.limits.exempt(peer) {
            return None;
        }
        let length = match reason {
            PenaltyReason::Crash => c.crash,
            PenaltyReason::AuthFail => c.authfail,
            PenaltyReason::NoAuth => c.noauth,
            PenaltyReason::GraceExceeded => c.grace_exceeded,
        };
        if length.is_zero() {
            return None;
        }
        self.expire(now);
        let source = self.source_of(peer);
        let family = if peer.is_ipv4() { "ipv4" } else { "ipv6" };
        let bits = if peer.is_ipv4() {
            self.limits.net_block_v4
        } else {
            self.limits.net_block_v6
        };
        let Some(existing) = self.penalties.get(&source).copied() else {
            if let (true, Overflow::DenyAll) = self.family_full(peer) {
                return Some(format!(
                    "{family} penalty table full, cannot penalise {source}/{bits} for {}",
                    reason.text()
                ));
            }
            let active = length > c.min;
            self.insert(
                source,
                Penalty {
                    expiry: now + length,
                    active,
                    reason,
                },
            );
            self.evict_overflow(peer);
            let state = if active { "active" } else { "deferred" };
            return Some(format!(
                "{family}: new {source}/{bits} {state} penalty of {:.3} seconds for {}",
                length.as_secs_f64(),
                reason.text()
            ));
        };
        self.remove(source);
        let remaining = (existing.expiry.max(now) - now + length).min(c.max);
        let activating = !existing.active && remaining > c.min;
        self.insert(
            source,
            Penalty {
                expiry: now + remaining,
                active: existing.active || activating,
                reason,
            },
        );
        activating.then(|| {
            format!(
                "{source}/{bits}: activating {family} penalty of {:.3} seconds for {}",
                remaining.as_secs_f64(),
                reason.text()
            )
        })
    }

    fn insert(&mut self, source: IpAddr, penalty: Penalty) {
        self.by_expiry.insert((penalty.expiry, source));
        if self.penalties.insert(source, penalty).is_none() {
            self.count_family(source, true);
        }
    }

    fn remove(&mut self, source: IpAddr) {
        if let Some(old) = self.penalties.remove(&source) {
            self.by_expiry.remove(&(old.expiry, source));
            self.count_family(source, false);
        }
    }

    fn count_family(&mut self, source: IpAddr, added: bool) {
        let count = if source.is_ipv4() {
            &mut self.count4
        } else {
            &mut self.count6
        };
        *count = if added {
            count.saturating_add(1)
        } else {
            count.saturating_sub(1)
        };
    }

    /// Forgets penalties that have run out.
    fn expire(&mut self, now: Instant) {
        while let Some(&(expiry, source)) = self.by_expiry.first() {
            if expiry > now {
                break;
            }
            self.remove(source);
        }
    }

    /// Permissive overflow: past max-sources, forget the penalties of
    /// `peer`'s family that expire soonest.
    fn evict_overflow(&mut self, peer: IpAddr) {
        let limit = if peer.is_ipv4() {
            self.penalties_config.max_sources4
        } else {
            self.penalties_config.max_sources6
        } as usize;
        loop {
            let count = if peer.is_ipv4() {
                self.count4
            } else {
                self.count6
            };
            if count <= limit {
                return;
            }
            let victim = self
                .by_expiry
                .iter()
                .find(|(_, s)| s.is_ipv4() == peer.is_ipv4())
                .map(|&(_, s)| s);
            match victim {
                Some(source) => self.remove(source),
                None => return,
            }
        }
    }
}
