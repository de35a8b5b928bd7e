//! User authentication, as both transports need it: the keys a client signs
//! with, and the server's decision on who may log in with which key.
//!
//! Signature *formats* are SSH's (RFC 4253 §6.6 blobs), so a key in an
//! ssh-agent and a key in a file look the same to the transports.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ssh_key::{Certificate, HashAlg, PrivateKey, PublicKey};

/// A boxed future, for the object-safe signing trait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a signature could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("signing with {key} failed: {message}")]
    Failed { key: String, message: String },
    #[error("the agent refused to sign with {key}")]
    AgentRefused { key: String },
}

/// A key the client can authenticate with: a private key loaded from a file,
/// or one held by ssh-agent.
pub trait UserKey: Send + Sync {
    fn public_key(&self) -> &PublicKey;

    /// Signs `data`, returning the SSH signature blob
    /// (`string algorithm || string signature`). For RSA keys `rsa_hash`
    /// chooses rsa-sha2-256 or rsa-sha2-512 (None: the old ssh-rsa/SHA-1).
    fn sign<'a>(
        &'a self,
        data: &'a [u8],
        rsa_hash: Option<HashAlg>,
    ) -> BoxFuture<'a, Result<Vec<u8>, SignError>>;

    /// How to name the key in messages, e.g. its file name or agent comment.
    fn description(&self) -> String;

    /// The OpenSSH certificate to offer instead of the bare key, if any:
    /// the request then names the certificate, and the key signs it.
    fn certificate(&self) -> Option<&Certificate> {
        None
    }
}

/// A key offered with an OpenSSH certificate for it (from `-cert.pub`
/// beside an identity file, CertificateFile, or the agent).
pub struct CertifiedKey {
    key: Arc<dyn UserKey>,
    certificate: Certificate,
    /// Where the certificate came from, for messages.
    source: String,
}

impl CertifiedKey {
    /// `None` when the certificate does not certify `key`.
    pub fn new(key: Arc<dyn UserKey>, certificate: Certificate, source: String) -> Option<Self> {
        (certificate.public_key() == key.public_key().key_data()).then_some(CertifiedKey {
            key,
            certificate,
            source,
        })
    }
}

impl UserKey for CertifiedKey {
    fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }

    fn sign<'a>(
        &'a self,
        data: &'a [u8],
        rsa_hash: Option<HashAlg>,
    ) -> BoxFuture<'a, Result<Vec<u8>, SignError>> {
        self.key.sign(data, rsa_hash)
    }

    fn description(&self) -> String {
        self.source.clone()
    }

    fn certificate(&self) -> Option<&Certificate> {
        Some(&self.certificate)
    }
}

/// A private key read from a file.
pub struct FileKey {
    key: Arc<PrivateKey>,
    public: PublicKey,
    path: String,
}

impl FileKey {
    pub fn new(key: PrivateKey, path: impl Into<String>) -> Self {
        let public = key.public_key().clone();
        FileKey {
            key: Arc::new(key),
            public,
            path: path.into(),
        }
    }

    pub fn private_key(&self) -> &Arc<PrivateKey> {
        &self.key
    }
}

impl UserKey for FileKey {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign<'a>(
        &'a self,
        data: &'a [u8],
        rsa_hash: Option<HashAlg>,
    ) -> BoxFuture<'a, Result<Vec<u8>, SignError>> {
        Box::pin(async move { sign_with_private_key(&self.key, data, rsa_hash, &self.path) })
    }

    fn description(&self) -> String {
        self.path.clone()
    }
}

/// Signs with a private key held in memory and encodes the SSH blob.
pub fn sign_with_private_key(
    key: &PrivateKey,
    data: &[u8],
    rsa_hash: Option<HashAlg>,
    name: &str,
) -> Result<Vec<u8>, SignError> {
    use signature::Signer;
    use ssh_key::encoding::Encode;
    use ssh_key::private::KeypairData;
    use ssh_key::Signature;

    let failed = |e: &dyn std::fmt::Display| SignError::Failed {
        key: name.to_string(),
        message: e.to_string(),
    };
    let signature: Signature = match key.key_data() {
        KeypairData::Rsa(rsa) => (rsa, rsa_hash).try_sign(data).map_err(|e| failed(&e))?,
        _ => key.try_sign(data).map_err(|e| failed(&e))?,
    };
    signature.encode_vec().map_err(|e| failed(&e))
}

