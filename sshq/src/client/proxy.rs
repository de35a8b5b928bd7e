//! `sshq proxy [-qv] [-F configfile] [-o option]... host [port]`: OpenSSH's
//! ProxyCommand over QUIC.
//!
//! ```text
//! ssh -o ProxyCommand='sshq proxy %h %p' host
//! ```
//!
//! carries ssh's byte stream (our stdin and stdout) to sshqd over QUIC, on
//! one stream of a `sshq-tunnel/1` connection (see `sshq_quic::tunnel`),
//! and sshqd relays it to the SSH server its `QuicRelay` names. The QUIC
//! hop checks sshqd's host key exactly as `sshq` does (known_hosts,
//! StrictHostKeyChecking, the same messages); the SSH connection inside is
//! ssh's own business, end to end with the SSH server.
//!
//! stdout is the SSH byte stream: nothing but relayed bytes may ever be
//! written there. Messages go to stderr, and a host-key question to
//! /dev/tty (as ssh asks it).
//!
//! The first argument `proxy` selects this mode; a host that is really
//! named `proxy` is reached with `sshq -- proxy` or `sshq ssh://proxy`.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use clap::{ArgAction, Parser};
use sshq_core::auth::ServerKeyVerifier;
use sshq_core::error::ConnectError;
use sshq_quic::relay::{self, Tunnel};
use sshq_quic::tunnel::{ConnectionLost, End, Half};
use sshq_quic::wire::ErrorCode;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use super::config::{self, ClientOptions, ConfigError};
use super::error::{Program, SetupError};
use super::{connect, hostkeys, Plan, EXIT_FAILURE};

/// `sshq proxy`'s command line: the part of ssh's that concerns reaching a
/// host, plus the host and port ProxyCommand's `%h %p` give.
#[derive(Debug, Parser)]
#[command(
    name = "sshq proxy",
    disable_help_flag = true,
    disable_version_flag = true,
    override_usage = "sshq proxy [-qv] [-F configfile] [-o option] host [port]",
    about = "Carries ssh's connection over QUIC to an sshqd that relays it (QuicRelay):\n  \
             ssh -o ProxyCommand='sshq proxy %h %p' host"
)]
struct ProxyCli {
    /// Configuration file (default ~/.ssh/config, then /etc/ssh/ssh_config).
    #[arg(short = 'F', value_name = "configfile")]
    config_file: Option<String>,
    /// Options in ssh_config format; may be repeated.
    #[arg(short = 'o', action = ArgAction::Append, value_name = "option")]
    options: Vec<String>,
    /// Quiet: no warnings.
    #[arg(short = 'q')]
    quiet: bool,
    /// Verbose; repeat for more.
    #[arg(short = 'v', action = ArgAction::Count)]
    verbose: u8,
    /// Print help.
    #[arg(long = "help", action = ArgAction::Help)]
    help: Option<bool>,
    /// The sshqd to reach (ProxyCommand's %h).
    host: String,
    /// Its port (ProxyCommand's %p); the UDP port is QuicPort if set.
    port: Option<String>,
}

/// How long, after our stdin ended, we wait for the relay to acknowledge
/// the last bytes before closing the connection.
const FINAL_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// After ssh has gone (it sends its ProxyCommand SIGHUP when it exits), how
/// long the bytes already read may take to leave before we close.
const HANGUP_GRACE: Duration = Duration::from_secs(1);

/// Runs `sshq proxy`; `args` are the whole command line (`sshq proxy ...`).
/// Returns the exit status: 0 when both directions ended cleanly, 255
/// otherwise, as ssh.
pub async fn main(args: Vec<String>) -> i32 {
    let args = std::iter::once("sshq proxy".to_string()).chain(args.into_iter().skip(2));
    let cli = match ProxyCli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_FAILURE } else { 0 };
        }
    };
    match run(cli).await {
        Ok(()) => 0,
        // Its transcript, ending in that line, was already written.
        Err(ProxyError::Connect(ConnectError::HostKeyRejected)) => EXIT_FAILURE,
        Err(e) => {
            eprintln!("{e}");
            EXIT_FAILURE
        }
    }
}

