//! Host certificates over QUIC (draft §5.5).
//!
//! TLS carries the host key as a raw public key, which has no room for an
//! OpenSSH certificate. When known_hosts does not know the key but has
//! `@cert-authority` lines for the host, the client accepts the handshake
//! provisionally ([`crate::tls::HostKeyVerdict::AwaitingCertificate`]),
//! asks for the certificate as the first frame of the control stream
//! (HOST_CERTIFICATE_REQUEST), and decides before it sends anything else:
//! no user name, signature or channel leaves the client until the host is
//! trusted. The certificate needs no proof of its own: it must certify the
//! very key whose possession the TLS CertificateVerify proved.

use std::sync::Arc;

use sshq_core::auth::ServerKeyVerifier;
use sshq_core::ssh_key::{Certificate, PublicKey};

/// A host key the handshake proved but the client has not judged yet.
#[derive(Clone)]
pub struct PendingHostKey {
    key: PublicKey,
    verifier: Arc<dyn ServerKeyVerifier>,
}

impl PendingHostKey {
    pub fn new(key: PublicKey, verifier: Arc<dyn ServerKeyVerifier>) -> Self {
        PendingHostKey { key, verifier }
    }

    /// Judges the key with the certificate the server sent (empty: it has
    /// none). A certificate of exactly this key goes to the CA check,
    /// which falls back to the bare key as ssh does; anything else is
    /// ignored and the bare key judged. The policy may prompt, so this
    /// runs off the async workers.
    pub async fn decide(self, certificate: bytes::Bytes) -> bool {
        tokio::task::spawn_blocking(move || self.decide_blocking(&certificate))
            .await
            .unwrap_or(false)
    }

    /// [`PendingHostKey::decide`] on the calling thread (a tunnel, which
    /// has no control stream to ask on, decides with no certificate).
    pub fn decide_blocking(&self, certificate: &[u8]) -> bool {
        if !certificate.is_empty() {
            match Certificate::from_bytes(certificate) {
                Ok(certificate) if certificate.public_key() == self.key.key_data() => {
                    return self.verifier.verify_certificate(&certificate);
                }
                Ok(_) => tracing::debug!("the server's host certificate is for another key"),
                Err(e) => tracing::debug!("the server's host certificate cannot be read: {e}"),
            }
        }
        self.verifier.verify(&self.key)
    }
}
