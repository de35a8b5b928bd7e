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
pub mod certificate;
pub mod key_options;
pub mod keys_command;
mod keys_file;
mod methods;
pub mod pam;
pub mod revoked;

use sshq_core::log_escape;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sshq_core::auth::{AuthPolicy, BoxFuture, UserCredential};
use sshq_core::ssh_key::{Certificate, PublicKey};

use super::config::ConnectionFacts;
use super::process::SessionUser;
use crate::fs_identity::{as_identity_within, Identity};
pub use account::group_names;
pub use key_options::KeyOptions;
pub use keys_file::{read_limited, MAX_KEYS_FILE};
pub use methods::LoginMethods;

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

/// The AuthorizedPrincipalsFile of a user, given the name and home.
pub type PrincipalsFile = Box<dyn Fn(&str, &Path) -> Option<PathBuf> + Send + Sync>;

/// The policy under the `Match` blocks a login matches; `None` when the
/// configuration cannot be applied (the login is then refused).
pub type MatchedPolicy = Box<dyn Fn(&ConnectionFacts) -> Option<KeyPolicy> + Send + Sync>;

/// The server's key-based login policy.
pub struct KeyPolicy {
    pub pubkey_authentication: bool,
    pub root_login: RootLogin,
    pub max_auth_tries: u32,
    /// AuthorizedKeysFile patterns, expanded per user by `authorized_keys_files`.
    pub authorized_keys: AuthorizedKeysFiles,
    /// StrictModes: refuse key files others could have written.
    pub strict_modes: bool,
    /// TrustedUserCAKeys: CAs trusted for every user's certificates.
    pub trusted_user_ca_keys: Option<PathBuf>,
    /// AuthorizedPrincipalsFile, expanded per user.
    pub principals_file: PrincipalsFile,
    /// RevokedKeys: a KRL or key list; keys and certificates it names are
    /// refused, and all are refused when it cannot be read.
    pub revoked_keys: Option<PathBuf>,
    /// Passwords and keyboard-interactive through PAM, the PAM account
    /// stage, and AuthenticationMethods.
    pub login_methods: LoginMethods,
    /// AuthorizedKeysCommand, AuthorizedPrincipalsCommand (tried after
    /// the files, as in sshd), and UseDNS for `Match Host`.
    pub lookups: keys_command::LoginLookups,
    /// With `Match` blocks: the policy for a login's user, groups and
    /// address (the settings above are then the global ones).
    pub matched: Option<MatchedPolicy>,
}

/// The account a login is for, once sshqd has found it usable.
struct Login {
    owner: keys_file::Owner,
    identity: Identity,
    /// The key or certificate must force a command (PermitRootLogin
    /// forced-commands-only, for root).
    forced_commands_only: bool,
    /// The policy under the `Match` blocks this login matches, if any.
    matched: Option<Box<KeyPolicy>>,
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

