//! The session holder: a small process per reattachable session that owns
//! its program, its pty and its replay buffer, so that the session outlives
//! not only its connection but sshqd itself (a restart, an upgrade, a
//! crash), as sshd's sessions outlive a restart of the listening sshd.
//!
//! sshqd starts one by running its own executable with [`HOLDER_ARG`] and
//! one end of a socket pair as standard input, and sends SPAWN on it. The
//! holder starts the program (as the user, exactly as sshqd would), listens
//! on its socket in the holder directory, and serves attachments: the
//! first on the socket pair, each later one on a connection from whichever
//! sshqd then runs. An attachment carries the session channel's bytes and
//! requests ([`super::holder_wire`]); the holder runs the session's side of
//! `sshq-session@sshq.dev` ([`super::attach`]) over it, so sshqd only
//! relays. The holder ends with its session.

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use sshq_core::channel::ChannelRequest;
use sshq_core::error::TransportError;
use sshq_core::transport::{ChannelControl, IncomingRequest, ReplyHandle, RequestStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, watch};

use super::super::process::{self, ExitStatus};
use super::attach::{self, Attached, Ended};
use super::held::{Held, HeldConfig};
use super::holder_wire::{AttachOrder, FromHolder, SpawnOrder, ToHolder, MAX_DATA};
use super::link::{HolderLink, LinkError};
use crate::reattach::wire::Frame;
use crate::reattach::FrameReader;

/// The argument that makes sshqd a session holder.
pub const HOLDER_ARG: &str = "--session-holder";

/// How long an ended session's holder waits for its attachments to deliver
/// the end before it exits.
const FINAL_DELIVERY: Duration = Duration::from_secs(15);

/// The holder's `main`: standard input is the socket pair from sshqd.
/// Returns the process's exit code.
pub fn run() -> i32 {
    // Its own session: a signal to sshqd's process group (Ctrl-C on a
    // foreground sshqd, a service manager stopping the group's leader) is
    // not for the sessions.
    let _ = nix::unistd::setsid();
    let stream = match take_stdin_socket() {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!("sshqd session holder: no socket from sshqd on standard input: {e}");
            return 1;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sshqd session holder: cannot start: {e}");
            return 1;
        }
    };
    match runtime.block_on(hold(stream)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("session holder: {e}");
            1
        }
    }
}

