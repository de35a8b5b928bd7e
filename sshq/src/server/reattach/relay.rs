//! sshqd's end of a session holder: starting one, and relaying a session
//! channel to it. sshqd does not read the session's frames past the first:
//! the channel's bytes and requests go to the holder as they are, and what
//! the holder sends goes to the channel.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use sshq_core::channel::ChannelRequest;
use sshq_core::transport::{Channel, ChannelControl, IncomingRequest, ReplyHandle, RequestStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::holder::HOLDER_ARG;
use super::holder_wire::{AttachOrder, FromHolder, SpawnOrder, ToHolder, MAX_DATA};
use super::link::{HolderLink, LinkReader, LinkWriter};
use super::{ChannelHalves, Refusal};
use crate::reattach::wire::Token;

/// How long a new holder has to start the program and say so.
const START_LIMIT: Duration = Duration::from_secs(30);

/// The most channel requests (window changes, signals) whose replies a
/// relay owes at once; past it a request is refused at once, so a client
/// flooding requests makes no queue grow in sshqd or the holder.
pub const MAX_PENDING_REQUESTS: usize = 32;

/// Starts a holder for `order`: runs sshqd's own executable as a holder,
/// with one end of a socket pair as its standard input, and waits until
/// the program runs. The link is the session's first attachment.
pub async fn start_holder(order: SpawnOrder) -> Result<HolderLink, Refusal> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        tracing::error!("cannot start a session holder: {what}: {e}");
        Refusal(format!("the server cannot hold a session: {what}: {e}"))
    };
    let (ours, theirs) =
        std::os::unix::net::UnixStream::pair().map_err(|e| failed("socket pair", &e))?;
    // /proc/self/exe is this very binary, even if an upgrade replaced the
    // file since: the holder speaks exactly our messages.
    let mut command = std::process::Command::new("/proc/self/exe");
    // Its log lines go where sshqd's go: standard error only with -e or
    // -d (a holder that outlives sshqd keeps that open), else syslog.
    let stderr = match order.log.syslog {
        Some(_) => Stdio::null(),
        None => Stdio::inherit(),
    };
    command
        .arg0("sshqd: session holder")
        .arg(HOLDER_ARG)
        .arg(&order.socket)
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(stderr);
    let mut child = tokio::process::Command::from(command)
        .spawn()
        .map_err(|e| failed("cannot run /proc/self/exe", &e))?;
    // Reaped by whoever is its parent when it ends: this sshqd, or init
    // after a restart.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    ours.set_nonblocking(true)
        .map_err(|e| failed("socket pair", &e))?;
    let stream = tokio::net::UnixStream::from_std(ours).map_err(|e| failed("socket pair", &e))?;
    let mut link = HolderLink::new(stream);
    link.send(&ToHolder::Spawn(Box::new(order)))
        .await
        .map_err(|e| failed("SPAWN", &e))?;
    match tokio::time::timeout(START_LIMIT, link.receive::<FromHolder>()).await {
        Ok(Ok(Some(FromHolder::Started { pid }))) => {
            tracing::debug!("session holder started the program as process {pid}");
            Ok(link)
        }
        Ok(Ok(Some(FromHolder::Failed(why)))) => Err(Refusal(why)),
        Ok(Ok(Some(other))) => Err(failed("unexpected answer", &format!("{other:?}"))),
        Ok(Ok(None)) => Err(failed("it exited", &"no answer")),
        Ok(Err(e)) => Err(failed("no answer", &e)),
        Err(_) => Err(failed("no answer", &"timed out")),
    }
}

/// The replies owed to the client, by the id the holder answers with.
type Pending = Arc<Mutex<HashMap<u32, ReplyHandle>>>;

/// How a relay ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayEnd {
    /// A newer attachment took the session: this connection is stale.
    pub superseded: bool,
    /// The session is over.
    pub session_ended: bool,
}

/// The latest relay of each session this sshqd serves, by generation. A
/// newer relay ends an older one at once, without waiting for the holder:
/// the older connection is presumed dead, and its relay may be stuck
/// writing into its full window.
static LATEST: LazyLock<Mutex<HashMap<Token, watch::Sender<u64>>>> = LazyLock::new(Mutex::default);

fn latest() -> std::sync::MutexGuard<'static, HashMap<Token, watch::Sender<u64>>> {
    // Single inserts and removes: a poisoned map is consistent.
    LATEST.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes this relay the latest of `token`'s: its generation, and what
/// tells it of a newer one.
fn take_over(token: &Token) -> (u64, watch::Receiver<u64>) {
    let mut map = latest();
    let sender = map
        .entry(token.clone())
        .or_insert_with(|| watch::channel(0).0);
    sender.send_modify(|generation| *generation += 1);
    let generation = *sender.borrow();
    (generation, sender.subscribe())
}

/// Forgets `token` unless a newer relay took it.
fn let_go(token: &Token, generation: u64) {
    let mut map = latest();
    if map
        .get(token)
        .is_some_and(|sender| *sender.borrow() == generation)
    {
        map.remove(token);
    }
}

