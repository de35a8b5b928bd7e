//! The async ends of a session: pipes, or the two halves of the pty master.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use nix::errno::Errno;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};

/// Writing side of a session: the child's stdin pipe or the pty master.
#[derive(Debug)]
pub struct SessionStdin {
    inner: StdinInner,
}

#[derive(Debug)]
enum StdinInner {
    /// `None` once shut down.
    Pipe(Option<ChildStdin>),
    Pty(pty_process::OwnedWritePty),
}

impl SessionStdin {
    pub(super) fn pipe(pipe: ChildStdin) -> SessionStdin {
        SessionStdin {
            inner: StdinInner::Pipe(Some(pipe)),
        }
    }

    pub(super) fn pty(master: pty_process::OwnedWritePty) -> SessionStdin {
        SessionStdin {
            inner: StdinInner::Pty(master),
        }
    }
}

impl AsyncWrite for SessionStdin {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            StdinInner::Pipe(Some(pipe)) => Pin::new(pipe).poll_write(cx, buf),
            StdinInner::Pipe(None) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the session's stdin is already closed",
            ))),
            StdinInner::Pty(master) => Pin::new(master).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            StdinInner::Pipe(Some(pipe)) => Pin::new(pipe).poll_flush(cx),
            StdinInner::Pipe(None) => Poll::Ready(Ok(())),
            StdinInner::Pty(master) => Pin::new(master).poll_flush(cx),
        }
    }

    /// Delivers the client's EOF.
    ///
    /// Without a pty this closes the pipe, so the child reads EOF. With a
    /// pty it does nothing, which is what sshd does: it closes its writing
    /// descriptor of the master, but its reading descriptor stays open, so
    /// the child sees nothing. A client that wants the program to see end
    /// of input sends the VEOF character (^D) as data, as a terminal would.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            StdinInner::Pipe(slot) => {
                if let Some(pipe) = slot {
                    ready!(Pin::new(pipe).poll_flush(cx))?;
                }
                *slot = None;
                Poll::Ready(Ok(()))
            }
            StdinInner::Pty(_) => Poll::Ready(Ok(())),
        }
    }
}

/// Reading side of a session: stdout, stderr, or the pty master.
#[derive(Debug)]
pub struct SessionOutput {
    inner: OutputInner,
}

#[derive(Debug)]
enum OutputInner {
    Stdout(ChildStdout),
    Stderr(ChildStderr),
    Pty(pty_process::OwnedReadPty),
}

impl SessionOutput {
    pub(super) fn stdout(pipe: ChildStdout) -> SessionOutput {
        SessionOutput {
            inner: OutputInner::Stdout(pipe),
        }
    }

    pub(super) fn stderr(pipe: ChildStderr) -> SessionOutput {
        SessionOutput {
            inner: OutputInner::Stderr(pipe),
        }
    }

    pub(super) fn pty(master: pty_process::OwnedReadPty) -> SessionOutput {
        SessionOutput {
            inner: OutputInner::Pty(master),
        }
    }
}

impl AsyncRead for SessionOutput {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            OutputInner::Stdout(pipe) => Pin::new(pipe).poll_read(cx, buf),
            OutputInner::Stderr(pipe) => Pin::new(pipe).poll_read(cx, buf),
            OutputInner::Pty(master) => match ready!(Pin::new(master).poll_read(cx, buf)) {
                // Linux reports "every slave descriptor is closed" as EIO on
                // the master; for the session that is the end of output.
                Err(e) if e.raw_os_error() == Some(Errno::EIO as i32) => Poll::Ready(Ok(())),
                other => Poll::Ready(other),
            },
        }
    }
}
