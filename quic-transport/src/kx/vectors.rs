//! Deterministic test vectors for both hybrids, kept as `name = hex` lines
//! in `draft-notes/test-vectors/` so the draft can quote them.
//!
//! - x25519-mlkem768: every input is fixed (X25519 scalars, the ML-KEM seed
//!   `d ‖ z` and encapsulation message `m`), so the whole exchange is
//!   replayed through the production code and every field compared.
//! - x25519-sntrup761: the C implementation draws its own randomness for
//!   key generation and encapsulation, so the key pair and ciphertext were
//!   made once and stored; decapsulation is deterministic, so the test
//!   re-derives the 64-byte secret from the private values and the
//!   ciphertext through the production client path.
//!
//! Regenerate (only if the format changes):
//! `SSHQ_WRITE_VECTORS=1 cargo test -p sshq-quic regenerate_vectors -- --ignored`.
//! The sntrup761 file then gets a new random key pair.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pqcrypto_ntruprime::sntrup761;
use pqcrypto_traits::kem::{Ciphertext as _, PublicKey as _, SecretKey as _, SharedSecret as _};
use rustls::crypto::ActiveKeyExchange;
use sha2::{Digest, Sha256};

use super::half::X25519Half;
use super::{mlkem, sntrup};

const SNTRUP_FILE: &str = "x25519-sntrup761.txt";
const MLKEM_FILE: &str = "x25519-mlkem768.txt";

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../draft-notes/test-vectors")
}

/// Parses `name = hex` lines; `#` starts a comment line.
fn load(file: &str) -> BTreeMap<String, Vec<u8>> {
    let text = std::fs::read_to_string(dir().join(file)).unwrap();
    let mut fields = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line.split_once('=').unwrap();
        let old = fields.insert(name.trim().to_owned(), hex::decode(value.trim()).unwrap());
        assert!(old.is_none(), "{name} twice");
    }
    fields
}

fn field<'a>(f: &'a BTreeMap<String, Vec<u8>>, name: &str) -> &'a [u8] {
    f.get(name)
        .unwrap_or_else(|| panic!("missing field {name}"))
}

fn arr<const N: usize>(bytes: &[u8]) -> [u8; N] {
    bytes.try_into().unwrap()
}

/// Fixed inputs: SHA-256 of a label, so anyone can recompute them.
fn fixed32(label: &str) -> [u8; 32] {
    Sha256::digest(label.as_bytes()).into()
}

fn fixed64(label: &str) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&fixed32(&format!("{label} 1")));
    out[32..].copy_from_slice(&fixed32(&format!("{label} 2")));
    out
}

fn x25519(ours: &X25519Half, theirs: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    ours.agree_into(theirs, &mut out).unwrap();
    out
}

#[test]
fn x25519_sntrup761_vector() {
    let f = load(SNTRUP_FILE);
    let client_x = X25519Half::from_scalar(arr(field(&f, "client_x25519_private")));
    let server_x = X25519Half::from_scalar(arr(field(&f, "server_x25519_private")));
    assert_eq!(client_x.public(), field(&f, "client_x25519_public"));
    assert_eq!(server_x.public(), field(&f, "server_x25519_public"));

    let pk = sntrup761::PublicKey::from_bytes(field(&f, "sntrup761_public_key")).unwrap();
    let sk = sntrup761::SecretKey::from_bytes(field(&f, "sntrup761_secret_key")).unwrap();
    let ct = sntrup761::Ciphertext::from_bytes(field(&f, "sntrup761_ciphertext")).unwrap();
    assert_eq!(
        sntrup761::decapsulate(&ct, &sk).as_bytes(),
        field(&f, "sntrup761_shared_key")
    );
    assert_eq!(
        x25519(&server_x, client_x.public()),
        field(&f, "x25519_shared_secret")
    );

    let mut server_share = ct.as_bytes().to_vec();
    server_share.extend_from_slice(server_x.public());
    assert_eq!(server_share, field(&f, "server_share"));
    assert_eq!(server_share.len(), 1071);

    // The production client path, from the private values.
    let client = Box::new(sntrup::ClientKx::new(pk, sk, client_x));
    assert_eq!(client.pub_key(), field(&f, "client_share"));
    assert_eq!(client.pub_key().len(), 1190);
    let secret = client.complete(&server_share).unwrap();
    assert_eq!(secret.secret_bytes(), field(&f, "shared_secret"));
    assert_eq!(secret.secret_bytes().len(), 64);
    let (pq, x) = field(&f, "shared_secret").split_at(32);
    assert_eq!(pq, field(&f, "sntrup761_shared_key"));
    assert_eq!(x, field(&f, "x25519_shared_secret"));
}

