//! The userauth exporter value (draft §7.3) derived by hand from a recorded
//! TLS 1.3 handshake, as RFC 8446 §7.5 defines it, so that another
//! implementation can check its exporter against sshq's octet for octet.
//!
//! `draft-notes/test-vectors/exporter.txt` records one real sshq handshake:
//! the client random and the exporter master secret as rustls logged them
//! (the `EXPORTER_SECRET` line of an SSLKEYLOGFILE), and the value both
//! endpoints exported. The tests here recompute that value with an HKDF
//! written from RFC 5869 and RFC 8446 over `sha2` alone (no rustls code),
//! and check on a live connection over 127.0.0.1 that the production
//! configurations export exactly what the hand derivation gives.
//!
//! Regenerate (only if the label or the derivation changes):
//! `SSHQ_WRITE_VECTORS=1 cargo test -p sshq-quic --lib regenerate_exporter_vector -- --ignored`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{Connection, Endpoint, EndpointConfig};
use rustls::KeyLog;
use sha2::{Digest, Sha256};
use sshq_core::auth::ServerKeyVerifier;
use sshq_core::ssh_key::private::Ed25519Keypair;
use sshq_core::ssh_key::{PrivateKey, PublicKey};

use super::*;
use crate::wire::{USERAUTH_EXPORTER_LABEL, USERAUTH_EXPORTER_LEN};

const FILE: &str = "exporter.txt";
/// SHA-256's block and output sizes (the hash of TLS_AES_128_GCM_SHA256).
const BLOCK: usize = 64;
const HASH_LEN: usize = 32;

fn hmac_sha256(key: &[u8], message: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut padded = [0u8; BLOCK];
    if key.len() > BLOCK {
        padded[..HASH_LEN].copy_from_slice(&Sha256::digest(key));
    } else {
        padded[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(padded.map(|b| b ^ 0x36));
    for part in message {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(padded.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// HKDF-Expand of RFC 5869 §2.3.
fn hkdf_expand(prk: &[u8], info: &[u8], length: usize) -> Vec<u8> {
    let mut okm = Vec::with_capacity(length);
    let mut previous: Vec<u8> = Vec::new();
    let mut counter = 1u8;
    while okm.len() < length {
        let block = hmac_sha256(prk, &[&previous, info, &[counter]]);
        okm.extend_from_slice(&block);
        previous = block.to_vec();
        counter += 1;
    }
    okm.truncate(length);
    okm
}

/// HKDF-Expand-Label of RFC 8446 §7.1: the label gets the "tls13 " prefix.
fn hkdf_expand_label(secret: &[u8], label: &[u8], context: &[u8], length: usize) -> Vec<u8> {
    let full_label = [b"tls13 ".as_slice(), label].concat();
    let mut info = Vec::new();
    info.extend_from_slice(&u16::try_from(length).unwrap().to_be_bytes());
    info.push(u8::try_from(full_label.len()).unwrap());
    info.extend_from_slice(&full_label);
    info.push(u8::try_from(context.len()).unwrap());
    info.extend_from_slice(context);
    hkdf_expand(secret, &info, length)
}

/// Derive-Secret(exporter_master_secret, label, "") of RFC 8446 §7.5.
fn exporter_derived_secret(exporter_master_secret: &[u8], label: &[u8]) -> Vec<u8> {
    let empty_transcript = Sha256::digest(b"");
    hkdf_expand_label(exporter_master_secret, label, &empty_transcript, HASH_LEN)
}

/// TLS-Exporter(label, context, length) of RFC 8446 §7.5.
fn tls_exporter(
    exporter_master_secret: &[u8],
    label: &[u8],
    context: &[u8],
    length: usize,
) -> Vec<u8> {
    let derived = exporter_derived_secret(exporter_master_secret, label);
    hkdf_expand_label(&derived, b"exporter", &Sha256::digest(context), length)
}

fn vector_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../draft-notes/test-vectors")
        .join(FILE)
}

/// Parses `name = hex` lines; `#` starts a comment line.
fn load() -> BTreeMap<String, Vec<u8>> {
    let text = std::fs::read_to_string(vector_path()).expect("read exporter.txt");
    let mut fields = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line.split_once('=').expect("name = hex");
        let value = hex::decode(value.trim()).expect("hex value");
        assert!(
            fields.insert(name.trim().to_owned(), value).is_none(),
            "{name} twice"
        );
    }
    fields
}

fn field<'a>(fields: &'a BTreeMap<String, Vec<u8>>, name: &str) -> &'a [u8] {
    fields
        .get(name)
        .unwrap_or_else(|| panic!("missing field {name}"))
}

/// Keeps what rustls logs as `EXPORTER_SECRET` (SSLKEYLOGFILE format).
#[derive(Debug, Default)]
struct ExporterSecretLog(Mutex<Option<(Vec<u8>, Vec<u8>)>>);

impl KeyLog for ExporterSecretLog {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        if label == "EXPORTER_SECRET" {
            *self.0.lock().expect("lock") = Some((client_random.to_vec(), secret.to_vec()));
        }
    }
}

