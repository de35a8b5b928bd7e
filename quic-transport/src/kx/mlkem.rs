//! `X25519MLKEM768`: the hybrid of draft-ietf-tls-ecdhe-mlkem (codepoint
//! 0x11EC), which browsers and OpenSSL 3.5 deploy, built on RustCrypto's
//! `ml-kem` and x25519-dalek because rustls's ring provider has no ML-KEM.
//!
//! | what | layout | bytes |
//! |---|---|---|
//! | client share | ML-KEM-768 encapsulation key ‖ client X25519 public key | 1184 + 32 = 1216 |
//! | server share | ML-KEM-768 ciphertext ‖ server X25519 public key | 1088 + 32 = 1120 |
//! | secret | ML-KEM shared secret ‖ X25519 shared secret | 32 + 32 = 64 |
//!
//! ML-KEM comes first in every field (the draft's order, chosen there for
//! FIPS: the approved component leads); the secret goes into the key
//! schedule unhashed.
//!
//! Randomness: the key pair comes from a 64-byte seed and encapsulation
//! from a 32-byte message `m`, both drawn from the OS generator here and
//! passed to ml-kem's seed-based functions. That is what ml-kem's own
//! `generate`/`encapsulate` do inside; doing it here keeps one RNG for the
//! whole module, turns RNG failure into a rustls error, and lets the test
//! vectors run through exactly this code with fixed seeds.

use ml_kem::kem::{Decapsulate, KeyExport};
use ml_kem::{Ciphertext, DecapsulationKey, EncapsulationKey, Key, MlKem768, Seed, B32};
use rustls::crypto::{ActiveKeyExchange, CompletedKeyExchange, SharedSecret, SupportedKxGroup};
use rustls::{Error, NamedGroup, ProtocolVersion};

use super::half::{invalid_share, random_bytes, split_share, X25519Half, X25519_LEN};

/// ML-KEM-768 encapsulation key length.
pub const MLKEM768_ENCAPSULATION_KEY_LEN: usize = 1184;
/// ML-KEM-768 ciphertext length.
pub const MLKEM768_CIPHERTEXT_LEN: usize = 1088;
/// Client key share length.
pub const CLIENT_SHARE_LEN: usize = MLKEM768_ENCAPSULATION_KEY_LEN + X25519_LEN;
/// Server key share length.
pub const SERVER_SHARE_LEN: usize = MLKEM768_CIPHERTEXT_LEN + X25519_LEN;
/// Length of the secret handed to TLS.
pub const SECRET_LEN: usize = 64;

/// The hybrid group; use [`X25519_MLKEM768`] for the `&'static` rustls
/// wants.
#[derive(Debug, Clone, Copy, Default)]
pub struct X25519MlKem768;

/// The group as rustls takes it in `CryptoProvider::kx_groups`.
pub static X25519_MLKEM768: &dyn SupportedKxGroup = &X25519MlKem768;

impl SupportedKxGroup for X25519MlKem768 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let seed: [u8; 64] = random_bytes()?;
        Ok(Box::new(ClientKx::from_seed(seed, X25519Half::generate()?)))
    }

    fn start_and_complete(&self, client_share: &[u8]) -> Result<CompletedKeyExchange, Error> {
        let m: [u8; 32] = random_bytes()?;
        server_complete(client_share, m, X25519Half::generate()?)
    }

    fn ffdhe_group(&self) -> Option<rustls::ffdhe_groups::FfdheGroup<'static>> {
        None
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519MLKEM768
    }

    fn usable_for_version(&self, version: ProtocolVersion) -> bool {
        version == ProtocolVersion::TLSv1_3
    }
}

/// The server's whole exchange, with its randomness passed in: the ML-KEM
/// message `m` and our X25519 pair.
pub(crate) fn server_complete(
    client_share: &[u8],
    m: [u8; 32],
    ours: X25519Half,
) -> Result<CompletedKeyExchange, Error> {
    let (pq, x) = split_share(client_share, MLKEM768_ENCAPSULATION_KEY_LEN)?;
    let ek_bytes = Key::<EncapsulationKey<MlKem768>>::try_from(pq).map_err(|_| invalid_share())?;
    // `new` runs FIPS 203's modulus check: coefficients >= q are refused.
    // draft §4.4.2: the server MUST perform the FIPS 203 encapsulation key check
    let ek = EncapsulationKey::<MlKem768>::new(&ek_bytes).map_err(|_| invalid_share())?;

    let mut x_secret = Vec::with_capacity(X25519_LEN);
    ours.agree_into(x, &mut x_secret)?;
    let (ct, pq_secret) = ek.encapsulate_deterministic(&B32::from(m));

    let mut secret = Vec::with_capacity(SECRET_LEN);
    secret.extend_from_slice(pq_secret.as_slice());
    secret.extend_from_slice(&x_secret);

    let mut pub_key = Vec::with_capacity(SERVER_SHARE_LEN);
    pub_key.extend_from_slice(ct.as_slice());
    pub_key.extend_from_slice(ours.public());

    Ok(CompletedKeyExchange {
        group: NamedGroup::X25519MLKEM768,
        pub_key,
        secret: SharedSecret::from(secret),
    })
}

