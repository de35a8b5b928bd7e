//! sshqd's side of reattachable sessions (draft §8.12): the sessions it
//! holds, and what it does with a channel that asks for
//! `sshq-session@sshq.dev`.
//!
//! A held session ([`held::Held`]) owns the program, its pty and the
//! output the client has not acknowledged; a channel only borrows it while
//! attached ([`attach`]). When the connection is lost the session stays,
//! for `ClientReattachTimeout`, until the same user logs in again and
//! presents its token.

mod attach;
mod held;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use sshq_core::channel::PtyRequest;
use sshq_core::log_escape;
use sshq_core::transport::{Channel, Connection};

use super::context::SessionContext;
use super::process::{Program, SessionProcess};
use crate::reattach::wire::{self, Frame, Token};
use crate::reattach::FrameReader;
pub use held::Held;

/// `ClientReattachTimeout` and `ClientReattachBuffer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReattachPolicy {
    /// How long a session with a pty is held after its connection is
    /// lost; `None` (`ClientReattachTimeout 0`): not at all, as in sshd.
    pub hold: Option<Duration>,
    /// The most output held for a client that has not acknowledged it.
    pub buffer: usize,
}

impl Default for ReattachPolicy {
    fn default() -> Self {
        ReattachPolicy {
            hold: Some(Duration::from_secs(3600)),
            buffer: 16 * 1024 * 1024,
        }
    }
}

/// The most sessions one user may have held at once (attached or not):
/// each keeps a program running, so a user who opens sessions and drops
/// connections in a loop is stopped here. Past it, new sessions are
/// ordinary ones that end with their connection.
pub const MAX_HELD_PER_USER: usize = 64;

/// Every session this sshqd holds. One per process: a session belongs to
/// the daemon, not to the listener or connection it started on.
static HELD: LazyLock<HeldSessions> = LazyLock::new(HeldSessions::default);

#[derive(Default)]
struct HeldSessions {
    sessions: Mutex<HashMap<Token, Arc<Held>>>,
}

impl HeldSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Token, Arc<Held>>> {
        // A panic while holding the map leaves it consistent (inserts and
        // removes are single calls), so a poisoned lock is still usable.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn count_for(uid: u32) -> usize {
    HELD.lock()
        .values()
        .filter(|held| held.uid() == uid)
        .count()
}

fn find(token: &Token) -> Option<Arc<Held>> {
    HELD.lock().get(token).cloned()
}

pub(crate) fn forget(token: &Token) {
    HELD.lock().remove(token);
}

/// Whether a channel asking for `sshq-session@sshq.dev` gets it: only when
/// `ClientReattachTimeout` is not 0, and for a new session (one with a
/// pty: what is worth coming back to is an interactive session) only
/// within [`MAX_HELD_PER_USER`]. A channel without a pty can only resume.
/// Otherwise the client falls back to an ordinary session on the same
/// channel.
pub fn offered(ctx: &SessionContext, has_pty: bool) -> bool {
    let offered =
        ctx.reattach.hold.is_some() && (!has_pty || count_for(ctx.user.uid) < MAX_HELD_PER_USER);
    if !offered {
        tracing::debug!(
            "{}: {} refused (ClientReattachTimeout: {:?}, {MAX_HELD_PER_USER} sessions held at most)",
            ctx.peer,
            wire::SUBSYSTEM,
            ctx.reattach.hold
        );
    }
    offered
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
    let attached = match first {
        Frame::Start(program) => start(program, setup, &ctx).await,
        Frame::Resume {
            token,
            output_received,
        } => {
            // The programs know the socket made when the session started:
            // it moves here, and the one just made for this channel (if its
            // client forwards an agent) goes.
            let forwarded = setup.agent.is_some().then(|| conn.clone());
            drop(setup);
            resume(&token, output_received, &ctx).map(|(held, output_from)| {
                held.reroute_agent(forwarded, &ctx.peer);
                (held, output_from)
            })
        }
        // Named only: a first frame of DATA would be keystrokes.
        _ => Err(Refusal(
            "the first frame must be START or RESUME".to_string(),
        )),
    };
    let (held, output_from) = match attached {
        Ok(attached) => attached,
        Err(Refusal(reason)) => {
            tracing::info!(
                "{}: session not started or resumed: {}",
                ctx.peer,
                log_escape::peer_text(&reason)
            );
            let _ = crate::reattach::send(&mut data_out, &Frame::Refused(reason)).await;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut data_out).await;
            return;
        }
    };
    let channel = attach::Attached::<C::Channel> {
        frames,
        data_out,
        control,
        requests,
    };
    if attach::serve(held, channel, output_from, &ctx).await == attach::Ended::Superseded {
        // The client reattached on another connection because it saw this
        // one lost: close it, so that its -R listeners free their ports for
        // the new connection's.
        conn.close("the session was taken over by a newer connection")
            .await;
    }
}

/// Starts the program and holds it under a new token.
async fn start(
    program: wire::Program,
    setup: Setup,
    ctx: &Arc<SessionContext>,
) -> Result<(Arc<Held>, Option<u64>), Refusal> {
    let program = match program {
        wire::Program::Shell => Program::Shell,
        wire::Program::Command(command) => Program::Command(command),
    };
    let Some(pty) = setup.pty else {
        return Err(Refusal("a reattachable session needs a pty".to_string()));
    };
    // Checked again here: channels granted the subsystem together could
    // otherwise all start one past the limit.
    if count_for(ctx.user.uid) >= MAX_HELD_PER_USER {
        return Err(Refusal(format!(
            "{MAX_HELD_PER_USER} sessions are held for this user already"
        )));
    }
    let size = pty.size;
    let process: SessionProcess =
        super::session::start_program(ctx, program, Some(pty), setup.env, &setup.agent)
            .await
            .map_err(|e| Refusal(e.to_string()))?;
    let token =
        Token(rand_token().map_err(|e| Refusal(format!("cannot make a session token: {e}")))?);
    let hold = ctx.reattach.hold.unwrap_or_default();
    let held = Held::start(token.clone(), process, size, setup.agent, ctx);
    HELD.lock().insert(token, held.clone());
    tracing::info!(
        "{}: reattachable session started (held {} s after a lost connection)",
        ctx.peer,
        hold.as_secs()
    );
    Ok((held, None))
}

/// Finds the held session `token` names, for the same user.
fn resume(
    token: &Token,
    output_received: u64,
    ctx: &SessionContext,
) -> Result<(Arc<Held>, Option<u64>), Refusal> {
    // The same message whether the token is unknown or another user's:
    // a token is no way to learn about other users' sessions.
    let gone = || Refusal("no such session: it ended, or the server stopped holding it".into());
    let Some(held) = find(token) else {
        return Err(gone());
    };
    if held.uid() != ctx.user.uid || held.user_name() != ctx.user.name {
        tracing::warn!(
            "{}: refused a reattach to a session of another user",
            ctx.peer
        );
        return Err(gone());
    }
    // RESUME shows that a client holds the token.
    held.confirm();
    Ok((held, Some(output_received)))
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
