//! Starting what an SSH session asks for (a shell, a command or a
//! subsystem) the way OpenSSH's sshd does, and handing back async handles to
//! it.
//!
//! What sshd does and we copy:
//! - the program runs as the user: supplementary groups, gid, then uid, set in
//!   the child between fork and exec, then the current directory becomes the
//!   user's home (with sshd's message and `/` when that fails);
//! - the user's login shell runs everything: `-sh` style login shell for a
//!   shell request, `shell -c ...` for commands and subsystems;
//! - a fresh environment with sshd's variables;
//! - with a pty the child leads a new session with the pty slave as its
//!   controlling terminal and as stdin/stdout/stderr; without one, three
//!   pipes and still a new session, so the whole process group can be
//!   signalled;
//! - signals from the client go to the process group (`killpg`), and never
//!   to subsystems.
//!
//! What we add: nothing outlives a [`SessionProcess`] that is dropped while
//! its program still runs. The process group gets SIGHUP (what a closing
//! terminal sends), then SIGKILL after a grace period. A supervisor task owns
//! the child and always reaps it, so no zombies are left either.
//!
//! Ptys are allocated in `pty.rs` (close-on-exec from the moment they
//! exist) and driven by `pty-process`: it gives an async master and lets us add a
//! `pre_exec` hook that runs after it made the child a session leader with
//! the slave as controlling terminal, which is all the user switch needs
//! (see `pty.rs` for what we add on top).
//!
//! With UsePAM ([`SpawnRequest::pam_service`]) the child runs inside a PAM
//! session. PAM's session modules change the process that calls them
//! (limits, login uid, keyrings, umask), and must run neither in sshqd nor
//! between fork and exec of a threaded program. So the child execs, in
//! place of the user's shell, sshqd's PAM session helper
//! ([`crate::server::pam_session`]): same pty or pipes, same new session,
//! still root. The helper opens the PAM session, starts the shell as the
//! user in a child of its own with everything prepared here (arguments,
//! environment), and closes the session when it ends; it exits as the
//! program did, so everything below (signals to the process group, the
//! exit status, the hangup on drop) works unchanged.

pub(in crate::server) mod child;
mod internal_sftp;
mod pty;
mod stdio;
#[cfg(test)]
mod tests;

pub use stdio::{SessionOutput, SessionStdin};

use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::{self, Pid};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// sshd's default PATH for ordinary users (Debian's `_PATH_STDPATH`).
pub(in crate::server) const USER_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/games";
/// sshd's default PATH for root (`SUPERUSER_PATH`).
pub(in crate::server) const ROOT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where sshd points MAIL (`_PATH_MAILDIR`).
const MAIL_DIR: &str = "/var/mail";
/// sshd's fallback when the passwd entry has no shell (`_PATH_BSHELL`).
const DEFAULT_SHELL: &str = "/bin/sh";
/// How long a dropped session's process group may take to act on SIGHUP
/// (shells save their history, editors their buffers) before SIGKILL.
pub const DEFAULT_HANGUP_GRACE: Duration = Duration::from_secs(2);
/// How often the group is polled during the grace period once its leader is
/// gone; the kernel gives no notification for other members.
const GROUP_POLL: Duration = Duration::from_millis(50);

/// The account a session runs as: the parts of its passwd entry we need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    /// Login shell; empty means `/bin/sh`, as in sshd.
    pub shell: PathBuf,
}

/// Looking a user up in the passwd database failed (not: the user does not
/// exist, which is `Ok(None)`).
#[derive(Debug, thiserror::Error)]
#[error("cannot look up user {user}: {source}")]
pub struct UserLookupError {
    pub user: String,
    #[source]
    pub source: Errno,
}

impl SessionUser {
    /// Looks `name` up in the passwd database.
    ///
    /// This may block (NSS can ask LDAP and the like); async callers with a
    /// slow user database should run it through `spawn_blocking`.
    pub fn lookup(name: &str) -> Result<Option<SessionUser>, UserLookupError> {
        let user = unistd::User::from_name(name).map_err(|source| UserLookupError {
            user: name.to_owned(),
            source,
        })?;
        Ok(user.map(|u| SessionUser {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
            home: u.dir,
            shell: u.shell,
        }))
    }
}

pub use sshq_core::channel::PtyRequest;

