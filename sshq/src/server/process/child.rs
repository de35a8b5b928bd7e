//! What the child does between fork and exec: a new session, the switch to
//! the user, the home directory; and how failures there are explained.
//!
//! Everything is prepared in the parent. After fork in a threaded program
//! only async-signal-safe calls are allowed, so [`ChildSetup::run`] makes
//! plain system calls and never allocates.
//!
//! With UsePAM the pre_exec hook stops short of the user switch: the
//! program it execs is sshqd's PAM session helper (`server::pam_session`),
//! which switches later, in a child of its own, with the same
//! [`Identity::switch`], [`HomeDir::enter`] and [`reset_signals`].

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{
    sigaction, sigprocmask, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal,
};
use nix::unistd::{self, Gid, Uid};

use super::{SessionUser, SpawnError};

/// sshd's `_PATH_NOLOGIN`: while it exists, only root may start sessions.
pub(super) const NOLOGIN: &str = "/etc/nologin";
const NOLOGIN_C: &CStr = c"/etc/nologin";
/// The exit status of a session refused by /etc/nologin (sshd's).
const NOLOGIN_STATUS: i32 = 254;

/// Who the child becomes.
pub(in crate::server) struct Identity {
    uid: Uid,
    gid: Gid,
    /// The result of initgroups(), computed in the parent: initgroups itself
    /// reads the group database (locks, malloc, NSS), which is not safe
    /// between fork and exec in a threaded program, while setgroups is a
    /// plain system call.
    groups: Vec<Gid>,
}

impl Identity {
    /// `None` when we are not root: we cannot switch, and run as ourselves.
    pub(in crate::server) fn for_user(user: &SessionUser) -> Result<Option<Identity>, SpawnError> {
        let euid = unistd::geteuid();
        if !euid.is_root() {
            if euid.as_raw() != user.uid {
                tracing::warn!(
                    user = %user.name,
                    "not running as root: the session runs as uid {euid}, not as the user"
                );
            }
            return Ok(None);
        }
        let name = CString::new(user.name.as_bytes())
            .map_err(|_| SpawnError::NulByte { what: "user name" })?;
        let gid = Gid::from_raw(user.gid);
        let groups = unistd::getgrouplist(&name, gid).map_err(|source| SpawnError::Groups {
            user: user.name.clone(),
            source,
        })?;
        Ok(Some(Identity {
            uid: Uid::from_raw(user.uid),
            gid,
            groups,
        }))
    }

    /// Becomes the user: supplementary groups and gid first (changing them
    /// needs the privileges that setuid gives up), then `after_groups`
    /// (PAM re-establishes its credentials there, which may add groups, as
    /// sshd does after initgroups), then the uid.
    ///
    /// Only plain system calls, no allocation: safe between fork and exec
    /// of a threaded program.
    pub(in crate::server) fn switch(
        &self,
        after_groups: &mut dyn FnMut(),
    ) -> Result<(), (SwitchStep, Errno)> {
        unistd::setgroups(&self.groups).map_err(|e| (SwitchStep::Groups, e))?;
        unistd::setgid(self.gid).map_err(|e| (SwitchStep::Gid, e))?;
        after_groups();
        unistd::setuid(self.uid).map_err(|e| (SwitchStep::Uid, e))
    }
}

/// The step of [`Identity::switch`] that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::server) enum SwitchStep {
    Groups,
    Gid,
    Uid,
}

impl SwitchStep {
    /// The system call, as [`SpawnError::SwitchUser`] names it.
    pub(in crate::server) fn name(self) -> &'static str {
        match self {
            SwitchStep::Groups => "setgroups",
            SwitchStep::Gid => "setgid",
            SwitchStep::Uid => "setuid",
        }
    }

    fn step(self) -> Step {
        match self {
            SwitchStep::Groups => Step::Groups,
            SwitchStep::Gid => Step::Gid,
            SwitchStep::Uid => Step::Uid,
        }
    }
}

