//! Reading one answer from the terminal, as OpenSSH's `readpassphrase(3)`
//! with `RPP_REQUIRE_TTY`: the terminal device only (never stdin, which may
//! carry the remote command's data), echo off unless asked for, the
//! terminal restored whatever happens, and a signal that arrives meanwhile
//! (^C, ^Z, a hangup) delivered once the terminal is sane again.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::termios::{self, LocalFlags, SetArg};
use zeroize::Zeroizing;

/// The longest answer kept, in bytes: readpassphrase reads into ssh's
/// 1024-byte buffer, its last byte the terminating NUL.
pub const MAX_ANSWER: usize = 1023;

/// How often a blocked read looks at the cancel flag and caught signals.
const POLL_INTERVAL_MS: i32 = 100;

/// The signals readpassphrase catches so that the user never ends up in a
/// shell with echo off.
const CAUGHT: [Signal; 9] = [
    Signal::SIGALRM,
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGPIPE,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
];

/// One terminal read at a time in the process: the signal handlers and
/// [`ARRIVED`] are the process's.
static READING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Which of [`CAUGHT`] arrived during the read, by signal number.
static ARRIVED: [AtomicBool; 32] = [const { AtomicBool::new(false) }; 32];

extern "C" fn note_signal(signal: nix::libc::c_int) {
    // Only an atomic store: nothing else is safe in a signal handler.
    if let Some(flag) = usize::try_from(signal).ok().and_then(|n| ARRIVED.get(n)) {
        flag.store(true, Ordering::SeqCst);
    }
}

/// The handlers [`CAUGHT`] had before the read, put back by [`Handlers::restore`].
struct Handlers {
    saved: Vec<(Signal, SigAction)>,
}

impl Handlers {
    fn install() -> Handlers {
        for flag in &ARRIVED {
            flag.store(false, Ordering::SeqCst);
        }
        // No SA_RESTART: a read interrupted by one of these returns, as
        // readpassphrase wants.
        let noting = SigAction::new(
            SigHandler::Handler(note_signal),
            SaFlags::empty(),
            SigSet::empty(),
        );
        let mut saved = Vec::new();
        for signal in CAUGHT {
            // SAFETY: the handler only stores to an atomic, which is
            // async-signal-safe; the previous action is put back by restore.
            if let Ok(previous) = unsafe { signal::sigaction(signal, &noting) } {
                saved.push((signal, previous));
            }
        }
        Handlers { saved }
    }

    fn any_arrived() -> bool {
        ARRIVED.iter().any(|flag| flag.load(Ordering::SeqCst))
    }

    /// Puts the old handlers back and returns the signals that arrived.
    fn restore(self) -> Vec<Signal> {
        for (signal, previous) in &self.saved {
            // SAFETY: reinstates exactly the action that was there before.
            let _ = unsafe { signal::sigaction(*signal, previous) };
        }
        CAUGHT
            .into_iter()
            .filter(|s| {
                usize::try_from(*s as i32)
                    .ok()
                    .and_then(|n| ARRIVED.get(n))
                    .is_some_and(|flag| flag.swap(false, Ordering::SeqCst))
            })
            .collect()
    }
}

/// How one read ended.
enum Ending {
    /// Return or end of file: the answer is what was typed.
    Answered,
    /// A signal arrived, or the caller gave up: no answer.
    Interrupted,
    /// The terminal failed.
    Failed,
}

/// Reads one answer from the terminal at `path` after showing `prompt`,
/// echoing what is typed only if `echo`. `None` when there is no terminal
/// there, it fails, a signal arrives or `cancel` is set. ^D answers with
/// what was typed so far, as in ssh.
pub fn read_answer(
    path: &Path,
    prompt: &str,
    echo: bool,
    cancel: &AtomicBool,
) -> Option<Zeroizing<String>> {
    loop {
        match read_once(path, prompt, echo, cancel) {
            Attempt::Done(answer) => return answer,
            // Stopped (^Z) and continued: ask again, as readpassphrase does.
            Attempt::Again => continue,
        }
    }
}

enum Attempt {
    Done(Option<Zeroizing<String>>),
    Again,
}

