//! Remote forwarding on the client: `-R [bind_address:]port:host:hostport`
//! and its Unix-socket forms (and ssh_config `RemoteForward`). Each forward
//! is a `tcpip-forward` (port) or `streamlocal-forward@openssh.com` (socket
//! path) global request; the server then opens a `forwarded-tcpip` or
//! `forwarded-streamlocal@openssh.com` channel for every connection to its
//! listener, which this side connects to the forward's target and splices.

use std::sync::{Arc, Mutex, MutexGuard};

use sshq_core::channel::{ChannelKind, GlobalReply, GlobalRequest, OpenFailure, OpenFailureReason};
use sshq_core::transport::{Connection, PendingChannel};

use super::spec::{Forward, Listen};
use super::unix_socket::Identity;
use super::ForwardError;

/// What the server listens on for a forward, as named on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ServerListen {
    /// The address as sent in `tcpip-forward`, and the port the server
    /// listens on (the allocated one for port 0).
    Port {
        address: String,
        port: u32,
    },
    Path(String),
}

/// The address sent in `tcpip-forward`, as ssh sends it: "localhost" when
/// none is given, "" for all interfaces.
fn request_address(bind_address: Option<&str>) -> String {
    match bind_address {
        None => "localhost".to_string(),
        Some("*") | Some("") => String::new(),
        Some(address) => address.to_string(),
    }
}

/// A forward the server accepted: what it listens on, where we connect.
#[derive(Debug, Clone)]
struct Active {
    listen: ServerListen,
    forward: Forward,
}

/// How a refused request is reported: ssh's "Warning:" and the session
/// carries on, or with ExitOnForwardFailure its "Error:" and sshq exits.
#[derive(Debug, Clone, Copy)]
pub struct OnRefusal {
    pub exit: bool,
    pub quiet: bool,
}

/// The remote forwards of one connection, shared between the code that
/// requests them and the dispatcher of incoming channels.
#[derive(Debug, Default)]
pub struct RemoteForwards {
    active: Mutex<Vec<Active>>,
}

impl RemoteForwards {
    pub fn new() -> Arc<RemoteForwards> {
        Arc::new(RemoteForwards::default())
    }

    fn active(&self) -> MutexGuard<'_, Vec<Active>> {
        // The list stays consistent even if a holder panicked: use it as is.
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cancels the forward the server listens for on `[bind_address:]port`
    /// (ssh's `~C -KR`); `Ok(false)` when no such forward is active.
    pub async fn cancel<C: Connection>(
        &self,
        conn: &C,
        bind_address: Option<&str>,
        port: u16,
    ) -> Result<bool, ForwardError> {
        let address = request_address(bind_address);
        let wanted = ServerListen::Port {
            address: address.clone(),
            port: u32::from(port),
        };
        let found = self.active().iter().any(|active| active.listen == wanted);
        if !found {
            return Ok(false);
        }
        let request = GlobalRequest::CancelTcpipForward {
            address,
            port: u32::from(port),
        };
        let reply = conn
            .global_request(request)
            .await
            .map_err(ForwardError::Remote)?;
        self.active().retain(|active| active.listen != wanted);
        Ok(matches!(reply, GlobalReply::Success { .. }))
    }

