//! The `sshqd` server: sshd's command line and configuration, serving every
//! transport with the same session code.

pub mod admission;
pub mod agent;
pub mod auth;
pub mod blocking;
pub mod config;
pub mod context;
pub mod forwarding;
pub mod lifecycle;
pub mod limits;
pub mod logging;
pub mod pam_session;
pub mod prepare;
pub mod process;
pub mod reattach;
pub mod relay;
pub mod session;
pub mod sftp;
pub mod startup;
pub mod trim;
pub mod udp_relay;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{ArgAction, Parser};
use sshq_core::log_escape;
use sshq_core::ssh_key::{Algorithm, PrivateKey};
use sshq_core::transport::Connection;
use sshq_quic::server::{ListenerConfig, ServerEndpoint, ServerSettings, ServerSetupError};
use tokio::net::TcpListener;

use admission::gate::{Gate, REFUSAL_BANNER};
use admission::Ending;
use auth::{KeyPolicy, RootLogin};
use config::ServerConfig;
pub use logging::init_logging;
pub use prepare::{prepare, HostKeyError, PrepareError};

/// sshqd: the sshq server. Flags follow OpenSSH's sshd(8).
#[derive(Debug, Parser)]
#[command(name = "sshqd", version, disable_help_flag = true)]
pub struct Cli {
    /// Do not detach; stay in the foreground.
    #[arg(short = 'D')]
    pub foreground: bool,
    /// Debug mode: foreground, verbose logs to stderr.
    #[arg(short = 'd', action = ArgAction::Count)]
    pub debug: u8,
    /// Write logs to standard error.
    #[arg(short = 'e')]
    pub log_stderr: bool,
    /// Configuration file (default /etc/ssh/sshqd_config).
    #[arg(short = 'f', value_name = "config_file")]
    pub config_file: Option<PathBuf>,
    /// Port to listen on; may be repeated.
    #[arg(short = 'p', action = ArgAction::Append, value_name = "port")]
    pub ports: Vec<u16>,
    /// Host key file; may be repeated.
    #[arg(short = 'h', action = ArgAction::Append, value_name = "host_key_file")]
    pub host_keys: Vec<PathBuf>,
    /// Options in sshd_config format; may be repeated.
    #[arg(short = 'o', action = ArgAction::Append, value_name = "option")]
    pub options: Vec<String>,
    /// Test mode: check the configuration and keys, then exit.
    #[arg(short = 't')]
    pub test: bool,
    /// Print help.
    #[arg(long = "help", action = ArgAction::Help)]
    pub help: Option<bool>,
}

/// The default configuration file, beside sshd's.
pub const DEFAULT_CONFIG: &str = "/etc/ssh/sshqd_config";

/// Why sshqd could not start serving, in sshd's words where sshd has them.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("sshqd: Bind to port {} on {} failed: {source}.", .addr.port(), .addr.ip())]
    BindTcp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("sshqd: Bind to UDP port {} on {} failed: {source}.", .addr.port(), .addr.ip())]
    BindUdp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// KexAlgorithms names TCP key exchanges that sshq knows but the TCP
    /// transport lacks.
    #[error("sshqd: KexAlgorithms: {0}")]
    TcpKexUnsupported(UnsupportedTcpKex),
    /// KexAlgorithms leaves TCP nothing while TCP is served.
    #[error("sshqd: KexAlgorithms: {0}; use Transports quic to serve only QUIC")]
    TcpKexList(sshq_core::kex::KexListError),
    /// KexAlgorithms leaves QUIC nothing (or names what it cannot do).
    #[error("sshqd: KexAlgorithms: {0}; use Transports tcp to serve only TCP")]
    QuicKexList(sshq_quic::kx::KexError),
    #[error("sshqd: QUIC needs an Ed25519 host key")]
    NoQuicHostKey,
    /// The QUIC configuration could not be built from the key-exchange list.
    #[error("sshqd: KexAlgorithms: {0}")]
    QuicKex(sshq_quic::kx::KexError),
    /// The QUIC configuration could not be built from the host key.
    #[error("sshqd: {0}")]
    QuicTls(sshq_quic::tls::TlsError),
    #[error("sshqd: no transport to serve (Transports is empty)")]
    NoTransport,
}

