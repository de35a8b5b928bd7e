//! What a well-behaved sshq client never does, for measurement tools only
//! (interop/load's pre-authentication floods), named as rustls names its
//! escape hatches: the `sshq` binaries must not use it.

use std::net::SocketAddr;

use crate::client::{ClientEndpoint, ConnectFailure, ConnectParams};

/// A QUIC connection whose handshake completed and which then says
/// nothing: no control stream, no login. The server's LoginGraceTime and
/// pre-authentication limits are what end it.
pub struct SilentConnection(quinn::Connection);

impl SilentConnection {
    /// Whether the connection has ended (the server closed it, or it timed
    /// out).
    pub fn is_closed(&self) -> bool {
        self.0.close_reason().is_some()
    }
}

/// Runs the `sshq/1` handshake to `addr` from `endpoint` and stops there.
pub async fn connect_silent(
    endpoint: &ClientEndpoint,
    addr: SocketAddr,
    params: &ConnectParams,
) -> Result<SilentConnection, ConnectFailure> {
    let (conn, _group, _pending) = endpoint.handshake(addr, params, crate::tls::ALPN).await?;
    Ok(SilentConnection(conn))
}