/// What the session asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// `shell`: the user's login shell as a login shell.
    Shell,
    /// `exec`: run through `shell -c`; the bytes need not be UTF-8.
    Command(Vec<u8>),
    /// `subsystem`: the command line configured for it, run through
    /// `shell -c` as sshd does for external subsystems.
    Subsystem(String),
}

/// Everything [`spawn`] needs to start a session's program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnRequest {
    pub user: SessionUser,
    pub program: Program,
    pub pty: Option<PtyRequest>,
    /// Variables the client sent, already filtered by AcceptEnv. Ours are set
    /// after them, so a client cannot override USER, PATH and the like.
    pub env: Vec<(String, String)>,
    /// PermitUserEnvironment's variables (`environment=`, then
    /// ~/.ssh/environment): set after ours, so they may replace them.
    pub user_env: Vec<(String, String)>,
    /// `"client_ip client_port server_ip server_port"`.
    pub ssh_connection: String,
    /// Forwarded agent socket, exported as SSH_AUTH_SOCK.
    pub auth_sock: Option<PathBuf>,
    /// With UsePAM yes, the PAM service (PAMServiceName) whose session the
    /// program runs in; `None` (UsePAM no): no PAM at all.
    pub pam_service: Option<String>,
}

/// Why a session's program could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("no tokio runtime to supervise the session process")]
    NoRuntime,
    #[error("the {what} contains a NUL byte")]
    NulByte { what: &'static str },
    #[error("cannot look up the groups of user {user}: {source}")]
    Groups {
        user: String,
        #[source]
        source: Errno,
    },
    #[error("cannot allocate a pty: {0}")]
    PtyOpen(#[source] io::Error),
    #[error("cannot set up the pty: cannot {what}: {source}")]
    PtySetup {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot create the child status pipe: {0}")]
    StatusPipe(#[source] Errno),
    /// Failed in the child before our setup ran: fork, stdio, or making the
    /// pty the controlling terminal.
    #[error("cannot start the session process: {0}")]
    Start(#[source] io::Error),
    #[error("cannot start a new session for the child: {0}")]
    NewSession(#[source] io::Error),
    #[error("cannot switch to user {user}: {step} failed: {source}")]
    SwitchUser {
        user: String,
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot prepare the PAM session helper: cannot {what}: {source}")]
    PamHelper {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// ChrootDirectory refused: sshd's message (bad ownership or modes,
    /// not a directory, no privileges, ...).
    #[error("{0}")]
    Chroot(String),
    #[error("cannot execute {} for user {user}: {source}", .program.display())]
    Exec {
        program: PathBuf,
        user: String,
        #[source]
        source: io::Error,
    },
}

/// How the session's program ended, in the terms of `exit-status` and
/// `exit-signal` (RFC 4254 section 6.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    Code(u32),
    /// `name` is the SSH signal name, without `SIG` ("TERM"); signals SSH
    /// has no name for are reported as `SIG@openssh.com`, as sshd does.
    Signal {
        name: String,
        core_dumped: bool,
    },
}

impl ExitStatus {
    fn from_std(status: std::process::ExitStatus) -> ExitStatus {
        if let Some(code) = status.code() {
            ExitStatus::Code(u32::try_from(code).unwrap_or(255))
        } else if let Some(signo) = status.signal() {
            ExitStatus::Signal {
                name: signal_ssh_name(signo),
                core_dumped: status.core_dumped(),
            }
        } else {
            // wait() reports only exits and deaths; keep a failure code in
            // case a platform says otherwise.
            ExitStatus::Code(255)
        }
    }

    /// The `exit-status` or `exit-signal` request that reports it.
    pub fn into_request(self) -> sshq_core::channel::ChannelRequest {
        use sshq_core::channel::{ChannelRequest, ExitSignal};
        match self {
            ExitStatus::Code(code) => ChannelRequest::ExitStatus(code),
            ExitStatus::Signal { name, core_dumped } => ChannelRequest::ExitSignal(ExitSignal {
                signal: name,
                core_dumped,
                message: String::new(),
            }),
        }
    }
}

/// Sending a signal on behalf of the client failed.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("unsupported signal \"{0}\"")]
    Unsupported(String),
    #[error("refusing to send a signal to a subsystem session")]
    Subsystem,
    #[error("the session process has already exited")]
    Exited,
    #[error("cannot send SIG{name} to process group {pgid}: {source}")]
    Send {
        name: String,
        pgid: i32,
        #[source]
        source: Errno,
    },
}

/// The signals RFC 4254 section 6.10 names, by their SSH names.
const SSH_SIGNALS: &[(&str, Signal)] = &[
    ("ABRT", Signal::SIGABRT),
    ("ALRM", Signal::SIGALRM),
    ("FPE", Signal::SIGFPE),
    ("HUP", Signal::SIGHUP),
    ("ILL", Signal::SIGILL),
    ("INT", Signal::SIGINT),
    ("KILL", Signal::SIGKILL),
    ("PIPE", Signal::SIGPIPE),
    ("QUIT", Signal::SIGQUIT),
    ("SEGV", Signal::SIGSEGV),
    ("TERM", Signal::SIGTERM),
    ("USR1", Signal::SIGUSR1),
    ("USR2", Signal::SIGUSR2),
];

fn signal_from_ssh_name(name: &str) -> Option<Signal> {
    SSH_SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
}

fn signal_ssh_name(signo: i32) -> String {
    SSH_SIGNALS
        .iter()
        .find(|(_, s)| *s as i32 == signo)
        .map_or("SIG@openssh.com", |(n, _)| n)
        .to_owned()
}

type WaitOutcome = Result<ExitStatus, Arc<io::Error>>;

/// A running session program.
///
/// Take the I/O ends out with the `take_*` methods to move them into their
/// own tasks. Dropping this while the program still runs hangs it up: SIGHUP
/// to its process group, SIGKILL after [`DEFAULT_HANGUP_GRACE`] (see
/// [`SessionProcess::set_hangup_grace`]). A program that already exited is
/// left alone together with whatever it left running in the background, as
/// sshd does. If the runtime shuts down first, the group gets SIGHUP then
/// (SIGKILL if this was already dropped), since nobody is left to wait.
#[derive(Debug)]
pub struct SessionProcess {
    pid: Pid,
    is_subsystem: bool,
    stdin: Option<SessionStdin>,
    stdout: Option<SessionOutput>,
    stderr: Option<SessionOutput>,
    /// A second descriptor of the pty master, for window changes once the
    /// reader and writer halves have been handed out.
    pty_master: Option<OwnedFd>,
    tty_path: Option<PathBuf>,
    status: watch::Receiver<Option<WaitOutcome>>,
    /// Dropping the process sends SIGHUP, then the grace period here; the
    /// supervisor sends SIGKILL once it is over.
    hangup: Option<oneshot::Sender<Duration>>,
    hangup_grace: Duration,
    /// Set once SIGHUP went out, shared with the supervisor (see
    /// `CancelGuard`).
    hung_up: Arc<AtomicBool>,
}

impl SessionProcess {
    /// The child's pid, which is also its process group and session id.
    pub fn id(&self) -> u32 {
        self.pid.as_raw().unsigned_abs()
    }

    /// The pty slave (`/dev/pts/N`) when the session has a pty.
    pub fn tty_path(&self) -> Option<&Path> {
        self.tty_path.as_deref()
    }

    /// The child's stdin, or the pty master's writing side.
    pub fn take_stdin(&mut self) -> Option<SessionStdin> {
        self.stdin.take()
    }

    /// The child's stdout, or the pty master's reading side (which then
    /// carries stderr too).
    pub fn take_stdout(&mut self) -> Option<SessionOutput> {
        self.stdout.take()
    }

    /// The child's stderr; `None` with a pty, where stderr is the terminal
    /// as in sshd.
    pub fn take_stderr(&mut self) -> Option<SessionOutput> {
        self.stderr.take()
    }

    /// Applies a `window-change`. Without a pty this does nothing, like
    /// sshd.
    pub fn resize(&self, cols: u32, rows: u32, pix_width: u32, pix_height: u32) -> io::Result<()> {
        match &self.pty_master {
            Some(master) => pty::set_window_size(master.as_fd(), cols, rows, pix_width, pix_height)
                .map_err(io::Error::from),
            None => Ok(()),
        }
    }

    /// Sends the signal with SSH name `name` ("INT", "TERM", ...) to the
    /// program's process group, like sshd's `killpg`. Subsystems are refused,
    /// as in sshd: their protocol is with the client, not with signals.
    pub fn signal(&self, name: &str) -> Result<(), SignalError> {
        let signal =
            signal_from_ssh_name(name).ok_or_else(|| SignalError::Unsupported(name.to_owned()))?;
        if self.is_subsystem {
            return Err(SignalError::Subsystem);
        }
        // Once reaped, the pid may be reused: only signal a live program.
        if self.status.borrow().is_some() {
            return Err(SignalError::Exited);
        }
        killpg(self.pid, signal).map_err(|source| SignalError::Send {
            name: name.to_owned(),
            pgid: self.pid.as_raw(),
            source,
        })
    }

    /// Waits for the program to end. The future does not borrow `self`, so
    /// it can run in another task while this one handles resizes and
    /// signals; it can be created any number of times.
    pub fn wait(&self) -> impl Future<Output = io::Result<ExitStatus>> + Send + 'static {
        let mut status = self.status.clone();
        async move {
            let outcome = status
                .wait_for(Option::is_some)
                .await
                .map_err(|_| io::Error::other("the session supervisor task ended"))?
                .clone();
            match outcome {
                Some(Ok(status)) => Ok(status),
                Some(Err(e)) => Err(io::Error::new(e.kind(), e.to_string())),
                None => Err(io::Error::other("the session supervisor task ended")),
            }
        }
    }

    /// The exit status if the program has ended and been reaped.
    pub fn try_exit_status(&self) -> Option<ExitStatus> {
        match &*self.status.borrow() {
            Some(Ok(status)) => Some(status.clone()),
            _ => None,
        }
    }

    /// How long the process group gets between SIGHUP and SIGKILL when this
    /// is dropped while the program still runs.
    pub fn set_hangup_grace(&mut self, grace: Duration) {
        self.hangup_grace = grace;
    }
}

impl Drop for SessionProcess {
    fn drop(&mut self) {
        let Some(tx) = self.hangup.take() else {
            return;
        };
        // An ended program is left alone, with whatever it left behind.
        if self.status.borrow().is_some() {
            return;
        }
        // SIGHUP right here rather than in the supervisor, so that it goes
        // out even if the runtime is shutting down and never polls it again.
        send_hangup(self.pid);
        self.hung_up.store(true, Ordering::SeqCst);
        // Fails only when the supervisor is done, i.e. the program ended.
        let _ = tx.send(self.hangup_grace);
    }
}

/// Starts the session's program as `req.user`, as sshd does.
///
/// Must be called within a tokio runtime's context (a task on it reaps the
/// child), but off its async workers: looking up the user's groups may
/// block on NSS, and fork/exec and the file checks are blocking calls too.
/// sshqd calls it through `spawn_blocking` (`blocking::off_worker`).
///
/// When we are not root the program runs as ourselves: checking that the
/// request is for our own account is the caller's job (as with a non-root
/// sshd, which refuses other users at authentication).
pub fn spawn(req: SpawnRequest) -> Result<SessionProcess, SpawnError> {
    spawn_confined(req, None)
}

/// [`spawn`] with sshd's ChrootDirectory (already expanded for the user)
/// when `chroot` is given. A subsystem or forced command that is
/// `internal-sftp` runs sshqd's own SFTP server (`server::sftp`), in the
/// chroot if there is one. sshqd chroots nothing else: other programs are
/// refused under a ChrootDirectory rather than run outside it.
pub fn spawn_confined(
    req: SpawnRequest,
    chroot: Option<&Path>,
) -> Result<SessionProcess, SpawnError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| SpawnError::NoRuntime)?;
    let shell = if req.user.shell.as_os_str().is_empty() {
        PathBuf::from(DEFAULT_SHELL)
    } else {
        req.user.shell.clone()
    };
    let started = match &req.program {
        Program::Subsystem(line) if crate::server::sftp::is_internal_sftp(line) => {
            internal_sftp::start(&req, line, chroot)
        }
        _ if chroot.is_some() => Err(SpawnError::Chroot(
            "ChrootDirectory is supported for internal-sftp sessions only".to_string(),
        )),
        program => {
            let argv = shell_argv(&shell, program)?;
            match &req.pam_service {
                None => start_directly(&req, &shell, argv),
                Some(service) => start_in_pam_session(&req, service, &shell, argv),
            }
        }
    };
    let (child, handles) = started?;

    let (status_tx, status_rx) = watch::channel(None);
    let (hangup_tx, hangup_rx) = oneshot::channel();
    let pid = handles.pid;
    let hung_up = Arc::new(AtomicBool::new(false));
    let guard = CancelGuard {
        pgid: pid,
        hung_up: hung_up.clone(),
        armed: true,
    };
    runtime.spawn(supervise(child, guard, hangup_rx, status_tx));
    Ok(SessionProcess {
        pid,
        is_subsystem: matches!(req.program, Program::Subsystem(_)),
        stdin: Some(handles.stdin),
        stdout: Some(handles.stdout),
        stderr: handles.stderr,
        pty_master: handles.pty_master,
        tty_path: handles.tty_path,
        status: status_rx,
        hangup: Some(hangup_tx),
        hangup_grace: DEFAULT_HANGUP_GRACE,
        hung_up,
    })
}

/// UsePAM no: the child becomes the user in its pre_exec hook and execs
/// the shell.
fn start_directly(
    req: &SpawnRequest,
    shell: &Path,
    argv: Vec<OsString>,
) -> Result<(Child, Handles), SpawnError> {
    let mut cmd = command_for(shell, &argv);
    let identity = child::Identity::for_user(&req.user)?;
    let nologin = nologin_applies(&req.user);
    let (setup, report) =
        child::ChildSetup::new(req.pty.is_none(), nologin, identity, &req.user.home)?;

    let mut vars = session_env(req, shell);
    let pty = match &req.pty {
        Some(request) => Some(open_pty(
            request,
            &req.user,
            setup.switches_user(),
            &mut vars,
        )?),
        None => None,
    };
    cmd.env_clear().envs(vars.0);
    let started = match pty {
        None => start_with_pipes(cmd, setup),
        Some(pty) => start_on_pty(cmd, setup, pty),
    };
    started.map_err(|source| report.explain(source, shell, &req.user.name))
}

/// UsePAM yes: the child execs sshqd's PAM session helper, still root,
/// with the pty or pipes and the new session already in place; the helper
/// opens the PAM session and starts the shell as the user with the
/// arguments and environment prepared here.
fn start_in_pam_session(
    req: &SpawnRequest,
    service: &str,
    shell: &Path,
    argv: Vec<OsString>,
) -> Result<(Child, Handles), SpawnError> {
    // The helper's child switches users when we are root; the terminal
    // is then the user's, as without PAM.
    let switches_user = unistd::geteuid().is_root();
    let mut vars = session_env(req, shell);
    let pty = match &req.pty {
        Some(request) => Some(open_pty(request, &req.user, switches_user, &mut vars)?),
        None => None,
    };
    let (env, env_after_pam) = vars.split_for_pam();
    let plan = crate::server::pam_session::SessionPlan {
        service: service.to_owned(),
        user: req.user.clone(),
        ssh_connection: req.ssh_connection.clone(),
        tty: pty.as_ref().map(|pty| pty.tty_path.clone()),
        program: shell.to_path_buf(),
        argv,
        env,
        env_after_pam,
        login_messages: matches!(req.program, Program::Shell),
        log: crate::server::logging::LogSetup::current(),
    };
    let launch = crate::server::pam_session::HelperLaunch::prepare(&plan)?;
    // sshd leaves /etc/nologin to pam_nologin under UsePAM; the draft's
    // MUST holds whatever PAM's configuration says, so the child shows it
    // and exits 254 before any PAM session is opened.
    let nologin = nologin_applies(&req.user);
    let (setup, report) =
        child::ChildSetup::for_pam_helper(req.pty.is_none(), nologin, launch.pass_on())?;
    let started = match pty {
        None => start_with_pipes(launch.command(), setup),
        Some(pty) => start_on_pty(launch.command(), setup, pty),
    };
    // Our copies of the plan and log descriptors close with `launch`.
    started.map_err(|source| report.explain(source, launch.program(), &req.user.name))
}

/// Whether /etc/nologin keeps `user` out, as sshd's do_nologin: root is
/// never kept out.
fn nologin_applies(user: &SessionUser) -> bool {
    // draft §12.11: a system-wide no-login file MUST refuse the login
    let nologin = user.uid != 0 && Path::new(child::NOLOGIN).exists();
    if nologin {
        tracing::info!(
            "User {} not allowed because {} exists",
            user.name,
            child::NOLOGIN
        );
    }
    nologin
}

/// argv for the shell as sshd runs it for `program`: argv[0] first.
fn shell_argv(shell: &Path, program: &Program) -> Result<Vec<OsString>, SpawnError> {
    let shell_name = shell.file_name().unwrap_or(shell.as_os_str());
    let command: &[u8] = match program {
        Program::Shell => {
            // A leading '-' in argv[0] is how a shell knows it is a login
            // shell, so it reads /etc/profile and ~/.profile.
            let mut login_name = OsString::from("-");
            login_name.push(shell_name);
            return Ok(vec![login_name]);
        }
        Program::Command(command) => command,
        Program::Subsystem(command_line) => command_line.as_bytes(),
    };
    // exec cannot carry a NUL; std would fail later with a vaguer error.
    if command.contains(&0) {
        return Err(SpawnError::NulByte { what: "command" });
    }
    Ok(vec![
        shell_name.to_owned(),
        OsString::from("-c"),
        OsStr::from_bytes(command).to_owned(),
    ])
}

/// The command that runs `program` with `argv` (argv[0] included).
fn command_for(program: &Path, argv: &[OsString]) -> Command {
    let mut cmd = Command::new(program);
    if let Some((arg0, args)) = argv.split_first() {
        cmd.arg0(arg0).args(args);
    }
    cmd
}

/// sshd's environment for the session, without the pty's variables.
fn session_env(req: &SpawnRequest, shell: &Path) -> EnvVars {
    let user = &req.user;
    let mut vars = EnvVars::default();
    // The client's first, so that ours win (sshd's order).
    for (name, value) in &req.env {
        vars.set(name, value);
    }
    vars.set("USER", &user.name);
    vars.set("LOGNAME", &user.name);
    vars.set("HOME", &user.home);
    vars.set("PATH", if user.uid == 0 { ROOT_PATH } else { USER_PATH });
    // With PAM, MAIL is pam_mail's to set, as in sshd.
    if req.pam_service.is_none() {
        vars.set("MAIL", Path::new(MAIL_DIR).join(&user.name));
    }
    vars.set("SHELL", shell);
    // Like sshd, pass our own time zone on.
    if let Some(tz) = std::env::var_os("TZ") {
        vars.set("TZ", tz);
    }
    if let Some(sock) = &req.auth_sock {
        vars.set("SSH_AUTH_SOCK", sock);
    }
    // The user's own, replacing any of the above (sshd's order), but not
    // the variables sshd sets after them.
    for (name, value) in &req.user_env {
        if !SET_AFTER_PAM.contains(&name.as_str()) {
            vars.set(name, value);
        }
    }
    let parts: Vec<&str> = req.ssh_connection.split_whitespace().collect();
    if let [client_ip, client_port, _, server_port] = parts.as_slice() {
        vars.set(
            "SSH_CLIENT",
            format!("{client_ip} {client_port} {server_port}"),
        );
    }
    vars.set("SSH_CONNECTION", &req.ssh_connection);
    vars
}

/// The environment, in order of setting; a later value for a name replaces
/// the earlier one in place.
#[derive(Default)]
struct EnvVars(Vec<(OsString, OsString)>);

impl EnvVars {
    fn set(&mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) {
        let (name, value) = (name.as_ref(), value.as_ref());
        let bytes = name.as_bytes();
        // exec cannot carry these; the client's list is filtered already,
        // so leave such entries out rather than fail the session.
        if bytes.is_empty()
            || bytes.contains(&b'=')
            || bytes.contains(&0)
            || value.as_bytes().contains(&0)
        {
            tracing::debug!(?name, "skipping an environment variable exec cannot carry");
            return;
        }
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value.to_owned(),
            None => self.0.push((name.to_owned(), value.to_owned())),
        }
    }

    /// The variables PAM's environment may replace, and those sshd sets
    /// after PAM's so that they win (session.c's do_setup_env).
    fn split_for_pam(self) -> (VarList, VarList) {
        self.0
            .into_iter()
            .partition(|(name, _)| !SET_AFTER_PAM.iter().any(|after| name == after))
    }
}

/// Environment variables as (name, value).
type VarList = Vec<(OsString, OsString)>;

/// What sshd sets after copying PAM's environment in, so PAM cannot
/// change them.
const SET_AFTER_PAM: &[&str] = &[
    "SSH_CLIENT",
    "SSH_CONNECTION",
    "SSH_TTY",
    "SSH_ORIGINAL_COMMAND",
];

/// A pty made ready for the child: master, slave, a second descriptor of
/// the master for window changes, and the slave's path.
struct OpenPty {
    master: pty_process::Pty,
    slave: pty_process::Pts,
    resize_fd: OwnedFd,
    tty_path: PathBuf,
}

/// Allocates the pty and prepares it as sshd does before the fork: window
/// size, terminal modes, ownership; adds TERM and SSH_TTY to `vars`.
fn open_pty(
    request: &PtyRequest,
    user: &SessionUser,
    switches_user: bool,
    vars: &mut EnvVars,
) -> Result<OpenPty, SpawnError> {
    let (master, slave) = pty::open_pair().map_err(SpawnError::PtyOpen)?;
    let failed = |what: &'static str| {
        move |e: Errno| SpawnError::PtySetup {
            what,
            source: e.into(),
        }
    };
    let size = request.size;
    pty::set_window_size(
        master.as_fd(),
        size.cols,
        size.rows,
        size.pix_width,
        size.pix_height,
    )
    .map_err(failed("set the window size"))?;
    pty::apply_modes(slave.as_fd(), &request.modes).map_err(failed("apply the terminal modes"))?;
    let tty_path = unistd::ttyname(slave.as_fd()).map_err(failed("find the slave's name"))?;
    if switches_user {
        pty::give_to_user(slave.as_fd(), user.uid, user.gid)
            .map_err(failed("give the terminal to the user"))?;
    }
    let resize_fd = master
        .as_fd()
        .try_clone_to_owned()
        .map_err(|source| SpawnError::PtySetup {
            what: "duplicate the master",
            source,
        })?;
    // sshd leaves TERM unset when the client sent an empty one.
    if !request.term.is_empty() {
        vars.set("TERM", &request.term);
    }
    vars.set("SSH_TTY", &tty_path);
    Ok(OpenPty {
        master,
        slave,
        resize_fd,
        tty_path,
    })
}

