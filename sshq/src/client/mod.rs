//! The `sshq` client: OpenSSH's command line and behaviour, over TCP today
//! and QUIC as the transport trait's second implementation.

pub mod agent;
mod auth;
mod background;
pub mod cli;
mod command_line;
pub mod config;
mod connect;
pub mod cp;
pub mod error;
mod escape;
mod hostkeys;
pub mod identity;
mod jump;
mod keepalive;
pub mod prompt;
pub mod proxy;
mod proxy_command;
mod reattach;
mod reconnect;
mod route;
pub mod session;
mod stdio;
pub mod terminal;

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use sshq_core::transport::Connection;

use cli::{Cli, Destination};
use config::{ClientOptions, RequestTty};
use error::ClientError;

/// The synopsis printed when no destination is given.
const USAGE: &str = concat!(
    "sshq [-46AaNnqTtVvx] [-D [bind_address:]port] [-F configfile] [-i identity_file]\n",
    "            [-J destination] [-L address] [-l login_name] [-o option] [-p port]\n",
    "            [-R address] [-W host:port] destination [command [argument ...]]",
);

/// The exit status ssh uses for its own failures.
pub const EXIT_FAILURE: i32 = 255;

/// Runs `sshq` with `args` (including the program name); returns the exit status.
pub async fn main(args: Vec<String>) -> i32 {
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_FAILURE } else { 0 };
        }
    };
    if cli.version {
        eprintln!("sshq {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let code = match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            let message = error.to_string();
            if !message.is_empty() {
                eprintln!("{message}");
            }
            EXIT_FAILURE
        }
    };
    terminal::restore();
    code
}

/// Everything resolved from the command line and configuration.
struct Plan {
    host: String,
    hostname: String,
    port: u16,
    user: String,
    options: ClientOptions,
    quiet: bool,
    /// What an untrusted (changed) host key must turn off.
    exposure: hostkeys::Exposure,
    /// Set by the host-key check when the key was let through untrusted.
    host_key_trust: Arc<hostkeys::HostKeyTrust>,
    /// Set while the session is one the server holds for a reattach: a
    /// silent server then means reconnecting, not giving up.
    reattachable: Arc<std::sync::atomic::AtomicBool>,
}

async fn run(cli: Cli) -> Result<i32, ClientError> {
    let Some(destination) = cli.destination.as_deref() else {
        // Like ssh: the usage on stderr, exit status 255.
        return Err(ClientError::Usage);
    };
    let destination = Destination::parse(destination)?;
    let plan = resolve(&cli, &destination)?;
    init_logging(cli.verbose, plan.quiet);
    if cli.background && cli.command.is_empty() && !cli.no_command && cli.stdio_forward.is_none() {
        return Err(ClientError::BackgroundWithoutCommand);
    }
    if cli.background && !background::is_child() {
        // -f: a copy of sshq does the work and this one returns once it is
        // logged in, as ssh returns after forking.
        return background::start().await;
    }
    let hops = jump::hop_plans(&cli, &plan)?;
    let (mut chain, mut conn) = establish(&hops, &plan, auth::Prompts::Allowed).await?;
    let mut carry: Option<Box<reattach::Carry>> = None;
    loop {
        let result = run_connection(conn, &cli, &plan, &mut carry).await;
        let Some(held) = carry.as_mut() else {
            return result;
        };
        // The session is held by the server: log in again and take it over.
        match &result {
            Err(ClientError::SessionLost(why)) => tracing::debug!("connection lost: {why}"),
            _ => return result,
        }
        drop(chain);
        (chain, conn) = reconnect::reconnect(&hops, &plan, held).await?;
    }
}

/// Connects through the jump hosts to the destination.
async fn establish(
    hops: &[Plan],
    plan: &Plan,
    prompts: auth::Prompts,
) -> Result<(jump::JumpChain, connect::AnyConnection), ClientError> {
    let chain = jump::connect_hops(hops, prompts).await?;
    let conn = connect::connect(plan, chain.route(), prompts).await?;
    let conn = if background::is_child() {
        // Going to the background is for after login, so wait for it here.
        connect::logged_in(conn, plan).await?
    } else {
        conn
    };
    Ok((chain, conn))
}

