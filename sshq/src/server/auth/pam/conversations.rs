//! The PAM conversation functions, each on its transaction's thread.

use std::ffi::{CStr, CString};

use pam_client::{ConversationHandler, ErrorCode};
use sshq_core::auth_methods::Prompt;
use sshq_core::log_escape;
use zeroize::Zeroizing;

/// Answers a password prompt with the password the client sent, as sshd's
/// `sshpam_passwd_conv`: an echoed prompt (a user name, a token code)
/// cannot be answered from a password, so the conversation fails; text
/// and error messages are logged.
pub struct PasswordConversation {
    password: Zeroizing<String>,
}

impl PasswordConversation {
    pub fn new(password: Zeroizing<String>) -> Self {
        PasswordConversation { password }
    }
}

impl ConversationHandler for PasswordConversation {
    fn prompt_echo_on(&mut self, prompt: &CStr) -> Result<CString, ErrorCode> {
        tracing::debug!(
            "PAM: password authentication cannot answer the prompt \"{}\"",
            shown(prompt)
        );
        Err(ErrorCode::CONV_ERR)
    }

    fn prompt_echo_off(&mut self, _prompt: &CStr) -> Result<CString, ErrorCode> {
        secret(&self.password)
    }

    fn text_info(&mut self, message: &CStr) {
        tracing::debug!("PAM: {}", shown(message));
    }

    fn error_msg(&mut self, message: &CStr) {
        tracing::debug!("PAM: {}", shown(message));
    }
}

/// For stages that should not ask anything (the account stage): prompts
/// fail, messages are logged.
pub struct QuietConversation;

impl ConversationHandler for QuietConversation {
    fn prompt_echo_on(&mut self, prompt: &CStr) -> Result<CString, ErrorCode> {
        tracing::debug!("PAM: no answer to \"{}\" here", shown(prompt));
        Err(ErrorCode::CONV_ERR)
    }

    fn prompt_echo_off(&mut self, prompt: &CStr) -> Result<CString, ErrorCode> {
        self.prompt_echo_on(prompt)
    }

    fn text_info(&mut self, message: &CStr) {
        tracing::info!("PAM: {}", shown(message));
    }

    fn error_msg(&mut self, message: &CStr) {
        tracing::info!("PAM: {}", shown(message));
    }
}

/// What the PAM thread of a keyboard-interactive conversation tells the
/// async side.
#[derive(Debug)]
pub enum Event {
    /// A prompt for the client; its answer goes back on the answers channel.
    Prompt(Prompt),
    /// A text or error message for the client (no answer awaited).
    Text(String),
    /// pam_authenticate returned.
    Done(super::PamVerdict),
}

/// Relays each prompt to the client and waits for its answer, as sshd's
/// `sshpam_thread_conv`. When the async side is gone (its channels
/// closed), the prompt fails with PAM_CONV_ERR, so PAM returns and the
/// thread ends.
pub struct RelayConversation {
    pub events: tokio::sync::mpsc::Sender<Event>,
    pub answers: std::sync::mpsc::Receiver<Zeroizing<String>>,
}

impl RelayConversation {
    fn ask(&mut self, prompt: &CStr, echo: bool) -> Result<CString, ErrorCode> {
        let prompt = Prompt {
            text: prompt.to_string_lossy().into_owned(),
            echo,
        };
        self.events
            .blocking_send(Event::Prompt(prompt))
            .map_err(|_| ErrorCode::CONV_ERR)?;
        let answer = self.answers.recv().map_err(|_| ErrorCode::CONV_ERR)?;
        secret(&answer)
    }

    fn tell(&mut self, message: &CStr) {
        let text = message.to_string_lossy().into_owned();
        // A client that is gone reads nothing; the next prompt fails.
        let _ = self.events.blocking_send(Event::Text(text));
    }
}

impl ConversationHandler for RelayConversation {
    fn prompt_echo_on(&mut self, prompt: &CStr) -> Result<CString, ErrorCode> {
        self.ask(prompt, true)
    }

    fn prompt_echo_off(&mut self, prompt: &CStr) -> Result<CString, ErrorCode> {
        self.ask(prompt, false)
    }

    fn text_info(&mut self, message: &CStr) {
        self.tell(message)
    }

    fn error_msg(&mut self, message: &CStr) {
        self.tell(message)
    }
}

/// A secret as PAM takes it; one with a NUL byte cannot be passed, and
/// fails the conversation.
fn secret(text: &str) -> Result<CString, ErrorCode> {
    CString::new(text.as_bytes()).map_err(|_| ErrorCode::CONV_ERR)
}

/// A PAM message as a log line may show it.
fn shown(text: &CStr) -> String {
    log_escape::peer_text(&text.to_string_lossy())
}
