//! User authentication over QUIC: RFC 4252 publickey requests on the
//! control stream, signed over this connection's TLS exporter value.
//!
//! The client never sends an unsigned "query" first: it signs with a key at
//! once, so a login costs no round trip beyond the QUIC handshake when the
//! first key is right. The server checks the signature, then asks its
//! policy (authorized_keys, PermitRootLogin) whether the key may log in.

use sshq_core::auth::{AuthPolicy, UserKey};
use sshq_core::ssh_key::{self, Algorithm, HashAlg, PublicKey, Signature};

use crate::wire::{userauth_signed_data, UserauthRequest};

/// The only service sshq authenticates for.
pub const SERVICE: &str = "ssh-connection";

/// Builds a signed request for `key`, bound to `exporter`.
pub async fn signed_request(
    key: &dyn UserKey,
    user: &str,
    exporter: &[u8],
) -> Result<UserauthRequest, String> {
    let public = key.public_key();
    // RSA keys sign with SHA-512 (rsa-sha2-512); SHA-1 ssh-rsa is never used.
    let (algorithm, rsa_hash) = match public.algorithm() {
        Algorithm::Rsa { .. } => ("rsa-sha2-512".to_string(), Some(HashAlg::Sha512)),
        other => (other.as_str().to_string(), None),
    };
    let blob = public
        .to_bytes()
        .map_err(|e| format!("cannot encode {}: {e}", key.description()))?;
    let data = userauth_signed_data(exporter, user, SERVICE, &algorithm, &blob);
    let signature = key.sign(&data, rsa_hash).await.map_err(|e| e.to_string())?;
    Ok(UserauthRequest {
        user: user.to_string(),
        service: SERVICE.to_string(),
        algorithm,
        public_key: blob,
        signature,
    })
}

/// Why a request was refused (logged by the server, never sent: the client
/// only learns "failure", as in SSH).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("service {0:?} is not offered")]
    Service(String),
    #[error("the public key cannot be read: {0}")]
    BadKey(String),
    #[error("algorithm {algorithm:?} does not fit a {key} key")]
    Algorithm { algorithm: String, key: String },
    #[error("the signature cannot be read: {0}")]
    BadSignature(String),
    #[error("the signature does not verify")]
    WrongSignature,
    #[error("key not authorized for {0}")]
    NotAuthorized(String),
}

/// Checks a request: the signature over this connection's exporter value,
/// then the policy. Returns the key that logged in.
pub async fn verify(
    request: &UserauthRequest,
    exporter: &[u8],
    policy: &dyn AuthPolicy,
) -> Result<PublicKey, Refusal> {
    use signature::Verifier;
    use ssh_key::encoding::Decode;

    if request.service != SERVICE {
        return Err(Refusal::Service(request.service.clone()));
    }
    let key =
        PublicKey::from_bytes(&request.public_key).map_err(|e| Refusal::BadKey(e.to_string()))?;
    if !algorithm_fits(&request.algorithm, &key.algorithm()) {
        return Err(Refusal::Algorithm {
            algorithm: request.algorithm.clone(),
            key: key.algorithm().as_str().to_string(),
        });
    }
    let signature = Signature::decode(&mut request.signature.as_slice())
        .map_err(|e| Refusal::BadSignature(e.to_string()))?;
    if signature.algorithm().as_str() != request.algorithm {
        return Err(Refusal::Algorithm {
            algorithm: signature.algorithm().as_str().to_string(),
            key: request.algorithm.clone(),
        });
    }
    let data = userauth_signed_data(
        exporter,
        &request.user,
        &request.service,
        &request.algorithm,
        &request.public_key,
    );
    Verifier::verify(key.key_data(), &data, &signature).map_err(|_| Refusal::WrongSignature)?;
    if !policy.publickey_allowed(&request.user, &key).await {
        return Err(Refusal::NotAuthorized(request.user.clone()));
    }
    Ok(key)
}

/// Whether a request's algorithm name may be used with the key; RSA must use
/// SHA-2 signatures.
fn algorithm_fits(name: &str, key: &Algorithm) -> bool {
    match key {
        Algorithm::Rsa { .. } => name == "rsa-sha2-256" || name == "rsa-sha2-512",
        other => name == other.as_str(),
    }
}