/// Runs what the command line asks for on `conn`, until it ends; sets
/// `carry` when the session outlives the connection.
async fn run_connection(
    conn: connect::AnyConnection,
    cli: &Cli,
    plan: &Plan,
    carry: &mut Option<Box<reattach::Carry>>,
) -> Result<i32, ClientError> {
    match conn {
        connect::AnyConnection::Tcp(conn) => {
            log_connected(&conn, plan);
            let logged_in = session::LoginGate::default();
            run_watched(Arc::new(conn), cli, plan, carry, logged_in).await
        }
        connect::AnyConnection::Quic(conn) => {
            log_connected(&conn, plan);
            let conn = Arc::new(conn);
            // Login runs alongside the session's first round trip; its
            // failure is what the user must hear about. The session keeps
            // off the terminal until it is over (a password may be asked).
            let (login_done, login) = session::LoginGate::pending();
            let login_outcome = async {
                let outcome = conn.authenticated().await;
                let _ = login_done.send(Some(outcome.is_ok()));
                outcome
            };
            let (auth, result) = tokio::join!(
                login_outcome,
                run_watched(conn.clone(), cli, plan, carry, login)
            );
            let path = conn.path_stats();
            tracing::debug!(
                "QUIC path: rtt {:?}, mtu {}, {} packets sent, {} lost, {} congestion events",
                path.rtt,
                path.mtu,
                path.sent_packets,
                path.lost_packets,
                path.congestion_events
            );
            match auth {
                Ok(()) => result,
                Err(outcome) => {
                    // Without a login there is nothing to take over.
                    *carry = None;
                    Err(connect::quic_auth_error(plan, outcome).into())
                }
            }
        }
    }
}

fn log_connected<C: Connection>(conn: &C, plan: &Plan) {
    let info = conn.info();
    tracing::debug!(
        "Connected to {} ([{}]:{}) over {}; key exchange {}",
        plan.host,
        plan.hostname,
        plan.port,
        info.transport,
        info.kex.as_deref().unwrap_or("unknown")
    );
}

/// Applies the command line, then -o, then the config files, keeping the
/// first value obtained for each option, as ssh does.
fn resolve(cli: &Cli, destination: &Destination) -> Result<Plan, ClientError> {
    let mut options = ClientOptions::default();
    let user_flag = cli.login_name.clone().or_else(|| destination.user.clone());
    let port_flag = match &cli.port {
        Some(p) => Some(config::parse_port(p).ok_or_else(|| ClientError::BadPort(p.clone()))?),
        None => destination.port,
    };
    options.port = port_flag;
    options.user = user_flag;
    for file in &cli.identity_files {
        options.identity_files.push(config::expand_tilde(file));
    }
    if cli.forward_agent {
        options.forward_agent = Some(config::ForwardAgent::Yes);
    } else if cli.no_forward_agent {
        options.forward_agent = Some(config::ForwardAgent::No);
    }
    if let Some(jump) = &cli.jump {
        options.proxy_jump = Some(jump.clone());
    }
    if let Some(escape) = &cli.escape_char {
        options.apply_option_str(&format!("EscapeChar={escape}"))?;
    }
    for option in &cli.options {
        options.apply_option_str(option)?;
    }
    let host = destination.host.clone();
    options.load_files(cli.config_file.as_deref().map(std::path::Path::new), &host)?;
    if options.clear_all_forwardings == Some(true) {
        options.local_forwards.clear();
        options.remote_forwards.clear();
        options.dynamic_forwards.clear();
    }
    let hostname = options.expanded_host_name(&host);
    let port = options.port.unwrap_or(22);
    let user = options.user.clone().unwrap_or_else(config::local_user);
    let quiet = cli.quiet || options.log_level == Some(config::LogLevel::Quiet);
    let exposure = destination_exposure(cli, &options);
    Ok(Plan {
        host,
        hostname,
        port,
        user,
        options,
        quiet,
        exposure,
        host_key_trust: Arc::default(),
        reattachable: Arc::default(),
    })
}