    /// Asks the server for every forward, in order. A refused one is
    /// reported as ssh reports it; it ends the session (`Err`, already
    /// reported) only with ExitOnForwardFailure. A lost connection is an
    /// error.
    pub async fn request_all<C: Connection>(
        &self,
        conn: &C,
        forwards: &[Forward],
        on_refusal: OnRefusal,
    ) -> Result<(), ForwardError> {
        for forward in forwards {
            let (request, provisional, what) = match &forward.listen {
                Listen::Port { bind_address, port } => {
                    let address = request_address(bind_address.as_deref());
                    let request = GlobalRequest::TcpipForward {
                        address: address.clone(),
                        port: u32::from(*port),
                    };
                    // Port 0: the real port is only known from the reply.
                    let provisional = (*port != 0).then_some(ServerListen::Port {
                        address,
                        port: u32::from(*port),
                    });
                    (request, provisional, format!("listen port {port}"))
                }
                Listen::Path(path) => (
                    GlobalRequest::StreamlocalForward {
                        socket_path: path.clone(),
                    },
                    Some(ServerListen::Path(path.clone())),
                    format!("listen path {path}"),
                ),
            };
            // Registered before asking, so a connection arriving before the
            // reply is read is still recognised.
            if let Some(listen) = &provisional {
                self.active().push(Active {
                    listen: listen.clone(),
                    forward: forward.clone(),
                });
            }
            let reply = conn
                .global_request(request)
                .await
                .map_err(ForwardError::Remote)?;
            // As with ssh, -q silences even the fatal form.
            let refused = |detail: &str| {
                let (level, outcome) = match on_refusal.exit {
                    true => ("Error", Err(ForwardError::ExitOnForwardFailure)),
                    false => ("Warning", Ok(())),
                };
                if !on_refusal.quiet {
                    eprintln!("{level}: remote port forwarding failed for {what}{detail}");
                }
                outcome
            };
            match (reply, &forward.listen) {
                (
                    GlobalReply::Success { bound_port },
                    Listen::Port {
                        port: 0,
                        bind_address,
                    },
                ) => {
                    let Some(bound) = bound_port else {
                        refused(" (the server reported no allocated port)")?;
                        continue;
                    };
                    if !on_refusal.quiet {
                        eprintln!(
                            "Allocated port {bound} for remote forward to {}",
                            forward.target
                        );
                    }
                    self.active().push(Active {
                        listen: ServerListen::Port {
                            address: request_address(bind_address.as_deref()),
                            port: bound,
                        },
                        forward: forward.clone(),
                    });
                }
                (GlobalReply::Success { .. }, _) => {
                    tracing::debug!(
                        "remote forward success for: {}, connect {}",
                        forward.listen,
                        forward.target
                    );
                }
                (GlobalReply::Failure, _) => {
                    if let Some(listen) = &provisional {
                        self.remove(listen);
                    }
                    refused("")?;
                }
            }
        }
        Ok(())
    }

    fn remove(&self, listen: &ServerListen) {
        let mut active = self.active();
        if let Some(i) = active.iter().position(|a| a.listen == *listen) {
            active.remove(i);
        }
    }

    /// The forward an incoming channel belongs to: for a port, the one on
    /// its port, preferring the one whose address matches too; for a
    /// socket, the one on that path.
    fn find(&self, kind: &ChannelKind) -> Option<Forward> {
        let active = self.active();
        match kind {
            ChannelKind::ForwardedTcpip {
                connected_address,
                connected_port,
                ..
            } => {
                let on_port = || {
                    active.iter().filter(|a| {
                        matches!(&a.listen, ServerListen::Port { port, .. } if port == connected_port)
                    })
                };
                on_port()
                    .find(|a| {
                        matches!(&a.listen, ServerListen::Port { address, .. } if address == connected_address)
                    })
                    .or_else(|| on_port().next())
                    .map(|a| a.forward.clone())
            }
            ChannelKind::ForwardedStreamlocal { socket_path } => active
                .iter()
                .find(|a| matches!(&a.listen, ServerListen::Path(p) if p == socket_path))
                .map(|a| a.forward.clone()),
            _ => None,
        }
    }

