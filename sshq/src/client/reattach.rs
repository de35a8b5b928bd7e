//! The client's side of reattachable sessions (draft §8.12): running a pty
//! session through `sshq-session@sshq.dev`, and taking it over again on a
//! new connection after the old one was lost.
//!
//! What survives a lost connection is a [`Carry`]: the local terminal
//! (raw mode, the thread reading it, escape recognition), the session's
//! token, how much output arrived, and the input the server has not
//! acknowledged. `super::run` reconnects and calls [`resume`] with it.

use std::sync::Arc;
use std::time::Duration;

use sshq_core::channel::{ChannelKind, ChannelRequest};
use sshq_core::error::TransportError;
use sshq_core::transport::{Channel, ChannelControl, ChannelParts, Connection, RequestStream};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::command_line::CommandLine;
use super::escape::{Escape, EscapeFilter, Piece};
use super::session::{RemoteExit, SessionEnd, SessionError};
use super::terminal;
use crate::reattach::replay::InputLog;
use crate::reattach::wire::{Frame, Program, Token};
use crate::reattach::{send, FrameReader};

/// How often the server hears how much output arrived: what it may drop
/// from its replay buffer.
const OUTPUT_ACK_INTERVAL: Duration = Duration::from_millis(500);
/// ... or sooner, once this much arrived unacknowledged: the server stops
/// reading the program's output while its buffer (at least 64 KiB, sshqd's
/// `ClientReattachBuffer`) holds only unacknowledged bytes, so
/// acknowledgements must come well before that fills.
const OUTPUT_ACK_BYTES: u64 = 16 * 1024;
/// The most unacknowledged input kept for a resend; past it the terminal
/// is not read until the server catches up (a paste into a stalled link
/// waits instead of growing without bound).
const INPUT_LOG_LIMIT: usize = 1024 * 1024;

/// How long typed input may go unanswered (no acknowledgement, no output,
/// nothing at all from the server) before the connection counts as lost.
/// TCP alone would notice a path that vanished (the laptop moved to
/// another network) only after many minutes of retransmissions, and
/// QUIC's idle timeout after a minute; a user who types and sees nothing
/// for this long is better served by a new connection. An idle session is
/// not probed: nothing is lost by noticing at the next keystroke.
const SILENCE_LIMIT: Duration = Duration::from_secs(10);

/// How long a reattach waits for the server's answer to RESUME before it
/// counts the new connection as lost too.
const RESUME_LIMIT: Duration = Duration::from_secs(20);

/// How long `~.` waits for the server to confirm the end of the session.
const END_CONFIRMATION: Duration = Duration::from_secs(2);

/// The local terminal of an interactive session, kept across connections.
pub struct LocalTerminal {
    chunks: mpsc::Receiver<Vec<u8>>,
    /// SIGHUP (the terminal closed) and SIGTERM: the user is gone, and so
    /// is any reason to hold the session.
    hangup: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
    stdin_ended: bool,
    escape: Option<EscapeFilter>,
    escape_char: Option<u8>,
    _raw: Option<terminal::RawMode>,
}

