//! Authentication methods beyond a single key: passwords,
//! keyboard-interactive (RFC 4256) and sshd's `AuthenticationMethods`
//! (several methods in sequence, with partial success), shared by both
//! transports so that they agree on every rule.
//!
//! Server side: [`AuthMethods`] is what the policy allows one user,
//! [`AuthProgress`] follows one connection through it as sshd's
//! `auth2.c` does, and [`KbdInteractive`] is one keyboard-interactive
//! conversation (PAM's, in sshqd).
//!
//! Client side: [`ClientAuthPlan`] picks the next attempt as ssh's
//! `sshconnect2.c` does (PreferredAuthentications, NumberOfPasswordPrompts),
//! and [`Prompter`] asks the user.

use std::collections::VecDeque;
use std::sync::Arc;

use ssh_key::PublicKey;

use crate::auth::{BoxFuture, UserKey};

/// The user authentication methods sshq speaks (RFC 4252 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    PublicKey,
    KeyboardInteractive,
    Password,
}

impl AuthMethod {
    /// sshd's order (`authmethods[]` in auth2.c), used for the "methods
    /// that can continue" list.
    pub const ALL: [AuthMethod; 3] = [
        AuthMethod::PublicKey,
        AuthMethod::Password,
        AuthMethod::KeyboardInteractive,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AuthMethod::PublicKey => "publickey",
            AuthMethod::KeyboardInteractive => "keyboard-interactive",
            AuthMethod::Password => "password",
        }
    }

    /// Parses an RFC 4252 method name; `None` for the methods sshq does
    /// not speak (`none`, `hostbased`, `gssapi-with-mic`, ...).
    pub fn from_name(name: &str) -> Option<Self> {
        AuthMethod::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// Formats methods as an SSH name-list (`publickey,password`).
pub fn name_list(methods: &[AuthMethod]) -> String {
    let names: Vec<&str> = methods.iter().map(|m| m.name()).collect();
    names.join(",")
}

/// Parses an SSH name-list, keeping the names sshq speaks, in order and
/// without repeats; unknown names are skipped (a peer may list more).
pub fn parse_name_list(list: &str) -> Vec<AuthMethod> {
    let mut methods = Vec::new();
    for method in list.split(',').filter_map(AuthMethod::from_name) {
        if !methods.contains(&method) {
            methods.push(method);
        }
    }
    methods
}

/// What the server allows one user: the enabled methods
/// (PubkeyAuthentication, PasswordAuthentication,
/// KbdInteractiveAuthentication) and sshd's `AuthenticationMethods`
/// lists, each a sequence that must all succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthMethods {
    pub enabled: Vec<AuthMethod>,
    /// Empty: any one enabled method suffices (`AuthenticationMethods
    /// any`, the default).
    pub required: Vec<Vec<AuthMethod>>,
}

impl AuthMethods {
    /// Public keys only, with no sequence: what sshq allowed before
    /// passwords existed, and the default for policies that say nothing.
    pub fn publickey_only() -> Self {
        AuthMethods {
            enabled: vec![AuthMethod::PublicKey],
            required: Vec::new(),
        }
    }
}

/// What one successful method did to the login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MethodOutcome {
    /// Every method of some list succeeded (or no list is required): the
    /// user is authenticated, subject to the account check.
    Complete,
    /// Partial success: more methods are needed. These may continue.
    Partial(Vec<AuthMethod>),
}

/// One connection's way through [`AuthMethods`], as sshd counts it
/// (`auth2_method_allowed`, `auth2_update_methods_lists`): a method is
/// allowed when it is enabled and, with lists, the next method of at
/// least one of them; its success removes it from the front of every list
/// that starts with it; the login is complete when a list is empty.
#[derive(Debug, Clone)]
pub struct AuthProgress {
    enabled: Vec<AuthMethod>,
    /// `None`: any enabled method completes the login.
    remaining: Option<Vec<Vec<AuthMethod>>>,
    /// Keys that already succeeded, for `publickey,publickey`: sshd
    /// requires a different key each time (`auth2_key_already_used`).
    keys_used: Vec<PublicKey>,
}

impl AuthProgress {
    /// Starts a login under `methods`. Lists naming a method that is not
    /// enabled can never complete and are dropped, as sshd ignores them;
    /// when all are dropped nothing is allowed.
    pub fn new(methods: &AuthMethods) -> Self {
        let remaining = if methods.required.is_empty() {
            None
        } else {
            Some(
                methods
                    .required
                    .iter()
                    .filter(|list| {
                        !list.is_empty() && list.iter().all(|m| methods.enabled.contains(m))
                    })
                    .cloned()
                    .collect(),
            )
        };
        AuthProgress {
            enabled: methods.enabled.clone(),
            remaining,
            keys_used: Vec::new(),
        }
    }

