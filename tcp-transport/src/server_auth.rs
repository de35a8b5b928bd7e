//! User authentication on the TCP server, run as sshd's `auth2.c` runs it:
//! the user is fixed by the first request, each request is checked against
//! the methods the policy allows that user (AuthenticationMethods included),
//! a method's success may be partial, keyboard-interactive conversations
//! span several messages, and failures count toward MaxAuthTries as sshd
//! counts them. The russh handler in `server.rs` only passes requests here.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use russh::server::{Auth, PublicKeyOffer, SecurityKeySignature};
use russh::{MethodKind, MethodSet};
use sshq_core::auth::{
    check_security_key_flags, security_key_refusal_line, AuthPolicy, UserCredential,
};
use sshq_core::auth_methods::{
    AuthMethod, AuthProgress, KbdInteractive, KbdStep, MethodOutcome, MAX_PROMPTS,
};
use sshq_core::log_escape;
use sshq_core::ssh_key::{Certificate, HashAlg, PublicKey};
use sshq_core::zeroize::Zeroizing;

use crate::auth_tries::{is_security_key, AuthFailures};

/// The only service a client may authenticate for (russh refuses any other
/// before the handler hears of it); named in sshd's disconnect message.
const SERVICE: &str = "ssh-connection";

/// The user and credential of a completed login, for the connection's info.
pub(crate) type LoggedIn = (String, Option<UserCredential>);

/// One connection's authentication, from its first request to its success.
pub(crate) struct Authenticator {
    policy: Arc<dyn AuthPolicy>,
    /// The client's address, which a key's `from=` and the policy's methods
    /// may depend on.
    peer: Option<SocketAddr>,
    failures: AuthFailures,
    /// Set by the first request.
    login: Option<Login>,
    /// The keyboard-interactive conversation waiting for the client's
    /// answers, if any.
    conversation: Option<Conversation>,
    /// The session's handle, for disconnecting (set once russh runs).
    session_handle: Arc<OnceLock<russh::server::Handle>>,
    cutter: crate::cut::Cutter,
    /// The user, once logged in (for the ClientAlive timeout's log line).
    logged_in_as: Arc<OnceLock<String>>,
    /// Set when every required method has succeeded and the account check
    /// allowed the login; taken by the handler's `auth_succeeded`.
    completed: Option<LoggedIn>,
    /// Set when a refusal reached MaxAuthTries: russh then sends this
    /// DISCONNECT in place of the failure (russh change 11), as sshd does.
    disconnect_now: Option<String>,
}

/// The user the first request named, and how far their login has come.
struct Login {
    user: String,
    progress: AuthProgress,
    /// The last key or certificate that succeeded: the connection's
    /// credential even when a later method (a password) completes the
    /// login, since sessions take their authorized_keys options from it,
    /// as sshd keeps the key's options under AuthenticationMethods.
    key_credential: Option<UserCredential>,
}

/// A keyboard-interactive conversation between two rounds.
struct Conversation {
    conversation: Box<dyn KbdInteractive>,
    /// How many prompts the last round sent: the client must answer each.
    prompts: usize,
}

impl Authenticator {
    pub(crate) fn new(
        policy: Arc<dyn AuthPolicy>,
        peer: Option<SocketAddr>,
        session_handle: Arc<OnceLock<russh::server::Handle>>,
        cutter: crate::cut::Cutter,
        logged_in_as: Arc<OnceLock<String>>,
    ) -> Self {
        Authenticator {
            failures: AuthFailures::new(policy.max_auth_tries()),
            policy,
            peer,
            login: None,
            conversation: None,
            session_handle,
            cutter,
            logged_in_as,
            completed: None,
            disconnect_now: None,
        }
    }

    /// The completed login, once (see `auth_succeeded`).
    pub(crate) fn take_completed(&mut self) -> Option<LoggedIn> {
        self.completed.take()
    }

    /// `none`: the client's way to learn the methods. sshd lets a client
    /// start with it without a failure; any later one counts.
    pub(crate) async fn none(&mut self, user: &str) -> Auth {
        let first = self.failures.requests == 0;
        if let Err(stop) = self.start(user).await {
            return stop;
        }
        if self.failures.exhausted() {
            return self.too_many_failures(user);
        }
        if first {
            self.reject()
        } else {
            self.refused(user)
        }
    }

