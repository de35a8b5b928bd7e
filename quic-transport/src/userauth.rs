//! User authentication over QUIC: RFC 4252 publickey requests on the
//! control stream, signed over this connection's TLS exporter value.
//!
//! The client never sends an unsigned "query" first: it signs with a key at
//! once, so a login costs no round trip beyond the QUIC handshake when the
//! first key is right. The server checks the signature, then asks its
//! policy (authorized_keys, PermitRootLogin) whether the key may log in.

use sshq_core::auth::{
    check_security_key_flags, security_key_refusal_line, AuthPolicy, SecurityKeyRefusal, SignError,
    UserCredential, UserKey,
};
use sshq_core::ssh_key::{self, Algorithm, Certificate, HashAlg, PublicKey, Signature};

use crate::wire::{userauth_signed_data, EncodeError, UserauthRequest};

/// The only service sshq authenticates for.
pub const SERVICE: &str = "ssh-connection";

/// Why the client could not build a request with one of its keys (the key
/// is then skipped, as ssh skips a key it cannot use).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("cannot encode {key}: {source}")]
    PublicKey { key: String, source: ssh_key::Error },
    #[error("cannot encode the signed data: {0}")]
    SignedData(#[from] EncodeError),
    #[error("{0}")]
    Sign(#[from] SignError),
}

/// Builds a signed request for `key`, bound to `exporter`: for a key with
/// a certificate, the request names the certificate (draft §7.5).
pub async fn signed_request(
    key: &dyn UserKey,
    user: &str,
    exporter: &[u8],
) -> Result<UserauthRequest, RequestError> {
    let public = key.public_key();
    // RSA keys sign with SHA-512 (rsa-sha2-512); SHA-1 ssh-rsa is never used.
    let (signature_algorithm, rsa_hash) = match public.algorithm() {
        Algorithm::Rsa { .. } => ("rsa-sha2-512".to_string(), Some(HashAlg::Sha512)),
        other => (other.as_str().to_string(), None),
    };
    let encode_error = |source| RequestError::PublicKey {
        key: key.description(),
        source,
    };
    let (algorithm, blob) = match key.certificate() {
        Some(certificate) => (
            certificate_algorithm(&signature_algorithm),
            certificate.to_bytes().map_err(encode_error)?,
        ),
        None => (
            signature_algorithm,
            public.to_bytes().map_err(encode_error)?,
        ),
    };
    let data = userauth_signed_data(exporter, user, SERVICE, &algorithm, &blob)?;
    let signature = key.sign(&data, rsa_hash).await?;
    Ok(UserauthRequest {
        user: user.to_string(),
        service: SERVICE.to_string(),
        algorithm,
        public_key: blob,
        signature,
    })
}

/// The certificate algorithm name for a signature algorithm: the inverse
/// of [`certificate_signature_algorithm`].
fn certificate_algorithm(signature_algorithm: &str) -> String {
    let base = signature_algorithm
        .strip_suffix("@openssh.com")
        .unwrap_or(signature_algorithm);
    format!("{base}{CERT_SUFFIX}")
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
    /// Cannot happen for a request that was decoded from a frame (every
    /// field fits), but the encoder is checked all the same.
    #[error("the signed data cannot be encoded: {0}")]
    SignedData(#[from] EncodeError),
    /// sshd's wording for a security key signature made without a touch,
    /// or without user verification where `verify-required` asks for it.
    #[error("{0}")]
    SecurityKey(#[from] SecurityKeyRefusal),
    #[error("key not authorized for {0}")]
    NotAuthorized(String),
}

/// The suffix of OpenSSH's certificate algorithm names (PROTOCOL.certkeys).
const CERT_SUFFIX: &str = "-cert-v01@openssh.com";

/// The signature algorithm of a certificate algorithm name: the name
/// without [`CERT_SUFFIX`] (`sk-` names keep their `@openssh.com`).
/// `None` for a name that is not a certificate's.
fn certificate_signature_algorithm(name: &str) -> Option<String> {
    let base = name.strip_suffix(CERT_SUFFIX)?;
    Some(match base.starts_with("sk-") {
        true => format!("{base}@openssh.com"),
        false => base.to_string(),
    })
}

/// Checks a request: the signature over this connection's exporter value,
/// then the policy. Returns the key or certificate that logged in.
pub async fn verify(
    request: &UserauthRequest,
    exporter: &[u8],
    policy: &dyn AuthPolicy,
    peer: Option<std::net::SocketAddr>,
) -> Result<UserCredential, Refusal> {
    use signature::Verifier;
    use ssh_key::encoding::Decode;

    if request.service != SERVICE {
        return Err(Refusal::Service(request.service.clone()));
    }
    // draft §7.5: a certificate algorithm carries a certificate blob; it
    // signs with the algorithm of its key
    let (credential, signature_algorithm) =
        match certificate_signature_algorithm(&request.algorithm) {
            Some(signature_algorithm) => {
                let certificate = Certificate::from_bytes(&request.public_key)
                    .map_err(|e| Refusal::BadKey(e.to_string()))?;
                (
                    UserCredential::Certificate(Box::new(certificate)),
                    signature_algorithm,
                )
            }
            None => {
                let key = PublicKey::from_bytes(&request.public_key)
                    .map_err(|e| Refusal::BadKey(e.to_string()))?;
                (UserCredential::Key(key), request.algorithm.clone())
            }
        };
    let key = credential.public_key();
    // draft §7.5: the algorithm name fits the key; RSA only as rsa-sha2-256/512, never SHA-1 ssh-rsa
    if !algorithm_fits(&signature_algorithm, &key.algorithm()) {
        return Err(Refusal::Algorithm {
            algorithm: request.algorithm.clone(),
            key: key.algorithm().as_str().to_string(),
        });
    }
    let signature = Signature::decode(&mut request.signature.as_slice())
        .map_err(|e| Refusal::BadSignature(e.to_string()))?;
    // draft §7.5: the signature blob names the same algorithm as the request
    if signature.algorithm().as_str() != signature_algorithm {
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
    )?;
    Verifier::verify(key.key_data(), &data, &signature).map_err(|_| Refusal::WrongSignature)?;
    let user = request.user.as_str();
    let allowed = match &credential {
        UserCredential::Key(key) => policy.publickey_allowed_from(user, key, peer).await,
        UserCredential::Certificate(cert) => {
            policy.certificate_allowed_from(user, cert, peer).await
        }
    };
    if !allowed {
        return Err(Refusal::NotAuthorized(request.user.clone()));
    }
    // draft §7.5: the server MUST refuse an sk- signature whose flags lack user presence
    // (unless its authorized_keys line, or its certificate, says no-touch-required, as in sshd),
    // and one without user verification when the line or certificate says verify-required
    if let Some(flags) = security_key_flags(&signature) {
        let checked = check_security_key_flags(policy, user, &credential, flags, peer).await;
        if let Err(refusal) = checked {
            tracing::error!(
                "{}",
                security_key_refusal_line(
                    &credential,
                    &sshq_core::log_escape::peer_text(user),
                    peer,
                    refusal
                )
            );
            return Err(refusal.into());
        }
    }
    Ok(credential)
}

/// The flags byte of a FIDO (sk-*) signature; None for other signatures.
/// ssh-key keeps an sk signature as `signature || flags || counter(4)`.
fn security_key_flags(signature: &Signature) -> Option<u8> {
    match signature.algorithm() {
        Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256 => {
            let bytes = signature.as_bytes();
            bytes
                .len()
                .checked_sub(5)
                .and_then(|at| bytes.get(at))
                .copied()
        }
        _ => None,
    }
}

/// Whether a request's algorithm name may be used with the key; RSA must use
/// SHA-2 signatures.
fn algorithm_fits(name: &str, key: &Algorithm) -> bool {
    match key {
        Algorithm::Rsa { .. } => name == "rsa-sha2-256" || name == "rsa-sha2-512",
        other => name == other.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use signature::Signer;
    use ssh_key::encoding::Encode;
    use ssh_key::private::Ed25519Keypair;
    use ssh_key::public::{KeyData, SkEd25519};
    use sshq_core::auth::{SK_USER_PRESENCE, SK_USER_VERIFICATION};

    /// Allows every key; `touch_required: false` is authorized_keys'
    /// `no-touch-required` on every key, `verify_required: true` its
    /// `verify-required`.
    struct AllowAll {
        touch_required: bool,
        verify_required: bool,
    }

    impl AuthPolicy for AllowAll {
        fn publickey_allowed<'a>(
            &'a self,
            _user: &'a str,
            _key: &'a PublicKey,
        ) -> sshq_core::auth::BoxFuture<'a, bool> {
            Box::pin(async { true })
        }
        fn touch_required<'a>(
            &'a self,
            _user: &'a str,
            _key: &'a PublicKey,
        ) -> sshq_core::auth::BoxFuture<'a, bool> {
            let required = self.touch_required;
            Box::pin(async move { required })
        }
        fn verify_required_from<'a>(
            &'a self,
            _user: &'a str,
            _key: &'a PublicKey,
            _peer: Option<std::net::SocketAddr>,
        ) -> sshq_core::auth::BoxFuture<'a, bool> {
            let required = self.verify_required;
            Box::pin(async move { required })
        }
        fn max_auth_tries(&self) -> u32 {
            6
        }
    }

    /// The default: a security key's signature must show a touch.
    const TOUCH_REQUIRED: AllowAll = AllowAll {
        touch_required: true,
        verify_required: false,
    };
    /// authorized_keys said `no-touch-required` for every key.
    const NO_TOUCH_REQUIRED: AllowAll = AllowAll {
        touch_required: false,
        verify_required: false,
    };
    /// authorized_keys said `verify-required` for every key.
    const VERIFY_REQUIRED: AllowAll = AllowAll {
        touch_required: true,
        verify_required: true,
    };

    const EXPORTER: &[u8] = &[7u8; 32];
    const APPLICATION: &str = "ssh:";

    /// A request signed the way a FIDO authenticator signs (PROTOCOL.u2f):
    /// an Ed25519 signature over sha256(application) || flags || counter ||
    /// sha256(message), sent as string(sig) || byte flags || uint32 counter.
    /// An ordinary Ed25519 key stands in for the authenticator's.
    fn security_key_request(flags: u8) -> UserauthRequest {
        let keypair = Ed25519Keypair::from_seed(&[42u8; 32]);
        let public = PublicKey::from(KeyData::SkEd25519(SkEd25519::new(
            keypair.public,
            APPLICATION,
        )));
        let blob = public.to_bytes().expect("sk public key blob");
        let algorithm = Algorithm::SkEd25519.as_str().to_string();
        let message = userauth_signed_data(EXPORTER, "alice", SERVICE, &algorithm, &blob)
            .expect("signed data");
        let counter = 1u32.to_be_bytes();
        let mut signed = Sha256::digest(APPLICATION).to_vec();
        signed.push(flags);
        signed.extend_from_slice(&counter);
        signed.extend_from_slice(&Sha256::digest(&message));
        let raw: Signature = keypair.try_sign(&signed).expect("ed25519 signature");
        let mut sk_bytes = raw.as_bytes().to_vec();
        sk_bytes.push(flags);
        sk_bytes.extend_from_slice(&counter);
        let signature = Signature::new(Algorithm::SkEd25519, sk_bytes).expect("sk signature");
        UserauthRequest {
            user: "alice".to_string(),
            service: SERVICE.to_string(),
            algorithm,
            public_key: blob,
            signature: signature.encode_vec().expect("signature blob"),
        }
    }

    #[tokio::test]
    async fn security_key_signature_with_user_presence_is_accepted() {
        let request = security_key_request(SK_USER_PRESENCE);
        assert!(verify(&request, EXPORTER, &TOUCH_REQUIRED, None)
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn security_key_signature_without_user_presence_is_refused() {
        let request = security_key_request(0);
        assert!(matches!(
            verify(&request, EXPORTER, &TOUCH_REQUIRED, None).await,
            Err(Refusal::SecurityKey(SecurityKeyRefusal::NoUserPresence))
        ));
        // User verification (0x04) alone is no touch either.
        let request = security_key_request(0x04);
        assert!(matches!(
            verify(&request, EXPORTER, &TOUCH_REQUIRED, None).await,
            Err(Refusal::SecurityKey(SecurityKeyRefusal::NoUserPresence))
        ));
    }

    #[tokio::test]
    async fn no_touch_required_accepts_a_security_key_signature_without_presence() {
        let request = security_key_request(0);
        assert!(verify(&request, EXPORTER, &NO_TOUCH_REQUIRED, None)
            .await
            .is_ok());
        // The signature is still checked.
        let mut request = security_key_request(0);
        let flags_at = request.signature.len() - 5;
        request.signature[flags_at] = SK_USER_PRESENCE;
        assert!(matches!(
            verify(&request, EXPORTER, &NO_TOUCH_REQUIRED, None).await,
            Err(Refusal::WrongSignature)
        ));
    }

    #[tokio::test]
    async fn security_key_signature_is_still_checked() {
        // Claiming the touch after signing without it breaks the signature.
        let mut request = security_key_request(0);
        let flags_at = request.signature.len() - 5;
        request.signature[flags_at] = SK_USER_PRESENCE;
        assert!(matches!(
            verify(&request, EXPORTER, &TOUCH_REQUIRED, None).await,
            Err(Refusal::WrongSignature)
        ));
    }

    #[tokio::test]
    async fn verify_required_wants_the_user_verification_flag() {
        let touched = security_key_request(SK_USER_PRESENCE);
        assert!(matches!(
            verify(&touched, EXPORTER, &VERIFY_REQUIRED, None).await,
            Err(Refusal::SecurityKey(SecurityKeyRefusal::NoUserVerification))
        ));
        let verified = security_key_request(SK_USER_PRESENCE | SK_USER_VERIFICATION);
        assert!(verify(&verified, EXPORTER, &VERIFY_REQUIRED, None)
            .await
            .is_ok());
        // Verification is no touch: both are needed.
        let untouched = security_key_request(SK_USER_VERIFICATION);
        assert!(matches!(
            verify(&untouched, EXPORTER, &VERIFY_REQUIRED, None).await,
            Err(Refusal::SecurityKey(SecurityKeyRefusal::NoUserPresence))
        ));
        // Without verify-required the flag is not asked for.
        assert!(verify(&touched, EXPORTER, &TOUCH_REQUIRED, None)
            .await
            .is_ok());
    }
}
