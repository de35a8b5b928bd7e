//! The server's TLS configuration: its SSH Ed25519 host key as an RFC 7250
//! raw public key.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{AlwaysResolvesServerRawPublicKeys, NoServerSessionStorage};
use rustls::sign::CertifiedKey;
use rustls::SignatureAlgorithm;
use sshq_core::ssh_key::PrivateKey;

use super::keys::{ed25519_pkcs8_v2, ed25519_spki};
use super::{TlsError, ALPN};

/// Builds the server's TLS configuration from its SSH host key.
///
/// The host key must be Ed25519: it is the only SSH host key type whose TLS
/// signature scheme and raw-public-key encoding are fixed and small, and the
/// client offers only the `ed25519` signature scheme. Other key types are
/// refused here, with a message saying how to make an Ed25519 key, rather
/// than failing every handshake later.
///
/// The configuration is TLS 1.3 only, requires [`ALPN`], asks for no client
/// certificate (users authenticate inside, the SSH way), issues no session
/// tickets and accepts no 0-RTT data (`max_early_data_size` 0): early data
/// could be replayed, and SSH has nothing that is safe to replay.
pub fn server_tls(
    host_key: &PrivateKey,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ServerConfig, TlsError> {
    let certified = Arc::new(host_key_certified(host_key, &provider)?);

    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Tls13Unavailable)?
        .with_no_client_auth()
        // Always the same key whatever the client asks for: there is one host
        // key per server, and the client sends no SNI (see `client_tls`).
        // This resolver also makes rustls insist that the client accepts raw
        // public keys; a client expecting X.509 is refused at the ClientHello.
        .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(certified)));

    config.alpn_protocols = vec![ALPN.to_vec()];
    // draft §4.3: servers MUST NOT accept 0-RTT data
    config.max_early_data_size = 0;
    // No resumption: every connection runs the full handshake, so every
    // connection proves possession of the host key again.
    // draft §4.3: servers MUST NOT issue session tickets
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    Ok(config)
}

/// Turns an SSH Ed25519 host key into what rustls serves: the SPKI as the
/// "certificate" and a signing key loaded through the provider.
pub(crate) fn host_key_certified(
    host_key: &PrivateKey,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    if host_key.is_encrypted() {
        return Err(TlsError::EncryptedHostKey);
    }
    let Some(keypair) = host_key.key_data().ed25519() else {
        return Err(TlsError::UnsupportedHostKey {
            algorithm: host_key.algorithm().to_string(),
        });
    };

    let pkcs8 = ed25519_pkcs8_v2(keypair.private.as_ref(), &keypair.public.0);
    let signing_key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8)))
        .map_err(|e| TlsError::HostKeyUnusable {
            reason: e.to_string(),
        })?;

    // A provider might load the bytes as some other key type, or (for a
    // provider without *ring*'s PKCS#8 v2 check) derive a different public
    // key than the one the client will be shown: both would make handshakes
    // fail in ways that are hard to trace back to the key file.
    if signing_key.algorithm() != SignatureAlgorithm::ED25519 {
        return Err(TlsError::HostKeyUnusable {
            reason: format!(
                "the provider loaded it as a {:?} key",
                signing_key.algorithm()
            ),
        });
    }
    let spki = ed25519_spki(&keypair.public);
    if let Some(derived) = signing_key.public_key() {
        if derived.as_ref() != spki.as_slice() {
            return Err(TlsError::HostKeyUnusable {
                reason: "its public key does not match its private key".to_string(),
            });
        }
    }

    Ok(CertifiedKey::new(
        vec![CertificateDer::from(spki)],
        signing_key,
    ))
}