fn pty_io_error(e: pty_process::Error) -> io::Error {
    match e {
        pty_process::Error::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// The parent's ends of a started child.
struct Handles {
    pid: Pid,
    stdin: SessionStdin,
    stdout: SessionOutput,
    stderr: Option<SessionOutput>,
    pty_master: Option<OwnedFd>,
    tty_path: Option<PathBuf>,
}

fn child_pid(child: &Child) -> io::Result<Pid> {
    child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw)
        .ok_or_else(|| io::Error::other("the started child has no pid"))
}

fn start_with_pipes(
    mut cmd: Command,
    mut setup: child::ChildSetup,
) -> io::Result<(Child, Handles)> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the hook only makes async-signal-safe system calls and does
    // not allocate (see `ChildSetup::run`).
    unsafe { cmd.pre_exec(move || setup.run()) };
    let spawned = cmd.spawn();
    // Closes our copy of the status pipe's writing end with the hook.
    drop(cmd);
    let mut child = spawned?;
    let pid = child_pid(&child)?;
    // All three were asked for as pipes, so all three exist.
    let pipes = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let (Some(stdin), Some(stdout), Some(stderr)) = pipes else {
        // The tokio runtime reaps a dropped child.
        let _ = child.start_kill();
        return Err(io::Error::other("the child's pipes are missing"));
    };
    let handles = Handles {
        pid,
        stdin: SessionStdin::pipe(stdin),
        stdout: SessionOutput::stdout(stdout),
        stderr: Some(SessionOutput::stderr(stderr)),
        pty_master: None,
        tty_path: None,
    };
    Ok((child, handles))
}

