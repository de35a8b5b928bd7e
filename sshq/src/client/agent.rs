//! Agent forwarding on the client (-A, ForwardAgent): which local agent
//! socket to offer, and the `auth-agent@openssh.com` channels the server
//! opens to reach it, each spliced to a fresh connection to that socket.

use std::path::PathBuf;

use sshq_core::channel::{OpenFailure, OpenFailureReason};
use sshq_core::transport::{Channel, PendingChannel};

use super::config::ForwardAgent;

/// The agent socket to forward, if forwarding is on and one can be found:
/// `yes` means $SSH_AUTH_SOCK; a `$VARIABLE` names the variable holding the
/// path; anything else is the path itself.
pub fn socket_to_forward(setting: Option<&ForwardAgent>) -> Option<PathBuf> {
    let from_env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let socket = match setting? {
        ForwardAgent::No => return None,
        ForwardAgent::Yes => from_env("SSH_AUTH_SOCK"),
        ForwardAgent::Socket(spec) => match spec.strip_prefix('$') {
            Some(name) => from_env(name.trim_start_matches('{').trim_end_matches('}')),
            None => Some(PathBuf::from(spec)),
        },
    };
    if socket.is_none() {
        tracing::debug!("agent forwarding requested, but no agent socket is known");
    }
    socket
}

/// Serves one agent channel from the server: connect to the local agent,
/// then splice; without a forwarded agent, or when the agent cannot be
/// reached, the channel is refused.
pub async fn handle<Ch: Channel>(pending: PendingChannel<Ch>, socket: Option<PathBuf>) {
    let Some(socket) = socket else {
        tracing::debug!("refusing an agent channel: agent forwarding was not requested");
        return pending.reject(OpenFailure {
            reason: OpenFailureReason::AdministrativelyProhibited,
            message: "agent forwarding was not requested".to_string(),
        });
    };
    match tokio::net::UnixStream::connect(&socket).await {
        Ok(stream) => crate::forward::splice(pending.accept(), stream).await,
        Err(e) => {
            tracing::debug!("agent connect to {}: {e}", socket.display());
            pending.reject(OpenFailure {
                reason: OpenFailureReason::ConnectFailed,
                message: format!("cannot reach the agent: {e}"),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_socket() {
        assert_eq!(socket_to_forward(None), None);
        assert_eq!(socket_to_forward(Some(&ForwardAgent::No)), None);
        assert_eq!(
            socket_to_forward(Some(&ForwardAgent::Socket("/run/agent.sock".into()))),
            Some(PathBuf::from("/run/agent.sock"))
        );
        assert_eq!(
            socket_to_forward(Some(&ForwardAgent::Socket(
                "$SSHQ_TEST_SURELY_UNSET_VARIABLE".into()
            ))),
            None
        );
    }
}
