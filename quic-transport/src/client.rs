//! The client's way in: a UDP endpoint, the TLS and QUIC configuration for
//! one handshake (key-exchange groups, ALPN, congestion control, the SSH
//! host-key check), and the handshake itself, its failure sorted by what may
//! follow it ([`HandshakeFailure::allows_fallback`]).
//!
//! Callers (the `sshq` binary) say what they want in [`ConnectParams`] and
//! get back either an `sshq/1` session ([`ClientEndpoint::connect_session`])
//! or a tunnel ([`ClientEndpoint::connect_tunnel`]); they never build quinn
//! or rustls values themselves. How a failure is worded for the user is the
//! caller's business: [`ConnectFailure`] says what happened, not what to do.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use sshq_core::auth::ServerKeyVerifier;
use sshq_core::error::TransportError;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::conn::SessionStart;
use crate::host_certificate::PendingHostKey;
use crate::kx::{KexError, NegotiatedGroup};
use crate::one_stream::ChannelMapping;
use crate::relay::Tunnel;
use crate::tls::{CongestionControl, HandshakeFailure, HostKeyVerdict, TlsError};
use crate::tunnel::TUNNEL_ALPN;
use crate::{ClientAuth, QuicConnection};

/// The server name sent in the handshake. It is never checked (the server
/// is identified by its SSH host key) and SNI is off; quinn wants one.
const SERVER_NAME: &str = "sshq";

/// What one connection attempt needs from the caller.
#[derive(Clone)]
pub struct ConnectParams {
    /// Judges the server's SSH host key (known_hosts, StrictHostKeyChecking).
    pub verifier: Arc<dyn ServerKeyVerifier>,
    /// The key-exchange groups to offer, in order (see `crate::kx`).
    pub kex: Vec<String>,
    /// `None` keeps the default congestion controller.
    pub congestion_control: Option<CongestionControl>,
    /// QuicIdleTimeout and QuicKeepAlive.
    pub liveness: crate::tls::Liveness,
    /// StreamPerChannel (sshq/1), or the one-stream lab baseline.
    pub channel_mapping: ChannelMapping,
}

/// Why a QUIC connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectFailure {
    /// The key-exchange list cannot be offered (nothing is sent).
    #[error("{0}")]
    Kex(#[from] KexError),
    /// The TLS or QUIC configuration could not be built (nothing is sent).
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// quinn refused to start the attempt (e.g. an address of the wrong
    /// family for the endpoint).
    #[error("{0}")]
    Start(String),
    /// The handshake failed; see [`HandshakeFailure::allows_fallback`].
    #[error("{0}")]
    Handshake(HandshakeFailure),
    /// The handshake completed but the `sshq/1` session could not start.
    #[error("{0}")]
    Session(TransportError),
}

impl ConnectFailure {
    /// The handshake failure, if it got that far.
    pub fn handshake_failure(&self) -> Option<&HandshakeFailure> {
        match self {
            ConnectFailure::Handshake(failure) => Some(failure),
            _ => None,
        }
    }
}

/// A client UDP endpoint: a socket of its own, or datagrams carried over a
/// byte stream (a jump host's UDP relay). Clones share the one socket, for
/// many connections from one endpoint (a load generator's).
#[derive(Clone)]
pub struct ClientEndpoint {
    endpoint: quinn::Endpoint,
    /// Whether datagrams go over a byte stream to a relay: then no local
    /// route says how large they may be on the far side.
    over_stream: bool,
}

impl ClientEndpoint {
    /// An endpoint on an ephemeral port of any local address of the family
    /// of `peer`, to reach `peer` from.
    pub fn for_peer(peer: SocketAddr) -> io::Result<ClientEndpoint> {
        let any: IpAddr = if peer.is_ipv6() {
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        };
        ClientEndpoint::bind(SocketAddr::new(any, 0))
    }

    /// An endpoint on `addr` (port 0: an ephemeral one), for a caller that
    /// chooses the source address.
    pub fn bind(addr: SocketAddr) -> io::Result<ClientEndpoint> {
        crate::endpoint::client_endpoint(addr).map(|endpoint| ClientEndpoint {
            endpoint,
            over_stream: false,
        })
    }

