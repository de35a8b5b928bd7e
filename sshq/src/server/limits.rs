//! What one authenticated connection may make sshqd hold: session channels
//! (MaxSessions, as sshd), channels of any kind, remote forwards and the
//! environment variables of a session. Each limit refuses the one request
//! that would pass it, with the answer sshd gives where sshd has the same
//! limit; the connection and everything already open carry on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sshq_core::channel::{ChannelKind, OpenFailure, OpenFailureReason};

/// sshd's default MaxSessions.
pub const DEFAULT_MAX_SESSIONS: u32 = 10;

/// Channels of any kind the client may have open at once. sshd's own
/// ceiling is far higher (it grows its table to 16384), but each of ours
/// costs buffers and tasks, and no client needs more than this at once.
pub const MAX_CHANNELS: usize = 256;

/// Remote forwards (`tcpip-forward` and `streamlocal-forward`) the client
/// may have listening at once. Each is a listening socket sshqd holds.
pub const MAX_REMOTE_FORWARDS: usize = 64;

/// sshd refuses an `env` request once a session has more than 128
/// variables set (session.c: "too many env vars"); the same here.
pub const MAX_SESSION_ENV: usize = 128;

/// The counters of one connection.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_sessions: usize,
    sessions: Counter,
    channels: Counter,
}

/// A channel's place in its connection's counts, given back when dropped
/// (when the task serving the channel ends).
#[derive(Debug)]
pub struct ChannelSlot {
    _channel: Taken,
    _session: Option<Taken>,
}

impl ConnectionLimits {
    pub fn new(max_sessions: u32) -> Self {
        ConnectionLimits {
            max_sessions: usize::try_from(max_sessions).unwrap_or(usize::MAX),
            sessions: Counter::default(),
            channels: Counter::default(),
        }
    }

    /// Admits a channel the client opens, or refuses it as sshd would.
    pub fn admit(&self, kind: &ChannelKind, peer: &str) -> Result<ChannelSlot, OpenFailure> {
        // draft §12.7: a server MUST bound the open channels per connection (256, reason 4)
        let Some(channel) = self.channels.take(MAX_CHANNELS) else {
            tracing::info!(
                "{peer}: {} channel refused: already {MAX_CHANNELS} channels open",
                kind.wire_name()
            );
            return Err(OpenFailure {
                reason: OpenFailureReason::ResourceShortage,
                message: format!("too many channels (at most {MAX_CHANNELS} at once)"),
            });
        };
        let session = match kind {
            // draft §12.7: a server MUST bound session channels (MaxSessions; reason 2, "open failed")
            ChannelKind::Session => match self.sessions.take(self.max_sessions) {
                Some(session) => Some(session),
                None => {
                    // sshd's words: session.c logs "no more sessions", and
                    // serverloop.c refuses the open with reason 2 and the
                    // text "open failed".
                    tracing::error!(
                        "{peer}: no more sessions (MaxSessions {})",
                        self.max_sessions
                    );
                    return Err(OpenFailure {
                        reason: OpenFailureReason::ConnectFailed,
                        message: "open failed".to_string(),
                    });
                }
            },
            _ => None,
        };
        Ok(ChannelSlot {
            _channel: channel,
            _session: session,
        })
    }
}

/// Whether a remote forward may be added next to `listening` others.
pub fn remote_forward_allowed(listening: usize, what: &str, peer: &str) -> bool {
    // draft §12.7: a server MUST bound remote forwards per connection (64, then REQUEST_FAILURE)
    let allowed = listening < MAX_REMOTE_FORWARDS;
    if !allowed {
        tracing::info!(
            "{peer}: {what} refused: already {MAX_REMOTE_FORWARDS} remote forwards listening"
        );
    }
    allowed
}

/// Whether a session that has `set` variables may take another `name`.
pub fn env_allowed(set: usize, name: &str, peer: &str) -> bool {
    // draft §12.7: a server MUST bound the environment variables it accepts per session
    let allowed = set <= MAX_SESSION_ENV;
    if !allowed {
        // sshd's debug2 line, word for word.
        tracing::debug!("{peer}: Ignoring env request {name}: too many env vars");
    }
    allowed
}

/// A count with a ceiling, shared by the slots taken from it.
#[derive(Debug, Default)]
struct Counter(Arc<AtomicUsize>);

/// One unit of a [`Counter`], returned on drop.
#[derive(Debug)]
struct Taken(Arc<AtomicUsize>);

impl Counter {
    /// One more, unless `limit` are already taken.
    fn take(&self, limit: usize) -> Option<Taken> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Taken(self.0.clone()))
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcpip() -> ChannelKind {
        ChannelKind::DirectTcpip {
            host: "localhost".into(),
            port: 22,
            originator: "127.0.0.1".into(),
            originator_port: 1,
        }
    }

    #[test]
    fn max_sessions_refuses_as_sshd_and_frees_on_drop() {
        let limits = ConnectionLimits::new(2);
        let a = limits.admit(&ChannelKind::Session, "t").unwrap();
        let _b = limits.admit(&ChannelKind::Session, "t").unwrap();
        let refused = limits.admit(&ChannelKind::Session, "t").unwrap_err();
        assert_eq!(refused.reason, OpenFailureReason::ConnectFailed);
        assert_eq!(refused.message, "open failed");
        // Other kinds are not sessions.
        let _forward = limits.admit(&tcpip(), "t").unwrap();
        drop(a);
        assert!(limits.admit(&ChannelKind::Session, "t").is_ok());
    }

    #[test]
    fn max_sessions_zero_allows_no_session_but_forwarding() {
        let limits = ConnectionLimits::new(0);
        assert!(limits.admit(&ChannelKind::Session, "t").is_err());
        assert!(limits.admit(&tcpip(), "t").is_ok());
    }

    #[test]
    fn channels_of_any_kind_are_capped() {
        let limits = ConnectionLimits::new(u32::MAX);
        let slots: Vec<_> = (0..MAX_CHANNELS)
            .map(|_| limits.admit(&tcpip(), "t").unwrap())
            .collect();
        let refused = limits.admit(&ChannelKind::Session, "t").unwrap_err();
        assert_eq!(refused.reason, OpenFailureReason::ResourceShortage);
        // A refused session took no session slot.
        drop(slots);
        assert!(limits.admit(&ChannelKind::Session, "t").is_ok());
    }

    #[test]
    fn env_and_remote_forward_ceilings() {
        assert!(env_allowed(MAX_SESSION_ENV, "A", "t"));
        assert!(!env_allowed(MAX_SESSION_ENV + 1, "A", "t"));
        assert!(remote_forward_allowed(MAX_REMOTE_FORWARDS - 1, "f", "t"));
        assert!(!remote_forward_allowed(MAX_REMOTE_FORWARDS, "f", "t"));
    }
}
