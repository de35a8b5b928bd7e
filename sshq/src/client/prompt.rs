//! Asking the user for passwords and keyboard-interactive answers, as
//! OpenSSH's `read_passphrase` (readpass.c) does: on the terminal
//! (/dev/tty, never stdin) with echo off, or through the `SSH_ASKPASS`
//! program when `SSH_ASKPASS_REQUIRE` and the display say so.
//!
//! The reads block, so they run on tokio's blocking pool, one at a time
//! for the whole process: the terminal and the signal handlers of a read
//! are the process's, and Transport=auto may have two logins going.

mod tty;

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sshq_core::auth::BoxFuture;
use sshq_core::auth_methods::{InfoRequest, Prompter};
use zeroize::Zeroizing;

pub use tty::{read_answer, MAX_ANSWER};

/// The askpass program when `SSH_ASKPASS` is not set (Debian's OpenSSH).
pub const DEFAULT_ASKPASS: &str = "/usr/bin/ssh-askpass";

/// One prompt at a time in the whole process (see the module comment).
static TURN: Mutex<()> = Mutex::new(());

/// What decides where a prompt goes: the environment readpass.c looks at.
#[derive(Debug, Clone)]
pub struct PromptEnv {
    /// `DISPLAY` or `WAYLAND_DISPLAY` is set and not empty.
    pub display: bool,
    /// `SSH_ASKPASS_REQUIRE`.
    pub require: Option<String>,
    /// `SSH_ASKPASS`.
    pub askpass: Option<OsString>,
    /// The terminal: /dev/tty (tests use a pseudo-terminal).
    pub tty: PathBuf,
}

/// Where one prompt is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Run this askpass program with the prompt as its argument.
    Askpass(OsString),
    /// Read the terminal.
    Tty,
}

impl PromptEnv {
    /// The process's environment and /dev/tty.
    pub fn from_process() -> PromptEnv {
        let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        PromptEnv {
            display: set("DISPLAY") || set("WAYLAND_DISPLAY"),
            require: std::env::var("SSH_ASKPASS_REQUIRE").ok(),
            askpass: std::env::var_os("SSH_ASKPASS"),
            tty: PathBuf::from("/dev/tty"),
        }
    }

    /// readpass.c's choice for a prompt without `RP_ALLOW_STDIN`: askpass
    /// when `SSH_ASKPASS_REQUIRE=force`, or `prefer` with a display, or no
    /// terminal and a display (`never` rules it out); else the terminal.
    /// Like ssh, it writes `\r` to the terminal it finds, so the prompt
    /// starts at the left margin over anything typed too early.
    pub fn route(&self) -> Route {
        let mut allow_askpass = self.display;
        let mut use_askpass = false;
        match self
            .require
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("force") => {
                use_askpass = true;
                allow_askpass = true;
            }
            Some("prefer") => use_askpass = allow_askpass,
            Some("never") => allow_askpass = false,
            _ => {}
        }
        if !use_askpass {
            match OpenOptions::new().read(true).write(true).open(&self.tty) {
                Ok(mut tty) => {
                    let _ = tty.write_all(b"\r");
                }
                Err(e) => {
                    tracing::debug!("read_passphrase: can't open {}: {e}", self.tty.display());
                    use_askpass = true;
                }
            }
        }
        if use_askpass && allow_askpass {
            let program = self
                .askpass
                .clone()
                .unwrap_or_else(|| OsString::from(DEFAULT_ASKPASS));
            Route::Askpass(program)
        } else {
            Route::Tty
        }
    }

    /// One answer to `prompt`, where [`PromptEnv::route`] says.
    pub fn read_passphrase(
        &self,
        prompt: &str,
        echo: bool,
        cancel: &AtomicBool,
    ) -> Option<Zeroizing<String>> {
        match self.route() {
            Route::Askpass(program) => run_askpass(&program, prompt),
            Route::Tty => read_answer(&self.tty, prompt, echo, cancel),
        }
    }
}