#[test]
fn x25519_mlkem768_vector() {
    let f = load(MLKEM_FILE);
    let client_x = X25519Half::from_scalar(arr(field(&f, "client_x25519_private")));
    let server_x = X25519Half::from_scalar(arr(field(&f, "server_x25519_private")));
    assert_eq!(client_x.public(), field(&f, "client_x25519_public"));
    assert_eq!(server_x.public(), field(&f, "server_x25519_public"));
    assert_eq!(
        x25519(&server_x, client_x.public()),
        field(&f, "x25519_shared_secret")
    );

    let client = Box::new(mlkem::ClientKx::from_seed(
        arr(field(&f, "mlkem768_seed")),
        client_x,
    ));
    assert_eq!(client.pub_key(), field(&f, "client_share"));
    assert_eq!(
        &client.pub_key()[..1184],
        field(&f, "mlkem768_encapsulation_key")
    );

    let server = mlkem::server_complete(
        client.pub_key(),
        arr(field(&f, "mlkem768_encapsulation_m")),
        server_x,
    )
    .unwrap();
    assert_eq!(server.pub_key, field(&f, "server_share"));
    assert_eq!(&server.pub_key[..1088], field(&f, "mlkem768_ciphertext"));
    assert_eq!(server.secret.secret_bytes(), field(&f, "shared_secret"));

    let secret = client.complete(&server.pub_key).unwrap();
    assert_eq!(secret.secret_bytes(), field(&f, "shared_secret"));
    let (pq, x) = field(&f, "shared_secret").split_at(32);
    assert_eq!(pq, field(&f, "mlkem768_shared_key"));
    assert_eq!(x, field(&f, "x25519_shared_secret"));
}

fn write(file: &str, header: &str, fields: &[(&str, Vec<u8>)]) {
    let mut text = String::from(header);
    for (name, value) in fields {
        text.push_str(&format!("{name} = {}\n", hex::encode(value)));
    }
    std::fs::create_dir_all(dir()).unwrap();
    std::fs::write(dir().join(file), text).unwrap();
}