/// Why `sshq proxy` ended other than cleanly, in the words it prints.
#[derive(Debug, thiserror::Error)]
enum ProxyError {
    #[error("Bad port '{0}'")]
    BadPort(String),
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The QUIC hop could not be set up, in ssh's words.
    #[error("{}", super::error::ssh_message(.0))]
    Connect(#[from] ConnectError),
    #[error("sshq proxy: relay at {relay} could not reach its SSH server: {reason}")]
    TargetUnreachable { relay: String, reason: String },
    #[error("sshq proxy: relay at {relay} is busy: {reason}")]
    RelayBusy { relay: String, reason: String },
    #[error("sshq proxy: relay at {relay}: its connection to the SSH server broke")]
    TargetBroke { relay: String },
    #[error("sshq proxy: relay at {relay} closed the connection: {reason}")]
    RelayClosed { relay: String, reason: String },
    #[error("sshq proxy: connection to relay at {relay} lost: {source}")]
    Lost {
        relay: String,
        source: ConnectionLost,
    },
    #[error("sshq proxy: stdin or stdout: {0}")]
    Local(#[source] io::Error),
}

async fn run(cli: ProxyCli) -> Result<(), ProxyError> {
    let plan = resolve(&cli)?;
    super::init_logging(cli.verbose, plan.quiet);
    // The files that name `sshq proxy` as this host's ProxyCommand are read
    // here too: that keyword is what ran us. Neither it nor ProxyJump
    // applies to the QUIC hop.
    if plan.options.proxy_command.is_some()
        || plan
            .options
            .proxy_jump
            .as_deref()
            .is_some_and(|jump| jump != "none")
    {
        tracing::debug!("sshq proxy: ProxyCommand and ProxyJump do not apply to the QUIC hop");
    }
    let tunnel = match plan.options.connect_timeout {
        Some(limit) if !limit.is_zero() => tokio::time::timeout(limit, connect(&plan))
            .await
            .unwrap_or_else(|_| Err(timed_out(&plan))),
        _ => connect(&plan).await,
    }?;
    let result = relay(&plan, &tunnel).await;
    // Let the CONNECTION_CLOSE leave before the process exits.
    tunnel.finish(Duration::from_secs(1)).await;
    result
}

/// The plan as ssh would build it for this host: `-o` first, then the
/// configuration files, first value wins. Only what concerns the QUIC hop
/// matters here (HostName, Port, QuicPort, UserKnownHostsFile,
/// StrictHostKeyChecking, KexAlgorithms, ConnectTimeout, LogLevel).
fn resolve(cli: &ProxyCli) -> Result<Plan, ProxyError> {
    let mut options = ClientOptions::default();
    if let Some(port) = &cli.port {
        options.port =
            Some(config::parse_port(port).ok_or_else(|| ProxyError::BadPort(port.clone()))?);
    }
    for option in &cli.options {
        options.apply_option_str(option)?;
    }
    options.load_files(cli.config_file.as_deref().map(Path::new), &cli.host)?;
    let hostname = options.expanded_host_name(&cli.host);
    let quiet = cli.quiet || options.log_level == Some(config::LogLevel::Quiet);
    Ok(Plan {
        host: cli.host.clone(),
        hostname,
        port: options.port.unwrap_or(22),
        user: options.user.clone().unwrap_or_else(config::local_user),
        options,
        quiet,
        // A tunnel forwards nothing of sshq's own: OpenSSH, inside it,
        // checks its server's key and decides about its own forwarding.
        exposure: hostkeys::Exposure::default(),
        host_key_trust: Default::default(),
        reattachable: Default::default(),
    })
}

/// A QUIC connection asking for the tunnel, to the first address of the
/// host that answers, with the host key checked as `sshq` checks it.
async fn connect(plan: &Plan) -> Result<Tunnel, ConnectError> {
    let verifier = hostkeys::Verifier::new(plan);
    let known_types = verifier.known_key_types();
    if !known_types.is_empty() && !known_types.iter().any(|t| t == "ssh-ed25519") {
        return Err(SetupError::NoEd25519HostKey {
            program: Program::Proxy,
            host: plan.hostname.clone(),
            known_types,
        }
        .into());
    }
    let verifier: Arc<dyn ServerKeyVerifier> = Arc::new(verifier);
    let params = connect::quic_params(plan, verifier)?;
    let port = plan.options.quic_port.unwrap_or(plan.port);
    let mut last_error = None;
    for addr in connect::resolve(plan, port).await? {
        let endpoint = connect::endpoint_for(plan, addr)?;
        match connect::quic_tunnel(plan, endpoint, addr, &params).await {
            Ok((tunnel, group)) => {
                // The words sshq uses, so one pattern finds both.
                tracing::debug!(
                    "Connected to {} ([{}]:{}) over quic; key exchange {}; relaying stdin and stdout",
                    plan.host,
                    addr.ip(),
                    addr.port(),
                    group.unwrap_or("unknown")
                );
                return Ok(tunnel);
            }
            // Only a failure to reach this address moves on to the next one.
            Err(e @ ConnectError::Connect { .. }) => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or(SetupError::NoAddress.into()))
}

fn timed_out(plan: &Plan) -> ConnectError {
    ConnectError::Connect {
        host: plan.hostname.clone(),
        port: plan.options.quic_port.unwrap_or(plan.port),
        source: std::io::Error::new(std::io::ErrorKind::TimedOut, "Connection timed out"),
    }
}

/// Copies stdin to the tunnel and the tunnel to stdout until both
/// directions have ended, then closes the connection; explains any other
/// end.
async fn relay(plan: &Plan, tunnel: &Tunnel) -> Result<(), ProxyError> {
    let stream = tunnel
        .open_stream()
        .await
        .map_err(|e| connection_lost(plan, &e))?;
    let mut hangup = hangup_signal();
    let hung_up = async move {
        if hangup.recv().await.is_some() {
            tracing::debug!("sshq proxy: SIGHUP (ssh has exited); closing");
        } else {
            // No SIGHUP handler: never interrupted.
            std::future::pending::<()>().await;
        }
    };
    let mut relayed = relay::relay(stream, stdin(), Stdout::new(), hung_up, HANGUP_GRACE).await;
    relayed.wait_acknowledged(FINAL_ACK_TIMEOUT).await;
    let hung_up = relayed.interrupted;
    let outcome = outcome(
        plan,
        tunnel,
        relayed.outbound.as_ref(),
        relayed.inbound.as_ref(),
        hung_up,
    );
    let code = if outcome.is_ok() || hung_up {
        ErrorCode::NoError
    } else {
        ErrorCode::TunnelAborted
    };
    tunnel.close(code, "proxy finished");
    outcome
}

/// What the ends of the two directions mean for the user.
fn outcome(
    plan: &Plan,
    tunnel: &Tunnel,
    up: Option<&Half>,
    down: Option<&Half>,
    hung_up: bool,
) -> Result<(), ProxyError> {
    let ends = [up.map(|h| &h.end), down.map(|h| &h.end)];
    if ends.iter().all(|end| end.is_some_and(End::is_finished)) || hung_up {
        return Ok(());
    }
    if let Some(End::LocalFailed(e)) = down.map(|h| &h.end) {
        if e.kind() == io::ErrorKind::BrokenPipe {
            // ssh closed our stdout: it is done with the connection (and
            // has no terminal of ours to read a message on).
            tracing::debug!("sshq proxy: ssh closed its end of our stdout");
            return Ok(());
        }
    }
    // The connection's fate says the most (e.g. the relay could not reach
    // its SSH server); then the stream's.
    if let Some(e) = tunnel.close_reason() {
        return Err(connection_lost(plan, &e));
    }
    for end in ends.into_iter().flatten() {
        match end {
            End::Finished => {}
            End::ConnectionLost(e) => return Err(connection_lost(plan, e)),
            End::PeerAborted(_) => {
                return Err(ProxyError::TargetBroke {
                    relay: relay_name(plan),
                })
            }
            End::LocalFailed(e) => {
                return Err(ProxyError::Local(io::Error::new(e.kind(), e.to_string())))
            }
        }
    }
    Ok(())
}

/// A lost connection in the words the user needs.
fn connection_lost(plan: &Plan, e: &ConnectionLost) -> ProxyError {
    let relay = relay_name(plan);
    match e.peer_close() {
        Some((ErrorCode::RelayTargetUnreachable, reason)) => {
            ProxyError::TargetUnreachable { relay, reason }
        }
        Some((ErrorCode::RelayBusy, reason)) => ProxyError::RelayBusy { relay, reason },
        Some((ErrorCode::TunnelAborted, _)) => ProxyError::TargetBroke { relay },
        Some((ErrorCode::AuthTimeout, reason)) => ProxyError::RelayClosed { relay, reason },
        _ => ProxyError::Lost {
            relay,
            source: e.clone(),
        },
    }
}

fn relay_name(plan: &Plan) -> String {
    format!(
        "{}:{}",
        plan.hostname,
        plan.options.quic_port.unwrap_or(plan.port)
    )
}

/// SIGHUP, which ssh sends its ProxyCommand on exit. Handling it (instead
/// of dying) lets us close the QUIC connection properly, so the relay ends
/// the SSH server's connection at once rather than after the idle timeout.
fn hangup_signal() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut signal) => {
            tokio::spawn(async move {
                while signal.recv().await.is_some() {
                    if tx.send(()).await.is_err() {
                        break;
                    }
                }
            });
        }
        Err(e) => tracing::debug!("cannot catch SIGHUP: {e}"),
    }
    rx
}

