//! Remote port forwarding on the client: `-R [bind_address:]port:host:hostport`
//! (and ssh_config `RemoteForward`). Each forward is a `tcpip-forward` global
//! request; the server then opens a `forwarded-tcpip` channel for every
//! connection to its listener, which this side connects to host:hostport and
//! splices.

use std::sync::{Arc, Mutex};

use sshq_core::channel::{ChannelKind, GlobalReply, GlobalRequest, OpenFailure, OpenFailureReason};
use sshq_core::transport::{Connection, PendingChannel};
use tokio::net::TcpStream;

use super::local::LocalForward;

/// A parsed `-R [bind_address:]port:host:hostport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteForward {
    /// Where the server should listen; `None` means its loopback.
    pub bind_address: Option<String>,
    /// The server-side port; 0 lets the server choose.
    pub bind_port: u16,
    /// Where this side connects for each forwarded connection.
    pub host: String,
    pub host_port: u16,
}

/// Why a remote forwarding spec could not be read.
#[derive(Debug, thiserror::Error)]
#[error("Bad remote forwarding specification '{0}'")]
pub struct BadRemoteForward(pub String);

impl RemoteForward {
    /// Parses ssh's `-R` syntax: the same fields as `-L` (IPv6 addresses in
    /// brackets), read with the same parser.
    pub fn parse(spec: &str) -> Result<RemoteForward, BadRemoteForward> {
        let local = LocalForward::parse(spec).map_err(|_| BadRemoteForward(spec.to_string()))?;
        Ok(RemoteForward {
            bind_address: local.bind_address,
            bind_port: local.bind_port,
            host: local.host,
            host_port: local.host_port,
        })
    }

    /// The address sent in `tcpip-forward`, as ssh sends it: "localhost"
    /// when none is given, "" for all interfaces.
    pub fn request_address(&self) -> String {
        match self.bind_address.as_deref() {
            None => "localhost".to_string(),
            Some("*") | Some("") => String::new(),
            Some(address) => address.to_string(),
        }
    }
}

/// A forward the server accepted: what it listens on, where we connect.
#[derive(Debug, Clone)]
struct Active {
    address: String,
    /// The port the server listens on (the allocated one for port 0).
    port: u32,
    forward: RemoteForward,
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

    /// Asks the server for every forward, in order. A refused one is
    /// reported with ssh's warning and the session carries on; a lost
    /// connection is an error.
    pub async fn request_all<C: Connection>(
        &self,
        conn: &C,
        forwards: &[RemoteForward],
        quiet: bool,
    ) -> Result<(), String> {
        for forward in forwards {
            let address = forward.request_address();
            let request = GlobalRequest::TcpipForward {
                address: address.clone(),
                port: u32::from(forward.bind_port),
            };
            // Registered before asking, so a connection arriving before the
            // reply is read is still recognised (not for port 0: its port is
            // only known from the reply).
            let provisional = forward.bind_port != 0;
            if provisional {
                self.push(Active {
                    address: address.clone(),
                    port: u32::from(forward.bind_port),
                    forward: forward.clone(),
                });
            }
            let reply = conn
                .global_request(request)
                .await
                .map_err(|e| e.to_string());
            match reply {
                Ok(GlobalReply::Success { bound_port }) => {
                    tracing::debug!(
                        "remote forward success for: listen {}:{}, connect {}:{}",
                        address,
                        forward.bind_port,
                        forward.host,
                        forward.host_port
                    );
                    if forward.bind_port == 0 {
                        let Some(port) = bound_port else {
                            if !quiet {
                                eprintln!(
                                    "Warning: remote port forwarding failed for listen port 0 \
                                     (the server reported no allocated port)"
                                );
                            }
                            continue;
                        };
                        if !quiet {
                            eprintln!(
                                "Allocated port {port} for remote forward to {}:{}",
                                forward.host, forward.host_port
                            );
                        }
                        self.push(Active {
                            address,
                            port,
                            forward: forward.clone(),
                        });
                    }
                }
                Ok(GlobalReply::Failure) => {
                    if provisional {
                        self.remove(&address, u32::from(forward.bind_port));
                    }
                    if !quiet {
                        eprintln!(
                            "Warning: remote port forwarding failed for listen port {}",
                            forward.bind_port
                        );
                    }
                }
                Err(e) => return Err(format!("remote port forwarding: {e}")),
            }
        }
        Ok(())
    }

    fn push(&self, active: Active) {
        self.active.lock().expect("remote forwards").push(active);
    }

    fn remove(&self, address: &str, port: u32) {
        let mut active = self.active.lock().expect("remote forwards");
        if let Some(i) = active
            .iter()
            .position(|a| a.address == address && a.port == port)
        {
            active.remove(i);
        }
    }

