//! The client's user authentication over TCP, in ssh's order
//! (`sshconnect2.c`): a `none` request first, whose failure lists the
//! methods the server takes; then keys, keyboard-interactive and passwords
//! as the core's [`ClientAuthPlan`] picks them from each list the server
//! sends, with partial success (AuthenticationMethods) carried through.

use std::sync::Arc;

use russh::client::{AuthResult, KeyboardInteractiveAuthResponse};
use russh::keys::HashAlg;
use russh::MethodSet;
use sshq_core::auth::UserKey;
use sshq_core::auth_methods::{
    password_prompt, Attempt, AuthMethod, ClientAuthPlan, InfoRequest, Prompt, MAX_PROMPTS,
};
use sshq_core::error::{ConnectError, ProtocolError, TransportError};

use crate::client::{ClientHandler, ClientParams};

type Handle = russh::client::Handle<ClientHandler>;

/// How one attempt ended.
enum Reply {
    Success,
    /// USERAUTH_FAILURE: the methods that can continue, and whether the
    /// attempt was a partial success.
    Failure {
        can_continue: Vec<AuthMethod>,
        partial: bool,
    },
    /// The attempt could not be made (a key that would not sign): go on
    /// with the next one the last list allows.
    Skipped,
    /// Stop authenticating: nobody answered a prompt, or the connection is
    /// gone.
    Stop,
}

/// The server asked more questions in one round than sshq answers.
#[derive(Debug, thiserror::Error)]
#[error(
    "{host} asked {count} questions in one keyboard-interactive round; \
     sshq answers at most {max}, so it stopped authenticating"
)]
struct TooManyPrompts {
    host: String,
    count: usize,
    max: usize,
}

/// Logs in as `params.user`, or says which methods the server left.
pub(crate) async fn authenticate(
    handle: &mut Handle,
    params: &ClientParams,
) -> Result<(), ConnectError> {
    let rsa_hash = handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    let mut plan = ClientAuthPlan::new(params.keys.clone(), params.auth_options.clone());
    let mut login = Login {
        handle,
        params,
        rsa_hash,
        server_list: None,
        can_continue: Vec::new(),
        password_refused: false,
    };
    // ssh starts with "none" (which sshd does not count as a failure): its
    // answer is the real list of methods, so the first attempt is one the
    // server takes.
    let none = login
        .handle
        .authenticate_none(params.user.clone())
        .await
        .map_err(|e| {
            tracing::debug!("none: {e}");
        });
    let mut reply = match none {
        Ok(result) => login.auth_result(result),
        Err(()) => Reply::Stop,
    };
    loop {
        let next = match reply {
            Reply::Success => return Ok(()),
            Reply::Stop => break,
            Reply::Failure {
                can_continue,
                partial,
            } => plan.after_failure(&can_continue, partial),
            Reply::Skipped => plan.after_failure(&login.can_continue, false),
        };
        let Some(attempt) = next else { break };
        reply = match attempt {
            Attempt::Key(key) => login.key(&key).await,
            Attempt::Password => login.password(&plan).await,
            Attempt::KeyboardInteractive => login.keyboard_interactive(&mut plan).await?,
        };
    }
    Err(ConnectError::PermissionDenied {
        user: params.user.clone(),
        host: params.host.clone(),
        // Before any list (the server went away at once), what sshq offers
        // first.
        methods: login.server_list.unwrap_or_else(|| "publickey".to_string()),
    })
}

/// One login's state between attempts.
struct Login<'a> {
    handle: &'a mut Handle,
    params: &'a ClientParams,
    rsa_hash: Option<HashAlg>,
    /// The server's last list of methods, as it named them, for the
    /// "Permission denied (...)" message.
    server_list: Option<String>,
    /// The same list, as the methods sshq speaks.
    can_continue: Vec<AuthMethod>,
    /// A password was refused: ssh says so before asking again.
    password_refused: bool,
}