    // A key without a grant is not let in anyway; None answers "required"
    // so that a race with an edited authorized_keys errs on refusing.
    fn verify_required_from<'a>(
        &'a self,
        user: &'a str,
        key: &'a PublicKey,
        peer: Option<SocketAddr>,
    ) -> BoxFuture<'a, bool> {
        let peer = peer.map(|peer| peer.ip());
        Box::pin(async move {
            self.grant(user, key, peer)
                .await
                .is_none_or(|grant| grant.verify_required)
        })
    }

    fn certificate_allowed_from<'a>(
        &'a self,
        user: &'a str,
        certificate: &'a Certificate,
        peer: Option<SocketAddr>,
    ) -> BoxFuture<'a, bool> {
        let peer = peer.map(|peer| peer.ip());
        Box::pin(async move {
            self.certificate_grant(user, certificate, peer)
                .await
                .is_some()
        })
    }

    fn certificate_touch_required_from<'a>(
        &'a self,
        user: &'a str,
        certificate: &'a Certificate,
        peer: Option<SocketAddr>,
    ) -> BoxFuture<'a, bool> {
        let peer = peer.map(|peer| peer.ip());
        Box::pin(async move {
            self.certificate_grant(user, certificate, peer)
                .await
                .is_none_or(|grant| grant.touch_required)
        })
    }

    fn certificate_verify_required_from<'a>(
        &'a self,
        user: &'a str,
        certificate: &'a Certificate,
        peer: Option<SocketAddr>,
    ) -> BoxFuture<'a, bool> {
        let peer = peer.map(|peer| peer.ip());
        Box::pin(async move {
            self.certificate_grant(user, certificate, peer)
                .await
                .is_none_or(|grant| grant.verify_required)
        })
    }

    fn max_auth_tries(&self) -> u32 {
        self.max_auth_tries
    }

    fn methods<'a>(
        &'a self,
        user: &'a str,
        peer: Option<SocketAddr>,
    ) -> BoxFuture<'a, sshq_core::auth_methods::AuthMethods> {
        Box::pin(self.methods_for(user, peer))
    }

    fn password_allowed<'a>(
        &'a self,
        user: &'a str,
        password: &'a str,
        peer: Option<SocketAddr>,
    ) -> BoxFuture<'a, bool> {
        Box::pin(self.password_login(user, password, peer))
    }

    fn keyboard_interactive<'a>(
        &'a self,
        user: &'a str,
        peer: Option<SocketAddr>,
    ) -> BoxFuture<'a, Option<Box<dyn sshq_core::auth_methods::KbdInteractive>>> {
        Box::pin(self.keyboard_interactive_login(user, peer))
    }

    fn account_allowed<'a>(
        &'a self,
        user: &'a str,
        peer: Option<SocketAddr>,
    ) -> BoxFuture<'a, bool> {
        Box::pin(self.pam_account(user, peer))
    }
}