fn start_on_pty(
    cmd: Command,
    mut setup: child::ChildSetup,
    pty: OpenPty,
) -> io::Result<(Child, Handles)> {
    // SAFETY: as for pipes. pty-process runs its own hook first: setsid and
    // TIOCSCTTY, also plain system calls.
    let cmd = unsafe { pty_process::Command::from(cmd).pre_exec(move || setup.run()) };
    // `spawn` consumes the command and the slave, closing our copies of the
    // slave, so that the master sees EIO once the session's processes are
    // gone.
    let child = cmd.spawn(pty.slave).map_err(pty_io_error)?;
    let pid = child_pid(&child)?;
    let (reader, writer) = pty.master.into_split();
    let handles = Handles {
        pid,
        stdin: SessionStdin::pty(writer),
        stdout: SessionOutput::pty(reader),
        stderr: None,
        pty_master: Some(pty.resize_fd),
        tty_path: Some(pty.tty_path),
    };
    Ok((child, handles))
}

/// Owns the child until it is reaped, publishing its exit status. If the
/// `SessionProcess` goes away first (having sent SIGHUP), escalates to
/// SIGKILL after the grace period.
async fn supervise(
    mut child: Child,
    mut guard: CancelGuard,
    mut hangup: oneshot::Receiver<Duration>,
    status: watch::Sender<Option<WaitOutcome>>,
) {
    let pgid = guard.pgid;
    let exited = tokio::select! {
        result = child.wait() => Ok(result),
        // A dropped sender without a message still means the owner is gone.
        grace = &mut hangup => Err(grace.unwrap_or(DEFAULT_HANGUP_GRACE)),
    };
    let result = match exited {
        Ok(result) => result,
        Err(grace) => finish_hangup(&mut child, pgid, grace).await,
    };
    guard.armed = false;
    let outcome = result.map(ExitStatus::from_std).map_err(Arc::new);
    // Someone may still hold a `wait` future even if the process is gone.
    status.send_replace(Some(outcome));
}