/// The key exchanges of a resolved TCP list that the TCP transport does
/// not implement, in the list's order (names from `sshq_core::kex`'s table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedTcpKex(pub Vec<&'static str>);

impl UnsupportedTcpKex {
    /// The names of `names` that the TCP transport refuses.
    fn among(names: &[&'static str]) -> UnsupportedTcpKex {
        UnsupportedTcpKex(
            names
                .iter()
                .copied()
                .filter(|name| sshq_tcp::KexList::new(&[name]).is_err())
                .collect(),
        )
    }
}

impl std::fmt::Display for UnsupportedTcpKex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let quoted: Vec<String> = self.0.iter().map(|name| format!("'{name}'")).collect();
        match quoted.as_slice() {
            [one] => write!(f, "key exchange algorithm {one} is not supported over TCP"),
            many => write!(
                f,
                "key exchange algorithms {} are not supported over TCP",
                many.join(", ")
            ),
        }
    }
}

impl From<ServerSetupError> for ServeError {
    fn from(error: ServerSetupError) -> Self {
        match error {
            ServerSetupError::Kex(e) => ServeError::QuicKex(e),
            ServerSetupError::Tls(e) => ServeError::QuicTls(e),
        }
    }
}

/// Runs the server until SIGTERM or SIGINT (see [`lifecycle`]); SIGHUP
/// reloads the configuration from `args` (sshqd's command line).
pub async fn serve(
    config: ServerConfig,
    host_keys: Vec<PrivateKey>,
    args: Vec<String>,
) -> Result<(), ServeError> {
    let config = Arc::new(config);
    for note in config.authentication_notes() {
        tracing::warn!("{note}");
    }
    let host_certificates =
        prepare::load_host_certificates(&config.identity.host_certificates, &host_keys);
    // draft §5.5: the certificate of the Ed25519 key TLS presents, for QUIC clients that ask
    let quic_key = host_keys
        .iter()
        .find(|key| matches!(key.algorithm(), Algorithm::Ed25519))
        .map(|key| key.public_key().key_data().clone());
    let quic_host_certificate = host_certificates
        .iter()
        .find(|certificate| Some(certificate.public_key()) == quic_key.as_ref())
        .and_then(|certificate| certificate.to_bytes().ok())
        .map(bytes::Bytes::from)
        .unwrap_or_default();
    let tcp_params = Arc::new(sshq_tcp::ServerParams {
        host_keys,
        host_certificates,
        policy: Arc::new(key_policy(&config)),
        login_grace_time: config.login_grace_time,
        allow_agent_forwarding: config.allow_agent_forwarding,
        client_alive_interval: config.client_alive_interval,
        client_alive_count_max: config.client_alive_count_max,
        kex: tcp_kex(&config)?,
    });
    // Sessions an earlier sshqd started are held by their holders: theirs
    // to reattach to from now on.
    reattach::prepare_directory(&config.reattach);
    // One pre-authentication accounting for every listener of both transports.
    let gate = Gate::new(config.preauth.clone());
    let mut tasks = tokio::task::JoinSet::new();
    let addrs = config.listen_addrs();
    if config.transports.tcp {
        for &addr in &addrs {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::BindTcp { addr, source })?;
            tracing::info!("Server listening on {} port {}.", addr.ip(), addr.port());
            tasks.spawn(accept_tcp(
                listener,
                tcp_params.clone(),
                config.clone(),
                gate.clone(),
            ));
        }
    }
    if config.quic_relay.is_some() && !config.transports.quic {
        tracing::warn!("QuicRelay is set but Transports has no quic: there is nothing to relay");
    }
    if config.transports.quic {
        let quic_config = quic_server_config(&config, &tcp_params.host_keys)?;
        let auth = Arc::new(sshq_quic::ServerAuth {
            policy: tcp_params.policy.clone(),
            login_grace_time: config.login_grace_time,
            client_alive_interval: config.client_alive_interval,
            client_alive_count_max: config.client_alive_count_max,
            channel_mapping: if config.one_stream_baseline {
                tracing::warn!(
                    "OneStreamBaseline yes: QUIC clients must carry every channel on one \
                     stream (a lab baseline); ordinary sshq clients cannot use this server"
                );
                sshq_quic::one_stream::ChannelMapping::OneStream
            } else {
                sshq_quic::one_stream::ChannelMapping::StreamPerChannel
            },
            host_certificate: quic_host_certificate,
        });
        // QuicRelay: tunnels (ALPN sshq-tunnel/1) go to this SSH server.
        let relay = config
            .quic_relay
            .clone()
            .map(|target| Arc::new(relay::Relay::new(target, config.login_grace_time)));
        if let Some(relay) = &relay {
            tracing::info!(
                "Relaying QUIC tunnels (sshq-tunnel/1) to the SSH server at {}.",
                relay.target()
            );
        }
        for &addr in &addrs {
            let endpoint = ServerEndpoint::bind(addr, &quic_config)
                .map_err(|source| ServeError::BindUdp { addr, source })?;
            tracing::info!(
                "Server listening on {} port {} (QUIC).",
                addr.ip(),
                addr.port()
            );
            tasks.spawn(accept_quic(
                endpoint,
                auth.clone(),
                relay.clone(),
                config.clone(),
                gate.clone(),
            ));
        }
    }
    if tasks.is_empty() {
        return Err(ServeError::NoTransport);
    }
    tokio::select! {
        () = async { while tasks.join_next().await.is_some() {} } => {}
        () = lifecycle::handle_signals(args) => {}
    }
    Ok(())
}

