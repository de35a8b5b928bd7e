//! Byte pumping shared by client and server.

use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// Buffer size for bulk copies. tokio's `copy` moves 8 KiB at a time; on
/// loopback the per-call overhead of that dominates a transfer, so copies
/// of channel data use large reads and writes instead.
pub const COPY_BUFFER: usize = 256 * 1024;

/// Copies `from` to `to` until EOF, in large chunks, then flushes `to`.
/// Returns how many bytes were copied.
pub async fn copy_large<R, W>(from: R, to: &mut W) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut from = BufReader::with_capacity(COPY_BUFFER, from);
    let copied = tokio::io::copy_buf(&mut from, to).await?;
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
