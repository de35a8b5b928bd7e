//! Reaching the server: over TCP, over QUIC, or both raced (Transport=auto).
//!
//! Auto starts QUIC first; if no QUIC handshake has completed after
//! QuicFallbackTimeout (or QUIC cannot get through at once), TCP starts too,
//! and the first transport to finish its handshake wins, in the manner of
//! Happy Eyeballs (RFC 8305). The other attempt is dropped.
//!
//! Auto is not a downgrade path: TCP is only used when QUIC did not get
//! through (no answer, refused before TLS, a server that does not speak
//! sshq over QUIC), never after a QUIC peer answered and failed
//! authentication or was refused by us (see
//! [`sshq_quic::tls::HandshakeFailure::allows_fallback`]); that ends the
//! attempt with the reason, whatever TCP is doing meanwhile.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sshq_core::auth::{ServerKeyVerifier, UserKey};
use sshq_core::error::{ConnectError, TransportError};
use sshq_core::ssh_key::PublicKey;

use sshq_quic::client::{ClientEndpoint, ConnectFailure, ConnectParams};
use sshq_quic::relay::Tunnel;
use sshq_quic::tls::HandshakeFailure;

use sshq_core::auth_methods::ClientAuthOptions;

use super::auth::{self, Prompts};
use super::config::Transport;
use super::error::{Program, SetupError};
pub use super::route::{AnyConnection, Route};
use super::{hostkeys, identity, Plan};

/// How long Transport=auto gives QUIC before starting TCP as well.
pub const DEFAULT_QUIC_FALLBACK: Duration = Duration::from_millis(300);

