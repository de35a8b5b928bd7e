//! `X25519Sntrup761`: TLS 1.3 hybrid of X25519 and Streamlined NTRU Prime
//! sntrup761, the pair OpenSSH made its default in 9.0.
//!
//! Codepoint: no TLS `NamedGroup` exists for this pair, so sshq uses
//! `0xFE61` from the private-use range 0xFE00-0xFEFF (RFC 8446 section
//! 4.2.7). Only sshq peers know it; anyone else ignores an unknown group.
//!
//! Wire layout (modelled on X25519MLKEM768, draft-ietf-tls-ecdhe-mlkem, with
//! the post-quantum part first):
//!
//! | what | layout | bytes |
//! |---|---|---|
//! | client share | sntrup761 public key ‖ client X25519 public key | 1158 + 32 = 1190 |
//! | server share | sntrup761 ciphertext ‖ server X25519 public key | 1039 + 32 = 1071 |
//! | secret | sntrup761 shared key ‖ X25519 shared secret | 32 + 32 = 64 |
//!
//! The 64-byte secret goes into the TLS 1.3 key schedule as is: TLS already
//! runs it through HKDF-Extract, so hashing it first (as OpenSSH's
//! SHA-512 does for SSH) adds nothing; this is the treatment
//! draft-ietf-tls-hybrid-design gives concatenated secrets.
//!
//! Refused peer input: a share of any other length (either side), and an
//! all-zero X25519 result. Every 1039-byte string is a well-formed
//! sntrup761 ciphertext: decapsulation uses implicit rejection, so a
//! tampered ciphertext yields an unrelated key and the handshake then fails
//! at the Finished check, which is the intended behaviour.

use pqcrypto_ntruprime::sntrup761;
use pqcrypto_traits::kem::{Ciphertext as _, PublicKey as _, SharedSecret as _};
use rustls::crypto::{ActiveKeyExchange, CompletedKeyExchange, SharedSecret, SupportedKxGroup};
use rustls::{Error, NamedGroup, ProtocolVersion};

use super::half::{invalid_share, split_share, X25519Half, X25519_LEN};
use super::pool;

/// The private-use codepoint sshq gives X25519+sntrup761.
pub const X25519_SNTRUP761_CODEPOINT: u16 = 0xFE61;

/// sntrup761 public key length.
pub const SNTRUP761_PUBLIC_KEY_LEN: usize = 1158;
/// sntrup761 ciphertext length.
pub const SNTRUP761_CIPHERTEXT_LEN: usize = 1039;
/// Client key share length: public key ‖ X25519.
pub const CLIENT_SHARE_LEN: usize = SNTRUP761_PUBLIC_KEY_LEN + X25519_LEN;
/// Server key share length: ciphertext ‖ X25519.
pub const SERVER_SHARE_LEN: usize = SNTRUP761_CIPHERTEXT_LEN + X25519_LEN;
/// Length of the secret handed to TLS: sntrup761 key ‖ X25519 secret.
pub const SECRET_LEN: usize = 64;

/// The hybrid group; use [`X25519_SNTRUP761`] for the `&'static` rustls
/// wants.
#[derive(Debug, Clone, Copy, Default)]
pub struct X25519Sntrup761;

/// The group as rustls takes it in `CryptoProvider::kx_groups`.
pub static X25519_SNTRUP761: &dyn SupportedKxGroup = &X25519Sntrup761;

