//! ssh's `~C` command line: adding and cancelling -L, -R and -D forwards
//! while the session runs, with ssh's syntax and messages.
//!
//! The session reads the line (see `super::escape`) and hands it to a task
//! that owns the connection's forwarding state ([`start`]); the answer is
//! one line for the terminal. Forwards added here belong to the connection
//! they were added on: after a reattach only those given on the command
//! line or in ssh_config are set up again.

use std::sync::Arc;

use sshq_core::transport::Connection;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::escape::Piece;
use crate::forward::remote::{OnRefusal, RemoteForwards};
use crate::forward::unix_socket::{BindOptions, SocketFile};
use crate::forward::{DynamicForward, Forward, Listen};

/// ssh's help for the command line (`-h` or `?`).
pub const HELP: &str = "Commands:\r\n\
      -L[bind_address:]port:host:hostport    Request local forward\r\n\
      -R[bind_address:]port:host:hostport    Request remote forward\r\n\
      -D[bind_address:]port                  Request dynamic forward\r\n\
      -KL[bind_address:]port                 Cancel local forward\r\n\
      -KR[bind_address:]port                 Cancel remote forward\r\n\
      -KD[bind_address:]port                 Cancel dynamic forward\r\n";

/// Which kind of forward a command is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Local,
    Remote,
    Dynamic,
}

/// A command line, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Nothing typed: nothing to do.
    Nothing,
    Help,
    Add(Kind, String),
    /// `[bind_address:]port` of the forward to cancel.
    Cancel(Kind, Option<String>, u16),
}

/// Reads a command line as ssh does; the error is ssh's message.
pub fn parse(line: &str) -> Result<Command, &'static str> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(Command::Nothing);
    }
    if line == "?" || line == "-h" {
        return Ok(Command::Help);
    }
    let (cancel, rest) = match line.strip_prefix("-K") {
        Some(rest) => (true, rest),
        None => (false, line.strip_prefix('-').ok_or("Invalid command.")?),
    };
    let mut chars = rest.chars();
    let kind = match chars.next() {
        Some('L') => Kind::Local,
        Some('R') => Kind::Remote,
        Some('D') => Kind::Dynamic,
        _ => return Err("Invalid command."),
    };
    let spec = chars.as_str().trim();
    if !cancel {
        return Ok(Command::Add(kind, spec.to_string()));
    }
    let (bind, port) = match spec.rsplit_once(':') {
        Some((bind, port)) => (Some(bind.trim_matches(['[', ']']).to_string()), port),
        None => (None, spec),
    };
    let port = port.parse().map_err(|_| "Bad forwarding close port")?;
    Ok(Command::Cancel(kind, bind, port))
}

/// What the task of [`start`] is asked to do on the connection.
enum Request {
    /// A `~C` command line.
    Line(String),
    /// `~R`: new keys.
    Rekey,
}

/// Hands command lines (and `~R`) to the task of [`start`] and returns its
/// answers.
#[derive(Clone)]
pub struct CommandLine {
    requests: mpsc::Sender<(Request, oneshot::Sender<String>)>,
}

impl CommandLine {
    /// Runs `line`; the answer to print (without line end).
    pub async fn run(&self, line: String) -> String {
        self.ask(Request::Line(line)).await.unwrap_or_else(|| {
            "The connection is gone; forwards cannot be changed now.".to_string()
        })
    }

    /// `~R`: asks the connection for new keys; what to print (nothing when
    /// asked, as in ssh).
    pub async fn rekey(&self) -> String {
        self.ask(Request::Rekey)
            .await
            .unwrap_or_else(|| "The connection is gone.".to_string())
    }

    async fn ask(&self, request: Request) -> Option<String> {
        let (reply, answer) = oneshot::channel();
        self.requests.send((request, reply)).await.ok()?;
        answer.await.ok()
    }
}

