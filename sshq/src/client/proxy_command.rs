//! ProxyCommand: SSH over a command's stdin and stdout, as in ssh. The
//! command runs under /bin/sh with `%h`, `%p`, `%r`, `%n` and `%%` expanded;
//! its stderr is ours. It is stopped when the connection ends.

use std::io;
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::Plan;

/// The command with ssh's tokens replaced: `%h` the host name to connect
/// to, `%p` the port, `%r` the remote user, `%n` the host as given.
pub fn expand(command: &str, plan: &Plan) -> String {
    let mut out = String::with_capacity(command.len());
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => out.push_str(&plan.hostname),
            Some('p') => out.push_str(&plan.port.to_string()),
            Some('r') => out.push_str(&plan.user),
            Some('n') => out.push_str(&plan.host),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// The running command, read and written as one byte stream.
pub struct CommandStream {
    _child: Child,
    stdout: ChildStdout,
    stdin: ChildStdin,
}

/// Starts `command` (already expanded) under /bin/sh.
pub fn spawn(command: &str) -> io::Result<CommandStream> {
    tracing::debug!("Executing proxy command: exec {command}");
    let mut child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("exec {command}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let missing = || io::Error::other("the proxy command's pipes were not set up");
    let stdout = child.stdout.take().ok_or_else(missing)?;
    let stdin = child.stdin.take().ok_or_else(missing)?;
    Ok(CommandStream {
        _child: child,
        stdout,
        stdin,
    })
}

impl AsyncRead for CommandStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdout).poll_read(cx, buf)
    }
}

impl AsyncWrite for CommandStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stdin).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_shutdown(cx)
    }
}
