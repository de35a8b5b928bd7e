//! `ChrootDirectory` as sshd applies it (session.c `do_setusercontext` and
//! `safely_chroot`): the path's tokens expanded for the user, every
//! component of it a directory owned by root and writable by nobody else,
//! or the session is refused with sshd's message.
//!
//! The check runs in sshqd (as root, before the session's process exists)
//! and the chroot itself in the internal-sftp helper, still root, before it
//! becomes the user. Nothing can change the path in between that the check
//! would have caught: every component is root's and writable by root alone.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::server::process::SessionUser;

/// Why a chroot directory is refused: sshd's fatal() text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ChrootRefused(pub String);

/// The ChrootDirectory value for `user`: `~` and `~user` as the home
/// directories, then `%h` (home), `%u` (name), `%U` (uid) and `%%`.
pub fn expand(template: &str, user: &SessionUser) -> Result<PathBuf, ChrootRefused> {
    let home = user.home.as_os_str().as_bytes();
    let mut out: Vec<u8> = Vec::new();
    let mut rest = template.as_bytes();
    if let Some(after) = rest.strip_prefix(b"~") {
        let end = after.iter().position(|&b| b == b'/').unwrap_or(after.len());
        let (name, tail) = after.split_at(end);
        if name.is_empty() {
            out.extend_from_slice(home);
        } else {
            let name = String::from_utf8_lossy(name);
            let other = SessionUser::lookup(&name)
                .ok()
                .flatten()
                .ok_or_else(|| ChrootRefused(format!("tilde_expand: No such user {name}")))?;
            out.extend_from_slice(other.home.as_os_str().as_bytes());
        }
        rest = tail;
    }
    let mut bytes = rest.iter();
    while let Some(&b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'h') => out.extend_from_slice(home),
            Some(b'u') => out.extend_from_slice(user.name.as_bytes()),
            Some(b'U') => out.extend_from_slice(user.uid.to_string().as_bytes()),
            Some(b'%') => out.push(b'%'),
            other => {
                let token = other.map_or(String::new(), |b| char::from(*b).to_string());
                return Err(ChrootRefused(format!(
                    "percent_expand: unknown key %{token}"
                )));
            }
        }
    }
    Ok(PathBuf::from(OsStr::from_bytes(&out)))
}

/// sshd's safely_chroot checks: an absolute path, and each prefix ending at
/// a `/` (then the whole path) a root-owned directory without group or
/// other write permission.
pub fn check(path: &Path) -> Result<(), ChrootRefused> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(ChrootRefused("chroot path does not begin at root".into()));
    }
    if bytes.len() >= libc::PATH_MAX as usize {
        return Err(ChrootRefused("chroot path too long".into()));
    }
    let mut ends: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'/')
        .map(|(at, _)| at + 1)
        .collect();
    if ends.last() != Some(&bytes.len()) {
        ends.push(bytes.len());
    }
    for end in ends {
        let component = Path::new(OsStr::from_bytes(&bytes[..end]));
        // "component" for the prefixes, nothing for the path itself.
        let kind = if end < bytes.len() { "component " } else { "" };
        let shown = component.display();
        let meta = std::fs::metadata(component).map_err(|e| {
            ChrootRefused(format!(
                "safely_chroot: stat(\"{shown}\"): {}",
                crate::server::sftp::strerror(&e)
            ))
        })?;
        if meta.uid() != 0 || meta.permissions().mode() & 0o022 != 0 {
            return Err(ChrootRefused(format!(
                "bad ownership or modes for chroot directory {kind}\"{shown}\""
            )));
        }
        if !meta.is_dir() {
            return Err(ChrootRefused(format!(
                "chroot path {kind}\"{shown}\" is not a directory"
            )));
        }
    }
    Ok(())
}

/// Changes the root, as sshd does once the checks passed: into the
/// directory, chroot, then to the new `/`. Needs root.
pub fn enter(path: &Path) -> Result<(), ChrootRefused> {
    let shown = path.display();
    let reason = |e: nix::errno::Errno| e.desc();
    nix::unistd::chdir(path).map_err(|e| {
        ChrootRefused(format!(
            "Unable to chdir to chroot path \"{shown}\": {}",
            reason(e)
        ))
    })?;
    nix::unistd::chroot(path)
        .map_err(|e| ChrootRefused(format!("chroot(\"{shown}\"): {}", reason(e))))?;
    nix::unistd::chdir("/").map_err(|e| {
        ChrootRefused(format!(
            "safely_chroot: chdir(/) after chroot: {}",
            reason(e)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> SessionUser {
        SessionUser {
            name: "alice".into(),
            uid: 1001,
            gid: 1001,
            home: "/home/alice".into(),
            shell: "/bin/sh".into(),
        }
    }

    #[test]
    fn tokens_expand_for_the_user() {
        let path = expand("/srv/%u/%U/%%%h", &user()).unwrap();
        assert_eq!(path, Path::new("/srv/alice/1001/%/home/alice"));
        assert_eq!(expand("~/x", &user()).unwrap(), Path::new("/home/alice/x"));
        assert!(expand("/srv/%x", &user()).is_err());
    }

    #[test]
    fn sshd_messages() {
        let relative = check(Path::new("srv")).unwrap_err();
        assert_eq!(relative.0, "chroot path does not begin at root");
        // A base that passes the checks itself (/tmp is world-writable).
        let base = Path::new(env!("CARGO_MANIFEST_DIR"));
        if !nix::unistd::geteuid().is_root() || check(base).is_err() {
            return;
        }
        let dir = tempfile::tempdir_in(base).unwrap();
        std::fs::set_permissions(dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
        let group_writable = dir.path().join("g");
        std::fs::create_dir(&group_writable).unwrap();
        std::fs::set_permissions(&group_writable, PermissionsExt::from_mode(0o775)).unwrap();
        let inner = group_writable.join("inner");
        std::fs::create_dir(&inner).unwrap();
        std::fs::set_permissions(&inner, PermissionsExt::from_mode(0o755)).unwrap();
        {
            let refused = check(&inner).unwrap_err().0;
            let expected = format!(
                "bad ownership or modes for chroot directory component \"{}/\"",
                group_writable.display()
            );
            assert_eq!(refused, expected);
            std::fs::set_permissions(&group_writable, PermissionsExt::from_mode(0o755)).unwrap();
            check(&inner).unwrap();
            let file = inner.join("f");
            std::fs::write(&file, b"").unwrap();
            let not_dir = check(&file).unwrap_err().0;
            assert_eq!(
                not_dir,
                format!("chroot path \"{}\" is not a directory", file.display())
            );
        }
    }
}