/// Moves standard input (the socket pair) to a close-on-exec descriptor and
/// puts /dev/null in its place, so the program never inherits it.
fn take_stdin_socket() -> std::io::Result<std::os::unix::net::UnixStream> {
    let stdin = std::io::stdin();
    let fd = nix::fcntl::fcntl(&stdin, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: F_DUPFD_CLOEXEC just returned this new descriptor, owned by
    // nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let null = std::fs::File::open("/dev/null")?;
    nix::unistd::dup2_stdin(&null)?;
    let stream = std::os::unix::net::UnixStream::from(owned);
    stream.set_nonblocking(true)?;
    Ok(stream)
}

/// Why a holder gave up.
#[derive(Debug, thiserror::Error)]
pub enum HolderError {
    #[error("{0}")]
    Link(#[from] LinkError),
    #[error("sshqd sent {0} where SPAWN was due")]
    NoSpawn(&'static str),
    #[error("cannot listen on {path}: {source}")]
    Listen {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

async fn hold(stream: std::os::unix::net::UnixStream) -> Result<(), HolderError> {
    let mut link = HolderLink::new(UnixStream::from_std(stream).map_err(LinkError::Io)?);
    let order = match link.receive::<ToHolder>().await? {
        Some(ToHolder::Spawn(order)) => *order,
        Some(other) => return Err(HolderError::NoSpawn(other.name())),
        None => return Err(HolderError::NoSpawn("nothing")),
    };
    order.log.init();
    let SpawnOrder {
        token,
        hold,
        buffer,
        label,
        log: _,
        request,
        socket,
    } = order;
    // Bound before the program starts: a socket that cannot be made would
    // be a session nobody can come back to.
    let _ = std::fs::remove_file(&socket);
    let listener =
        tokio::net::UnixListener::bind(&socket).map_err(|source| HolderError::Listen {
            path: socket.display().to_string(),
            source,
        })?;
    let socket_file = RemoveOnDrop(socket.clone());
    let size = request.pty.as_ref().map(|pty| pty.size).unwrap_or_default();
    let (uid, user_name) = (request.user.uid, request.user.name.clone());
    let spawned = match tokio::task::spawn_blocking(move || process::spawn(request)).await {
        Ok(spawned) => spawned.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let process = match spawned {
        Ok(process) => process,
        Err(why) => {
            link.send(&FromHolder::Failed(why)).await?;
            return Ok(());
        }
    };
    let pid = process.id();
    let config = HeldConfig {
        user_name,
        uid,
        label,
        hold,
        buffer,
    };
    let held = Held::start(token, process, size, config);
    link.send(&FromHolder::Started { pid }).await?;
    let mut attachments = tokio::task::JoinSet::new();
    attachments.spawn(serve_attachment(held.clone(), link));
    loop {
        let changed = held.changed();
        if held.finished() {
            break;
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    attachments.spawn(serve_attachment(held.clone(), HolderLink::new(stream)));
                }
                Err(e) => {
                    // Out of descriptors and the like: try again shortly.
                    tracing::debug!("session holder: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = changed => {}
            Some(_) = attachments.join_next(), if !attachments.is_empty() => {}
        }
    }
    // Nothing attaches any more, and the session counts for nobody; the
    // attached channel gets the end.
    drop(listener);
    drop(socket_file);
    let _ = tokio::time::timeout(FINAL_DELIVERY, async {
        while attachments.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// Removes the holder's socket when the holder is done with it.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One attachment: checks who asks, then runs the session's side of the
/// protocol over the link until the attachment ends.
async fn serve_attachment(held: Arc<Held>, mut link: HolderLink) {
    let order = match link.receive::<ToHolder>().await {
        Ok(Some(ToHolder::Attach(order))) => order,
        Ok(Some(other)) => {
            tracing::info!("session holder: {} where ATTACH was due", other.name());
            return;
        }
        Ok(None) => return,
        Err(e) => {
            // E.g. an sshqd of another version: the client hears why,
            // rather than trying again and again.
            tracing::info!("session holder: {e}");
            let why = format!("the session's holder cannot serve this sshqd: {e}");
            refuse(&mut link, &why).await;
            return;
        }
    };
    if let Err(why) = admitted(&held, &order, &link) {
        tracing::warn!("{}: attachment refused: {why}", order.peer);
        let gone = "no such session: it ended, or the server stopped holding it";
        refuse(&mut link, gone).await;
        return;
    }
    if order.resume_from.is_some() {
        held.confirm();
    }
    let (reader, writer) = link.into_split();
    let (client_in, data_in) = tokio::io::duplex(2 * MAX_DATA);
    let (data_out, server_out) = tokio::io::duplex(2 * MAX_DATA);
    let (messages, outgoing) = mpsc::unbounded_channel();
    let (closed_tx, closed) = watch::channel(false);
    let (requests_tx, requests) = mpsc::channel(super::relay::MAX_PENDING_REQUESTS);
    let control = HolderControl {
        messages: messages.clone(),
        closed,
    };
    let channel = Attached {
        frames: FrameReader::new(data_in),
        data_out,
        control,
        requests: HolderRequests(requests),
    };
    let inbound = inbound(reader, client_in, requests_tx, messages.clone(), closed_tx);
    let outbound = tokio::spawn(outbound(writer, server_out, outgoing));
    let ended = tokio::select! {
        ended = attach::serve(held.clone(), channel, order.resume_from, &order.peer) => ended,
        // The link itself may break while attach waits on its output.
        () = inbound => attach::Ended::Otherwise,
    };
    if ended == Ended::Superseded {
        // Ahead of the close, and of output the channel may never take.
        let _ = messages.send(FromHolder::Superseded);
        let _ = messages.send(FromHolder::Close);
    }
    if held.state().ended {
        let _ = messages.send(FromHolder::Ended);
    }
    drop(messages);
    let _ = outbound.await;
}

/// Refuses an attachment: a REFUSED frame for the client, then the close.
async fn refuse(link: &mut HolderLink, reason: &str) {
    let mut refusal = Vec::new();
    Frame::Refused(reason.to_string()).encode(&mut refusal);
    let _ = link.send(&FromHolder::ServerData(refusal)).await;
    let _ = link.send(&FromHolder::Close).await;
}

/// Whether `order` may attach: the session's own token and user, from
/// sshqd's own user (a socket in a private directory already says so).
fn admitted(held: &Held, order: &AttachOrder, link: &HolderLink) -> Result<(), &'static str> {
    let ours = nix::unistd::geteuid().as_raw();
    if link.peer_uid() != Some(ours) {
        return Err("the connection is not from sshqd's user");
    }
    if !held.token().matches(&order.token) {
        return Err("wrong token");
    }
    if held.uid() != order.uid || held.user_name() != order.user {
        return Err("another user's session");
    }
    Ok(())
}

/// Reads sshqd's messages for the attachment: channel bytes to the
/// session, requests to [`HolderRequests`], until the channel or the link
/// is gone. Returns then.
async fn inbound(
    mut reader: super::link::LinkReader,
    mut client_in: DuplexStream,
    requests: mpsc::Sender<IncomingRequest>,
    messages: mpsc::UnboundedSender<FromHolder>,
    closed: watch::Sender<bool>,
) {
    loop {
        let message = match reader.receive::<ToHolder>().await {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(e) => {
                tracing::info!("session holder: {e}");
                break;
            }
        };
        let (id, request) = match message {
            ToHolder::ClientData(bytes) => {
                if client_in.write_all(&bytes).await.is_err() {
                    break;
                }
                continue;
            }
            ToHolder::ClientEof => {
                let _ = client_in.shutdown().await;
                continue;
            }
            ToHolder::WindowChange { id, size } => (id, ChannelRequest::WindowChange(size)),
            ToHolder::Signal { id, name } => (id, ChannelRequest::Signal(name)),
            ToHolder::ChannelClosed => break,
            other => {
                tracing::info!("session holder: unexpected {} while attached", other.name());
                break;
            }
        };
        // id 0 wants no reply. sshqd keeps at most MAX_PENDING_REQUESTS
        // replies owed, so the answers waited for here are bounded too.
        let (reply, answer) = match id {
            0 => (ReplyHandle::none(), None),
            _ => {
                let (reply, answer) = oneshot::channel();
                (ReplyHandle::new(reply), Some(answer))
            }
        };
        // A client that floods requests while attach does not take them
        // (it is opening, or delivering the end) gets failures.
        if requests
            .try_send(IncomingRequest { request, reply })
            .is_err()
        {
            if id != 0 {
                let _ = messages.send(FromHolder::Reply { id, ok: false });
            }
            continue;
        }
        if let Some(answer) = answer {
            let messages = messages.clone();
            tokio::spawn(async move {
                let ok = answer.await.unwrap_or(false);
                let _ = messages.send(FromHolder::Reply { id, ok });
            });
        }
    }
    // The client's stream ends with the link, so that attach (waiting for
    // a last acknowledgement, say) sees the end at once.
    drop(client_in);
    let _ = closed.send(true);
    // The attachment ends through `closed`; this future must not end the
    // select in `serve_attachment` before attach has detached.
    std::future::pending::<()>().await
}

/// Writes the attachment's messages to sshqd: the output written to the
/// channel, in order with the requests and the close that follow it.
async fn outbound(
    mut writer: super::link::LinkWriter,
    mut server_out: DuplexStream,
    mut outgoing: mpsc::UnboundedReceiver<FromHolder>,
) {
    let mut chunk = vec![0u8; MAX_DATA];
    let mut output_ended = false;
    loop {
        tokio::select! {
            biased;
            message = outgoing.recv() => {
                let Some(message) = message else { break };
                // Output written before a request or close goes first:
                // attach wrote it before it made the request.
                let mut eof_now = false;
                // A close or takeover needs no output before it: whatever
                // the client missed is replayed on its next attachment.
                let urgent = matches!(message, FromHolder::Close | FromHolder::Superseded);
                if !output_ended && !urgent {
                    match drain(&mut server_out, &mut chunk, &mut writer).await {
                        Ok(ended) => (output_ended, eof_now) = (ended, ended),
                        Err(_) => return,
                    }
                }
                if writer.send(&message).await.is_err() {
                    return;
                }
                if eof_now && writer.send(&FromHolder::ServerEof).await.is_err() {
                    return;
                }
            }
            read = server_out.read(&mut chunk), if !output_ended => match read {
                Ok(0) | Err(_) => {
                    output_ended = true;
                    if writer.send(&FromHolder::ServerEof).await.is_err() {
                        return;
                    }
                }
                Ok(n) => {
                    let bytes = chunk.get(..n).unwrap_or_default().to_vec();
                    if writer.send(&FromHolder::ServerData(bytes)).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
    writer.shutdown().await;
}

/// Sends what output is already written, without waiting for more;
/// whether the output ended.
async fn drain(
    server_out: &mut DuplexStream,
    chunk: &mut [u8],
    writer: &mut super::link::LinkWriter,
) -> Result<bool, LinkError> {
    // At most what the duplex held: output that goes on coming while we
    // drain was written after the message, and waits behind it.
    let mut budget = 2 * MAX_DATA;
    while budget > 0 {
        // One poll: what the duplex holds now, or nothing.
        let room = budget.min(chunk.len());
        let mut buf = tokio::io::ReadBuf::new(chunk.get_mut(..room).unwrap_or_default());
        let ready = std::future::poll_fn(|cx| {
            match std::pin::Pin::new(&mut *server_out).poll_read(cx, &mut buf) {
                std::task::Poll::Ready(result) => std::task::Poll::Ready(Some(result)),
                std::task::Poll::Pending => std::task::Poll::Ready(None),
            }
        })
        .await;
        match ready {
            None => return Ok(false),
            Some(Err(_)) => return Ok(true),
            Some(Ok(())) if buf.filled().is_empty() => return Ok(true),
            Some(Ok(())) => {
                budget = budget.saturating_sub(buf.filled().len());
                writer
                    .send(&FromHolder::ServerData(buf.filled().to_vec()))
                    .await?;
            }
        }
    }
    Ok(false)
}

/// The session channel's control, as the holder sees it: requests and the
/// close go to sshqd, which makes them on the real channel.
struct HolderControl {
    messages: mpsc::UnboundedSender<FromHolder>,
    closed: watch::Receiver<bool>,
}

impl ChannelControl for HolderControl {
    async fn request(
        &self,
        request: ChannelRequest,
        _want_reply: bool,
    ) -> Result<bool, TransportError> {
        // attach sends only the program's end this way.
        let status = match request {
            ChannelRequest::ExitStatus(code) => ExitStatus::Code(code),
            ChannelRequest::ExitSignal(signal) => ExitStatus::Signal {
                name: signal.signal,
                core_dumped: signal.core_dumped,
            },
            _ => return Ok(false),
        };
        Ok(self.messages.send(FromHolder::Exit(status)).is_ok())
    }

    async fn opened(&self) -> Result<(), TransportError> {
        Ok(())
    }

    async fn close(&self) {
        let _ = self.messages.send(FromHolder::Close);
    }

    async fn closed(&self) {
        let mut closed = self.closed.clone();
        let _ = closed.wait_for(|closed| *closed).await;
    }
}

/// The requests sshqd relays from the channel.
struct HolderRequests(mpsc::Receiver<IncomingRequest>);

impl RequestStream for HolderRequests {
    async fn next(&mut self) -> Option<IncomingRequest> {
        self.0.recv().await
    }
}
