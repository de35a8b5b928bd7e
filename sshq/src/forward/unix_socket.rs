//! Unix-domain sockets for streamlocal forwarding, created and reached with
//! the right identity.
//!
//! sshqd runs as root, but a socket a user forwards must be made and reached
//! with that user's rights, as OpenSSH's sshd does from its unprivileged
//! child: otherwise `-R /etc/x.sock:...` could create files anywhere and
//! `-L 1234:/root/private.sock` could reach sockets the user may not. Each
//! such operation runs with the user's filesystem identity (see
//! `crate::fs_identity`).

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

pub use crate::fs_identity::Identity;
use crate::fs_identity::{as_identity, as_identity_detached};

/// How a listening socket is created (StreamLocalBindUnlink and
/// StreamLocalBindMask, on either side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindOptions {
    /// Remove a socket already at the path first (only a socket: any other
    /// kind of file stays, and the bind fails).
    pub unlink_first: bool,
    /// The umask the socket is created with (default 0177: mode 0600).
    pub mask: u32,
}

impl Default for BindOptions {
    fn default() -> Self {
        BindOptions {
            unlink_first: false,
            mask: 0o177,
        }
    }
}

/// The file of a listening socket we made; dropping this removes it (with
/// the identity that made it), unless the path names another file by then.
/// It is kept apart from the listener so that removal happens when its
/// owner says, not whenever a cancelled task is finally dropped.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    identity: Identity,
    /// Device and inode of the socket file we created.
    file_id: (u64, u64),
}

impl SocketFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn remove(path: &Path, file_id: (u64, u64)) -> io::Result<()> {
        let meta = std::fs::symlink_metadata(path)?;
        if meta.file_type().is_socket() && (meta.dev(), meta.ino()) == file_id {
            std::fs::remove_file(path)?;
        }
        Ok(())
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let (path, file_id) = (self.path.clone(), self.file_id);
        if self.identity == Identity::Process {
            // Our own file: at once, so it is gone before the process exits.
            if let Err(e) = SocketFile::remove(&path, file_id) {
                tracing::debug!("cannot remove {}: {e}", path.display());
            }
        } else {
            // Another identity needs a thread of its own; nobody waits for it.
            as_identity_detached(&self.identity, move || SocketFile::remove(&path, file_id));
        }
    }
}

/// Creates a listening socket at `path` as `identity`.
pub async fn bind(
    path: &str,
    identity: &Identity,
    options: BindOptions,
) -> io::Result<(UnixListener, SocketFile)> {
    let path = PathBuf::from(path);
    let (listener, file_id) = {
        let path = path.clone();
        as_identity(identity, Some(options.mask), move || {
            if options.unlink_first {
                match std::fs::symlink_metadata(&path) {
                    Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(&path)?,
                    _ => {}
                }
            }
            let listener = std::os::unix::net::UnixListener::bind(&path)?;
            let meta = std::fs::symlink_metadata(&path)?;
            Ok((listener, (meta.dev(), meta.ino())))
        })
        .await?
    };
    let file = SocketFile {
        path,
        identity: identity.clone(),
        file_id,
    };
    listener.set_nonblocking(true)?;
    Ok((UnixListener::from_std(listener)?, file))
}

/// Connects to the socket at `path` as `identity`.
pub async fn connect(path: &str, identity: &Identity) -> io::Result<UnixStream> {
    if *identity == Identity::Process {
        return UnixStream::connect(path).await;
    }
    let path = PathBuf::from(path);
    // A blocking connect on a Unix socket does not wait for the peer to
    // accept (only for room in its backlog), so the thread ends quickly.
    // draft §12.10: connect to a client-named socket with the user's file-system rights, never the server's
    let stream = as_identity(identity, None, move || {
        std::os::unix::net::UnixStream::connect(&path)
    })
    .await?;
    stream.set_nonblocking(true)?;
    UnixStream::from_std(stream)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[tokio::test]
    async fn sockets_get_the_mask_and_go_away() {
        let dir = tempfile_dir();
        let path = dir.join("s.sock");
        let path_str = path.to_str().unwrap();
        let first = bind(path_str, &Identity::Process, BindOptions::default())
            .await
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Taken without StreamLocalBindUnlink; replaced with it.
        assert!(bind(path_str, &Identity::Process, BindOptions::default())
            .await
            .is_err());
        let unlink = BindOptions {
            unlink_first: true,
            mask: 0o111,
        };
        let again = bind(path_str, &Identity::Process, unlink).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666);
        let _client = connect(path_str, &Identity::Process).await.unwrap();
        // The first socket's file is gone already: dropping it leaves the
        // second one's alone.
        drop(first);
        assert!(path.exists());
        drop(again);
        assert!(!path.exists(), "{} was not removed", path.display());
        // Not a socket: never unlinked.
        std::fs::write(&path, b"keep").unwrap();
        assert!(bind(path_str, &Identity::Process, unlink).await.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"keep");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        nix::unistd::mkdtemp("/tmp/sshq-unit-XXXXXX").unwrap()
    }
}
