//! -f: going to the background once logged in.
//!
//! ssh forks after authentication. A process running tokio's threads must
//! not fork, so sshq starts a copy of itself instead: the copy does the
//! work with the same arguments, and tells this process over a pipe (its
//! stdin, which -f would otherwise point at /dev/null) when it is logged in
//! and its forwards are set up. This process then exits 0; if the copy ends
//! without saying so, this one exits with its status, having let it print
//! its own errors.

use std::io::Read;
use std::process::Stdio;

use super::error::ClientError;

/// Marks the copy that does the work.
const CHILD_MARKER: &str = "SSHQ_BACKGROUND_CHILD";

/// Whether this process is the background copy.
pub fn is_child() -> bool {
    std::env::var_os(CHILD_MARKER).is_some()
}

/// Starts the background copy and waits until it is ready or gone.
pub async fn start() -> Result<i32, ClientError> {
    let exe = std::env::current_exe().map_err(ClientError::Background)?;
    let (mut ready, ready_writer) = std::io::pipe().map_err(ClientError::Background)?;
    let mut child = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(CHILD_MARKER, "1")
        .stdin(Stdio::from(ready_writer))
        .spawn()
        .map_err(ClientError::Background)?;
    // The pipe's write end now lives only in the child (Command is gone).
    tokio::task::spawn_blocking(move || {
        let mut byte = [0u8; 1];
        match ready.read(&mut byte) {
            Ok(1) => Ok(0),
            // Gone before it was ready: it has said why on stderr.
            _ => match child.wait() {
                Ok(status) => Ok(status.code().unwrap_or(super::EXIT_FAILURE)),
                Err(e) => Err(ClientError::BackgroundWait(e)),
            },
        }
    })
    .await
    .map_err(|e| ClientError::BackgroundWait(e.into()))?
}

/// In the background copy: tells the waiting parent we are logged in, and
/// leaves its session so its terminal's hangup no longer reaches us.
/// Does nothing in a foreground sshq, and nothing the second time.
pub fn ready() {
    static SIGNALLED: std::sync::Once = std::sync::Once::new();
    if !is_child() {
        return;
    }
    SIGNALLED.call_once(|| {
        let _ = nix::unistd::write(std::io::stdin(), b"R");
        let _ = nix::unistd::setsid();
    });
}
