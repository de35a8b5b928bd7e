//! Byte pumping shared by client and server.

use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Buffer size for bulk copies. tokio's `copy` moves 8 KiB at a time; on
/// loopback the per-call overhead of that dominates a transfer, so copies
/// of channel data use large reads and writes instead.
pub const COPY_BUFFER: usize = 256 * 1024;

/// The buffer [`copy_large`] reads into while output is small: part of the
/// pump's own future, so a quiet pump holds no buffer on the heap. Enough
/// for what a terminal shows after a keystroke.
const IDLE_BUFFER: usize = 256;

/// The first heap buffer of [`copy_large`], once a read filled
/// [`IDLE_BUFFER`].
const FIRST_BUFFER: usize = 8 * 1024;

/// Copies `from` to `to` until EOF, in large chunks, then flushes `to`.
/// Returns how many bytes were copied.
///
/// An idle session keeps its output pump for as long as it lasts, and a
/// busy server has one per session, so the pump holds memory only while
/// output flows (interop/results/bench-idle). It reads into a small
/// buffer of its own ([`IDLE_BUFFER`]) until a read fills it; then into a
/// heap buffer that starts at [`FIRST_BUFFER`] and doubles, up to
/// [`COPY_BUFFER`], whenever a read fills it, so bulk output reaches large
/// reads after a few. Once a read fits the small buffer again, the heap
/// buffer is let go.
pub async fn copy_large<R, W>(mut from: R, to: &mut W) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut idle = [0u8; IDLE_BUFFER];
    let mut bulk: Vec<u8> = Vec::new();
    let mut copied = 0u64;
    loop {
        let buffer: &mut [u8] = if bulk.is_empty() {
            &mut idle
        } else {
            &mut bulk
        };
        let capacity = buffer.len();
        let n = from.read(buffer).await?;
        let Some(chunk) = buffer.get(..n).filter(|_| n > 0) else {
            break;
        };
        to.write_all(chunk).await?;
        copied += n as u64;
        if n < capacity {
            if n <= IDLE_BUFFER {
                bulk = Vec::new();
            }
        } else if capacity < COPY_BUFFER {
            let grown = if bulk.is_empty() {
                FIRST_BUFFER
            } else {
                (capacity * 2).min(COPY_BUFFER)
            };
            bulk.resize(grown, 0);
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

    #[tokio::test]
    async fn copy_large_copies_everything_while_its_buffer_grows() {
        let data: Vec<u8> = (0..3 * COPY_BUFFER + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        for step in [1, 100, IDLE_BUFFER, FIRST_BUFFER, COPY_BUFFER, usize::MAX] {
            let mut out = Vec::new();
            let from = Bursts {
                data: &data,
                steps: &[step],
                next: 0,
            };
            let copied = copy_large(from, &mut out).await.expect("copy");
            assert_eq!(copied, data.len() as u64, "step {step}");
            assert!(out == data, "step {step}: the copy differs");
        }
    }

    /// A reader whose reads hand out at most `steps[0]`, `steps[1]`, ...
    /// bytes, cycling, like a pipe (one step), or output that turns from
    /// bulk to a trickle and back (several).
    struct Bursts<'a> {
        data: &'a [u8],
        steps: &'a [usize],
        next: usize,
    }

    impl AsyncRead for Bursts<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let step = self.steps[self.next % self.steps.len()];
            self.next += 1;
            let n = self.data.len().min(step).min(buf.remaining());
            let (now, rest) = self.data.split_at(n);
            buf.put_slice(now);
            self.data = rest;
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn copy_large_keeps_the_bytes_when_output_turns_from_bulk_to_a_trickle() {
        let data: Vec<u8> = (0..2 * COPY_BUFFER).map(|i| (i % 253) as u8).collect();
        let steps = [
            usize::MAX,
            usize::MAX,
            7,
            IDLE_BUFFER,
            IDLE_BUFFER + 1,
            3 * FIRST_BUFFER,
            1,
        ];
        let mut out = Vec::new();
        let from = Bursts {
            data: &data,
            steps: &steps,
            next: 0,
        };
        let copied = copy_large(from, &mut out).await.expect("copy");
        assert_eq!(copied, data.len() as u64);
        assert!(out == data, "the copy differs");
    }

    #[tokio::test]
    async fn copy_large_of_nothing_is_nothing() {
        let mut out = Vec::new();
        let copied = copy_large(&b""[..], &mut out).await.expect("copy");
        assert_eq!((copied, out.len()), (0, 0));
    }
}