impl KeyPolicy {
    /// The options that let `user` in with `credential` from `peer`, if
    /// anything does: [`KeyPolicy::grant`] for a key,
    /// [`KeyPolicy::certificate_grant`] for a certificate.
    pub async fn credential_grant(
        &self,
        user: &str,
        credential: &UserCredential,
        peer: Option<IpAddr>,
    ) -> Option<KeyOptions> {
        match credential {
            UserCredential::Key(key) => self.grant(user, key, peer).await,
            UserCredential::Certificate(certificate) => {
                self.certificate_grant(user, certificate, peer).await
            }
        }
    }

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
        let login = self.login(user, peer).await?;
        let policy = login.policy(self);
        if policy.revoked(RevocationQuery::Key(key.clone())).await {
            tracing::info!(
                "refusing {} key {} of {}: it is revoked (RevokedKeys)",
                key.algorithm().as_str(),
                key.fingerprint(sshq_core::ssh_key::HashAlg::Sha256),
                log_escape::peer_text(user)
            );
            return None;
        }
        let files = (policy.authorized_keys)(user, &login.owner.home);
        let offered = key;
        let (owner, strict_modes, key) = (login.owner.clone(), policy.strict_modes, key.clone());
        let read = as_identity_within(&login.identity, None, LOOKUP_LIMIT, move || {
            Ok(files.iter().find_map(|file| {
                keys_file::read_keys_file(file, &owner, strict_modes)
                    .and_then(|text| text_grant(&text, file, &key, peer))
            }))
        })
        .await;
        let grant = read.unwrap_or_else(|e| {
            tracing::error!(
                "cannot read the authorized keys of {}: {e}",
                log_escape::peer_text(user)
            );
            None
        });
        let grant = match grant {
            Some(grant) => grant,
            None => {
                policy
                    .command_key_grant(&login.owner, offered, peer)
                    .await?
            }
        };
        login.admits(user, grant)
    }

    /// The options that let `user` in with a user certificate from `peer`,
    /// if its CA is trusted for them (see [`certificate`]).
    pub async fn certificate_grant(
        &self,
        user: &str,
        cert: &Certificate,
        peer: Option<IpAddr>,
    ) -> Option<KeyOptions> {
        let login = self.login(user, peer).await?;
        let policy = login.policy(self);
        let id = || {
            format!(
                "certificate ID {} (serial {}) of {}",
                log_escape::peer_text(cert.key_id()),
                cert.serial(),
                log_escape::peer_text(user)
            )
        };
        let own = certificate::check_certificate(cert, certificate::unix_now())
            .and_then(|()| certificate::certificate_options(cert, peer));
        let own = match own {
            Ok(own) => own,
            Err(refusal) => {
                tracing::info!("refusing {}: {refusal}", id());
                return None;
            }
        };
        if policy
            .revoked(RevocationQuery::Certificate(Box::new(cert.clone())))
            .await
        {
            tracing::info!(
                "refusing {}: it, its key or its CA is revoked (RevokedKeys)",
                id()
            );
            return None;
        }
        let Some(line) = policy.trusting_line(user, cert, peer, &login).await else {
            tracing::info!(
                "refusing {}: no trusted CA {} {} accepts it for this user",
                id(),
                cert.signature_key().algorithm().as_str(),
                cert.signature_key()
                    .fingerprint(sshq_core::ssh_key::HashAlg::Sha256)
            );
            return None;
        };
        match certificate::merge(&line, &own) {
            Ok(grant) => login.admits(user, grant),
            Err(refusal) => {
                tracing::info!("refusing {}: {refusal}", id());
                None
            }
        }
    }

    /// The options of what trusts the certificate's CA for `user`:
    /// TrustedUserCAKeys (with AuthorizedPrincipalsFile), else a
    /// `cert-authority` line of the user's authorized_keys.
    async fn trusting_line(
        &self,
        user: &str,
        cert: &Certificate,
        peer: Option<IpAddr>,
        login: &Login,
    ) -> Option<KeyOptions> {
        if let Some(path) = self.trusted_user_ca_keys.clone() {
            let ca = cert.signature_key().clone();
            let listed =
                read_root_file(path.clone(), move |text| certificate::ca_listed(text, &ca)).await;
            match listed {
                Some(true) => {
                    let principals = (self.principals_file)(user, &login.owner.home);
                    let grant = match principals {
                        // Without a principals file or command the
                        // certificate's own options apply alone (a
                        // no-touch-required extension holds), as in sshd.
                        None if self.lookups.principals.is_none() => cert
                            .valid_principals()
                            .iter()
                            .any(|p| p == user)
                            .then(|| KeyOptions {
                                touch_required: false,
                                ..KeyOptions::default()
                            }),
                        Some(file) => {
                            let (owner, strict, cert) =
                                (login.owner.clone(), self.strict_modes, cert.clone());
                            as_identity_within(&login.identity, None, LOOKUP_LIMIT, move || {
                                Ok(keys_file::read_keys_file(&file, &owner, strict).and_then(
                                    |text| certificate::principals_grant(&text, &file, &cert, peer),
                                ))
                            })
                            .await
                            .unwrap_or_else(|e| {
                                tracing::error!(
                                    "cannot read the principals of {}: {e}",
                                    log_escape::peer_text(user)
                                );
                                None
                            })
                        }
                        None => None,
                    };
                    let grant = match grant {
                        Some(grant) => Some(grant),
                        None => {
                            self.command_principals_grant(&login.owner, cert, peer)
                                .await
                        }
                    };
                    if grant.is_some() {
                        return grant;
                    }
                    tracing::info!(
                        "certificate ID {} names no principal accepted for {} (TrustedUserCAKeys)",
                        log_escape::peer_text(cert.key_id()),
                        log_escape::peer_text(user)
                    );
                }
                Some(false) => {}
                None => tracing::error!(
                    "TrustedUserCAKeys {} cannot be read: no CA is trusted through it",
                    path.display()
                ),
            }
        }
        let files = (self.authorized_keys)(user, &login.owner.home);
        let offered = cert;
        let (owner, strict, cert, user_name) = (
            login.owner.clone(),
            self.strict_modes,
            cert.clone(),
            user.to_string(),
        );
        let from_files = as_identity_within(&login.identity, None, LOOKUP_LIMIT, move || {
            Ok(files.iter().find_map(|file| {
                keys_file::read_keys_file(file, &owner, strict).and_then(|text| {
                    certificate::authorized_keys_ca_grant(&text, file, &cert, &user_name, peer)
                })
            }))
        })
        .await
        .unwrap_or_else(|e| {
            tracing::error!(
                "cannot read the authorized keys of {}: {e}",
                log_escape::peer_text(user)
            );
            None
        });
        match from_files {
            Some(grant) => Some(grant),
            None => {
                self.command_ca_grant(&login.owner, offered, user, peer)
                    .await
            }
        }
    }

    /// Whether RevokedKeys names the key or certificate; true as well when
    /// the file is set but cannot be read or parsed (sshd refuses every
    /// key then).
    async fn revoked(&self, query: RevocationQuery) -> bool {
        let Some(path) = self.revoked_keys.clone() else {
            return false;
        };
        let shown = path.display().to_string();
        let checked = tokio::time::timeout(
            LOOKUP_LIMIT,
            tokio::task::spawn_blocking(move || {
                revoked::RevokedKeys::load(&path).map(|list| match &query {
                    RevocationQuery::Key(key) => list.is_key_revoked(key.key_data()),
                    RevocationQuery::Certificate(cert) => list.is_certificate_revoked(cert),
                })
            }),
        )
        .await;
        match checked {
            Ok(Ok(Ok(revoked))) => revoked,
            Ok(Ok(Err(e))) => {
                tracing::error!("RevokedKeys {shown}: {e}; refusing every key until it is fixed");
                true
            }
            _ => {
                tracing::error!("RevokedKeys {shown} cannot be read; refusing every key");
                true
            }
        }
    }

    /// The account `user` names, if it exists, is usable, and may log in
    /// with a key at all (PubkeyAuthentication, PermitRootLogin).
    async fn login(&self, user: &str, peer: Option<IpAddr>) -> Option<Login> {
        if self.matched.is_none() && !self.pubkey_authentication {
            return None;
        }
        let AccountState::Usable(account) = self.account_state(user).await else {
            return None;
        };
        let matched = self.policy_for(user, Some(&account), peer).await.ok()?;
        let policy = matched.as_deref().unwrap_or(self);
        if !policy.pubkey_authentication {
            tracing::info!(
                "publickey refused for {}: PubkeyAuthentication no",
                log_escape::peer_text(user)
            );
            return None;
        }
        if account.uid == 0 && policy.root_login == RootLogin::No {
            tracing::info!(
                "ROOT LOGIN REFUSED for {}: PermitRootLogin",
                log_escape::peer_text(user)
            );
            return None;
        }
        Some(Login {
            forced_commands_only: account.uid == 0
                && policy.root_login == RootLogin::ForcedCommandsOnly,
            matched,
            owner: keys_file::Owner {
                name: account.name.clone(),
                uid: account.uid,
                home: account.home.clone(),
            },
            identity: Identity::User {
                name: account.name,
                uid: account.uid,
                gid: account.gid,
            },
        })
    }

    /// What the user database says of `user` (refusals and failures are
    /// logged here).
    async fn account_state(&self, user: &str) -> AccountState {
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
                return AccountState::Refused;
            }
            Ok(Ok(Err(e))) => {
                tracing::error!("{e}");
                return AccountState::Unknown;
            }
            Ok(Err(e)) => {
                tracing::error!("cannot look up user {}: {e}", log_escape::peer_text(user));
                return AccountState::Unknown;
            }
            Err(_) => {
                tracing::error!(
                    "cannot look up user {}: no answer within {} s",
                    log_escape::peer_text(user),
                    LOOKUP_LIMIT.as_secs()
                );
                return AccountState::Unknown;
            }
        };
        if let Some(lines) = &account.refusal {
            for line in lines {
                tracing::info!("{line}");
            }
            return AccountState::Refused;
        }
        let account = account.user;
        // Without root we cannot become anyone else.
        let me = nix::unistd::geteuid().as_raw();
        if me != 0 && account.uid != me {
            tracing::info!(
                "refusing {}: sshqd runs as uid {me} and can only log in its own user",
                log_escape::peer_text(user)
            );
            return AccountState::Refused;
        }
        AccountState::Usable(account)
    }

    /// The policy under the `Match` blocks a login of `user` (`account`,
    /// when it exists, for its groups) from `peer` matches: `Ok(None)`
    /// without Match blocks, `Err` when they cannot be applied (logged;
    /// the login is then refused).
    async fn policy_for(
        &self,
        user: &str,
        account: Option<&SessionUser>,
        peer: Option<IpAddr>,
    ) -> Result<Option<Box<KeyPolicy>>, ()> {
        let Some(matched) = &self.matched else {
            return Ok(None);
        };
        let groups = match account {
            Some(account) => {
                let (name, gid) = (account.name.clone(), account.gid);
                tokio::time::timeout(
                    LOOKUP_LIMIT,
                    tokio::task::spawn_blocking(move || account::group_names(&name, gid)),
                )
                .await
                .map_err(|_| ())?
                .map_err(|_| ())?
            }
            // An unknown user matches Match User, never Match Group (sshd).
            None => Vec::new(),
        };
        let facts = ConnectionFacts {
            user: user.to_string(),
            groups,
            address: peer,
            host: super::config::client_host(peer, self.lookups.use_dns).await,
            ..ConnectionFacts::default()
        };
        match matched(&facts) {
            Some(policy) => Ok(Some(Box::new(policy))),
            None => {
                tracing::error!(
                    "the Match blocks for {} cannot be applied: login refused",
                    log_escape::peer_text(user)
                );
                Err(())
            }
        }
    }
}