/// Attaches the channel to the holder and relays both ways until the
/// holder ends the attachment or a newer relay takes the session. `early`
/// is what sshqd read from the channel past the first frame.
pub async fn relay<Ch: Channel>(
    link: HolderLink,
    order: AttachOrder,
    channel: ChannelHalves<Ch>,
    early: Vec<u8>,
    peer: &str,
) -> RelayEnd {
    let ChannelHalves {
        data_in,
        data_out,
        control,
        requests,
    } = channel;
    let token = order.token.clone();
    let (generation, mut newer) = take_over(&token);
    let (reader, writer) = link.into_split();
    let (to_holder, outgoing) = mpsc::channel(16);
    let pending: Pending = Arc::default();
    let _ = to_holder.send(ToHolder::Attach(order)).await;
    if !early.is_empty() {
        let _ = to_holder.send(ToHolder::ClientData(early)).await;
    }
    let end = tokio::select! {
        end = from_holder(reader, data_out, &control, pending.clone(), peer) => end,
        () = send_all(writer, outgoing) => RelayEnd::default(),
        () = client_data(data_in, to_holder.clone()) => RelayEnd::default(),
        () = client_requests(requests, to_holder.clone(), pending.clone(), peer) => RelayEnd::default(),
        () = channel_closed(&control, to_holder.clone()) => RelayEnd::default(),
        _ = newer.wait_for(|latest| *latest != generation) => RelayEnd {
            superseded: true,
            session_ended: false,
        },
    };
    let_go(&token, generation);
    control.close().await;
    end
}

/// Writes the messages for the holder; ends if the link breaks.
async fn send_all(mut writer: LinkWriter, mut outgoing: mpsc::Receiver<ToHolder>) {
    while let Some(message) = outgoing.recv().await {
        if writer.send(&message).await.is_err() {
            return;
        }
    }
    std::future::pending::<()>().await
}

/// The client's bytes, as they come.
async fn client_data<R: tokio::io::AsyncRead + Unpin>(
    mut data_in: R,
    to_holder: mpsc::Sender<ToHolder>,
) {
    let mut chunk = vec![0u8; MAX_DATA];
    loop {
        match data_in.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                let _ = to_holder.send(ToHolder::ClientEof).await;
                break;
            }
            Ok(n) => {
                let bytes = chunk.get(..n).unwrap_or_default().to_vec();
                if to_holder.send(ToHolder::ClientData(bytes)).await.is_err() {
                    break;
                }
            }
        }
    }
    std::future::pending::<()>().await
}

/// Window changes and signals go to the holder, which answers them; other
/// requests are refused here, as a held session has no use for them.
async fn client_requests<Q: RequestStream>(
    mut requests: Q,
    to_holder: mpsc::Sender<ToHolder>,
    pending: Pending,
    peer: &str,
) {
    let mut next_id: u32 = 0;
    while let Some(IncomingRequest { request, reply }) = requests.next().await {
        // 0 for a request that wants no reply; ids of owed replies skip it.
        let id = match reply.wants_reply() {
            false => 0,
            true if lock(&pending).len() >= MAX_PENDING_REQUESTS => {
                tracing::debug!(
                    "{peer}: {MAX_PENDING_REQUESTS} channel requests unanswered; refused"
                );
                reply.send(false);
                continue;
            }
            true => {
                next_id = next_id.wrapping_add(1).max(1);
                next_id
            }
        };
        let message = match request {
            ChannelRequest::WindowChange(size) => ToHolder::WindowChange { id, size },
            ChannelRequest::Signal(name) => ToHolder::Signal { id, name },
            other => {
                tracing::debug!(
                    "{peer}: refused channel request {} on a reattachable session",
                    other.wire_name()
                );
                reply.send(false);
                continue;
            }
        };
        if id != 0 {
            lock(&pending).insert(id, reply);
        }
        if to_holder.send(message).await.is_err() {
            break;
        }
    }
    // Over QUIC the request stream ends with the client's EOF, which a
    // reattachable session never sends while it runs: the channel is gone.
    std::future::pending::<()>().await
}

/// Tells the holder once the channel is gone.
async fn channel_closed<K: ChannelControl>(control: &K, to_holder: mpsc::Sender<ToHolder>) {
    control.closed().await;
    let _ = to_holder.send(ToHolder::ChannelClosed).await;
    std::future::pending::<()>().await
}

/// Carries out what the holder sends, until it ends the link.
async fn from_holder<W: tokio::io::AsyncWrite + Unpin, K: ChannelControl>(
    mut reader: LinkReader,
    mut data_out: W,
    control: &K,
    pending: Pending,
    peer: &str,
) -> RelayEnd {
    let mut end = RelayEnd::default();
    loop {
        let message = match reader.receive::<FromHolder>().await {
            Ok(Some(message)) => message,
            Ok(None) => return end,
            Err(e) => {
                tracing::info!("{peer}: {e}");
                return end;
            }
        };
        match message {
            FromHolder::ServerData(bytes) => {
                // A dead channel is the holder's to notice (CHANNEL_CLOSED).
                let _ = data_out.write_all(&bytes).await;
            }
            FromHolder::ServerEof => {
                let _ = data_out.shutdown().await;
            }
            FromHolder::Exit(status) => {
                let _ = control.request(status.into_request(), false).await;
            }
            FromHolder::Reply { id, ok } => {
                if let Some(reply) = lock(&pending).remove(&id) {
                    reply.send(ok);
                }
            }
            FromHolder::Close => control.close().await,
            FromHolder::Superseded => end.superseded = true,
            FromHolder::Ended => end.session_ended = true,
            FromHolder::Started { .. } | FromHolder::Failed(_) => {
                tracing::info!("{peer}: the session holder answered out of turn");
                return end;
            }
        }
    }
}

fn lock(pending: &Pending) -> std::sync::MutexGuard<'_, HashMap<u32, ReplyHandle>> {
    // Single inserts and removes: a poisoned map is consistent.
    pending.lock().unwrap_or_else(|e| e.into_inner())
}
