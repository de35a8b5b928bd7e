//! The conversation PAM's session modules get: sshd's `store_conv`. Their
//! messages (pam_nologin's text, pam_motd, a failing module's reason) are
//! kept for the user; prompts fail, since nobody can answer them once the
//! login is done.

use std::ffi::{CStr, CString};

use pam_client::{ConversationHandler, ErrorCode};

/// At most this much of PAM's messages is kept: a module that floods the
/// conversation cannot make the helper grow.
const MAX_MESSAGES: usize = 64 * 1024;

/// PAM's messages, one per line, in order.
#[derive(Default)]
pub(super) struct LoginMessages {
    text: Vec<u8>,
}

impl LoginMessages {
    /// The messages so far, and none kept.
    pub(super) fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.text)
    }

    fn keep(&mut self, message: &CStr) {
        let bytes = message.to_bytes();
        if self.text.len() + bytes.len() + 1 > MAX_MESSAGES {
            return;
        }
        self.text.extend_from_slice(bytes);
        self.text.push(b'\n');
    }
}

impl ConversationHandler for LoginMessages {
    fn prompt_echo_on(&mut self, _prompt: &CStr) -> Result<CString, ErrorCode> {
        Err(ErrorCode::CONV_ERR)
    }

    fn prompt_echo_off(&mut self, _prompt: &CStr) -> Result<CString, ErrorCode> {
        Err(ErrorCode::CONV_ERR)
    }

    fn text_info(&mut self, message: &CStr) {
        self.keep(message);
    }

    fn error_msg(&mut self, message: &CStr) {
        self.keep(message);
    }
}
