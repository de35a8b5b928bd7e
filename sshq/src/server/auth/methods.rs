//! sshqd's login methods beyond keys, as sshd decides them: which methods
//! a user may use (PubkeyAuthentication, PasswordAuthentication,
//! KbdInteractiveAuthentication, AuthenticationMethods, under Match),
//! passwords and keyboard-interactive through PAM (auth2-passwd.c,
//! auth-passwd.c, auth-pam.c), and PAM's account stage for every login.
//!
//! What is logged here, with sshd's words: "Invalid user U from IP port P"
//! (only the policy knows whether the user exists; the transports log each
//! "Failed METHOD for U ..."), "Access denied for
//! user U by PAM account configuration", and the AuthenticationMethods
//! lists skipped for a login. The "Accepted ..." line is the server's, once
//! the whole login has succeeded.

use std::net::{IpAddr, SocketAddr};

use sshq_core::auth::BoxFuture;
use sshq_core::auth_methods::{AuthMethod, AuthMethods, KbdInteractive, KbdStep};
use sshq_core::log_escape;
use zeroize::Zeroizing;

use super::pam::{self, PamConversation, PamRequest, PamVerdict};
use super::{AccountState, KeyPolicy};
use crate::server::config::{AuthenticationMethods, PermitRootLogin, ServerConfig};
use crate::server::process::SessionUser;

/// The settings behind the methods beyond keys (one [`KeyPolicy`]'s:
/// global, or a Match block's).
#[derive(Debug, Clone)]
pub struct LoginMethods {
    /// The enabled methods ([`ServerConfig::enabled_methods`]): password
    /// and keyboard-interactive only with UsePAM.
    pub enabled: Vec<AuthMethod>,
    /// UsePAM: also runs PAM's account stage for every login.
    pub use_pam: bool,
    /// PAMServiceName.
    pub pam_service: String,
    /// PermitEmptyPasswords.
    pub permit_empty_passwords: bool,
    /// PermitRootLogin yes: only then may root use a password or
    /// keyboard-interactive (prohibit-password, the default, allows keys).
    pub root_passwords: bool,
    pub authentication_methods: AuthenticationMethods,
}

impl LoginMethods {
    pub fn from_config(config: &ServerConfig) -> Self {
        LoginMethods {
            enabled: config.enabled_methods(),
            use_pam: config.use_pam,
            pam_service: config.pam_service_name.clone(),
            permit_empty_passwords: config.authentication.permit_empty_passwords,
            root_passwords: config.permit_root_login == PermitRootLogin::Yes,
            authentication_methods: config.authentication.authentication_methods.clone(),
        }
    }

    /// What these settings allow: the enabled methods, and the
    /// AuthenticationMethods lists that name only enabled ones (the others
    /// are skipped with sshd's log line; when none is left, nothing is
    /// allowed, as sshd then refuses the connection).
    pub fn allowed(&self) -> AuthMethods {
        let AuthenticationMethods::Lists(lists) = &self.authentication_methods else {
            return AuthMethods {
                enabled: self.enabled.clone(),
                required: Vec::new(),
            };
        };
        let mut required = Vec::new();
        for list in lists {
            match list.enabled_steps(&self.enabled) {
                Ok(steps) => required.push(steps),
                Err(method) => {
                    tracing::info!(
                        "Authentication methods list \"{}\" contains disabled method, skipping",
                        list.text
                    );
                    tracing::debug!("{}", list.disabled_line(&method));
                }
            }
        }
        if required.is_empty() {
            tracing::error!("No AuthenticationMethods left after eliminating disabled methods");
            return AuthMethods {
                enabled: Vec::new(),
                required: Vec::new(),
            };
        }
        AuthMethods {
            enabled: self.enabled.clone(),
            required,
        }
    }

    fn pam_request(&self, user: &str, peer: Option<IpAddr>) -> PamRequest {
        PamRequest {
            service: self.pam_service.clone(),
            user: user.to_string(),
            rhost: peer,
        }
    }
}

