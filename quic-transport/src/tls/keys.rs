//! The two DER encodings an SSH Ed25519 host key takes on its way into TLS:
//! the SubjectPublicKeyInfo that travels as the RFC 7250 raw public key, and
//! the PKCS#8 document rustls's key providers load private keys from.
//!
//! Both are fixed-layout for Ed25519 (RFC 8410), so they are written and
//! checked byte for byte instead of through a general ASN.1 parser: a peer's
//! SPKI is accepted only if it is exactly the 44 bytes an Ed25519 key encodes
//! to, which leaves no room for alternative encodings of the same key.

use sshq_core::ssh_key::public::Ed25519PublicKey;

/// DER of an Ed25519 SubjectPublicKeyInfo up to the key itself:
/// `SEQUENCE(42) { SEQUENCE(5) { OID 1.3.101.112 }, BIT STRING(33) { 0 unused bits, ...`
pub const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Length of an Ed25519 SubjectPublicKeyInfo: the prefix and the 32-byte key.
pub const ED25519_SPKI_LEN: usize = ED25519_SPKI_PREFIX.len() + Ed25519PublicKey::BYTE_SIZE;

/// DER of a PKCS#8 v2 (RFC 5958 `OneAsymmetricKey`) Ed25519 private key up
/// to the seed: `SEQUENCE(81) { INTEGER 1 (v2), SEQUENCE { OID 1.3.101.112 },
/// OCTET STRING(34) { OCTET STRING(32) { ...`
const PKCS8_V2_PREFIX: [u8; 16] = [
    0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Between seed and public key: `[1] IMPLICIT BIT STRING(33) { 0 unused bits, ...`
const PKCS8_V2_PUBLIC_KEY_TAG: [u8; 3] = [0x81, 0x21, 0x00];

/// Encodes an Ed25519 public key as the SubjectPublicKeyInfo DER that TLS
/// carries as a raw public key.
pub fn ed25519_spki(key: &Ed25519PublicKey) -> Vec<u8> {
    let mut der = Vec::with_capacity(ED25519_SPKI_LEN);
    der.extend_from_slice(&ED25519_SPKI_PREFIX);
    der.extend_from_slice(&key.0);
    der
}

/// Decodes a SubjectPublicKeyInfo sent by a peer, accepting only the exact
/// Ed25519 encoding ([`ED25519_SPKI_LEN`] bytes starting with
/// [`ED25519_SPKI_PREFIX`]). Anything else — an X.509 certificate, another
/// key type, trailing bytes — gives `None`.
pub fn parse_ed25519_spki(der: &[u8]) -> Option<Ed25519PublicKey> {
    // draft §5.1: accept exactly the 44-octet Ed25519 SubjectPublicKeyInfo and nothing else
    let key = der.strip_prefix(&ED25519_SPKI_PREFIX[..])?;
    let key: [u8; Ed25519PublicKey::BYTE_SIZE] = key.try_into().ok()?;
    Some(Ed25519PublicKey(key))
}

/// Builds the PKCS#8 v2 document for an Ed25519 key pair.
///
/// v2 rather than v1 because it carries the public key too, and *ring* then
/// checks that the seed really derives that public key: a host key file whose
/// halves disagree is refused when loaded instead of producing signatures no
/// client can verify. (*ring*, as used by rustls, also accepts v1; v2 is the
/// stricter choice.)
///
/// The result holds the private key: callers hand it to the key provider and
/// drop it promptly.
pub(crate) fn ed25519_pkcs8_v2(
    seed: &[u8; 32],
    public: &[u8; Ed25519PublicKey::BYTE_SIZE],
) -> Vec<u8> {
    let mut der = Vec::with_capacity(
        PKCS8_V2_PREFIX.len() + seed.len() + PKCS8_V2_PUBLIC_KEY_TAG.len() + public.len(),
    );
    der.extend_from_slice(&PKCS8_V2_PREFIX);
    der.extend_from_slice(seed);
    der.extend_from_slice(&PKCS8_V2_PUBLIC_KEY_TAG);
    der.extend_from_slice(public);
    der
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spki_round_trips_and_has_the_documented_layout() {
        let key = Ed25519PublicKey([7u8; 32]);
        let der = ed25519_spki(&key);
        assert_eq!(der.len(), 44);
        assert_eq!(hex::encode(&der[..12]), "302a300506032b6570032100");
        assert_eq!(parse_ed25519_spki(&der), Some(key));
    }

    #[test]
    fn spki_parser_refuses_everything_but_the_exact_ed25519_encoding() {
        let good = ed25519_spki(&Ed25519PublicKey([1u8; 32]));
        assert_eq!(parse_ed25519_spki(&[]), None);
        assert_eq!(parse_ed25519_spki(b"not a key at all"), None);
        // Truncated and over-long.
        assert_eq!(parse_ed25519_spki(&good[..43]), None);
        let mut long = good.clone();
        long.push(0);
        assert_eq!(parse_ed25519_spki(&long), None);
        // X25519 (OID 1.3.101.110) has the same length and layout: still refused.
        let mut x25519 = good.clone();
        x25519[8] = 0x6e;
        assert_eq!(parse_ed25519_spki(&x25519), None);
        // A nonzero "unused bits" byte.
        let mut unused_bits = good;
        unused_bits[11] = 1;
        assert_eq!(parse_ed25519_spki(&unused_bits), None);
    }

    #[test]
    fn pkcs8_v2_has_consistent_lengths() {
        let der = ed25519_pkcs8_v2(&[3u8; 32], &[4u8; 32]);
        // The outer SEQUENCE length byte covers everything after the 2-byte header.
        assert_eq!(der.len(), 2 + usize::from(der[1]));
        assert_eq!(der.len(), 83);
    }
}
