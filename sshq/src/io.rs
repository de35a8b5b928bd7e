//! Byte pumping shared by client and server.

use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Buffer size for bulk copies. tokio's `copy` moves 8 KiB at a time; on
/// loopback the per-call overhead of that dominates a transfer, so copies
/// of channel data use large reads and writes instead.
pub const COPY_BUFFER: usize = 256 * 1024;

/// The first buffer of [`copy_large`]: enough for what a terminal or an
/// interactive program writes at once. An idle session keeps its pump, and
/// its buffer, for as long as it lasts, so it starts small.
const FIRST_BUFFER: usize = 8 * 1024;

/// Copies `from` to `to` until EOF, in large chunks, then flushes `to`.
/// Returns how many bytes were copied.
///
/// The buffer starts at [`FIRST_BUFFER`] and doubles, up to
/// [`COPY_BUFFER`], whenever a read fills it: bulk transfers reach large
/// reads after a few, while the many idle pumps of a busy server (one per
/// session's output) hold 8 KiB each instead of 256 KiB
/// (interop/results/bench-idle).
pub async fn copy_large<R, W>(mut from: R, to: &mut W) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buffer = vec![0u8; FIRST_BUFFER];
    let mut copied = 0u64;
    loop {
        let n = from.read(&mut buffer).await?;
        let Some(chunk) = buffer.get(..n).filter(|_| n > 0) else {
            break;
        };
        to.write_all(chunk).await?;
        copied += n as u64;
        if n == buffer.len() && buffer.len() < COPY_BUFFER {
            buffer.resize((buffer.len() * 2).min(COPY_BUFFER), 0);
        }
    }
    to.flush().await?;
    Ok(copied)
}

/// Copies an already-buffered reader (a channel's `data_in` or `ext_in`)
/// to `to` until EOF, without another buffer in between, then flushes.
pub async fn copy_buffered<R, W>(mut from: R, to: &mut W) -> std::io::Result<u64>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + ?Sized,
{
    let copied = tokio::io::copy_buf(&mut from, to).await?;
    to.flush().await?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes per read, like a pipe.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl AsyncRead for Trickle<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let n = self.data.len().min(self.step).min(buf.remaining());
            let (now, rest) = self.data.split_at(n);
            buf.put_slice(now);
            self.data = rest;
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn copy_large_copies_everything_while_its_buffer_grows() {
        let data: Vec<u8> = (0..3 * COPY_BUFFER + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        for step in [1, 100, FIRST_BUFFER, COPY_BUFFER, usize::MAX] {
            let mut out = Vec::new();
            let from = Trickle { data: &data, step };
            let copied = copy_large(from, &mut out).await.expect("copy");
            assert_eq!(copied, data.len() as u64, "step {step}");
            assert!(out == data, "step {step}: the copy differs");
        }
    }

    #[tokio::test]
    async fn copy_large_of_nothing_is_nothing() {
        let mut out = Vec::new();
        let copied = copy_large(&b""[..], &mut out).await.expect("copy");
        assert_eq!((copied, out.len()), (0, 0));
    }
}
