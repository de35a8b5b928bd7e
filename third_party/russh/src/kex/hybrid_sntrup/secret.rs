//! How sntrup761x25519-sha512 combines its two shared secrets. Kept apart,
//! with nothing but SHA-512, so that it can be checked against a known
//! answer on its own.

use sha2::Digest;

/// Length of K: a SHA-512 digest.
pub const COMBINED_SECRET_SIZE: usize = 64;

/// K = SHA-512(sntrup761 shared key ‖ X25519 shared secret), as OpenSSH's
/// kex_kem_sntrup761x25519_enc/_dec compute it. The caller owns wiping it.
pub fn combine_secrets(sntrup_key: &[u8], x25519_secret: &[u8; 32]) -> [u8; COMBINED_SECRET_SIZE] {
    let mut hasher = sha2::Sha512::new();
    hasher.update(sntrup_key);
    hasher.update(x25519_secret);
    let mut k = [0u8; COMBINED_SECRET_SIZE];
    k.copy_from_slice(&hasher.finalize());
    k
}
