//! `internal-sftp`: sshqd's own SFTP server, for `Subsystem sftp
//! internal-sftp` and `ForceCommand internal-sftp`, with `ChrootDirectory`
//! as sshd applies it. It runs with the user's rights, never root's.
//!
//! # How it starts
//!
//! Like sshd, which runs sftp-server's code in the session's child instead
//! of exec'ing a shell, the subsystem's program is sshqd itself: the
//! session spawner (`process::spawn_confined`) execs sshqd's binary
//! (`/proc/self/exe`) with [`HELPER_ARG`] first (dispatched in `sshqd`'s
//! `main` before anything else), through the same path as any session
//! program: new session, pipes, /etc/nologin, and with UsePAM the PAM
//! session helper around it (limits, PAM's session modules).
//!
//! The chroot must happen as root and before the user switch (chroot(2)
//! needs the privilege; sshd does it in `do_setusercontext`, between
//! initgroups and setuid), and once inside, `/proc/self/exe` is out of
//! reach. Of the two ways to do that, the helper doing it itself mirrors
//! sshd best and keeps everything out of the fork-exec window: without
//! PAM the spawner's pre_exec hook leaves the child root (no identity
//! switch, no home directory), and the helper, a fresh single-threaded
//! process, (1) looks the user up and computes the groups while `/etc`
//! is still reachable, (2) chroots when a ChrootDirectory was given
//! (sshqd checked sshd's ownership rules before starting it, see
//! [`chroot`]), (3) becomes the user with the spawner's own
//! `Identity::switch` (groups, gid, uid), (4) enters the home directory,
//! silently falling back to `/` in a chroot as sshd does, and (5) only
//! then reads a byte from the client. The alternative, chroot in the
//! pre_exec hook and `fexecve` of a descriptor opened beforehand, would
//! put path checks and error reporting between fork and exec, where only
//! async-signal-safe calls are allowed.
//!
//! While the helper is root it trusts nothing from the client: its
//! environment is empty (no LD_PRELOAD or TZ from AcceptEnv can reach a
//! root process), its arguments come from sshqd's configuration.
//!
//! With UsePAM the PAM session helper becomes the user before it execs
//! the program, so the internal-sftp helper starts as the user and skips
//! steps 1 to 3; ChrootDirectory is then refused (the PAM helper has no
//! chroot step yet), rather than run unconfined.
//!
//! # Why not russh-sftp's server
//!
//! russh-sftp 3.0.1 (kept for `sshq cp`'s client) was measured against
//! what OpenSSH's clients need and does not fit the server side: paths and
//! handles are `String`, so a file name that is not UTF-8 fails the whole
//! packet and is answered with request id 0 (which desynchronises sftp);
//! after a framing error its loop goes on reading mid-packet; every reply
//! is written and flushed alone through tokio's blocking stdio threads;
//! and the extensions sftp and scp use (posix-rename, statvfs for `df`,
//! fsync, hardlink, limits, expand-path, home-directory) would all have to
//! be hand-encoded through its untyped `extended` hook anyway. SFTP v3 is
//! small, so [`wire`] and [`server`] implement it directly, following
//! sftp-server.c's behaviour (statuses per errno, limits, rename rules).

pub mod chroot;
mod listing;
pub mod options;
mod server;
pub mod wire;

use std::ffi::OsString;
use std::io;
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::server::process::child::Identity;
use crate::server::process::SessionUser;

/// The first argument that makes sshqd an internal-sftp helper.
pub const HELPER_ARG: &str = "--internal-sftp";

/// The program name as sshd recognises it, in a Subsystem or a forced
/// command.
pub const INTERNAL_SFTP: &str = "internal-sftp";

/// sshd's IS_INTERNAL_SFTP: the command is `internal-sftp`, alone or
/// followed by a space or tab and its options.
pub fn is_internal_sftp(command: &str) -> bool {
    command
        .strip_prefix(INTERNAL_SFTP)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

/// sshd's message for a shell or command under `ForceCommand
/// internal-sftp`.
pub const SFTP_ONLY: &str = "This service allows sftp connections only.\n";

static HELPER_PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// Makes `program` (an sshqd binary) the internal-sftp helper for this
/// process, in place of `/proc/self/exe`, for programs that embed the
/// spawner without being sshqd (tests). The first call wins.
pub fn use_helper_program(program: PathBuf) -> bool {
    HELPER_PROGRAM.set(program).is_ok()
}

/// The sshqd binary to exec as the helper.
pub fn helper_program() -> &'static Path {
    HELPER_PROGRAM
        .get()
        .map_or(Path::new("/proc/self/exe"), PathBuf::as_path)
}

