//! PAM's authentication and account stages for sshqd (`UsePAM yes`), as
//! sshd's auth-pam.c runs them: a password checked by `pam_authenticate`
//! with a conversation that answers the password prompt, a
//! keyboard-interactive conversation whose prompts go to the client, and
//! `pam_acct_mgmt` once a login has succeeded.
//!
//! PAM is blocking and its modules may be slow (LDAP, a network token), so
//! every transaction runs on a thread of its own and the async side talks
//! to it through channels. Dropping the async side (the transport gave up at
//! LoginGraceTime, or the client left) closes the channels: the thread's
//! next conversation call then answers PAM_CONV_ERR, PAM returns, and the
//! thread ends. No async worker ever waits on PAM.

mod conversations;
mod kbd;
#[cfg(test)]
pub(super) mod tests;

use std::net::IpAddr;

use pam_client::{Context, ConversationHandler, ErrorCode, Flag};
use zeroize::Zeroizing;

pub use kbd::PamConversation;

/// The sshd PAM_TTY: some modules (pam_time) want one, and sshd sets
/// "ssh" before a session has a terminal.
const PAM_TTY: &str = "ssh";

/// Whom a PAM transaction is for.
#[derive(Debug, Clone)]
pub struct PamRequest {
    /// The service: the file in /etc/pam.d (PAMServiceName).
    pub service: String,
    /// The user name as the client sent it (an unknown one too: PAM then
    /// refuses it, taking the time it takes for anyone).
    pub user: String,
    /// PAM_RHOST: the client's address.
    pub rhost: Option<IpAddr>,
}

/// How a PAM stage ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PamVerdict {
    Success,
    /// Refused, with PAM's words for why (pam_strerror), or why PAM could
    /// not run at all.
    Refused(String),
    /// pam_acct_mgmt: the password has expired and must be changed first.
    NewAuthtokRequired,
}

/// Checks `password` for the request's user with `pam_authenticate`
/// (PAM_DISALLOW_NULL_AUTHTOK unless `allow_empty`: PermitEmptyPasswords).
pub async fn check_password(
    request: PamRequest,
    password: Zeroizing<String>,
    allow_empty: bool,
) -> PamVerdict {
    let outcome = on_pam_thread(move || {
        let conversation = conversations::PasswordConversation::new(password);
        let mut context = match start(&request, conversation) {
            Ok(context) => context,
            Err(reason) => return PamVerdict::Refused(reason),
        };
        verdict(context.authenticate(authenticate_flags(allow_empty)))
    })
    .await;
    outcome.unwrap_or_else(|| PamVerdict::Refused("no PAM thread could be started".into()))
}

/// Runs `pam_acct_mgmt` for the request's user (expiry, nologin, access
/// rules: whatever the service's `account` lines say).
pub async fn check_account(request: PamRequest) -> PamVerdict {
    let outcome = on_pam_thread(move || {
        let conversation = conversations::QuietConversation;
        let mut context = match start(&request, conversation) {
            Ok(context) => context,
            Err(reason) => return PamVerdict::Refused(reason),
        };
        verdict(context.acct_mgmt(Flag::NONE))
    })
    .await;
    outcome.unwrap_or_else(|| PamVerdict::Refused("no PAM thread could be started".into()))
}

/// The flags sshd gives pam_authenticate.
fn authenticate_flags(allow_empty: bool) -> Flag {
    if allow_empty {
        Flag::NONE
    } else {
        Flag::DISALLOW_NULL_AUTHTOK
    }
}

/// pam_start for `request`, with the items sshd sets (PAM_RHOST, PAM_TTY).
fn start<C: ConversationHandler>(
    request: &PamRequest,
    conversation: C,
) -> Result<Context<C>, String> {
    let mut context = Context::new(&request.service, Some(&request.user), conversation)
        .map_err(|e| format!("pam_start for service \"{}\": {e}", request.service))?;
    if let Some(rhost) = request.rhost {
        context
            .set_rhost(Some(&rhost.to_string()))
            .map_err(|e| format!("setting PAM_RHOST: {e}"))?;
    }
    context
        .set_tty(Some(PAM_TTY))
        .map_err(|e| format!("setting PAM_TTY: {e}"))?;
    Ok(context)
}

/// A PAM call's result as a verdict.
fn verdict<T>(result: Result<(), pam_client::ErrorWith<T>>) -> PamVerdict {
    match result {
        Ok(()) => PamVerdict::Success,
        Err(e) if e.code() == ErrorCode::NEW_AUTHTOK_REQD => PamVerdict::NewAuthtokRequired,
        Err(e) => PamVerdict::Refused(e.to_string()),
    }
}

/// Runs `work` on a new thread and waits for its answer without blocking
/// the async worker; `None` when no thread could be started (logged) or
/// it ended without answering.
async fn on_pam_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("sshqd-pam".into())
        .spawn(move || {
            // Nobody may be waiting any more (LoginGraceTime): fine.
            let _ = answer.send(work());
        });
    if let Err(e) = spawned {
        tracing::error!("PAM: cannot start a thread for the transaction: {e}");
        return None;
    }
    answered.await.ok()
}

/// A junk password as long as `password`, sent to PAM instead of what an
/// unknown user (or root, where PermitRootLogin forbids passwords) typed:
/// PAM still runs and takes its time, so neither the answer nor the delay
/// tells whether the account exists (sshd's `fake_password`).
pub fn fake_password(password: &str) -> Zeroizing<String> {
    const JUNK: &[u8] = b"\x08\n\r\x7fINCORRECT";
    let fake: String = JUNK
        .iter()
        .cycle()
        .take(password.len())
        .map(|&b| char::from(b))
        .collect();
    Zeroizing::new(fake)
}