    /// May the client try `method` now?
    pub fn allows(&self, method: AuthMethod) -> bool {
        if !self.enabled.contains(&method) {
            return false;
        }
        match &self.remaining {
            None => true,
            Some(lists) => lists.iter().any(|list| list.first() == Some(&method)),
        }
    }

    /// Whether `key` already succeeded in an earlier step, so may not
    /// count again.
    pub fn key_already_used(&self, key: &PublicKey) -> bool {
        self.keys_used
            .iter()
            .any(|used| used.key_data() == key.key_data())
    }

    /// The methods a USERAUTH_FAILURE lists, in sshd's order.
    pub fn can_continue(&self) -> Vec<AuthMethod> {
        AuthMethod::ALL
            .into_iter()
            .filter(|m| self.allows(*m))
            .collect()
    }

    /// Records that `method` succeeded (with `key`, for publickey).
    /// Call only for a method that [`AuthProgress::allows`].
    pub fn succeeded(&mut self, method: AuthMethod, key: Option<&PublicKey>) -> MethodOutcome {
        if let Some(key) = key {
            self.keys_used.push(key.clone());
        }
        let Some(lists) = &mut self.remaining else {
            return MethodOutcome::Complete;
        };
        for list in lists.iter_mut() {
            if list.first() == Some(&method) {
                list.remove(0);
            }
        }
        if lists.iter().any(Vec::is_empty) {
            MethodOutcome::Complete
        } else {
            MethodOutcome::Partial(self.can_continue())
        }
    }
}

/// One prompt of a keyboard-interactive round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub text: String,
    /// Whether the answer may be shown as it is typed.
    pub echo: bool,
}

/// SSH_MSG_USERAUTH_INFO_REQUEST's content (RFC 4256 §3.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InfoRequest {
    pub name: String,
    pub instruction: String,
    pub prompts: Vec<Prompt>,
}

/// The most prompts one round may carry; more is refused as a protocol
/// error (ssh refuses more than 100; PAM stacks ask one or two).
pub const MAX_PROMPTS: usize = 32;

/// What a keyboard-interactive conversation does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KbdStep {
    /// Send these prompts; the answers come to the next call.
    Ask(InfoRequest),
    /// The user proved who they are.
    Accepted,
    /// The conversation failed (wrong answer, unknown user, ...).
    Refused,
}

/// One keyboard-interactive conversation on the server (a PAM
/// transaction in sshqd). The first call gets no answers; each later call
/// gets the answers to the previous [`KbdStep::Ask`], one per prompt.
pub trait KbdInteractive: Send {
    fn step(&mut self, answers: Vec<zeroize::Zeroizing<String>>) -> BoxFuture<'_, KbdStep>;
}

/// How the client asks its user for secrets: ssh reads /dev/tty, or runs
/// SSH_ASKPASS. Answers are `None` when nobody can answer (BatchMode, no
/// terminal) or the user cancelled.
pub trait Prompter: Send + Sync {
    /// Asks for a password with `prompt` (ssh's "user@host's password: ").
    fn password<'a>(&'a self, prompt: &'a str)
        -> BoxFuture<'a, Option<zeroize::Zeroizing<String>>>;

    /// Shows a keyboard-interactive round and collects one answer per
    /// prompt (none for a round without prompts).
    fn keyboard_interactive<'a>(
        &'a self,
        request: &'a InfoRequest,
    ) -> BoxFuture<'a, Option<Vec<zeroize::Zeroizing<String>>>>;

    /// Tells the user a password was refused, as ssh does ("Permission
    /// denied, please try again.").
    fn password_refused(&self) {}
}

/// The client's authentication options (ssh_config).
#[derive(Clone)]
pub struct ClientAuthOptions {
    /// PreferredAuthentications, filtered by PubkeyAuthentication,
    /// KbdInteractiveAuthentication and PasswordAuthentication.
    pub preferred: Vec<AuthMethod>,
    /// NumberOfPasswordPrompts (ssh's default 3): password attempts, and
    /// keyboard-interactive conversations, each.
    pub password_prompts: u32,
    /// Who answers prompts; `None`: no password or keyboard-interactive.
    pub prompter: Option<Arc<dyn Prompter>>,
}