/// What the user database says of the account a login names.
enum AccountState {
    /// It exists and may log in at all (not locked or expired; a user
    /// sshqd can become).
    Usable(SessionUser),
    /// No such user, or one that may not log in (logged): every method
    /// fails, but passwords still go to PAM, so that timing tells nothing.
    Refused,
    /// The user database did not answer (logged): nothing is allowed.
    Unknown,
}

impl Login {
    /// The policy that decides this login: the `Match`ed one, or `base`.
    fn policy<'a>(&'a self, base: &'a KeyPolicy) -> &'a KeyPolicy {
        self.matched.as_deref().unwrap_or(base)
    }

    /// `grant`, unless PermitRootLogin forced-commands-only wants a
    /// forced command it lacks.
    fn admits(&self, user: &str, grant: KeyOptions) -> Option<KeyOptions> {
        if self.forced_commands_only && grant.command.is_none() {
            tracing::info!(
                "ROOT LOGIN REFUSED for {}: PermitRootLogin forced-commands-only, and the key has no command=",
                log_escape::peer_text(user)
            );
            return None;
        }
        Some(grant)
    }
}

/// What RevokedKeys is asked about.
enum RevocationQuery {
    Key(PublicKey),
    Certificate(Box<Certificate>),
}

/// Reads a file sshqd itself owns (TrustedUserCAKeys) on the blocking
/// pool, within [`LOOKUP_LIMIT`], and answers `check` on its text; `None`
/// when it cannot be read.
async fn read_root_file<T: Send + 'static>(
    path: PathBuf,
    check: impl FnOnce(&str) -> T + Send + 'static,
) -> Option<T> {
    let read = tokio::time::timeout(
        LOOKUP_LIMIT,
        tokio::task::spawn_blocking(move || {
            keys_file::read_limited(&path).map(|text| check(&text))
        }),
    )
    .await;
    match read {
        Ok(Ok(Ok(answer))) => Some(answer),
        _ => None,
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
        // A CA's line trusts its certificates, never the CA key itself.
        if options.cert_authority || options.principals.is_some() {
            tracing::info!("{}: the key is a cert-authority, not a user key", at());
            continue;
        }
        if !line_admits(&options, peer, &at) {
            continue;
        }
        return Some(options);
    }
    None
}

/// Whether a line's `from=` lets the client at `peer` in and its
/// `expiry-time=` has not passed (each refusal logged at `at`).
fn line_admits(options: &KeyOptions, peer: Option<IpAddr>, at: &dyn Fn() -> String) -> bool {
    if let Some(patterns) = &options.from {
        if !key_options::from_allows(patterns, peer) {
            tracing::info!(
                "{}: key from {} refused: not a permitted address (from=\"{}\")",
                at(),
                peer.map_or_else(|| "an unknown address".to_string(), |ip| ip.to_string()),
                log_escape::peer_text(patterns)
            );
            return false;
        }
    }
    if let Some(expires_at) = options.expires_at {
        let now = i64::try_from(certificate::unix_now()).unwrap_or(i64::MAX);
        if now >= expires_at {
            tracing::info!("{}: key refused: its expiry-time has passed", at());
            return false;
        }
    }
    true
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
        // verify-required comes back with the grant (a security key must
        // verify the user).
        let text = format!("verify-required {ED}\n");
        let grant = text_grant(&text, file, &key(ED), None).unwrap();
        assert!(grant.verify_required && grant.touch_required);
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