/// A login attempt as sshd's auth_log shows it.
struct AuthLog {
    user: String,
    /// Whether the user exists and may log in ("invalid user" otherwise).
    valid: bool,
    peer: Option<SocketAddr>,
}

impl AuthLog {
    /// The transports log "Failed METHOD for U from ..." for every
    /// refusal; what only the policy knows is that the user does not exist
    /// (or may not log in), which sshd logs as "Invalid user U from ...".
    fn failed(&self, method: &str) {
        if self.valid {
            tracing::debug!("{method} refused for {}", log_escape::peer_text(&self.user));
            return;
        }
        let (ip, port) = match self.peer {
            Some(peer) => (peer.ip().to_string(), peer.port()),
            // sshd's words for an address it does not know.
            None => ("UNKNOWN".to_string(), 65535),
        };
        tracing::info!(
            "Invalid user {} from {ip} port {port} ({method})",
            log_escape::peer_text(&self.user)
        );
    }
}

/// One login's account and the policy that decides it.
struct LoginAttempt<'p> {
    /// `None`: an unknown user, or one who may not log in.
    account: Option<SessionUser>,
    /// The policy under the Match blocks this login matches, if any.
    matched: Option<Box<KeyPolicy>>,
    base: &'p KeyPolicy,
}

impl LoginAttempt<'_> {
    fn methods(&self) -> &LoginMethods {
        &self.matched.as_deref().unwrap_or(self.base).login_methods
    }

    /// Whether a password or keyboard-interactive answer may let this
    /// user in at all: the account is usable and, for root,
    /// PermitRootLogin is `yes` (sshd's auth_root_allowed for these
    /// methods).
    fn genuine(&self) -> bool {
        match &self.account {
            Some(account) if account.uid == 0 && !self.methods().root_passwords => {
                tracing::debug!(
                    "root may not log in with a password or keyboard-interactive \
                     (PermitRootLogin is not yes)"
                );
                false
            }
            Some(_) => true,
            None => false,
        }
    }
}