fn key_policy(config: &Arc<ServerConfig>) -> KeyPolicy {
    let mut policy = global_key_policy(config);
    if !config.matches.is_empty() {
        let base = config.clone();
        policy.matched = Some(Box::new(move |facts| {
            let matched = base.for_connection(facts);
            matched
                .ok()
                .map(|config| global_key_policy(&Arc::new(config)))
        }));
    }
    policy
}

/// The key policy of `config`'s settings, its `Match` blocks aside.
fn global_key_policy(config: &Arc<ServerConfig>) -> KeyPolicy {
    let keys_config = config.clone();
    KeyPolicy {
        pubkey_authentication: config.pubkey_authentication,
        root_login: match config.permit_root_login {
            config::PermitRootLogin::Yes | config::PermitRootLogin::ProhibitPassword => {
                RootLogin::Allowed
            }
            config::PermitRootLogin::ForcedCommandsOnly => RootLogin::ForcedCommandsOnly,
            config::PermitRootLogin::No => RootLogin::No,
        },
        max_auth_tries: config.max_auth_tries,
        authorized_keys: Box::new(move |user, home| keys_config.authorized_keys_files(user, home)),
        strict_modes: config.strict_modes,
        trusted_user_ca_keys: config.identity.trusted_user_ca_keys.clone(),
        principals_file: {
            let identity = config.identity.clone();
            Box::new(move |user, home| identity.principals_file(user, home))
        },
        revoked_keys: config.identity.revoked_keys.clone(),
        login_methods: auth::LoginMethods::from_config(config),
        lookups: auth::keys_command::LoginLookups::from_config(&config.login_sources),
        matched: None,
    }
}

/// The TCP key exchanges: KexAlgorithms (one list for both transports, see
/// sshq_core::kex) or the server default. Checked even when TCP is not
/// served, so a policy is never half applied; a list leaving TCP nothing
/// is an error when TCP is served.
fn tcp_kex(config: &ServerConfig) -> Result<sshq_tcp::KexList, ServeError> {
    let Some(spec) = &config.kex_algorithms else {
        return Ok(sshq_tcp::KexList::server_default());
    };
    use sshq_core::kex::{resolve, KexListError, Role};
    use sshq_core::transport::TransportKind;
    match resolve(Some(spec), TransportKind::Tcp, Role::Server) {
        Ok(names) => sshq_tcp::KexList::new(&names)
            .map_err(|_| ServeError::TcpKexUnsupported(UnsupportedTcpKex::among(&names))),
        // Not serving TCP: nothing to offer there is fine.
        Err(KexListError::NothingLeft { .. }) if !config.transports.tcp => {
            Ok(sshq_tcp::KexList::server_default())
        }
        Err(e) => Err(ServeError::TcpKexList(e)),
    }
}

