//! The client's side of the pre-authentication credit (draft §7.6): until
//! USERAUTH_SUCCESS the server reads only the control stream, so every
//! octet the client writes on channel streams meanwhile uses up the
//! server's connection-level flow-control credit for as long as
//! authentication lasts. Channel writers draw from one [`PreauthCredit`]
//! per connection, and what is left stays free for further
//! USERAUTH_REQUEST frames, so a refused first key cannot leave the client
//! unable to send the next one.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// The least connection-level credit (`initial_max_data`) a server
/// advertises before USERAUTH_SUCCESS (draft §7.7). quinn does not show a
/// peer's transport parameters, so the client cannot read the server's real
/// value; it counts on this floor, which every conforming server allows
/// (sshqd allows `crate::preauth::PREAUTH_RECEIVE_WINDOW`, 64 KiB).
pub const MIN_SERVER_PREAUTH_WINDOW: usize = 16 * 1024;

/// Octets a client writes on channel streams before USERAUTH_SUCCESS: half
/// the server's pre-authentication credit.
// draft §7.6: before USERAUTH_SUCCESS a client sends at most half of the server's initial_max_data on channel streams
pub const PREAUTH_CHANNEL_BUDGET: usize = MIN_SERVER_PREAUTH_WINDOW / 2;

/// What channel streams may still send before USERAUTH_SUCCESS, shared by
/// every channel of one connection. Once authentication is over it no
/// longer limits anything.
#[derive(Debug, Clone)]
pub(crate) struct PreauthCredit {
    /// One permit per octet. Closed once authentication is over: a closed
    /// semaphore grants nothing, so closing is what ends the limit.
    octets: Arc<Semaphore>,
}

impl PreauthCredit {
    pub(crate) fn new(octets: usize) -> Self {
        PreauthCredit {
            octets: Arc::new(Semaphore::new(octets.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Waits until `len` more octets may be written on a channel stream.
    /// A write bigger than what is left, or than the whole budget, waits
    /// for the end of authentication (draft §7.6: further data waits).
    pub(crate) async fn take(&self, len: usize) {
        if self.octets.is_closed() || len == 0 {
            return;
        }
        let wanted = u32::try_from(len).unwrap_or(u32::MAX);
        if let Ok(permits) = self.octets.acquire_many(wanted).await {
            // Spent: the server holds these octets until it has logged
            // the client in.
            permits.forget();
        }
    }

    /// Authentication is over (whatever its outcome: after a failure the
    /// connection is closing, and writers must not wait for ever).
    pub(crate) fn lift(&self) {
        self.octets.close();
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// Polls `future` once: whether it is done at once (no clock, no task).
    fn done_now(future: Pin<&mut impl Future<Output = ()>>) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        future.poll(&mut cx) == Poll::Ready(())
    }

    #[test]
    fn the_budget_leaves_half_of_what_sshqd_allows_and_what_any_server_must() {
        assert!(crate::preauth::PREAUTH_RECEIVE_WINDOW as usize >= MIN_SERVER_PREAUTH_WINDOW);
        assert_eq!(PREAUTH_CHANNEL_BUDGET * 2, MIN_SERVER_PREAUTH_WINDOW);
    }

    #[test]
    fn writes_beyond_the_budget_wait_for_the_end_of_authentication() {
        let credit = PreauthCredit::new(100);
        assert!(done_now(std::pin::pin!(credit.take(60))));
        assert!(done_now(std::pin::pin!(credit.take(40))));
        let mut waiting = std::pin::pin!(credit.take(1));
        assert!(!done_now(waiting.as_mut()), "an octet past the budget");
        assert!(!done_now(waiting.as_mut()), "still nothing released");
        credit.lift();
        assert!(done_now(waiting.as_mut()), "the writer goes on once lifted");
        // No limit any more, whatever the size.
        assert!(done_now(std::pin::pin!(credit.take(usize::MAX))));
    }

    #[test]
    fn a_write_larger_than_the_whole_budget_waits_instead_of_failing() {
        let credit = PreauthCredit::new(10);
        let mut big = std::pin::pin!(credit.take(11));
        assert!(!done_now(big.as_mut()));
        credit.lift();
        assert!(done_now(big.as_mut()));
    }
}