    /// The forward an incoming `forwarded-tcpip` channel belongs to: the
    /// one on its port, preferring the one whose address matches too.
    fn find(&self, address: &str, port: u32) -> Option<RemoteForward> {
        let active = self.active.lock().expect("remote forwards");
        let on_port = || active.iter().filter(|a| a.port == port);
        on_port()
            .find(|a| a.address == address)
            .or_else(|| on_port().next())
            .map(|a| a.forward.clone())
    }

    /// Serves one `forwarded-tcpip` channel from the server: refused unless
    /// it belongs to a forward we asked for; otherwise connect, then splice.
    pub async fn handle<Ch: sshq_core::transport::Channel>(&self, pending: PendingChannel<Ch>) {
        let ChannelKind::ForwardedTcpip {
            connected_address,
            connected_port,
            originator,
            originator_port,
        } = pending.kind().clone()
        else {
            return refuse(
                pending,
                OpenFailureReason::UnknownChannelType,
                "not a forwarded-tcpip channel".to_string(),
            );
        };
        let Some(forward) = self.find(&connected_address, connected_port) else {
            tracing::warn!(
                "WARNING: Server requests forwarding for unknown listen_port {connected_port}"
            );
            return refuse(
                pending,
                OpenFailureReason::AdministrativelyProhibited,
                format!("no remote forward for {connected_address}:{connected_port}"),
            );
        };
        tracing::debug!(
            "forwarded-tcpip from {originator}:{originator_port} on \
             {connected_address}:{connected_port} to {}:{}",
            forward.host,
            forward.host_port
        );
        match TcpStream::connect((forward.host.as_str(), forward.host_port)).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                super::splice(pending.accept(), stream).await;
            }
            Err(e) => {
                eprintln!(
                    "connect_to {} port {}: failed: {e}",
                    forward.host, forward.host_port
                );
                refuse(
                    pending,
                    OpenFailureReason::ConnectFailed,
                    format!(
                        "connect to {} port {} failed: {e}",
                        forward.host, forward.host_port
                    ),
                );
            }
        }
    }
}

fn refuse<Ch>(pending: PendingChannel<Ch>, reason: OpenFailureReason, message: String) {
    tracing::debug!("refusing forwarded-tcpip channel: {message}");
    pending.reject(OpenFailure { reason, message });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_forward_specs() {
        let f = RemoteForward::parse("8080:127.0.0.1:80").unwrap();
        assert_eq!(
            (
                f.bind_address.as_deref(),
                f.bind_port,
                f.host.as_str(),
                f.host_port
            ),
            (None, 8080, "127.0.0.1", 80)
        );
        assert_eq!(f.request_address(), "localhost");
        let f = RemoteForward::parse("0:localhost:22").unwrap();
        assert_eq!((f.bind_port, f.host.as_str()), (0, "localhost"));
        let f = RemoteForward::parse("*:2222:[::1]:22").unwrap();
        assert_eq!(f.bind_address.as_deref(), Some("*"));
        assert_eq!(f.request_address(), "");
        assert_eq!(f.host, "::1");
        let f = RemoteForward::parse(":2222:h:22").unwrap();
        assert_eq!(f.request_address(), "");
        let f = RemoteForward::parse("[::1]:2222:h:22").unwrap();
        assert_eq!(f.request_address(), "::1");
        let f = RemoteForward::parse("10.0.0.1:2222:h:22").unwrap();
        assert_eq!(f.request_address(), "10.0.0.1");
        for bad in [
            "2222",
            "2222:h",
            "x:h:1",
            "1:h:65536",
            "1::22",
            "a:b:c:d:e",
            "[::1:1:h:2",
        ] {
            let e = RemoteForward::parse(bad).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("Bad remote forwarding specification '{bad}'")
            );
        }
    }

    #[test]
    fn incoming_channels_match_their_forward() {
        let forwards = RemoteForwards::default();
        let spec = |s: &str| RemoteForward::parse(s).unwrap();
        forwards.push(Active {
            address: "localhost".into(),
            port: 2000,
            forward: spec("2000:a:1"),
        });
        forwards.push(Active {
            address: "".into(),
            port: 3000,
            forward: spec(":3000:b:2"),
        });
        forwards.push(Active {
            address: "10.0.0.1".into(),
            port: 3000,
            forward: spec("10.0.0.1:3000:c:3"),
        });
        assert_eq!(forwards.find("localhost", 2000).unwrap().host, "a");
        assert_eq!(forwards.find("127.0.0.1", 2000).unwrap().host, "a");
        assert_eq!(forwards.find("10.0.0.1", 3000).unwrap().host, "c");
        assert_eq!(forwards.find("", 3000).unwrap().host, "b");
        assert!(forwards.find("localhost", 4000).is_none());
        forwards.remove("localhost", 2000);
        assert!(forwards.find("localhost", 2000).is_none());
    }
}
