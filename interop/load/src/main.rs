//! The load generator of `interop/run load` (driven by interop/load.py).
//!
//! `sshq-load logins` starts N logins at once (SSH over TCP with russh, or
//! sshq/1 over QUIC with sshq-quic), keeps every connection that logged in
//! open until all have finished, and prints one JSON object: how long the
//! whole batch took, per-login latencies, and failures grouped by reason.
//!
//! `sshq-load flood` opens N silent pre-authentication connections from a
//! chosen source address (TCP: connected, nothing sent; QUIC: handshake
//! done, no stream opened), prints one JSON line once they are up, and
//! holds them until its standard input closes or `--seconds` pass.
//!
//! `sshq-load idle` holds N idle pty shells open (see [`idle`]).
//!
//! Loopback benchmarking only: host keys are not checked.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use sshq_core::auth::{FileKey, ServerKeyVerifier, UserKey};
use sshq_core::ssh_key::{PrivateKey, PublicKey};
use sshq_quic::client::{ClientEndpoint, ConnectParams};
use sshq_quic::danger::{connect_silent, SilentConnection};
use sshq_quic::kx;

mod idle;

#[derive(Parser)]
#[command(
    name = "sshq-load",
    about = "Concurrent logins and pre-auth floods against an SSH server on loopback"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Transport {
    Tcp,
    Quic,
}

/// Who logs in where, and how many times: shared by `logins` and `idle`.
#[derive(clap::Args)]
pub(crate) struct Target {
    #[arg(long, value_enum)]
    pub(crate) transport: Transport,
    #[arg(long)]
    pub(crate) port: u16,
    #[arg(long, default_value_t = 1000)]
    pub(crate) count: usize,
    #[arg(long)]
    pub(crate) user: String,
    /// The user's private key (OpenSSH format, no passphrase).
    #[arg(long)]
    pub(crate) key: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// N logins at once; prints a JSON summary.
    Logins {
        #[command(flatten)]
        target: Target,
        /// Give up on one login after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// N silent pre-auth connections from `--source`, held open.
    Flood {
        #[arg(long, value_enum)]
        transport: Transport,
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 400)]
        count: usize,
        #[arg(long, default_value = "127.0.0.2")]
        source: std::net::Ipv4Addr,
        /// Hold at most this long (stdin closing ends it sooner).
        #[arg(long, default_value_t = 120)]
        seconds: u64,
    },
    /// N idle pty shells, held open until stdin closes; prints a JSON line
    /// once they are up and another at the end.
    Idle {
        #[command(flatten)]
        target: Target,
        /// Logins in flight at once.
        #[arg(long, default_value_t = 8)]
        parallel: usize,
        /// Give up on one session after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Hold at most this long (stdin closing ends it sooner).
        #[arg(long, default_value_t = 3600)]
        seconds: u64,
    },
}

/// Benchmark only: every host key is accepted.
struct AnyHostKey;

impl ServerKeyVerifier for AnyHostKey {
    fn verify(&self, _key: &PublicKey) -> bool {
        true
    }
}