/// Ends our stdout, so whoever reads it (ssh) sees end of file: /dev/null
/// takes the place of descriptor 1 (closing it outright would let a later
/// open reuse the number, and a stray write land there).
fn close_stdout() {
    match std::fs::OpenOptions::new().write(true).open("/dev/null") {
        Ok(null) => {
            if let Err(e) = nix::unistd::dup2_stdout(&null) {
                tracing::debug!("cannot close stdout: {e}");
            }
        }
        Err(e) => tracing::debug!("cannot open /dev/null to close stdout: {e}"),
    }
}

/// Our stdin, read without a thread hop when it is a pipe or socket (as
/// ssh gives its ProxyCommand), else through tokio's blocking reader.
fn stdin() -> Box<dyn AsyncRead + Unpin + Send> {
    match PipeEnd::new(std::io::stdin().as_fd()) {
        Some(pipe) => Box::new(pipe),
        None => Box::new(tokio::io::stdin()),
    }
}

/// Our stdout, like [`stdin`].
fn stdout() -> Box<dyn AsyncWrite + Unpin + Send> {
    match PipeEnd::new(std::io::stdout().as_fd()) {
        Some(pipe) => Box::new(pipe),
        None => Box::new(tokio::io::stdout()),
    }
}

/// Our stdout as the tunnel's inbound end: when the server half-closes
/// (a FIN, which the relay turns into a shutdown), our duplicate of
/// descriptor 1 is dropped and stdout ended ([`close_stdout`]), so ssh sees
/// the server's half-close.
struct Stdout(Option<Box<dyn AsyncWrite + Unpin + Send>>);