/// The QUIC side of the server: the Ed25519 host key as TLS identity, the
/// configured (or default) key-exchange groups.
fn quic_server_config(
    config: &ServerConfig,
    host_keys: &[PrivateKey],
) -> Result<ListenerConfig, ServeError> {
    let host_key = host_keys
        .iter()
        .find(|k| matches!(k.algorithm(), Algorithm::Ed25519))
        .ok_or(ServeError::NoQuicHostKey)?;
    let kex = match &config.kex_algorithms {
        Some(spec) => sshq_quic::kx::parse_kex_list(spec).map_err(ServeError::QuicKexList)?,
        None => sshq_quic::kx::DEFAULT_KEX
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let settings = ServerSettings {
        host_key,
        kex: &kex,
        // Only a relaying server accepts tunnels; others refuse them in the
        // handshake (no_application_protocol), which the client explains.
        offer_tunnels: config.quic_relay.is_some(),
        congestion_control: config.congestion_control,
        liveness: config.quic_liveness,
    };
    Ok(ListenerConfig::new(&settings)?)
}

async fn accept_quic(
    endpoint: ServerEndpoint,
    auth: Arc<sshq_quic::ServerAuth>,
    relay: Option<Arc<relay::Relay>>,
    config: Arc<ServerConfig>,
    gate: Arc<Gate>,
) {
    let local = endpoint.local_addr();
    while let Some(incoming) = endpoint.accept().await {
        // A shutting-down sshqd lets nobody new in: a client would only be
        // dropped again (a reattaching one tries the next sshqd). The
        // endpoint itself stays, for the connections' closes to go out.
        if lifecycle::is_shutting_down() {
            incoming.refuse();
            continue;
        }
        let peer = incoming.remote_address();
        // Under load, a client must first prove it receives at its address
        // (Retry, one round trip, no key-exchange work for us), so spoofed
        // sources take no slot and earn no penalty for someone else.
        if gate.wants_address_validation()
            && !incoming.remote_address_validated()
            && incoming.may_retry()
        {
            incoming.retry();
            continue;
        }
        let Some(mut permit) = gate.admit(peer, local) else {
            incoming.refuse();
            continue;
        };
        let auth = auth.clone();
        let relay = relay.clone();
        let config = config.clone();
        tokio::spawn(async move {
            // LoginGraceTime counts from before the handshake.
            let deadline = auth
                .login_grace_time
                .map(|limit| tokio::time::Instant::now() + limit);
            // The ALPN says what the client wants: a tunnel to relay (only
            // offered with QuicRelay), or an sshq/1 session to log in to.
            let accepted = match incoming.handshake(deadline).await {
                Ok(conn) => match &relay {
                    Some(relay) if conn.is_tunnel() => {
                        // The relay's target authenticates the user.
                        permit.ended(Ending::HandedOff);
                        drop(permit);
                        return relay.serve(conn.into_tunnel(), peer).await;
                    }
                    _ => conn.login(auth, deadline).await,
                },
                Err(e) => Err(e),
            };
            match accepted {
                Ok(conn) => {
                    permit.authenticated();
                    run_connection(conn, local, peer, &config).await
                }
                Err(e) => {
                    permit.ended(quic_ending(&e));
                    tracing::info!(
                        "Connection from {} port {} (QUIC): {}",
                        peer.ip(),
                        peer.port(),
                        log_escape::peer_text(&e.to_string())
                    )
                }
            }
        });
    }
}

/// How a QUIC login that failed ended, for PerSourcePenalties (refused
/// keys are counted by the permit's policy).
fn quic_ending(error: &sshq_quic::HandshakeError) -> Ending {
    match error {
        sshq_quic::HandshakeError::LoginGraceTimeExpired => Ending::GraceExceeded,
        sshq_quic::HandshakeError::TooManyFailures(_) => Ending::AuthFailed,
        _ => Ending::NoAuth,
    }
}

/// Logs the first failure to set a TCP connection's congestion controller
/// (the same would follow for every connection).
fn warn_once_about_congestion(error: &sshq_tcp::CongestionError) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| tracing::warn!("{error}; TCP connections use the system's default"));
}

