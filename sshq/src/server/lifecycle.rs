//! sshqd's signals, with sshd's meaning, adapted to a daemon that serves
//! every connection in one process:
//!
//! - **SIGHUP** re-reads the configuration and drops nothing. sshd re-execs
//!   itself, which its sessions (separate processes) survive; sshqd's
//!   connections would not, so it reloads in place instead. A file that does not load is
//!   logged and the running configuration stays. What a session is allowed
//!   (forwarding, subsystems, AcceptEnv, MaxSessions, ClientReattach*)
//!   applies to connections from then on; what the listeners and the login
//!   were built from (Port, ListenAddress, HostKey, Transports, the
//!   authentication keywords) needs a restart, and the log says so.
//! - **SIGTERM** and **SIGINT** are logged as sshd logs them, every client
//!   is told (its connection is closed with a reason, so `sshq` prints
//!   "Connection to HOST closed by remote host."), nobody new is let in,
//!   and sshqd exits. Reattachable sessions are not sshqd's to end: their
//!   holders (`reattach::holder`) keep them, and their clients reattach to
//!   the next sshqd.

use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use super::config::ServerConfig;

/// What clients are told when sshqd shuts down.
pub const SHUTDOWN_REASON: &str = "sshqd is shutting down";

/// How long the connections get to send their close before sshqd exits.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Set once sshqd is shutting down; every connection watches it.
static SHUTDOWN: LazyLock<watch::Sender<bool>> = LazyLock::new(|| watch::channel(false).0);

/// The configuration last reloaded by SIGHUP, if any.
static RELOADED: RwLock<Option<Arc<ServerConfig>>> = RwLock::new(None);

/// The configuration a new connection's sessions get: the last reloaded
/// one, or `started_with`.
pub fn session_config(started_with: &Arc<ServerConfig>) -> Arc<ServerConfig> {
    let reloaded = RELOADED.read().map(|slot| slot.clone()).unwrap_or(None);
    reloaded.unwrap_or_else(|| started_with.clone())
}

/// Whether sshqd is shutting down.
pub fn is_shutting_down() -> bool {
    *SHUTDOWN.borrow()
}

/// Resolves once sshqd is shutting down.
pub async fn shutting_down() {
    let mut receiver = SHUTDOWN.subscribe();
    let _ = receiver.wait_for(|down| *down).await;
}

/// Handles SIGHUP until SIGTERM or SIGINT; then tells every connection to
/// close, gives them a moment to, and returns.
pub async fn handle_signals(args: Vec<String>) {
    let (Ok(mut hangup), Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot handle signals; SIGHUP and SIGTERM act as the system's default");
        return std::future::pending().await;
    };
    let number = loop {
        tokio::select! {
            _ = hangup.recv() => reload(&args).await,
            _ = terminate.recv() => break libc::SIGTERM,
            _ = interrupt.recv() => break libc::SIGINT,
        }
    };
    tracing::info!("Received signal {number}; terminating.");
    SHUTDOWN.send_replace(true);
    tokio::time::sleep(CLOSE_GRACE).await;
}

async fn reload(args: &[String]) {
    tracing::info!("Received SIGHUP; reloading configuration.");
    let args = args.to_vec();
    let loaded = tokio::task::spawn_blocking(move || super::prepare(args)).await;
    match loaded {
        Ok(Ok((_, config, _))) => {
            if let Ok(mut slot) = RELOADED.write() {
                *slot = Some(Arc::new(config));
            }
            tracing::info!(
                "Configuration reloaded: it applies to new connections' sessions; \
                 changes to Port, ListenAddress, HostKey, Transports or the \
                 authentication keywords take a restart. No connection was dropped."
            );
        }
        Ok(Err(error)) => tracing::error!(
            "Configuration not reloaded, the running one stays: {}",
            error.to_string().trim_end()
        ),
        Err(error) => tracing::error!("Configuration not reloaded: {error}"),
    }
}