impl KeyPolicy {
    /// The account and Match policy for a login of `user` from `peer`;
    /// `None` when the user database or the Match blocks failed (logged):
    /// then nothing is allowed.
    async fn attempt(&self, user: &str, peer: Option<IpAddr>) -> Option<LoginAttempt<'_>> {
        let account = match self.account_state(user).await {
            AccountState::Usable(account) => Some(account),
            AccountState::Refused => None,
            AccountState::Unknown => return None,
        };
        let matched = self.policy_for(user, account.as_ref(), peer).await.ok()?;
        Some(LoginAttempt {
            account,
            matched,
            base: self,
        })
    }

    /// [`sshq_core::auth::AuthPolicy::methods`]: the methods `user` may use
    /// from `peer`, after the Match blocks.
    pub(super) async fn methods_for(&self, user: &str, peer: Option<SocketAddr>) -> AuthMethods {
        let nothing = AuthMethods {
            enabled: Vec::new(),
            required: Vec::new(),
        };
        if self.matched.is_none() {
            return self.login_methods.allowed();
        }
        match self.attempt(user, peer.map(|p| p.ip())).await {
            Some(attempt) => attempt.methods().allowed(),
            None => nothing,
        }
    }

    /// [`sshq_core::auth::AuthPolicy::password_allowed`]: `password`
    /// checked by PAM, as sshd's auth_password: an empty one is refused
    /// first unless PermitEmptyPasswords; an unknown user's, or root's
    /// where PermitRootLogin forbids passwords, is replaced by junk of the
    /// same length, so that PAM still runs and nothing tells them apart.
    pub(super) async fn password_login(
        &self,
        user: &str,
        password: &str,
        peer: Option<SocketAddr>,
    ) -> bool {
        let Some(attempt) = self.attempt(user, peer.map(|p| p.ip())).await else {
            return false;
        };
        let log = AuthLog {
            user: user.to_string(),
            valid: attempt.account.is_some(),
            peer,
        };
        let methods = attempt.methods();
        if !methods.enabled.contains(&AuthMethod::Password) {
            tracing::debug!("password authentication is not enabled for this login");
            log.failed("password");
            return false;
        }
        let genuine = attempt.genuine();
        if password.is_empty() && !methods.permit_empty_passwords {
            log.failed("password");
            return false;
        }
        let secret = if genuine {
            Zeroizing::new(password.to_string())
        } else {
            pam::fake_password(password)
        };
        let request = methods.pam_request(user, peer.map(|p| p.ip()));
        let verdict = pam::check_password(request, secret, methods.permit_empty_passwords).await;
        match verdict {
            PamVerdict::Success if genuine => {
                tracing::debug!(
                    "PAM: password authentication accepted for {}",
                    log_escape::peer_text(user)
                );
                true
            }
            other => {
                tracing::debug!(
                    "PAM: password authentication failed for {}: {other:?}",
                    if log.valid {
                        log_escape::peer_text(user)
                    } else {
                        "an illegal user".to_string()
                    }
                );
                log.failed("password");
                false
            }
        }
    }

    /// [`sshq_core::auth::AuthPolicy::keyboard_interactive`]: a PAM
    /// conversation (sshd's `keyboard-interactive/pam`), or `None` when
    /// the method is not enabled for this login.
    pub(super) async fn keyboard_interactive_login(
        &self,
        user: &str,
        peer: Option<SocketAddr>,
    ) -> Option<Box<dyn KbdInteractive>> {
        let attempt = self.attempt(user, peer.map(|p| p.ip())).await?;
        let methods = attempt.methods();
        if !methods.enabled.contains(&AuthMethod::KeyboardInteractive) {
            tracing::debug!("keyboard-interactive is not enabled for this login");
            return None;
        }
        let request = methods.pam_request(user, peer.map(|p| p.ip()));
        let conversation =
            PamConversation::start(request, methods.permit_empty_passwords, attempt.genuine())?;
        Some(Box::new(LoggedConversation {
            conversation,
            log: AuthLog {
                user: user.to_string(),
                valid: attempt.account.is_some(),
                peer,
            },
            logged: false,
        }))
    }

    /// [`sshq_core::auth::AuthPolicy::account_allowed`]: with UsePAM,
    /// PAM's account stage (sshd's do_pam_account), for every login
    /// whatever its methods. A password that must be changed first
    /// (PAM_NEW_AUTHTOK_REQD) refuses the login: sshd would make the user
    /// change it, which sshqd cannot do.
    pub(super) async fn pam_account(&self, user: &str, peer: Option<SocketAddr>) -> bool {
        let methods = &self.login_methods;
        if !methods.use_pam {
            return true;
        }
        let request = methods.pam_request(user, peer.map(|p| p.ip()));
        let shown = log_escape::peer_text(user);
        match pam::check_account(request).await {
            PamVerdict::Success => true,
            PamVerdict::NewAuthtokRequired => {
                tracing::error!(
                    "Access denied for user {shown}: PAM requires a new password \
                     (PAM_NEW_AUTHTOK_REQD) and sshqd cannot change passwords; \
                     the user must change it another way (passwd, or sshd)"
                );
                false
            }
            PamVerdict::Refused(reason) => {
                tracing::debug!("PAM: pam_acct_mgmt for {shown}: {reason}");
                tracing::error!("Access denied for user {shown} by PAM account configuration");
                false
            }
        }
    }
}

/// A PAM conversation that logs sshd's line when it ends refused.
struct LoggedConversation {
    conversation: PamConversation,
    log: AuthLog,
    /// The refusal was logged (later calls only repeat it).
    logged: bool,
}

impl KbdInteractive for LoggedConversation {
    fn step(&mut self, answers: Vec<Zeroizing<String>>) -> BoxFuture<'_, KbdStep> {
        Box::pin(async move {
            let step = self.conversation.step(answers).await;
            if step == KbdStep::Refused && !self.logged {
                self.logged = true;
                if let Some(reason) = self.conversation.refusal() {
                    tracing::debug!("PAM: keyboard-interactive refused: {reason}");
                }
                self.log.failed("keyboard-interactive/pam");
            }
            step
        })
    }
}

#[cfg(test)]
mod tests;
