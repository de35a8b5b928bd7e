//! The userauth exporter value (draft §7.3) derived by hand from a recorded
//! TLS 1.3 handshake transcript, as RFC 8446 §7.1 and §7.5 define it, so
//! that another implementation can check its key schedule and exporter
//! call against sshq's octet for octet (draft §15.4).
//!
//! `draft-notes/test-vectors/exporter.txt` records one sshq/1 handshake
//! between sshq's own client and server TLS configurations, run in memory
//! with fixed inputs: X25519 scalars (those of the key-exchange vectors),
//! a counter in place of the random generator, and an Ed25519 host key
//! from a fixed seed. It holds the handshake messages (ClientHello up to
//! the server's Finished, as TLS carries them over QUIC), the X25519 shared
//! secret, every secret of the key schedule down to the exporter master
//! secret, and E. The tests here recompute all of it with an HKDF written
//! from RFC 5869 over `sha2` alone (no rustls code); a fresh handshake
//! checks that rustls's own exporter master secret (its key log) and
//! exported value equal the hand derivation from that handshake's
//! transcript; and a live quinn connection over 127.0.0.1 checks the same
//! for the exporter the production code calls.
//!
//! Regenerate (only if the label or the derivation changes):
//! `SSHQ_WRITE_VECTORS=1 cargo test -p sshq-quic --lib regenerate_exporter_vector -- --ignored`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{Connection, Endpoint, EndpointConfig};
use rustls::crypto::{
    ActiveKeyExchange, CryptoProvider, GetRandomFailed, SecureRandom, SharedSecret,
    SupportedKxGroup,
};
use rustls::pki_types::ServerName;
use rustls::quic::{ClientConnection, ServerConnection, Version};
use rustls::{KeyLog, NamedGroup};
use sha2::{Digest, Sha256};
use sshq_core::auth::ServerKeyVerifier;
use sshq_core::ssh_key::private::Ed25519Keypair;
use sshq_core::ssh_key::{PrivateKey, PublicKey};
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};

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

/// HKDF-Extract of RFC 5869 §2.2: HMAC(salt, IKM).
fn hkdf_extract(salt: &[u8], ikm: &[u8]) -> [u8; HASH_LEN] {
    hmac_sha256(salt, &[ikm])
}

/// Derive-Secret(secret, label, messages) of RFC 8446 §7.1.
fn derive_secret(secret: &[u8], label: &[u8], transcript: &[u8]) -> Vec<u8> {
    hkdf_expand_label(secret, label, &Sha256::digest(transcript), HASH_LEN)
}

/// The TLS 1.3 key schedule (RFC 8446 §7.1) of a full handshake without
/// PSK, from the (EC)DHE shared secret to the exporter master secret.
struct KeySchedule {
    early_secret: [u8; HASH_LEN],
    handshake_secret: [u8; HASH_LEN],
    master_secret: [u8; HASH_LEN],
    exporter_master_secret: Vec<u8>,
}

/// `transcript` is every handshake message from ClientHello to the
/// server's Finished, as sent.
fn key_schedule(ecdhe: &[u8], transcript: &[u8]) -> KeySchedule {
    let zeros = [0u8; HASH_LEN];
    let early_secret = hkdf_extract(&zeros, &zeros);
    let handshake_secret = hkdf_extract(&derive_secret(&early_secret, b"derived", b""), ecdhe);
    let master_secret = hkdf_extract(&derive_secret(&handshake_secret, b"derived", b""), &zeros);
    let exporter_master_secret = derive_secret(&master_secret, b"exp master", transcript);
    KeySchedule {
        early_secret,
        handshake_secret,
        master_secret,
        exporter_master_secret,
    }
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

/// One quinn connection between sshq's production TLS configurations.
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

/// The X25519 scalars of the key-exchange vectors (draft §15.1):
/// SHA-256 of these labels, before clamping.
const CLIENT_SCALAR_LABEL: &str = "sshq test vector client x25519 private";
const SERVER_SCALAR_LABEL: &str = "sshq test vector server x25519 private";

/// X25519 with a fixed scalar, so that the handshake can be replayed.
#[derive(Debug)]
struct FixedX25519 {
    scalar: [u8; 32],
}

struct FixedX25519Share {
    secret: StaticSecret,
    public: [u8; 32],
}

impl SupportedKxGroup for FixedX25519 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        let secret = StaticSecret::from(self.scalar);
        let public = X25519Public::from(&secret).to_bytes();
        Ok(Box::new(FixedX25519Share { secret, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

impl ActiveKeyExchange for FixedX25519Share {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, rustls::Error> {
        let peer: [u8; 32] = peer
            .try_into()
            .map_err(|_| rustls::Error::General("X25519 share of the wrong length".into()))?;
        let shared = self.secret.diffie_hellman(&X25519Public::from(peer));
        Ok(SharedSecret::from(&shared.as_bytes()[..]))
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

/// A counter in place of the random generator: block n is
/// SHA-256("<label> <n>").
#[derive(Debug)]
struct CountingRandom {
    label: &'static str,
    blocks: Mutex<u32>,
}

impl SecureRandom for CountingRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        let mut blocks = self.blocks.lock().map_err(|_| GetRandomFailed)?;
        for chunk in buf.chunks_mut(HASH_LEN) {
            let block = Sha256::digest(format!("{} {}", self.label, *blocks));
            chunk.copy_from_slice(&block[..chunk.len()]);
            *blocks += 1;
        }
        Ok(())
    }
}

/// A provider with one fixed-scalar X25519 group, TLS_AES_128_GCM_SHA256
/// and counted "randomness". Leaked: rustls wants `'static` parts, and
/// each handshake needs a counter of its own.
fn fixed_provider(scalar_label: &'static str, random_label: &'static str) -> Arc<CryptoProvider> {
    let group: &'static FixedX25519 = Box::leak(Box::new(FixedX25519 {
        scalar: Sha256::digest(scalar_label).into(),
    }));
    let random: &'static CountingRandom = Box::leak(Box::new(CountingRandom {
        label: random_label,
        blocks: Mutex::new(0),
    }));
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![group];
    provider.cipher_suites = vec![rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256];
    provider.secure_random = random;
    Arc::new(provider)
}

