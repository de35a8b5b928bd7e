//! Port and socket forwarding, written once above the transport trait. Over
//! QUIC each forwarded connection is its own stream, so one stalled forward
//! stalls nothing else.
//!
//! - [`spec`]: the `-L` / `-R` arguments (ports and Unix socket paths).
//! - [`local`]: -L on the client (direct-tcpip and
//!   direct-streamlocal@openssh.com channels), and the splice between a
//!   channel and a byte stream that every kind uses (agent forwarding too).
//! - [`remote`]: -R on the client (tcpip-forward and streamlocal-forward
//!   requests, forwarded channels connected to their targets); the server
//!   side is in `server::forwarding`.
//! - [`socks`]: -D on the client, a SOCKS4/4a/5 proxy whose connections
//!   become direct-tcpip channels.
//! - [`unix_socket`]: Unix sockets made and reached with the right identity.
//! - [`client`]: what the client sets up for a connection, and
//!   ExitOnForwardFailure.
//! - [`listing`]: the connections open through forwards, for `~#`.

pub mod client;
pub mod error;
pub mod listing;
pub mod local;
pub mod remote;
pub mod socks;
pub mod spec;
pub mod unix_socket;

pub use error::ForwardError;
pub use local::splice;
pub use socks::DynamicForward;
pub use spec::{Forward, Listen, Target};

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// A byte stream of either kind a forward carries (TCP or Unix).
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> ByteStream for T {}

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

/// Binds a client-side TCP forwarding listener; on failure, ssh's lines
/// ("bind [addr]:port: reason" and which port could not be listened to).
pub(crate) async fn bind_listener(
    bind_address: Option<&str>,
    port: u16,
) -> Result<TcpListener, ForwardError> {
    TcpListener::bind(listen_address(bind_address, port))
        .await
        .map_err(|source| ForwardError::BindPort {
            address: bind_address.unwrap_or("127.0.0.1").to_string(),
            port,
            source,
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

/// [`accept`] for a Unix socket listener.
pub(crate) async fn accept_unix(
    listener: &tokio::net::UnixListener,
    what: &str,
) -> tokio::net::UnixStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return stream,
            Err(e) => {
                tracing::warn!("{what} accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Connects to a forward's target from this process: a TCP port (with
/// Nagle off, as ssh does for forwarded connections) or a Unix socket
/// with `identity`'s rights.
pub(crate) async fn connect_target(
    target: &Target,
    identity: &unix_socket::Identity,
) -> std::io::Result<Box<dyn ByteStream>> {
    match target {
        Target::Port { host, port } => {
            let stream = TcpStream::connect((host.as_str(), *port)).await?;
            let _ = stream.set_nodelay(true);
            Ok(Box::new(stream))
        }
        Target::Path(path) => Ok(Box::new(unix_socket::connect(path, identity).await?)),
    }
}
