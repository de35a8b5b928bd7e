//! Agent forwarding on the server (`auth-agent-req@openssh.com`): a private
//! socket for the session's programs (SSH_AUTH_SOCK), each connection to
//! which becomes an `auth-agent@openssh.com` channel back to the client.
//!
//! Like sshd, the socket lives in a fresh directory under /tmp: the
//! directory is 0700 and the socket 0600, both owned by the session's user,
//! and both are removed when the session ends, however it ends.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sshq_core::channel::ChannelKind;
use sshq_core::transport::Connection;
use tokio::net::UnixListener;

use super::process::SessionUser;

/// Where the private directories are made; the X's become random.
const DIR_TEMPLATE: &str = "/tmp/sshq-XXXXXXXXXX";

/// A forwarded agent's socket and the task serving it. Dropping it stops
/// the task and removes the socket and its directory.
pub struct AgentSocket {
    dir: PathBuf,
    path: PathBuf,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl AgentSocket {
    /// Makes the directory and the socket for `user`, and starts relaying
    /// every connection to it over `conn`.
    pub fn start<C: Connection>(
        conn: Arc<C>,
        user: &SessionUser,
        peer: &str,
    ) -> std::io::Result<AgentSocket> {
        // mkdtemp creates the directory with mode 0700.
        let dir = nix::unistd::mkdtemp(DIR_TEMPLATE)?;
        let mut socket = AgentSocket {
            path: dir.join(format!("agent.{}", std::process::id())),
            dir,
            task: None,
        };
        let listener = UnixListener::bind(&socket.path)?;
        std::fs::set_permissions(&socket.path, std::fs::Permissions::from_mode(0o600))?;
        if nix::unistd::geteuid().is_root() {
            let owner = Some(nix::unistd::Uid::from_raw(user.uid));
            let group = Some(nix::unistd::Gid::from_raw(user.gid));
            nix::unistd::chown(&socket.dir, owner, group)?;
            nix::unistd::chown(&socket.path, owner, group)?;
        }
        tracing::debug!("{peer}: agent socket {}", socket.path.display());
        socket.task = Some(tokio::spawn(relay(conn, listener, peer.to_string())));
        Ok(socket)
    }

    /// The socket's path, for SSH_AUTH_SOCK.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AgentSocket {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.path);
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            tracing::warn!("cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// Accepts connections on the agent socket; each one gets its own agent
/// channel to the client.
async fn relay<C: Connection>(conn: Arc<C>, listener: UnixListener, peer: String) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("{peer}: agent socket accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let conn = conn.clone();
        let peer = peer.clone();
        tokio::spawn(async move {
            match conn.open_channel(ChannelKind::Agent).await {
                Ok(channel) => crate::forward::splice(channel, stream).await,
                Err(e) => tracing::info!("{peer}: agent channel open failed: {e}"),
            }
        });
    }
}
