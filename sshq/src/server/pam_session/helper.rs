//! The PAM session helper process (see the module docs of
//! `server::pam_session` for the design). It runs single-threaded from
//! start to end: PAM, fork and everything after fork are safe here.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sys::signal::{
    kill, killpg, sigaction, sigprocmask, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow,
    Signal,
};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{self, ForkResult, Pid};
use pam_client::{Context, Flag};

use super::super::process::child::{reset_signals, HomeDir, Identity};
use super::conversation::LoginMessages;
use super::plan::{SessionPlan, MAX_PLAN};
use super::NOT_OPENED_STATUS;

/// The signals sshqd may send the session's process group (the SSH
/// signals a client may ask for, and the hangup), which the helper must
/// survive to close the PAM session. SIGKILL cannot be caught.
const SESSION_SIGNALS: &[Signal] = &[
    Signal::SIGABRT,
    Signal::SIGALRM,
    Signal::SIGFPE,
    Signal::SIGHUP,
    Signal::SIGILL,
    Signal::SIGINT,
    Signal::SIGPIPE,
    Signal::SIGQUIT,
    Signal::SIGSEGV,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Signals that, pending before the program starts, mean the session was
/// ended (hung up, terminated) while PAM opened it.
const ENDING_SIGNALS: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
];

/// How the session's program ended.
enum Outcome {
    Exited(i32),
    Died(Signal),
}

