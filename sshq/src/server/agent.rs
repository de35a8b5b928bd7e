//! Agent forwarding on the server (`auth-agent-req@openssh.com`): a private
//! socket for the session's programs (SSH_AUTH_SOCK), each connection to
//! which becomes an `auth-agent@openssh.com` channel back to the client.
//! A held session's socket (its path is in its programs' environment)
//! moves to the connection that reattached ([`AgentSocket::reroute`]).
//!
//! Like sshd, the socket lives in a fresh directory under /tmp: the
//! directory is 0700 and the socket 0600, both owned by the session's user,
//! and both are removed when the session ends, however it ends.
//!
//! Both are made and removed with the user's own filesystem rights (see
//! `crate::fs_identity`), never as root: the user owns the directory, so
//! anything root did there by path (chown, chmod, unlink) could be
//! redirected through a symlink the user swapped in. Made as the user, the
//! files simply belong to the user and no chown is needed.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sshq_core::channel::ChannelKind;
use sshq_core::transport::Connection;
use tokio::net::{UnixListener, UnixStream};

use super::process::SessionUser;
use crate::fs_identity::{as_identity_detached, as_identity_within, Identity};

/// Where the private directories are made; the X's become random.
const DIR_TEMPLATE: &str = "/tmp/sshq-XXXXXXXXXX";

/// The umask the directory is made with: mkdtemp asks for 0700 already.
const DIR_MASK: u32 = 0o077;
/// The umask the socket is bound with: 0600, as sshd's.
const SOCKET_MASK: u32 = 0o177;

/// How long making the directory and socket may take (a hung /tmp must
/// not hold the session forever).
const SETUP_LIMIT: Duration = Duration::from_secs(10);

/// Where the socket's connections go: an agent channel each, on one
/// connection. Type-erased, so that a held session's socket can move to a
/// connection of the other transport.
trait AgentRoute: Send + Sync {
    fn serve(&self, stream: UnixStream) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

struct OverConnection<C> {
    conn: Arc<C>,
    peer: String,
}

impl<C: Connection> AgentRoute for OverConnection<C> {
    fn serve(&self, stream: UnixStream) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let conn = self.conn.clone();
        let peer = self.peer.clone();
        Box::pin(async move {
            match conn.open_channel(ChannelKind::Agent).await {
                Ok(channel) => crate::forward::splice(channel, stream).await,
                Err(e) => tracing::info!("{peer}: agent channel open failed: {e}"),
            }
        })
    }
}

/// The current route; `None` while the session's client forwards no agent.
type SharedRoute = Arc<Mutex<Option<Arc<dyn AgentRoute>>>>;

/// A forwarded agent's socket and the task serving it. Dropping it stops
/// the task and removes the socket and its directory.
pub struct AgentSocket {
    dir: PathBuf,
    path: PathBuf,
    identity: Identity,
    route: SharedRoute,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl AgentSocket {
    /// Makes the directory and the socket as `user`, and starts relaying
    /// every connection to it over `conn`.
    pub async fn start<C: Connection>(
        conn: Arc<C>,
        user: &SessionUser,
        peer: &str,
    ) -> io::Result<AgentSocket> {
        let identity = Identity::User {
            name: user.name.clone(),
            uid: user.uid,
            gid: user.gid,
        };
        let (dir, path, listener) =
            as_identity_within(&identity, Some(DIR_MASK), SETUP_LIMIT, make_socket).await?;
        let mut socket = AgentSocket {
            dir,
            path,
            identity,
            route: Arc::default(),
            task: None,
        };
        // From here on, dropping `socket` removes both files.
        listener.set_nonblocking(true)?;
        let listener = UnixListener::from_std(listener)?;
        tracing::debug!("{peer}: agent socket {}", socket.path.display());
        socket.reroute(Some(conn), peer);
        let route = socket.route.clone();
        socket.task = Some(tokio::spawn(relay(route, listener, peer.to_string())));
        Ok(socket)
    }

    /// Sends the socket's connections to `conn` from now on; with `None`
    /// (a reattach whose client forwards no agent) they are closed at once,
    /// as an agent that refuses everything.
    pub fn reroute<C: Connection>(&self, conn: Option<Arc<C>>, peer: &str) {
        let route = conn.map(|conn| {
            Arc::new(OverConnection {
                conn,
                peer: peer.to_string(),
            }) as Arc<dyn AgentRoute>
        });
        // A plain value, consistent even if a holder panicked.
        *self
            .route
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = route;
    }

    /// The socket's path, for SSH_AUTH_SOCK.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Runs as the user: the private directory, then the socket in it.
fn make_socket() -> io::Result<(PathBuf, PathBuf, std::os::unix::net::UnixListener)> {
    let dir = nix::unistd::mkdtemp(DIR_TEMPLATE)?;
    let path = dir.join(format!("agent.{}", std::process::id()));
    // This thread has a umask of its own (fs_identity::assume unshared it).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(SOCKET_MASK));
    match std::os::unix::net::UnixListener::bind(&path) {
        Ok(listener) => Ok((dir, path, listener)),
        Err(e) => {
            let _ = std::fs::remove_dir(&dir);
            Err(e)
        }
    }
}

impl Drop for AgentSocket {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        // As the user: whatever the user put at these paths meanwhile, the
        // removal can only touch what the user could remove anyway.
        let (dir, path) = (self.dir.clone(), self.path.clone());
        as_identity_detached(&self.identity, move || {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::debug!("cannot remove {}: {e}", path.display()),
            }
            std::fs::remove_dir(&dir).map_err(|e| {
                tracing::warn!("cannot remove {}: {e}", dir.display());
                e
            })
        });
    }
}

/// Accepts connections on the agent socket; each one gets its own agent
/// channel to the client, on the connection the route names then.
async fn relay(route: SharedRoute, listener: UnixListener, peer: String) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("{peer}: agent socket accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let current = route
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        match current {
            Some(current) => {
                tokio::spawn(current.serve(stream));
            }
            None => drop(stream),
        }
    }
}
