//! The PAM session stage (UsePAM yes): every session program (shell,
//! command, subsystem; with a pty or pipes) runs inside a PAM session, as
//! under sshd: `pam_setcred(PAM_ESTABLISH_CRED)` and `pam_open_session`
//! as root before the program starts, PAM's environment (pam_env,
//! pam_mail, ...) in the program's, what pam_limits, pam_umask,
//! pam_loginuid or pam_keyinit set applying to it, and
//! `pam_close_session` and `pam_setcred(PAM_DELETE_CRED)` once it ended.
//!
//! # Why a helper process
//!
//! Session modules change the process that calls them (setrlimit, the
//! umask, `/proc/self/loginuid`, the session keyring). sshqd is one
//! multi-threaded process serving every connection, so they must never run
//! in it; and nothing but async-signal-safe calls may run between fork and
//! exec of a threaded process, which rules out PAM in the spawner's child
//! too. So with UsePAM the spawner (`process::spawn`) execs, in place of
//! the user's shell, sshqd's own binary (`/proc/self/exe`) as the session
//! helper ([`HELPER_ARG`], dispatched in `sshqd`'s `main` before anything
//! else): a fresh, single-threaded process that is already what the
//! session needs (session leader, the pty as controlling terminal and
//! stdio, or the pipes), still root. What to run comes in a memfd
//! named by descriptor number ([`SessionPlan`]: user, shell, argv,
//! environment), never in argv, so `ps` shows none of it and no argv limit
//! applies; sshqd's log goes to a second descriptor.
//!
//! The helper (`helper.rs`):
//! 1. `pam_start(service, user)`, PAM_TTY (the pty's path, or `ssh` as
//!    sshd sets it without one), PAM_RHOST (the client's address),
//!    SSH_CONNECTION in PAM's environment as sshd puts it there;
//! 2. `pam_setcred(ESTABLISH)` and `pam_open_session`. A failure is logged
//!    as sshd logs it (`PAM: pam_open_session(): ...`), the user gets
//!    what PAM said (pam_nologin's text, say), and the session ends with
//!    status 254, as sshd's child does when the PAM session is not open;
//! 3. forks; the child becomes the user with the spawner's own code
//!    (`process::child`: groups, gid, PAM credentials again as sshd
//!    re-establishes them after initgroups, uid; the home directory with
//!    sshd's message and `/`), shows PAM's messages for a shell unless
//!    `~/.hushlogin` exists (sshd's check_quietlogin), resets signals and
//!    execs the shell with sshd's environment merged as `do_setup_env`
//!    does: PAM's variables replace sshd's own, except SSH_CLIENT,
//!    SSH_CONNECTION, SSH_TTY and SSH_ORIGINAL_COMMAND, which sshd sets
//!    after them, and PAM's SSH_AUTH_INFO* and SSH_CONNECTION*, which sshd
//!    never copies;
//! 4. waits for the program, closes the PAM session, and exits as the
//!    program did: the same code, or the same signal (default
//!    disposition, no core dump, raised on itself), so sshqd reports the
//!    same exit-status or exit-signal. A core dump of the program is
//!    reported as none.
//!
//! # Signals
//!
//! sshqd signals the session's process group (client `signal` requests,
//! SIGHUP and SIGKILL when a session is dropped). The helper leads that
//! group and its child starts in it, so a group signal reaches the
//! program directly, once. The helper blocks the signals sshqd may send
//! and takes them with `sigwaitinfo`, so it survives to close the PAM
//! session; it passes one on only where the program could not have had
//! it: to the program's own group when the program made one (an
//! interactive shell with job control does), and the terminal's hangup
//! (which the kernel sends to the session leader alone) to the program.
//! SIGKILL cannot be caught: a program that outlives SIGHUP by the grace
//! period is killed together with its helper, and PAM's session is then
//! not closed (as when sshd's monitor is killed).
//!
//! # Where sshqd differs from sshd
//!
//! sshd opens one PAM session per connection, in its monitor, with PAM_TTY
//! `ssh`; sshqd opens one per session program (with the pty's path as
//! PAM_TTY when there is one), since a connection's programs are not the
//! children of one process of their own. sshd leaves /etc/nologin to
//! pam_nologin under UsePAM; sshqd refuses non-root users while it exists
//! either way (draft §12.11), before any PAM session opens.
//! pam-client's `open_session` treats a failing `pam_setcred` as a failure
//! to open (sshd only logs it when the login did not go through PAM), and
//! re-initialises the credentials after opening.