/// A ProxyJump hop's plan: its own user and port from the -J text, then
/// ssh_config (the same -F file), but none of the command line's options,
/// which belong to the destination.
fn resolve_hop(cli: &Cli, hop: &Destination, quiet: bool) -> Result<Plan, ClientError> {
    let mut options = ClientOptions {
        port: hop.port,
        user: hop.user.clone(),
        ..ClientOptions::default()
    };
    options.load_files(
        cli.config_file.as_deref().map(std::path::Path::new),
        &hop.host,
    )?;
    Ok(Plan {
        hostname: options.expanded_host_name(&hop.host),
        port: options.port.unwrap_or(22),
        user: options.user.clone().unwrap_or_else(config::local_user),
        host: hop.host.clone(),
        quiet: quiet || options.log_level == Some(config::LogLevel::Quiet),
        options,
        // A hop's connection only carries the next hop's encrypted bytes:
        // sshq opens no session, agent channel or forward on it, as
        // OpenSSH's hop (`ssh -W`, which clears all forwardings) forwards
        // no ports. A changed key at a hop therefore turns nothing off
        // there, and the destination's forwarding depends on the
        // destination's own key check, which runs end to end through the hop.
        // (OpenSSH 9.2's hop ends here by default, but only because its
        // PasswordAuthentication notice counts as cancelled forwarding and
        // -W implies ExitOnForwardFailure; with password and
        // keyboard-interactive authentication off, which sshq has none of,
        // it goes on like this.)
        exposure: hostkeys::Exposure::default(),
        host_key_trust: Arc::default(),
        reattachable: Arc::default(),
    })
}

/// What the destination's connection would forward, for the host-key check:
/// ForwardAgent, and any -L/-R/-D (command line or ssh_config) unless
/// ClearAllForwardings or -W clears them, as in OpenSSH.
fn destination_exposure(cli: &Cli, options: &ClientOptions) -> hostkeys::Exposure {
    let cleared = options.clear_all_forwardings == Some(true) || cli.stdio_forward.is_some();
    let any_forward = [
        &cli.local_forward,
        &cli.remote_forward,
        &cli.dynamic_forward,
        &options.local_forwards,
        &options.remote_forwards,
        &options.dynamic_forwards,
    ]
    .iter()
    .any(|forwards| !forwards.is_empty());
    hostkeys::Exposure {
        agent_forwarding: matches!(
            options.forward_agent,
            Some(config::ForwardAgent::Yes | config::ForwardAgent::Socket(_))
        ),
        port_forwarding: any_forward && !cleared,
        exit_on_forward_failure: options.exit_on_forward_failure.unwrap_or(false),
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "off",
        (_, 0) => "warn",
        (_, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "{level},russh={},rustls=warn,quinn=warn,quinn_proto=warn",
        if verbose >= 3 { "debug" } else { "warn" }
    ))
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .try_init();
}

/// [`run_on`], ended early if the server stops answering keepalives. A
/// reattachable session is not cut off but told, by closing the
/// connection under it: it then comes back as lost, to be resumed.
async fn run_watched<C: Connection>(
    conn: Arc<C>,
    cli: &Cli,
    plan: &Plan,
    carry: &mut Option<Box<reattach::Carry>>,
    login: session::LoginGate,
) -> Result<i32, ClientError> {
    let reattachable = plan.reattachable.clone();
    let run = run_on(conn.clone(), cli, plan, carry, login);
    tokio::pin!(run);
    tokio::select! {
        result = &mut run => result,
        timeout = keepalive::watchdog(conn.as_ref(), plan) => {
            if !reattachable.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(ClientError::ServerAliveTimeout(timeout));
            }
            tracing::debug!("{timeout}");
            conn.close("server not responding").await;
            run.await
        }
    }
}

