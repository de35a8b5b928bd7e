//! Acting on the filesystem with a user's rights instead of sshqd's.
//!
//! sshqd runs as root, but every file operation on a path a user controls
//! (their sockets, the agent directory in /tmp, their authorized_keys and
//! home) must be made with that user's rights, as OpenSSH's sshd does from
//! its unprivileged child or with `temporarily_use_uid`: otherwise a user
//! who swaps a path component for a symlink at the right moment makes root
//! create, chown, read or remove a file of the attacker's choosing.
//!
//! Each such operation runs on a short-lived thread of its own that first
//! takes the user's filesystem identity (fsuid, fsgid and groups) and its
//! own umask. On Linux those are per-thread kernel attributes (glibc's
//! `setgroups` would change every thread, so the system call is made
//! directly), and they vanish with the thread; file descriptors it opens
//! are process-wide and can be handed back to the async side. Never run
//! [`assume`] on a pooled thread (tokio's blocking pool): the identity
//! would stay with the thread.

use std::ffi::CString;
use std::io;
use std::time::Duration;

use nix::libc;
use nix::unistd::{Gid, Uid};

/// Whose rights a file operation uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// This process's own (the client, or sshqd when not run as root).
    Process,
    /// A logged-in user's, on the server.
    User { name: String, uid: u32, gid: u32 },
}

/// Runs `op` on a thread of its own that has taken `identity` and, if
/// given, `mask` as its umask.
pub async fn as_identity<T: Send + 'static>(
    identity: &Identity,
    mask: Option<u32>,
    op: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    let identity = identity.clone();
    std::thread::Builder::new()
        .name("sshq-as-user".into())
        .spawn(move || {
            let _ = done.send(assume(&identity, mask).and_then(|()| op()));
        })?;
    result
        .await
        .map_err(|_| io::Error::other("the file-operation thread ended without an answer"))?
}

/// [`as_identity`] with a time limit: a file on a hung network filesystem
/// must not hold a login (or a task) forever. On timeout the thread is left
/// to finish on its own; its result is dropped.
pub async fn as_identity_within<T: Send + 'static>(
    identity: &Identity,
    mask: Option<u32>,
    limit: Duration,
    op: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    match tokio::time::timeout(limit, as_identity(identity, mask, op)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("gave up after {} s", limit.as_secs_f32()),
        )),
    }
}

/// Runs `op` as `identity` on a detached thread and returns at once: for
/// clean-ups in `Drop`, where nobody can wait. Failures are logged by `op`.
pub fn as_identity_detached(
    identity: &Identity,
    op: impl FnOnce() -> io::Result<()> + Send + 'static,
) {
    let identity = identity.clone();
    let spawned = std::thread::Builder::new()
        .name("sshq-user-rm".into())
        .spawn(move || {
            if let Err(e) = assume(&identity, None).and_then(|()| op()) {
                tracing::debug!("clean-up as {identity:?}: {e}");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start a clean-up thread: {e}");
    }
}

/// Gives the calling thread its own umask (`mask`) and, for a user when we
/// are root, that user's filesystem identity. Only for threads that end
/// right after their one operation.
pub fn assume(identity: &Identity, mask: Option<u32>) -> io::Result<()> {
    let switch_user = match identity {
        Identity::User { .. } => nix::unistd::geteuid().is_root(),
        Identity::Process => false,
    };
    if mask.is_none() && !switch_user {
        return Ok(());
    }
    // Threads share the umask (and cwd) unless one unshares them: with its
    // own copy, changing it cannot affect a file another thread creates.
    // SAFETY: unshare(CLONE_FS) only copies this thread's fs attributes.
    if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if let Some(mask) = mask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask & 0o777));
    }
    if let (true, Identity::User { name, uid, gid }) = (switch_user, identity) {
        let name = CString::new(name.as_bytes()).map_err(io::Error::other)?;
        let groups: Vec<libc::gid_t> = nix::unistd::getgrouplist(&name, Gid::from_raw(*gid))
            .map_err(io::Error::from)?
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        // SAFETY: the pointer and length describe `groups`, alive for the call.
        // The raw system call changes this thread only (glibc's wrapper would
        // change every thread of the process).
        let set = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
        if set != 0 {
            return Err(io::Error::last_os_error());
        }
        // setfsgid/setfsuid report failure only by not changing: set, then check.
        nix::unistd::setfsgid(Gid::from_raw(*gid));
        nix::unistd::setfsuid(Uid::from_raw(*uid));
        let gid_now = nix::unistd::setfsgid(Gid::from_raw(*gid));
        let uid_now = nix::unistd::setfsuid(Uid::from_raw(*uid));
        if gid_now.as_raw() != *gid || uid_now.as_raw() != *uid {
            return Err(io::Error::other(format!(
                "cannot take the identity of {}",
                name.to_string_lossy()
            )));
        }
    }
    Ok(())
}