    /// A public key (or certificate) offered, with or without a signature:
    /// `Accept` here means "this key would do" (PK_OK, or go on to check
    /// the signature), not a login.
    pub(crate) async fn publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Auth {
        if let Err(stop) = self.start(user).await {
            return stop;
        }
        // draft §12.6: a limit of zero attempts MUST mean the same on both transports (MaxAuthTries as sshd counts it)
        if self.failures.exhausted() {
            return self.too_many_failures(user);
        }
        if !self.allows(AuthMethod::PublicKey) {
            return self.not_allowed(user, AuthMethod::PublicKey);
        }
        // draft §7.5: RSA only with SHA-2 (rsa-sha2-256/512), never SHA-1 ssh-rsa, as on QUIC and in sshd
        if matches!(offer.algorithm, russh::keys::Algorithm::Rsa { hash: None }) {
            tracing::info!(
                "publickey refused for {}: ssh-rsa (SHA-1) signatures are not accepted",
                log_escape::peer_text(user)
            );
            return self.refused(user);
        }
        // sshd refuses a key that already succeeded before even looking
        // it up (publickey,publickey wants two different keys).
        if self.key_already_used(offer.public_key) {
            return self.refused(user);
        }
        let policy = &self.policy;
        let allowed = match offer.certificate {
            Some(certificate) => {
                policy
                    .certificate_allowed_from(user, certificate, self.peer)
                    .await
            }
            None => {
                policy
                    .publickey_allowed_from(user, offer.public_key, self.peer)
                    .await
            }
        };
        if allowed {
            Auth::Accept
        } else {
            tracing::info!(
                "publickey offer refused for {}",
                log_escape::peer_text(user)
            );
            self.refused(user)
        }
    }

    /// A key whose signature russh verified; `security_key` holds the
    /// flags of a security key's signature.
    pub(crate) async fn publickey_verified(
        &mut self,
        user: &str,
        key: &PublicKey,
        security_key: Option<SecurityKeySignature>,
    ) -> Auth {
        // A key accepted by an earlier query reaches here without a new
        // offer: the limit must hold for it too.
        if self.failures.failed_before_signature() {
            return self.too_many_failures(user);
        }
        if let Err(stop) = self.start(user).await {
            return stop;
        }
        // Checked again: a partial success since the query may have moved
        // the login past publickey.
        if !self.allows(AuthMethod::PublicKey) {
            return self.not_allowed(user, AuthMethod::PublicKey);
        }
        if !self
            .policy
            .publickey_allowed_from(user, key, self.peer)
            .await
        {
            return self.refused(user);
        }
        let credential = UserCredential::Key(key.clone());
        if !self
            .security_key_allowed(user, &credential, security_key)
            .await
        {
            return self.refused(user);
        }
        self.method_succeeded(user, AuthMethod::PublicKey, Some(credential))
            .await
    }

    /// An OpenSSH certificate whose signatures and validity russh checked;
    /// the policy decides on its CA, principals, options and revocation.
    pub(crate) async fn certificate_verified(
        &mut self,
        user: &str,
        certificate: &Certificate,
        security_key: Option<SecurityKeySignature>,
    ) -> Auth {
        if self.failures.failed_before_signature() {
            return self.too_many_failures(user);
        }
        if let Err(stop) = self.start(user).await {
            return stop;
        }
        if !self.allows(AuthMethod::PublicKey) {
            return self.not_allowed(user, AuthMethod::PublicKey);
        }
        if !self
            .policy
            .certificate_allowed_from(user, certificate, self.peer)
            .await
        {
            return self.refused(user);
        }
        let credential = UserCredential::Certificate(Box::new(certificate.clone()));
        if !self
            .security_key_allowed(user, &credential, security_key)
            .await
        {
            return self.refused(user);
        }
        self.method_succeeded(user, AuthMethod::PublicKey, Some(credential))
            .await
    }

