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
pub mod key_options;
mod keys_file;

use sshq_core::log_escape;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sshq_core::auth::{AuthPolicy, BoxFuture};
use sshq_core::ssh_key::PublicKey;

use crate::fs_identity::{as_identity_within, Identity};
pub use key_options::KeyOptions;
pub use keys_file::MAX_KEYS_FILE;

/// How long a user lookup, or reading a user's key files, may take before
/// the key is refused (a hung LDAP server or NFS home must not hold logins).
pub const LOOKUP_LIMIT: Duration = Duration::from_secs(10);

/// PermitRootLogin, as far as public keys are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootLogin {
    /// yes, prohibit-password, without-password: keys are fine.
    Allowed,
    /// forced-commands-only: only keys whose line has command=.
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
        // Without the client's address, a line with from= lets no key in.
        self.publickey_allowed_from(user, key, None)
    }

    fn publickey_allowed_from<'a>(
        &'a self,
        user: &'a str,
        key: &'a PublicKey,
        peer: Option<SocketAddr>,
    ) -> BoxFuture<'a, bool> {
        let peer = peer.map(|peer| peer.ip());
        Box::pin(async move { self.grant(user, key, peer).await.is_some() })
    }

    fn touch_required<'a>(&'a self, user: &'a str, key: &'a PublicKey) -> BoxFuture<'a, bool> {
        self.touch_required_from(user, key, None)
    }

    fn touch_required_from<'a>(
        &'a self,
        user: &'a str,
        key: &'a PublicKey,
        peer: Option<SocketAddr>,
    ) -> BoxFuture<'a, bool> {
        let peer = peer.map(|peer| peer.ip());
        Box::pin(async move {
            self.grant(user, key, peer)
                .await
                .is_none_or(|grant| grant.touch_required)
        })
    }

    fn max_auth_tries(&self) -> u32 {
        self.max_auth_tries
    }
}

impl KeyPolicy {
    /// The options of the authorized_keys line that lets `user` in with
    /// `key` from `peer`, if one does. Asked at login, and again for the
    /// sessions of a connection that logged in with it (as sshd applies
    /// the options of the line that matched).
    pub async fn grant(
        &self,
        user: &str,
        key: &PublicKey,
        peer: Option<IpAddr>,
    ) -> Option<KeyOptions> {
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
        let forced_commands_only =
            account.uid == 0 && self.root_login == RootLogin::ForcedCommandsOnly;
        if account.uid == 0 {
            match self.root_login {
                RootLogin::Allowed | RootLogin::ForcedCommandsOnly => {}
                RootLogin::No => {
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
                    .and_then(|text| text_grant(&text, file, &key, peer))
            }))
        })
        .await;
        let grant = read.unwrap_or_else(|e| {
            tracing::error!("cannot read the authorized keys of {user}: {e}");
            None
        })?;
        if forced_commands_only && grant.command.is_none() {
            tracing::info!(
                "ROOT LOGIN REFUSED for {}: PermitRootLogin forced-commands-only, and the key has no command=",
                log_escape::peer_text(user)
            );
            return None;
        }
        Some(grant)
    }
}

/// Whether the authorized_keys text `text` (of `file`) lists `key`, for a
/// client whose address is unknown.
pub fn text_authorizes(text: &str, file: &Path, key: &PublicKey) -> bool {
    text_grant(text, file, key, None).is_some()
}

/// The options of the first line of the authorized_keys text `text` (of
/// `file`) that lets `key` in from `peer`. Lines that do not parse, or
/// carry an option sshqd does not enforce, are skipped with a log line;
/// a line whose `from=` the client does not match, or whose
/// `expiry-time=` has passed, lets nothing in either.
pub fn text_grant(
    text: &str,
    file: &Path,
    key: &PublicKey,
    peer: Option<IpAddr>,
) -> Option<KeyOptions> {
    // The key's base64 blob, to tell its own line among bad ones: made
    // once, on the first bad line.
    let mut blob: Option<String> = None;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", file.display(), number + 1);
        let (options, listed) = match key_options::parse_line(line) {
            Ok(parsed) => parsed,
            Err(key_options::LineError::NotAKey) => continue,
            Err(e) => {
                // Only the line of the key in question is worth a word.
                let blob = blob.get_or_insert_with(|| key_blob(key));
                if line.contains(blob.as_str()) {
                    tracing::warn!("{}: bad key options: {e}", at());
                }
                continue;
            }
        };
        if listed.key_data() != key.key_data() {
            continue;
        }
        if let Some(patterns) = &options.from {
            if !key_options::from_allows(patterns, peer) {
                tracing::info!(
                    "{}: key from {} refused: not a permitted address (from=\"{}\")",
                    at(),
                    peer.map_or_else(|| "an unknown address".to_string(), |ip| ip.to_string()),
                    log_escape::peer_text(patterns)
                );
                continue;
            }
        }
        if let Some(expires_at) = options.expires_at {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| {
                    i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
                });
            if now >= expires_at {
                tracing::info!("{}: key refused: its expiry-time has passed", at());
                continue;
            }
        }
        return Some(options);
    }
    None
}

/// The key's base64 blob, to find its line among the others.
fn key_blob(key: &PublicKey) -> String {
    key.to_openssh()
        .ok()
        .and_then(|line| line.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_default()
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
        let plain = KeyOptions::default();
        assert_eq!(
            text_grant(&format!("{ED}\n"), file, &key(ED), None),
            Some(plain)
        );
        let text = format!("no-touch-required {ED}\n");
        let grant = text_grant(&text, file, &key(ED), None).unwrap();
        assert!(!grant.touch_required);
        // Honoured options come back with the grant.
        let text = format!("command=\"/bin/true\",no-pty {ED}\n");
        let grant = text_grant(&text, file, &key(ED), None).unwrap();
        assert_eq!(grant.command.as_deref(), Some("/bin/true"));
        assert!(!grant.pty);
        // An option sshqd does not enforce: the line lets nothing in, and a
        // later plain line for the same key still does.
        let text = format!("permitopen=\"x:1\" {ED}\n");
        assert_eq!(text_grant(&text, file, &key(ED), None), None);
        let text = format!("permitopen=\"x:1\" {ED}\n{ED}\n");
        assert_eq!(
            text_grant(&text, file, &key(ED), None),
            Some(KeyOptions::default())
        );
    }

    #[test]
    fn from_and_expiry_time() {
        let file = Path::new("authorized_keys");
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let text = format!("from=\"10.0.0.0/8\" {ED}\n");
        assert_eq!(text_grant(&text, file, &key(ED), Some(local)), None);
        assert_eq!(text_grant(&text, file, &key(ED), None), None);
        let text = format!("from=\"127.0.0.1\" {ED}\n");
        assert!(text_grant(&text, file, &key(ED), Some(local)).is_some());
        let text = format!("expiry-time=\"20200101\" {ED}\n");
        assert_eq!(text_grant(&text, file, &key(ED), None), None);
        let text = format!("expiry-time=\"29990101\" {ED}\n");
        assert!(text_grant(&text, file, &key(ED), None).is_some());
    }
}