impl Stdout {
    fn new() -> Stdout {
        Stdout(Some(stdout()))
    }
}

impl AsyncWrite for Stdout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.0.as_mut() {
            Some(out) => Pin::new(out).poll_write(cx, data),
            None => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.0.as_mut() {
            Some(out) => Pin::new(out).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(out) = self.0.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        if let Err(e) = std::task::ready!(Pin::new(out).poll_shutdown(cx)) {
            return Poll::Ready(Err(e));
        }
        self.0 = None;
        close_stdout();
        Poll::Ready(Ok(()))
    }
}

/// The pipe capacity asked for (Linux's fs.pipe-max-size default).
const PIPE_BYTES: i32 = 1024 * 1024;

/// A pipe or socket (a duplicate of stdin or stdout) made non-blocking
/// and driven by tokio's reactor. tokio's own stdin and stdout run every
/// read and write on a blocking thread through a buffer of their own; on a
/// bulk transfer that hand-off cost more CPU than the QUIC hop itself.
struct PipeEnd(AsyncFd<std::fs::File>);

impl PipeEnd {
    /// `None` unless `fd` is a pipe or socket: a terminal or file must stay
    /// blocking (a terminal's flags are shared with the shell, and regular
    /// files cannot be polled).
    fn new(fd: BorrowedFd<'_>) -> Option<PipeEnd> {
        use std::os::unix::fs::FileTypeExt;
        let file = std::fs::File::from(fd.try_clone_to_owned().ok()?);
        let kind = file.metadata().ok()?.file_type();
        if !(kind.is_fifo() || kind.is_socket()) {
            return None;
        }
        // The flag is on the open file description, which our duplicate
        // shares with descriptor 0 or 1; ssh keeps no copy of our ends.
        let flags = OFlag::from_bits_truncate(fcntl(&file, FcntlArg::F_GETFL).ok()?);
        fcntl(&file, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).ok()?;
        if kind.is_fifo() {
            // A larger pipe (Linux's default is 64 KiB) means fewer, larger
            // reads and writes on both sides of it; best effort, as the
            // system may cap it (fs.pipe-max-size).
            let _ = fcntl(&file, FcntlArg::F_SETPIPE_SZ(PIPE_BYTES));
        }
        // SAFETY: `file` owns its descriptor (a duplicate made above) and
        // the AsyncFd owns `file`: nothing else can close or replace that
        // descriptor while it is registered.
        unsafe { AsyncFd::register(file) }.ok().map(PipeEnd)
    }
}

impl AsyncRead for PipeEnd {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut ready = match self.0.poll_read_ready(cx) {
                Poll::Ready(ready) => ready?,
                Poll::Pending => return Poll::Pending,
            };
            let result = ready.try_io(|file| {
                let mut file: &std::fs::File = file.get_ref();
                file.read(buf.initialize_unfilled())
            });
            match result {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // Not readable after all: wait for the next readiness.
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for PipeEnd {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut ready = match self.0.poll_write_ready(cx) {
                Poll::Ready(ready) => ready?,
                Poll::Pending => return Poll::Pending,
            };
            match ready.try_io(|file| {
                let mut file: &std::fs::File = file.get_ref();
                file.write(data)
            }) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes go straight to the descriptor: nothing to flush.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Ending stdout is [`close_stdout`]'s job, once this duplicate is gone.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