async fn accept_tcp(
    listener: TcpListener,
    params: Arc<sshq_tcp::ServerParams>,
    config: Arc<ServerConfig>,
    gate: Arc<Gate>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // As for QUIC: nobody new once sshqd is shutting down.
            () = lifecycle::shutting_down() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment, keep serving.
                tracing::error!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        // TCP_NODELAY, and little unsent data in the kernel in front of a
        // keystroke's echo (sshq_tcp::tune_socket).
        if let Err(e) = sshq_tcp::tune_socket(&stream) {
            tracing::debug!("TCP socket options: {e}");
        }
        if let Err(e) = sshq_tcp::set_keepalive(&stream, config.tcp_keepalive) {
            tracing::debug!("TCPKeepAlive: {e}");
        }
        // CongestionControl applies to TCP connections too, per socket.
        if let Some(controller) = config.congestion_control.map(crate::tcp_congestion) {
            if let Err(e) = sshq_tcp::set_congestion_control(&stream, controller) {
                warn_once_about_congestion(&e);
            }
        }
        let local = stream.local_addr().ok();
        let Some(mut permit) = gate.admit(peer, local) else {
            // sshd's notice, best effort: never wait on a refused peer.
            let _ = stream.try_write(REFUSAL_BANNER);
            continue;
        };
        let params = params.clone();
        let config = config.clone();
        tokio::spawn(async move {
            match sshq_tcp::accept(stream, local, Some(peer), params).await {
                Ok(conn) => {
                    permit.authenticated();
                    run_connection(conn, local, peer, &config).await
                }
                Err(e) => {
                    if matches!(e, sshq_tcp::HandshakeError::LoginGraceTimeExpired) {
                        permit.ended(Ending::GraceExceeded);
                    }
                    tracing::info!(
                        "Connection from {} port {}: {}",
                        peer.ip(),
                        peer.port(),
                        log_escape::peer_text(&e.to_string())
                    )
                }
            }
        });
    }
}

/// The settings for a connection of `user` from `peer` to `local`: the
/// global ones, or those of the `Match` blocks it matches. `None` when
/// they cannot be applied (logged).
async fn connection_config(
    config: &Arc<ServerConfig>,
    user: &str,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) -> Option<Arc<ServerConfig>> {
    if config.matches.is_empty() {
        return Some(config.clone());
    }
    let name = user.to_string();
    let groups = move || {
        let gid = nix::unistd::User::from_name(&name)
            .ok()
            .flatten()
            .map(|user| user.gid.as_raw());
        gid.map(|gid| auth::group_names(&name, gid))
            .unwrap_or_default()
    };
    let groups = blocking::off_worker("group lookup", blocking::USER_LOOKUP_LIMIT, groups)
        .await
        .unwrap_or_default();
    let facts = config::ConnectionFacts {
        user: user.to_string(),
        groups,
        address: Some(peer.ip()),
        host: config::client_host(Some(peer.ip()), config.login_sources.use_dns).await,
        local_port: local.map(|local| local.port()),
        local_address: local.map(|local| local.ip()),
    };
    match config.for_connection(&facts) {
        Ok(matched) => Some(Arc::new(matched)),
        Err(e) => {
            tracing::error!("{e}: connection from {} refused", peer.ip());
            None
        }
    }
}