impl Login<'_> {
    /// A server's USERAUTH_SUCCESS or USERAUTH_FAILURE.
    fn auth_result(&mut self, result: AuthResult) -> Reply {
        match result {
            AuthResult::Success => Reply::Success,
            AuthResult::Failure {
                remaining_methods,
                partial_success,
            } => self.failure(&remaining_methods, partial_success),
        }
    }

    fn failure(&mut self, remaining: &MethodSet, partial: bool) -> Reply {
        // russh answers "failure, no methods" when the session has ended:
        // that is no list from the server.
        if self.handle.is_closed() {
            return Reply::Stop;
        }
        self.server_list = Some(method_list(remaining));
        self.can_continue = remaining
            .iter()
            .filter_map(|kind| AuthMethod::from_name(<&str>::from(kind)))
            .collect();
        Reply::Failure {
            can_continue: self.can_continue.clone(),
            partial,
        }
    }

    /// `publickey` with a key or its certificate.
    async fn key(&mut self, key: &Arc<dyn UserKey>) -> Reply {
        let user = self.params.user.clone();
        let mut signer = KeySigner { key: key.clone() };
        let result = match key.certificate() {
            Some(certificate) => {
                self.handle
                    .authenticate_certificate_with(
                        user,
                        certificate.clone(),
                        self.rsa_hash,
                        &mut signer,
                    )
                    .await
            }
            None => {
                self.handle
                    .authenticate_publickey_with(
                        user,
                        key.public_key().clone(),
                        self.rsa_hash,
                        &mut signer,
                    )
                    .await
            }
        };
        match result {
            Ok(result) => {
                if !result.success() {
                    tracing::debug!("key {} refused", key.description());
                }
                self.auth_result(result)
            }
            Err(e) => {
                tracing::debug!("signing with {} failed: {e}", key.description());
                if self.handle.is_closed() {
                    Reply::Stop
                } else {
                    Reply::Skipped
                }
            }
        }
    }

    /// `password`, asked of the prompter.
    async fn password(&mut self, plan: &ClientAuthPlan) -> Reply {
        let Some(prompter) = plan.prompter().cloned() else {
            return Reply::Stop;
        };
        if self.password_refused {
            prompter.password_refused();
        }
        let prompt = password_prompt(&self.params.user, &self.params.host);
        let Some(password) = prompter.password(&prompt).await else {
            return Reply::Stop;
        };
        // russh takes its own copy, which it drops once the server answered.
        let result = self
            .handle
            .authenticate_password(self.params.user.clone(), password.as_str())
            .await;
        drop(password);
        let reply = match result {
            Ok(result) => self.auth_result(result),
            Err(e) => {
                tracing::debug!("password: {e}");
                Reply::Stop
            }
        };
        if let Reply::Failure { partial: false, .. } = reply {
            self.password_refused = true;
        }
        reply
    }

    /// `keyboard-interactive`: each round the server sends is shown to
    /// the prompter and answered, until the server decides.
    async fn keyboard_interactive(
        &mut self,
        plan: &mut ClientAuthPlan,
    ) -> Result<Reply, ConnectError> {
        let Some(prompter) = plan.prompter().cloned() else {
            return Ok(Reply::Stop);
        };
        let mut response = self
            .handle
            .authenticate_keyboard_interactive_start(self.params.user.clone(), None::<String>)
            .await;
        loop {
            let round = match response {
                Ok(round) => round,
                Err(e) => {
                    tracing::debug!("keyboard-interactive: {e}");
                    return Ok(Reply::Stop);
                }
            };
            let (name, instruction, prompts) = match round {
                KeyboardInteractiveAuthResponse::Success => return Ok(Reply::Success),
                KeyboardInteractiveAuthResponse::Failure {
                    remaining_methods,
                    partial_success,
                } => return Ok(self.failure(&remaining_methods, partial_success)),
                KeyboardInteractiveAuthResponse::InfoRequest {
                    name,
                    instructions,
                    prompts,
                } => (name, instructions, prompts),
            };
            plan.saw_info_request();
            if prompts.len() > MAX_PROMPTS {
                let too_many = TooManyPrompts {
                    host: self.params.host.clone(),
                    count: prompts.len(),
                    max: MAX_PROMPTS,
                };
                return Err(ConnectError::Transport(TransportError::from(
                    ProtocolError::Violation(Box::new(too_many)),
                )));
            }
            let request = InfoRequest {
                name,
                instruction,
                prompts: prompts
                    .into_iter()
                    .map(|prompt| Prompt {
                        text: prompt.prompt,
                        echo: prompt.echo,
                    })
                    .collect(),
            };
            let Some(answers) = prompter.keyboard_interactive(&request).await else {
                return Ok(Reply::Stop);
            };
            if answers.len() != request.prompts.len() {
                // A prompter that lost count: the server would refuse the
                // whole round (sshd disconnects), so stop here.
                tracing::debug!(
                    "keyboard-interactive: {} answers to {} prompts",
                    answers.len(),
                    request.prompts.len()
                );
                return Ok(Reply::Stop);
            }
            // russh wants owned strings; they are gone once sent.
            let responses = answers.iter().map(|a| a.as_str().to_string()).collect();
            drop(answers);
            response = self
                .handle
                .authenticate_keyboard_interactive_respond(responses)
                .await;
        }
    }
}

/// A server's list of methods as ssh shows it: "publickey,password".
fn method_list(methods: &MethodSet) -> String {
    let names: Vec<&str> = methods.iter().map(<&'static str>::from).collect();
    names.join(",")
}

/// russh's signer callback over the core's user keys.
struct KeySigner {
    key: Arc<dyn UserKey>,
}

#[derive(Debug, thiserror::Error)]
enum SignerError {
    #[error("{0}")]
    Sign(#[from] sshq_core::auth::SignError),
    #[error("connection closed while signing")]
    Send(#[from] russh::SendError),
}

impl russh::Signer for KeySigner {
    type Error = SignerError;

    async fn auth_sign(
        &mut self,
        _key: &russh::keys::agent::AgentIdentity,
        hash_alg: Option<HashAlg>,
        mut to_sign: Vec<u8>,
    ) -> Result<Vec<u8>, Self::Error> {
        let blob = self.key.sign(&to_sign, hash_alg).await?;
        // russh wants the data back with the signature appended as an SSH string.
        to_sign.extend_from_slice(&(blob.len() as u32).to_be_bytes());
        to_sign.extend_from_slice(&blob);
        Ok(to_sign)
    }
}
