//! The server's side of user authentication on the control stream (draft
//! §7.2, §7.7): every request checked as sshd's `auth2.c` checks it, with
//! the AuthenticationMethods progress of core's [`AuthProgress`], until a
//! user has logged in. Everything the policy does is awaited under the
//! LoginGraceTime deadline.

use std::net::SocketAddr;
use std::time::Instant;

use sshq_core::auth::{AuthPolicy, UserCredential};
use sshq_core::auth_methods::{
    AuthMethod, AuthProgress, KbdInteractive, KbdStep, MethodOutcome, MAX_PROMPTS,
};
use sshq_core::error::{HandshakeError, ProtocolError as TransportProtocolError};
use sshq_core::log_escape;
use sshq_core::zeroize::Zeroizing;

use crate::conn::{now, until, ControlDriver, ServerAuth};
use crate::proto::control::{AuthVerdict, Control, ControlEvent};
use crate::proto::ProtocolError;
use crate::userauth;
use crate::wire::{same_exporter, AuthRequest, USERAUTH_EXPORTER_LABEL, USERAUTH_EXPORTER_LEN};

/// Who logged in, and with which key (None: no key took part, e.g. a
/// password alone).
pub(crate) struct LoggedIn {
    pub(crate) user: String,
    pub(crate) credential: Option<UserCredential>,
    pub(crate) driver: ControlDriver,
}

/// Runs the server's side of authentication on the control stream until a
/// user has logged in (USERAUTH_SUCCESS still to be flushed, after the
/// limits are lifted).
pub(crate) async fn server_login(
    conn: &quinn::Connection,
    auth: &ServerAuth,
    deadline: Option<Instant>,
) -> Result<LoggedIn, HandshakeError> {
    let mut machine = Control::server(now(), deadline, auth.policy.max_auth_tries())
        .with_host_certificate(auth.host_certificate.clone());
    let (send, recv) = match until(deadline, conn.accept_bi()).await {
        Some(Ok(streams)) => streams,
        Some(Err(_)) => return Err(HandshakeError::Closed(None)),
        None => {
            machine.handle_timeout(now());
            return Err(close_login(conn, machine.poll_event()));
        }
    };
    let mut exporter = [0u8; USERAUTH_EXPORTER_LEN];
    conn.export_keying_material(&mut exporter, USERAUTH_EXPORTER_LABEL, b"")
        .map_err(|_| HandshakeError::Protocol(TransportProtocolError::ExporterUnavailable))?;
    let mut driver = ControlDriver::new(conn.clone(), machine, send, recv);
    let mut login = Login {
        policy: auth.policy.as_ref(),
        peer: conn.remote_address(),
        exporter,
        user: String::new(),
        progress: None,
        conversation: None,
        credential: None,
    };
    loop {
        if driver.flush().await.is_err() {
            return Err(HandshakeError::Closed(None));
        }
        while let Some(event) = driver.machine.poll_event() {
            match event {
                ControlEvent::UserauthRequest(request) => {
                    login.request(&mut driver.machine, request).await;
                }
                ControlEvent::InfoResponse(response) => {
                    login
                        .info_response(&mut driver.machine, response.responses)
                        .await;
                }
                ControlEvent::Authenticated => {
                    return Ok(LoggedIn {
                        user: login.user,
                        credential: login.credential,
                        driver,
                    });
                }
                closed @ ControlEvent::Closed(_) => return Err(close_login(conn, Some(closed))),
                _ => {}
            }
        }
        if driver.flush().await.is_err() {
            return Err(HandshakeError::Closed(None));
        }
        if !driver.machine.wants_input() {
            return Err(HandshakeError::Closed(None));
        }
        match until(driver.machine.poll_timeout(), driver.read()).await {
            None => driver.machine.handle_timeout(now()),
            Some(Ok(())) => {}
            Some(Err(_)) => return Err(HandshakeError::Closed(None)),
        }
    }
}

/// One connection's login in progress.
struct Login<'a> {
    policy: &'a dyn AuthPolicy,
    peer: SocketAddr,
    exporter: [u8; USERAUTH_EXPORTER_LEN],
    /// Fixed by the first request (the machine refuses another).
    user: String,
    /// Made from the policy's methods at the first request.
    progress: Option<AuthProgress>,
    /// The keyboard-interactive conversation in progress.
    conversation: Option<Box<dyn KbdInteractive>>,
    /// The key that succeeded, for the session (the last one, with
    /// `publickey,publickey`).
    credential: Option<UserCredential>,
}

/// How one method's check ended.
enum Check {
    Succeeded(Option<UserCredential>),
    /// Refused; the reason is for the log only (never the client's).
    Refused(String),
    /// A keyboard-interactive round went out; the answers come later.
    Asked,
    /// LoginGraceTime ran out meanwhile (the machine has closed).
    TimedOut,
}

