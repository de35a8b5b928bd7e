//! The framed Unix-socket link between sshqd and a session holder: whole
//! messages of [`super::holder_wire`] each way.

use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use super::holder_wire::{HolderWireError, Message};
use crate::reattach::FrameReader;

/// The link failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("session holder link: {0}")]
    Io(#[from] std::io::Error),
    #[error("session holder link: {0}")]
    Wire(#[from] HolderWireError),
    #[error("session holder link: the stream ended inside a message")]
    CutShort,
}

/// Both directions of a link.
pub struct HolderLink {
    reader: LinkReader,
    writer: LinkWriter,
    peer_uid: Option<u32>,
}

impl HolderLink {
    pub fn new(stream: UnixStream) -> HolderLink {
        let peer_uid = stream.peer_cred().ok().map(|cred| cred.uid());
        let (read, write) = stream.into_split();
        HolderLink {
            reader: LinkReader {
                inner: FrameReader::new(read),
            },
            writer: LinkWriter { inner: write },
            peer_uid,
        }
    }

    /// The user of the process at the other end, as the kernel says.
    pub fn peer_uid(&self) -> Option<u32> {
        self.peer_uid
    }

    pub async fn send<M: Message>(&mut self, message: &M) -> Result<(), LinkError> {
        self.writer.send(message).await
    }

    pub async fn receive<M: Message>(&mut self) -> Result<Option<M>, LinkError> {
        self.reader.receive().await
    }

    pub fn into_split(self) -> (LinkReader, LinkWriter) {
        (self.reader, self.writer)
    }
}

/// The receiving half.
pub struct LinkReader {
    inner: FrameReader<OwnedReadHalf>,
}

impl LinkReader {
    /// The next message; `None` when the link ends between messages.
    pub async fn receive<M: Message>(&mut self) -> Result<Option<M>, LinkError> {
        self.inner
            .next_with(
                |bytes| M::decode(bytes).map_err(LinkError::from),
                || LinkError::CutShort,
            )
            .await
    }
}

/// The sending half.
pub struct LinkWriter {
    inner: OwnedWriteHalf,
}

impl LinkWriter {
    pub async fn send<M: Message>(&mut self, message: &M) -> Result<(), LinkError> {
        let mut bytes = Vec::new();
        message.encode(&mut bytes);
        self.inner.write_all(&bytes).await?;
        Ok(())
    }

    /// Ends this direction; the other end reads the end of the link.
    pub async fn shutdown(&mut self) {
        let _ = self.inner.shutdown().await;
    }
}
