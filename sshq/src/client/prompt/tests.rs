use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::termios::{self, LocalFlags};
use sshq_core::auth_methods::{InfoRequest, Prompt, Prompter};

use super::*;

/// A terminal that cannot be opened.
const NO_TTY: &str = "/nonexistent/sshq-test-tty";

fn env(display: bool, require: Option<&str>, askpass: Option<&str>, tty: &str) -> PromptEnv {
    PromptEnv {
        display,
        require: require.map(str::to_string),
        askpass: askpass.map(OsString::from),
        tty: PathBuf::from(tty),
    }
}

fn askpass_route(program: &str) -> Route {
    Route::Askpass(OsString::from(program))
}

#[test]
fn route_follows_readpass_rules() {
    // /dev/null opens read-write: it stands for a terminal that is there.
    let tty = "/dev/null";
    // force: askpass whatever the display and terminal.
    let forced = env(false, Some("force"), None, tty);
    assert_eq!(forced.route(), askpass_route(DEFAULT_ASKPASS));
    let forced = env(false, Some("FORCE"), Some("/opt/ask"), tty);
    assert_eq!(forced.route(), askpass_route("/opt/ask"));
    // prefer: askpass only with a display.
    assert_eq!(
        env(true, Some("prefer"), Some("/opt/ask"), tty).route(),
        askpass_route("/opt/ask")
    );
    assert_eq!(
        env(false, Some("prefer"), Some("/opt/ask"), tty).route(),
        Route::Tty
    );
    // Unset: the terminal when there is one, even with a display ...
    assert_eq!(env(true, None, Some("/opt/ask"), tty).route(), Route::Tty);
    // ... askpass without one, if there is a display ...
    assert_eq!(
        env(true, None, Some("/opt/ask"), NO_TTY).route(),
        askpass_route("/opt/ask")
    );
    // ... and otherwise the terminal read, which will fail.
    assert_eq!(
        env(false, None, Some("/opt/ask"), NO_TTY).route(),
        Route::Tty
    );
    // never: no askpass even without a terminal.
    assert_eq!(
        env(true, Some("never"), Some("/opt/ask"), NO_TTY).route(),
        Route::Tty
    );
    // Other values change nothing.
    assert_eq!(
        env(true, Some("sometimes"), Some("/opt/ask"), NO_TTY).route(),
        askpass_route("/opt/ask")
    );
}

/// An askpass script in `dir` that appends its arguments (one line per
/// run) to `args.log`, prints `output` and exits with `status`.
fn askpass_script(dir: &Path, output: &str, status: i32) -> PathBuf {
    let script = dir.join("askpass");
    let log = dir.join("args.log");
    let text = format!(
        "#!/bin/sh\nprintf '%s|%s\\n' \"$#\" \"$1\" >> '{}'\nprintf '{}'\nexit {status}\n",
        log.display(),
        output
    );
    std::fs::write(&script, text).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn logged_args(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("args.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn forced_askpass(script: &Path) -> PromptEnv {
    env(false, Some("force"), Some(script.to_str().unwrap()), NO_TTY)
}

#[tokio::test]
async fn askpass_answers_a_password_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let script = askpass_script(dir.path(), "s3cret\\nnot this line\\n", 0);
    let prompter =
        TerminalPrompter::with_env("alice", "example.org", false, forced_askpass(&script));
    let answer = prompter.password("alice@example.org's password: ").await;
    assert_eq!(answer.as_deref().map(String::as_str), Some("s3cret"));
    // The prompt is the program's one argument.
    assert_eq!(
        logged_args(dir.path()),
        ["1|alice@example.org's password: "]
    );
}

#[tokio::test]
async fn askpass_answers_each_keyboard_interactive_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let script = askpass_script(dir.path(), "123456\\r\\n", 0);
    let prompter = TerminalPrompter::with_env("bob", "h.example", false, forced_askpass(&script));
    let request = InfoRequest {
        name: String::new(),
        instruction: String::new(),
        prompts: vec![
            Prompt {
                text: "Password: ".to_string(),
                echo: false,
            },
            Prompt {
                text: "Code\x1b[2J: ".to_string(),
                echo: true,
            },
        ],
    };
    let answers = prompter.keyboard_interactive(&request).await.unwrap();
    let answers: Vec<&str> = answers.iter().map(|a| a.as_str()).collect();
    assert_eq!(answers, ["123456", "123456"]);
    // ssh's "(user@host) " before each prompt; the escape from the server
    // shown as text, not sent to the terminal.
    assert_eq!(
        logged_args(dir.path()),
        [
            "1|(bob@h.example) Password: ",
            "1|(bob@h.example) Code\\033[2J: "
        ]
    );
}

