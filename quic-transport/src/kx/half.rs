//! Pieces shared by both hybrid groups: the X25519 half, randomness, and
//! splitting a peer's key share without trusting its length.

use std::sync::OnceLock;

use rustls::crypto::SecureRandom;
use rustls::{Error, PeerMisbehaved};
use x25519_dalek::{PublicKey, StaticSecret};

/// Length of an X25519 public key and of its shared secret.
pub(crate) const X25519_LEN: usize = 32;

/// The error for every malformed or unusable peer key share.
///
/// rustls maps it to an `illegal_parameter` alert, the same reaction its
/// own X25519 group has to a bad share, so a peer sees one consistent
/// failure whatever half of the hybrid was wrong.
pub(crate) fn invalid_share() -> Error {
    Error::PeerMisbehaved(PeerMisbehaved::InvalidKeyShare)
}

/// Fills `N` bytes from the operating system's generator, through ring (the
/// same source rustls uses for its own keys).
///
/// Failure becomes a rustls error (`FailedToGetRandomBytes`) instead of the
/// panic that the crates' own `random()` helpers would raise.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    static RNG: OnceLock<&'static dyn SecureRandom> = OnceLock::new();
    let rng = RNG.get_or_init(|| rustls::crypto::ring::default_provider().secure_random);
    let mut buf = [0u8; N];
    rng.fill(&mut buf)?;
    Ok(buf)
}

/// Splits a hybrid key share into its post-quantum part (`pq_len` bytes,
/// first) and its X25519 part (32 bytes, last).
///
/// Any other total length is refused: the share comes from the peer.
pub(crate) fn split_share(share: &[u8], pq_len: usize) -> Result<(&[u8], &[u8]), Error> {
    // draft §4.4.1: a key share of any other length is refused with illegal_parameter
    if share.len() != pq_len + X25519_LEN {
        return Err(invalid_share());
    }
    share.split_at_checked(pq_len).ok_or_else(invalid_share)
}

/// One side's ephemeral X25519 key pair.
///
/// x25519-dalek's `StaticSecret` is used only because it can be built from
/// fixed bytes (needed to replay the published test vectors through this
/// very code); every handshake still makes a fresh one and uses it once. It
/// zeroizes itself when dropped.
pub(crate) struct X25519Half {
    secret: StaticSecret,
    public: [u8; X25519_LEN],
}

impl X25519Half {
    /// A fresh key pair from the OS generator.
    pub(crate) fn generate() -> Result<Self, Error> {
        Ok(Self::from_scalar(random_bytes()?))
    }

    /// The key pair for a given (unclamped) scalar; clamping happens inside
    /// x25519-dalek, as RFC 7748 requires.
    pub(crate) fn from_scalar(scalar: [u8; X25519_LEN]) -> Self {
        let secret = StaticSecret::from(scalar);
        let public = PublicKey::from(&secret).to_bytes();
        Self { secret, public }
    }

    /// Our public key, as sent on the wire.
    pub(crate) fn public(&self) -> &[u8; X25519_LEN] {
        &self.public
    }

    /// Diffie-Hellman with the peer's public key, appending the 32-byte
    /// shared secret to `out`.
    ///
    /// Refuses a key of the wrong length and an all-zero result (the peer
    /// sent a low-order point, which would make the secret known to anyone),
    /// as RFC 7748 section 6.1 and OpenSSH's sntrup761x25519 both require.
    pub(crate) fn agree_into(&self, peer: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        let peer: [u8; X25519_LEN] = peer.try_into().map_err(|_| invalid_share())?;
        let shared = self.secret.diffie_hellman(&PublicKey::from(peer));
        // Fold without branching on secret bytes.
        let any_set = shared.as_bytes().iter().fold(0u8, |acc, b| acc | b);
        // draft §4.4.1: an all-zero X25519 result is refused (RFC 7748 Section 6.1)
        if any_set == 0 {
            return Err(invalid_share());
        }
        out.extend_from_slice(shared.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_checks_length() {
        let share = [7u8; 10 + X25519_LEN];
        let (pq, x) = split_share(&share, 10).unwrap();
        assert_eq!((pq.len(), x.len()), (10, X25519_LEN));
        assert!(split_share(&share[1..], 10).is_err());
        assert!(split_share(&[], 10).is_err());
        assert!(split_share(&[0u8; 100], 10).is_err());
    }

    #[test]
    fn x25519_agrees_and_refuses_zero_and_bad_lengths() {
        let a = X25519Half::generate().unwrap();
        let b = X25519Half::generate().unwrap();
        let (mut ab, mut ba) = (Vec::new(), Vec::new());
        a.agree_into(b.public(), &mut ab).unwrap();
        b.agree_into(a.public(), &mut ba).unwrap();
        assert_eq!(ab, ba);
        assert_eq!(ab.len(), X25519_LEN);

        let mut out = Vec::new();
        // The all-zero point and the point of order 2 (u = 1) give an
        // all-zero shared secret whatever our scalar is.
        assert!(a.agree_into(&[0u8; 32], &mut out).is_err());
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(a.agree_into(&one, &mut out).is_err());
        assert!(a.agree_into(&[9u8; 31], &mut out).is_err());
        assert!(a.agree_into(&[9u8; 33], &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn rfc7748_vector() {
        // RFC 7748 section 6.1: Alice's private key and Bob's public key.
        let alice: [u8; 32] =
            hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .unwrap()
                .try_into()
                .unwrap();
        let bob_pub =
            hex::decode("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
                .unwrap();
        let half = X25519Half::from_scalar(alice);
        assert_eq!(
            hex::encode(half.public()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let mut out = Vec::new();
        half.agree_into(&bob_pub, &mut out).unwrap();
        assert_eq!(
            hex::encode(out),
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        );
    }
}
