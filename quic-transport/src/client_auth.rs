//! The client's side of user authentication on the control stream (draft
//! §7.6): the attempts come from core's [`ClientAuthPlan`] (keys, then
//! keyboard-interactive and passwords as PreferredAuthentications orders
//! them, NumberOfPasswordPrompts), one request at a time, until
//! USERAUTH_SUCCESS or nothing is left to try.

use std::sync::Arc;

use sshq_core::auth::UserKey;
use sshq_core::auth_methods::{
    name_list, parse_name_list, password_prompt, Attempt, AuthMethod, ClientAuthOptions,
    ClientAuthPlan,
};

use crate::conn::{AuthState, ControlDriver};
use crate::proto::control::ControlEvent;
use crate::userauth;
use crate::wire::{
    AuthRequest, KeyboardInteractiveRequest, PasswordRequest, USERAUTH_EXPORTER_LEN,
};

/// One connection's login, as the client runs it.
pub(crate) struct ClientLogin {
    plan: ClientAuthPlan,
    user: String,
    /// The host as the user named it, for the password prompt.
    host: String,
    exporter: [u8; USERAUTH_EXPORTER_LEN],
    /// The methods the server last listed (all, before it has answered),
    /// for skipping an attempt that cannot be made.
    server_methods: Vec<AuthMethod>,
    /// What the request out for an answer tried.
    last: Option<AuthMethod>,
    /// A password was refused on this connection: ssh then says
    /// "Permission denied, please try again." before asking again.
    password_refused: bool,
}

/// What to send next.
pub(crate) enum Next {
    Request(AuthRequest),
    /// Nothing left to try, or the user would not answer.
    Nothing,
}

impl ClientLogin {
    pub(crate) fn new(
        user: String,
        host: String,
        keys: Vec<Arc<dyn UserKey>>,
        options: ClientAuthOptions,
        exporter: [u8; USERAUTH_EXPORTER_LEN],
    ) -> Self {
        ClientLogin {
            plan: ClientAuthPlan::new(keys, options),
            user,
            host,
            exporter,
            server_methods: AuthMethod::ALL.to_vec(),
            last: None,
            password_refused: false,
        }
    }

    /// The first request (draft §7.6: never `none`, never a query).
    pub(crate) async fn first(&mut self) -> Next {
        let attempt = self.plan.first();
        self.request_for(attempt).await
    }

    /// The request after a USERAUTH_FAILURE listing `methods`.
    pub(crate) async fn after_failure(&mut self, methods: &str, partial: bool) -> Next {
        let can_continue = parse_name_list(methods);
        if !partial && self.last == Some(AuthMethod::Password) {
            self.password_refused = true;
        }
        self.server_methods = can_continue.clone();
        let attempt = self.plan.after_failure(&can_continue, partial);
        self.request_for(attempt).await
    }

    /// The methods to name when giving up.
    pub(crate) fn methods_left(&self) -> String {
        name_list(&self.server_methods)
    }

    /// Builds the request for `attempt`, moving on to the next attempt
    /// when one cannot be made (a key that cannot sign is skipped, as ssh
    /// skips it); a password the user does not give ends the login.
    async fn request_for(&mut self, mut attempt: Option<Attempt>) -> Next {
        loop {
            let Some(this) = attempt.take() else {
                self.last = None;
                return Next::Nothing;
            };
            self.last = Some(this.method());
            match this {
                Attempt::Key(key) => {
                    match userauth::signed_request(key.as_ref(), &self.user, &self.exporter).await {
                        Ok(request) => return Next::Request(AuthRequest::PublicKey(request)),
                        Err(e) => tracing::debug!("skipping key {}: {e}", key.description()),
                    }
                }
                Attempt::Password => {
                    let Some(prompter) = self.plan.prompter().cloned() else {
                        return Next::Nothing;
                    };
                    if self.password_refused {
                        prompter.password_refused();
                    }
                    let prompt = password_prompt(&self.user, &self.host);
                    let Some(password) = prompter.password(&prompt).await else {
                        return Next::Nothing;
                    };
                    return Next::Request(AuthRequest::Password(PasswordRequest {
                        user: self.user.clone(),
                        service: userauth::SERVICE.to_string(),
                        exporter: self.exporter.to_vec(),
                        password,
                    }));
                }
                Attempt::KeyboardInteractive => {
                    return Next::Request(AuthRequest::KeyboardInteractive(
                        KeyboardInteractiveRequest {
                            user: self.user.clone(),
                            service: userauth::SERVICE.to_string(),
                            exporter: self.exporter.to_vec(),
                            submethods: String::new(),
                        },
                    ));
                }
            }
            // Skipped: the next attempt among what the server listed.
            attempt = self.plan.after_failure(&self.server_methods.clone(), false);
        }
    }

    /// Runs the login after the first request, until success or the end
    /// (draft §7.6, §7.8).
    pub(crate) async fn run(&mut self, driver: &mut ControlDriver) -> AuthState {
        loop {
            if driver.flush().await.is_err() {
                return AuthState::Failed("connection closed".to_string());
            }
            while let Some(event) = driver.machine.poll_event() {
                match event {
                    ControlEvent::Authenticated => return AuthState::Succeeded,
                    ControlEvent::UserauthFailure { methods, partial } => {
                        match self.after_failure(&methods, partial).await {
                            Next::Request(request) => driver.machine.send_userauth(request),
                            Next::Nothing => {
                                driver.machine.give_up();
                                return AuthState::Refused(methods);
                            }
                        }
                    }
                    ControlEvent::InfoRequest(request) => {
                        self.plan.saw_info_request();
                        let answers = match self.plan.prompter() {
                            Some(prompter) => prompter.keyboard_interactive(&request).await,
                            None => None,
                        };
                        let sent = answers
                            .map(|answers| driver.machine.send_info_response(answers).is_ok());
                        if sent != Some(true) {
                            // Nobody to answer, the user cancelled, or the
                            // prompter answered the wrong number of prompts.
                            driver.machine.give_up();
                            return AuthState::Refused(self.methods_left());
                        }
                    }
                    ControlEvent::Closed(close) => return AuthState::Failed(close.reason),
                    _ => {}
                }
            }
            if driver.flush().await.is_err() {
                return AuthState::Failed("connection closed".to_string());
            }
            if let Err(e) = driver.read().await {
                return AuthState::Failed(e.to_string());
            }
        }
    }
}
