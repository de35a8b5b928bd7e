//! QUIC endpoints on sockets sized for bulk transfers.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::tls::bind_endpoint_socket;

/// A client endpoint on `bind` (e.g. `0.0.0.0:0`), ready to `connect_with`.
pub fn client_endpoint(bind: SocketAddr) -> io::Result<quinn::Endpoint> {
    let socket = bind_endpoint_socket(bind)?;
    quinn::Endpoint::new(
        endpoint_config(),
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
        endpoint_config(),
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// quinn's endpoint defaults, except that datagrams up to
/// [`crate::path_mtu::MAX_UDP_PAYLOAD`] are accepted (and the peer is told
/// so in its `max_udp_payload_size` transport parameter): quinn's default
/// stops at 1472 bytes, which would cap MTU discovery on loopback and
/// jumbo-frame links. The cost is a larger receive buffer per endpoint
/// (one per process), not per connection.
fn endpoint_config() -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::default();
    // Fails only below 1200 bytes, which MAX_UDP_PAYLOAD is not.
    let _ = config.max_udp_payload_size(crate::path_mtu::MAX_UDP_PAYLOAD);
    config
}
