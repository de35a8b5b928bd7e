//! Reaching the server: over TCP, over QUIC, or both raced (Transport=auto).
//!
//! Auto starts QUIC first; if no QUIC handshake has completed after
//! QuicFallbackTimeout (or UDP fails at once), TCP starts too, and the first
//! transport to finish its handshake wins, in the manner of Happy Eyeballs
//! (RFC 8305). The other attempt is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sshq_core::auth::{ServerKeyVerifier, UserKey};
use sshq_core::error::{ConnectError, TransportError};
use sshq_core::ssh_key::PublicKey;

use super::config::Transport;
use super::{hostkeys, identity, Plan};

/// How long Transport=auto gives QUIC before starting TCP as well.
pub const DEFAULT_QUIC_FALLBACK: Duration = Duration::from_millis(300);

/// A connection over whichever transport won.
pub enum AnyConnection {
    Tcp(sshq_tcp::TcpClientConnection),
    Quic(sshq_quic::QuicConnection),
}

/// What both transports need, prepared once.
struct Prepared {
    keys: Vec<Arc<dyn UserKey>>,
    verifier: Arc<SerializedVerifier>,
    /// Host key types known_hosts records for this host.
    known_types: Vec<String>,
}

impl Prepared {
    /// QUIC servers identify themselves by their Ed25519 host key only: a
    /// host recorded with other key types alone cannot be checked over QUIC.
    fn quic_identity_unknown(&self) -> bool {
        !self.known_types.is_empty() && !self.known_types.iter().any(|t| t == "ssh-ed25519")
    }
}

/// Connects as the plan says; `-v` is told which transport and why.
pub async fn connect(plan: &Plan) -> Result<AnyConnection, ConnectError> {
    let verifier = hostkeys::Verifier::new(plan);
    let known_types = verifier.known_key_types();
    let prepared = Prepared {
        known_types,
        keys: identity::collect_keys(&identity::IdentityOptions {
            files: plan.options.identity_files.clone(),
            identities_only: plan.options.identities_only.unwrap_or(false),
            batch_mode: plan.options.batch_mode.unwrap_or(false),
            quiet: plan.quiet,
        })
        .await,
        verifier: Arc::new(SerializedVerifier {
            inner: verifier,
            lock: std::sync::Mutex::new(()),
        }),
    };
    let attempt = async {
        match plan.options.transport.unwrap_or(Transport::Auto) {
            Transport::Tcp => {
                tracing::debug!("Transport=tcp: connecting over TCP");
                connect_tcp(plan, &prepared).await.map(AnyConnection::Tcp)
            }
            Transport::Quic => {
                tracing::debug!("Transport=quic: connecting over QUIC");
                connect_quic(plan, &prepared).await.map(AnyConnection::Quic)
            }
            Transport::Auto => race(plan, &prepared).await,
        }
    };
    match plan.options.connect_timeout {
        Some(limit) if !limit.is_zero() => tokio::time::timeout(limit, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(ConnectError::Connect {
                    host: plan.hostname.clone(),
                    port: plan.port,
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "Connection timed out",
                    ),
                })
            }),
        _ => attempt.await,
    }
}

