//! One interactive shell, command or subsystem on a `session` channel,
//! written once for every transport.

use std::io::IsTerminal;

use sshq_core::channel::{ChannelKind, ChannelRequest, PtyRequest};
use sshq_core::error::TransportError;
use sshq_core::transport::{Channel, ChannelControl, ChannelParts, Connection, RequestStream};
use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt};

use super::escape::{Escape, Piece};
use super::terminal;

/// What to run remotely, and how.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// `None`: an interactive shell.
    pub command: Option<Vec<u8>>,
    /// The command names a subsystem (-s).
    pub subsystem: bool,
    /// Request a pseudo-terminal.
    pub pty: bool,
    /// Terminal type for the pty ($TERM).
    pub term: String,
    /// Environment variables to send (SendEnv/SetEnv).
    pub env: Vec<(String, String)>,
    /// Read nothing from stdin (-n, -f).
    pub null_stdin: bool,
    /// Ask the server to forward our agent (-A, with an agent to forward).
    pub agent_forward: bool,
    /// Ask for a reattachable session when there is a pty (`Reattach`).
    pub reattach: bool,
    /// EscapeChar; `None` for `none`. Escapes are recognised only with a pty.
    pub escape_char: Option<u8>,
    /// The destination as named, for messages.
    pub host: String,
    /// Set once the server holds the session (its SESSION arrived): from
    /// then on a dead connection means reconnecting, not exiting.
    pub held: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The connection's login, which over QUIC runs alongside the session's
    /// first requests: the terminal is not put in raw mode nor read before
    /// it has succeeded, since a password prompt may need it meanwhile.
    pub login: LoginGate,
}

/// Whether a connection's login is over, for a session that runs
/// pipelined with it. The default is a login already done (TCP's).
#[derive(Debug, Clone, Default)]
pub struct LoginGate(Option<tokio::sync::watch::Receiver<Option<bool>>>);

impl LoginGate {
    /// A gate that opens when `login_done` is sent `Some(true)` (success)
    /// and stays shut for `Some(false)` or a dropped sender.
    pub fn pending() -> (tokio::sync::watch::Sender<Option<bool>>, LoginGate) {
        let (login_done, gate) = tokio::sync::watch::channel(None);
        (login_done, LoginGate(Some(gate)))
    }

    /// Waits for the login; whether it succeeded.
    pub async fn passed(&self) -> bool {
        let Some(gate) = &self.0 else {
            return true;
        };
        let mut gate = gate.clone();
        let outcome = gate.wait_for(Option::is_some).await.map(|done| *done);
        matches!(outcome, Ok(Some(true)))
    }
}

/// How a session ended, when it did not fail.
pub enum SessionEnd {
    /// The remote side ended.
    Exited(RemoteExit),
    /// The user typed `~.`.
    Terminated,
    /// sshq got SIGHUP or SIGTERM (this number) during a reattachable
    /// session, which has ended it.
    Killed(i32),
    /// The connection went while the server holds the session: the carry
    /// resumes it on a new connection.
    Lost {
        why: String,
        carry: Box<super::reattach::Carry>,
    },
}

/// How the remote side ended, turned into ssh's exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteExit {
    Status(u32),
    Signal(String),
    /// The channel closed without saying.
    Unknown,
}

impl RemoteExit {
    /// ssh's exit status: the remote one, or 255 when the command died by a
    /// signal or the status is unknown (OpenSSH prints nothing for either).
    pub fn exit_code(&self) -> i32 {
        match self {
            RemoteExit::Status(status) => (*status & 0xff) as i32,
            RemoteExit::Signal(_) | RemoteExit::Unknown => 255,
        }
    }
}

