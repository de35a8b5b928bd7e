//! User authentication, as both transports need it: the keys a client signs
//! with, and the server's decision on who may log in with which key.
//!
//! Signature *formats* are SSH's (RFC 4253 §6.6 blobs), so a key in an
//! ssh-agent and a key in a file look the same to the transports.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ssh_key::{HashAlg, PrivateKey, PublicKey};

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

    /// The most authentication attempts one connection may make.
    fn max_auth_tries(&self) -> u32;
}

/// The client's decision about the server's host key, made by the host-key
/// policy (known_hosts, StrictHostKeyChecking). It may prompt on the
/// terminal, so transports call it where blocking is allowed.
pub trait ServerKeyVerifier: Send + Sync + 'static {
    /// `true` to proceed with this key; `false` ends the connection with
    /// "Host key verification failed." (the messages were already shown).
    fn verify(&self, key: &PublicKey) -> bool;
}