/// The server's decision about user keys. Implemented by sshqd from
/// authorized_keys and its configuration; the transports call it.
pub trait AuthPolicy: Send + Sync + 'static {
    /// May `user` log in with `key`? Asked when the client offers a key and
    /// again before a valid signature is accepted.
    ///
    /// Transports await this on their async tasks. Answering usually needs
    /// the user database and the user's files, which can block (NSS, a FIFO,
    /// a hung NFS home): implementations do that work off the async
    /// workers, with a time limit, so that one login never stalls another.
    fn publickey_allowed<'a>(&'a self, user: &'a str, key: &'a PublicKey) -> BoxFuture<'a, bool>;

    /// [`AuthPolicy::publickey_allowed`] for a client at `peer`, which a
    /// key's authorized_keys line may restrict (`from=`). Transports that
    /// know the client's address ask this; the default ignores it.
    fn publickey_allowed_from<'a>(
        &'a self,
        user: &'a str,
        key: &'a PublicKey,
        _peer: Option<std::net::SocketAddr>,
    ) -> BoxFuture<'a, bool> {
        self.publickey_allowed(user, key)
    }

    /// Must a security key (`sk-*`) signature by `key` carry the
    /// user-presence flag (the authenticator was touched)? Yes, unless the
    /// authorized_keys line that lets `key` in says `no-touch-required`, as
    /// in sshd. Asked only for an sk signature without that flag, after
    /// [`AuthPolicy::publickey_allowed`] said yes. The default requires the
    /// touch, so a policy that knows nothing of options stays safe.
    fn touch_required<'a>(&'a self, _user: &'a str, _key: &'a PublicKey) -> BoxFuture<'a, bool> {
        Box::pin(async { true })
    }

    /// [`AuthPolicy::touch_required`] for a client at `peer`: decided by
    /// the same authorized_keys line that let the key in from there.
    fn touch_required_from<'a>(
        &'a self,
        user: &'a str,
        key: &'a PublicKey,
        _peer: Option<std::net::SocketAddr>,
    ) -> BoxFuture<'a, bool> {
        self.touch_required(user, key)
    }

    /// Must a security key (`sk-*`) signature by `key` carry the
    /// user-verification flag (0x04: the authenticator checked a PIN or a
    /// biometric)? Yes when the authorized_keys line that lets `key` in
    /// from `peer` says `verify-required`, as in sshd. Asked only for an sk
    /// signature without that flag, after the key was allowed. The default
    /// is no: without the option sshd asks for no verification either.
    fn verify_required_from<'a>(
        &'a self,
        _user: &'a str,
        _key: &'a PublicKey,
        _peer: Option<std::net::SocketAddr>,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async { false })
    }

    /// May `user`, connecting from `peer`, log in with an OpenSSH user
    /// certificate (PROTOCOL.certkeys)? The transport has checked only
    /// that the client holds the certified key; the policy checks all the
    /// rest: a trusted CA's signature, the validity window, the principals,
    /// the critical options and revocation. The default trusts no CA.
    fn certificate_allowed_from<'a>(
        &'a self,
        _user: &'a str,
        _certificate: &'a Certificate,
        _peer: Option<std::net::SocketAddr>,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async { false })
    }

    /// [`AuthPolicy::touch_required_from`] for a certificate: no, only if
    /// the certificate carries the `no-touch-required` extension and the
    /// line that trusts its CA does not take it back.
    fn certificate_touch_required_from<'a>(
        &'a self,
        _user: &'a str,
        _certificate: &'a Certificate,
        _peer: Option<std::net::SocketAddr>,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async { true })
    }

    /// [`AuthPolicy::verify_required_from`] for a certificate: yes when
    /// the certificate carries the `verify-required` critical option or
    /// the line that trusts its CA says `verify-required` (either one
    /// suffices, as sshd merges them).
    fn certificate_verify_required_from<'a>(
        &'a self,
        _user: &'a str,
        _certificate: &'a Certificate,
        _peer: Option<std::net::SocketAddr>,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async { false })
    }

    /// The most authentication attempts one connection may make.
    fn max_auth_tries(&self) -> u32;

    /// The methods `user`, connecting from `peer`, may use, and the
    /// sequences (AuthenticationMethods) that complete a login. Asked once
    /// per connection, at its first request. The default: public keys.
    fn methods<'a>(
        &'a self,
        _user: &'a str,
        _peer: Option<std::net::SocketAddr>,
    ) -> BoxFuture<'a, crate::auth_methods::AuthMethods> {
        Box::pin(async { crate::auth_methods::AuthMethods::publickey_only() })
    }

    /// Is `password` the password of `user` (PasswordAuthentication; PAM's
    /// auth stage in sshqd)? The default refuses every password.
    fn password_allowed<'a>(
        &'a self,
        _user: &'a str,
        _password: &'a str,
        _peer: Option<std::net::SocketAddr>,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async { false })
    }

    /// Starts a keyboard-interactive conversation for `user`
    /// (KbdInteractiveAuthentication); `None` when there is none to have.
    fn keyboard_interactive<'a>(
        &'a self,
        _user: &'a str,
        _peer: Option<std::net::SocketAddr>,
    ) -> BoxFuture<'a, Option<Box<dyn crate::auth_methods::KbdInteractive>>> {
        Box::pin(async { None })
    }

    /// The account check made once every required method has succeeded,
    /// before USERAUTH_SUCCESS (PAM's account stage in sshqd: expiry,
    /// nologin, access rules), whatever the methods were. A refusal counts
    /// as a failed attempt, as in sshd. The default allows.
    fn account_allowed<'a>(
        &'a self,
        _user: &'a str,
        _peer: Option<std::net::SocketAddr>,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async { true })
    }
}