pub(super) fn run(args: &[String]) -> i32 {
    // First: from here on a session signal waits for us instead of
    // killing us half way through opening PAM's session.
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&helper_signals()), None);
    // A root process with PAM's state in memory: no core dumps, no
    // ptrace by the user. The program regains both at its exec.
    // SAFETY: prctl with these arguments only changes a process flag.
    unsafe { nix::libc::prctl(nix::libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let (plan_fd, log_fd) = match (descriptor(args.get(2)), descriptor(args.get(3))) {
        (Some(plan), Some(log)) => (plan, log),
        _ => {
            eprintln!(
                "sshqd: {} is for sshqd's own use: it starts a session's program in a PAM session",
                super::HELPER_ARG
            );
            return 1;
        }
    };
    let plan = match read_plan(plan_fd) {
        Ok(plan) => plan,
        Err(why) => {
            complain(&format!("sshqd: cannot start the session: {why}"));
            return 1;
        }
    };
    init_logging(&plan, log_fd);
    match serve(&plan) {
        Outcome::Exited(code) => code,
        Outcome::Died(signal) => die_of(signal),
    }
}

fn helper_signals() -> SigSet {
    let mut set = SigSet::empty();
    for &signal in SESSION_SIGNALS {
        set.add(signal);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// A descriptor number from argv, if it names an open descriptor above
/// stdio; owned from then on.
fn descriptor(arg: Option<&String>) -> Option<OwnedFd> {
    let fd: RawFd = arg?.parse().ok()?;
    if fd <= 2 {
        return None;
    }
    // SAFETY: only asks whether the descriptor is open.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    nix::fcntl::fcntl(borrowed, nix::fcntl::FcntlArg::F_GETFD).ok()?;
    // SAFETY: the spawner passed this descriptor to us alone (its own
    // copy is close-on-exec in sshqd); nothing else here uses it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn read_plan(fd: OwnedFd) -> Result<SessionPlan, String> {
    let mut file = File::from(fd);
    // The spawner's writes left the shared offset at the end.
    file.seek(SeekFrom::Start(0))
        .map_err(|e| format!("cannot read the session plan: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_PLAN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the session plan: {e}"))?;
    if bytes.len() > MAX_PLAN {
        return Err("the session plan is too large".to_string());
    }
    SessionPlan::decode(&bytes).map_err(|e| format!("bad session plan: {e}"))
}

/// Log lines go where sshqd's go: syslog, or sshqd's standard error
/// (passed as `log`: the helper's own standard error is the session's).
fn init_logging(plan: &SessionPlan, log: OwnedFd) {
    if plan.log.syslog.is_some() {
        plan.log.init();
        return;
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&plan.log.filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false)
        .with_writer(std::sync::Mutex::new(File::from(log)))
        .try_init();
}

/// Opens the PAM session, runs the program in it, closes it.
fn serve(plan: &SessionPlan) -> Outcome {
    let user = &plan.user.name;
    let mut context = match Context::new(&plan.service, Some(user), LoginMessages::default()) {
        Ok(context) => context,
        Err(e) => {
            tracing::error!("PAM: pam_start(service {}, user {user}): {e}", plan.service);
            refuse(&[], &e.to_string());
            return Outcome::Exited(NOT_OPENED_STATUS);
        }
    };
    set_items(&mut context, plan);
    // sshd's do_pam_setcred then do_pam_session (pam-client re-initialises
    // the credentials after opening, as OpenSSH once did too).
    let opened = context
        .open_session(Flag::NONE)
        .map(pam_client::Session::leak);
    let session = match opened {
        Ok(session) => session,
        Err(e) => {
            tracing::error!("PAM: pam_open_session(): {e} (user {user})");
            let messages = context.conversation_mut().take();
            refuse(&messages, &e.to_string());
            return Outcome::Exited(NOT_OPENED_STATUS);
        }
    };
    tracing::debug!("PAM: session opened for user {user}");
    let outcome = run_program(plan, &mut context);
    if let Err(e) = context.unleak_session(session).close(Flag::SILENT) {
        tracing::info!("PAM: closing the session of user {user}: {e}");
    } else {
        tracing::debug!("PAM: session closed for user {user}");
    }
    outcome
}

/// PAM_TTY, PAM_RHOST and SSH_CONNECTION in PAM's environment, as sshd
/// sets them in `sshpam_init`.
fn set_items(context: &mut Context<LoginMessages>, plan: &SessionPlan) {
    let tty = plan.tty.as_deref().and_then(Path::to_str).unwrap_or("ssh");
    if let Err(e) = context.set_tty(Some(tty)) {
        tracing::info!("PAM: setting PAM_TTY: {e}");
    }
    if let Some(host) = plan.remote_host() {
        if let Err(e) = context.set_rhost(Some(host)) {
            tracing::info!("PAM: setting PAM_RHOST: {e}");
        }
    }
    let connection = format!("SSH_CONNECTION={}", plan.ssh_connection);
    if let Err(e) = context.putenv(connection) {
        tracing::info!("PAM: pam_putenv: {e}");
    }
}

/// The user hears why the session is not starting: PAM's own messages as
/// sshd shows them (on standard output), or, when PAM said nothing, ours.
fn refuse(messages: &[u8], error: &str) {
    if messages.is_empty() {
        complain(&format!(
            "The server could not open a PAM session for this login ({error}); \
             ask its administrator to check its PAM configuration."
        ));
    } else {
        let mut stdout = std::io::stdout();
        let _ = stdout.write_all(messages);
        let _ = stdout.flush();
    }
}

/// A line on the session's standard error.
fn complain(line: &str) {
    let mut stderr = std::io::stderr();
    let _ = writeln!(stderr, "{line}");
}

/// Starts the program as the user in the open PAM session and waits for
/// it.
fn run_program(plan: &SessionPlan, context: &mut Context<LoginMessages>) -> Outcome {
    let prepared = Identity::for_user(&plan.user)
        .and_then(|identity| Ok((identity, HomeDir::new(&plan.user.home)?)))
        .map_err(|e| e.to_string())
        .and_then(|(identity, home)| {
            let (program, argv) = plan.exec_args().map_err(|e| e.to_string())?;
            Ok((identity, home, program, argv))
        });
    let (identity, home, program, argv) = match prepared {
        Ok(prepared) => prepared,
        Err(why) => {
            complain(&format!("sshqd: cannot start the session: {why}"));
            return Outcome::Exited(1);
        }
    };
    let env = plan.program_env(context.envlist().iter_tuples());
    let messages = context.conversation_mut().take();
    if let Some(signal) = ending_signal_pending() {
        // The session ended while PAM opened it: the program would only
        // start to be hung up.
        return Outcome::Died(signal);
    }
    // SAFETY: this process has a single thread, so the child may do
    // anything; it ends in exec or _exit, never returning into our state.
    match unsafe { unistd::fork() } {
        Err(e) => {
            complain(&format!("sshqd: cannot start the session: fork: {e}"));
            Outcome::Exited(1)
        }
        Ok(ForkResult::Child) => {
            let start = Start {
                plan,
                identity: identity.as_ref(),
                home: &home,
                messages: &messages,
                program: &program,
                argv: &argv,
                env: &env,
            };
            start.exec(context)
        }
        Ok(ForkResult::Parent { child }) => {
            detach_stdio();
            supervise(child)
        }
    }
}

/// What the forked child needs to become the program.
struct Start<'a> {
    plan: &'a SessionPlan,
    identity: Option<&'a Identity>,
    home: &'a HomeDir,
    messages: &'a [u8],
    program: &'a CStr,
    argv: &'a [CString],
    env: &'a [CString],
}

impl Start<'_> {
    /// In the child: becomes the user as the spawner's pre_exec would,
    /// and execs the program; `_exit(1)` with the reason on stderr if that
    /// fails.
    fn exec(self, context: &mut Context<LoginMessages>) -> ! {
        let user = &self.plan.user.name;
        if let Some(identity) = self.identity {
            // sshd re-establishes PAM's credentials after initgroups
            // (platform_setusercontext_post_groups): pam_group's groups
            // would otherwise be lost.
            let mut reestablish = || {
                if let Ok(credentials) = context.open_pseudo_session(Flag::SILENT) {
                    // Deleted by the helper when the session closes.
                    let _ = credentials.leak();
                }
            };
            if let Err((step, errno)) = identity.switch(&mut reestablish) {
                complain(&format!(
                    "cannot switch to user {user}: {} failed: {}",
                    step.name(),
                    std::io::Error::from(errno)
                ));
                exit_now(1);
            }
        }
        self.home.enter();
        // sshd's check_quietlogin: a shell, and no ~/.hushlogin.
        if self.plan.login_messages
            && !self.messages.is_empty()
            && !self.plan.user.home.join(".hushlogin").exists()
        {
            let mut stdout = std::io::stdout();
            let _ = stdout.write_all(self.messages);
            let _ = stdout.flush();
        }
        reset_signals();
        let error = match unistd::execve(self.program, self.argv, self.env) {
            Err(errno) => std::io::Error::from(errno),
            Ok(never) => match never {},
        };
        complain(&format!(
            "cannot execute {} for user {user}: {error}",
            self.plan.program.display()
        ));
        exit_now(1)
    }
}

/// Ends the forked child without running anything of the helper's
/// (atexit handlers, buffered output of the parent's).
fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends the process at once; nothing is left to uphold.
    unsafe { nix::libc::_exit(code) }
}

