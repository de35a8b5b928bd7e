//! Port forwarding, written once above the transport trait. Over QUIC each
//! forwarded connection is its own stream, so one stalled forward stalls
//! nothing else.
//!
//! - [`local`]: -L on the client, direct-tcpip on the server, and the
//!   splice between a channel and a byte stream that every kind uses
//!   (agent forwarding too).
//! - [`remote`]: -R on the client (tcpip-forward requests, forwarded-tcpip
//!   channels connected to their targets); the server side is in
//!   `server::forwarding`.
//! - [`socks`]: -D on the client, a SOCKS4/4a/5 proxy whose connections
//!   become direct-tcpip channels.

pub mod local;
pub mod remote;
pub mod socks;

pub use local::{splice, start_local_forwards, LocalForward};
pub use socks::{start_dynamic_forwards, DynamicForward};

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

/// Where a client-side forward listens, as ssh reads `[bind_address:]port`:
/// loopback unless an address is given (ssh's GatewayPorts no); `*` or an
/// empty address means all interfaces.
pub(crate) fn listen_address(bind_address: Option<&str>, port: u16) -> String {
    match bind_address {
        None | Some("localhost") => format!("127.0.0.1:{port}"),
        Some("") | Some("*") => format!("0.0.0.0:{port}"),
        Some(addr) if addr.contains(':') => format!("[{addr}]:{port}"),
        Some(addr) => format!("{addr}:{port}"),
    }
}

/// Binds a client-side forwarding listener; on failure, ssh's two lines
/// (`kind` is "local" or "dynamic").
pub(crate) async fn bind_listener(
    bind_address: Option<&str>,
    port: u16,
    kind: &str,
) -> Result<TcpListener, String> {
    TcpListener::bind(listen_address(bind_address, port))
        .await
        .map_err(|e| {
            format!(
                "bind [{}]:{port}: {e}\nCould not request {kind} forwarding.",
                bind_address.unwrap_or("127.0.0.1")
            )
        })
}

/// The next connection on `listener`. Accept errors (such as running out of
/// file descriptors) are logged and retried after a pause, never fatal.
pub(crate) async fn accept(listener: &TcpListener, what: &str) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) => {
                tracing::warn!("{what} accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