/// A handshake replayed in memory through sshq's production TLS
/// configurations (`client_tls`, `server_tls`) in QUIC mode.
struct Transcript {
    client_hello: Vec<u8>,
    /// ServerHello, EncryptedExtensions, Certificate, CertificateVerify,
    /// Finished: the server's first flight, as TLS hands it to QUIC.
    server_flight: Vec<u8>,
    client_random: Vec<u8>,
    /// What rustls logged as EXPORTER_SECRET.
    exporter_master_secret: Vec<u8>,
    client_value: Vec<u8>,
    server_value: Vec<u8>,
}

/// Everything one side writes until it waits for the peer, one piece per
/// key epoch (QUIC sends each in its own packet number space, and TLS
/// must read them that way).
fn flight(conn: &mut rustls::quic::Connection) -> Vec<Vec<u8>> {
    let mut pieces = Vec::new();
    loop {
        let mut piece = Vec::new();
        let key_change = conn.write_hs(&mut piece);
        if !piece.is_empty() {
            pieces.push(piece);
        }
        if key_change.is_none() {
            return pieces;
        }
    }
}

fn deliver(to: &mut rustls::quic::Connection, pieces: &[Vec<u8>]) {
    for piece in pieces {
        to.read_hs(piece).expect("handshake message accepted");
    }
}

fn replay_handshake() -> Transcript {
    let host_key = PrivateKey::from(Ed25519Keypair::from_seed(&[0x42; 32]));
    let server_provider = fixed_provider(SERVER_SCALAR_LABEL, "sshq exporter vector server random");
    let server_tls = server_tls(&host_key, server_provider).expect("server tls");
    let log = Arc::new(ExporterSecretLog::default());
    let client_provider = fixed_provider(CLIENT_SCALAR_LABEL, "sshq exporter vector client random");
    let mut client_tls =
        client_tls(Arc::new(AcceptAnyHostKey), client_provider).expect("client tls");
    client_tls.key_log = Arc::<ExporterSecretLog>::clone(&log);

    // Empty transport parameters: QUIC's own, opaque to TLS.
    let name = ServerName::try_from("localhost").expect("name");
    let mut client: rustls::quic::Connection =
        ClientConnection::new(Arc::new(client_tls), Version::V1, name, Vec::new())
            .expect("client")
            .into();
    let mut server: rustls::quic::Connection =
        ServerConnection::new(Arc::new(server_tls), Version::V1, Vec::new())
            .expect("server")
            .into();
    let client_hello = flight(&mut client);
    deliver(&mut server, &client_hello);
    let server_flight = flight(&mut server);
    deliver(&mut client, &server_flight);
    let client_finished = flight(&mut client);
    deliver(&mut server, &client_finished);
    assert!(!client.is_handshaking() && !server.is_handshaking());

    let export = |conn: &rustls::quic::Connection| {
        conn.export_keying_material(
            vec![0u8; USERAUTH_EXPORTER_LEN],
            USERAUTH_EXPORTER_LABEL,
            Some(b""),
        )
        .expect("export")
    };
    let (client_random, exporter_master_secret) = log
        .0
        .lock()
        .expect("lock")
        .clone()
        .expect("rustls logged EXPORTER_SECRET");
    Transcript {
        client_value: export(&client),
        server_value: export(&server),
        client_hello: client_hello.concat(),
        server_flight: server_flight.concat(),
        client_random,
        exporter_master_secret,
    }
}