/// The helper's arguments after argv[0]: [`HELPER_ARG`], the user, the
/// chroot directory (empty for none), then the configured command line's
/// words after `internal-sftp` (split as sshd's argv_split does).
pub fn helper_args(user: &str, chroot: Option<&Path>, command_line: &str) -> Vec<OsString> {
    let mut args = vec![
        OsString::from(HELPER_ARG),
        OsString::from(user),
        chroot.map_or_else(OsString::new, |path| path.as_os_str().to_owned()),
    ];
    // The configuration parsed this line already, so it splits.
    if let Ok(Some((_, words))) = crate::config_syntax::split_line(command_line) {
        args.extend(words.into_iter().map(OsString::from));
    }
    args
}

/// The helper's `main`: `args` as sshqd got them. Returns the exit status.
pub fn run_helper(args: &[String]) -> i32 {
    match serve_session(args) {
        Ok(status) => status,
        Err(message) => {
            eprintln!("internal-sftp: {message}");
            1
        }
    }
}

fn serve_session(args: &[String]) -> Result<i32, String> {
    let [_, _, user_name, chroot, words @ ..] = args else {
        return Err("started without its arguments (sshqd starts it)".into());
    };
    let options = options::Options::parse(words)?;
    if options.query {
        for name in server::request_names() {
            println!("{name}");
        }
        return Ok(0);
    }
    let user = SessionUser::lookup(user_name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no such user {user_name}"))?;
    become_user(&user, (!chroot.is_empty()).then(|| Path::new(chroot)))?;
    if let Some(mask) = options.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    if let Some(template) = &options.start_dir {
        let home = user.home.to_string_lossy();
        let dir = options::expand_start_dir(template, &home, &user.name)
            .ok_or_else(|| format!("unknown token in start directory \"{template}\""))?;
        // sftp-server goes on where it is when this fails.
        if let Err(e) = std::env::set_current_dir(&dir) {
            eprintln!("internal-sftp: chdir to \"{dir}\" failed: {}", strerror(&e));
        }
    }
    // SAFETY: fds 0 and 1 are the session's pipes (or pty), open for the
    // whole process; nothing else in the helper uses them.
    let (input, output) = unsafe { (std::fs::File::from_raw_fd(0), std::fs::File::from_raw_fd(1)) };
    let mut server = server::Server::new(options, user.name.clone(), user.home.clone());
    Ok(match server.run(input, output) {
        server::Ending::Closed => 0,
        server::Ending::ProtocolError => {
            eprintln!("internal-sftp: bad message from the client");
            11
        }
        server::Ending::Io => 1,
    })
}

/// Steps 1 to 4 of the module's description. When we are not root (the
/// PAM helper already switched, or sshqd runs unprivileged) only the home
/// directory is entered, and a chroot is refused as sshd refuses it.
fn become_user(user: &SessionUser, chroot: Option<&Path>) -> Result<(), String> {
    let identity = Identity::for_user(user).map_err(|e| e.to_string())?;
    if identity.is_none() && chroot.is_some() {
        return Err("server lacks privileges to chroot to ChrootDirectory".into());
    }
    if let Some(path) = chroot {
        chroot::enter(path).map_err(|e| e.to_string())?;
    }
    if let Some(identity) = identity {
        identity.switch(&mut || {}).map_err(|(step, errno)| {
            format!(
                "cannot switch to user {}: {} failed: {}",
                user.name,
                step.name(),
                errno.desc()
            )
        })?;
        // sshd's final check: no way back to root.
        if nix::unistd::setuid(nix::unistd::Uid::from_raw(0)).is_ok() && user.uid != 0 {
            return Err(format!("Failed to set uids to {}.", user.uid));
        }
    }
    if let Err(e) = std::env::set_current_dir(&user.home) {
        // sshd is silent about a missing home inside a chroot.
        if chroot.is_none() {
            eprintln!(
                "Could not chdir to home directory {}: {}",
                user.home.display(),
                strerror(&e)
            );
        }
        let _ = std::env::set_current_dir("/");
    }
    Ok(())
}

/// The C library's text for an I/O error, as sshd prints it.
pub(crate) fn strerror(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(errno) => nix::errno::Errno::from_raw(errno).desc().to_string(),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognised_as_sshd_does() {
        assert!(is_internal_sftp("internal-sftp"));
        assert!(is_internal_sftp("internal-sftp -R"));
        assert!(is_internal_sftp("internal-sftp\t-d /x"));
        assert!(!is_internal_sftp("internal-sftpx"));
        assert!(!is_internal_sftp("/usr/lib/openssh/sftp-server"));
    }

    #[test]
    fn helper_arguments() {
        let args = helper_args(
            "alice",
            Some(Path::new("/srv")),
            "internal-sftp -d \"/a b\" -R",
        );
        assert_eq!(
            args,
            ["--internal-sftp", "alice", "/srv", "-d", "/a b", "-R"]
        );
        let args = helper_args("bob", None, "internal-sftp");
        assert_eq!(args, ["--internal-sftp", "bob", ""]);
    }
}
