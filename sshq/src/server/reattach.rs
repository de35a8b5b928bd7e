//! sshqd's side of reattachable sessions (draft §8.12): which channels get
//! `sshq-session@sshq.dev`, and what sshqd does with one.
//!
//! A held session lives in a session holder ([`holder`]), a process of
//! its own that owns the program, its pty and the output the client has
//! not acknowledged ([`held::Held`]), and serves the session's side of the
//! protocol ([`attach`]). sshqd starts the holder for a START, finds it by
//! its socket for a RESUME ([`directory`]), and relays the channel to it
//! ([`relay`]). So a session outlives its connection and sshqd too: a
//! restarted sshqd finds the holders the last one started.

mod attach;
mod directory;
mod held;
pub mod holder;
pub mod holder_wire;
mod link;
mod relay;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use sshq_core::channel::PtyRequest;
use sshq_core::log_escape;
use sshq_core::transport::{Channel, Connection};

use super::agent::AgentSocket;
use super::context::SessionContext;
use super::logging::LogSetup;
use super::process::{Program, SpawnRequest};
use crate::reattach::wire::{self, Frame, Token};
use crate::reattach::FrameReader;
pub use directory::{DirectoryError, HolderDirectory};
use holder_wire::{AttachOrder, SpawnOrder};
use link::HolderLink;

/// `ClientReattachTimeout`, `ClientReattachBuffer` and
/// `ClientReattachDirectory`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReattachPolicy {
    /// How long a session with a pty is held after its connection is
    /// lost; `None` (`ClientReattachTimeout 0`): not at all, as in sshd.
    pub hold: Option<Duration>,
    /// The most output held for a client that has not acknowledged it.
    pub buffer: usize,
    /// Where the session holders listen; `None`: [`directory::default_path`].
    pub directory: Option<PathBuf>,
}

impl Default for ReattachPolicy {
    fn default() -> Self {
        ReattachPolicy {
            hold: Some(Duration::from_secs(3600)),
            buffer: 16 * 1024 * 1024,
            directory: None,
        }
    }
}

impl ReattachPolicy {
    /// The holder directory, made and checked.
    pub fn open_directory(&self) -> Result<HolderDirectory, DirectoryError> {
        let path = self
            .directory
            .clone()
            .unwrap_or_else(directory::default_path);
        HolderDirectory::open(&path)
    }
}

/// The most sessions one user may have held at once (attached or not):
/// each keeps a program running, so a user who opens sessions and drops
/// connections in a loop is stopped here. Past it, new sessions are
/// ordinary ones that end with their connection.
pub const MAX_HELD_PER_USER: usize = 64;

/// Makes the holder directory at start and clears the sockets of holders
/// that are gone; the sessions of the others are this sshqd's now.
pub fn prepare_directory(policy: &ReattachPolicy) {
    if policy.hold.is_none() {
        return;
    }
    match policy.open_directory() {
        Ok(directory) => {
            let stale = directory.remove_stale();
            if stale > 0 {
                tracing::info!(
                    "removed {stale} session socket{} of holders that are gone, from {}",
                    if stale == 1 { "" } else { "s" },
                    directory.path().display()
                );
            }
        }
        Err(e) => tracing::error!("no session can be held: {e}"),
    }
}

/// The agent sockets of held sessions this sshqd started or reattached:
/// they live in sshqd (they forward over its connections), and are pointed
/// at whichever connection reattached last. A session's entry goes once its
/// holder's socket is gone.
static AGENTS: LazyLock<Mutex<HashMap<Token, (PathBuf, AgentSocket)>>> =
    LazyLock::new(Mutex::default);

fn agents() -> std::sync::MutexGuard<'static, HashMap<Token, (PathBuf, AgentSocket)>> {
    // Inserts and removes are single calls: a poisoned map is consistent.
    AGENTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Forgets the agent sockets of sessions whose holder is gone.
fn prune_agents() {
    agents().retain(|_, (socket, _)| socket.exists());
}