struct AcceptAnyHostKey;

impl ServerKeyVerifier for AcceptAnyHostKey {
    fn verify(&self, _key: &PublicKey) -> bool {
        true
    }
}

/// One recorded handshake between sshq's production TLS configurations.
struct Recorded {
    client_random: Vec<u8>,
    exporter_master_secret: Vec<u8>,
    client_value: [u8; USERAUTH_EXPORTER_LEN],
    server_value: [u8; USERAUTH_EXPORTER_LEN],
}

fn endpoint(server: Option<quinn::ServerConfig>) -> Endpoint {
    let socket = bind_endpoint_socket(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
    Endpoint::new(
        EndpointConfig::default(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .expect("endpoint")
}

fn userauth_exporter(conn: &Connection) -> [u8; USERAUTH_EXPORTER_LEN] {
    let mut value = [0u8; USERAUTH_EXPORTER_LEN];
    conn.export_keying_material(&mut value, USERAUTH_EXPORTER_LABEL, b"")
        .expect("export");
    value
}

async fn record_handshake() -> Recorded {
    // sshq's own provider: its default groups, AES-128-GCM (SHA-256) first.
    let provider = crate::kx::crypto_provider(crate::kx::DEFAULT_KEX).expect("provider");
    let host_key = PrivateKey::from(Ed25519Keypair::from_seed(&[0x42; 32]));
    let server_tls = server_tls(&host_key, Arc::clone(&provider)).expect("server tls");
    let server = endpoint(Some(server_config(server_tls).expect("server config")));
    let log = Arc::new(ExporterSecretLog::default());
    let mut client_tls = client_tls(Arc::new(AcceptAnyHostKey), provider).expect("client tls");
    client_tls.key_log = Arc::<ExporterSecretLog>::clone(&log);
    let mut client = endpoint(None);
    client.set_default_client_config(client_config(client_tls).expect("client config"));

    let addr = server.local_addr().expect("server address");
    let both = async {
        tokio::join!(
            async { client.connect(addr, "localhost").expect("connect").await },
            async { server.accept().await.expect("incoming").await },
        )
    };
    let (c, s) = tokio::time::timeout(Duration::from_secs(20), both)
        .await
        .expect("handshake timed out");
    let (c, s) = (c.expect("client connects"), s.expect("server accepts"));
    let (client_random, exporter_master_secret) = log
        .0
        .lock()
        .expect("lock")
        .clone()
        .expect("rustls logged EXPORTER_SECRET");
    Recorded {
        client_random,
        exporter_master_secret,
        client_value: userauth_exporter(&c),
        server_value: userauth_exporter(&s),
    }
}

#[test]
fn hkdf_expand_matches_rfc5869_test_case_1() {
    let prk =
        hex::decode("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5").unwrap();
    let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
    let okm =
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865";
    assert_eq!(hex::encode(hkdf_expand(&prk, &info, 42)), okm);
    let salt = hex::decode("000102030405060708090a0b0c").unwrap();
    assert_eq!(
        hmac_sha256(&salt, &[&[0x0b; 22]]).to_vec(),
        prk,
        "HKDF-Extract = HMAC(salt, IKM)"
    );
}

#[test]
fn the_recorded_exporter_value_is_derived_by_hand_from_the_exporter_master_secret() {
    let v = load();
    assert_eq!(
        field(&v, "cipher_suite"),
        [0x13, 0x01],
        "TLS_AES_128_GCM_SHA256"
    );
    assert_eq!(field(&v, "exporter_label"), USERAUTH_EXPORTER_LABEL);
    assert_eq!(field(&v, "exporter_context"), b"");
    assert_eq!(field(&v, "client_random").len(), 32);
    let ems = field(&v, "exporter_master_secret");
    assert_eq!(ems.len(), HASH_LEN);
    assert_eq!(
        field(&v, "empty_transcript_hash"),
        Sha256::digest(b"").as_slice()
    );
    assert_eq!(field(&v, "context_hash"), Sha256::digest(b"").as_slice());
    assert_eq!(
        exporter_derived_secret(ems, USERAUTH_EXPORTER_LABEL),
        field(&v, "exporter_derived_secret")
    );
    let value = tls_exporter(ems, USERAUTH_EXPORTER_LABEL, b"", USERAUTH_EXPORTER_LEN);
    assert_eq!(value, field(&v, "exporter_value"));
    // A different label (or any other exporter use) gives an unrelated value.
    assert_ne!(
        tls_exporter(ems, b"EXPORTER-sshq-userauth2", b"", USERAUTH_EXPORTER_LEN),
        value
    );
}

#[tokio::test]
async fn a_live_handshake_exports_what_the_hand_derivation_gives() {
    let recorded = record_handshake().await;
    assert_eq!(recorded.client_value, recorded.server_value);
    assert_eq!(
        recorded.exporter_master_secret.len(),
        HASH_LEN,
        "sshq negotiates a SHA-256 suite first"
    );
    let by_hand = tls_exporter(
        &recorded.exporter_master_secret,
        USERAUTH_EXPORTER_LABEL,
        b"",
        USERAUTH_EXPORTER_LEN,
    );
    assert_eq!(recorded.client_value.as_slice(), by_hand.as_slice());
}

#[tokio::test]
#[ignore = "writes draft-notes/test-vectors/exporter.txt; run with SSHQ_WRITE_VECTORS=1"]
async fn regenerate_exporter_vector() {
    assert!(
        std::env::var_os("SSHQ_WRITE_VECTORS").is_some(),
        "set SSHQ_WRITE_VECTORS=1 to overwrite the vector file"
    );
    let r = record_handshake().await;
    let ems = &r.exporter_master_secret;
    let derived = exporter_derived_secret(ems, USERAUTH_EXPORTER_LABEL);
    let value = tls_exporter(ems, USERAUTH_EXPORTER_LABEL, b"", USERAUTH_EXPORTER_LEN);
    assert_eq!(value.as_slice(), r.client_value.as_slice());
    let text = format!(
        "# The userauth exporter value E (draft Section 7.3) of one recorded sshq/1\n\
         # handshake over 127.0.0.1 (sshq's own client and server TLS configurations,\n\
         # host key from the Ed25519 seed 32 octets of 0x42), derived per RFC 8446\n\
         # Section 7.5. client_random and exporter_master_secret are what rustls\n\
         # logged (SSLKEYLOGFILE line: EXPORTER_SECRET <client_random> <secret>).\n\
         # Checked by quic-transport/src/tls/exporter_vector.rs.\n\
         # cipher suite of the recorded handshake: TLS_AES_128_GCM_SHA256 (hash SHA-256)\n\
         cipher_suite = 1301\n\
         client_random = {}\n\
         exporter_master_secret = {}\n\
         # \"EXPORTER-sshq-userauth\", 22 octets; the context is empty\n\
         exporter_label = {}\n\
         exporter_context = \n\
         # Transcript-Hash(\"\") = SHA-256 of the empty string\n\
         empty_transcript_hash = {}\n\
         # Derive-Secret(exporter_master_secret, label, \"\")\n\
         #   = HKDF-Expand-Label(exporter_master_secret, label, SHA-256(\"\"), 32)\n\
         exporter_derived_secret = {}\n\
         # Hash(context) = SHA-256 of the empty context\n\
         context_hash = {}\n\
         # E = HKDF-Expand-Label(exporter_derived_secret, \"exporter\", context_hash, 32)\n\
         exporter_value = {}\n",
        hex::encode(&r.client_random),
        hex::encode(ems),
        hex::encode(USERAUTH_EXPORTER_LABEL),
        hex::encode(Sha256::digest(b"")),
        hex::encode(&derived),
        hex::encode(Sha256::digest(b"")),
        hex::encode(&value),
    );
    std::fs::write(vector_path(), text).expect("write exporter.txt");
}
