//! Getting back to a held session after the connection was lost: connect
//! and log in again, with backoff, through the same jump hosts and with the
//! same `Transport` choice (so `auto` may land on TCP where UDP no longer
//! passes), until the server's hold time is over. A status line says what
//! is happening, and `~.` gives up at once.

use std::io::Write;
use std::time::Duration;

use sshq_core::error::ConnectError;
use tokio::time::Instant;

use super::error::ClientError;
use super::reattach::{Carry, Outcome};
use super::{connect, jump, Plan};

/// The first wait between attempts; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between attempts: a network that comes back is found
/// within this long.
const MAX_BACKOFF: Duration = Duration::from_secs(15);
/// How long one attempt may take when `ConnectTimeout` does not say (a
/// black-holed path must not stall the retries).
const ATTEMPT_LIMIT: Duration = Duration::from_secs(20);

/// Connects again for `carry`'s session; fails when the user gives up
/// (`~.`), the hold time is over, or an attempt fails in a way no retry
/// mends (the host key changed, the login was refused).
pub async fn reconnect(
    hops: &[Plan],
    plan: &Plan,
    carry: &mut Carry,
) -> Result<(jump::JumpChain, connect::AnyConnection), ClientError> {
    let lost_at = Instant::now();
    let give_up_at = lost_at + carry.hold();
    let mut backoff = FIRST_BACKOFF;
    let mut status = StatusLine::new(lost_at);
    let attempt_limit = match plan.options.connect_timeout {
        Some(limit) if !limit.is_zero() => limit,
        _ => ATTEMPT_LIMIT,
    };
    let mut number = 0u32;
    loop {
        number = number.saturating_add(1);
        status.show("reconnecting");
        // interop/rtt_setup.py times a reattach from this line.
        tracing::debug!("reconnect attempt {number}: connecting");
        // The terminal is raw and read for the session: nobody could
        // answer a password prompt, so the new login uses keys only.
        let attempt = tokio::time::timeout(
            attempt_limit,
            super::establish(hops, plan, super::auth::Prompts::Never),
        );
        tokio::pin!(attempt);
        let result = loop {
            tokio::select! {
                result = &mut attempt => break result,
                outcome = carry.terminal.while_disconnected(&mut carry.session) => {
                    status.clear();
                    return Err(given_up(outcome, plan));
                }
                () = tokio::time::sleep(Duration::from_secs(1)) => status.show("reconnecting"),
            }
        };
        match result {
            Ok(Ok(connected)) => {
                status.clear();
                tracing::debug!("reconnected after {:?}", lost_at.elapsed());
                return Ok(connected);
            }
            Ok(Err(error)) if !worth_retrying(&error) => {
                status.clear();
                return Err(error);
            }
            Ok(Err(error)) => tracing::debug!("reconnect attempt failed: {error}"),
            Err(_) => tracing::debug!("reconnect attempt timed out after {attempt_limit:?}"),
        }
        let now = Instant::now();
        if now + backoff >= give_up_at {
            status.clear();
            return Err(ClientError::ReattachGaveUp(format!(
                "could not reconnect to {} within the {} s the server holds it",
                plan.host,
                carry.hold().as_secs()
            )));
        }
        let retry_at = now + backoff;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        while Instant::now() < retry_at {
            tokio::select! {
                outcome = carry.terminal.while_disconnected(&mut carry.session) => {
                    status.clear();
                    return Err(given_up(outcome, plan));
                }
                () = tokio::time::sleep(Duration::from_secs(1).min(retry_at - Instant::now())) => {
                    status.show("waiting to reconnect");
                }
            }
        }
    }
}

fn given_up(outcome: Outcome, plan: &Plan) -> ClientError {
    match outcome {
        Outcome::Terminated => ClientError::TerminatedWhileDisconnected(plan.host.clone()),
        Outcome::Killed(signal) => ClientError::KilledWhileDisconnected(signal),
        Outcome::Exited(_) | Outcome::Lost(_) | Outcome::OutputGone => {
            ClientError::ReattachGaveUp("the terminal went away".into())
        }
    }
}

/// Whether another attempt may succeed: the network or the server may come
/// back; a refused login or a changed host key will not change by itself.
fn worth_retrying(error: &ClientError) -> bool {
    match error {
        ClientError::Connect(e) => !matches!(
            e,
            ConnectError::HostKeyRejected
                | ConnectError::PermissionDenied { .. }
                | ConnectError::Negotiation { .. }
                | ConnectError::Setup(_)
        ),
        _ => false,
    }
}

/// The one line that says the session is disconnected, rewritten in place.
struct StatusLine {
    since: Instant,
    shown: bool,
}

impl StatusLine {
    fn new(since: Instant) -> StatusLine {
        StatusLine {
            since,
            shown: false,
        }
    }

    fn show(&mut self, doing: &str) {
        let mut stderr = std::io::stderr();
        // The first time on a line of its own, then over itself.
        let lead = if self.shown { "\r" } else { "\r\n" };
        let _ = write!(
            stderr,
            "{lead}sshq: connection lost, {doing} ({} s)... (~. to give up)\x1b[K",
            self.since.elapsed().as_secs()
        );
        let _ = stderr.flush();
        self.shown = true;
    }

    fn clear(&mut self) {
        if self.shown {
            let mut stderr = std::io::stderr();
            let _ = write!(stderr, "\r\x1b[K");
            let _ = stderr.flush();
            self.shown = false;
        }
    }
}