fn read_once(path: &Path, prompt: &str, echo: bool, cancel: &AtomicBool) -> Attempt {
    // A plain lock: a poisoned one protects no data.
    let _reading = READING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut tty = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(tty) => tty,
        Err(e) => {
            tracing::debug!("read_passphrase: can't open {}: {e}", path.display());
            return Attempt::Done(None);
        }
    };
    // Echo off before the handlers go in: when sshq is not the terminal's
    // foreground job this stops it (SIGTTOU) with the default action, as
    // readpassphrase arranges.
    let original = termios::tcgetattr(&tty).ok();
    let mut changed = false;
    let mut newline_after = false;
    if let Some(original) = &original {
        let mut quiet = original.clone();
        if !echo {
            quiet.local_flags &= !(LocalFlags::ECHO | LocalFlags::ECHONL);
        }
        newline_after = !quiet.local_flags.contains(LocalFlags::ECHO);
        if quiet.local_flags != original.local_flags {
            // TCSAFLUSH: whatever was typed ahead cannot become the answer.
            changed = termios::tcsetattr(&tty, SetArg::TCSAFLUSH, &quiet).is_ok();
        }
    }
    let handlers = Handlers::install();
    let mut answer = Zeroizing::new(Vec::with_capacity(MAX_ANSWER + 1));
    let ending = if tty.write_all(prompt.as_bytes()).is_err() {
        Ending::Failed
    } else {
        let _ = tty.flush();
        read_line(&mut tty, &mut answer, cancel)
    };
    if newline_after {
        // The user's Return was not echoed.
        let _ = tty.write_all(b"\n");
    }
    if let (Some(original), true) = (&original, changed) {
        let _ = termios::tcsetattr(&tty, SetArg::TCSAFLUSH, original);
    }
    drop(tty);
    let arrived = handlers.restore();
    let mut again = false;
    for signal in arrived {
        // Now that the terminal is sane, the signal does what it would
        // have done (^C ends sshq, ^Z stops it).
        let _ = signal::raise(signal);
        again |= matches!(signal, Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU);
    }
    if again {
        return Attempt::Again;
    }
    match ending {
        Ending::Answered => Attempt::Done(Some(secret_string(answer))),
        Ending::Interrupted | Ending::Failed => Attempt::Done(None),
    }
}

/// Reads bytes up to Return (`\n` or `\r`) or end of file into `answer`,
/// keeping at most [`MAX_ANSWER`] of them, looking at `cancel` and the
/// caught signals between bytes.
fn read_line(
    tty: &mut std::fs::File,
    answer: &mut Zeroizing<Vec<u8>>,
    cancel: &AtomicBool,
) -> Ending {
    let mut byte = [0u8; 1];
    loop {
        if cancel.load(Ordering::SeqCst) || Handlers::any_arrived() {
            return Ending::Interrupted;
        }
        let mut watch = nix::libc::pollfd {
            fd: tty.as_raw_fd(),
            events: nix::libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, alive for the call, and its count is 1.
        let ready = unsafe { nix::libc::poll(&mut watch, 1, POLL_INTERVAL_MS) };
        if ready < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Ending::Failed;
        }
        if ready == 0 {
            continue;
        }
        match tty.read(&mut byte) {
            Ok(0) => return Ending::Answered,
            Ok(_) if byte[0] == b'\n' || byte[0] == b'\r' => return Ending::Answered,
            Ok(_) => {
                if answer.len() < MAX_ANSWER {
                    answer.push(byte[0]);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Ending::Failed,
        }
    }
}

/// The answer as text, with no copy of it left behind: valid UTF-8 moves
/// into the string; anything else is converted and the bytes wiped.
pub fn secret_string(mut bytes: Zeroizing<Vec<u8>>) -> Zeroizing<String> {
    match String::from_utf8(std::mem::take(&mut *bytes)) {
        Ok(text) => Zeroizing::new(text),
        Err(not_utf8) => {
            let raw = Zeroizing::new(not_utf8.into_bytes());
            Zeroizing::new(String::from_utf8_lossy(&raw).into_owned())
        }
    }
}
