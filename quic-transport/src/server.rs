//! The server's way in: its QUIC configuration (the SSH Ed25519 host key as
//! TLS identity, the key-exchange groups, the ALPNs offered), listening
//! endpoints, and each incoming connection from its first packet to a
//! logged-in session or a tunnel.
//!
//! Callers (sshqd) decide what to admit and word what they log; they never
//! build quinn or rustls values themselves.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use sshq_core::ssh_key::PrivateKey;

use crate::kx::KexError;
use crate::relay::Tunnel;
use crate::tls::{CongestionControl, TlsError};
use crate::{HandshakeError, QuicConnection, ServerAuth};

/// What a server's QUIC configuration is built from.
pub struct ServerSettings<'a> {
    /// The Ed25519 host key, the server's TLS identity.
    pub host_key: &'a PrivateKey,
    /// The key-exchange groups to accept (see `crate::kx`).
    pub kex: &'a [String],
    /// Whether tunnels (`sshq-tunnel/1`) are accepted besides `sshq/1`
    /// sessions; without, a tunnel client is refused in the handshake
    /// (`no_application_protocol`), which the client explains.
    pub offer_tunnels: bool,
    /// `None` keeps the default congestion controller.
    pub congestion_control: Option<CongestionControl>,
    /// QuicIdleTimeout and QuicKeepAlive.
    pub liveness: crate::tls::Liveness,
}

/// Why the server's QUIC configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ServerSetupError {
    /// The key-exchange list cannot be served.
    #[error("{0}")]
    Kex(#[from] KexError),
    /// The TLS or QUIC configuration could not be built (the host key, the
    /// crypto provider).
    #[error("{0}")]
    Tls(#[from] TlsError),
}

/// A server's QUIC configuration, shared by all its listening endpoints.
#[derive(Clone)]
pub struct ListenerConfig {
    quic: quinn::ServerConfig,
    congestion_control: CongestionControl,
    liveness: crate::tls::Liveness,
}

impl ListenerConfig {
    /// Builds the configuration; every listener starts under the
    /// pre-authentication limits of `crate::preauth`.
    pub fn new(settings: &ServerSettings<'_>) -> Result<ListenerConfig, ServerSetupError> {
        let provider = crate::kx::crypto_provider(settings.kex)?;
        let mut tls = crate::tls::server_tls(settings.host_key, provider)?;
        if settings.offer_tunnels {
            crate::tunnel::offer_tunnel(&mut tls);
        }
        let quic = crate::tls::server_config(tls)?;
        Ok(ListenerConfig {
            quic,
            congestion_control: settings.congestion_control.unwrap_or_default(),
            liveness: settings.liveness,
        })
    }

    /// The configuration for a connection from `peer`: MTU discovery up to
    /// what the route to it carries (`crate::path_mtu`), under the
    /// pre-authentication limits.
    fn for_peer(&self, peer: SocketAddr) -> Arc<quinn::ServerConfig> {
        let mut transport = crate::tls::transport_config_with(
            self.congestion_control,
            crate::path_mtu::upper_bound(peer),
            self.liveness,
        );
        crate::preauth::restrict(&mut transport);
        let mut quic = self.quic.clone();
        quic.transport_config(Arc::new(transport));
        Arc::new(quic)
    }
}

/// A listening UDP endpoint.
pub struct ServerEndpoint {
    endpoint: quinn::Endpoint,
    config: ListenerConfig,
}

impl ServerEndpoint {
    /// Listens on `addr` (a socket sized for bulk transfers).
    pub fn bind(addr: SocketAddr, config: &ListenerConfig) -> io::Result<ServerEndpoint> {
        crate::endpoint::server_endpoint(addr, config.quic.clone()).map(|endpoint| ServerEndpoint {
            endpoint,
            config: config.clone(),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// The next connection attempt; `None` once the endpoint is closed.
    pub async fn accept(&self) -> Option<IncomingConnection> {
        let incoming = self.endpoint.accept().await?;
        Some(IncomingConnection {
            incoming,
            config: self.config.clone(),
        })
    }
}

/// A connection attempt, before any key-exchange work: admit it, ask it
/// to prove its address (Retry), or refuse it.
pub struct IncomingConnection {
    incoming: quinn::Incoming,
    config: ListenerConfig,
}

impl IncomingConnection {
    /// The address the attempt claims to come from.
    pub fn remote_address(&self) -> SocketAddr {
        self.incoming.remote_address()
    }

    /// Whether the client has shown it receives at that address (a Retry
    /// token came back).
    pub fn remote_address_validated(&self) -> bool {
        self.incoming.remote_address_validated()
    }

    /// Whether a Retry may be sent (not already done for this attempt).
    pub fn may_retry(&self) -> bool {
        self.incoming.may_retry()
    }

    /// Answers with a Retry: one round trip, no key-exchange work, and a
    /// spoofed source never comes back.
    pub fn retry(self) {
        // Fails only when a Retry was already sent ([`Self::may_retry`]);
        // the attempt is then dropped, unanswered.
        let _ = self.incoming.retry();
    }

    /// Refuses the attempt (CONNECTION_REFUSED).
    pub fn refuse(self) {
        self.incoming.refuse();
    }

    /// Runs the QUIC handshake, until `deadline` (LoginGraceTime).
    pub async fn handshake(
        self,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Handshaken, HandshakeError> {
        let config = self.config.for_peer(self.incoming.remote_address());
        crate::conn::handshake_with(self.incoming, Some(config), deadline)
            .await
            .map(Handshaken)
    }
}

/// A connection whose handshake completed: the negotiated ALPN says
/// whether it is a tunnel or an `sshq/1` session to log in to.
pub struct Handshaken(quinn::Connection);

impl Handshaken {
    /// Whether it negotiated `sshq-tunnel/1` (only offered with
    /// [`ServerSettings::offer_tunnels`]).
    pub fn is_tunnel(&self) -> bool {
        crate::tunnel::is_tunnel(&self.0)
    }

    /// The tunnel, out of the pre-authentication limits: the relay's
    /// target authenticates the user.
    pub fn into_tunnel(self) -> Tunnel {
        crate::preauth::lift_tunnel(&self.0);
        Tunnel::new(self.0, None)
    }

    /// User authentication, until `deadline`; the session once a user has
    /// logged in.
    pub async fn login(
        self,
        auth: Arc<ServerAuth>,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<QuicConnection, HandshakeError> {
        crate::login(self.0, auth, deadline).await
    }
}