/// Serves an authenticated connection of any transport.
async fn run_connection<C: Connection>(
    conn: C,
    local: Option<SocketAddr>,
    peer: SocketAddr,
    config: &Arc<ServerConfig>,
) {
    // SIGHUP's configuration, for this connection's sessions.
    let config = &lifecycle::session_config(config);
    let info = conn.info();
    let Some(config) = &connection_config(config, &info.user, peer, local).await else {
        conn.close("configuration error").await;
        return;
    };
    let name = info.user.clone();
    let lookup = move || process::SessionUser::lookup(&name);
    let user = match blocking::off_worker("user lookup", blocking::USER_LOOKUP_LIMIT, lookup).await
    {
        Ok(Ok(Some(user))) => user,
        Ok(Ok(None)) | Ok(Err(_)) => {
            tracing::error!(
                "user {} vanished after authentication",
                log_escape::peer_text(&info.user)
            );
            conn.close("user lookup failed").await;
            return;
        }
        Err(e) => {
            tracing::error!("user {}: {e}", log_escape::peer_text(&info.user));
            conn.close("user lookup failed").await;
            return;
        }
    };
    // The options of the key's authorized_keys line, read again now. A
    // login without a key (a password, keyboard-interactive) has no line
    // and so no options: sshd's defaults, as for its password logins.
    let granted = match &info.credential {
        Some(credential) => {
            key_policy(config)
                .credential_grant(&info.user, credential, Some(peer.ip()))
                .await
        }
        None => Some(auth::KeyOptions::default()),
    };
    let Some(key_options) = granted else {
        tracing::error!(
            "{} from {}: the key they logged in with is no longer authorized \
             (or their authorized_keys could not be read again): connection closed",
            log_escape::peer_text(&info.user),
            peer.ip()
        );
        conn.close("key no longer authorized").await;
        return;
    };
    // ForceCommand wins over the key's command=, as in sshd.
    let key_options = match &config.force_command {
        Some(command) => auth::KeyOptions {
            command: Some(command.clone()),
            ..key_options
        },
        None => key_options,
    };
    // The transports log password and keyboard-interactive logins
    // themselves (they know the method); keys and certificates here.
    let method = match &info.credential {
        Some(sshq_core::auth::UserCredential::Certificate(certificate)) => Some(format!(
            "certificate ID {} (serial {})",
            log_escape::peer_text(certificate.key_id()),
            certificate.serial()
        )),
        Some(sshq_core::auth::UserCredential::Key(_)) => Some("publickey".to_string()),
        None => None,
    };
    if let Some(method) = method {
        tracing::info!(
            "Accepted {method} for {} from {} port {} over {}",
            log_escape::peer_text(&info.user),
            peer.ip(),
            peer.port(),
            info.transport
        );
    }
    let (local_ip, local_port) = local
        .map(|a| (a.ip().to_string(), a.port()))
        .unwrap_or_else(|| ("0.0.0.0".to_string(), 0));
    let ctx = Arc::new(context::SessionContext {
        user,
        ssh_connection: format!("{} {} {} {}", peer.ip(), peer.port(), local_ip, local_port),
        subsystems: config.subsystems.clone(),
        accept_env: config.accept_env.clone(),
        // Every log line about the session starts with this: the user
        // name in it is escaped once, here.
        peer: format!(
            "{}@{}:{}",
            log_escape::peer_text(&info.user),
            peer.ip(),
            peer.port()
        ),
        forwarding: context::ForwardingPolicy::from_config(config).restricted_by(&key_options),
        limits: limits::ConnectionLimits::new(config.max_sessions),
        reattach: config.reattach.clone(),
        key_options,
        pam_service: config.use_pam.then(|| config.pam_service_name.clone()),
        permit_user_environment: config.login_sources.permit_user_environment.clone(),
        chroot_directory: config.chroot_directory.clone(),
    });
    let conn = Arc::new(conn);
    tokio::select! {
        () = session::serve(conn.clone(), ctx) => {}
        () = lifecycle::shutting_down() => conn.close(lifecycle::SHUTDOWN_REASON).await,
    }
    tracing::info!(
        "Disconnected from user {} {} port {}",
        log_escape::peer_text(&info.user),
        peer.ip(),
        peer.port()
    );
    trim::connection_ended();
}

#[cfg(test)]
mod tests {
    use super::UnsupportedTcpKex;

    #[test]
    fn unsupported_tcp_kex_names_every_algorithm() {
        let one = UnsupportedTcpKex(vec!["a-kex"]);
        assert_eq!(
            one.to_string(),
            "key exchange algorithm 'a-kex' is not supported over TCP"
        );
        let two = UnsupportedTcpKex(vec!["a-kex", "b-kex"]);
        assert_eq!(
            two.to_string(),
            "key exchange algorithms 'a-kex', 'b-kex' are not supported over TCP"
        );
        // Every name sshq_core lists for TCP is one russh implements.
        let tcp = sshq_core::kex::transport_names(sshq_core::transport::TransportKind::Tcp);
        assert_eq!(UnsupportedTcpKex::among(&tcp), UnsupportedTcpKex(vec![]));
    }
}
