//! sshqd's decision on who may log in with which key: the user must exist,
//! the account must be usable (not locked or expired), PermitRootLogin must
//! allow it, and the key must be in one of the user's authorized_keys
//! files, read with the user's rights and checked by StrictModes. Used by
//! every transport through the core's `AuthPolicy` trait.
//!
//! Nothing here blocks an async worker: the user database is read on
//! tokio's blocking pool and the files on a thread that has taken the
//! user's identity, each within [`LOOKUP_LIMIT`].

mod account;
mod keys_file;

use sshq_core::log_escape;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sshq_core::auth::{AuthPolicy, BoxFuture};
use sshq_core::ssh_key::PublicKey;

use crate::fs_identity::{as_identity_within, Identity};
pub use keys_file::MAX_KEYS_FILE;

/// How long a user lookup, or reading a user's key files, may take before
/// the key is refused (a hung LDAP server or NFS home must not hold logins).
pub const LOOKUP_LIMIT: Duration = Duration::from_secs(10);

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
    /// StrictModes: refuse key files others could have written.
    pub strict_modes: bool,
}

impl AuthPolicy for KeyPolicy {
    fn publickey_allowed<'a>(&'a self, user: &'a str, key: &'a PublicKey) -> BoxFuture<'a, bool> {
        Box::pin(async move { self.grant(user, key).await.is_some() })
    }

    fn touch_required<'a>(&'a self, user: &'a str, key: &'a PublicKey) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            self.grant(user, key)
                .await
                .is_none_or(|grant| grant.touch_required)
        })
    }

    fn max_auth_tries(&self) -> u32 {
        self.max_auth_tries
    }
}

impl KeyPolicy {
    /// The authorized_keys line that lets `user` in with `key`, if any.
    async fn grant(&self, user: &str, key: &PublicKey) -> Option<KeyGrant> {
        if !self.pubkey_authentication {
            return None;
        }
        let name = user.to_owned();
        let looked_up = tokio::time::timeout(
            LOOKUP_LIMIT,
            tokio::task::spawn_blocking(move || account::lookup(&name)),
        )
        .await;
        let account = match looked_up {
            Ok(Ok(Ok(Some(account)))) => account,
            Ok(Ok(Ok(None))) => {
                tracing::info!("Invalid user {}", log_escape::peer_text(user));
                return None;
            }
            Ok(Ok(Err(e))) => {
                tracing::error!("{e}");
                return None;
            }
            Ok(Err(e)) => {
                tracing::error!("cannot look up user {}: {e}", log_escape::peer_text(user));
                return None;
            }
            Err(_) => {
                tracing::error!(
                    "cannot look up user {}: no answer within {} s",
                    log_escape::peer_text(user),
                    LOOKUP_LIMIT.as_secs()
                );
                return None;
            }
        };
        if let Some(lines) = &account.refusal {
            for line in lines {
                tracing::info!("{line}");
            }
            return None;
        }
        let account = account.user;
        // Without root we cannot become anyone else.
        let me = nix::unistd::geteuid().as_raw();
        if me != 0 && account.uid != me {
            tracing::info!(
                "refusing {}: sshqd runs as uid {me} and can only log in its own user",
                log_escape::peer_text(user)
            );
            return None;
        }
        if account.uid == 0 {
            match self.root_login {
                RootLogin::Allowed => {}
                RootLogin::ForcedCommandsOnly | RootLogin::No => {
                    tracing::info!(
                        "ROOT LOGIN REFUSED for {}: PermitRootLogin",
                        log_escape::peer_text(user)
                    );
                    return None;
                }
            }
        }
        let files = (self.authorized_keys)(user, &account.home);
        let owner = keys_file::Owner {
            name: account.name.clone(),
            uid: account.uid,
            home: account.home.clone(),
        };
        let identity = Identity::User {
            name: account.name,
            uid: account.uid,
            gid: account.gid,
        };
        let strict_modes = self.strict_modes;
        let key = key.clone();
        let read = as_identity_within(&identity, None, LOOKUP_LIMIT, move || {
            Ok(files.iter().find_map(|file| {
                keys_file::read_keys_file(file, &owner, strict_modes)
                    .and_then(|text| text_grant(&text, file, &key))
            }))
        })
        .await;
        read.unwrap_or_else(|e| {
            tracing::error!("cannot read the authorized keys of {user}: {e}");
            None
        })
    }
}

/// What an authorized_keys line grants its key beyond logging in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyGrant {
    /// Security key signatures must show the authenticator was touched
    /// (false with the line's `no-touch-required`).
    pub touch_required: bool,
}

/// The only key option sshqd enforces so far: it relaxes nothing but the
/// touch of a security key, which the line's owner asked for.
const NO_TOUCH_REQUIRED: &str = "no-touch-required";

/// Whether the authorized_keys text `text` (of `file`) lists `key`.
pub fn text_authorizes(text: &str, file: &Path, key: &PublicKey) -> bool {
    text_grant(text, file, key).is_some()
}

/// The first line of the authorized_keys text `text` (of `file`) that lets
/// `key` in, as a [`KeyGrant`]. Lines we cannot parse are skipped. A
/// matching line with key options other than `no-touch-required`
/// (command=, from=, restrict, ...) is *not* honoured: sshqd does not
/// enforce those yet, and ignoring a restriction would grant more than the
/// owner meant.
pub fn text_grant(text: &str, file: &Path, key: &PublicKey) -> Option<KeyGrant> {
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
        let options = entry.config_opts();
        if options.iter().any(|option| option != NO_TOUCH_REQUIRED) {
            tracing::warn!(
                "{}:{}: key options other than {NO_TOUCH_REQUIRED} are not supported by sshqd \
                 yet; this key is not accepted",
                file.display(),
                number + 1
            );
            continue;
        }
        let touch_required = !options.iter().any(|option| option == NO_TOUCH_REQUIRED);
        return Some(KeyGrant { touch_required });
    }
    None
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
        let file = Path::new("authorized_keys");
        let text = format!("# comment\n\ngarbage line\n{OTHER}\n{ED}\n");
        assert!(text_authorizes(&text, file, &key(ED)));
        assert!(!text_authorizes(&format!("{OTHER}\n"), file, &key(ED)));
        // Options are not enforced, so such a line must not let the key in.
        let text = format!("command=\"/bin/true\" {ED}\n");
        assert!(!text_authorizes(&text, file, &key(ED)));
        let plain = KeyGrant {
            touch_required: true,
        };
        assert_eq!(text_grant(&format!("{ED}\n"), file, &key(ED)), Some(plain));
        // no-touch-required is the one option honoured; with another
        // option beside it the line is still refused.
        let text = format!("no-touch-required {ED}\n");
        let no_touch = KeyGrant {
            touch_required: false,
        };
        assert_eq!(text_grant(&text, file, &key(ED)), Some(no_touch));
        let text = format!("no-touch-required,command=\"/bin/true\" {ED}\n");
        assert_eq!(text_grant(&text, file, &key(ED)), None);
    }
}
