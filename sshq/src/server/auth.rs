//! sshqd's decision on who may log in with which key: the user must exist,
//! PermitRootLogin must allow it, and the key must be in one of the user's
//! authorized_keys files. Used by every transport through the core's
//! `AuthPolicy` trait.

use sshq_core::log_escape;
use std::path::{Path, PathBuf};

use sshq_core::auth::AuthPolicy;
use sshq_core::ssh_key::PublicKey;

use super::process::SessionUser;

/// PermitRootLogin, as far as public keys are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootLogin {
    /// yes, prohibit-password, without-password: keys are fine.
    Allowed,
    /// forced-commands-only: only keys with command= (not supported: refused).
    ForcedCommandsOnly,
    No,
}

/// Lists the authorized_keys files of a user, given the name and home.
pub type AuthorizedKeysFiles = Box<dyn Fn(&str, &Path) -> Vec<PathBuf> + Send + Sync>;

/// The server's key-based login policy.
pub struct KeyPolicy {
    pub pubkey_authentication: bool,
    pub root_login: RootLogin,
    pub max_auth_tries: u32,
    /// AuthorizedKeysFile patterns, expanded per user by `authorized_keys_files`.
    pub authorized_keys: AuthorizedKeysFiles,
}

impl AuthPolicy for KeyPolicy {
    fn publickey_allowed(&self, user: &str, key: &PublicKey) -> bool {
        if !self.pubkey_authentication {
            return false;
        }
        let account = match SessionUser::lookup(user) {
            Ok(Some(account)) => account,
            Ok(None) => {
                tracing::info!("Invalid user {}", log_escape::peer_text(user));
                return false;
            }
            Err(e) => {
                tracing::error!("cannot look up user {}: {e}", log_escape::peer_text(user));
                return false;
            }
        };
        // Without root we cannot become anyone else.
        let me = nix::unistd::geteuid().as_raw();
        if me != 0 && account.uid != me {
            tracing::info!(
                "refusing {}: sshqd runs as uid {me} and can only log in its own user",
                log_escape::peer_text(user)
            );
            return false;
        }
        if account.uid == 0 {
            match self.root_login {
                RootLogin::Allowed => {}
                RootLogin::ForcedCommandsOnly | RootLogin::No => {
                    tracing::info!(
                        "ROOT LOGIN REFUSED for {}: PermitRootLogin",
                        log_escape::peer_text(user)
                    );
                    return false;
                }
            }
        }
        (self.authorized_keys)(user, &account.home)
            .iter()
            .any(|file| file_authorizes(file, key))
    }

    fn max_auth_tries(&self) -> u32 {
        self.max_auth_tries
    }
}

/// Whether `file` lists `key`. Unreadable files authorize nothing; lines we
/// cannot parse are skipped. A matching line with key options (command=,
/// from=, restrict, ...) is *not* honoured: sshqd does not enforce options
/// yet, and ignoring a restriction would grant more than the owner meant.
pub fn file_authorizes(file: &Path, key: &PublicKey) -> bool {
    let Ok(text) = std::fs::read_to_string(file) else {
        return false;
    };
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Ok(entry) = line.parse::<sshq_core::ssh_key::authorized_keys::Entry>() else {
            continue;
        };
        if entry.public_key().key_data() != key.key_data() {
            continue;
        }
        if !entry.config_opts().is_empty() {
            tracing::warn!(
                "{}:{}: key options are not supported by sshqd yet; this key is not accepted",
                file.display(),
                number + 1
            );
            continue;
        }
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE+ZuGJgMw1nw7LH+uRGHb8MKMuvM24XJpx9yNhbPsoE user";
    const OTHER: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOrz4mXUGbXnDXa8Wsrz7RQ3B6x8JgB+kMxkv1aZUKbS other";

    fn key(line: &str) -> PublicKey {
        PublicKey::from_openssh(line).unwrap()
    }

    #[test]
    fn authorized_keys_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("authorized_keys");
        std::fs::write(&file, format!("# comment\n\ngarbage line\n{OTHER}\n{ED}\n")).unwrap();
        assert!(file_authorizes(&file, &key(ED)));
        std::fs::write(&file, format!("{OTHER}\n")).unwrap();
        assert!(!file_authorizes(&file, &key(ED)));
        // Options are not enforced, so such a line must not let the key in.
        std::fs::write(&file, format!("command=\"/bin/true\" {ED}\n")).unwrap();
        assert!(!file_authorizes(&file, &key(ED)));
        assert!(!file_authorizes(&dir.path().join("missing"), &key(ED)));
    }
}
