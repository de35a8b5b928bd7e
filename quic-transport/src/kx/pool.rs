//! A small pool of pre-generated sntrup761 key pairs.
//!
//! Why: sntrup761 key generation costs about 0.2-0.45 ms, a quarter to a
//! third of a whole loopback QUIC handshake, and the client needs a key pair
//! before it can send its first packet. Encapsulation (server) and
//! decapsulation (client) are ten times cheaper. So a background thread
//! keeps [`CAPACITY`] key pairs ready, and a handshake only pops one.
//!
//! How:
//! - One filler thread per process, started by the first [`prewarm`] (which
//!   [`super::crypto_provider`] calls when `x25519-sntrup761` is selected,
//!   and [`take`] calls too). It sleeps on a condition variable while the
//!   pool is full, so it costs nothing between handshakes. After a pair is
//!   taken it waits [`REFILL_DELAY`] before making the replacement, so the
//!   refill runs after the handshake rather than beside it.
//! - The pool is bounded: at most [`CAPACITY`] pairs (about 3 KB each).
//! - Each pair is handed out once and never returned, so keys stay
//!   ephemeral: a pair lives in memory only until it is used.
//! - If the pool is empty (a burst of handshakes, or the thread could not be
//!   started), [`take`] generates inline: slower, never wrong.

use std::sync::{Condvar, Mutex, MutexGuard, Once, PoisonError};
use std::time::Duration;

use pqcrypto_ntruprime::sntrup761::{self, PublicKey, SecretKey};

/// How many key pairs are kept ready: one for the next connection and one
/// for a quick second one (reconnect, parallel connection); more would
/// mostly be generated for nothing by one-shot clients.
pub(crate) const CAPACITY: usize = 2;

/// How long the filler waits after a pair is taken before it generates the
/// replacement, so that it does not compete for the CPU with the handshake
/// that took the pair (measurable on 2 cores over loopback).
const REFILL_DELAY: Duration = Duration::from_millis(10);

struct Pool {
    keys: Mutex<Vec<(PublicKey, SecretKey)>>,
    /// Signalled when a pair is taken, waking the filler.
    wanted: Condvar,
    filler: Once,
}

static POOL: Pool = Pool {
    keys: Mutex::new(Vec::new()),
    wanted: Condvar::new(),
    filler: Once::new(),
};

fn lock() -> MutexGuard<'static, Vec<(PublicKey, SecretKey)>> {
    // A panic while holding the lock cannot leave the Vec half-updated
    // (push/pop only), so a poisoned lock is still safe to use.
    POOL.keys.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts the background filler if it is not running yet. Cheap to call
/// again.
pub fn prewarm() {
    POOL.filler.call_once(|| {
        // If the thread cannot be spawned, `take` falls back to inline
        // generation; nothing else depends on it.
        let spawned = std::thread::Builder::new()
            .name("sshq-sntrup761-keygen".into())
            .spawn(fill_forever);
        if let Err(e) = spawned {
            tracing::debug!("sntrup761 key pool: no filler thread ({e}); generating inline");
        }
    });
}

fn fill_forever() {
    let mut initial = true;
    loop {
        {
            let mut keys = lock();
            while keys.len() >= CAPACITY {
                keys = POOL
                    .wanted
                    .wait(keys)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        if !initial {
            // A pair was just taken for a handshake that is now running:
            // let it have the CPU first.
            std::thread::sleep(REFILL_DELAY);
        }
        initial = false;
        // Generate without holding the lock, so `take` never waits on it.
        loop {
            let pair = sntrup761::keypair();
            let mut keys = lock();
            if keys.len() < CAPACITY {
                keys.push(pair);
            }
            if keys.len() >= CAPACITY {
                break;
            }
        }
    }
}

/// Takes a fresh key pair: from the pool when one is ready, else generated
/// on the spot.
pub(crate) fn take() -> (PublicKey, SecretKey) {
    prewarm();
    let ready = lock().pop();
    POOL.wanted.notify_one();
    ready.unwrap_or_else(sntrup761::keypair)
}

/// How many pairs are ready now (for tests and diagnostics).
#[cfg(test)]
pub(crate) fn available() -> usize {
    lock().len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pqcrypto_traits::kem::PublicKey as _;
    use std::time::Instant;

    #[test]
    fn pool_refills_in_background_and_never_repeats_a_key() {
        prewarm();
        let deadline = Instant::now() + Duration::from_secs(10);
        while available() < CAPACITY && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        // Other tests may be taking keys at the same time: only bounds hold.
        assert!((1..=CAPACITY).contains(&available()));

        // Draining more than the capacity still works (inline fallback).
        let pks: Vec<Vec<u8>> = (0..CAPACITY + 2)
            .map(|_| take().0.as_bytes().to_vec())
            .collect();
        for (i, a) in pks.iter().enumerate() {
            assert_eq!(a.len(), sntrup761::public_key_bytes());
            assert!(
                pks.iter().skip(i + 1).all(|b| a != b),
                "key handed out twice"
            );
        }

        let deadline = Instant::now() + Duration::from_secs(10);
        while available() < CAPACITY && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(available() <= CAPACITY);
        assert!(available() > 0, "filler did not refill the pool");
    }
}