/// Runs what the command line asks for on an established connection.
async fn run_on<C: Connection>(
    conn: Arc<C>,
    cli: &Cli,
    plan: &Plan,
    carry: &mut Option<Box<reattach::Carry>>,
    login: session::LoginGate,
) -> Result<i32, ClientError> {
    if let Some(target) = &cli.stdio_forward {
        // -W implies -N and ClearAllForwardings, as in ssh.
        background::ready();
        return stdio::forward(conn.as_ref(), target).await;
    }
    // ClearAllForwardings (which scp and sftp pass): none from anywhere;
    // resolve() already dropped the config file's.
    // An untrusted host key (see hostkeys::Exposure): none either, the
    // notices are already printed.
    let untrusted = plan.host_key_trust.is_untrusted();
    let cleared = plan.options.clear_all_forwardings == Some(true) || untrusted;
    let none: &[String] = &[];
    let options_without_forwards;
    let forward_options = if untrusted {
        options_without_forwards = ClientOptions {
            local_forwards: Vec::new(),
            remote_forwards: Vec::new(),
            dynamic_forwards: Vec::new(),
            ..plan.options.clone()
        };
        &options_without_forwards
    } else {
        &plan.options
    };
    let forwards = crate::forward::client::ClientForwards::parse(
        if cleared { none } else { &cli.local_forward },
        if cleared { none } else { &cli.remote_forward },
        if cleared { none } else { &cli.dynamic_forward },
        forward_options,
        plan.quiet,
    )?;
    let _listeners = forwards.start_listeners(conn.clone()).await?;
    let remote = crate::forward::remote::RemoteForwards::new();
    let agent_socket = if untrusted {
        None
    } else {
        agent::socket_to_forward(plan.options.forward_agent.as_ref())
    };
    let _refuser = AbortOnDrop(tokio::spawn(refuse_incoming(
        conn.clone(),
        remote.clone(),
        agent_socket.clone(),
    )));
    // ~C: forwards added and cancelled while the session runs.
    let (commands, command_task) =
        command_line::start(conn.clone(), remote.clone(), forwards.bind, plan.quiet);
    let _command_task = AbortOnDrop(command_task);
    if carry.is_some() {
        // -R once the session is taken over: until then the server may
        // still hold the ports for the old connection, which the takeover
        // closes. A refusal is a warning here, whatever
        // ExitOnForwardFailure says: the session is worth more.
        let remote_again = async {
            let on_refusal = crate::forward::remote::OnRefusal {
                exit: false,
                quiet: plan.quiet,
            };
            let requested = remote.request_all(conn.as_ref(), &forwards.remote, on_refusal);
            if let Err(e) = requested.await {
                tracing::debug!("-R after a reattach: {e}");
            }
        };
        let agent_forward = agent_socket.is_some();
        return resume_session(
            conn.as_ref(),
            plan,
            carry,
            agent_forward,
            commands,
            remote_again,
        )
        .await;
    }
    forwards.request_remote(conn.as_ref(), &remote).await?;
    background::ready();
    if cli.no_command {
        // -N: nothing to run; stay until the connection ends.
        conn.closed().await;
        return Ok(0);
    }
    let command = (!cli.command.is_empty()).then(|| cli.command.join(" ").into_bytes());
    let (tty_flag, no_tty) = match plan.options.request_tty {
        _ if cli.no_tty => (0, true),
        _ if cli.tty > 0 => (cli.tty, false),
        Some(RequestTty::No) => (0, true),
        Some(RequestTty::Yes) => (1, false),
        Some(RequestTty::Force) => (2, false),
        Some(RequestTty::Auto) | None => (0, false),
    };
    let (pty, notice) = session::want_pty(tty_flag, no_tty || cli.subsystem, command.is_some());
    if let (Some(notice), false) = (notice, plan.quiet) {
        eprintln!("{notice}");
    }
    let options = session::SessionOptions {
        command,
        subsystem: cli.subsystem,
        pty,
        term: std::env::var("TERM").unwrap_or_else(|_| "dumb".to_string()),
        env: environment_to_send(&plan.options),
        null_stdin: cli.null_stdin || cli.background,
        agent_forward: agent_socket.is_some(),
        reattach: plan.options.reattach.unwrap_or(true),
        escape_char: plan.options.escape_char.unwrap_or(Some(b'~')),
        host: plan.host.clone(),
        held: plan.reattachable.clone(),
        login,
    };
    match session::run(conn.as_ref(), options, commands).await? {
        session::SessionEnd::Exited(exit) => {
            // No status because the server closed the connection: ssh's notice.
            let gone = tokio::time::timeout(Duration::from_millis(200), conn.closed());
            if exit == session::RemoteExit::Unknown && gone.await.is_ok() && !plan.quiet {
                eprintln!("Connection to {} closed by remote host.", plan.host);
            }
            conn.close("disconnected by user").await;
            Ok(exit.exit_code())
        }
        session::SessionEnd::Terminated => Ok(terminated(conn.as_ref(), plan).await),
        session::SessionEnd::Killed(signal) => Ok(killed(conn.as_ref(), signal).await),
        session::SessionEnd::Lost { why, carry: held } => {
            plan.reattachable
                .store(true, std::sync::atomic::Ordering::SeqCst);
            *carry = Some(held);
            Err(ClientError::SessionLost(why))
        }
    }
}