impl Login<'_> {
    async fn request(&mut self, machine: &mut Control, request: AuthRequest) {
        // A request during a conversation abandons it (the machine counted it).
        self.conversation = None;
        if self.progress.is_none() {
            let methods = self.policy.methods(request.user(), Some(self.peer));
            let Some(methods) = until(machine.poll_timeout(), methods).await else {
                return machine.handle_timeout(now());
            };
            self.progress = Some(AuthProgress::new(&methods));
            self.user = request.user().to_string();
        }
        let method = match AuthMethod::from_name(request.method_name()) {
            Some(method) if self.allows(method) => method,
            _ => {
                // sshd answers a method it does not offer (or not now)
                // with USERAUTH_FAILURE; only `none` goes unlogged.
                if request.method_name() != "none" {
                    self.log_failed(request.method_name(), "method not allowed");
                }
                return self.refuse(machine);
            }
        };
        let check = match request {
            AuthRequest::PublicKey(request) => self.publickey(machine, &request).await,
            AuthRequest::Password(request) => {
                if !same_exporter(&request.exporter, &self.exporter) {
                    Check::Refused(ANOTHER_CONNECTION.to_string())
                } else {
                    let allowed = self.policy.password_allowed(
                        &self.user,
                        &request.password,
                        Some(self.peer),
                    );
                    match until(machine.poll_timeout(), allowed).await {
                        None => Check::TimedOut,
                        Some(true) => Check::Succeeded(None),
                        Some(false) => Check::Refused("wrong password".to_string()),
                    }
                }
            }
            AuthRequest::KeyboardInteractive(request) => {
                if !same_exporter(&request.exporter, &self.exporter) {
                    Check::Refused(ANOTHER_CONNECTION.to_string())
                } else {
                    self.start_conversation(machine).await
                }
            }
            AuthRequest::Other(_) => Check::Refused("method not allowed".to_string()),
        };
        self.conclude(machine, method, check).await;
    }

    async fn info_response(&mut self, machine: &mut Control, answers: Vec<Zeroizing<String>>) {
        let check = match self.conversation.as_mut() {
            // The machine hands answers out only after a round we sent.
            None => Check::Refused("no conversation".to_string()),
            Some(conversation) => {
                match until(machine.poll_timeout(), conversation.step(answers)).await {
                    None => Check::TimedOut,
                    Some(step) => self.kbd_step(machine, step),
                }
            }
        };
        self.conclude(machine, AuthMethod::KeyboardInteractive, check)
            .await;
    }

    fn allows(&self, method: AuthMethod) -> bool {
        self.progress
            .as_ref()
            .is_some_and(|progress| progress.allows(method))
    }

    async fn publickey(
        &mut self,
        machine: &mut Control,
        request: &crate::wire::UserauthRequest,
    ) -> Check {
        // The policy keeps its blocking work (files, user database) off
        // the async workers itself.
        let check = userauth::verify(request, &self.exporter, self.policy, Some(self.peer));
        match until(machine.poll_timeout(), check).await {
            None => Check::TimedOut,
            Some(Err(refusal)) => Check::Refused(refusal.to_string()),
            Some(Ok(credential)) => {
                // sshd: with publickey,publickey each step needs another key.
                let used = self
                    .progress
                    .as_ref()
                    .is_some_and(|p| p.key_already_used(&credential.public_key()));
                if used {
                    Check::Refused("key already used in an earlier step".to_string())
                } else {
                    Check::Succeeded(Some(credential))
                }
            }
        }
    }

    async fn start_conversation(&mut self, machine: &mut Control) -> Check {
        let started = self
            .policy
            .keyboard_interactive(&self.user, Some(self.peer));
        let Some(started) = until(machine.poll_timeout(), started).await else {
            return Check::TimedOut;
        };
        let Some(mut conversation) = started else {
            return Check::Refused("no keyboard-interactive conversation to have".to_string());
        };
        let Some(step) = until(machine.poll_timeout(), conversation.step(Vec::new())).await else {
            return Check::TimedOut;
        };
        self.conversation = Some(conversation);
        self.kbd_step(machine, step)
    }

    fn kbd_step(&mut self, machine: &mut Control, step: KbdStep) -> Check {
        match step {
            KbdStep::Ask(request) if request.prompts.len() <= MAX_PROMPTS => {
                machine.send_info_request(request);
                Check::Asked
            }
            KbdStep::Ask(request) => {
                self.conversation = None;
                Check::Refused(format!(
                    "the conversation asked {} prompts at once (at most {MAX_PROMPTS})",
                    request.prompts.len()
                ))
            }
            KbdStep::Accepted => {
                self.conversation = None;
                Check::Succeeded(None)
            }
            KbdStep::Refused => {
                self.conversation = None;
                Check::Refused("the conversation refused the answers".to_string())
            }
        }
    }

    /// Turns a method's check into the machine's verdict.
    async fn conclude(&mut self, machine: &mut Control, method: AuthMethod, check: Check) {
        let credential = match check {
            Check::Asked => return,
            Check::TimedOut => return machine.handle_timeout(now()),
            Check::Refused(why) => {
                self.log_failed(method_log_name(method), &why);
                return self.refuse(machine);
            }
            Check::Succeeded(credential) => credential,
        };
        let key = credential.as_ref().map(UserCredential::public_key);
        let Some(progress) = self.progress.as_mut() else {
            return self.refuse(machine);
        };
        let outcome = progress.succeeded(method, key.as_ref());
        if credential.is_some() {
            self.credential = credential;
        }
        match outcome {
            MethodOutcome::Partial(can_continue) => {
                // sshd's auth_log line for a step of AuthenticationMethods.
                tracing::info!(
                    "Partial {} for {} from {} port {} over quic",
                    method_log_name(method),
                    log_escape::peer_text(&self.user),
                    self.peer.ip(),
                    self.peer.port()
                );
                machine.auth_verdict(now(), AuthVerdict::Partial { can_continue });
            }
            MethodOutcome::Complete => {
                let allowed = self.policy.account_allowed(&self.user, Some(self.peer));
                match until(machine.poll_timeout(), allowed).await {
                    None => machine.handle_timeout(now()),
                    Some(true) => {
                        // sshqd logs a key's "Accepted publickey" line
                        // itself, with what authorized_keys granted.
                        if method != AuthMethod::PublicKey {
                            tracing::info!(
                                "Accepted {} for {} from {} port {} over quic",
                                method_log_name(method),
                                log_escape::peer_text(&self.user),
                                self.peer.ip(),
                                self.peer.port()
                            );
                        }
                        machine.auth_verdict(now(), AuthVerdict::Accepted)
                    }
                    Some(false) => {
                        // The policy says why (PAM's account stage logs it).
                        self.log_failed(method_log_name(method), "account not allowed");
                        self.refuse(machine);
                    }
                }
            }
        }
    }

    /// USERAUTH_FAILURE (counted) with what may continue.
    fn refuse(&mut self, machine: &mut Control) {
        let can_continue = self
            .progress
            .as_ref()
            .map(AuthProgress::can_continue)
            .unwrap_or_default();
        machine.auth_verdict(now(), AuthVerdict::Refused { can_continue });
    }

    /// OpenSSH's wording ("Failed METHOD for USER from ADDR port N"),
    /// which log watchers such as fail2ban match. Never a secret: `why`
    /// says what failed, not what was sent.
    fn log_failed(&self, method: &str, why: &str) {
        tracing::info!(
            "Failed {} for {} from {} port {} over quic: {}",
            log_escape::peer_text(method),
            log_escape::peer_text(&self.user),
            self.peer.ip(),
            self.peer.port(),
            log_escape::peer_text(why)
        );
    }
}