    /// sshd's checks of a security key signature's flags (auth2-pubkey.c):
    /// the touch unless `no-touch-required`, user verification with
    /// `verify-required`. A security key always signs with its flags, so
    /// an `sk-*` key without them (not reached: russh's decoder wants
    /// them) is refused too. A refusal is logged in sshd's words.
    async fn security_key_allowed(
        &mut self,
        user: &str,
        credential: &UserCredential,
        security_key: Option<SecurityKeySignature>,
    ) -> bool {
        // draft §12.11: sk-* signatures MUST be refused without the user-presence flag (unless
        // waived by no-touch-required) and without user verification where verify-required asks
        let flags = match security_key {
            Some(signature) => signature.flags,
            None if is_security_key(&credential.public_key()) => 0,
            None => return true,
        };
        let checked =
            check_security_key_flags(self.policy.as_ref(), user, credential, flags, self.peer)
                .await;
        match checked {
            Ok(()) => true,
            Err(refusal) => {
                tracing::error!(
                    "{}",
                    security_key_refusal_line(
                        credential,
                        &log_escape::peer_text(user),
                        self.peer,
                        refusal
                    )
                );
                self.log_failed_key(user, credential);
                false
            }
        }
    }

    /// sshd's auth_log line for a refused signed publickey request.
    fn log_failed_key(&self, user: &str, credential: &UserCredential) {
        let key = credential.public_key();
        tracing::info!(
            "Failed publickey for {} from {} ssh2: {} {}",
            log_escape::peer_text(user),
            self.peer_address(),
            sshq_core::known_hosts::key_type_name(&key),
            key.fingerprint(HashAlg::Sha256)
        );
    }

    /// `password` (russh refuses password changes itself, as sshd does).
    pub(crate) async fn password(&mut self, user: &str, password: &str) -> Auth {
        if let Err(stop) = self.start(user).await {
            return stop;
        }
        if self.failures.exhausted() {
            return self.too_many_failures(user);
        }
        if !self.allows(AuthMethod::Password) {
            self.log_failed(user, AuthMethod::Password);
            return self.refused(user);
        }
        if self
            .policy
            .password_allowed(user, password, self.peer)
            .await
        {
            self.method_succeeded(user, AuthMethod::Password, None)
                .await
        } else {
            self.log_failed(user, AuthMethod::Password);
            self.refused(user)
        }
    }

    /// The request that starts a keyboard-interactive conversation.
    pub(crate) async fn keyboard_interactive_start(&mut self, user: &str) -> Auth {
        if let Err(stop) = self.start(user).await {
            return stop;
        }
        if self.failures.exhausted() {
            return self.too_many_failures(user);
        }
        if !self.allows(AuthMethod::KeyboardInteractive) {
            self.log_failed(user, AuthMethod::KeyboardInteractive);
            return self.refused(user);
        }
        let Some(conversation) = self.policy.keyboard_interactive(user, self.peer).await else {
            self.log_failed(user, AuthMethod::KeyboardInteractive);
            return self.refused(user);
        };
        self.converse(user, conversation, Vec::new()).await
    }

    /// The client's answers to the last round (USERAUTH_INFO_RESPONSE).
    pub(crate) async fn keyboard_interactive_answers<B: AsRef<[u8]>>(
        &mut self,
        user: &str,
        responses: Vec<B>,
    ) -> Auth {
        // The conversation's request was counted; its answers are not new
        // requests (sshd counts neither them nor its rounds).
        if self.failures.failed_before_signature() {
            return self.too_many_failures(user);
        }
        let Some(Conversation {
            conversation,
            prompts,
        }) = self.conversation.take()
        else {
            // Answers to no question: only a confused client sends these.
            return self.refused(user);
        };
        if responses.len() != prompts {
            // sshd ends the connection here ("wrong number of replies").
            tracing::info!(
                "keyboard-interactive for {} from {}: {} answers to {prompts} prompts; disconnecting",
                log_escape::peer_text(user),
                self.peer_address(),
                responses.len()
            );
            self.disconnect(
                russh::Disconnect::ProtocolError,
                "wrong number of replies".to_string(),
            );
            return self.reject();
        }
        let mut answers = Vec::with_capacity(prompts);
        for response in &responses {
            match std::str::from_utf8(response.as_ref()) {
                Ok(text) => answers.push(Zeroizing::new(text.to_string())),
                Err(_) => {
                    // The policy's conversation (PAM's) takes text.
                    tracing::info!(
                        "keyboard-interactive for {}: an answer is not UTF-8 text",
                        log_escape::peer_text(user)
                    );
                    self.log_failed(user, AuthMethod::KeyboardInteractive);
                    return self.refused(user);
                }
            }
        }
        self.converse(user, conversation, answers).await
    }