impl LocalTerminal {
    /// Raw mode on (if stdin is a terminal) and stdin read from now on.
    pub fn open(escape_char: Option<u8>, null_stdin: bool) -> LocalTerminal {
        let chunks = if null_stdin {
            mpsc::channel(1).1
        } else {
            super::session::read_stdin_in_chunks()
        };
        use tokio::signal::unix::{signal, SignalKind};
        LocalTerminal {
            chunks,
            hangup: signal(SignalKind::hangup()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
            stdin_ended: null_stdin,
            escape: escape_char.map(EscapeFilter::new),
            escape_char,
            _raw: terminal::RawMode::enter(),
        }
    }

    /// The next input: bytes or escapes, the end of stdin, or the signal
    /// that tells sshq to go.
    async fn next(&mut self) -> Input {
        async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        let chunks = &mut self.chunks;
        let stdin_ended = self.stdin_ended;
        let chunk = async {
            if stdin_ended {
                return std::future::pending().await;
            }
            chunks.recv().await
        };
        let chunk = tokio::select! {
            chunk = chunk => chunk,
            () = recv(&mut self.hangup) => return Input::Killed(libc::SIGHUP),
            () = recv(&mut self.terminate) => return Input::Killed(libc::SIGTERM),
        };
        match chunk {
            Some(chunk) => Input::Pieces(match &mut self.escape {
                Some(filter) => filter.filter(&chunk),
                None => vec![Piece::Bytes(chunk)],
            }),
            None => {
                self.stdin_ended = true;
                Input::Ended
            }
        }
    }
}

/// What [`LocalTerminal::next`] brings.
enum Input {
    Pieces(Vec<Piece>),
    Ended,
    Killed(i32),
}

/// A session the server holds for us.
pub struct HeldSession {
    token: Token,
    hold: Duration,
    output_received: u64,
    output_acked: u64,
    input: InputLog,
    eof_sent: bool,
}

/// What survives from one connection to the next.
pub struct Carry {
    pub terminal: LocalTerminal,
    pub session: HeldSession,
    /// The host, for messages.
    pub host: String,
}

impl Carry {
    /// How long the server keeps the session once the connection is lost.
    pub fn hold(&self) -> Duration {
        self.session.hold
    }
}

/// How an attachment ended.
pub enum Outcome {
    /// The remote program ended.
    Exited(RemoteExit),
    /// The user typed `~.`.
    Terminated,
    /// sshq got SIGHUP or SIGTERM (this number).
    Killed(i32),
    /// Our stdout is gone (the reader of `sshq -t host cmd | head -1`
    /// exited): the session is given up, as ssh's eow@openssh.com has sshd
    /// end the command.
    OutputGone,
    /// The connection or channel went; the session can be resumed.
    Lost(String),
}

/// Asks for `sshq-session@sshq.dev` on a channel that has its pty; `false`
/// when the server does not offer it (an OpenSSH server, sshqd with
/// `ClientReattachTimeout 0`): the channel is then used as usual.
pub async fn ask<K: ChannelControl>(control: &K) -> Result<bool, TransportError> {
    let request = ChannelRequest::Subsystem(crate::reattach::wire::SUBSYSTEM.to_string());
    control.request(request, true).await
}

/// The halves of a channel a reattachable session uses (a pty has no
/// separate stderr).
pub struct Halves<R, W, K, Q> {
    pub data_in: R,
    pub data_out: W,
    pub control: K,
    pub requests: Q,
}

/// Starts `program` on a channel the server granted the subsystem, and runs
/// the session until it ends or the connection is lost.
pub async fn start<R, W, K, Q>(
    channel: Halves<R, W, K, Q>,
    program: Program,
    terminal: LocalTerminal,
    host: &str,
    held: &std::sync::atomic::AtomicBool,
    commands: CommandLine,
) -> Result<SessionEnd, SessionError>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
    K: ChannelControl,
    Q: RequestStream,
{
    let Halves {
        data_in,
        data_out: mut writer,
        control,
        requests,
    } = channel;
    let mut frames = FrameReader::new(data_in);
    let refused = |what: String| SessionError::Reattach(what);
    send(&mut writer, &Frame::Start(program))
        .await
        .map_err(|e| refused(e.to_string()))?;
    let session = match frames.next().await {
        Ok(Some(Frame::Session { token, hold_secs })) => HeldSession {
            token,
            hold: Duration::from_secs(u64::from(hold_secs)),
            output_received: 0,
            output_acked: 0,
            input: InputLog::default(),
            eof_sent: false,
        },
        Ok(Some(Frame::Refused(reason))) => return Err(refused(reason)),
        Ok(other) => return Err(refused(format!("unexpected answer {other:?}"))),
        Err(e) => return Err(refused(e.to_string())),
    };
    // The server holds a session for its full time only once we show that
    // SESSION arrived (draft §8.12.2): acknowledge it at once.
    send(&mut writer, &Frame::Ack(0))
        .await
        .map_err(|e| refused(e.to_string()))?;
    // ServerAliveInterval's verdict now leads to a reattach (run_watched).
    held.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut carry = Carry {
        terminal,
        session,
        host: host.to_string(),
    };
    let channel = (frames, writer, Arc::new(control), requests);
    let outcome = attached(channel, &mut carry, &commands).await;
    Ok(outcome.into_end(carry))
}

impl Outcome {
    /// The session's end as `super::run` sees it.
    pub fn into_end(self, carry: Carry) -> SessionEnd {
        match self {
            Outcome::Exited(exit) => SessionEnd::Exited(exit),
            Outcome::Terminated => SessionEnd::Terminated,
            Outcome::Killed(signal) => SessionEnd::Killed(signal),
            Outcome::OutputGone => SessionEnd::Exited(RemoteExit::Unknown),
            Outcome::Lost(why) => SessionEnd::Lost {
                why,
                carry: Box::new(carry),
            },
        }
    }
}

/// What a failure while resuming means: a connection (or channel) that
/// went is one more lost connection, tried again; anything else is the
/// server's answer, made into an error by `otherwise`.
fn lost_or(
    error: TransportError,
    otherwise: impl FnOnce(TransportError) -> SessionError,
) -> Result<Outcome, SessionError> {
    match error {
        TransportError::ConnectionClosed(_)
        | TransportError::ChannelClosed
        | TransportError::Io(_) => Ok(Outcome::Lost(error.to_string())),
        error => Err(otherwise(error)),
    }
}

/// Takes the held session over on `conn`; runs `after_resumed` (the -R
/// requests) once the server has handed it over. With `agent_forward`, the
/// session's agent socket on the server is pointed at this connection.
pub async fn resume<C: Connection>(
    conn: &C,
    carry: &mut Carry,
    agent_forward: bool,
    commands: CommandLine,
    after_resumed: impl std::future::Future<Output = ()>,
) -> Result<Outcome, SessionError> {
    // The new connection may go as soon as it came (a server shutting
    // down as it lets us in): one more lost connection, tried again.
    let channel = match conn.open_channel(ChannelKind::Session).await {
        Ok(channel) => channel,
        Err(e) => return lost_or(e, SessionError::OpenFailed),
    };
    let ChannelParts {
        data_in,
        data_out: mut writer,
        control,
        requests,
        ..
    } = channel.split();
    if agent_forward {
        if let Err(e) = control.request(ChannelRequest::AgentForward, false).await {
            return lost_or(e, SessionError::from);
        }
    }
    let mut frames = FrameReader::new(data_in);
    let resume = Frame::Resume {
        token: carry.session.token.clone(),
        output_received: carry.session.output_received,
    };
    // RESUME goes out behind the subsystem request rather than after its
    // answer: with the login, the open and the request it makes one round
    // trip, so a QUIC reattach shows the first replayed byte two round
    // trips after its first packet (draft §8.12.7), as a fresh session its
    // first output. The server keeps channel data until the subsystem
    // reads it; one that refuses the subsystem never reads it.
    let (offered, sent) = tokio::join!(ask(&control), send(&mut writer, &resume));
    let offered = match offered {
        Ok(offered) => offered,
        Err(e) => return lost_or(e, SessionError::from),
    };
    if !offered {
        return Err(SessionError::Reattach(
            "the server no longer offers reattachable sessions".into(),
        ));
    }
    // The connection may go again before the answer: that is one more
    // lost connection (tried again), not the end of the session.
    if let Err(e) = sent {
        return Ok(Outcome::Lost(e.to_string()));
    }
    let answer = tokio::time::timeout(RESUME_LIMIT, frames.next()).await;
    let (input_received, output_from) = match answer {
        Ok(Ok(Some(Frame::Resumed {
            input_received,
            output_from,
        }))) => (input_received, output_from),
        Ok(Ok(Some(Frame::Refused(reason)))) => return Err(SessionError::SessionGone(reason)),
        Ok(Ok(Some(other))) => {
            let what = format!("unexpected answer {other:?}");
            return Err(SessionError::Reattach(what));
        }
        Ok(Ok(None)) => return Ok(Outcome::Lost("the channel closed before RESUMED".into())),
        Ok(Err(e)) => return Ok(Outcome::Lost(e.to_string())),
        Err(_) => {
            return Ok(Outcome::Lost(format!(
                "no answer to RESUME within {RESUME_LIMIT:?}"
            )))
        }
    };
    let session = &mut carry.session;
    if output_from < session.output_received {
        let what = "the server resumed before what we had received".to_string();
        return Err(SessionError::Reattach(what));
    }
    let lost = output_from - session.output_received;
    if lost > 0 {
        status_line(&format!(
            "sshq: {lost} bytes of output were lost while disconnected \
             (more than the server holds); the screen is redrawn"
        ));
        session.output_received = output_from;
    }
    session.output_acked = session.output_received;
    // Input typed while disconnected (or in flight when the link went):
    // everything the server did not get goes again, before anything new.
    if session.input.ack(input_received).is_err() {
        let what = "the server acknowledged input never sent".to_string();
        return Err(SessionError::Reattach(what));
    }
    let pending = session.input.since(input_received);
    if !pending.is_empty() {
        if let Err(e) = crate::reattach::send_data(&mut writer, &pending).await {
            return Ok(Outcome::Lost(e.to_string()));
        }
    }
    if carry.terminal.stdin_ended && !session.eof_sent {
        session.eof_sent = send(&mut writer, &Frame::Eof).await.is_ok();
    }
    after_resumed.await;
    let control = Arc::new(control);
    // The terminal may have changed size while disconnected.
    let size = terminal::local_window_size();
    let _ = control
        .request(ChannelRequest::WindowChange(size), false)
        .await;
    Ok(attached((frames, writer, control, requests), carry, &commands).await)
}

/// Runs an attached session: input out (filtered for escapes, logged until
/// acknowledged), output in (counted and acknowledged), window changes out.
async fn attached<R, W, K, Q>(
    channel: (FrameReader<R>, W, Arc<K>, Q),
    carry: &mut Carry,
    commands: &CommandLine,
) -> Outcome
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
    K: ChannelControl,
    Q: RequestStream,
{
    let (mut frames, mut writer, control, mut requests) = channel;
    let resize = super::AbortOnDrop(tokio::spawn(super::session::forward_window_changes(
        control.clone(),
    )));
    let mut stdout = tokio::io::stdout();
    let mut exit: Option<RemoteExit> = None;
    let mut ack_due = Instant::now() + OUTPUT_ACK_INTERVAL;
    // Since when input has waited for the server's acknowledgement, and
    // when the server was last heard from: see SILENCE_LIMIT.
    let mut waiting_since: Option<Instant> = None;
    let mut last_heard = Instant::now();
    let Carry {
        terminal, session, ..
    } = carry;
    let outcome = loop {
        let unacked = session.output_received - session.output_acked;
        let read_input = session.input.len() < INPUT_LOG_LIMIT;
        let silent_until = waiting_since.map(|since| since.max(last_heard) + SILENCE_LIMIT);
        tokio::select! {
            frame = frames.next() => match frame {
                Ok(Some(Frame::Data(bytes))) => {
                    last_heard = Instant::now();
                    if stdout.write_all(&bytes).await.is_err() || stdout.flush().await.is_err() {
                        break Outcome::OutputGone;
                    }
                    session.output_received =
                        session.output_received.saturating_add(bytes.len() as u64);
                    if session.output_received - session.output_acked >= OUTPUT_ACK_BYTES {
                        if let Err(e) = ack(&mut writer, session).await {
                            break Outcome::Lost(e.to_string());
                        }
                    }
                }
                Ok(Some(Frame::Ack(offset))) => {
                    last_heard = Instant::now();
                    if session.input.ack(offset).is_err() {
                        break Outcome::Lost("the server acknowledged input never sent".into());
                    }
                }
                Ok(Some(other)) => break Outcome::Lost(format!("unexpected {other:?} from the server")),
                Ok(None) => {
                    // The exit status may be queued on the requests still.
                    if exit.is_none() {
                        wait_for_exit(&mut requests, &mut exit).await;
                    }
                    match &exit {
                        Some(status) => break Outcome::Exited(status.clone()),
                        None => break Outcome::Lost("the server's stream ended".into()),
                    }
                }
                Err(e) => break Outcome::Lost(e.to_string()),
            },
            input = terminal.next(), if read_input => {
                let pieces = match input {
                    Input::Pieces(pieces) => pieces,
                    Input::Killed(signal) => break Outcome::Killed(signal),
                    Input::Ended => {
                        if !session.eof_sent {
                            session.eof_sent = send(&mut writer, &Frame::Eof).await.is_ok();
                        }
                        continue;
                    }
                };
                let escape_char = terminal.escape_char;
                match send_input(&mut writer, session, escape_char, pieces, commands).await {
                    Ok(None) => {}
                    Ok(Some(outcome)) => break outcome,
                    Err(e) => break Outcome::Lost(e.to_string()),
                }
            },
            request = requests.next() => match request {
                Some(incoming) => {
                    match &incoming.request {
                        ChannelRequest::ExitStatus(code) => exit = Some(RemoteExit::Status(*code)),
                        ChannelRequest::ExitSignal(signal) => {
                            exit = Some(RemoteExit::Signal(signal.signal.clone()))
                        }
                        other => tracing::debug!("ignoring channel request {}", other.wire_name()),
                    }
                    incoming.reply.send(false);
                }
                None => {
                    // No more requests: the output may still be draining.
                    let outcome = drain(&mut frames, &mut stdout, session).await;
                    break match (outcome, &exit) {
                        (Ok(()), Some(status)) => Outcome::Exited(status.clone()),
                        (Ok(()), None) => Outcome::Lost("the channel closed".into()),
                        (Err(e), _) => Outcome::Lost(e.to_string()),
                    };
                }
            },
            () = tokio::time::sleep_until(ack_due), if unacked > 0 => {
                if let Err(e) = ack(&mut writer, session).await {
                    break Outcome::Lost(e.to_string());
                }
            }
            () = sleep_until_some(silent_until) => {
                break Outcome::Lost(format!(
                    "the server has not answered typed input for {} s",
                    SILENCE_LIMIT.as_secs()
                ));
            }
        }
        if session.output_acked == session.output_received {
            ack_due = Instant::now() + OUTPUT_ACK_INTERVAL;
        }
        // Input waits for its acknowledgement from when it is first
        // unacknowledged, however much more is typed meanwhile.
        if session.input.is_empty() {
            waiting_since = None;
        } else if waiting_since.is_none() {
            waiting_since = Some(Instant::now());
        }
    };
    if let Outcome::Exited(_) = &outcome {
        // All output is here: say so, which lets the server forget the
        // session, and wait for it to close the channel, so the
        // acknowledgement is not lost with the connection.
        if ack(&mut writer, session).await.is_ok() {
            let _ = tokio::time::timeout(END_CONFIRMATION, control.closed()).await;
        }
    }
    if matches!(
        outcome,
        Outcome::Terminated | Outcome::Killed(_) | Outcome::OutputGone
    ) {
        // Nothing is held for a session the user left. The server closes
        // the channel once it has ended the session; until then END may
        // still be in flight, and closing the connection (which a QUIC
        // close does at once) would lose it, leaving the session held.
        let _ = send(&mut writer, &Frame::End).await;
        let _ = writer.shutdown().await;
        let _ = tokio::time::timeout(END_CONFIRMATION, control.closed()).await;
        control.close().await;
    }
    drop(resize);
    outcome
}

/// Sleeps until `deadline`; for ever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Sends the input pieces; acts on escapes.
async fn send_input<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut W,
    session: &mut HeldSession,
    escape_char: Option<u8>,
    pieces: Vec<Piece>,
    commands: &CommandLine,
) -> std::io::Result<Option<Outcome>> {
    for piece in pieces {
        match piece {
            Piece::Bytes(bytes) => {
                session.input.push(&bytes);
                crate::reattach::send_data(writer, &bytes).await?;
            }
            Piece::Escape(Escape::Terminate) => return Ok(Some(Outcome::Terminated)),
            Piece::Escape(Escape::Rekey) => super::command_line::rekey(commands).await,
            Piece::Escape(escape) => {
                let status = format!(
                    "sshq: reattachable session, held {} s by the server if the connection \
                     is lost; {} bytes of output received, {} bytes of input not yet \
                     acknowledged\r\n",
                    session.hold.as_secs(),
                    session.output_received,
                    session.input.len()
                );
                super::escape::act_locally(escape, escape_char.unwrap_or(b'~'), &status);
            }
            other => super::command_line::interact(&other, Some(commands)).await,
        }
    }
    Ok(None)
}