mod conversation;
mod helper;
mod plan;
#[cfg(test)]
mod tests;

pub use plan::{PlanError, SessionPlan};

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::process::{SpawnError, ROOT_PATH};

/// The first argument that makes sshqd a PAM session helper. sshqd starts
/// it itself; it is of no use to anyone else (it needs the descriptors
/// sshqd passes).
pub const HELPER_ARG: &str = "--pam-session-helper";

/// The exit status of a session whose PAM session could not be opened
/// (sshd's child exits 254 when `is_pam_session_open()` is false).
pub const NOT_OPENED_STATUS: i32 = 254;

/// A program other than sshqd that starts sessions with UsePAM (the
/// tests) names the sshqd binary to use as the helper; sshqd itself uses
/// its own executable.
static HELPER_PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// Makes `program` (an sshqd binary) the PAM session helper for this
/// process, in place of `/proc/self/exe`. For programs that embed the
/// spawner without being sshqd; the first call wins (false for later
/// ones).
pub fn use_helper_program(program: PathBuf) -> bool {
    HELPER_PROGRAM.set(program).is_ok()
}

fn helper_program() -> &'static Path {
    HELPER_PROGRAM
        .get()
        .map_or(Path::new("/proc/self/exe"), PathBuf::as_path)
}

/// The helper's `main`: `args` is sshqd's argv (`args[1]` is
/// [`HELPER_ARG`]). Returns the exit code, unless it ends by the signal the
/// program died of.
pub fn run_helper(args: &[String]) -> i32 {
    helper::run(args)
}

/// What the spawner execs for a session with UsePAM: the helper, with the
/// plan and sshqd's log as descriptors that only its child inherits.
pub(in crate::server) struct HelperLaunch {
    program: PathBuf,
    /// What `ps` shows for the helper.
    label: OsString,
    plan: OwnedFd,
    log: OwnedFd,
}

impl HelperLaunch {
    /// Writes `plan` into a memfd and duplicates sshqd's standard error for
    /// the helper's log lines; both close-on-exec until the spawner's
    /// child clears the flag on its own copies
    /// (`ChildSetup::for_pam_helper`).
    pub(in crate::server) fn prepare(plan: &SessionPlan) -> Result<HelperLaunch, SpawnError> {
        let failed = |what: &'static str| {
            move |source: std::io::Error| SpawnError::PamHelper { what, source }
        };
        let mut bytes = Vec::new();
        plan.encode(&mut bytes);
        let memfd = nix::sys::memfd::memfd_create(
            c"sshqd-pam-session-plan",
            nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
        )
        .map_err(|e| failed("create the plan's memfd")(e.into()))?;
        let mut file = std::fs::File::from(memfd);
        file.write_all(&bytes).map_err(failed("write the plan"))?;
        let plan_fd = OwnedFd::from(file);
        let stderr = std::io::stderr();
        let log = nix::fcntl::fcntl(&stderr, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
            .map_err(|e| failed("duplicate the log descriptor")(e.into()))?;
        // SAFETY: F_DUPFD_CLOEXEC just returned this descriptor; nobody else
        // owns it.
        let log = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(log) };
        let mut label = OsString::from("sshqd: PAM session of ");
        label.push(&plan.user.name);
        Ok(HelperLaunch {
            program: helper_program().to_path_buf(),
            label,
            plan: plan_fd,
            log,
        })
    }

    /// The descriptors the spawner's child keeps open across exec.
    pub(in crate::server) fn pass_on(&self) -> Vec<RawFd> {
        vec![self.plan.as_raw_fd(), self.log.as_raw_fd()]
    }

    /// The helper's command line; its environment is only PATH (PAM
    /// modules that run programs find them), since the session's travels
    /// in the plan.
    pub(in crate::server) fn command(&self) -> tokio::process::Command {
        let mut cmd = std::process::Command::new(&self.program);
        cmd.arg0(&self.label)
            .arg(HELPER_ARG)
            .arg(self.plan.as_raw_fd().to_string())
            .arg(self.log.as_raw_fd().to_string())
            .env_clear()
            .env("PATH", ROOT_PATH);
        tokio::process::Command::from(cmd)
    }

    /// The executable run, for error messages.
    pub(in crate::server) fn program(&self) -> &Path {
        &self.program
    }
}
