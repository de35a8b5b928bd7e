//! Unix-domain socket forwarding on the server, OpenSSH's streamlocal
//! extensions: `direct-streamlocal@openssh.com` channels (the client's
//! `-L ...:/socket`) connect to a socket, and `streamlocal-forward@openssh.com`
//! (the client's `-R /socket:...`) makes a listening socket whose every
//! connection becomes a `forwarded-streamlocal@openssh.com` channel.
//!
//! Both act with the logged-in user's rights, never sshqd's (see
//! `forward::unix_socket`): the socket file belongs to the user, is made
//! with StreamLocalBindMask, and is removed when the forward is cancelled
//! or the connection ends. AllowStreamLocalForwarding says which way is
//! allowed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use sshq_core::channel::{ChannelKind, GlobalReply, OpenFailure, OpenFailureReason};
use sshq_core::log_escape;
use sshq_core::transport::{Channel, Connection, PendingChannel};
use tokio::task::AbortHandle;

use crate::forward::unix_socket::{self, Identity, SocketFile};
use crate::server::context::SessionContext;
pub use crate::server::context::StreamlocalPolicy;

/// Whose rights socket operations of this connection use.
fn identity(ctx: &SessionContext) -> Identity {
    Identity::User {
        name: ctx.user.name.clone(),
        uid: ctx.user.uid,
        gid: ctx.user.gid,
    }
}

/// A socket path as the user means it: relative paths start at the
/// user's home directory (sshqd's own working directory means nothing to
/// the user).
fn user_path(ctx: &SessionContext, path: &str) -> String {
    if Path::new(path).is_absolute() {
        path.to_string()
    } else {
        ctx.user.home.join(path).to_string_lossy().into_owned()
    }
}

/// Serves a `direct-streamlocal@openssh.com` channel: connect to the
/// socket as the user, then splice.
pub async fn direct<Ch: Channel>(pending: PendingChannel<Ch>, ctx: Arc<SessionContext>) {
    let ChannelKind::DirectStreamlocal { socket_path } = pending.kind().clone() else {
        return pending.reject(OpenFailure {
            reason: OpenFailureReason::UnknownChannelType,
            message: "not a direct-streamlocal channel".to_string(),
        });
    };
    let refuse = |pending: PendingChannel<Ch>, reason, message: String| {
        tracing::info!(
            "{}: direct-streamlocal to {} refused: {}",
            ctx.peer,
            log_escape::peer_text(&socket_path.to_string()),
            log_escape::peer_text(&message.to_string())
        );
        pending.reject(OpenFailure { reason, message });
    };
    if !ctx.forwarding.streamlocal.allow_local {
        return refuse(
            pending,
            OpenFailureReason::AdministrativelyProhibited,
            "open failed: AllowStreamLocalForwarding forbids it on this server".to_string(),
        );
    }
    let path = user_path(&ctx, &socket_path);
    match unix_socket::connect(&path, &identity(&ctx)).await {
        Ok(stream) => {
            tracing::info!(
                "{}: direct-streamlocal to {}",
                ctx.peer,
                log_escape::peer_text(&path.to_string())
            );
            crate::forward::splice(pending.accept(), stream).await;
        }
        Err(e) => refuse(
            pending,
            OpenFailureReason::ConnectFailed,
            format!("connect to {path} failed: {e}"),
        ),
    }
}

/// The listening sockets of one connection, by the path the client asked
/// for; all stop and are removed when this is dropped.
#[derive(Default)]
pub struct SocketListeners {
    listeners: Mutex<HashMap<String, (AbortHandle, SocketFile)>>,
}

impl Drop for SocketListeners {
    fn drop(&mut self) {
        for (_, (task, _file)) in self.lock().drain() {
            task.abort();
        }
    }
}

impl SocketListeners {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, (AbortHandle, SocketFile)>> {
        // The map stays consistent even if a holder panicked: use it as is.
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many socket forwards are listening.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Serves a `streamlocal-forward@openssh.com`: checks it, makes the
    /// socket as the user, and starts forwarding.
    pub async fn forward<C: Connection>(
        &self,
        conn: &Arc<C>,
        ctx: &Arc<SessionContext>,
        socket_path: String,
    ) -> GlobalReply {
        let refused = |why: &str| {
            tracing::info!(
                "{}: streamlocal-forward for {} refused: {}",
                ctx.peer,
                log_escape::peer_text(&socket_path.to_string()),
                log_escape::peer_text(why)
            );
            GlobalReply::Failure
        };
        if !ctx.forwarding.streamlocal.allow_remote {
            return refused("AllowStreamLocalForwarding forbids remote forwarding");
        }
        if self.lock().contains_key(&socket_path) {
            return refused("already forwarded on this connection");
        }
        let path = user_path(ctx, &socket_path);
        let (listener, file) =
            match unix_socket::bind(&path, &identity(ctx), ctx.forwarding.streamlocal.bind).await {
                Ok(bound) => bound,
                Err(e) => return refused(&format!("cannot bind {path}: {e}")),
            };
        tracing::info!(
            "{}: remote forward listening on {}",
            ctx.peer,
            log_escape::peer_text(&path.to_string())
        );
        let task = tokio::spawn(serve_listener(
            conn.clone(),
            ctx.clone(),
            listener,
            socket_path.clone(),
        ));
        self.lock().insert(socket_path, (task.abort_handle(), file));
        GlobalReply::Success { bound_port: None }
    }

    /// Serves a `cancel-streamlocal-forward@openssh.com`: stops the
    /// listener and removes its socket.
    pub fn cancel(&self, ctx: &SessionContext, socket_path: &str) -> GlobalReply {
        match self.lock().remove(socket_path) {
            Some((task, _file)) => {
                task.abort();
                tracing::info!(
                    "{}: remote forward on {} cancelled",
                    ctx.peer,
                    log_escape::peer_text(socket_path)
                );
                GlobalReply::Success { bound_port: None }
            }
            None => {
                tracing::info!(
                    "{}: cancel-streamlocal-forward for {} refused: no such forward",
                    ctx.peer,
                    log_escape::peer_text(socket_path)
                );
                GlobalReply::Failure
            }
        }
    }
}

/// Accepts connections until the connection ends (or the task is
/// aborted), opening a `forwarded-streamlocal@openssh.com` channel for each.
async fn serve_listener<C: Connection>(
    conn: Arc<C>,
    ctx: Arc<SessionContext>,
    listener: tokio::net::UnixListener,
    socket_path: String,
) {
    let accepting = async {
        loop {
            let stream = crate::forward::accept_unix(&listener, "remote forward").await;
            let conn = conn.clone();
            let ctx = ctx.clone();
            let socket_path = socket_path.clone();
            tokio::spawn(async move {
                let kind = ChannelKind::ForwardedStreamlocal {
                    socket_path: socket_path.clone(),
                };
                match conn.open_channel(kind).await {
                    Ok(channel) => crate::forward::splice(channel, stream).await,
                    Err(e) => tracing::info!(
                        "{}: forwarded-streamlocal for {} failed: {e}",
                        ctx.peer,
                        log_escape::peer_text(&socket_path.to_string())
                    ),
                }
            });
        }
    };
    tokio::select! {
        () = accepting => {}
        _ = conn.closed() => {}
    }
}
