//! QUIC endpoints on sockets sized for bulk transfers.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::tls::bind_endpoint_socket;

/// A client endpoint on `bind` (e.g. `0.0.0.0:0`), ready to `connect_with`.
pub fn client_endpoint(bind: SocketAddr) -> io::Result<quinn::Endpoint> {
    let socket = bind_endpoint_socket(bind)?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// A server endpoint listening on `addr`.
pub fn server_endpoint(
    addr: SocketAddr,
    config: quinn::ServerConfig,
) -> io::Result<quinn::Endpoint> {
    let socket = bind_endpoint_socket(addr)?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}