/// Whether a channel asking for `sshq-session@sshq.dev` gets it, and the
/// holder directory it is served from: only when `ClientReattachTimeout` is
/// not 0, the holder directory is usable, and for a new session (one with
/// a pty: what is worth coming back to is an interactive session) only
/// within [`MAX_HELD_PER_USER`]. A channel without a pty can only resume.
/// Otherwise (`None`) the client falls back to an ordinary session on the
/// same channel.
pub fn offered(ctx: &SessionContext, has_pty: bool) -> Option<HolderDirectory> {
    let directory = match ctx.reattach.hold.map(|_| ctx.reattach.open_directory()) {
        Some(Ok(directory)) => directory,
        Some(Err(e)) => {
            tracing::error!("{}: {} refused: {e}", ctx.peer, wire::SUBSYSTEM);
            return None;
        }
        None => {
            tracing::debug!(
                "{}: {} refused (ClientReattachTimeout 0)",
                ctx.peer,
                wire::SUBSYSTEM
            );
            return None;
        }
    };
    let offered =
        !has_pty || directory.count_for_within(ctx.user.uid, MAX_HELD_PER_USER) < MAX_HELD_PER_USER;
    if !offered {
        tracing::info!(
            "{}: {} refused: {MAX_HELD_PER_USER} sessions are held for this user already",
            ctx.peer,
            wire::SUBSYSTEM,
        );
    }
    offered.then_some(directory)
}

/// The halves of the channel a reattachable session uses.
pub struct ChannelHalves<Ch: Channel> {
    pub data_in: Ch::Reader,
    pub data_out: Ch::Writer,
    pub control: Ch::Control,
    pub requests: Ch::Requests,
}

/// Why a START or RESUME is not honoured: the reason REFUSED carries to
/// the client (and sshqd logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

/// What the session's channel asked for before the subsystem request.
pub struct Setup {
    /// Required to start a session; a resume has none.
    pub pty: Option<PtyRequest>,
    pub env: Vec<(String, String)>,
    pub agent: Option<super::agent::AgentSocket>,
    /// Where the holders listen, as [`offered`] found it.
    pub directory: HolderDirectory,
}

/// Serves a channel that was granted `sshq-session@sshq.dev`: reads its
/// first frame, starts or resumes the session, and serves it until the
/// channel or the program ends.
pub async fn serve<C: Connection>(
    conn: Arc<C>,
    channel: ChannelHalves<C::Channel>,
    setup: Setup,
    ctx: Arc<SessionContext>,
) {
    let ChannelHalves {
        data_in,
        mut data_out,
        control,
        requests,
    } = channel;
    let mut frames = FrameReader::new(data_in);
    let first = match frames.next().await {
        Ok(Some(frame)) => frame,
        Ok(None) => return,
        Err(e) => {
            tracing::info!("{}: {}: {e}", ctx.peer, wire::SUBSYSTEM);
            return;
        }
    };
    let directory = setup.directory.clone();
    let resume_from = match &first {
        Frame::Resume {
            output_received, ..
        } => Some(*output_received),
        _ => None,
    };
    let attached = match first {
        Frame::Start(program) => start(program, setup, &ctx, &directory).await,
        // A key whose authorized_keys line forces a command or refuses a
        // pty could otherwise take over a shell another login started.
        Frame::Resume { .. } if ctx.key_options.command.is_some() || !ctx.key_options.pty => {
            tracing::info!(
                "{}: resume refused: the key's options (command= or no-pty) do not allow it",
                ctx.peer
            );
            Err(Refusal(
                "this key may not resume sessions: its authorized_keys options restrict it".into(),
            ))
        }
        Frame::Resume { token, .. } => {
            // The programs know the socket made when the session started:
            // it moves here, and the one just made for this channel (if its
            // client forwards an agent) goes.
            let forwarded = setup.agent.is_some().then(|| conn.clone());
            drop(setup);
            let resumed = resume(&token, &ctx, &directory).await;
            if resumed.is_ok() {
                if let Some((_, agent)) = agents().get(&token) {
                    agent.reroute(forwarded, &ctx.peer);
                }
            }
            resumed.map(|link| (link, token))
        }
        // Named only: a first frame of DATA would be keystrokes.
        _ => Err(Refusal(
            "the first frame must be START or RESUME".to_string(),
        )),
    };
    let (link, token) = match attached {
        Ok(attached) => attached,
        Err(refusal) => {
            refuse(&mut data_out, &ctx, refusal).await;
            return;
        }
    };
    let order = AttachOrder {
        token: token.clone(),
        uid: ctx.user.uid,
        user: ctx.user.name.clone(),
        peer: ctx.peer.clone(),
        resume_from,
    };
    let (data_in, early) = frames.into_parts();
    let channel = ChannelHalves::<C::Channel> {
        data_in,
        data_out,
        control,
        requests,
    };
    let end = relay::relay(link, order, channel, early, &ctx.peer).await;
    if end.session_ended {
        agents().remove(&token);
    }
    prune_agents();
    if end.superseded {
        // The client reattached on another connection because it saw this
        // one lost: close it, so that its -R listeners free their ports for
        // the new connection's.
        conn.close("the session was taken over by a newer connection")
            .await;
    }
}