impl SupportedKxGroup for X25519Sntrup761 {
    /// Client side: a pooled sntrup761 key pair plus a fresh X25519 pair.
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let (pk, sk) = pool::take();
        Ok(Box::new(ClientKx::new(pk, sk, X25519Half::generate()?)))
    }

    /// Server side: encapsulate to the client's sntrup761 key and answer its
    /// X25519 key with a fresh one.
    fn start_and_complete(&self, client_share: &[u8]) -> Result<CompletedKeyExchange, Error> {
        let (pq, x) = split_share(client_share, SNTRUP761_PUBLIC_KEY_LEN)?;
        let pk = sntrup761::PublicKey::from_bytes(pq).map_err(|_| invalid_share())?;
        let ours = X25519Half::generate()?;

        // X25519 first: it is the step that can refuse the peer's input, so
        // a bad share costs us no encapsulation.
        let mut x_secret = Vec::with_capacity(X25519_LEN);
        ours.agree_into(x, &mut x_secret)?;
        // draft §4.4.1: the server computes X25519 before encapsulating; shared secret = k || x
        let (pq_secret, ct) = sntrup761::encapsulate(&pk);

        let mut secret = Vec::with_capacity(SECRET_LEN);
        secret.extend_from_slice(pq_secret.as_bytes());
        secret.extend_from_slice(&x_secret);

        let mut pub_key = Vec::with_capacity(SERVER_SHARE_LEN);
        pub_key.extend_from_slice(ct.as_bytes());
        pub_key.extend_from_slice(ours.public());

        Ok(CompletedKeyExchange {
            group: self.name(),
            pub_key,
            secret: SharedSecret::from(secret),
        })
    }

    fn ffdhe_group(&self) -> Option<rustls::ffdhe_groups::FfdheGroup<'static>> {
        None
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::from(X25519_SNTRUP761_CODEPOINT)
    }

    /// TLS 1.3 only: TLS 1.2 has no way to carry a KEM exchange.
    fn usable_for_version(&self, version: ProtocolVersion) -> bool {
        version == ProtocolVersion::TLSv1_3
    }
}

/// The client's half-finished exchange.
pub(crate) struct ClientKx {
    sk: sntrup761::SecretKey,
    x25519: X25519Half,
    /// Our key share: sntrup761 public key ‖ X25519 public key.
    share: Vec<u8>,
}

impl ClientKx {
    pub(crate) fn new(
        pk: sntrup761::PublicKey,
        sk: sntrup761::SecretKey,
        x25519: X25519Half,
    ) -> Self {
        let mut share = Vec::with_capacity(CLIENT_SHARE_LEN);
        share.extend_from_slice(pk.as_bytes());
        share.extend_from_slice(x25519.public());
        Self { sk, x25519, share }
    }
}

impl ActiveKeyExchange for ClientKx {
    fn complete(self: Box<Self>, server_share: &[u8]) -> Result<SharedSecret, Error> {
        let (pq, x) = split_share(server_share, SNTRUP761_CIPHERTEXT_LEN)?;
        let ct = sntrup761::Ciphertext::from_bytes(pq).map_err(|_| invalid_share())?;
        let pq_secret = sntrup761::decapsulate(&ct, &self.sk);

        let mut secret = Vec::with_capacity(SECRET_LEN);
        secret.extend_from_slice(pq_secret.as_bytes());
        self.x25519.agree_into(x, &mut secret)?;
        Ok(SharedSecret::from(secret))
    }

    /// The X25519 half, offered as its own key share so an X25519-only
    /// server can answer without a HelloRetryRequest (rustls sends it only
    /// when plain X25519 is also among our groups).
    fn hybrid_component(&self) -> Option<(NamedGroup, &[u8])> {
        Some((NamedGroup::X25519, self.x25519.public()))
    }

    fn complete_hybrid_component(
        self: Box<Self>,
        server_x25519: &[u8],
    ) -> Result<SharedSecret, Error> {
        let mut secret = Vec::with_capacity(X25519_LEN);
        self.x25519.agree_into(server_x25519, &mut secret)?;
        Ok(SharedSecret::from(secret))
    }

    fn pub_key(&self) -> &[u8] {
        &self.share
    }