#[tokio::test]
async fn askpass_failing_gives_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let script = askpass_script(dir.path(), "typed but cancelled\\n", 1);
    let prompter = TerminalPrompter::with_env("alice", "h", false, forced_askpass(&script));
    assert!(prompter.password("alice@h's password: ").await.is_none());
    assert_eq!(logged_args(dir.path()).len(), 1, "askpass ran once");
    // A keyboard-interactive round ends at the first unanswered prompt.
    let request = InfoRequest {
        prompts: vec![
            Prompt {
                text: "One: ".into(),
                echo: false,
            },
            Prompt {
                text: "Two: ".into(),
                echo: false,
            },
        ],
        ..InfoRequest::default()
    };
    assert!(prompter.keyboard_interactive(&request).await.is_none());
    assert_eq!(logged_args(dir.path()).len(), 2);
}

#[tokio::test]
async fn missing_askpass_gives_no_answer() {
    let missing = PathBuf::from("/nonexistent/ssh-askpass");
    let prompter = TerminalPrompter::with_env("alice", "h", false, forced_askpass(&missing));
    assert!(prompter.password("alice@h's password: ").await.is_none());
}

#[tokio::test]
async fn no_terminal_and_no_askpass_gives_no_answer() {
    let nobody = env(false, None, None, NO_TTY);
    let prompter = TerminalPrompter::with_env("alice", "h", false, nobody);
    assert!(prompter.password("alice@h's password: ").await.is_none());
}

#[test]
fn server_text_is_made_displayable() {
    assert_eq!(displayable("plain: ", false), "plain: ");
    assert_eq!(displayable("a\x1b]0;x\x07b", false), "a\\033]0;x\\007b");
    assert_eq!(displayable("line\nnext\ttab", true), "line\nnext\ttab");
    assert_eq!(displayable("line\n", false), "line\\012");
    assert_eq!(displayable("C1\u{9b}2J", false), "C1\\302\\2332J");
    assert_eq!(displayable("é ü 名", false), "é ü 名");
}

/// A pseudo-terminal: its master to play the user, the slave's path for
/// the prompter, and everything written to the terminal.
struct Pty {
    master: File,
    slave: OwnedFd,
    path: PathBuf,
    output: mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl Pty {
    fn open() -> Pty {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let path = nix::unistd::ttyname(&pty.slave).expect("ttyname");
        let master = File::from(pty.master);
        let mut reader = master.try_clone().unwrap();
        let (tx, output) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 1024];
            // Ends with EIO once the slave is closed everywhere.
            while let Ok(n @ 1..) = reader.read(&mut buffer) {
                if tx.send(buffer[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Pty {
            master,
            slave: pty.slave,
            path,
            output,
            seen: Vec::new(),
        }
    }

    /// Waits until the terminal has shown `text`.
    fn wait_for(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !String::from_utf8_lossy(&self.seen).contains(text) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(chunk) => self.seen.extend(chunk),
                Err(_) => panic!(
                    "the terminal never showed {text:?}; it showed {:?}",
                    String::from_utf8_lossy(&self.seen)
                ),
            }
        }
    }

    /// What the terminal showed, after a moment for the last of it.
    fn shown(&mut self) -> String {
        while let Ok(chunk) = self.output.recv_timeout(Duration::from_millis(300)) {
            self.seen.extend(chunk);
        }
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    fn type_text(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
        self.master.flush().unwrap();
    }

    fn echo_on(&self) -> bool {
        let modes = termios::tcgetattr(&self.slave).unwrap();
        modes.local_flags.contains(LocalFlags::ECHO)
    }

    fn env(&self) -> PromptEnv {
        env(false, None, None, self.path.to_str().unwrap())
    }
}

// The test plays the user with blocking waits: the prompt runs on other threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_is_read_from_the_terminal_without_echo() {
    let mut pty = Pty::open();
    assert!(pty.echo_on());
    let prompter = Arc::new(TerminalPrompter::with_env("carol", "db1", false, pty.env()));
    let asking = {
        let prompter = prompter.clone();
        tokio::spawn(async move { prompter.password("carol@db1's password: ").await })
    };
    pty.wait_for("carol@db1's password: ");
    assert!(!pty.echo_on(), "echo is off while the password is typed");
    pty.type_text("hunter2\n");
    let answer = tokio::time::timeout(Duration::from_secs(10), asking)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.as_deref().map(String::as_str), Some("hunter2"));
    let shown = pty.shown();
    assert!(
        !shown.contains("hunter2"),
        "the password was echoed: {shown:?}"
    );
    // "\r" first, as ssh writes it, and a newline for the unechoed Return.
    assert!(shown.starts_with("\rcarol@db1's password: "), "{shown:?}");
    assert!(shown.ends_with('\n'), "{shown:?}");
    assert!(pty.echo_on(), "echo is back on afterwards");
}