/// What a user logged in with: a plain public key, or an OpenSSH
/// certificate for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCredential {
    Key(PublicKey),
    Certificate(Box<Certificate>),
}

impl UserCredential {
    /// The key whose possession the client proved.
    pub fn public_key(&self) -> PublicKey {
        match self {
            UserCredential::Key(key) => key.clone(),
            UserCredential::Certificate(certificate) => {
                PublicKey::from(certificate.public_key().clone())
            }
        }
    }
}

/// The user-presence flag of a security key signature (PROTOCOL.u2f):
/// the authenticator was touched.
pub const SK_USER_PRESENCE: u8 = 0x01;
/// The user-verification flag of a security key signature: the
/// authenticator checked a PIN or a biometric.
pub const SK_USER_VERIFICATION: u8 = 0x04;

/// Why a security key (`sk-*`) signature that verifies is still refused,
/// in sshd's words (auth2-pubkey.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecurityKeyRefusal {
    #[error("user presence (authenticator touch) requirement not met")]
    NoUserPresence,
    #[error("user verification requirement not met")]
    NoUserVerification,
}

/// The checks sshd makes on a verified security key signature whose
/// authenticator `flags` came with it, for `credential`, which the policy
/// already allowed: the touch unless waived (`no-touch-required`), then
/// user verification when asked for (`verify-required`). The policy is
/// asked only about a flag that is missing. Both transports use this, so
/// they refuse the same signatures.
pub async fn check_security_key_flags(
    policy: &dyn AuthPolicy,
    user: &str,
    credential: &UserCredential,
    flags: u8,
    peer: Option<std::net::SocketAddr>,
) -> Result<(), SecurityKeyRefusal> {
    if flags & SK_USER_PRESENCE == 0 {
        let required = match credential {
            UserCredential::Key(key) => policy.touch_required_from(user, key, peer).await,
            UserCredential::Certificate(certificate) => {
                policy
                    .certificate_touch_required_from(user, certificate, peer)
                    .await
            }
        };
        if required {
            return Err(SecurityKeyRefusal::NoUserPresence);
        }
    }
    if flags & SK_USER_VERIFICATION == 0 {
        let required = match credential {
            UserCredential::Key(key) => policy.verify_required_from(user, key, peer).await,
            UserCredential::Certificate(certificate) => {
                policy
                    .certificate_verify_required_from(user, certificate, peer)
                    .await
            }
        };
        if required {
            return Err(SecurityKeyRefusal::NoUserVerification);
        }
    }
    Ok(())
}

/// sshd's error line for a security key signature refused for its flags:
/// "public key ED25519-SK SHA256:... signature for USER from ADDR port N
/// rejected: user presence (authenticator touch) requirement not met".
/// `user` is logged as given: the caller escapes peer text.
pub fn security_key_refusal_line(
    credential: &UserCredential,
    user: &str,
    peer: Option<std::net::SocketAddr>,
    refusal: SecurityKeyRefusal,
) -> String {
    let (key_type, fingerprint) = match credential {
        UserCredential::Key(key) => (
            crate::known_hosts::key_type_name(key),
            key.fingerprint(HashAlg::Sha256),
        ),
        UserCredential::Certificate(certificate) => (
            crate::known_hosts::key_type_name(&PublicKey::from(ssh_key::public::KeyData::from(
                certificate.as_ref().clone(),
            ))),
            certificate.public_key().fingerprint(HashAlg::Sha256),
        ),
    };
    let from = match peer {
        Some(peer) => format!("{} port {}", peer.ip(), peer.port()),
        None => "UNKNOWN port 65535".to_string(),
    };
    format!(
        "public key {key_type} {fingerprint} signature for {user} from {from} rejected: {refusal}"
    )
}