/// Why a session could not run.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// OpenSSH's wording, e.g. "exec request failed on channel 0".
    #[error("{0} request failed on channel 0")]
    RequestRefused(&'static str),
    #[error("channel 0: open failed: {0}")]
    OpenFailed(TransportError),
    #[error("{0}")]
    Transport(#[from] TransportError),
    /// The reattach protocol failed (a broken exchange, not a refusal).
    #[error("sshq: reattachable session: {0}")]
    Reattach(String),
    /// The server no longer holds the session.
    #[error("sshq: the session is gone: {0}")]
    SessionGone(String),
}

/// Runs the session to its end and returns how the remote side exited.
pub async fn run<C: Connection>(
    conn: &C,
    options: SessionOptions,
    commands: super::command_line::CommandLine,
) -> Result<SessionEnd, SessionError> {
    let channel = conn
        .open_channel(ChannelKind::Session)
        .await
        .map_err(SessionError::OpenFailed)?;
    let ChannelParts {
        data_in,
        ext_in,
        mut data_out,
        ext_out,
        control,
        mut requests,
    } = channel.split();
    drop(ext_out);

    // Whether the session has a pty: what a reattachable session needs.
    let mut has_pty = false;
    if options.pty {
        let pty = PtyRequest {
            term: options.term.clone(),
            size: terminal::local_window_size(),
            modes: terminal::local_terminal_modes(),
        };
        has_pty = control.request(ChannelRequest::Pty(pty), true).await?;
        if !has_pty {
            eprintln!("PTY allocation request failed on channel 0");
        }
    }
    for (name, value) in &options.env {
        let env = ChannelRequest::Env {
            name: name.clone(),
            value: value.clone(),
        };
        control.request(env, false).await?;
    }
    if options.agent_forward {
        // Like ssh: no reply wanted; a refusal only means no agent remotely.
        control.request(ChannelRequest::AgentForward, false).await?;
    }
    if has_pty && options.reattach && super::reattach::ask(&control).await? {
        wait_for_login(&options.login).await?;
        let program = match &options.command {
            Some(command) => crate::reattach::wire::Program::Command(command.clone()),
            None => crate::reattach::wire::Program::Shell,
        };
        drop(ext_in); // a pty has no separate stderr
        let terminal =
            super::reattach::LocalTerminal::open(options.escape_char, options.null_stdin);
        let channel = super::reattach::Halves {
            data_in,
            data_out,
            control,
            requests,
        };
        let held = &options.held;
        return super::reattach::start(channel, program, terminal, &options.host, held, commands)
            .await;
    }
    let (start, what) = match (&options.command, options.subsystem) {
        (Some(name), true) => (
            ChannelRequest::Subsystem(String::from_utf8_lossy(name).into_owned()),
            "subsystem",
        ),
        (Some(command), false) => (ChannelRequest::Exec(command.clone()), "exec"),
        (None, _) => (ChannelRequest::Shell, "shell"),
    };
    if !control.request(start, true).await? {
        return Err(SessionError::RequestRefused(what));
    }

    wait_for_login(&options.login).await?;
    let _raw = if options.pty {
        terminal::RawMode::enter()
    } else {
        None
    };

    let null_stdin = options.null_stdin;
    // Escapes, as in ssh, only in a session with a pty.
    let escape_char = options.escape_char.filter(|_| options.pty);
    let (terminate, mut terminated) = tokio::sync::oneshot::channel::<()>();
    let stdin_task = tokio::spawn(async move {
        if !null_stdin {
            let mut chunks = read_stdin_in_chunks();
            let mut escapes = escape_char.map(super::escape::EscapeFilter::new);
            while let Some(chunk) = chunks.recv().await {
                let pieces = match &mut escapes {
                    Some(filter) => filter.filter(&chunk),
                    None => vec![Piece::Bytes(chunk)],
                };
                for piece in pieces {
                    match piece {
                        Piece::Bytes(bytes) => {
                            if data_out.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                        Piece::Escape(Escape::Terminate) => {
                            let _ = terminate.send(());
                            return;
                        }
                        Piece::Escape(Escape::Rekey) => super::command_line::rekey(&commands).await,
                        Piece::Escape(escape) => super::escape::act_locally(
                            escape,
                            escape_char.unwrap_or(b'~'),
                            ORDINARY_STATUS,
                        ),
                        other => super::command_line::interact(&other, Some(&commands)).await,
                    }
                }
            }
        }
        // Local EOF becomes the remote command's EOF.
        let _ = data_out.shutdown().await;
    });
    let control = std::sync::Arc::new(control);
    let resize_task = options
        .pty
        .then(|| tokio::spawn(forward_window_changes(control.clone())));

    // Once our stdout is gone (the reader of `sshq host yes | head -1`
    // exited), the remote output has nowhere to go: give the channel up so
    // the server ends the command, as ssh's eow@openssh.com makes sshd do.
    let stdout_control = control.clone();
    let stdout = tokio::spawn(async move {
        if let Err(e) = copy_out(data_in, tokio::io::stdout()).await {
            tracing::debug!("channel 0: cannot write to stdout ({e}); closing the channel");
            stdout_control.abandon().await;
        }
    });
    let stderr = tokio::spawn(copy_out(ext_in, tokio::io::stderr()));
    let mut exit = RemoteExit::Unknown;
    let mut watching_escapes = true;
    loop {
        let incoming = tokio::select! {
            incoming = requests.next() => incoming,
            sent = &mut terminated, if watching_escapes => {
                if sent.is_err() {
                    watching_escapes = false; // stdin ended
                    continue;
                }
                // `~.`: the channel goes now, output and all.
                control.close().await;
                stdout.abort();
                stderr.abort();
                if let Some(task) = resize_task {
                    task.abort();
                }
                return Ok(SessionEnd::Terminated);
            }
        };
        let Some(incoming) = incoming else {
            break;
        };
        match &incoming.request {
            ChannelRequest::ExitStatus(status) => exit = RemoteExit::Status(*status),
            ChannelRequest::ExitSignal(signal) => exit = RemoteExit::Signal(signal.signal.clone()),
            other => tracing::debug!("ignoring channel request {}", other.wire_name()),
        }
        incoming.reply.send(false);
    }
    // The channel is closed: whatever output is buffered still gets written.
    let _ = stdout.await;
    let _ = stderr.await;
    stdin_task.abort();
    if let Some(task) = resize_task {
        task.abort();
    }
    Ok(SessionEnd::Exited(exit))
}

/// Holds the session back from the terminal until the login succeeded
/// (see [`SessionOptions::login`]); a failed login ends it, and the caller
/// reports the login's failure instead.
async fn wait_for_login(login: &LoginGate) -> Result<(), SessionError> {
    if login.passed().await {
        Ok(())
    } else {
        Err(SessionError::Transport(TransportError::ConnectionClosed(
            Some("the login did not succeed".to_string()),
        )))
    }
}

/// `~s` in an ordinary session.
const ORDINARY_STATUS: &str = "sshq: an ordinary session: it ends with the connection \
     (the server does not hold it for a reattach)\r\n";

/// How much of stdin one read takes. tokio's stdin reads 8 KiB at a time
/// through the blocking pool, which costs more CPU than the cipher on bulk
/// transfers; one thread doing large reads does not.
const STDIN_CHUNK: usize = 256 * 1024;

/// Reads stdin on a thread of its own, in large chunks, until EOF or error.
pub(crate) fn read_stdin_in_chunks() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        // One buffer, zeroed once: a pipe read returns at most 64 KiB, and
        // zeroing a fresh 256 KiB buffer per read measured as 6% of the
        // client's CPU on a bulk upload.
        let mut buffer = vec![0u8; STDIN_CHUNK];
        loop {
            match stdin.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    let chunk = buffer.get(..n).unwrap_or_default().to_vec();
                    if tx.blocking_send(chunk).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    });
    rx
}