impl russh::client::Handler for AnyHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// What one login leaves behind while the batch runs: the open connection.
enum Held {
    Tcp(#[allow(dead_code)] russh::client::Handle<AnyHostKey>),
    Quic(#[allow(dead_code)] Box<sshq_quic::QuicConnection>),
}

/// Any host key, the default key exchanges, the default congestion control.
fn quic_params() -> ConnectParams {
    ConnectParams {
        verifier: Arc::new(AnyHostKey),
        kex: kx::DEFAULT_KEX
            .iter()
            .map(|name| name.to_string())
            .collect(),
        congestion_control: None,
        liveness: sshq_quic::tls::Liveness::CLIENT,
        channel_mapping: Default::default(),
    }
}

/// `count` client endpoints on `source`, for QUIC (none for TCP).
fn quic_endpoints(
    transport: Transport,
    count: usize,
    source: std::net::Ipv4Addr,
) -> Result<Vec<ClientEndpoint>, String> {
    if transport != Transport::Quic {
        return Ok(Vec::new());
    }
    (0..count)
        .map(|_| ClientEndpoint::bind(SocketAddr::from((source, 0))))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

async fn tcp_login(port: u16, user: &str, key: Arc<PrivateKey>) -> Result<Held, String> {
    let config = Arc::new(russh::client::Config::default());
    let mut handle = russh::client::connect(config, ("127.0.0.1", port), AnyHostKey)
        .await
        .map_err(|e| e.to_string())?;
    let key = russh::keys::PrivateKeyWithHashAlg::new(key, None);
    let result = handle
        .authenticate_publickey(user, key)
        .await
        .map_err(|e| e.to_string())?;
    if !result.success() {
        return Err("publickey refused".to_string());
    }
    Ok(Held::Tcp(handle))
}

async fn quic_login(
    endpoint: ClientEndpoint,
    params: &ConnectParams,
    port: u16,
    user: &str,
    key: Arc<FileKey>,
) -> Result<Held, String> {
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    let auth = sshq_quic::ClientAuth {
        host: "127.0.0.1".to_string(),
        user: user.to_string(),
        auth_options: Default::default(),
        keys: vec![key as Arc<dyn UserKey>],
    };
    let session = endpoint
        .connect_session(server, params, auth)
        .await
        .map_err(|e| e.to_string())?;
    session
        .authenticated()
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(Held::Quic(Box::new(session)))
}

/// A short, stable label for an error message, so failures group well.
fn reason(message: &str) -> String {
    let lower = message.to_lowercase();
    for (needle, label) in [
        ("timed out", "timed out"),
        ("timeout", "timed out"),
        ("reset", "connection reset"),
        ("refused", "connection refused"),
        ("broken pipe", "broken pipe"),
        ("disconnect", "disconnected"),
        // A QUIC connection that ended while the login was under way.
        ("connection lost", "connection lost during login"),
        ("closed", "connection closed"),
        ("eof", "connection closed"),
        ("too many open files", "out of file descriptors"),
    ] {
        if lower.contains(needle) {
            return label.to_string();
        }
    }
    message.chars().take(80).collect()
}

fn percentile(sorted: &[f64], pct: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((pct / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted.get(rank.min(sorted.len() - 1)).copied()
}

/// Reads an OpenSSH private key (no passphrase), for both transports.
fn read_key(path: &std::path::Path) -> Result<(Arc<PrivateKey>, Arc<FileKey>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let key = PrivateKey::from_openssh(text).map_err(|e| format!("{}: {e}", path.display()))?;
    let file_key = Arc::new(FileKey::new(key.clone(), path.display().to_string()));
    Ok((Arc::new(key), file_key))
}

/// Waits for every task: what they made, and their failures counted by
/// reason.
async fn gather<T>(
    tasks: Vec<tokio::task::JoinHandle<Result<T, String>>>,
) -> (Vec<T>, BTreeMap<String, usize>) {
    let mut made = Vec::with_capacity(tasks.len());
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for task in tasks {
        match task.await {
            Ok(Ok(item)) => made.push(item),
            Ok(Err(e)) => *failures.entry(reason(&e)).or_default() += 1,
            Err(e) => *failures.entry(format!("task: {e}")).or_default() += 1,
        }
    }
    (made, failures)
}

/// Holds on until standard input closes (the driver is done) or `hold`
/// has passed.
async fn until_stdin_closes(hold: Duration) {
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    });
    let _ = tokio::time::timeout(hold, stdin_closed).await;
}

async fn logins(target: Target, timeout: Duration) -> Result<serde_json::Value, String> {
    let Target {
        transport,
        port,
        count,
        user,
        key,
    } = target;
    let (key, file_key) = read_key(&key)?;
    let params = Arc::new(quic_params());
    // Several client sockets, so the client's one-task-per-endpoint driver is
    // not what limits the batch.
    let endpoints = quic_endpoints(transport, 8, std::net::Ipv4Addr::LOCALHOST)?;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let user = user.clone();
        let (key, file_key, params) = (key.clone(), file_key.clone(), params.clone());
        let endpoint = endpoints.get(i % endpoints.len().max(1)).cloned();
        tasks.push(tokio::spawn(async move {
            let begun = Instant::now();
            let attempt = async {
                match (transport, endpoint) {
                    (Transport::Quic, Some(endpoint)) => {
                        quic_login(endpoint, &params, port, &user, file_key).await
                    }
                    _ => tcp_login(port, &user, key).await,
                }
            };
            let result = match tokio::time::timeout(timeout, attempt).await {
                Ok(result) => result,
                Err(_) => Err("timed out".to_string()),
            };
            result.map(|conn| (begun.elapsed(), conn))
        }));
    }
    let (held, failures) = gather(tasks).await;
    let mut latencies: Vec<f64> = held
        .iter()
        .map(|(elapsed, _)| elapsed.as_secs_f64() * 1000.0)
        .collect();
    let total = started.elapsed().as_secs_f64();
    let open_at_end = held.len();
    drop(held);
    latencies.sort_by(|a, b| a.total_cmp(b));
    Ok(serde_json::json!({
        "transport": if transport == Transport::Quic { "quic" } else { "tcp" },
        "attempted": count,
        "succeeded": latencies.len(),
        "failed": count - latencies.len(),
        "failures": failures,
        "total_s": total,
        "open_at_end": open_at_end,
        "login_ms": {
            "p50": percentile(&latencies, 50.0),
            "p90": percentile(&latencies, 90.0),
            "max": latencies.last(),
        },
    }))
}

async fn flood(
    transport: Transport,
    port: u16,
    count: usize,
    source: std::net::Ipv4Addr,
    hold: Duration,
) -> Result<serde_json::Value, String> {
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    let params = Arc::new(quic_params());
    let endpoints = quic_endpoints(transport, 4, source)?;
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let endpoint = endpoints.get(i % endpoints.len().max(1)).cloned();
        let params = params.clone();
        tasks.push(tokio::spawn(async move {
            let attempt = async move {
                match endpoint {
                    Some(endpoint) => {
                        let conn = connect_silent(&endpoint, server, &params)
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok::<_, String>(Flooder::Quic(conn))
                    }
                    None => {
                        let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
                        socket
                            .bind(SocketAddr::from((source, 0)))
                            .map_err(|e| e.to_string())?;
                        let stream = socket.connect(server).await.map_err(|e| e.to_string())?;
                        Ok(Flooder::Tcp(stream))
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(20), attempt)
                .await
                .unwrap_or_else(|_| Err("timed out".to_string()))
        }));
    }
    let (held, failures) = gather(tasks).await;
    let up = serde_json::json!({
        "transport": if transport == Transport::Quic { "quic" } else { "tcp" },
        "source": source.to_string(),
        "attempted": count,
        "established": held.len(),
        "failures": failures,
    });
    println!("{up}");
    until_stdin_closes(hold).await;
    let still_open = held.iter().filter(|c| c.open()).count();
    Ok(serde_json::json!({ "still_open_at_end": still_open }))
}

enum Flooder {
    Tcp(tokio::net::TcpStream),
    Quic(SilentConnection),
}

impl Flooder {
    /// Whether the server has not closed this connection (yet).
    fn open(&self) -> bool {
        match self {
            Flooder::Quic(conn) => !conn.is_closed(),
            Flooder::Tcp(stream) => {
                // Drain what the server sent (its banner); EOF or an error
                // means it hung up.
                let mut buf = [0u8; 4096];
                loop {
                    match stream.try_read(&mut buf) {
                        Ok(0) => return false,
                        Ok(_) => continue,
                        Err(e) => return e.kind() == std::io::ErrorKind::WouldBlock,
                    }
                }
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sshq-load: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Logins { target, timeout } => {
                logins(target, Duration::from_secs(timeout)).await
            }
            Command::Flood {
                transport,
                port,
                count,
                source,
                seconds,
            } => flood(transport, port, count, source, Duration::from_secs(seconds)).await,
            Command::Idle {
                target,
                parallel,
                timeout,
                seconds,
            } => {
                idle::idle(idle::IdleArgs {
                    target,
                    parallel,
                    timeout: Duration::from_secs(timeout),
                    hold: Duration::from_secs(seconds),
                })
                .await
            }
        }
    });
    match result {
        Ok(summary) => {
            println!("{summary}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sshq-load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