impl ClientAuthOptions {
    /// Keys only, as sshq did before passwords: what a program that has no
    /// user to ask (tests, the interop harness) wants.
    pub fn keys_only() -> Self {
        ClientAuthOptions {
            preferred: vec![AuthMethod::PublicKey],
            password_prompts: 3,
            prompter: None,
        }
    }
}

impl Default for ClientAuthOptions {
    fn default() -> Self {
        Self::keys_only()
    }
}

/// The client's next request.
#[derive(Clone)]
pub enum Attempt {
    Key(Arc<dyn UserKey>),
    KeyboardInteractive,
    Password,
}

impl Attempt {
    pub fn method(&self) -> AuthMethod {
        match self {
            Attempt::Key(_) => AuthMethod::PublicKey,
            Attempt::KeyboardInteractive => AuthMethod::KeyboardInteractive,
            Attempt::Password => AuthMethod::Password,
        }
    }
}

/// Chooses the client's attempts as ssh does (`sshconnect2.c`): the
/// first method of PreferredAuthentications that the server lists and
/// that has something left to try (a key not yet offered, a password or
/// keyboard-interactive attempt within NumberOfPasswordPrompts). After
/// partial success the keys may be offered again, but for the one that
/// just succeeded (the server wants a different one).
pub struct ClientAuthPlan {
    options: ClientAuthOptions,
    all_keys: Vec<Arc<dyn UserKey>>,
    keys: VecDeque<Arc<dyn UserKey>>,
    passwords_tried: u32,
    conversations_tried: u32,
    /// Whether the server ever sent a keyboard-interactive round: if it
    /// refused the first conversation without one, ssh does not ask again.
    info_request_seen: bool,
    last: Option<Attempt>,
}

impl ClientAuthPlan {
    pub fn new(keys: Vec<Arc<dyn UserKey>>, options: ClientAuthOptions) -> Self {
        ClientAuthPlan {
            keys: keys.iter().cloned().collect(),
            all_keys: keys,
            options,
            passwords_tried: 0,
            conversations_tried: 0,
            info_request_seen: false,
            last: None,
        }
    }

    /// The first attempt, before the server has listed its methods
    /// (sshq's QUIC client sends no `none` request): as if it allowed all.
    pub fn first(&mut self) -> Option<Attempt> {
        self.next_from(&AuthMethod::ALL)
    }

    /// The attempt after a USERAUTH_FAILURE listing `can_continue`.
    pub fn after_failure(&mut self, can_continue: &[AuthMethod], partial: bool) -> Option<Attempt> {
        if partial {
            let succeeded = match self.last.take() {
                Some(Attempt::Key(key)) => Some(key),
                _ => None,
            };
            self.keys = self
                .all_keys
                .iter()
                .filter(|key| {
                    succeeded.as_ref().is_none_or(|done| {
                        done.public_key().key_data() != key.public_key().key_data()
                    })
                })
                .cloned()
                .collect();
        }
        self.next_from(can_continue)
    }

    /// Notes that the server sent a keyboard-interactive round.
    pub fn saw_info_request(&mut self) {
        self.info_request_seen = true;
    }

    /// Whether a prompter is there to answer password prompts.
    pub fn can_prompt(&self) -> bool {
        self.options.prompter.is_some()
    }

    pub fn prompter(&self) -> Option<&Arc<dyn Prompter>> {
        self.options.prompter.as_ref()
    }

    fn next_from(&mut self, server: &[AuthMethod]) -> Option<Attempt> {
        let limit = self.options.password_prompts;
        let can_prompt = self.options.prompter.is_some();
        for method in self.options.preferred.clone() {
            if !server.contains(&method) {
                continue;
            }
            let attempt = match method {
                AuthMethod::PublicKey => self.keys.pop_front().map(Attempt::Key),
                AuthMethod::Password if can_prompt && self.passwords_tried < limit => {
                    self.passwords_tried += 1;
                    Some(Attempt::Password)
                }
                AuthMethod::KeyboardInteractive
                    if can_prompt
                        && self.conversations_tried < limit
                        && (self.conversations_tried == 0 || self.info_request_seen) =>
                {
                    self.conversations_tried += 1;
                    Some(Attempt::KeyboardInteractive)
                }
                _ => None,
            };
            if let Some(attempt) = attempt {
                self.last = Some(attempt.clone());
                return Some(attempt);
            }
        }
        None
    }
}

/// ssh's password prompt.
pub fn password_prompt(user: &str, host: &str) -> String {
    format!("{user}@{host}'s password: ")
}

#[cfg(test)]
mod tests;
