//! What sshqd does with an authenticated connection, written once for every
//! transport: it accepts `session` channels and runs a shell, a command or a
//! subsystem as the user; anything it does not offer is refused with a
//! reason, and the connection carries on.

use std::sync::Arc;

use sshq_core::channel::{
    ChannelKind, ChannelRequest, GlobalReply, GlobalRequest, OpenFailure, OpenFailureReason,
    END_OF_WRITE,
};
use sshq_core::log_escape;
use sshq_core::transport::{
    Channel, ChannelControl, ChannelParts, Connection, Incoming, RequestStream,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

mod user_env;

pub use user_env::user_environment;

use super::context::SessionContext;
use super::process::{self, Program, SessionProcess, SpawnRequest};

/// Serves one authenticated connection until the client goes away.
pub async fn serve<C: Connection>(conn: Arc<C>, ctx: Arc<SessionContext>) {
    // The client's -R listeners; dropped (and stopped) when the client goes.
    let remote_listeners = super::forwarding::RemoteListeners::default();
    while let Some(incoming) = conn.accept().await {
        match incoming {
            Incoming::Channel(pending) => match pending.kind() {
                // Each channel keeps its slot in the connection's limits
                // until the task serving it ends.
                kind @ (ChannelKind::Session
                | ChannelKind::DirectTcpip { .. }
                | ChannelKind::DirectStreamlocal { .. }) => {
                    let slot = match ctx.limits.admit(kind, &ctx.peer) {
                        Ok(slot) => slot,
                        Err(failure) => {
                            pending.reject(failure);
                            continue;
                        }
                    };
                    let serve = serve_channel(conn.clone(), pending, ctx.clone());
                    tokio::spawn(async move {
                        serve.await;
                        drop(slot);
                    });
                }
                other => {
                    let name = other.wire_name();
                    tracing::info!("{}: refused {name} channel", ctx.peer);
                    pending.reject(OpenFailure {
                        // draft §8.3: a known channel type the server does not offer is refused with reason 1
                        reason: OpenFailureReason::AdministrativelyProhibited,
                        message: format!("{name} channels are not offered by this server"),
                    });
                }
            },
            Incoming::GlobalRequest(request) => {
                let adds_listener = match &request.request {
                    GlobalRequest::TcpipForward { .. } => Some("tcpip-forward"),
                    GlobalRequest::StreamlocalForward { .. } => {
                        Some("streamlocal-forward@openssh.com")
                    }
                    _ => None,
                };
                let listening = remote_listeners.count();
                let reply = match request.request {
                    _ if adds_listener.is_some_and(|what| {
                        !super::limits::remote_forward_allowed(listening, what, &ctx.peer)
                    }) =>
                    {
                        GlobalReply::Failure
                    }
                    GlobalRequest::TcpipForward { address, port } => {
                        remote_listeners.forward(&conn, &ctx, address, port).await
                    }
                    GlobalRequest::CancelTcpipForward { address, port } => {
                        remote_listeners.cancel(&ctx, &address, port)
                    }
                    GlobalRequest::StreamlocalForward { socket_path } => {
                        let sockets = &remote_listeners.sockets;
                        sockets.forward(&conn, &ctx, socket_path).await
                    }
                    GlobalRequest::CancelStreamlocalForward { socket_path } => {
                        remote_listeners.sockets.cancel(&ctx, &socket_path)
                    }
                    other => {
                        tracing::debug!(
                            "{}: refused global request {}",
                            ctx.peer,
                            log_escape::peer_text(&format!("{other:?}"))
                        );
                        GlobalReply::Failure
                    }
                };
                if let Some(sender) = request.reply {
                    let _ = sender.send(reply);
                }
            }
        }
    }
}

/// Serves a channel the client opened, once the limits admitted it.
async fn serve_channel<C: Connection>(
    conn: Arc<C>,
    pending: sshq_core::transport::PendingChannel<C::Channel>,
    ctx: Arc<SessionContext>,
) {
    // Each kind's future boxed: the task then holds only the one it runs,
    // not room for the largest of the three (an idle shell's task was
    // ~24 KiB; interop/results/bench-idle).
    match pending.kind().clone() {
        ChannelKind::Session => Box::pin(run_session(conn, pending.accept(), ctx)).await,
        ChannelKind::DirectTcpip { host, port, .. } => {
            Box::pin(direct_tcpip(pending, host, port, ctx)).await
        }
        _ => Box::pin(super::forwarding::streamlocal::direct(pending, ctx)).await,
    }
}

/// A direct-tcpip channel (the client's -L or -D): connect, then splice.
async fn direct_tcpip<Ch: Channel>(
    pending: sshq_core::transport::PendingChannel<Ch>,
    host: String,
    port: u32,
    ctx: Arc<SessionContext>,
) {
    let refuse = |pending: sshq_core::transport::PendingChannel<Ch>, reason, message: String| {
        tracing::info!(
            "{}: direct-tcpip to {}:{port} refused: {}",
            ctx.peer,
            log_escape::peer_text(&host),
            log_escape::peer_text(&message)
        );
        pending.reject(OpenFailure { reason, message });
    };
    let Ok(port16) = u16::try_from(port) else {
        return refuse(
            pending,
            OpenFailureReason::ConnectFailed,
            format!("bad port {port}"),
        );
    };
    if !ctx.forwarding.allow_local || !ctx.forwarding.permit_open.allows(&host, port16) {
        return refuse(
            pending,
            OpenFailureReason::AdministrativelyProhibited,
            "open failed: forwarding is not permitted by this server".to_string(),
        );
    }
    match tokio::net::TcpStream::connect((host.as_str(), port16)).await {
        Ok(stream) => {
            tracing::info!(
                "{}: direct-tcpip to {} port {port16}",
                ctx.peer,
                log_escape::peer_text(&host)
            );
            let _ = stream.set_nodelay(true);
            crate::forward::splice(pending.accept(), stream).await;
        }
        Err(e) => refuse(
            pending,
            OpenFailureReason::ConnectFailed,
            format!("connect to {host} port {port16} failed: {e}"),
        ),
    }
}

/// One `session` channel: collect pty-req, env and agent forwarding, start
/// the program on shell/exec/subsystem, then pump bytes and report how it
/// ended. A forwarded agent's socket goes away with the session.
async fn run_session<C: Connection>(conn: Arc<C>, channel: C::Channel, ctx: Arc<SessionContext>) {
    let ChannelParts {
        mut data_in,
        ext_in,
        mut data_out,
        mut ext_out,
        control,
        mut requests,
    } = channel.split();
    drop(ext_in);
    let mut pty: Option<sshq_core::channel::PtyRequest> = None;
    let mut env: Vec<(String, String)> = Vec::new();
    let mut agent: Option<super::agent::AgentSocket> = None;

    let mut session = loop {
        let Some(incoming) = requests.next().await else {
            return; // closed before anything ran
        };
        let program = match incoming.request {
            ChannelRequest::Pty(request) => {
                // no-pty (or restrict) on the key's authorized_keys line.
                let ok = pty.is_none() && ctx.key_options.pty;
                if !ctx.key_options.pty {
                    tracing::info!("{}: pty refused: the key's options say no-pty", ctx.peer);
                }
                if ok {
                    pty = Some(request);
                }
                incoming.reply.send(ok);
                continue;
            }
            ChannelRequest::Env { name, value } => {
                let ok = super::limits::env_allowed(env.len(), &name, &ctx.peer)
                    && ctx
                        .accept_env
                        .iter()
                        .any(|p| sshq_core::pattern::matches(p, &name));
                if ok {
                    env.push((name, value));
                } else {
                    tracing::debug!(
                        "{}: env {} not in AcceptEnv",
                        ctx.peer,
                        log_escape::peer_text(&name)
                    );
                }
                incoming.reply.send(ok);
                continue;
            }
            ChannelRequest::WindowChange(size) => {
                if let Some(pty) = &mut pty {
                    pty.size = size;
                }
                continue;
            }
            ChannelRequest::AgentForward => {
                let ok = if !ctx.forwarding.allow_agent {
                    tracing::info!("{}: agent forwarding refused by configuration", ctx.peer);
                    false
                } else if agent.is_some() {
                    true
                } else {
                    match super::agent::AgentSocket::start(conn.clone(), &ctx.user, &ctx.peer).await
                    {
                        Ok(socket) => {
                            agent = Some(socket);
                            true
                        }
                        Err(e) => {
                            tracing::error!("{}: cannot set up agent forwarding: {e}", ctx.peer);
                            false
                        }
                    }
                };
                incoming.reply.send(ok);
                continue;
            }
            ChannelRequest::Shell => Program::Shell,
            ChannelRequest::Exec(command) => Program::Command(command),
            ChannelRequest::Subsystem(name) if name == crate::reattach::wire::SUBSYSTEM => {
                // A held session would run outside ChrootDirectory or
                // ForceCommand internal-sftp: not offered under them.
                let offered =
                    super::reattach::offered(&ctx, pty.is_some()).filter(|_| !confined(&ctx));
                incoming.reply.send(offered.is_some());
                let Some(directory) = offered else {
                    continue; // the client goes on with an ordinary session
                };
                drop(ext_out);
                let setup = super::reattach::Setup {
                    pty,
                    env,
                    agent,
                    directory,
                };
                let channel = super::reattach::ChannelHalves::<C::Channel> {
                    data_in,
                    data_out,
                    control,
                    requests,
                };
                super::reattach::serve(conn, channel, setup, ctx).await;
                return;
            }
            ChannelRequest::Subsystem(name) if sshq_quic::wire::udp_relay::is_subsystem(&name) => {
                let offered = super::udp_relay::offered(&ctx);
                incoming.reply.send(offered);
                if !offered {
                    tracing::info!(
                        "{}: {name} refused by AllowTcpForwarding or AllowUdpRelay",
                        ctx.peer
                    );
                    continue;
                }
                // Nothing reads requests while the relay runs: dropping the
                // stream refuses them, instead of filling its queue.
                drop(requests);
                super::udp_relay::serve(data_in, data_out, ext_out, control, &ctx).await;
                return;
            }
            ChannelRequest::Subsystem(name) => {
                match ctx.subsystems.iter().find(|(n, _)| *n == name) {
                    Some((_, command)) => Program::Subsystem(command.clone()),
                    None => {
                        tracing::info!(
                            "{}: subsystem request for {} refused: not configured",
                            ctx.peer,
                            log_escape::peer_text(&name)
                        );
                        incoming.reply.send(false);
                        continue;
                    }
                }
            }
            other => {
                tracing::debug!(
                    "{}: refused channel request {}",
                    ctx.peer,
                    other.wire_name()
                );
                incoming.reply.send(false);
                continue;
            }
        };
        let mut env = env.clone();
        let program = match sftp_forced(&ctx, &program) {
            SftpForced::No => forced(&ctx, program, &mut env),
            SftpForced::Serve(line) => Program::Subsystem(line),
            SftpForced::Refuse => {
                incoming.reply.send(true);
                refuse_non_sftp(&mut data_out, &control, pty.is_some(), &ctx).await;
                return;
            }
        };
        match start_program(&ctx, program, pty.clone(), env, &agent).await {
            Ok(session) => {
                incoming.reply.send(true);
                break session;
            }
            Err(e) => {
                tracing::error!("{}: cannot start session: {e}", ctx.peer);
                incoming.reply.send(false);
            }
        }
    };

    let stdin = session.take_stdin();
    let stdout = session.take_stdout();
    let stderr = session.take_stderr();
    let input = tokio::spawn(async move {
        if let Some(mut stdin) = stdin {
            let _ = crate::io::copy_buffered(&mut data_in, &mut stdin).await;
            let _ = stdin.shutdown().await;
        }
    });
    // eow@openssh.com: the client's output is gone. As sshd does, stop
    // reading the program's output and close our end, so its next write
    // gets SIGPIPE (EPIPE) and it ends the usual way; stderr still flows.
    // With a pty this only stops reading the terminal, as in sshd (its
    // master stays open for input and window changes).
    let end_of_write = Notify::new();
    let output = async {
        let out = async {
            tokio::select! {
                () = pump(stdout, &mut data_out) => {}
                // Drops the reader, closing the pipe.
                () = end_of_write.notified() => {}
            }
        };
        let err = pump(stderr, &mut ext_out);
        tokio::join!(out, err);
    };
    let exit = session.wait();
    // Requests keep flowing while the program runs; if the client closes the
    // channel first, everything is dropped and the process with it.
    let status = tokio::select! {
        (_, status) = async { tokio::join!(output, exit) } => Some(status),
        () = handle_running_requests(&mut requests, &session, &end_of_write, &ctx) => None,
        () = control.closed() => None,
    };
    input.abort();
    match status {
        Some(Ok(status)) => {
            let request = status.into_request();
            // The status goes before EOF: over QUIC, EOF is the stream's
            // FIN, after which this side sends nothing more.
            let _ = control.request(request, false).await;
            let _ = data_out.shutdown().await;
        }
        Some(Err(e)) => tracing::error!("{}: lost track of the session process: {e}", ctx.peer),
        None => {} // the client closed the channel: dropping the process ends it
    }
    control.close().await;
    drop(session);
    drop(agent);
}

/// The answer to a `signal` request: whether it was sent (why not is
/// logged, never told to the client, as in sshd).
pub(super) fn signal_answer(
    sent: Result<(), process::SignalError>,
    name: &str,
    peer: &str,
) -> bool {
    match sent {
        Ok(()) => true,
        Err(e) => {
            tracing::info!(
                "{}: signal {}: {}",
                peer,
                log_escape::peer_text(name),
                log_escape::peer_text(&e.to_string())
            );
            false
        }
    }
}

/// The program a session runs: `command=` on the key's authorized_keys
/// line replaces what the client asked for (a shell, a command or a
/// subsystem), as in sshd; a command asked for is then in
/// SSH_ORIGINAL_COMMAND (set after the client's variables, so it wins).
pub(super) fn forced(
    ctx: &SessionContext,
    program: Program,
    env: &mut Vec<(String, String)>,
) -> Program {
    let Some(command) = &ctx.key_options.command else {
        return program;
    };
    // Not bytes: the environment is text here (invalid UTF-8 is replaced).
    let original = match &program {
        Program::Command(original) => Some(String::from_utf8_lossy(original).into_owned()),
        // sshd's too: the subsystem's configured command line.
        Program::Subsystem(line) => Some(line.clone()),
        Program::Shell => None,
    };
    if let Some(original) = original {
        env.push(("SSH_ORIGINAL_COMMAND".to_string(), original));
    }
    tracing::debug!("{}: forced command (key option)", ctx.peer);
    Program::Command(command.clone().into_bytes())
}

/// What `ForceCommand internal-sftp` (or a key's `command="internal-sftp"`)
/// makes of a request, as sshd's do_exec decides it.
enum SftpForced {
    /// No forced internal-sftp: the usual rules.
    No,
    /// A subsystem request: the SFTP server, with the forced command's
    /// options.
    Serve(String),
    /// A shell or command: sshd's refusal.
    Refuse,
}

fn sftp_forced(ctx: &SessionContext, program: &Program) -> SftpForced {
    match &ctx.key_options.command {
        Some(command) if super::sftp::is_internal_sftp(command) => match program {
            Program::Subsystem(_) => SftpForced::Serve(command.clone()),
            _ => SftpForced::Refuse,
        },
        _ => SftpForced::No,
    }
}

/// Whether the connection's sessions are confined to internal-sftp (and a
/// chroot): ChrootDirectory, or a forced internal-sftp.
fn confined(ctx: &SessionContext) -> bool {
    ctx.chroot_directory.is_some()
        || ctx
            .key_options
            .command
            .as_deref()
            .is_some_and(super::sftp::is_internal_sftp)
}

/// A shell or command under a forced internal-sftp: sshd's child prints
/// its message and exits 1, which is what the client sees here too.
async fn refuse_non_sftp<W: AsyncWrite + Unpin, K: ChannelControl>(
    data_out: &mut W,
    control: &K,
    pty: bool,
    ctx: &SessionContext,
) {
    tracing::error!("Connection from {}: refusing non-sftp session", ctx.peer);
    let message = if pty {
        super::sftp::SFTP_ONLY.replace('\n', "\r\n")
    } else {
        super::sftp::SFTP_ONLY.to_string()
    };
    let _ = data_out.write_all(message.as_bytes()).await;
    let _ = control.request(ChannelRequest::ExitStatus(1), false).await;
    let _ = data_out.shutdown().await;
    control.close().await;
}

/// Starts `program` for the session's user. The NSS group lookup,
/// /etc/nologin and fork/exec block: off the async worker, so one slow
/// start stalls no other client. The program may be gone before the caller
/// runs again; its exit status and EOF still follow the answer the caller
/// sends, which the transports guarantee (over QUIC the FIN waits for
/// answers owed).
pub(super) async fn start_program(
    ctx: &SessionContext,
    program: Program,
    pty: Option<sshq_core::channel::PtyRequest>,
    env: Vec<(String, String)>,
    agent: &Option<super::agent::AgentSocket>,
) -> Result<SessionProcess, StartError> {
    let user_env = user_environment(ctx).await?;
    let request = SpawnRequest {
        user: ctx.user.clone(),
        program,
        pty,
        env,
        user_env,
        ssh_connection: ctx.ssh_connection.clone(),
        auth_sock: agent.as_ref().map(|socket| socket.path().to_path_buf()),
        pam_service: ctx.pam_service.clone(),
    };
    let chroot = match &ctx.chroot_directory {
        Some(template) => Some(
            super::sftp::chroot::expand(template, &ctx.user)
                .map_err(|refused| process::SpawnError::Chroot(refused.0))?,
        ),
        None => None,
    };
    let started = super::blocking::off_worker(
        "starting the session program",
        super::blocking::SPAWN_LIMIT,
        move || process::spawn_confined(request, chroot.as_deref()),
    )
    .await;
    Ok(started??)
}

/// Why a session's program did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Spawn(#[from] process::SpawnError),
    #[error("{0}")]
    Blocking(#[from] super::blocking::BlockingError),
    #[error("{0}")]
    UserEnvironment(#[from] user_env::TooManyLines),
}

/// Copies a program's output to the channel until the program closes it.
async fn pump<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(from: Option<R>, to: &mut W) {
    if let Some(from) = from {
        let _ = crate::io::copy_large(from, to).await;
    }
}

/// window-change, signal and eow@openssh.com (which wakes `end_of_write`)
/// while the program runs. Never returns: when
/// the client sends no more requests (over QUIC that is just its EOF), the
/// program keeps running until it exits or the channel is closed.
async fn handle_running_requests<R: RequestStream>(
    requests: &mut R,
    session: &SessionProcess,
    end_of_write: &Notify,
    ctx: &SessionContext,
) {
    while let Some(incoming) = requests.next().await {
        let ok = match &incoming.request {
            ChannelRequest::WindowChange(size) => session
                .resize(size.cols, size.rows, size.pix_width, size.pix_height)
                .is_ok(),
            ChannelRequest::Signal(name) => signal_answer(session.signal(name), name, &ctx.peer),
            // Never confirmed, as in sshd (OpenSSH asks for no reply).
            ChannelRequest::Unknown { name } if name == END_OF_WRITE => {
                tracing::debug!("{}: {END_OF_WRITE}: closing the program's output", ctx.peer);
                end_of_write.notify_one();
                false
            }
            other => {
                tracing::debug!(
                    "{}: refused channel request {} on a running session",
                    ctx.peer,
                    other.wire_name()
                );
                false
            }
        };
        incoming.reply.send(ok);
    }
    std::future::pending::<()>().await;
}