/// SIGHUP to the group, as a closing terminal would, and SIGCONT because a
/// stopped job acts on SIGHUP only once continued (the kernel does the same
/// for orphaned process groups).
fn send_hangup(pgid: Pid) {
    let _ = killpg(pgid, Signal::SIGHUP);
    let _ = killpg(pgid, Signal::SIGCONT);
}

/// After SIGHUP: SIGKILL to whatever is left of the group once `grace` is
/// over, then reap the leader.
///
/// The group keeps existing after its leader is reaped as long as members
/// remain, and the kernel does not hand out a pid that is still in use as a
/// process group id, so signalling the group stays safe. If every member is
/// gone, the SIGKILL finds nothing; it could only hit a stranger if the pid
/// were reused within the grace period and its new owner made itself a group
/// leader.
async fn finish_hangup(
    child: &mut Child,
    pgid: Pid,
    grace: Duration,
) -> io::Result<std::process::ExitStatus> {
    let deadline = Instant::now() + grace;
    let reaped = tokio::time::timeout_at(deadline, child.wait()).await.ok();
    // If the leader went early, the rest of its group gets what is left of
    // the grace period.
    while Instant::now() < deadline && group_alive(pgid) {
        tokio::time::sleep(GROUP_POLL).await;
    }
    let _ = killpg(pgid, Signal::SIGKILL);
    match reaped {
        Some(result) => result,
        None => child.wait().await,
    }
}

/// Covers the supervisor being dropped unfinished, which happens when the
/// runtime shuts down (the server is exiting). The child is then neither
/// reaped nor escalated by us, so at least signal the group now: SIGHUP
/// (what the end of a terminal session sends) while the `SessionProcess` is
/// still around, SIGKILL if it is gone and the grace period can no longer be
/// waited out.
struct CancelGuard {
    pgid: Pid,
    hung_up: Arc<AtomicBool>,
    /// Cleared once the child has been reaped: its pid may be reused.
    armed: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.hung_up.load(Ordering::SeqCst) {
            let _ = killpg(self.pgid, Signal::SIGKILL);
        } else {
            send_hangup(self.pgid);
        }
    }
}

/// Whether the process group still has members. Orphaned members that died
/// but were not yet reaped by init count as alive (kill() succeeds on
/// zombies); with a prompt init that only lasts an instant, without one the
/// grace period simply runs out.
fn group_alive(pgid: Pid) -> bool {
    // EPERM means members exist that we may not signal: alive.
    !matches!(killpg(pgid, None), Err(Errno::ESRCH))
}