/// Runs the askpass `program` with `prompt` as its one argument and takes
/// the first line of its output, as ssh's `ssh_askpass`: `None` when it
/// cannot run or exits other than with status 0 (the user cancelled).
pub fn run_askpass(program: &std::ffi::OsStr, prompt: &str) -> Option<Zeroizing<String>> {
    let _ = std::io::stdout().flush();
    let mut child = match Command::new(program)
        .arg(prompt)
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!(
                "ssh_askpass: exec({}): {}",
                program.to_string_lossy(),
                super::error::io_text(&e)
            );
            return None;
        }
    };
    let mut output = Zeroizing::new(vec![0u8; MAX_ANSWER]);
    let mut len = 0;
    if let Some(mut pipe) = child.stdout.take() {
        while len < MAX_ANSWER {
            match pipe.read(output.get_mut(len..).unwrap_or_default()) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
    // The pipe is closed now: a program still writing gets SIGPIPE.
    let status = child.wait().ok()?;
    if !status.success() {
        tracing::debug!(
            "ssh_askpass: {} ended with {status}",
            program.to_string_lossy()
        );
        return None;
    }
    let line = output.get(..len).unwrap_or_default();
    let end = line
        .iter()
        .position(|b| *b == b'\r' || *b == b'\n')
        .unwrap_or(line.len());
    let answer = Zeroizing::new(line.get(..end).unwrap_or_default().to_vec());
    Some(tty::secret_string(answer))
}

/// Server-sent text made safe to show: control characters (which could
/// move the cursor, retitle the window or fake a prompt) are written as
/// octal escapes, as ssh's `fmprintf` and `asmprintf` do; `keep_newlines`
/// keeps line breaks in names and instructions.
pub fn displayable(text: &str, keep_newlines: bool) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        if !c.is_control() || c == '\t' || (keep_newlines && c == '\n') {
            shown.push(c);
        } else {
            let mut utf8 = [0u8; 4];
            for byte in c.encode_utf8(&mut utf8).bytes() {
                shown.push_str(&format!("\\{byte:03o}"));
            }
        }
    }
    shown
}

/// The [`Prompter`] of the `sshq` command: the terminal or askpass.
pub struct TerminalPrompter {
    /// `user@host` as keyboard-interactive prompts name it: "(user@host) ".
    who: String,
    /// -q or LogLevel QUIET: ssh's `error()` lines are not shown.
    quiet: bool,
    env: PromptEnv,
}

impl TerminalPrompter {
    /// Asks for `user` at `host` (the HostName connected to, as ssh names
    /// it), in the process's environment.
    pub fn new(user: &str, host: &str, quiet: bool) -> TerminalPrompter {
        TerminalPrompter::with_env(user, host, quiet, PromptEnv::from_process())
    }

    pub fn with_env(user: &str, host: &str, quiet: bool, env: PromptEnv) -> TerminalPrompter {
        TerminalPrompter {
            who: format!("{user}@{host}"),
            quiet,
            env,
        }
    }

    /// Shows `preamble` (if any) then asks each of `questions` (text,
    /// echo) in turn, off the async threads. `None` as soon as one gets
    /// no answer. Dropping the future gives up a terminal read at once.
    async fn ask(
        &self,
        preamble: Option<String>,
        questions: Vec<(String, bool)>,
    ) -> Option<Vec<Zeroizing<String>>> {
        let cancel = Arc::new(AtomicBool::new(false));
        let _give_up = CancelOnDrop(cancel.clone());
        let env = self.env.clone();
        let asking = tokio::task::spawn_blocking(move || {
            // A plain lock: a poisoned one protects no data.
            let _turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(preamble) = preamble {
                eprint!("{preamble}");
            }
            let mut answers = Vec::with_capacity(questions.len());
            for (text, echo) in &questions {
                answers.push(env.read_passphrase(text, *echo, &cancel)?);
            }
            Some(answers)
        });
        asking.await.ok().flatten()
    }
}

/// Sets the flag a terminal read watches when the asking future goes.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Prompter for TerminalPrompter {
    fn password<'a>(&'a self, prompt: &'a str) -> BoxFuture<'a, Option<Zeroizing<String>>> {
        Box::pin(async move {
            let question = (displayable(prompt, false), false);
            self.ask(None, vec![question]).await?.pop()
        })
    }

    fn keyboard_interactive<'a>(
        &'a self,
        request: &'a InfoRequest,
    ) -> BoxFuture<'a, Option<Vec<Zeroizing<String>>>> {
        Box::pin(async move {
            // ssh's input_userauth_info_req: the name and the instruction,
            // each on its own line when not empty, then "(user@host) "
            // before every prompt.
            let mut preamble = String::new();
            for text in [&request.name, &request.instruction] {
                if !text.is_empty() {
                    preamble.push_str(&displayable(text, true));
                    preamble.push('\n');
                }
            }
            let questions = request
                .prompts
                .iter()
                .map(|p| {
                    let text = format!("({}) {}", self.who, p.text);
                    (displayable(&text, false), p.echo)
                })
                .collect();
            let preamble = (!preamble.is_empty()).then_some(preamble);
            self.ask(preamble, questions).await
        })
    }

    fn password_refused(&self) {
        if !self.quiet {
            eprintln!("Permission denied, please try again.");
        }
    }
}

#[cfg(test)]
mod tests;