/// The client's decision about the server's host key, made by the host-key
/// policy (known_hosts, StrictHostKeyChecking). It may prompt on the
/// terminal, so transports call it where blocking is allowed.
pub trait ServerKeyVerifier: Send + Sync + 'static {
    /// `true` to proceed with this key; `false` ends the connection with
    /// "Host key verification failed." (the messages were already shown).
    fn verify(&self, key: &PublicKey) -> bool;

    /// Whether known_hosts has an `@cert-authority` line for this host, so
    /// that a host certificate could be trusted (over TCP the client then
    /// offers the certificate host key algorithms).
    fn trusts_host_certificates(&self) -> bool {
        false
    }

    /// Whether to ask the server for its host certificate before deciding
    /// on `key`: the host has `@cert-authority` lines and `key` itself is
    /// neither known nor revoked (over QUIC this costs a round trip, so it
    /// is asked only when the answer matters).
    fn wants_certificate(&self, _key: &PublicKey) -> bool {
        false
    }

    /// Checks a host certificate as ssh does: trusted when an
    /// `@cert-authority` line for the host names its CA and it is a valid
    /// host certificate for the host now; otherwise its plain key is
    /// checked with [`ServerKeyVerifier::verify`], as OpenSSH falls back.
    fn verify_certificate(&self, certificate: &Certificate) -> bool {
        self.verify(&PublicKey::from(certificate.public_key().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::public::{Ed25519PublicKey, KeyData, SkEd25519};

    /// A policy whose authorized_keys line for every key says
    /// `no-touch-required` and/or `verify-required` as set.
    struct Line {
        touch_required: bool,
        verify_required: bool,
    }

    impl AuthPolicy for Line {
        fn publickey_allowed<'a>(&'a self, _: &'a str, _: &'a PublicKey) -> BoxFuture<'a, bool> {
            Box::pin(async { true })
        }
        fn touch_required<'a>(&'a self, _: &'a str, _: &'a PublicKey) -> BoxFuture<'a, bool> {
            let required = self.touch_required;
            Box::pin(async move { required })
        }
        fn verify_required_from<'a>(
            &'a self,
            _: &'a str,
            _: &'a PublicKey,
            _: Option<std::net::SocketAddr>,
        ) -> BoxFuture<'a, bool> {
            let required = self.verify_required;
            Box::pin(async move { required })
        }
        fn max_auth_tries(&self) -> u32 {
            6
        }
    }

    fn sk_key() -> UserCredential {
        let public = SkEd25519::new(Ed25519PublicKey([3u8; 32]), "ssh:");
        UserCredential::Key(PublicKey::from(KeyData::SkEd25519(public)))
    }

    fn check(line: &Line, flags: u8) -> Result<(), SecurityKeyRefusal> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(check_security_key_flags(
            line,
            "alice",
            &sk_key(),
            flags,
            None,
        ))
    }

    #[test]
    fn flags_are_checked_as_sshd_checks_them() {
        let plain = Line {
            touch_required: true,
            verify_required: false,
        };
        assert_eq!(check(&plain, SK_USER_PRESENCE), Ok(()));
        assert_eq!(check(&plain, 0), Err(SecurityKeyRefusal::NoUserPresence));
        let no_touch = Line {
            touch_required: false,
            verify_required: false,
        };
        assert_eq!(check(&no_touch, 0), Ok(()));
        let verify = Line {
            touch_required: true,
            verify_required: true,
        };
        assert_eq!(
            check(&verify, SK_USER_PRESENCE),
            Err(SecurityKeyRefusal::NoUserVerification)
        );
        // The touch is checked first, as in sshd.
        assert_eq!(check(&verify, 0), Err(SecurityKeyRefusal::NoUserPresence));
        assert_eq!(
            check(&verify, SK_USER_PRESENCE | SK_USER_VERIFICATION),
            Ok(())
        );
    }

    #[test]
    fn refusals_are_logged_in_sshds_words() {
        let peer = "192.0.2.7:2222".parse().ok();
        let line =
            security_key_refusal_line(&sk_key(), "alice", peer, SecurityKeyRefusal::NoUserPresence);
        assert!(line.starts_with("public key ED25519-SK SHA256:"), "{line}");
        assert!(
            line.ends_with(
                " signature for alice from 192.0.2.7 port 2222 rejected: \
                 user presence (authenticator touch) requirement not met"
            ),
            "{line}"
        );
    }
}