/// The user's home directory, entered after the user switch as sshd does:
/// with the user's rights, and `/` with sshd's message when that fails.
pub(in crate::server) struct HomeDir {
    path: CString,
    /// "Could not chdir to home directory HOME: ", what sshd prints.
    failure: Vec<u8>,
}

impl HomeDir {
    pub(in crate::server) fn new(home: &Path) -> Result<HomeDir, SpawnError> {
        let bytes = home.as_os_str().as_bytes();
        let path = CString::new(bytes).map_err(|_| SpawnError::NulByte {
            what: "home directory",
        })?;
        let mut failure = b"Could not chdir to home directory ".to_vec();
        failure.extend_from_slice(bytes);
        failure.extend_from_slice(b": ");
        Ok(HomeDir { path, failure })
    }

    /// Changes into the home directory, or says why not on stderr and
    /// changes into `/`. Plain system calls only.
    pub(in crate::server) fn enter(&self) {
        if let Err(e) = unistd::chdir(self.path.as_c_str()) {
            // SAFETY: fd 2 is the child's stderr (pipe or pty slave), set
            // up before this runs, and open during the calls.
            let stderr = unsafe { BorrowedFd::borrow_raw(2) };
            let _ = unistd::write(stderr, &self.failure);
            let _ = unistd::write(stderr, e.desc().as_bytes());
            let _ = unistd::write(stderr, b"\n");
            let _ = unistd::chdir(c"/");
        }
    }
}

/// Gives the program the signal state a fresh login has: no blocked
/// signals and default dispositions. Signals the server ignores (SIGPIPE,
/// which Rust ignores) or the PAM helper blocks would otherwise stay so
/// across exec; sshd resets them too. Plain system calls only.
pub(in crate::server) fn reset_signals() {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for signal in Signal::iterator() {
        if !matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
            // SAFETY: installing the default disposition is always sound.
            let _ = unsafe { sigaction(signal, &default) };
        }
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Steps of the setup that can fail, as reported through the status pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    NewSession = 1,
    Groups = 2,
    Gid = 3,
    Uid = 4,
}

/// First byte the child writes: its setup began, so fork, stdio and (with a
/// pty) the controlling terminal went fine.
const STARTED: u8 = 0x10;

/// The parent's end of the status pipe.
///
/// An error from between fork and exec comes back from `spawn` as a bare
/// errno; the bytes the child wrote here say where it happened.
pub(super) struct SetupReport(OwnedFd);

impl SetupReport {
    /// Turns the error `spawn` returned into one that says what failed.
    /// Call it only after the command (holding the pipe's other end) is
    /// gone, which `spawn` failing guarantees for the child.
    pub(super) fn explain(&self, source: io::Error, program: &Path, user: &str) -> SpawnError {
        let mut buf = [0u8; 2];
        // Non-blocking: whatever the child wrote is there by now.
        let step = match unistd::read(&self.0, &mut buf) {
            Ok(0) | Err(_) => return SpawnError::Start(source),
            Ok(1) => None,
            Ok(_) => match buf[1] {
                1 => Some(Step::NewSession),
                2 => Some(Step::Groups),
                3 => Some(Step::Gid),
                4 => Some(Step::Uid),
                _ => None,
            },
        };
        let step = match step {
            None => {
                return SpawnError::Exec {
                    program: program.to_path_buf(),
                    user: user.to_owned(),
                    source,
                }
            }
            Some(Step::NewSession) => return SpawnError::NewSession(source),
            Some(Step::Groups) => "setgroups",
            Some(Step::Gid) => "setgid",
            Some(Step::Uid) => "setuid",
        };
        SpawnError::SwitchUser {
            user: user.to_owned(),
            step,
            source,
        }
    }
}

pub(super) struct ChildSetup {
    /// Without a pty; with one, pty-process has already called setsid.
    new_session: bool,
    /// /etc/nologin applies: show it on stderr and exit 254 instead of
    /// running anything, as sshd's `do_nologin` does in its child.
    nologin: bool,
    identity: Option<Identity>,
    /// `None` for the PAM helper, which enters it later, as the user.
    home: Option<HomeDir>,
    /// Close-on-exec descriptors this child alone passes on to what it
    /// execs (the PAM helper's plan and log).
    pass_on: Vec<RawFd>,
    report: OwnedFd,
}