async fn ack<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut W,
    session: &mut HeldSession,
) -> std::io::Result<()> {
    send(writer, &Frame::Ack(session.output_received)).await?;
    session.output_acked = session.output_received;
    Ok(())
}

/// After the frames ended without an exit status: a short wait for the
/// status, which travels apart from the data (and an ended session's
/// channel closes right after it).
async fn wait_for_exit<Q: RequestStream>(requests: &mut Q, exit: &mut Option<RemoteExit>) {
    let wait = async {
        while let Some(incoming) = requests.next().await {
            match &incoming.request {
                ChannelRequest::ExitStatus(code) => *exit = Some(RemoteExit::Status(*code)),
                ChannelRequest::ExitSignal(signal) => {
                    *exit = Some(RemoteExit::Signal(signal.signal.clone()))
                }
                _ => {}
            }
            incoming.reply.send(false);
            if exit.is_some() {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), wait).await;
}

/// Writes what output is left once the requests ended.
async fn drain<R: tokio::io::AsyncRead + Unpin>(
    frames: &mut FrameReader<R>,
    stdout: &mut tokio::io::Stdout,
    session: &mut HeldSession,
) -> Result<(), crate::reattach::FrameError> {
    loop {
        match frames.next().await {
            Ok(Some(Frame::Data(bytes))) => {
                let _ = stdout.write_all(&bytes).await;
                session.output_received =
                    session.output_received.saturating_add(bytes.len() as u64);
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                let _ = stdout.flush().await;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
}

/// Prints a line of sshq's own in a raw terminal.
pub fn status_line(text: &str) {
    terminal::print_now(&format!("\r\n{text}\r\n"));
}

impl LocalTerminal {
    /// While disconnected: the next escape typed, keeping other input for
    /// the resend. Resolves with `Terminated` on `~.`.
    pub async fn while_disconnected(&mut self, session: &mut HeldSession) -> Outcome {
        loop {
            if session.input.len() >= INPUT_LOG_LIMIT {
                return std::future::pending().await;
            }
            let pieces = match self.next().await {
                Input::Pieces(pieces) => pieces,
                Input::Killed(signal) => return Outcome::Killed(signal),
                Input::Ended => continue,
            };
            for piece in pieces {
                match piece {
                    Piece::Bytes(bytes) => session.input.push(&bytes),
                    Piece::Escape(Escape::Terminate) => return Outcome::Terminated,
                    Piece::Escape(Escape::Suspend) => terminal::suspend(),
                    Piece::Escape(_) => {
                        terminal::print_now("sshq: not connected; reconnecting (~. to give up)\r\n")
                    }
                    other => super::command_line::interact(&other, None).await,
                }
            }
        }
    }
}