/// A signal from [`ENDING_SIGNALS`] that arrived (blocked) before the
/// program started.
fn ending_signal_pending() -> Option<Signal> {
    // SAFETY: sigpending fills the set it is given.
    let pending = unsafe {
        let mut set = std::mem::zeroed::<nix::libc::sigset_t>();
        if nix::libc::sigpending(&mut set) != 0 {
            return None;
        }
        set
    };
    ENDING_SIGNALS.iter().copied().find(|&signal| {
        // SAFETY: reads the set sigpending filled.
        unsafe { nix::libc::sigismember(&pending, signal as i32) == 1 }
    })
}

/// The helper needs no stdio once the program runs; holding the session's
/// pipes or pty would keep its output open after the program closed it.
fn detach_stdio() {
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        let _ = unistd::dup2_stdin(&null);
        let _ = unistd::dup2_stdout(&null);
        let _ = unistd::dup2_stderr(&null);
    }
}

/// Waits for the program, passing on the signals it could not have had
/// (see the module docs), and returns how it ended.
fn supervise(child: Pid) -> Outcome {
    let own_group = unistd::getpgrp();
    let signals = helper_signals();
    loop {
        // SAFETY: a zeroed siginfo_t is a valid buffer for sigwaitinfo.
        let mut info = unsafe { std::mem::zeroed::<nix::libc::siginfo_t>() };
        // SAFETY: both pointers are to live values of the right types.
        let signo = unsafe { nix::libc::sigwaitinfo(signals.as_ref(), &mut info) };
        let Ok(signal) = Signal::try_from(signo) else {
            if Errno::last() == Errno::EINTR {
                continue;
            }
            // Cannot wait for signals: just wait for the program.
            return wait_blocking(child);
        };
        if signal == Signal::SIGCHLD {
            match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => return Outcome::Exited(code),
                Ok(WaitStatus::Signaled(_, signal, _)) => return Outcome::Died(signal),
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(_) => return Outcome::Exited(1),
            }
        }
        pass_on(signal, info.si_code, child, own_group);
    }
}

/// A signal that reached the helper and maybe not the program.
fn pass_on(signal: Signal, code: i32, child: Pid, own_group: Pid) {
    if signal == Signal::SIGHUP && code == nix::libc::SI_KERNEL {
        // The terminal hung up: the kernel tells the session leader
        // alone, which would have been the program without us.
        let _ = kill(child, Signal::SIGHUP);
        let _ = kill(child, Signal::SIGCONT);
        return;
    }
    match unistd::getpgid(Some(child)) {
        // A signal to our group reached the program too; one to another
        // group cannot have, so it goes there.
        Ok(group) if group != own_group => {
            let _ = killpg(group, signal);
        }
        _ => {}
    }
}

fn wait_blocking(child: Pid) -> Outcome {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return Outcome::Exited(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Outcome::Died(signal),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => return Outcome::Exited(1),
        }
    }
}

/// Ends the helper by `signal`, as the program ended, so that sshqd
/// reports the same exit-signal; without a core dump, which would be the
/// helper's and not the program's. Returns only if the signal does not
/// end a process.
fn die_of(signal: Signal) -> i32 {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing the default disposition is always sound.
    let _ = unsafe { sigaction(signal, &default) };
    let no_core = nix::libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct it is given.
    unsafe { nix::libc::setrlimit(nix::libc::RLIMIT_CORE, &no_core) };
    let mut only = SigSet::empty();
    only.add(signal);
    let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&only), None);
    let _ = nix::sys::signal::raise(signal);
    128 + signal as i32
}
