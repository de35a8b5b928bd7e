//! Where session holders listen: one Unix socket per held session, in a
//! directory only sshqd's own user may enter (`ClientReattachDirectory`).
//!
//! The directory is what lets a session outlive sshqd: a new sshqd finds
//! the sessions an earlier one started by their sockets, named after the
//! user and a hash of the session's token. The name gives nothing away: the
//! token itself never touches the file system, and the holder checks it
//! again on every attachment.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::reattach::wire::Token;

/// The directory a root sshqd uses when ClientReattachDirectory is unset.
pub const ROOT_DEFAULT: &str = "/run/sshqd/sessions";

/// The directory when ClientReattachDirectory is unset: under /run for
/// root, else in the user's runtime directory (or /tmp), so that a test
/// sshqd never meets root's.
pub fn default_path() -> PathBuf {
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return PathBuf::from(ROOT_DEFAULT);
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("sshqd-sessions"),
        None => PathBuf::from(format!("/tmp/sshqd-sessions-{uid}")),
    }
}

/// The directory can't be used: nobody's session is held then.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("cannot create {}: {source}", .path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} is not a directory owned by uid {uid} and closed to everyone else \
         (owner {owner}, mode {mode:o}); fix or remove it",
        .path.display()
    )]
    Unsafe {
        path: PathBuf,
        uid: u32,
        owner: u32,
        mode: u32,
    },
}

/// A checked holder directory.
#[derive(Debug, Clone)]
pub struct HolderDirectory {
    path: PathBuf,
}

impl HolderDirectory {
    /// Makes `path` if it is missing (mode 0700; its parent 0755 if that is
    /// missing too), then checks that it is a real directory of ours that
    /// nobody else can enter: a socket there is as good as the session.
    pub fn open(path: &Path) -> Result<HolderDirectory, DirectoryError> {
        let create = |source| DirectoryError::Create {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.exists()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(create)?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(create(e)),
        }
        // Not followed: a symlink planted here is refused, not trusted.
        let meta = std::fs::symlink_metadata(path).map_err(create)?;
        let uid = nix::unistd::geteuid().as_raw();
        let mode = meta.permissions().mode() & 0o7777;
        if !meta.is_dir() || meta.uid() != uid || mode & 0o077 != 0 {
            return Err(DirectoryError::Unsafe {
                path: path.to_path_buf(),
                uid,
                owner: meta.uid(),
                mode,
            });
        }
        Ok(HolderDirectory {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The socket of the session `token` of user `uid`.
    pub fn socket_for(&self, uid: u32, token: &Token) -> PathBuf {
        self.path.join(format!("{uid}.{}", token_name(token)))
    }

    /// Whose session `token` names, if any user's: for the log line about
    /// a token presented by another user.
    pub fn owner_of(&self, token: &Token) -> Option<u32> {
        let suffix = format!(".{}", token_name(token));
        let entries = std::fs::read_dir(&self.path).ok()?;
        entries.flatten().find_map(|entry| {
            let name = entry.file_name();
            let uid = name.to_str()?.strip_suffix(&suffix)?;
            uid.parse().ok()
        })
    }

    /// How many sessions user `uid` has held; sockets of holders that are
    /// gone are cleared first when the count reaches `limit`, so a killed
    /// holder does not count against its user for ever.
    pub fn count_for_within(&self, uid: u32, limit: usize) -> usize {
        let count = self.count_for(uid);
        if count < limit {
            return count;
        }
        self.remove_stale();
        self.count_for(uid)
    }

    /// How many sessions user `uid` has held.
    pub fn count_for(&self, uid: u32) -> usize {
        let prefix = format!("{uid}.");
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return 0;
        };
        entries
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().starts_with(&prefix))
            .count()
    }

    /// Removes the sockets no holder listens on any more (one that was
    /// killed cannot remove its own), so that they count for nobody.
    pub fn remove_stale(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            let refused = std::os::unix::net::UnixStream::connect(&path)
                .is_err_and(|e| e.kind() == io::ErrorKind::ConnectionRefused);
            if refused && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

/// A token's part of its socket's name: the first 16 octets of its
/// SHA-256, in hex.
fn token_name(token: &Token) -> String {
    Sha256::digest(token.0)
        .iter()
        .take(16)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_directory_is_made_private() {
        let base = tempfile::tempdir().unwrap();
        let path = base.path().join("run/sessions");
        let dir = HolderDirectory::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let token = Token([5; 32]);
        let socket = dir.socket_for(1000, &token);
        assert_eq!(socket.parent(), Some(path.as_path()));
        let name = socket.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("1000."));
        assert_eq!(name.len(), "1000.".len() + 32);
        assert_ne!(socket, dir.socket_for(1000, &Token([6; 32])));
        assert_eq!(dir.count_for(1000), 0);
    }

    #[test]
    fn an_open_or_linked_directory_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let open = base.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let error = HolderDirectory::open(&open).unwrap_err().to_string();
        assert!(error.contains("mode 755"), "{error}");
        let link = base.path().join("link");
        let private = base.path().join("private");
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(&private, &link).unwrap();
        assert!(HolderDirectory::open(&link).is_err());
        assert!(HolderDirectory::open(&private).is_ok());
    }

    #[test]
    fn sockets_count_per_user_and_stale_ones_go() {
        let base = tempfile::tempdir().unwrap();
        let dir = HolderDirectory::open(&base.path().join("held")).unwrap();
        let live = dir.socket_for(7, &Token([1; 32]));
        let _listener = std::os::unix::net::UnixListener::bind(&live).unwrap();
        let stale = dir.socket_for(7, &Token([2; 32]));
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let other = dir.socket_for(70, &Token([3; 32]));
        let _other = std::os::unix::net::UnixListener::bind(&other).unwrap();
        assert_eq!(dir.count_for(7), 2);
        assert_eq!(dir.remove_stale(), 1);
        assert_eq!(dir.count_for(7), 1);
        assert_eq!(dir.count_for(70), 1);
        assert!(live.exists() && !stale.exists());
        assert_eq!(dir.owner_of(&Token([3; 32])), Some(70));
        assert_eq!(dir.owner_of(&Token([2; 32])), None);
    }
}
