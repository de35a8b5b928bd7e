//! Reading a user's authorized_keys safely, and StrictModes.
//!
//! Everything here runs on a thread that has taken the user's filesystem
//! identity (`crate::fs_identity`), as sshd reads the file with the user's
//! rights: a symlink to a file only root may read gets EACCES. The file may
//! be a symlink (as in OpenSSH, subject to StrictModes, which checks the
//! path it resolves to), but it must be a regular file: it is opened with
//! O_NONBLOCK so a FIFO cannot block the open, then fstat'ed, so a FIFO,
//! /dev/zero or a directory is refused. Its size is capped at
//! [`MAX_KEYS_FILE`] so a huge file cannot grow the daemon.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::libc;

/// The largest authorized_keys file read: far more than any real list of
/// keys (an RSA-4096 line is ~750 bytes, so over 1,000 keys fit), small
/// enough that a hostile file costs little memory.
pub const MAX_KEYS_FILE: u64 = 1024 * 1024;

/// Whose file is read, as StrictModes needs it.
#[derive(Debug, Clone)]
pub struct Owner {
    pub name: String,
    pub uid: u32,
    pub home: PathBuf,
}

/// The text of `path` if it may be used, `None` otherwise (missing,
/// unreadable, not a regular file, too big, or refused by StrictModes). Each
/// refusal is logged with sshd's wording where sshd has one.
pub fn read_keys_file(path: &Path, owner: &Owner, strict_modes: bool) -> Option<String> {
    let file = match File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tracing::debug!(
                "Could not open user '{}' authorized keys '{}': {e}",
                owner.name,
                path.display()
            );
            return None;
        }
        Err(e) => {
            tracing::info!(
                "Could not open user '{}' authorized keys '{}': {e}",
                owner.name,
                path.display()
            );
            return None;
        }
    };
    // The open file, not the path: it cannot change under us.
    let meta = file.metadata().ok()?;
    if !meta.file_type().is_file() {
        tracing::info!(
            "User '{}' authorized keys '{}' is not a regular file",
            owner.name,
            path.display()
        );
        return None;
    }
    if strict_modes {
        if let Err(why) = secure_path(path, &meta, owner) {
            tracing::info!("Authentication refused: {why}");
            return None;
        }
    }
    // draft §12.11: files read before login MUST be regular files read with a size limit
    if meta.len() > MAX_KEYS_FILE {
        tracing::info!(
            "User '{}' authorized keys '{}' is larger than {MAX_KEYS_FILE} bytes: ignored",
            owner.name,
            path.display()
        );
        return None;
    }
    // The file may grow after fstat: never read more than the cap.
    let mut bytes = Vec::new();
    if let Err(e) = file.take(MAX_KEYS_FILE + 1).read_to_end(&mut bytes) {
        tracing::info!(
            "Could not read user '{}' authorized keys '{}': {e}",
            owner.name,
            path.display()
        );
        return None;
    }
    if bytes.len() as u64 > MAX_KEYS_FILE {
        tracing::info!(
            "User '{}' authorized keys '{}' is larger than {MAX_KEYS_FILE} bytes: ignored",
            owner.name,
            path.display()
        );
        return None;
    }
    // A line that is not UTF-8 cannot be a key line; keep the others.
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The text of a file of sshqd's own configuration read at login
/// (TrustedUserCAKeys): a regular file, opened without blocking on a FIFO,
/// at most [`MAX_KEYS_FILE`] bytes.
pub fn read_limited(path: &Path) -> io::Result<String> {
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !file.metadata()?.file_type().is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_KEYS_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_KEYS_FILE {
        return Err(io::Error::other(format!(
            "larger than {MAX_KEYS_FILE} bytes"
        )));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Why StrictModes refuses a file: sshd's words (logged after
/// "Authentication refused: ").
#[derive(Debug, thiserror::Error)]
pub enum UnsafePath {
    #[error("realpath {} failed: {source}", path.display())]
    Unresolved { path: PathBuf, source: io::Error },
    #[error("{} is not a regular file", .0.display())]
    NotRegularFile(PathBuf),
    #[error("bad ownership or modes for file {}", .0.display())]
    File(PathBuf),
    #[error("bad ownership or modes for directory {}", .0.display())]
    Directory(PathBuf),
}

/// StrictModes, as sshd's `safe_path`: the file must be a regular file
/// owned by root or the user and writable by nobody else, and so must every
/// directory from it up to the user's home (included) or, for a file outside
/// the home, up to `/`. The path checked is the one symlinks resolve to.
///
/// One difference from sshd: a directory owned by root with the sticky bit
/// (like /tmp) passes although others may write it, because the sticky bit
/// stops them from renaming or removing the entries of others, and the
/// entry below it was checked to belong to root or the user. sshd refuses
/// such paths; sshqd accepts them so that a key file in a private directory
/// under /tmp works with the default StrictModes.
pub fn secure_path(path: &Path, meta: &Metadata, owner: &Owner) -> Result<(), UnsafePath> {
    let real = std::fs::canonicalize(path).map_err(|source| UnsafePath::Unresolved {
        path: path.to_path_buf(),
        source,
    })?;
    let home = std::fs::canonicalize(&owner.home).ok();
    if !meta.file_type().is_file() {
        return Err(UnsafePath::NotRegularFile(real));
    }
    // draft §12.11: check, as StrictModes, that key files and their directories are not writable by others
    if !owned_safely(meta.uid(), owner.uid) || meta.permissions().mode() & 0o022 != 0 {
        return Err(UnsafePath::File(real));
    }
    let mut dir = real.as_path();
    while let Some(parent) = dir.parent() {
        dir = parent;
        let bad = || UnsafePath::Directory(dir.to_path_buf());
        let st = std::fs::metadata(dir).map_err(|_| bad())?;
        if !directory_safe(&st, owner.uid) {
            return Err(bad());
        }
        if home.as_deref() == Some(dir) {
            break;
        }
    }
    Ok(())
}

/// Root (sshd's `platform_sys_dir_uid`) or the user.
fn owned_safely(file_uid: u32, uid: u32) -> bool {
    file_uid == 0 || file_uid == uid
}

fn directory_safe(st: &Metadata, uid: u32) -> bool {
    let mode = st.permissions().mode();
    if !owned_safely(st.uid(), uid) {
        return false;
    }
    if mode & 0o022 == 0 {
        return true;
    }
    // Writable by others: only a root-owned sticky directory (see above).
    st.uid() == 0 && mode & libc::S_ISVTX != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A home with .ssh/authorized_keys, all owned by whoever runs the test.
    fn home() -> (tempfile::TempDir, Owner, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        let file = home.join(".ssh/authorized_keys");
        std::fs::write(&file, "ssh-ed25519 AAAA x\n").unwrap();
        set_mode(&home, 0o755);
        set_mode(&home.join(".ssh"), 0o700);
        set_mode(&file, 0o600);
        let owner = Owner {
            name: "tester".into(),
            uid: nix::unistd::geteuid().as_raw(),
            home,
        };
        (dir, owner, file)
    }

    #[test]
    fn strict_modes_follow_sshd() {
        let (_dir, owner, file) = home();
        assert!(read_keys_file(&file, &owner, true).is_some());
        for (path, mode, restore) in [
            (file.clone(), 0o620, 0o600),
            (file.clone(), 0o602, 0o600),
            (owner.home.join(".ssh"), 0o770, 0o700),
            (owner.home.join(".ssh"), 0o707, 0o700),
            (owner.home.clone(), 0o775, 0o755),
        ] {
            set_mode(&path, mode);
            assert!(
                read_keys_file(&file, &owner, true).is_none(),
                "{} with mode {mode:o} accepted",
                path.display()
            );
            assert!(read_keys_file(&file, &owner, false).is_some());
            set_mode(&path, restore);
        }
        // Not the user's and not root's: refused.
        let stranger = Owner {
            uid: 4242,
            ..owner.clone()
        };
        if owner.uid == 0 {
            nix::unistd::chown(&file, Some(nix::unistd::Uid::from_raw(4243)), None).unwrap();
        }
        let meta = std::fs::metadata(&file).unwrap();
        let why = secure_path(&file, &meta, &stranger)
            .unwrap_err()
            .to_string();
        assert!(why.starts_with("bad ownership or modes for file"), "{why}");
    }

    #[test]
    fn only_regular_files_of_bounded_size() {
        let (_dir, owner, file) = home();
        // A FIFO must neither block nor be read; /dev/zero must not be read.
        let fifo = owner.home.join(".ssh/fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(read_keys_file(&fifo, &owner, false).is_none());
        let zero = owner.home.join(".ssh/zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert!(read_keys_file(&zero, &owner, false).is_none());
        assert!(read_keys_file(&owner.home.join(".ssh/missing"), &owner, false).is_none());
        // A symlink to a fine file is fine (as in sshd).
        let link = owner.home.join(".ssh/link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(read_keys_file(&link, &owner, true).is_some());
        // Too big: refused, whatever it holds.
        let big = std::fs::File::create(&file).unwrap();
        big.set_len(MAX_KEYS_FILE + 1).unwrap();
        assert!(read_keys_file(&file, &owner, false).is_none());
        big.set_len(MAX_KEYS_FILE).unwrap();
        assert!(read_keys_file(&file, &owner, false).is_some());
    }

    #[test]
    fn sticky_root_directories_pass() {
        // /tmp: root-owned, sticky, world-writable.
        let meta = std::fs::metadata("/tmp").unwrap();
        if meta.uid() == 0 && meta.permissions().mode() & 0o1777 == 0o1777 {
            assert!(directory_safe(&meta, 4242));
        }
        let dir = tempfile::tempdir().unwrap();
        set_mode(dir.path(), 0o777);
        let meta = std::fs::metadata(dir.path()).unwrap();
        assert!(!directory_safe(&meta, meta.uid()));
    }
}