    fn ffdhe_group(&self) -> Option<rustls::ffdhe_groups::FfdheGroup<'static>> {
        None
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::from(X25519_SNTRUP761_CODEPOINT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_bytes(s: &SharedSecret) -> Vec<u8> {
        s.secret_bytes().to_vec()
    }

    #[test]
    fn sizes_match_the_crate() {
        assert_eq!(sntrup761::public_key_bytes(), SNTRUP761_PUBLIC_KEY_LEN);
        assert_eq!(sntrup761::ciphertext_bytes(), SNTRUP761_CIPHERTEXT_LEN);
        assert_eq!(sntrup761::shared_secret_bytes() + X25519_LEN, SECRET_LEN);
    }

    #[test]
    fn share_lengths_and_agreement() {
        let group = X25519Sntrup761;
        let client = group.start().unwrap();
        assert_eq!(client.pub_key().len(), 1190);
        assert_eq!(client.group(), NamedGroup::from(0xFE61));
        let (component, x) = client.hybrid_component().unwrap();
        assert_eq!(component, NamedGroup::X25519);
        assert_eq!(x, &client.pub_key()[SNTRUP761_PUBLIC_KEY_LEN..]);

        let server = group.start_and_complete(client.pub_key()).unwrap();
        assert_eq!(server.pub_key.len(), 1071);
        assert_eq!(server.group, NamedGroup::from(0xFE61));
        let client_secret = client.complete(&server.pub_key).unwrap();
        assert_eq!(secret_bytes(&client_secret).len(), 64);
        assert_eq!(secret_bytes(&client_secret), secret_bytes(&server.secret));
    }

    #[test]
    fn classical_component_agrees_with_plain_x25519() {
        let client = X25519Sntrup761.start().unwrap();
        let (_, client_x) = client.hybrid_component().unwrap();
        let ring_x25519 = rustls::crypto::ring::kx_group::X25519;
        let server = ring_x25519.start_and_complete(client_x).unwrap();
        let client_secret = client.complete_hybrid_component(&server.pub_key).unwrap();
        assert_eq!(secret_bytes(&client_secret), secret_bytes(&server.secret));
    }

    fn is_invalid_share(e: &Error) -> bool {
        matches!(
            e,
            Error::PeerMisbehaved(rustls::PeerMisbehaved::InvalidKeyShare)
        )
    }

    #[test]
    fn server_refuses_malformed_client_shares() {
        let client = X25519Sntrup761.start().unwrap();
        let good = client.pub_key().to_vec();
        for bad_len in [0, 32, 1158, 1189, 1191, 2 * 1190] {
            let bad = vec![1u8; bad_len];
            let err = X25519Sntrup761.start_and_complete(&bad).err().unwrap();
            assert!(is_invalid_share(&err), "{bad_len}: {err:?}");
        }
        let mut zero_x = good.clone();
        zero_x[SNTRUP761_PUBLIC_KEY_LEN..].fill(0);
        let err = X25519Sntrup761.start_and_complete(&zero_x).err().unwrap();
        assert!(is_invalid_share(&err), "{err:?}");
    }

    #[test]
    fn client_refuses_malformed_server_shares() {
        let server_share = {
            let probe = X25519Sntrup761.start().unwrap();
            X25519Sntrup761
                .start_and_complete(probe.pub_key())
                .unwrap()
                .pub_key
        };
        for bad_len in [0, 32, 1039, 1070, 1072, 1190] {
            let client = X25519Sntrup761.start().unwrap();
            let err = client.complete(&vec![1u8; bad_len]).err().unwrap();
            assert!(is_invalid_share(&err), "{bad_len}: {err:?}");
        }
        let mut zero_x = server_share.clone();
        zero_x[SNTRUP761_CIPHERTEXT_LEN..].fill(0);
        let client = X25519Sntrup761.start().unwrap();
        assert!(is_invalid_share(&client.complete(&zero_x).err().unwrap()));

        let client = X25519Sntrup761.start().unwrap();
        let err = client.complete_hybrid_component(&[0u8; 32]).err().unwrap();
        assert!(is_invalid_share(&err));
    }

    #[test]
    fn tampered_ciphertext_gives_a_different_secret() {
        // Implicit rejection: no error, but the secrets no longer match, so
        // TLS fails at Finished.
        let client = X25519Sntrup761.start().unwrap();
        let server = X25519Sntrup761
            .start_and_complete(client.pub_key())
            .unwrap();
        let mut share = server.pub_key.clone();
        share[5] ^= 0x40;
        let client_secret = client.complete(&share).unwrap();
        assert_ne!(secret_bytes(&client_secret), secret_bytes(&server.secret));
    }

    #[test]
    fn hybrid_is_tls13_only() {
        assert!(X25519Sntrup761.usable_for_version(ProtocolVersion::TLSv1_3));
        assert!(!X25519Sntrup761.usable_for_version(ProtocolVersion::TLSv1_2));
    }
}