async fn copy_out<R: AsyncBufRead + Unpin, W: AsyncWrite + Unpin>(
    from: R,
    mut to: W,
) -> std::io::Result<()> {
    crate::io::copy_buffered(from, &mut to).await.map(|_| ())
}

/// Sends window-change whenever the local terminal is resized (SIGWINCH).
pub(super) async fn forward_window_changes<K: ChannelControl>(control: std::sync::Arc<K>) {
    let Ok(mut winch) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
    else {
        return;
    };
    let mut last = terminal::local_window_size();
    while winch.recv().await.is_some() {
        let size = terminal::local_window_size();
        if size != last {
            last = size;
            if control
                .request(ChannelRequest::WindowChange(size), false)
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// Whether ssh would allocate a pty: `-T` never; `-tt` always; `-t` when
/// stdin is a terminal; by default only for an interactive shell on a
/// terminal. Returns the decision and OpenSSH's notice when a requested pty
/// is not allocated.
pub fn want_pty(tty_flag: u8, no_tty: bool, has_command: bool) -> (bool, Option<&'static str>) {
    let stdin_tty = std::io::stdin().is_terminal();
    if no_tty {
        return (false, None);
    }
    match tty_flag {
        0 if has_command => (false, None),
        0 | 1 if stdin_tty => (true, None),
        0 | 1 => (
            false,
            Some("Pseudo-terminal will not be allocated because stdin is not a terminal."),
        ),
        _ => (true, None),
    }
}
