//! [`Admission`] for the listeners: one [`Gate`] shared by the TCP and
//! QUIC listeners of a server (one pre-authentication accounting), and a
//! [`Permit`] per admitted connection that returns its slot when the user
//! has logged in or the connection ends, whichever comes first.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::keywords::PreauthLimits;
use super::{Admission, Ending, Refusal, Ticket};

/// What sshd writes to a refused client before closing (best effort).
pub const REFUSAL_BANNER: &[u8] = b"Not allowed at this time\r\n";

/// At most this many "drop connection" lines per [`DROP_LOG_PERIOD`]; a
/// flood is then summed up in one line, so it cannot flood the log.
const DROP_LOG_BURST: u32 = 10;
const DROP_LOG_PERIOD: Duration = Duration::from_secs(10);

/// The pre-authentication gate of one server.
pub struct Gate {
    admission: Mutex<Admission>,
    drop_log: Mutex<DropLog>,
    /// Mixed into each dice roll, so every roll hashes something new.
    rolls: AtomicU64,
    random: RandomState,
}

#[derive(Default)]
struct DropLog {
    period_start: Option<Instant>,
    logged: u32,
    suppressed: u32,
    /// "Maxstartups" or "PerSourcePenalties", sshd's names for the limits
    /// in its rate-limit summary; the last suppressed drop's.
    suppressed_category: &'static str,
}

impl Gate {
    pub fn new(limits: PreauthLimits) -> Arc<Gate> {
        Arc::new(Gate {
            admission: Mutex::new(Admission::new(limits)),
            drop_log: Mutex::new(DropLog::default()),
            rolls: AtomicU64::new(0),
            random: RandomState::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, Admission> {
        // The state stays consistent between calls (no call panics midway),
        // so a poisoned lock is still usable.
        self.admission.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A uniformly distributed number in 0..100 that a peer cannot predict
    /// (SipHash with this process's random keys).
    fn roll(&self) -> u32 {
        let mut hasher = self.random.build_hasher();
        hasher.write_u64(self.rolls.fetch_add(1, Ordering::Relaxed));
        (hasher.finish() % 100) as u32
    }

    /// Admits a new connection from `peer` to `local`, or logs sshd's
    /// "drop connection" line and returns `None`: the caller then closes it
    /// (TCP: after [`REFUSAL_BANNER`]; QUIC: CONNECTION_REFUSED).
    pub fn admit(self: &Arc<Self>, peer: SocketAddr, local: Option<SocketAddr>) -> Option<Permit> {
        let roll = self.roll();
        let (decision, startups) = {
            let mut state = self.state();
            let startups = state.unauthenticated();
            (state.admit(peer.ip(), Instant::now(), roll), startups)
        };
        match decision {
            Ok(ticket) => Some(Permit {
                gate: self.clone(),
                ticket: Some(ticket),
                ending: None,
            }),
            Err(refusal) => {
                self.log_drop(startups, peer, local, refusal);
                None
            }
        }
    }

    /// Whether new QUIC clients should be sent a Retry first (see
    /// [`Admission::wants_address_validation`]).
    pub fn wants_address_validation(&self) -> bool {
        self.state().wants_address_validation()
    }

    /// Unauthenticated connections holding a slot now.
    pub fn unauthenticated(&self) -> u32 {
        self.state().unauthenticated()
    }

    fn finish(&self, ticket: Ticket, ending: Ending) {
        let line = self.state().finish(ticket, ending, Instant::now());
        if let Some(line) = line {
            tracing::info!("{line}");
        }
    }

    fn log_drop(
        &self,
        startups: u32,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        refusal: Refusal,
    ) {
        let category = match refusal {
            Refusal::Penalised(_) | Refusal::TooManyPenalised => "PerSourcePenalties",
            Refusal::MaxStartups | Refusal::PerSource => "Maxstartups",
        };
        let now = Instant::now();
        let mut log = self.drop_log.lock().unwrap_or_else(|e| e.into_inner());
        let new_period = log
            .period_start
            .is_none_or(|start| now.duration_since(start) >= DROP_LOG_PERIOD);
        if new_period {
            if log.suppressed > 0 {
                tracing::info!(
                    "{} logging rate-limited: additional {} connections dropped",
                    log.suppressed_category,
                    log.suppressed
                );
            }
            *log = DropLog {
                period_start: Some(now),
                ..DropLog::default()
            };
        }
        if log.logged >= DROP_LOG_BURST {
            log.suppressed += 1;
            log.suppressed_category = category;
            return;
        }
        log.logged += 1;
        let (local_ip, local_port) = local
            .map(|a| (a.ip().to_canonical().to_string(), a.port()))
            .unwrap_or_else(|| ("UNKNOWN".to_string(), 0));
        tracing::info!(
            "drop connection #{startups} from [{}]:{} on [{local_ip}]:{local_port} {}",
            peer.ip().to_canonical(),
            peer.port(),
            refusal.log_text()
        );
        if refusal == Refusal::PerSource {
            tracing::debug!("{} reached PerSourceMaxStartups", peer.ip());
        }
    }
}

/// One admitted connection's slot. Call [`Permit::authenticated`] once the
/// user has logged in; otherwise the slot is returned when the permit is
/// dropped, and the source penalised according to how the connection
/// ended ([`Permit::ended`], or else what the counted refusals and a panic
/// in progress say).
pub struct Permit {
    gate: Arc<Gate>,
    ticket: Option<Ticket>,
    ending: Option<Ending>,
}

impl Permit {
    /// The user logged in: the slot is free again, with no penalty.
    pub fn authenticated(mut self) {
        self.ending = Some(Ending::Authenticated);
    }

    /// Records how the connection ended, for when the permit is dropped.
    pub fn ended(&mut self, ending: Ending) {
        self.ending = Some(ending);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        // A connection that ends without logging in is `noauth`, even if
        // keys were refused: as in sshd, whose monitor counts a login as
        // attempted (authfail) only once it checks a signature or a
        // password for a key or user it allows, never for refused keys.
        let ending = match self.ending {
            // A panic unwinding through the connection's task.
            None if std::thread::panicking() => Ending::Crash,
            None => Ending::NoAuth,
            Some(ending) => ending,
        };
        self.gate.finish(ticket, ending);
    }
}