    /// An endpoint whose datagrams travel over `stream`, length-prefixed
    /// (see `crate::stream_socket`); `peer` only labels the one path.
    pub fn over_stream<S>(stream: S, peer: SocketAddr) -> io::Result<ClientEndpoint>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        crate::stream_socket::client_endpoint_over_stream(stream, peer).map(|endpoint| {
            ClientEndpoint {
                endpoint,
                over_stream: true,
            }
        })
    }

    /// The local address, when the endpoint has a real socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// Handshake to `addr` for `sshq/1`, then logs in as `auth` says. The
    /// login runs on, pipelined with the first requests: see
    /// [`QuicConnection::authenticated`]. The endpoint is kept by the
    /// connection, so that closing it can wait for its last packets.
    pub async fn connect_session(
        self,
        addr: SocketAddr,
        params: &ConnectParams,
        auth: ClientAuth,
    ) -> Result<QuicConnection, ConnectFailure> {
        let (conn, group, pending) = self.handshake(addr, params, crate::tls::ALPN).await?;
        let local = self.local_addr();
        let mut session =
            crate::conn::client_session_judged(conn, auth, params.channel_mapping, pending)
                .await
                .map_err(|e| match e {
                    SessionStart::HostKeyRejected => {
                        ConnectFailure::Handshake(HandshakeFailure::HostKeyRejected)
                    }
                    SessionStart::Transport(e) => ConnectFailure::Session(e),
                })?;
        session.set_kex(group.map(str::to_string));
        session.set_local_addr(local);
        session.set_endpoint(self.endpoint);
        Ok(session)
    }

    /// Handshake to `addr` asking for a tunnel (`sshq-tunnel/1`); returns
    /// it with the name of the key-exchange group used.
    pub async fn connect_tunnel(
        self,
        addr: SocketAddr,
        params: &ConnectParams,
    ) -> Result<(Tunnel, Option<&'static str>), ConnectFailure> {
        let (conn, group, pending) = self.handshake(addr, params, TUNNEL_ALPN).await?;
        // A tunnel has no control stream to ask for a certificate on: its
        // host key is judged bare (the SSH inside checks its own).
        if let Some(pending) = pending {
            if !pending.decide(bytes::Bytes::new()).await {
                conn.close(0u32.into(), b"host key verification failed");
                return Err(ConnectFailure::Handshake(HandshakeFailure::HostKeyRejected));
            }
        }
        Ok((Tunnel::new(conn, Some(self.endpoint)), group))
    }

    /// One handshake asking for `alpn`, the host key checked by
    /// `params.verifier`; also returns the key when its judgment waits for
    /// the server's host certificate (draft §5.5).
    pub(crate) async fn handshake(
        &self,
        addr: SocketAddr,
        params: &ConnectParams,
        alpn: &[u8],
    ) -> Result<Handshaken, ConnectFailure> {
        let observer = NegotiatedGroup::new();
        let provider = crate::kx::crypto_provider_observed(&params.kex, observer.clone())?;
        let (mut tls, outcome) =
            crate::tls::client_tls_deferring(params.verifier.clone(), provider)?;
        tls.alpn_protocols = vec![alpn.to_vec()];
        let mut config = crate::tls::client_config(tls)?;
        let transport = crate::tls::transport_config_with(
            params.congestion_control.unwrap_or_default(),
            if self.over_stream {
                // The relay's own UDP path is unknown here.
                crate::path_mtu::ETHERNET_IPV4_UDP_PAYLOAD
            } else {
                crate::path_mtu::upper_bound(addr)
            },
            params.liveness,
        );
        config.transport_config(Arc::new(transport));
        let connecting = self
            .endpoint
            .connect_with(config, addr, SERVER_NAME)
            .map_err(|e| ConnectFailure::Start(e.to_string()))?;
        match connecting.await {
            Ok(conn) => {
                let pending = match outcome.verdict() {
                    HostKeyVerdict::AwaitingCertificate(key) => {
                        Some(PendingHostKey::new(key, params.verifier.clone()))
                    }
                    _ => None,
                };
                Ok((conn, observer.get(), pending))
            }
            Err(error) => Err(ConnectFailure::Handshake(HandshakeFailure::classify(
                &error,
                &outcome,
                &params.kex,
            ))),
        }
    }
}

/// A completed handshake: the connection, the key-exchange group, and the
/// host key still to be judged, if any.
pub(crate) type Handshaken = (
    quinn::Connection,
    Option<&'static str>,
    Option<PendingHostKey>,
);

/// Waits at most `limit` for `endpoint`'s connections to have sent their
/// last packets (a CONNECTION_CLOSE), before the process exits.
pub(crate) async fn wait_idle(endpoint: &quinn::Endpoint, limit: Duration) {
    let _ = tokio::time::timeout(limit, endpoint.wait_idle()).await;
}