/// Shows the command line's prompt and echo, and runs a finished line
/// (`commands` is `None` while there is no connection to run it on).
/// Other pieces are not the command line's and are left alone.
pub async fn interact(piece: &Piece, commands: Option<&CommandLine>) {
    let text = match piece {
        Piece::Prompt => "\r\nssh> ".to_string(),
        Piece::Echo(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Piece::Command(line) => {
            let answer = match commands {
                Some(commands) => commands.run(line.clone()).await,
                None if line.trim().is_empty() => String::new(),
                None => "Not connected: forwards cannot be changed now.".to_string(),
            };
            match answer.is_empty() {
                true => answer,
                false => format!("{answer}\r\n"),
            }
        }
        Piece::Bytes(_) | Piece::Escape(_) => return,
    };
    super::terminal::print_now(&text);
}

/// `~R`: asks for new keys, and says so only if that failed (as ssh).
pub async fn rekey(commands: &CommandLine) {
    let answer = commands.rekey().await;
    if !answer.is_empty() {
        super::terminal::print_now(&format!("{answer}\r\n"));
    }
}

/// A listener added with `~C`, until cancelled or the connection goes.
struct Added {
    kind: Kind,
    bind: Option<String>,
    port: u16,
    task: JoinHandle<()>,
    _file: Option<SocketFile>,
}

/// Starts the task that runs command lines on `conn`; it ends when the
/// returned handle is dropped or the connection ends.
pub fn start<C: Connection>(
    conn: Arc<C>,
    remote: Arc<RemoteForwards>,
    bind: BindOptions,
    quiet: bool,
) -> (CommandLine, JoinHandle<()>) {
    let (requests, mut incoming) = mpsc::channel::<(Request, oneshot::Sender<String>)>(1);
    let task = tokio::spawn(async move {
        let mut added: Vec<Added> = Vec::new();
        while let Some((request, reply)) = incoming.recv().await {
            let answer = match request {
                Request::Rekey => match conn.rekey().await {
                    Ok(()) => String::new(),
                    Err(e) => format!("Cannot rekey: {e}"),
                },
                Request::Line(line) => match parse(&line) {
                    Ok(command) => run(command, &conn, &remote, bind, quiet, &mut added).await,
                    Err(message) => message.to_string(),
                },
            };
            let _ = reply.send(answer);
        }
        for forward in added {
            forward.task.abort();
        }
    });
    (CommandLine { requests }, task)
}

async fn run<C: Connection>(
    command: Command,
    conn: &Arc<C>,
    remote: &RemoteForwards,
    bind: BindOptions,
    quiet: bool,
    added: &mut Vec<Added>,
) -> String {
    const BAD: &str = "Bad forwarding specification.";
    match command {
        Command::Nothing => String::new(),
        Command::Help => HELP.trim_end().to_string(),
        Command::Add(Kind::Local, spec) => {
            let Ok(forward) = Forward::parse_local(&spec) else {
                return BAD.to_string();
            };
            match crate::forward::local::bind(&forward, bind).await {
                Ok((listener, file)) => {
                    let (bind_address, port) = match &forward.listen {
                        Listen::Port { bind_address, port } => (bind_address.clone(), *port),
                        Listen::Path(path) => (Some(path.clone()), 0),
                    };
                    let task = tokio::spawn(crate::forward::local::serve(
                        conn.clone(),
                        listener,
                        forward.target.clone(),
                    ));
                    added.push(Added {
                        kind: Kind::Local,
                        bind: bind_address,
                        port,
                        task,
                        _file: file,
                    });
                    "Forwarding port.".to_string()
                }
                Err(e) => format!("{e}\r\nPort forwarding failed."),
            }
        }
        Command::Add(Kind::Dynamic, spec) => {
            let Ok(forward) = DynamicForward::parse(&spec) else {
                return BAD.to_string();
            };
            match crate::forward::socks::bind(&forward).await {
                Ok(listener) => {
                    let task = tokio::spawn(crate::forward::socks::serve(conn.clone(), listener));
                    added.push(Added {
                        kind: Kind::Dynamic,
                        bind: forward.bind_address.clone(),
                        port: forward.bind_port,
                        task,
                        _file: None,
                    });
                    "Forwarding port.".to_string()
                }
                Err(e) => format!("{e}\r\nPort forwarding failed."),
            }
        }
        Command::Add(Kind::Remote, spec) => {
            let Ok(forward) = Forward::parse_remote(&spec) else {
                return BAD.to_string();
            };
            let on_refusal = OnRefusal { exit: false, quiet };
            match remote
                .request_all(conn.as_ref(), &[forward], on_refusal)
                .await
            {
                Ok(()) => "Forwarding port.".to_string(),
                Err(e) => format!("{e}\r\nPort forwarding failed."),
            }
        }
        Command::Cancel(Kind::Remote, bind_address, port) => {
            match remote
                .cancel(conn.as_ref(), bind_address.as_deref(), port)
                .await
            {
                Ok(true) => "Canceled forwarding.".to_string(),
                Ok(false) => "Unknown port forwarding.".to_string(),
                Err(e) => e.to_string(),
            }
        }
        Command::Cancel(kind, bind_address, port) => {
            let before = added.len();
            added.retain(|forward| {
                let matches =
                    forward.kind == kind && forward.port == port && forward.bind == bind_address;
                if matches {
                    forward.task.abort();
                }
                !matches
            });
            match added.len() < before {
                true => "Canceled forwarding.".to_string(),
                false => "Unknown port forwarding.".to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_read_as_ssh_reads_them() {
        assert_eq!(parse("  "), Ok(Command::Nothing));
        assert_eq!(parse("?"), Ok(Command::Help));
        assert_eq!(parse("-h"), Ok(Command::Help));
        assert_eq!(
            parse("-L 8080:localhost:80"),
            Ok(Command::Add(Kind::Local, "8080:localhost:80".into()))
        );
        assert_eq!(
            parse("-R9000:h:22"),
            Ok(Command::Add(Kind::Remote, "9000:h:22".into()))
        );
        assert_eq!(
            parse("-D 1080"),
            Ok(Command::Add(Kind::Dynamic, "1080".into()))
        );
        assert_eq!(
            parse("-KL 8080"),
            Ok(Command::Cancel(Kind::Local, None, 8080))
        );
        assert_eq!(
            parse("-KR 127.0.0.1:9000"),
            Ok(Command::Cancel(
                Kind::Remote,
                Some("127.0.0.1".into()),
                9000
            ))
        );
        assert_eq!(
            parse("-KD[::1]:1080"),
            Ok(Command::Cancel(Kind::Dynamic, Some("::1".into()), 1080))
        );
        assert_eq!(parse("-X 1"), Err("Invalid command."));
        assert_eq!(parse("ls"), Err("Invalid command."));
        assert_eq!(parse("-KL port"), Err("Bad forwarding close port"));
    }
}
