//! Remote port forwarding on the server: `tcpip-forward` binds a listener
//! for the client (the other end of its -R), every connection to it becomes
//! a `forwarded-tcpip` channel to the client, and `cancel-tcpip-forward`
//! stops it. Listeners belong to their connection and end with it. The
//! Unix-socket forms (both directions) are in [`streamlocal`].

pub mod streamlocal;

pub use streamlocal::StreamlocalPolicy;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use sshq_core::channel::{ChannelKind, GlobalReply};
use sshq_core::log_escape;
use sshq_core::transport::Connection;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

use super::config::GatewayPorts;
use super::context::SessionContext;

/// The listeners of one connection, keyed by the address the client asked
/// for and the port actually bound (and the socket listeners, by path); all
/// stop when this is dropped.
#[derive(Default)]
pub struct RemoteListeners {
    listeners: Mutex<HashMap<(String, u32), AbortHandle>>,
    /// `streamlocal-forward@openssh.com` listeners.
    pub sockets: streamlocal::SocketListeners,
}

impl Drop for RemoteListeners {
    fn drop(&mut self) {
        if let Ok(listeners) = self.listeners.get_mut() {
            for (_, task) in listeners.drain() {
                task.abort();
            }
        }
    }
}

/// Why a `tcpip-forward` was refused, for the log.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    NotAllowed,
    NotPermitted,
    BadPort,
    Privileged,
    Bind(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotAllowed => f.write_str("AllowTcpForwarding forbids remote forwarding"),
            Refusal::NotPermitted => f.write_str("not permitted by PermitListen"),
            Refusal::BadPort => f.write_str("bad port"),
            Refusal::Privileged => f.write_str("a non-root user may not listen below port 1024"),
            Refusal::Bind(e) => write!(f, "bind failed: {e}"),
        }
    }
}

/// Checks a `tcpip-forward` against the policy; the address to listen on.
pub fn check(
    ctx: &SessionContext,
    address: &str,
    port: u32,
    is_root: bool,
) -> Result<SocketAddr, Refusal> {
    if !ctx.forwarding.allow_remote {
        return Err(Refusal::NotAllowed);
    }
    let port = u16::try_from(port).map_err(|_| Refusal::BadPort)?;
    if port != 0 && port < 1024 && !is_root {
        return Err(Refusal::Privileged);
    }
    if !ctx.forwarding.permit_listen.allows(address, port) {
        return Err(Refusal::NotPermitted);
    }
    Ok(SocketAddr::new(
        listen_ip(address, ctx.forwarding.gateway_ports),
        port,
    ))
}

/// Where to listen, as sshd decides: loopback unless GatewayPorts lets the
/// client ask for more; `yes` means all interfaces whatever was asked.
pub fn listen_ip(address: &str, gateway_ports: GatewayPorts) -> IpAddr {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    match gateway_ports {
        GatewayPorts::No => loopback,
        GatewayPorts::Yes => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        GatewayPorts::ClientSpecified => match address {
            "" | "*" | "0.0.0.0" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            "::" => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            "localhost" => loopback,
            other => other.parse().unwrap_or(loopback),
        },
    }
}

impl RemoteListeners {
    /// How many remote forwards (TCP and Unix socket) are listening.
    pub fn count(&self) -> usize {
        let tcp = self.listeners.lock().map(|l| l.len()).unwrap_or(0);
        tcp + self.sockets.count()
    }

    /// Serves a `tcpip-forward`: checks it, binds, and starts forwarding.
    pub async fn forward<C: Connection>(
        &self,
        conn: &Arc<C>,
        ctx: &Arc<SessionContext>,
        address: String,
        port: u32,
    ) -> GlobalReply {
        let result = match check(ctx, &address, port, ctx.user.uid == 0) {
            Ok(listen) => TcpListener::bind(listen)
                .await
                .map_err(|e| Refusal::Bind(format!("{listen}: {e}"))),
            Err(refusal) => Err(refusal),
        };
        let listener = match result {
            Ok(listener) => listener,
            Err(refusal) => {
                tracing::info!(
                    "{}: tcpip-forward for {}:{port} refused: {}",
                    ctx.peer,
                    log_escape::peer_text(&address.to_string()),
                    log_escape::peer_text(&refusal.to_string())
                );
                return GlobalReply::Failure;
            }
        };
        let bound = match listener.local_addr() {
            Ok(local) => u32::from(local.port()),
            Err(e) => {
                tracing::info!(
                    "{}: tcpip-forward for {}:{port} refused: {e}",
                    ctx.peer,
                    log_escape::peer_text(&address.to_string())
                );
                return GlobalReply::Failure;
            }
        };
        tracing::info!(
            "{}: remote forward listening on {:?} port {bound}",
            ctx.peer,
            listener.local_addr().map(|a| a.ip()).ok()
        );
        let task = tokio::spawn(serve_listener(
            conn.clone(),
            ctx.clone(),
            listener,
            address.clone(),
            bound,
        ));
        let old = self
            .listeners
            .lock()
            .expect("listeners")
            .insert((address, bound), task.abort_handle());
        if let Some(old) = old {
            old.abort();
        }
        GlobalReply::Success {
            bound_port: (port == 0).then_some(bound),
        }
    }

    /// Serves a `cancel-tcpip-forward`: stops the listener if there is one.
    pub fn cancel(&self, ctx: &SessionContext, address: &str, port: u32) -> GlobalReply {
        let mut listeners = self.listeners.lock().expect("listeners");
        let key = (address.to_string(), port);
        let key = if listeners.contains_key(&key) {
            Some(key)
        } else {
            listeners.keys().find(|(_, p)| *p == port).cloned()
        };
        match key.and_then(|key| listeners.remove(&key)) {
            Some(task) => {
                task.abort();
                tracing::info!("{}: remote forward on port {port} cancelled", ctx.peer);
                GlobalReply::Success { bound_port: None }
            }
            None => {
                tracing::info!(
                    "{}: cancel-tcpip-forward for {}:{port} refused: no such forward",
                    ctx.peer,
                    log_escape::peer_text(address)
                );
                GlobalReply::Failure
            }
        }
    }
}

/// Accepts connections until the connection ends (or the task is aborted),
/// opening a `forwarded-tcpip` channel for each.
async fn serve_listener<C: Connection>(
    conn: Arc<C>,
    ctx: Arc<SessionContext>,
    listener: TcpListener,
    address: String,
    port: u32,
) {
    let accepting = async {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("{}: remote forward accept: {e}", ctx.peer);
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let conn = conn.clone();
            let ctx = ctx.clone();
            let kind = ChannelKind::ForwardedTcpip {
                connected_address: address.clone(),
                connected_port: port,
                originator: peer.ip().to_string(),
                originator_port: u32::from(peer.port()),
            };
            tokio::spawn(async move {
                match conn.open_channel(kind).await {
                    Ok(channel) => crate::forward::splice(channel, stream).await,
                    Err(e) => tracing::info!(
                        "{}: forwarded-tcpip for port {port} from {peer} failed: {e}",
                        ctx.peer
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_follow_gateway_ports() {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for address in ["", "*", "0.0.0.0", "localhost", "10.1.2.3"] {
            assert_eq!(listen_ip(address, GatewayPorts::No), lo);
            assert_eq!(listen_ip(address, GatewayPorts::Yes), any);
        }
        let cs = GatewayPorts::ClientSpecified;
        assert_eq!(listen_ip("", cs), any);
        assert_eq!(listen_ip("*", cs), any);
        assert_eq!(listen_ip("localhost", cs), lo);
        assert_eq!(
            listen_ip("10.1.2.3", cs),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }
}