/// Happy Eyeballs between QUIC and TCP.
async fn race(plan: &Plan, prepared: &Prepared) -> Result<AnyConnection, ConnectError> {
    if prepared.quic_identity_unknown() {
        tracing::debug!(
            "Transport=auto: known_hosts has no Ed25519 key for this host (only {}), which QUIC needs; using TCP",
            prepared.known_types.join(", ")
        );
        return connect_tcp(plan, prepared).await.map(AnyConnection::Tcp);
    }
    let head_start = plan
        .options
        .quic_fallback_timeout
        .unwrap_or(DEFAULT_QUIC_FALLBACK);
    let quic = connect_quic(plan, prepared);
    tokio::pin!(quic);
    // QUIC alone during its head start.
    let quic_error = tokio::select! {
        result = &mut quic => match result {
            Ok(conn) => {
                tracing::debug!("Transport=auto: QUIC handshake completed first; using QUIC");
                return Ok(AnyConnection::Quic(conn));
            }
            // Decisions about the server itself are final on any transport.
            Err(e @ (ConnectError::HostKeyRejected | ConnectError::PermissionDenied { .. })) => return Err(e),
            Err(e) => Some(e),
        },
        () = tokio::time::sleep(head_start) => None,
    };
    match &quic_error {
        Some(e) => tracing::debug!("Transport=auto: QUIC failed ({e}); falling back to TCP"),
        None => tracing::debug!(
            "Transport=auto: no QUIC handshake within {} ms; trying TCP as well",
            head_start.as_millis()
        ),
    }
    let tcp = connect_tcp(plan, prepared);
    tokio::pin!(tcp);
    if quic_error.is_some() {
        return tcp.await.map(AnyConnection::Tcp);
    }
    tokio::select! {
        result = &mut quic => match result {
            Ok(conn) => {
                tracing::debug!("Transport=auto: QUIC won the race");
                Ok(AnyConnection::Quic(conn))
            }
            Err(e @ (ConnectError::HostKeyRejected | ConnectError::PermissionDenied { .. })) => Err(e),
            Err(e) => {
                tracing::debug!("Transport=auto: QUIC failed ({e}); waiting for TCP");
                tcp.await.map(AnyConnection::Tcp)
            }
        },
        result = &mut tcp => {
            if result.is_ok() {
                tracing::debug!("Transport=auto: TCP won the race; using TCP");
            }
            result.map(AnyConnection::Tcp)
        }
    }
}

/// Resolves the host name the way ssh reports failures.
async fn resolve(plan: &Plan, port: u16) -> Result<Vec<SocketAddr>, ConnectError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((plan.hostname.as_str(), port))
        .await
        .map_err(|e| ConnectError::Resolve {
            host: plan.hostname.clone(),
            message: resolve_message(&e),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(ConnectError::Resolve {
            host: plan.hostname.clone(),
            message: "Name or service not known".to_string(),
        });
    }
    Ok(addrs)
}

fn resolve_message(e: &std::io::Error) -> String {
    // std wraps getaddrinfo's text; ssh prints only the resolver's words.
    let text = e.to_string();
    text.rsplit(": ").next().unwrap_or(&text).to_string()
}