    /// Serves one forwarded channel from the server: refused unless it
    /// belongs to a forward we asked for; otherwise connect, then splice.
    pub async fn handle<Ch: sshq_core::transport::Channel>(&self, pending: PendingChannel<Ch>) {
        let kind = pending.kind().clone();
        let Some(forward) = self.find(&kind) else {
            let what = match &kind {
                ChannelKind::ForwardedTcpip { connected_port, .. } => {
                    format!("listen_port {connected_port}")
                }
                ChannelKind::ForwardedStreamlocal { socket_path } => {
                    format!("listen path {socket_path}")
                }
                other => format!("{} channel", other.wire_name()),
            };
            tracing::warn!("WARNING: Server requests forwarding for unknown {what}");
            return refuse(
                pending,
                OpenFailureReason::AdministrativelyProhibited,
                format!("no remote forward for {what}"),
            );
        };
        if let ChannelKind::ForwardedTcpip {
            originator,
            originator_port,
            ..
        } = &kind
        {
            tracing::debug!(
                "forwarded-tcpip from {originator}:{originator_port} on {} to {}",
                forward.listen,
                forward.target
            );
        }
        let _listed = super::listing::list(match &kind {
            ChannelKind::ForwardedTcpip {
                originator,
                originator_port,
                ..
            } => format!(
                "forwarded-tcpip: listening {} for {}, connect from {originator} port {originator_port}",
                forward.listen, forward.target
            ),
            _ => format!(
                "{}: listening {} for {}",
                kind.wire_name(),
                forward.listen,
                forward.target
            ),
        });
        match super::connect_target(&forward.target, &Identity::Process).await {
            Ok(stream) => super::splice(pending.accept(), stream).await,
            Err(e) => {
                eprintln!("connect_to {}: failed: {e}", forward.target);
                refuse(
                    pending,
                    OpenFailureReason::ConnectFailed,
                    format!("connect to {} failed: {e}", forward.target),
                );
            }
        }
    }
}

fn refuse<Ch>(pending: PendingChannel<Ch>, reason: OpenFailureReason, message: String) {
    tracing::debug!("refusing a forwarded channel: {message}");
    pending.reject(OpenFailure { reason, message });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcpip(address: &str, port: u32) -> ChannelKind {
        ChannelKind::ForwardedTcpip {
            connected_address: address.into(),
            connected_port: port,
            originator: "127.0.0.1".into(),
            originator_port: 1,
        }
    }

    fn target_host(forward: Option<Forward>) -> Option<String> {
        forward.map(|f| f.target.to_string())
    }

    #[test]
    fn request_addresses_follow_ssh() {
        assert_eq!(request_address(None), "localhost");
        assert_eq!(request_address(Some("*")), "");
        assert_eq!(request_address(Some("")), "");
        assert_eq!(request_address(Some("::1")), "::1");
        assert_eq!(request_address(Some("10.0.0.1")), "10.0.0.1");
    }

    #[test]
    fn incoming_channels_match_their_forward() {
        let forwards = RemoteForwards::default();
        let spec = |s: &str| Forward::parse_remote(s).unwrap();
        let port = |address: &str, port: u32| ServerListen::Port {
            address: address.into(),
            port,
        };
        for (listen, forward) in [
            (port("localhost", 2000), spec("2000:a:1")),
            (port("", 3000), spec(":3000:b:2")),
            (port("10.0.0.1", 3000), spec("10.0.0.1:3000:c:3")),
            (
                ServerListen::Path("/tmp/r.sock".into()),
                spec("/tmp/r.sock:/tmp/l.sock"),
            ),
        ] {
            forwards.active().push(Active { listen, forward });
        }
        let find = |kind: ChannelKind| target_host(forwards.find(&kind));
        assert_eq!(find(tcpip("localhost", 2000)).as_deref(), Some("a:1"));
        assert_eq!(find(tcpip("127.0.0.1", 2000)).as_deref(), Some("a:1"));
        assert_eq!(find(tcpip("10.0.0.1", 3000)).as_deref(), Some("c:3"));
        assert_eq!(find(tcpip("", 3000)).as_deref(), Some("b:2"));
        assert_eq!(find(tcpip("localhost", 4000)), None);
        let socket = |path: &str| ChannelKind::ForwardedStreamlocal {
            socket_path: path.into(),
        };
        assert_eq!(find(socket("/tmp/r.sock")).as_deref(), Some("/tmp/l.sock"));
        assert_eq!(find(socket("/tmp/other.sock")), None);
        forwards.remove(&port("localhost", 2000));
        assert_eq!(find(tcpip("localhost", 2000)), None);
    }
}