    /// Hands `answers` to the conversation and tells the client what it
    /// does next: another round (postponed: no failure counted), or the
    /// method's success or failure.
    async fn converse(
        &mut self,
        user: &str,
        mut conversation: Box<dyn KbdInteractive>,
        answers: Vec<Zeroizing<String>>,
    ) -> Auth {
        match conversation.step(answers).await {
            KbdStep::Ask(request) => {
                let prompts = request.prompts.len();
                if prompts > MAX_PROMPTS {
                    tracing::error!(
                        "keyboard-interactive for {}: the conversation asked {prompts} questions \
                         in one round, more than the {MAX_PROMPTS} allowed; refused",
                        log_escape::peer_text(user)
                    );
                    self.log_failed(user, AuthMethod::KeyboardInteractive);
                    return self.refused(user);
                }
                tracing::debug!(
                    "Postponed keyboard-interactive for {} from {} ssh2",
                    log_escape::peer_text(user),
                    self.peer_address()
                );
                self.conversation = Some(Conversation {
                    conversation,
                    prompts,
                });
                let questions: Vec<(Cow<'static, str>, bool)> = request
                    .prompts
                    .into_iter()
                    .map(|prompt| (Cow::Owned(prompt.text), prompt.echo))
                    .collect();
                Auth::Partial {
                    name: Cow::Owned(request.name),
                    instructions: Cow::Owned(request.instruction),
                    prompts: Cow::Owned(questions),
                }
            }
            KbdStep::Accepted => {
                self.method_succeeded(user, AuthMethod::KeyboardInteractive, None)
                    .await
            }
            KbdStep::Refused => {
                self.log_failed(user, AuthMethod::KeyboardInteractive);
                self.refused(user)
            }
        }
    }

    /// A method succeeded: partial success (more methods needed, no
    /// failure counted), or the end of the login after the account check.
    async fn method_succeeded(
        &mut self,
        user: &str,
        method: AuthMethod,
        credential: Option<UserCredential>,
    ) -> Auth {
        let key = credential.as_ref().map(UserCredential::public_key);
        if let Some(key) = &key {
            if self.key_already_used(key) {
                return self.refused(user);
            }
        }
        let Some(login) = self.login.as_mut() else {
            // Not reached: every request starts the login first.
            return self.refused(user);
        };
        let outcome = login.progress.succeeded(method, key.as_ref());
        if credential.is_some() {
            login.key_credential = credential;
        }
        let key_text = key
            .as_ref()
            .map(|key| {
                format!(
                    ": {} {}",
                    key.algorithm().as_str(),
                    key.fingerprint(HashAlg::Sha256)
                )
            })
            .unwrap_or_default();
        match outcome {
            MethodOutcome::Partial(next) => {
                // sshd's auth_log line for a step of AuthenticationMethods.
                tracing::info!(
                    "Partial {} for {} from {} ssh2{key_text}",
                    method.name(),
                    log_escape::peer_text(user),
                    self.peer_address()
                );
                Auth::Reject {
                    proceed_with_methods: Some(method_set(&next)),
                    partial_success: true,
                }
            }
            MethodOutcome::Complete => {
                let credential = login.key_credential.clone();
                if !self.policy.account_allowed(user, self.peer).await {
                    // The policy logs why (PAM's account stage, say).
                    return self.refused(user);
                }
                // sshqd logs a key's "Accepted publickey" line itself, with
                // what it read from authorized_keys.
                if method != AuthMethod::PublicKey {
                    tracing::info!(
                        "Accepted {} for {} from {} ssh2",
                        method.name(),
                        log_escape::peer_text(user),
                        self.peer_address()
                    );
                }
                let _ = self.logged_in_as.set(user.to_string());
                self.completed = Some((user.to_string(), credential));
                Auth::Accept
            }
        }
    }

    /// What every request does first (sshd's input_userauth_request): the
    /// first fixes the user and asks the policy what they may use; a later
    /// one for another user ends the connection. Any request also abandons
    /// a keyboard-interactive conversation in progress, uncounted.
    async fn start(&mut self, user: &str) -> Result<(), Auth> {
        self.conversation = None;
        match &self.login {
            Some(login) if login.user == user => Ok(()),
            Some(login) => {
                let description = format!(
                    "Change of username or service not allowed: ({},{SERVICE}) -> ({},{SERVICE})",
                    log_escape::peer_text(&login.user),
                    log_escape::peer_text(user)
                );
                tracing::info!("{description} from {}", self.peer_address());
                self.disconnect(russh::Disconnect::ProtocolError, description);
                Err(self.reject())
            }
            None => {
                let methods = self.policy.methods(user, self.peer).await;
                self.login = Some(Login {
                    user: user.to_string(),
                    progress: AuthProgress::new(&methods),
                    key_credential: None,
                });
                Ok(())
            }
        }
    }

    fn allows(&self, method: AuthMethod) -> bool {
        self.login
            .as_ref()
            .is_some_and(|login| login.progress.allows(method))
    }

    fn key_already_used(&self, key: &PublicKey) -> bool {
        let used = self
            .login
            .as_ref()
            .is_some_and(|login| login.progress.key_already_used(key));
        if used {
            tracing::info!("refusing previously-used {} key", key.algorithm().as_str());
        }
        used
    }

    /// A method the user may not use now (not enabled, or not next in any
    /// AuthenticationMethods list): refused and counted, as in sshd.
    fn not_allowed(&mut self, user: &str, method: AuthMethod) -> Auth {
        tracing::debug!(
            "method {} not allowed for {} now",
            method.name(),
            log_escape::peer_text(user)
        );
        self.refused(user)
    }

    /// sshd's auth_log line for a failed password or conversation.
    fn log_failed(&self, user: &str, method: AuthMethod) {
        tracing::info!(
            "Failed {} for {} from {} ssh2",
            method.name(),
            log_escape::peer_text(user),
            self.peer_address()
        );
    }

    /// sshd's auth_maxtries_exceeded: log, then disconnect with its reason.
    /// The failure for this request goes out first (russh writes one for
    /// every refusal), where sshd sends only the disconnect: ssh then asks
    /// for one more password before it reads the disconnect.
    fn too_many_failures(&mut self, user: &str) -> Auth {
        tracing::error!(
            "maximum authentication attempts exceeded for {} from {} ssh2",
            log_escape::peer_text(user),
            self.peer_address()
        );
        // russh sends the DISCONNECT in place of this refusal's failure
        // (change 11); the cut bounds a client that lingers after it.
        self.disconnect_now = Some("Too many authentication failures".to_string());
        self.cut_later();
        self.reject()
    }

    /// The DISCONNECT russh sends instead of the pending failure, once.
    pub(crate) fn disconnect_instead_of_failure(&mut self) -> Option<String> {
        self.disconnect_now.take()
    }

    /// Cuts the connection after the linger time, whatever the client does.
    fn cut_later(&self) {
        let cutter = self.cutter.clone();
        tokio::spawn(async move {
            tokio::time::sleep(crate::server::DISCONNECT_LINGER).await;
            cutter.cut();
        });
    }

    /// Counts a refused request: a plain refusal, or the end when it was
    /// the last one allowed.
    fn refused(&mut self, user: &str) -> Auth {
        if self.failures.failed() {
            self.too_many_failures(user)
        } else {
            self.reject()
        }
    }

    /// USERAUTH_FAILURE listing the methods that can continue. Every answer
    /// names them: russh's configured list is one for all users, while
    /// the policy's is per user.
    fn reject(&self) -> Auth {
        let methods = match &self.login {
            Some(login) => method_set(&login.progress.can_continue()),
            None => method_set(&[AuthMethod::PublicKey]),
        };
        Auth::Reject {
            proceed_with_methods: Some(methods),
            partial_success: false,
        }
    }

    /// Queues SSH_MSG_DISCONNECT behind the answer being returned.
    fn disconnect(&self, reason: russh::Disconnect, description: String) {
        if let Some(handle) = self.session_handle.get().cloned() {
            let cutter = self.cutter.clone();
            tokio::spawn(async move {
                crate::server::disconnect_and_cut(&handle, &cutter, reason, description).await;
            });
        }
    }

    /// sshd's "ADDR port N".
    fn peer_address(&self) -> String {
        match self.peer {
            Some(peer) => format!("{} port {}", peer.ip(), peer.port()),
            None => "UNKNOWN port 65535".to_string(),
        }
    }
}

/// The core's methods as russh's set, in the same order.
fn method_set(methods: &[AuthMethod]) -> MethodSet {
    let mut set = MethodSet::empty();
    for method in methods {
        set.push(match method {
            AuthMethod::PublicKey => MethodKind::PublicKey,
            AuthMethod::KeyboardInteractive => MethodKind::KeyboardInteractive,
            AuthMethod::Password => MethodKind::Password,
        });
    }
    set
}