async fn connect_tcp(
    plan: &Plan,
    prepared: &Prepared,
) -> Result<sshq_tcp::TcpClientConnection, ConnectError> {
    let mut last_error = None;
    for addr in resolve(plan, plan.port).await? {
        let params = sshq_tcp::ClientParams {
            host: plan.host.clone(),
            user: plan.user.clone(),
            keys: prepared.keys.clone(),
            verifier: prepared.verifier.clone(),
            kex: None,
            known_host_key_types: prepared.known_types.clone(),
        };
        match sshq_tcp::connect_tcp(addr, params).await {
            Ok(conn) => return Ok(conn),
            // Only a failure to reach this address moves on to the next one.
            Err(e @ ConnectError::Connect { .. }) => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or(ConnectError::Other("no address to connect to".to_string())))
}

async fn connect_quic(
    plan: &Plan,
    prepared: &Prepared,
) -> Result<sshq_quic::QuicConnection, ConnectError> {
    if prepared.quic_identity_unknown() {
        return Err(ConnectError::Other(format!(
            "sshq: {} is known only by its {} host key, but over QUIC servers identify themselves \
             by their Ed25519 host key. Use -o Transport=tcp, or add the server's Ed25519 key to \
             known_hosts after checking its fingerprint.",
            plan.hostname,
            prepared.known_types.join(", ")
        )));
    }
    let port = plan.options.quic_port.unwrap_or(plan.port);
    let kex = match &plan.options.kex_algorithms {
        Some(spec) => sshq_quic::kx::parse_kex_list(spec)
            .map_err(|e| ConnectError::Other(format!("sshq: {e}")))?,
        None => sshq_quic::kx::DEFAULT_KEX
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let mut last_error = None;
    for addr in resolve(plan, port).await? {
        match connect_quic_addr(plan, prepared, addr, &kex).await {
            Ok(conn) => return Ok(conn),
            Err(e @ ConnectError::Connect { .. }) => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or(ConnectError::Other("no address to connect to".to_string())))
}

async fn connect_quic_addr(
    plan: &Plan,
    prepared: &Prepared,
    addr: SocketAddr,
    kex: &[String],
) -> Result<sshq_quic::QuicConnection, ConnectError> {
    let other = |e: &dyn std::fmt::Display| ConnectError::Other(format!("sshq: {e}"));
    let unreachable = |source: std::io::Error| ConnectError::Connect {
        host: plan.hostname.clone(),
        port: addr.port(),
        source,
    };
    let observer = sshq_quic::kx::NegotiatedGroup::new();
    let provider =
        sshq_quic::kx::crypto_provider_observed(kex, observer.clone()).map_err(|e| other(&e))?;
    let verifier: Arc<dyn ServerKeyVerifier> = prepared.verifier.clone();
    let (tls, outcome) =
        sshq_quic::tls::client_tls_with_outcome(verifier, provider).map_err(|e| other(&e))?;
    let config = sshq_quic::tls::client_config(tls).map_err(|e| other(&e))?;
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    }
    .parse()
    .map_err(|e| other(&e))?;
    let endpoint = sshq_quic::endpoint::client_endpoint(bind).map_err(unreachable)?;
    let connecting = endpoint
        .connect_with(config, addr, "sshq")
        .map_err(|e| other(&e))?;
    let conn = match connecting.await {
        Ok(conn) => conn,
        Err(e) => {
            if outcome.host_key_rejected() {
                return Err(ConnectError::HostKeyRejected);
            }
            if let Some(kex_error) = sshq_quic::kx::explain_handshake_failure(&e, kex) {
                return Err(ConnectError::Negotiation {
                    host: plan.hostname.clone(),
                    message: kex_error.to_string(),
                });
            }
            return Err(unreachable(quic_io_error(&e)));
        }
    };
    let local = endpoint.local_addr().ok();
    let auth = sshq_quic::ClientAuth {
        user: plan.user.clone(),
        keys: prepared.keys.clone(),
    };
    let mut session = sshq_quic::client_session(conn, auth)
        .await
        .map_err(ConnectError::Transport)?;
    session.set_kex(observer.get().map(str::to_string));
    session.set_local_addr(local);
    session.set_endpoint(endpoint);
    Ok(session)
}

/// A QUIC connection failure in the words ssh uses for TCP ones.
fn quic_io_error(e: &sshq_quic::quinn::ConnectionError) -> std::io::Error {
    use std::io::{Error, ErrorKind};
    match e {
        sshq_quic::quinn::ConnectionError::TimedOut => {
            Error::new(ErrorKind::TimedOut, "Connection timed out (no QUIC answer)")
        }
        other => Error::other(other.to_string()),
    }
}

/// Host-key checks one at a time: when Transport=auto races both
/// transports, the second check then sees what the first recorded, and
/// the user is never asked twice.
struct SerializedVerifier {
    inner: hostkeys::Verifier,
    lock: std::sync::Mutex<()>,
}

impl ServerKeyVerifier for SerializedVerifier {
    fn verify(&self, key: &PublicKey) -> bool {
        let _one_at_a_time = self.lock.lock();
        self.inner.verify(key)
    }
}

/// A QUIC client's login outcome as ssh reports it.
pub fn quic_auth_error(plan: &Plan, outcome: sshq_quic::AuthOutcome) -> ConnectError {
    match outcome {
        sshq_quic::AuthOutcome::Refused { methods } => ConnectError::PermissionDenied {
            user: plan.user.clone(),
            host: plan.hostname.clone(),
            methods,
        },
        sshq_quic::AuthOutcome::Failed(why) => {
            ConnectError::Transport(TransportError::ConnectionClosed(Some(why)))
        }
    }
}