/// Why a password or keyboard-interactive request whose exporter value is
/// not ours is refused (draft §7.2, §12.1).
const ANOTHER_CONNECTION: &str = "the request was made for another connection";

/// The method as sshd's auth_log names it: keyboard-interactive is PAM's
/// in sshqd, as in sshd built with PAM.
fn method_log_name(method: AuthMethod) -> &'static str {
    match method {
        AuthMethod::KeyboardInteractive => "keyboard-interactive/pam",
        other => other.name(),
    }
}

/// Closes a connection whose login failed, as the control machine
/// decided, and says why.
pub(crate) fn close_login(conn: &quinn::Connection, event: Option<ControlEvent>) -> HandshakeError {
    let Some(ControlEvent::Closed(close)) = event else {
        return HandshakeError::Closed(None);
    };
    conn.close(close.code.code().into(), close.reason.as_bytes());
    match close.error {
        Some(ProtocolError::LoginGraceTimeExpired) => HandshakeError::LoginGraceTimeExpired,
        Some(ProtocolError::TooManyAuthFailures(user)) => {
            // sshd's auth_maxtries_exceeded log line.
            let peer = conn.remote_address();
            tracing::error!(
                "maximum authentication attempts exceeded for {user} from {} port {} ssh2",
                peer.ip(),
                peer.port()
            );
            HandshakeError::TooManyFailures(user)
        }
        Some(ProtocolError::ControlEndedBeforeAuth) | None => HandshakeError::Closed(None),
        Some(other) => HandshakeError::Protocol(TransportProtocolError::Violation(Box::new(other))),
    }
}