// The test plays the user with blocking waits: the prompt runs on other threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyboard_interactive_round_on_the_terminal() {
    let mut pty = Pty::open();
    let prompter = Arc::new(TerminalPrompter::with_env("dave", "vpn", false, pty.env()));
    let request = InfoRequest {
        name: "Two-step login".to_string(),
        instruction: "Use your token.".to_string(),
        prompts: vec![
            Prompt {
                text: "Password: ".to_string(),
                echo: false,
            },
            Prompt {
                text: "Token: ".to_string(),
                echo: true,
            },
        ],
    };
    let asking = {
        let prompter = prompter.clone();
        tokio::spawn(async move { prompter.keyboard_interactive(&request).await })
    };
    pty.wait_for("(dave@vpn) Password: ");
    pty.type_text("pw-one\r");
    pty.wait_for("(dave@vpn) Token: ");
    assert!(pty.echo_on(), "an echo prompt keeps echo on");
    pty.type_text("424242\n");
    let answers = tokio::time::timeout(Duration::from_secs(10), asking)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let answers: Vec<&str> = answers.iter().map(|a| a.as_str()).collect();
    assert_eq!(answers, ["pw-one", "424242"]);
    let shown = pty.shown();
    assert!(!shown.contains("pw-one"), "{shown:?}");
    assert!(shown.contains("424242"), "echoed answer shown: {shown:?}");
}

#[test]
fn cancelled_terminal_read_restores_the_terminal() {
    let mut pty = Pty::open();
    let cancel = Arc::new(AtomicBool::new(false));
    let reading = {
        let (path, cancel) = (pty.path.clone(), cancel.clone());
        std::thread::spawn(move || read_answer(&path, "Password: ", false, &cancel))
    };
    pty.wait_for("Password: ");
    pty.type_text("half");
    assert!(!pty.echo_on());
    cancel.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let answer = reading.join().unwrap();
    assert!(answer.is_none());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(pty.echo_on(), "echo is back on after a cancelled read");
}

#[test]
fn end_of_file_answers_what_was_typed() {
    let mut pty = Pty::open();
    let cancel = AtomicBool::new(false);
    let path = pty.path.clone();
    let reading = std::thread::spawn(move || read_answer(&path, "Password: ", false, &cancel));
    pty.wait_for("Password: ");
    // ^D on an empty line: end of file, an empty answer (ssh sends it).
    pty.type_text("\x04");
    let answer = reading.join().unwrap();
    assert_eq!(answer.as_deref().map(String::as_str), Some(""));
}

#[test]
fn long_answers_are_cut_as_ssh_cuts_them() {
    let mut pty = Pty::open();
    let cancel = AtomicBool::new(false);
    let path = pty.path.clone();
    let reading = std::thread::spawn(move || read_answer(&path, "Password: ", false, &cancel));
    pty.wait_for("Password: ");
    // The terminal's line buffer holds 4095 characters; send less.
    let long = "x".repeat(MAX_ANSWER + 500);
    pty.type_text(&format!("{long}\n"));
    let answer = reading.join().unwrap().unwrap();
    assert_eq!(answer.len(), MAX_ANSWER);
}