/// `~.`: ssh's words, and its status for a session that ended without one.
async fn terminated<C: Connection>(conn: &C, plan: &Plan) -> i32 {
    conn.close("disconnected by user").await;
    reattach::status_line(&format!("Connection to {} closed.", plan.host));
    EXIT_FAILURE
}

/// SIGHUP or SIGTERM: ssh's words for it.
async fn killed<C: Connection>(conn: &C, signal: i32) -> i32 {
    conn.close("disconnected by user").await;
    reattach::status_line(&format!("Killed by signal {signal}."));
    EXIT_FAILURE
}

/// Takes the held session over on `conn`. A failure that another
/// connection may not have (the channel could not open, the connection
/// went again) keeps the carry for another try; the server saying the
/// session is gone ends it.
async fn resume_session<C: Connection>(
    conn: &C,
    plan: &Plan,
    carry: &mut Option<Box<reattach::Carry>>,
    agent_forward: bool,
    commands: command_line::CommandLine,
    after_resumed: impl std::future::Future<Output = ()>,
) -> Result<i32, ClientError> {
    let Some(held) = carry.as_mut() else {
        return Err(ClientError::SessionLost("nothing to resume".into()));
    };
    let result = match reattach::resume(conn, held, agent_forward, commands, after_resumed).await {
        Ok(reattach::Outcome::Lost(why)) => return Err(ClientError::SessionLost(why)),
        Err(e @ (session::SessionError::OpenFailed(_) | session::SessionError::Transport(_))) => {
            return Err(ClientError::SessionLost(e.to_string()))
        }
        Ok(reattach::Outcome::Exited(exit)) => {
            conn.close("disconnected by user").await;
            Ok(exit.exit_code())
        }
        Ok(reattach::Outcome::Terminated) => Ok(terminated(conn, plan).await),
        Ok(reattach::Outcome::Killed(signal)) => Ok(killed(conn, signal).await),
        Ok(reattach::Outcome::OutputGone) => {
            conn.close("disconnected by user").await;
            Ok(EXIT_FAILURE)
        }
        Err(e) => Err(e.into()),
    };
    *carry = None;
    plan.reattachable
        .store(false, std::sync::atomic::Ordering::SeqCst);
    result
}

/// Hands forwarded-tcpip and -streamlocal channels to the remote forwards (-R), agent
/// channels to the forwarded agent (-A, refused when `agent_socket` is
/// `None`); anything else the server starts is refused at once, so the
/// server is not left waiting.
async fn refuse_incoming<C: Connection>(
    conn: Arc<C>,
    remote: Arc<crate::forward::remote::RemoteForwards>,
    agent_socket: Option<std::path::PathBuf>,
) {
    use sshq_core::channel::{ChannelKind, OpenFailure, OpenFailureReason};
    use sshq_core::transport::Incoming;
    while let Some(incoming) = conn.accept().await {
        match incoming {
            Incoming::Channel(pending)
                if matches!(
                    pending.kind(),
                    ChannelKind::ForwardedTcpip { .. } | ChannelKind::ForwardedStreamlocal { .. }
                ) =>
            {
                let remote = remote.clone();
                tokio::spawn(async move { remote.handle(pending).await });
            }
            Incoming::Channel(pending) if matches!(pending.kind(), ChannelKind::Agent) => {
                tokio::spawn(agent::handle(pending, agent_socket.clone()));
            }
            Incoming::Channel(pending) => {
                tracing::debug!(
                    "refusing a {} channel from the server",
                    pending.kind().wire_name()
                );
                pending.reject(OpenFailure {
                    reason: OpenFailureReason::AdministrativelyProhibited,
                    message: "not offered by this client".to_string(),
                });
            }
            // Dropping the reply answers failure.
            Incoming::GlobalRequest(request) => {
                tracing::debug!("refusing global request {:?}", request.request)
            }
        }
    }
}

/// Aborts a background task when the session that started it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// SendEnv patterns matched against our environment, then SetEnv pairs.
fn environment_to_send(options: &ClientOptions) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(name, _)| {
            options
                .send_env
                .iter()
                .any(|pattern| sshq_core::pattern::matches(pattern, name))
        })
        .collect();
    if let Some(set) = &options.set_env {
        env.extend(set.iter().cloned());
    }
    env
}