impl ChildSetup {
    pub(super) fn new(
        new_session: bool,
        nologin: bool,
        identity: Option<Identity>,
        home: &Path,
    ) -> Result<(ChildSetup, SetupReport), SpawnError> {
        let home = HomeDir::new(home)?;
        ChildSetup::with(new_session, nologin, identity, Some(home), Vec::new())
    }

    /// The setup for sshqd's PAM session helper: a new session, /etc/nologin
    /// as without PAM, and the descriptors in `pass_on` kept open across
    /// exec; it stays root and switches to the user itself once PAM's
    /// session is open.
    pub(super) fn for_pam_helper(
        new_session: bool,
        nologin: bool,
        pass_on: Vec<RawFd>,
    ) -> Result<(ChildSetup, SetupReport), SpawnError> {
        ChildSetup::with(new_session, nologin, None, None, pass_on)
    }

    /// The setup for sshqd's internal-sftp helper (`server::sftp`): a new
    /// session and /etc/nologin as for any program; it stays root, since it
    /// chroots before it becomes the user itself.
    pub(super) fn for_internal_sftp(
        new_session: bool,
        nologin: bool,
    ) -> Result<(ChildSetup, SetupReport), SpawnError> {
        ChildSetup::with(new_session, nologin, None, None, Vec::new())
    }

    fn with(
        new_session: bool,
        nologin: bool,
        identity: Option<Identity>,
        home: Option<HomeDir>,
        pass_on: Vec<RawFd>,
    ) -> Result<(ChildSetup, SetupReport), SpawnError> {
        // Close-on-exec so a successful exec leaves nothing behind (and
        // other children forked meanwhile do not keep it).
        let (rx, tx) =
            unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(SpawnError::StatusPipe)?;
        let setup = ChildSetup {
            new_session,
            nologin,
            identity,
            home,
            pass_on,
            report: tx,
        };
        Ok((setup, SetupReport(rx)))
    }

    /// Whether the child will switch users (we are root).
    pub(super) fn switches_user(&self) -> bool {
        self.identity.is_some()
    }

    /// Runs in the child, after fork and before exec.
    pub(super) fn run(&mut self) -> io::Result<()> {
        let _ = unistd::write(&self.report, &[STARTED]);
        reset_signals();
        if self.new_session {
            unistd::setsid().map_err(|e| self.fail(Step::NewSession, e))?;
        }
        if self.nologin {
            show_nologin();
            // SAFETY: _exit is async-signal-safe and ends the child here,
            // without running the parent's atexit handlers or destructors.
            unsafe { nix::libc::_exit(NOLOGIN_STATUS) };
        }
        for &fd in &self.pass_on {
            // SAFETY: the parent keeps these open until spawn returns.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            )
            .map_err(io::Error::from)?;
        }
        if let Some(id) = &self.identity {
            id.switch(&mut || {})
                .map_err(|(step, e)| self.fail(step.step(), e))?;
        }
        if let Some(home) = &self.home {
            home.enter();
        }
        Ok(())
    }

    fn fail(&self, step: Step, errno: Errno) -> io::Error {
        let _ = unistd::write(&self.report, &[step as u8]);
        io::Error::from(errno)
    }
}

/// Copies /etc/nologin to the child's stderr, as sshd does. Runs between
/// fork and exec: plain system calls and a buffer on the stack.
fn show_nologin() {
    let Ok(file) = nix::fcntl::open(
        NOLOGIN_C,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) else {
        return;
    };
    // SAFETY: fd 2 is the child's stderr, set up by std before this hook.
    let stderr = unsafe { BorrowedFd::borrow_raw(2) };
    let mut buf = [0u8; 1024];
    while let Ok(n @ 1..) = unistd::read(&file, &mut buf) {
        let _ = unistd::write(stderr, buf.get(..n).unwrap_or_default());
    }
}