/// What both transports need, prepared once.
struct Prepared {
    keys: Vec<Arc<dyn UserKey>>,
    /// The order of methods, and who answers prompts (one prompter for
    /// both transports of a race, so their prompts never overlap).
    auth_options: ClientAuthOptions,
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
/// `prompts` says whether the login may ask the user for passwords.
pub async fn connect(
    plan: &Plan,
    route: Route<'_>,
    prompts: Prompts,
) -> Result<AnyConnection, ConnectError> {
    let proxy_command = match (route, plan.options.proxy_command.as_deref()) {
        (Route::Direct, Some(command)) if command != "none" => {
            Some(super::proxy_command::expand(command, plan))
        }
        _ => None,
    };
    let route = match &proxy_command {
        Some(command) => Route::Command(command),
        None => route,
    };
    let verifier = hostkeys::Verifier::new(plan);
    let known_types = verifier.known_key_types();
    // PubkeyAuthentication=no (or a PreferredAuthentications without
    // publickey): no key is read, so no passphrase is asked for.
    let keys = if auth::uses_keys(&plan.options) {
        identity::collect_keys(&identity::IdentityOptions {
            files: plan.options.identity_files.clone(),
            certificate_files: plan.options.certificate_files.clone(),
            identities_only: plan.options.identities_only.unwrap_or(false),
            batch_mode: plan.options.batch_mode.unwrap_or(false),
            quiet: plan.quiet,
        })
        .await
    } else {
        Vec::new()
    };
    let prepared = Prepared {
        known_types,
        keys,
        auth_options: auth::client_auth_options(plan, prompts),
        verifier: Arc::new(SerializedVerifier {
            inner: verifier,
            judged: std::sync::Mutex::new(None),
        }),
    };
    let attempt = async {
        match plan.options.transport.unwrap_or(Transport::Auto) {
            Transport::Tcp => {
                tracing::debug!("Transport=tcp: connecting over TCP");
                connect_tcp(plan, &prepared, route)
                    .await
                    .map(AnyConnection::Tcp)
            }
            Transport::Quic => {
                tracing::debug!("Transport=quic: connecting over QUIC");
                connect_quic(plan, &prepared, route)
                    .await
                    .map(AnyConnection::Quic)
                    .map_err(QuicFailure::into_error)
            }
            Transport::Auto => race(plan, &prepared, route).await,
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
async fn race(
    plan: &Plan,
    prepared: &Prepared,
    route: Route<'_>,
) -> Result<AnyConnection, ConnectError> {
    if prepared.quic_identity_unknown() {
        tracing::debug!(
            "Transport=auto: known_hosts has no Ed25519 key for this host (only {}), which QUIC needs; using TCP",
            prepared.known_types.join(", ")
        );
        return connect_tcp(plan, prepared, route)
            .await
            .map(AnyConnection::Tcp);
    }
    // A KexAlgorithms list with nothing QUIC can do (e.g. only
    // diffie-hellman-*) is a configuration, not a failure to fall back from:
    // TCP applies the same list.
    if let Err(e) = quic_kex(plan) {
        tracing::debug!("Transport=auto: {e}; using TCP");
        return connect_tcp(plan, prepared, route)
            .await
            .map(AnyConnection::Tcp);
    }
    if let Route::Command(_) = route {
        tracing::debug!("Transport=auto: ProxyCommand carries one byte stream; using TCP's SSH");
        return connect_tcp(plan, prepared, route)
            .await
            .map(AnyConnection::Tcp);
    }
    let head_start = plan
        .options
        .quic_fallback_timeout
        .unwrap_or(DEFAULT_QUIC_FALLBACK);
    let quic = connect_quic(plan, prepared, route);
    tokio::pin!(quic);
    // QUIC alone during its head start.
    let quic_failure = tokio::select! {
        result = &mut quic => match result {
            Ok(conn) => {
                tracing::debug!("Transport=auto: QUIC handshake completed first; using QUIC");
                return Ok(AnyConnection::Quic(conn));
            }
            Err(failure) => Some(failure.fallback_reason()?),
        },
        () = tokio::time::sleep(head_start) => None,
    };
    let tcp = connect_tcp(plan, prepared, route);
    tokio::pin!(tcp);
    match quic_failure {
        Some(why) => {
            tracing::debug!("Transport=auto: QUIC did not get through ({why}); using TCP");
            return tcp.await.map(AnyConnection::Tcp);
        }
        None => tracing::debug!(
            "Transport=auto: no QUIC handshake within {} ms (QuicFallbackTimeout); trying TCP as well",
            head_start.as_millis()
        ),
    }
    tokio::select! {
        result = &mut quic => match result {
            Ok(conn) => {
                tracing::debug!("Transport=auto: QUIC won the race");
                Ok(AnyConnection::Quic(conn))
            }
            Err(failure) => {
                let why = failure.fallback_reason()?;
                tracing::debug!("Transport=auto: QUIC did not get through ({why}); waiting for TCP");
                tcp.await.map(AnyConnection::Tcp)
            }
        },
        result = &mut tcp => {
            if result.is_ok() {
                tracing::debug!(
                    "Transport=auto: TCP won the race (QUIC had not answered); using TCP"
                );
            }
            result.map(AnyConnection::Tcp)
        }
    }
}

/// A failed QUIC attempt, and whether Transport=auto may use TCP after it.
#[derive(Debug)]
enum QuicFailure {
    /// QUIC did not get through to a server that could prove or disprove
    /// anything (`why`, for -v): TCP may be tried.
    NotThrough { why: String, error: ConnectError },
    /// A QUIC server answered and failed, or a decision about it was made
    /// (host key, login, key exchange): final on every transport.
    Final(ConnectError),
}

impl QuicFailure {
    /// Why TCP may be tried, or the error that ends the attempt.
    fn fallback_reason(self) -> Result<String, ConnectError> {
        match self {
            QuicFailure::NotThrough { why, .. } => Ok(why),
            QuicFailure::Final(error) => {
                tracing::debug!("Transport=auto: not falling back to TCP after this QUIC failure");
                Err(error)
            }
        }
    }

    fn into_error(self) -> ConnectError {
        match self {
            QuicFailure::NotThrough { error, .. } | QuicFailure::Final(error) => error,
        }
    }
}

impl From<ConnectError> for QuicFailure {
    fn from(error: ConnectError) -> Self {
        QuicFailure::Final(error)
    }
}

/// Resolves the host name the way ssh reports failures.
pub(super) async fn resolve(plan: &Plan, port: u16) -> Result<Vec<SocketAddr>, ConnectError> {
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
    route: Route<'_>,
) -> Result<sshq_tcp::TcpClientConnection, ConnectError> {
    let kex = tcp_kex(plan)?;
    let params = || sshq_tcp::ClientParams {
        host: plan.hostname.clone(),
        user: plan.user.clone(),
        auth_options: prepared.auth_options.clone(),
        keys: prepared.keys.clone(),
        verifier: prepared.verifier.clone(),
        kex: kex.clone(),
        known_host_key_types: prepared.known_types.clone(),
        congestion: plan.options.congestion_control.map(crate::tcp_congestion),
        tcp_keepalive: plan.options.tcp_keepalive.unwrap_or(true),
    };
    match route {
        Route::Via(hop) => {
            // The jump host resolves the name and connects; we speak SSH
            // through it, end to end.
            let stream = super::route::open_tcp(hop, &plan.hostname, plan.port)
                .await
                .map_err(|e| jump_failed(plan, plan.port, &e))?;
            return sshq_tcp::connect_stream(stream, None, None, params()).await;
        }
        Route::Command(command) => {
            let stream = super::proxy_command::spawn(command).map_err(|source| {
                SetupError::ProxyCommand {
                    command: command.to_string(),
                    source,
                }
            })?;
            return sshq_tcp::connect_stream(stream, None, None, params()).await;
        }
        Route::Direct => {}
    }
    let mut last_error = None;
    for addr in resolve(plan, plan.port).await? {
        match sshq_tcp::connect_tcp(addr, params()).await {
            Ok(conn) => return Ok(conn),
            // Only a failure to reach this address moves on to the next one.
            Err(e @ ConnectError::Connect { .. }) => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or(SetupError::NoAddress.into()))
}

async fn connect_quic(
    plan: &Plan,
    prepared: &Prepared,
    route: Route<'_>,
) -> Result<sshq_quic::QuicConnection, QuicFailure> {
    if prepared.quic_identity_unknown() {
        return Err(QuicFailure::Final(
            SetupError::NoEd25519HostKey {
                program: Program::Sshq,
                host: plan.hostname.clone(),
                known_types: prepared.known_types.clone(),
            }
            .into(),
        ));
    }
    let port = plan.options.quic_port.unwrap_or(plan.port);
    let params = quic_params(plan, prepared.verifier.clone())?;
    if let Route::Command(_) = route {
        return Err(QuicFailure::Final(SetupError::ProxyCommandOverQuic.into()));
    }
    if let Route::Via(hop) = route {
        // A jump host that will not relay UDP (not sshqd, or not allowed)
        // says nothing about the destination: TCP through it may be tried.
        let stream = super::route::open_udp_relay(hop, &plan.hostname, port)
            .await
            .map_err(|e| QuicFailure::NotThrough {
                why: format!("the jump host did not relay UDP: {e}"),
                error: jump_failed(plan, port, &e),
            })?;
        // The jump host resolves the name; QUIC needs an address only as
        // a label for its one path.
        let label = plan
            .hostname
            .parse::<std::net::IpAddr>()
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        let label = SocketAddr::new(label, port);
        let endpoint = ClientEndpoint::over_stream(stream, label)
            .map_err(|e| ConnectError::from(SetupError::QuicSetup(Box::new(e))))?;
        return connect_quic_on(plan, prepared, endpoint, label, &params).await;
    }
    let mut last_failure = None;
    for addr in resolve(plan, port).await? {
        let endpoint = match endpoint_for(plan, addr) {
            Ok(endpoint) => endpoint,
            Err(error) => {
                let why = format!("no UDP socket for {addr}: {error}");
                last_failure = Some(QuicFailure::NotThrough { why, error });
                continue;
            }
        };
        match connect_quic_on(plan, prepared, endpoint, addr, &params).await {
            Ok(conn) => return Ok(conn),
            // Only a failure to get through moves on to the next address.
            Err(failure @ QuicFailure::NotThrough { .. }) => last_failure = Some(failure),
            Err(failure) => return Err(failure),
        }
    }
    Err(last_failure.unwrap_or(QuicFailure::Final(SetupError::NoAddress.into())))
}

/// A client UDP endpoint to reach `addr` from (any local address of its family).
pub(super) fn endpoint_for(plan: &Plan, addr: SocketAddr) -> Result<ClientEndpoint, ConnectError> {
    ClientEndpoint::for_peer(addr).map_err(|source| ConnectError::Connect {
        host: plan.hostname.clone(),
        port: addr.port(),
        source,
    })
}

/// One QUIC handshake and login on `endpoint`, to `addr`.
async fn connect_quic_on(
    plan: &Plan,
    prepared: &Prepared,
    endpoint: ClientEndpoint,
    addr: SocketAddr,
    params: &ConnectParams,
) -> Result<sshq_quic::QuicConnection, QuicFailure> {
    // ssh names the HostName connected to in its prompts and in
    // "Permission denied" ("user@host's password: ").
    let auth = sshq_quic::ClientAuth {
        host: plan.hostname.clone(),
        user: plan.user.clone(),
        auth_options: prepared.auth_options.clone(),
        keys: prepared.keys.clone(),
    };
    endpoint
        .connect_session(addr, params, auth)
        .await
        .map_err(|failure| sort_failure(plan, addr.port(), failure, Protocol::Session))
}

/// The QUIC connection parameters `plan` asks for, the host key checked by
/// `verifier`.
pub(super) fn quic_params(
    plan: &Plan,
    verifier: Arc<dyn ServerKeyVerifier>,
) -> Result<ConnectParams, ConnectError> {
    Ok(ConnectParams {
        verifier,
        kex: quic_kex(plan)?,
        congestion_control: plan.options.congestion_control,
        liveness: plan.options.quic_liveness(),
        channel_mapping: match plan.options.one_stream_baseline {
            Some(true) => sshq_quic::one_stream::ChannelMapping::OneStream,
            _ => sshq_quic::one_stream::ChannelMapping::StreamPerChannel,
        },
    })
}

/// The TCP key exchanges to offer: KexAlgorithms (one list for both
/// transports, see sshq_core::kex), or None for the default.
fn tcp_kex(plan: &Plan) -> Result<Option<Vec<String>>, ConnectError> {
    let Some(spec) = &plan.options.kex_algorithms else {
        return Ok(None);
    };
    let names = sshq_core::kex::resolve(
        Some(spec),
        sshq_core::transport::TransportKind::Tcp,
        sshq_core::kex::Role::Client,
    )
    .map_err(|e| SetupError::KexAlgorithms(Box::new(e)))?;
    Ok(Some(names.into_iter().map(str::to_owned).collect()))
}

/// The QUIC key-exchange groups to offer: KexAlgorithms, or the default.
pub(super) fn quic_kex(plan: &Plan) -> Result<Vec<String>, ConnectError> {
    match &plan.options.kex_algorithms {
        Some(spec) => sshq_quic::kx::parse_kex_list(spec)
            .map_err(|e| SetupError::KexAlgorithms(Box::new(e)).into()),
        None => Ok(sshq_quic::kx::DEFAULT_KEX
            .iter()
            .map(|s| s.to_string())
            .collect()),
    }
}

/// What a QUIC connection is for: the ALPN it asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// `sshq/1`: an SSH session.
    Session,
    /// `sshq-tunnel/1`: `sshq proxy`'s tunnel.
    Tunnel,
}

/// A QUIC handshake to `addr` on `endpoint` asking for a tunnel
/// (`sshq proxy`), the server's host key checked as `params` say. Returns
/// the tunnel and the name of the key-exchange group it used.
pub(super) async fn quic_tunnel(
    plan: &Plan,
    endpoint: ClientEndpoint,
    addr: SocketAddr,
    params: &ConnectParams,
) -> Result<(Tunnel, Option<&'static str>), ConnectError> {
    endpoint
        .connect_tunnel(addr, params)
        .await
        .map_err(|failure| sort_failure(plan, addr.port(), failure, Protocol::Tunnel).into_error())
}

/// A failed QUIC attempt in ssh's words, sorted for Transport=auto.
fn sort_failure(
    plan: &Plan,
    port: u16,
    failure: ConnectFailure,
    protocol: Protocol,
) -> QuicFailure {
    let failure = match failure {
        ConnectFailure::Handshake(failure) => failure,
        ConnectFailure::Session(e) => return QuicFailure::Final(ConnectError::Transport(e)),
        setup @ (ConnectFailure::Kex(_) | ConnectFailure::Tls(_) | ConnectFailure::Start(_)) => {
            return QuicFailure::Final(SetupError::QuicSetup(Box::new(setup)).into())
        }
    };
    let reason = failure.to_string();
    let connect_error = |source: std::io::Error| ConnectError::Connect {
        host: plan.hostname.clone(),
        port,
        source,
    };
    let error = match &failure {
        HandshakeFailure::HostKeyRejected => ConnectError::HostKeyRejected,
        HandshakeFailure::NoCommonGroup(kex_error) => ConnectError::Negotiation {
            host: plan.hostname.clone(),
            message: kex_error.to_string(),
        },
        HandshakeFailure::ProtocolRefused => SetupError::AlpnRefused {
            host: plan.hostname.clone(),
            port,
            alpn: match protocol {
                Protocol::Tunnel => sshq_quic::tunnel::TUNNEL_ALPN.to_vec(),
                Protocol::Session => sshq_quic::tls::ALPN.to_vec(),
            },
        }
        .into(),
        HandshakeFailure::TimedOut => connect_error(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "Connection timed out (no QUIC answer)",
        )),
        HandshakeFailure::Unreachable(why) => connect_error(std::io::Error::other(why.clone())),
        HandshakeFailure::AuthenticityFailed(why) => SetupError::QuicAuthenticity {
            host: plan.hostname.clone(),
            port,
            why: why.clone(),
        }
        .into(),
        HandshakeFailure::PeerRejected(why) => SetupError::QuicHandshake {
            host: plan.hostname.clone(),
            port,
            why: why.clone(),
        }
        .into(),
    };
    if failure.allows_fallback() {
        QuicFailure::NotThrough { why: reason, error }
    } else {
        QuicFailure::Final(error)
    }
}

/// A jump host could not take us on to `plan`'s host: ssh's words for a
/// failed connection, naming the jump host's reason.
fn jump_failed(plan: &Plan, port: u16, why: &dyn std::fmt::Display) -> ConnectError {
    ConnectError::Connect {
        host: plan.hostname.clone(),
        port,
        source: std::io::Error::other(format!("through the jump host: {why}")),
    }
}

/// Waits for a QUIC connection's login, which runs pipelined with its first
/// requests; a TCP connection is logged in once connected.
pub async fn logged_in(conn: AnyConnection, plan: &Plan) -> Result<AnyConnection, ConnectError> {
    match conn {
        AnyConnection::Quic(quic) => match quic.authenticated().await {
            Ok(()) => Ok(AnyConnection::Quic(quic)),
            Err(outcome) => Err(quic_auth_error(plan, outcome)),
        },
        tcp => Ok(tcp),
    }
}

/// Host-key checks one at a time: when Transport=auto races both
/// transports, the second check of the same key or certificate gets the
/// first one's answer without a second transcript, so the user is never
/// asked twice nor shown a changed-key warning twice.
struct SerializedVerifier {
    inner: hostkeys::Verifier,
    /// The last key or certificate judged (a certificate as
    /// `KeyData::Certificate`, so it never passes for its plain key), and
    /// the answer.
    judged: std::sync::Mutex<Option<(sshq_core::ssh_key::public::KeyData, bool)>>,
}

impl SerializedVerifier {
    /// The cached answer for `seen`, or `judge`'s, remembered.
    fn judge_once(
        &self,
        seen: sshq_core::ssh_key::public::KeyData,
        judge: impl FnOnce() -> bool,
    ) -> bool {
        // The value is a plain cache, consistent even if a holder panicked.
        let mut judged = self
            .judged
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((last, answer)) = judged.as_ref() {
            if *last == seen {
                return *answer;
            }
        }
        let answer = judge();
        *judged = Some((seen, answer));
        answer
    }
}

impl ServerKeyVerifier for SerializedVerifier {
    fn verify(&self, key: &PublicKey) -> bool {
        self.judge_once(key.key_data().clone(), || self.inner.verify(key))
    }

    fn trusts_host_certificates(&self) -> bool {
        self.inner.trusts_host_certificates()
    }

    fn wants_certificate(&self, key: &PublicKey) -> bool {
        self.inner.wants_certificate(key)
    }

    fn verify_certificate(&self, certificate: &sshq_core::ssh_key::Certificate) -> bool {
        let seen = sshq_core::ssh_key::public::KeyData::from(certificate.clone());
        self.judge_once(seen, || self.inner.verify_certificate(certificate))
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