/// The client's half-finished exchange.
pub(crate) struct ClientKx {
    dk: DecapsulationKey<MlKem768>,
    x25519: X25519Half,
    /// Encapsulation key ‖ X25519 public key.
    share: Vec<u8>,
}

impl ClientKx {
    /// Key pair from FIPS 203's 64-byte seed `d ‖ z`.
    pub(crate) fn from_seed(seed: [u8; 64], x25519: X25519Half) -> Self {
        let dk = DecapsulationKey::<MlKem768>::from_seed(Seed::from(seed));
        let mut share = Vec::with_capacity(CLIENT_SHARE_LEN);
        share.extend_from_slice(dk.encapsulation_key().to_bytes().as_slice());
        share.extend_from_slice(x25519.public());
        Self { dk, x25519, share }
    }
}

impl ActiveKeyExchange for ClientKx {
    fn complete(self: Box<Self>, server_share: &[u8]) -> Result<SharedSecret, Error> {
        let (pq, x) = split_share(server_share, MLKEM768_CIPHERTEXT_LEN)?;
        let ct = Ciphertext::<MlKem768>::try_from(pq).map_err(|_| invalid_share())?;
        // Implicit rejection: a tampered ciphertext yields an unrelated key,
        // and the handshake then fails at Finished.
        let pq_secret = self.dk.decapsulate(&ct);

        let mut secret = Vec::with_capacity(SECRET_LEN);
        secret.extend_from_slice(pq_secret.as_slice());
        self.x25519.agree_into(x, &mut secret)?;
        Ok(SharedSecret::from(secret))
    }

    /// See `X25519Sntrup761`: lets an X25519-only server answer at once.
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
        NamedGroup::X25519MLKEM768
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(s: &SharedSecret) -> Vec<u8> {
        s.secret_bytes().to_vec()
    }

    fn is_invalid_share(e: &Error) -> bool {
        matches!(
            e,
            Error::PeerMisbehaved(rustls::PeerMisbehaved::InvalidKeyShare)
        )
    }

    #[test]
    fn share_lengths_and_agreement() {
        let client = X25519MlKem768.start().unwrap();
        assert_eq!(client.pub_key().len(), 1216);
        assert_eq!(u16::from(client.group()), 0x11EC);
        let (component, x) = client.hybrid_component().unwrap();
        assert_eq!(component, NamedGroup::X25519);
        assert_eq!(x, &client.pub_key()[MLKEM768_ENCAPSULATION_KEY_LEN..]);

        let server = X25519MlKem768.start_and_complete(client.pub_key()).unwrap();
        assert_eq!(server.pub_key.len(), 1120);
        let secret = client.complete(&server.pub_key).unwrap();
        assert_eq!(bytes(&secret).len(), 64);
        assert_eq!(bytes(&secret), bytes(&server.secret));
    }

    #[test]
    fn refuses_malformed_shares() {
        let client = X25519MlKem768.start().unwrap();
        for len in [0, 32, 1184, 1215, 1217] {
            let err = X25519MlKem768
                .start_and_complete(&vec![1u8; len])
                .err()
                .unwrap();
            assert!(is_invalid_share(&err), "{len}: {err:?}");
        }
        // An encapsulation key whose coefficients are not reduced mod q.
        let mut unreduced = client.pub_key().to_vec();
        unreduced[..MLKEM768_ENCAPSULATION_KEY_LEN].fill(0xFF);
        let err = X25519MlKem768.start_and_complete(&unreduced).err().unwrap();
        assert!(is_invalid_share(&err), "{err:?}");

        let mut zero_x = client.pub_key().to_vec();
        zero_x[MLKEM768_ENCAPSULATION_KEY_LEN..].fill(0);
        let err = X25519MlKem768.start_and_complete(&zero_x).err().unwrap();
        assert!(is_invalid_share(&err), "{err:?}");

        for len in [0, 1088, 1119, 1121] {
            let c = X25519MlKem768.start().unwrap();
            assert!(is_invalid_share(
                &c.complete(&vec![1u8; len]).err().unwrap()
            ));
        }
        let server = X25519MlKem768.start_and_complete(client.pub_key()).unwrap();
        let mut zero_x = server.pub_key.clone();
        zero_x[MLKEM768_CIPHERTEXT_LEN..].fill(0);
        assert!(is_invalid_share(&client.complete(&zero_x).err().unwrap()));
    }

    #[test]
    fn classical_component_agrees_with_plain_x25519() {
        let client = X25519MlKem768.start().unwrap();
        let (_, client_x) = client.hybrid_component().unwrap();
        let server = rustls::crypto::ring::kx_group::X25519
            .start_and_complete(client_x)
            .unwrap();
        let secret = client.complete_hybrid_component(&server.pub_key).unwrap();
        assert_eq!(bytes(&secret), bytes(&server.secret));
    }
}