fn x25519_shared(client_scalar: [u8; 32], server_scalar: [u8; 32]) -> [u8; 32] {
    let server_public = X25519Public::from(&StaticSecret::from(server_scalar));
    StaticSecret::from(client_scalar)
        .diffie_hellman(&server_public)
        .to_bytes()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_recorded_transcript_gives_the_recorded_exporter_value_by_hand() {
    let v = load();
    assert_eq!(
        field(&v, "cipher_suite"),
        [0x13, 0x01],
        "TLS_AES_128_GCM_SHA256"
    );
    assert_eq!(field(&v, "exporter_label"), USERAUTH_EXPORTER_LABEL);
    assert_eq!(field(&v, "exporter_context"), b"");

    // The (EC)DHE input: X25519 of the two fixed scalars, whose public
    // values are the key shares in the two hellos.
    let client_scalar = field(&v, "client_x25519_private");
    let server_scalar = field(&v, "server_x25519_private");
    assert_eq!(
        client_scalar,
        Sha256::digest(CLIENT_SCALAR_LABEL).as_slice()
    );
    assert_eq!(
        server_scalar,
        Sha256::digest(SERVER_SCALAR_LABEL).as_slice()
    );
    let (client_scalar, server_scalar): ([u8; 32], [u8; 32]) = (
        client_scalar.try_into().unwrap(),
        server_scalar.try_into().unwrap(),
    );
    let ecdhe = x25519_shared(client_scalar, server_scalar);
    assert_eq!(field(&v, "ecdhe_shared_secret"), ecdhe);
    let client_hello = field(&v, "client_hello");
    let server_flight = field(&v, "server_flight");
    let client_public = X25519Public::from(&StaticSecret::from(client_scalar));
    let server_public = X25519Public::from(&StaticSecret::from(server_scalar));
    assert!(contains(client_hello, client_public.as_bytes()));
    assert!(contains(server_flight, server_public.as_bytes()));
    // ClientHello (type 1): its random follows the 4-octet header and the
    // 2-octet legacy_version.
    assert_eq!(client_hello.first(), Some(&1));
    assert_eq!(client_hello.get(6..38), Some(field(&v, "client_random")));
    assert_eq!(server_flight.first(), Some(&2), "ServerHello first");

    let transcript = [client_hello, server_flight].concat();
    assert_eq!(
        field(&v, "transcript_hash"),
        Sha256::digest(&transcript).as_slice()
    );
    let ks = key_schedule(&ecdhe, &transcript);
    assert_eq!(field(&v, "early_secret"), ks.early_secret);
    assert_eq!(field(&v, "handshake_secret"), ks.handshake_secret);
    assert_eq!(field(&v, "master_secret"), ks.master_secret);
    let ems = field(&v, "exporter_master_secret");
    assert_eq!(ems, ks.exporter_master_secret.as_slice());
    assert_eq!(
        exporter_derived_secret(ems, USERAUTH_EXPORTER_LABEL),
        field(&v, "exporter_derived_secret")
    );
    let value = tls_exporter(ems, USERAUTH_EXPORTER_LABEL, b"", USERAUTH_EXPORTER_LEN);
    assert_eq!(value, field(&v, "exporter_value"));
    // Another label (any other exporter use) gives an unrelated value.
    assert_ne!(
        tls_exporter(ems, b"EXPORTER-sshq-userauth2", b"", USERAUTH_EXPORTER_LEN),
        value
    );
}

#[test]
fn a_replayed_handshake_exports_what_its_transcript_gives_by_hand() {
    let t = replay_handshake();
    let ecdhe = x25519_shared(
        Sha256::digest(CLIENT_SCALAR_LABEL).into(),
        Sha256::digest(SERVER_SCALAR_LABEL).into(),
    );
    let ks = key_schedule(&ecdhe, &[t.client_hello, t.server_flight].concat());
    assert_eq!(
        t.exporter_master_secret, ks.exporter_master_secret,
        "rustls's exporter master secret"
    );
    let by_hand = tls_exporter(
        &ks.exporter_master_secret,
        USERAUTH_EXPORTER_LABEL,
        b"",
        USERAUTH_EXPORTER_LEN,
    );
    assert_eq!(t.client_value, by_hand);
    assert_eq!(t.server_value, by_hand);
}

#[tokio::test]
async fn a_live_quic_connection_exports_what_the_hand_derivation_gives() {
    let recorded = record_handshake().await;
    assert_eq!(
        recorded.client_random.len(),
        32,
        "keyed by the ClientHello random"
    );
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

#[test]
#[ignore = "writes draft-notes/test-vectors/exporter.txt; run with SSHQ_WRITE_VECTORS=1"]
fn regenerate_exporter_vector() {
    assert!(
        std::env::var_os("SSHQ_WRITE_VECTORS").is_some(),
        "set SSHQ_WRITE_VECTORS=1 to overwrite the vector file"
    );
    let t = replay_handshake();
    let client_scalar: [u8; 32] = Sha256::digest(CLIENT_SCALAR_LABEL).into();
    let server_scalar: [u8; 32] = Sha256::digest(SERVER_SCALAR_LABEL).into();
    let ecdhe = x25519_shared(client_scalar, server_scalar);
    let transcript = [t.client_hello.as_slice(), &t.server_flight].concat();
    let ks = key_schedule(&ecdhe, &transcript);
    assert_eq!(ks.exporter_master_secret, t.exporter_master_secret);
    let ems = &ks.exporter_master_secret;
    let derived = exporter_derived_secret(ems, USERAUTH_EXPORTER_LABEL);
    let value = tls_exporter(ems, USERAUTH_EXPORTER_LABEL, b"", USERAUTH_EXPORTER_LEN);
    assert_eq!(value, t.client_value);
    let empty_hash = hex::encode(Sha256::digest(b""));
    let text = format!(
        "# The userauth exporter value E (draft Section 15.4) derived from one recorded\n\
         # sshq/1 handshake, per RFC 8446 Sections 7.1 and 7.5. The handshake ran in\n\
         # memory between sshq's own client and server TLS configurations in QUIC mode\n\
         # with fixed inputs: the X25519 scalars of Section 15.1, a counter in place of\n\
         # the random generator, the Ed25519 host key of seed 32 octets of 0x42.\n\
         # Checked by quic-transport/src/tls/exporter_vector.rs.\n\
         # cipher suite: TLS_AES_128_GCM_SHA256 (hash SHA-256); group x25519\n\
         cipher_suite = 1301\n\
         client_x25519_private = {}\n\
         server_x25519_private = {}\n\
         # X25519(client_x25519_private, server public): the (EC)DHE input\n\
         ecdhe_shared_secret = {}\n\
         # The handshake messages as TLS hands them to QUIC (no record layer):\n\
         # ClientHello; then ServerHello, EncryptedExtensions, Certificate,\n\
         # CertificateVerify, Finished\n\
         client_hello = {}\n\
         server_flight = {}\n\
         # the ClientHello random (SSLKEYLOGFILE lines are keyed by it)\n\
         client_random = {}\n\
         # SHA-256(client_hello || server_flight)\n\
         transcript_hash = {}\n\
         # HKDF-Extract(salt = 32 zero octets, IKM = 32 zero octets)\n\
         early_secret = {}\n\
         # HKDF-Extract(Derive-Secret(early_secret, \"derived\", \"\"), ecdhe_shared_secret)\n\
         handshake_secret = {}\n\
         # HKDF-Extract(Derive-Secret(handshake_secret, \"derived\", \"\"), 32 zero octets)\n\
         master_secret = {}\n\
         # Derive-Secret(master_secret, \"exp master\", client_hello || server_flight)\n\
         # (rustls logs it as EXPORTER_SECRET)\n\
         exporter_master_secret = {}\n\
         # \"EXPORTER-sshq-userauth\", 22 octets; the context is empty\n\
         exporter_label = {}\n\
         exporter_context =\n\
         # Transcript-Hash(\"\") and Hash(context): SHA-256 of the empty string\n\
         empty_transcript_hash = {empty_hash}\n\
         context_hash = {empty_hash}\n\
         # Derive-Secret(exporter_master_secret, label, \"\")\n\
         exporter_derived_secret = {}\n\
         # E = HKDF-Expand-Label(exporter_derived_secret, \"exporter\", context_hash, 32)\n\
         exporter_value = {}\n",
        hex::encode(client_scalar),
        hex::encode(server_scalar),
        hex::encode(ecdhe),
        hex::encode(&t.client_hello),
        hex::encode(&t.server_flight),
        hex::encode(&t.client_random),
        hex::encode(Sha256::digest(&transcript)),
        hex::encode(ks.early_secret),
        hex::encode(ks.handshake_secret),
        hex::encode(ks.master_secret),
        hex::encode(ems),
        hex::encode(USERAUTH_EXPORTER_LABEL),
        hex::encode(&derived),
        hex::encode(&value),
    );
    std::fs::write(vector_path(), text).expect("write exporter.txt");
}
