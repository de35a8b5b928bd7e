//! A channel used as one plain byte stream, for whatever runs over a byte
//! stream: an SSH connection to the next ProxyJump hop, the datagrams of a
//! QUIC connection relayed by a jump host, or `-W`'s stdin and stdout.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};

use crate::transport::Channel;

/// The data halves of a channel as one `AsyncRead + AsyncWrite`. Extended
/// data (stderr) and requests are dropped, as they are for forwarded
/// connections. The channel stays open while this lives; shutting down the
/// writer sends EOF.
pub struct ChannelStream<C: Channel> {
    reader: C::Reader,
    writer: C::Writer,
    /// Held so the channel is closed when the stream is dropped, not before
    /// (boxed so the stream is `Unpin` whatever the control's type).
    _control: Box<C::Control>,
}

impl<C: Channel> ChannelStream<C> {
    pub fn new(channel: C) -> Self {
        let (reader, writer, control) = channel.split().into_data_halves();
        ChannelStream::from_halves(reader, writer, control)
    }

    /// For a channel that needed requests (e.g. a subsystem) before its
    /// data became a plain stream.
    pub fn from_halves(reader: C::Reader, writer: C::Writer, control: C::Control) -> Self {
        ChannelStream {
            reader,
            writer,
            _control: Box::new(control),
        }
    }
}

impl<C: Channel> AsyncRead for ChannelStream<C> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl<C: Channel> AsyncBufRead for ChannelStream<C> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        Pin::new(&mut self.get_mut().reader).poll_fill_buf(cx)
    }

    fn consume(mut self: Pin<&mut Self>, amount: usize) {
        Pin::new(&mut self.reader).consume(amount)
    }
}

impl<C: Channel> AsyncWrite for ChannelStream<C> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_shutdown(cx)
    }
}