#[test]
#[ignore = "writes draft-notes/test-vectors; run by hand with SSHQ_WRITE_VECTORS=1"]
fn regenerate_vectors() {
    if std::env::var_os("SSHQ_WRITE_VECTORS").is_none() {
        return;
    }
    let client_scalar = fixed32("sshq test vector client x25519 private");
    let server_scalar = fixed32("sshq test vector server x25519 private");
    let client_x = X25519Half::from_scalar(client_scalar);
    let server_x = X25519Half::from_scalar(server_scalar);
    let x_secret = x25519(&client_x, server_x.public());

    // x25519-sntrup761
    let (pk, sk) = sntrup761::keypair();
    let (ss, ct) = sntrup761::encapsulate(&pk);
    let mut client_share = pk.as_bytes().to_vec();
    client_share.extend_from_slice(client_x.public());
    let mut server_share = ct.as_bytes().to_vec();
    server_share.extend_from_slice(server_x.public());
    let mut secret = ss.as_bytes().to_vec();
    secret.extend_from_slice(&x_secret);
    write(
        SNTRUP_FILE,
        SNTRUP_HEADER,
        &[
            ("client_x25519_private", client_scalar.to_vec()),
            ("client_x25519_public", client_x.public().to_vec()),
            ("server_x25519_private", server_scalar.to_vec()),
            ("server_x25519_public", server_x.public().to_vec()),
            ("sntrup761_secret_key", sk.as_bytes().to_vec()),
            ("sntrup761_public_key", pk.as_bytes().to_vec()),
            ("sntrup761_ciphertext", ct.as_bytes().to_vec()),
            ("sntrup761_shared_key", ss.as_bytes().to_vec()),
            ("x25519_shared_secret", x_secret.clone()),
            ("shared_secret", secret),
            ("client_share", client_share),
            ("server_share", server_share),
        ],
    );

    // x25519-mlkem768
    let seed = fixed64("sshq test vector mlkem768 seed");
    let m = fixed32("sshq test vector mlkem768 m");
    let client = mlkem::ClientKx::from_seed(seed, X25519Half::from_scalar(client_scalar));
    let server =
        mlkem::server_complete(client.pub_key(), m, X25519Half::from_scalar(server_scalar))
            .unwrap();
    let secret = server.secret.secret_bytes().to_vec();
    write(
        MLKEM_FILE,
        MLKEM_HEADER,
        &[
            ("client_x25519_private", client_scalar.to_vec()),
            ("client_x25519_public", client_x.public().to_vec()),
            ("server_x25519_private", server_scalar.to_vec()),
            ("server_x25519_public", server_x.public().to_vec()),
            ("mlkem768_seed", seed.to_vec()),
            (
                "mlkem768_encapsulation_key",
                client.pub_key()[..1184].to_vec(),
            ),
            ("mlkem768_encapsulation_m", m.to_vec()),
            ("mlkem768_ciphertext", server.pub_key[..1088].to_vec()),
            ("mlkem768_shared_key", secret[..32].to_vec()),
            ("x25519_shared_secret", x_secret),
            ("shared_secret", secret),
            ("client_share", client.pub_key().to_vec()),
            ("server_share", server.pub_key),
        ],
    );
}

const SNTRUP_HEADER: &str = "\
# sshq test vector: TLS 1.3 key exchange group x25519-sntrup761
# NamedGroup 0xFE61 (private use). All values hex; one `name = hex` per line.
# client_share = sntrup761_public_key (1158) || client_x25519_public (32) = 1190 bytes
# server_share = sntrup761_ciphertext (1039) || server_x25519_public (32) = 1071 bytes
# shared_secret = sntrup761_shared_key (32) || x25519_shared_secret (32) = 64 bytes,
#   given to the TLS 1.3 key schedule unhashed (as for X25519MLKEM768).
# X25519 private keys are RFC 7748 scalars before clamping:
#   client = SHA-256(\"sshq test vector client x25519 private\"),
#   server = SHA-256(\"sshq test vector server x25519 private\").
# The sntrup761 key pair and ciphertext are random (made once, PQClean format);
# decapsulate(sntrup761_ciphertext, sntrup761_secret_key) = sntrup761_shared_key.
";

const MLKEM_HEADER: &str = "\
# sshq test vector: TLS 1.3 key exchange group X25519MLKEM768 (0x11EC,
# draft-ietf-tls-ecdhe-mlkem). All values hex; one `name = hex` per line.
# client_share = mlkem768_encapsulation_key (1184) || client_x25519_public (32) = 1216 bytes
# server_share = mlkem768_ciphertext (1088) || server_x25519_public (32) = 1120 bytes
# shared_secret = mlkem768_shared_key (32) || x25519_shared_secret (32) = 64 bytes, unhashed.
# X25519 private keys as in x25519-sntrup761.txt (same labels).
# mlkem768_seed = d || z (FIPS 203 ML-KEM.KeyGen_internal):
#   d = SHA-256(\"sshq test vector mlkem768 seed 1\"), z = SHA-256(\"sshq test vector mlkem768 seed 2\").
# mlkem768_encapsulation_m = SHA-256(\"sshq test vector mlkem768 m\") (ML-KEM.Encaps_internal).
";