/// Tells the client why its START or RESUME is not honoured.
async fn refuse<W: tokio::io::AsyncWrite + Unpin>(
    data_out: &mut W,
    ctx: &SessionContext,
    Refusal(reason): Refusal,
) {
    tracing::info!(
        "{}: session not started or resumed: {}",
        ctx.peer,
        log_escape::peer_text(&reason)
    );
    let _ = crate::reattach::send(data_out, &Frame::Refused(reason)).await;
    let _ = tokio::io::AsyncWriteExt::shutdown(data_out).await;
}

/// Starts a holder running the program, under a new token.
async fn start(
    program: wire::Program,
    setup: Setup,
    ctx: &Arc<SessionContext>,
    directory: &HolderDirectory,
) -> Result<(HolderLink, Token), Refusal> {
    let program = match program {
        wire::Program::Shell => Program::Shell,
        wire::Program::Command(command) => Program::Command(command),
    };
    let mut env = setup.env;
    let program = super::session::forced(ctx, program, &mut env);
    let Some(pty) = setup.pty else {
        return Err(Refusal("a reattachable session needs a pty".to_string()));
    };
    // Checked again here: channels granted the subsystem together could
    // otherwise all start one past the limit.
    if directory.count_for_within(ctx.user.uid, MAX_HELD_PER_USER) >= MAX_HELD_PER_USER {
        return Err(Refusal(format!(
            "{MAX_HELD_PER_USER} sessions are held for this user already"
        )));
    }
    let token =
        Token(rand_token().map_err(|e| Refusal(format!("cannot make a session token: {e}")))?);
    let hold = ctx.reattach.hold.unwrap_or_default();
    let socket = directory.socket_for(ctx.user.uid, &token);
    let order = SpawnOrder {
        token: token.clone(),
        socket: socket.clone(),
        hold,
        buffer: ctx.reattach.buffer,
        label: ctx.peer.clone(),
        log: LogSetup::current(),
        request: SpawnRequest {
            user: ctx.user.clone(),
            program,
            pty: Some(pty),
            env,
            user_env: super::session::user_environment(ctx)
                .await
                .map_err(|e| Refusal(e.to_string()))?,
            ssh_connection: ctx.ssh_connection.clone(),
            auth_sock: setup.agent.as_ref().map(|agent| agent.path().to_path_buf()),
            pam_service: ctx.pam_service.clone(),
        },
    };
    let link = relay::start_holder(order).await?;
    if let Some(agent) = setup.agent {
        prune_agents();
        agents().insert(token.clone(), (socket, agent));
    }
    tracing::info!(
        "{}: reattachable session started (held {} s after a lost connection)",
        ctx.peer,
        hold.as_secs()
    );
    Ok((link, token))
}

/// Reaches the holder of the session `token` names, for the same user.
async fn resume(
    token: &Token,
    ctx: &SessionContext,
    directory: &HolderDirectory,
) -> Result<HolderLink, Refusal> {
    // The same message whether the token is unknown or another user's:
    // a token is no way to learn about other users' sessions (the socket
    // is named after the user too, and the holder checks both again).
    let gone = || Refusal("no such session: it ended, or the server stopped holding it".into());
    let socket = directory.socket_for(ctx.user.uid, token);
    match tokio::net::UnixStream::connect(&socket).await {
        // Only a holder of sshqd's own user gets the token.
        Ok(stream) => {
            let link = HolderLink::new(stream);
            let ours = nix::unistd::geteuid().as_raw();
            if link.peer_uid() != Some(ours) {
                tracing::error!(
                    "{}: {} is not served by uid {ours}: refused",
                    ctx.peer,
                    socket.display()
                );
                return Err(gone());
            }
            Ok(link)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if directory.owner_of(token).is_some() {
                tracing::warn!(
                    "{}: refused a reattach to a session of another user",
                    ctx.peer
                );
            }
            Err(gone())
        }
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            // Its holder was killed before it could remove it.
            let _ = std::fs::remove_file(&socket);
            Err(gone())
        }
        Err(e) => {
            tracing::error!("{}: cannot reach a session holder: {e}", ctx.peer);
            Err(Refusal(format!(
                "the session's holder cannot be reached: {e}"
            )))
        }
    }
}

/// 32 bytes from the kernel's random generator.
fn rand_token() -> std::io::Result<[u8; wire::TOKEN_LEN]> {
    let mut token = [0u8; wire::TOKEN_LEN];
    getrandom(&mut token)?;
    Ok(token)
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = buf.get_mut(filled..).unwrap_or_default();
        // SAFETY: `rest` is a valid, writable buffer of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        filled += n.unsigned_abs();
    }
    Ok(())
}
