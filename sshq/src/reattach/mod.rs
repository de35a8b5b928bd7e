//! Reattachable sessions (`sshq-session@sshq.dev`, draft §8.12): a pty
//! session that outlives the connection it started on. sshqd holds it
//! when the connection is lost; the client logs in again, over whichever
//! transport works then, and takes it over, with no output lost or
//! repeated and no keystroke dropped.
//!
//! It runs above the transport trait, inside an ordinary `session`
//! channel's data stream, so it means the same over QUIC and TCP. The
//! shared parts live here: the frames ([`wire`]) and the buffers that
//! make a reattach exact ([`replay`]). sshqd's side is
//! `crate::server::reattach`, the client's `crate::client::reattach`.

pub mod replay;
pub mod wire;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use wire::{Frame, WireError};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the stream ended inside a frame")]
    CutShort,
}

/// Reads frames from a channel's data stream (and, with
/// [`FrameReader::next_with`], any length-prefixed messages from any
/// stream: sshqd's link to a session holder uses it too).
pub struct FrameReader<R> {
    inner: R,
    buffered: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> FrameReader<R> {
        FrameReader {
            inner,
            buffered: Vec::new(),
        }
    }

    /// The stream, and the bytes read from it past the last frame returned.
    pub fn into_parts(self) -> (R, Vec<u8>) {
        (self.inner, self.buffered)
    }

    /// The next frame; `None` at the end of the stream between frames.
    pub async fn next(&mut self) -> Result<Option<Frame>, FrameError> {
        self.next_with(
            |bytes| Frame::decode(bytes).map_err(FrameError::from),
            || FrameError::CutShort,
        )
        .await
    }

    /// The next item `decode` finds at the front of what was read (it
    /// answers `Ok(None)` while it needs more bytes, else the item and the
    /// bytes it took); `None` at the end of the stream between items, and
    /// `cut_short()` at an end inside one.
    pub async fn next_with<T, E: From<std::io::Error>>(
        &mut self,
        decode: impl Fn(&[u8]) -> Result<Option<(T, usize)>, E>,
        cut_short: impl FnOnce() -> E,
    ) -> Result<Option<T>, E> {
        let mut scratch = [0u8; 16 * 1024];
        loop {
            if let Some((item, used)) = decode(&self.buffered)? {
                self.buffered.drain(..used);
                return Ok(Some(item));
            }
            let n = self.inner.read(&mut scratch).await?;
            if n == 0 {
                return match self.buffered.is_empty() {
                    true => Ok(None),
                    false => Err(cut_short()),
                };
            }
            self.buffered
                .extend_from_slice(scratch.get(..n).unwrap_or_default());
        }
    }
}

/// Writes `frame` to `to`.
pub async fn send<W: AsyncWrite + Unpin>(to: &mut W, frame: &Frame) -> std::io::Result<()> {
    let mut bytes = Vec::new();
    frame.encode(&mut bytes);
    to.write_all(&bytes).await?;
    to.flush().await
}

/// Writes `bytes` to `to` as DATA frames.
pub async fn send_data<W: AsyncWrite + Unpin>(to: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    let mut encoded = Vec::with_capacity(bytes.len() + 16);
    wire::encode_data(bytes, &mut encoded);
    to.write_all(&encoded).await?;
    to.flush().await
}
