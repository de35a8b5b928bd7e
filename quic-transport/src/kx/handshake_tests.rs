//! The groups in real quinn handshakes over 127.0.0.1.
//!
//! The server proves its identity with an Ed25519 raw public key (RFC
//! 7250), pinned by the client, so no certificate machinery is needed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::crypto::rustls::QuicClientConfig;
use quinn::{ConnectionError, Endpoint};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    verify_tls13_signature_with_raw_key, ActiveKeyExchange, CryptoProvider, SharedSecret,
    SupportedKxGroup, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::{
    CertificateDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime,
};
use rustls::server::AlwaysResolvesServerRawPublicKeys;
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, Error, NamedGroup, SignatureScheme};

use super::*;

const TIMEOUT: Duration = Duration::from_secs(20);

/// Ed25519 PKCS#8 v1 for a fixed seed: the DER prefix below is
/// SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32) } }.
fn server_key() -> (Arc<dyn rustls::sign::SigningKey>, CertificateDer<'static>) {
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
    der.extend_from_slice(&[0x5a; 32]);
    let key = rustls::crypto::ring::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(der)).unwrap();
    let spki = key.public_key().unwrap().as_ref().to_vec();
    assert_eq!(
        &spki[..12],
        &hex::decode("302a300506032b6570032100").unwrap()[..]
    );
    (key, CertificateDer::from(spki))
}

#[derive(Debug)]
struct PinnedRawKey {
    spki: Vec<u8>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedRawKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if end_entity.as_ref() == self.spki.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::General("unexpected server key".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::General("TLS 1.2 is not used".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let spki = SubjectPublicKeyInfoDer::from(cert.as_ref());
        verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

fn server_config(provider: Arc<CryptoProvider>) -> quinn::ServerConfig {
    let (key, spki) = server_key();
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(Arc::new(
            CertifiedKey::new(vec![spki], key),
        ))));
    // The server's crypto as sshqd builds it (`tls::server_config`).
    quinn::ServerConfig::with_crypto(server_crypto(tls).unwrap())
}

fn client_config(provider: Arc<CryptoProvider>) -> quinn::ClientConfig {
    let (_, spki) = server_key();
    let verifier = PinnedRawKey {
        spki: spki.as_ref().to_vec(),
        algs: provider.signature_verification_algorithms,
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()))
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

struct Outcome {
    client: Result<quinn::Connection, ConnectionError>,
    server: Result<quinn::Connection, ConnectionError>,
}

/// One handshake between a fresh client and server endpoint.
async fn handshake(client: Arc<CryptoProvider>, server: Arc<CryptoProvider>) -> Outcome {
    let server_ep = Endpoint::server(server_config(server), localhost()).unwrap();
    let addr = server_ep.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        let incoming = server_ep.accept().await.unwrap();
        (incoming.await, server_ep)
    });
    let client_ep = Endpoint::client(localhost()).unwrap();
    let connecting = client_ep
        .connect_with(client_config(client), addr, "sshq-test")
        .unwrap();
    let client = tokio::time::timeout(TIMEOUT, connecting).await.unwrap();
    let (server, _server_ep) = tokio::time::timeout(TIMEOUT, accept)
        .await
        .unwrap()
        .unwrap();
    Outcome { client, server }
}

struct Observed {
    client: Arc<NegotiatedGroup>,
    server: Arc<NegotiatedGroup>,
    outcome: Outcome,
}

async fn observed_handshake(client_kex: &[&str], server_kex: &[&str]) -> Observed {
    let (client, server) = (NegotiatedGroup::new(), NegotiatedGroup::new());
    let outcome = handshake(
        crypto_provider_observed(client_kex, client.clone()).unwrap(),
        crypto_provider_observed(server_kex, server.clone()).unwrap(),
    )
    .await;
    Observed {
        client,
        server,
        outcome,
    }
}

async fn assert_negotiates(client_kex: &[&str], server_kex: &[&str], expect: &str) {
    let o = observed_handshake(client_kex, server_kex).await;
    let conn = o.outcome.client.expect("client handshake");
    o.outcome.server.expect("server handshake");
    assert_eq!(o.client.get(), Some(expect), "client side");
    assert_eq!(o.server.get(), Some(expect), "server side");

    // The keys agree both ways: data crosses.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(b"ping").await.unwrap();
    send.finish().unwrap();
    drop(recv.stop(0u32.into()));
}

#[tokio::test]
async fn default_negotiates_x25519_sntrup761() {
    assert_negotiates(DEFAULT_KEX, DEFAULT_KEX, "x25519-sntrup761").await;
}

#[tokio::test]
async fn mlkem_only_client_gets_mlkem_from_default_server() {
    assert_negotiates(&["x25519-mlkem768"], DEFAULT_KEX, "x25519-mlkem768").await;
}

#[tokio::test]
async fn x25519_only_client_gets_x25519_from_default_server() {
    assert_negotiates(&["x25519"], DEFAULT_KEX, "x25519").await;
}

/// Plain X25519 that counts how often a client starts it.
#[derive(Debug)]
struct CountingX25519(AtomicUsize);

static COUNTING_X25519: CountingX25519 = CountingX25519(AtomicUsize::new(0));

impl SupportedKxGroup for CountingX25519 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        self.0.fetch_add(1, Ordering::SeqCst);
        rustls::crypto::ring::kx_group::X25519.start()
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

#[tokio::test]
async fn default_client_and_x25519_only_server_use_the_hybrid_component() {
    // The server picks the X25519 share the hybrid also sent: the client
    // finishes through `complete_hybrid_component`.
    assert_negotiates(DEFAULT_KEX, &["x25519"], "x25519").await;

    // And no HelloRetryRequest: the client never had to start plain X25519.
    let client_seen = NegotiatedGroup::new();
    let base = crypto_provider_observed(&["x25519-sntrup761"], client_seen.clone()).unwrap();
    let mut client = (*base).clone();
    client.kx_groups.push(&COUNTING_X25519);
    let o = handshake(Arc::new(client), crypto_provider(&["x25519"]).unwrap()).await;
    o.client.expect("client handshake");
    o.server.expect("server handshake");
    assert_eq!(client_seen.get(), Some("x25519"));
    assert_eq!(
        COUNTING_X25519.0.load(Ordering::SeqCst),
        0,
        "HelloRetryRequest happened"
    );
}

#[tokio::test]
async fn default_client_and_mlkem_only_server_retry_with_mlkem() {
    // Neither share the client sent fits: HelloRetryRequest for ML-KEM.
    assert_negotiates(DEFAULT_KEX, &["x25519-mlkem768"], "x25519-mlkem768").await;
}

#[tokio::test]
async fn server_preference_does_not_override_client_order() {
    // rustls servers follow the client's order among common groups.
    assert_negotiates(
        &["x25519-mlkem768", "x25519-sntrup761"],
        DEFAULT_KEX,
        "x25519-mlkem768",
    )
    .await;
}

#[tokio::test]
async fn a_client_listing_x25519_first_with_only_its_share_is_retried_onto_the_hybrid() {
    // supported_groups = x25519, x25519-sntrup761; key_share = x25519 only.
    // rustls alone would follow the client's order and settle on X25519;
    // the draft (§4.4.4) wants the hybrid, through a HelloRetryRequest.
    let client_seen = NegotiatedGroup::new();
    let base = crypto_provider_observed(&["x25519-sntrup761"], client_seen.clone()).unwrap();
    let mut client = (*base).clone();
    client.kx_groups.insert(0, &COUNTING_X25519_FIRST);
    let before = COUNTING_X25519_FIRST.0.load(Ordering::SeqCst);
    let server_seen = NegotiatedGroup::new();
    let server = crypto_provider_observed(DEFAULT_KEX, server_seen.clone()).unwrap();
    let o = handshake(Arc::new(client), server).await;
    o.client.expect("client handshake");
    o.server.expect("server handshake");
    assert_eq!(client_seen.get(), Some("x25519-sntrup761"), "client side");
    assert_eq!(server_seen.get(), Some("x25519-sntrup761"), "server side");
    assert_eq!(
        COUNTING_X25519_FIRST.0.load(Ordering::SeqCst) - before,
        1,
        "the client's first (and only) share was X25519"
    );
}

/// Plain X25519 for the test above, counted apart from [`COUNTING_X25519`]
/// so that tests running in parallel do not disturb each other's counts.
static COUNTING_X25519_FIRST: CountingX25519 = CountingX25519(AtomicUsize::new(0));

#[tokio::test]
async fn a_client_sending_both_shares_gets_the_hybrid() {
    // The default client sends the sntrup761 hybrid share and its X25519
    // half; the server must not take the classical one. A client listing
    // x25519 before ML-KEM gets ML-KEM too (through a HelloRetryRequest).
    assert_negotiates(DEFAULT_KEX, DEFAULT_KEX, "x25519-sntrup761").await;
    assert_negotiates(
        &["x25519", "x25519-mlkem768"],
        DEFAULT_KEX,
        "x25519-mlkem768",
    )
    .await;
}

#[tokio::test]
async fn a_classical_only_client_still_connects() {
    assert_negotiates(&["x25519"], DEFAULT_KEX, "x25519").await;
    assert_negotiates(&["x25519", "x25519-mlkem768"], &["x25519"], "x25519").await;
}

#[tokio::test]
async fn no_common_group_fails_with_a_clear_error() {
    let client_kex = ["x25519-mlkem768"];
    let server_kex = ["x25519-sntrup761", "x25519"];
    let o = observed_handshake(&client_kex, &server_kex).await;
    let client_err = o.outcome.client.expect_err("client must fail");
    let server_err = o.outcome.server.expect_err("server must fail");
    assert_eq!((o.client.get(), o.server.get()), (None, None));

    let client_kex_err = explain_handshake_failure(&client_err, &client_kex)
        .unwrap_or_else(|| panic!("not explained: {client_err:?}"));
    assert_eq!(
        client_kex_err.to_string(),
        "TLS handshake failed: no key exchange algorithm in common with the server \
         (we offered: x25519-mlkem768); the server answered with TLS alert handshake_failure"
    );
    let server_kex_err = explain_handshake_failure(&server_err, &server_kex)
        .unwrap_or_else(|| panic!("not explained: {server_err:?}"));
    assert_eq!(
        server_kex_err.to_string(),
        "TLS handshake failed: no key exchange algorithm in common with the client \
         (we offered: x25519-sntrup761,x25519)"
    );
}

/// A client group that claims the x25519-sntrup761 codepoint but sends a
/// broken share.
#[derive(Debug)]
struct BrokenSntrupClient {
    zero_x25519: bool,
}

static SHORT_SHARE: BrokenSntrupClient = BrokenSntrupClient { zero_x25519: false };
static ZERO_X25519: BrokenSntrupClient = BrokenSntrupClient { zero_x25519: true };

struct BrokenActive(Vec<u8>);

impl SupportedKxGroup for BrokenSntrupClient {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let real = X25519Sntrup761.start()?;
        let mut share = real.pub_key().to_vec();
        if self.zero_x25519 {
            share[sntrup761_sizes::SNTRUP761_PUBLIC_KEY_LEN..].fill(0);
        } else {
            share.pop();
        }
        Ok(Box::new(BrokenActive(share)))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::from(X25519_SNTRUP761_CODEPOINT)
    }
}

impl ActiveKeyExchange for BrokenActive {
    fn complete(self: Box<Self>, _peer: &[u8]) -> Result<SharedSecret, Error> {
        Err(Error::General("test client cannot complete".into()))
    }

    fn pub_key(&self) -> &[u8] {
        &self.0
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::from(X25519_SNTRUP761_CODEPOINT)
    }
}

async fn assert_refused(group: &'static BrokenSntrupClient) {
    let mut client = rustls::crypto::ring::default_provider();
    client.kx_groups = vec![group];
    let server_seen = NegotiatedGroup::new();
    let server = crypto_provider_observed(DEFAULT_KEX, server_seen.clone()).unwrap();
    let o = handshake(Arc::new(client), server).await;

    let server_err = o.server.expect_err("server must refuse");
    match &server_err {
        ConnectionError::TransportError(te) => {
            assert_eq!(te.code, quinn::TransportErrorCode::crypto(47), "{te}");
            assert!(te.reason.contains("InvalidKeyShare"), "{te}");
        }
        other => panic!("unexpected server error {other:?}"),
    }
    match o.client.expect_err("client must fail") {
        ConnectionError::ConnectionClosed(close) => {
            // illegal_parameter
            assert_eq!(close.error_code, quinn::TransportErrorCode::crypto(47));
        }
        other => panic!("unexpected client error {other:?}"),
    }
    assert_eq!(server_seen.get(), None);
    assert!(explain_handshake_failure(&server_err, DEFAULT_KEX).is_none());
}

#[tokio::test]
async fn server_refuses_a_short_client_share() {
    assert_refused(&SHORT_SHARE).await;
}

#[tokio::test]
async fn server_refuses_an_all_zero_x25519_key() {
    assert_refused(&ZERO_X25519).await;
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn handshake_median(kex: &[&str], rounds: usize) -> Duration {
    let server_ep =
        Endpoint::server(server_config(crypto_provider(kex).unwrap()), localhost()).unwrap();
    let addr = server_ep.local_addr().unwrap();
    let server = server_ep.clone();
    let acceptor = tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            if let Ok(conn) = incoming.await {
                // Keep it until the client closes.
                tokio::spawn(async move { conn.closed().await });
            }
        }
    });
    let client_ep = Endpoint::client(localhost()).unwrap();
    let config = client_config(crypto_provider(kex).unwrap());
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds + 5 {
        let t0 = Instant::now();
        let conn = client_ep
            .connect_with(config.clone(), addr, "sshq-test")
            .unwrap()
            .await
            .unwrap();
        let dt = t0.elapsed();
        conn.close(0u32.into(), b"");
        if i >= 5 {
            times.push(dt);
        }
        // Space connections out as separate ones would be (and let the
        // sntrup761 pool refill, which waits 10 ms after a take).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server_ep.close(0u32.into(), b"");
    acceptor.abort();
    median(times)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing, run by hand: cargo test -p sshq-quic --release handshake_medians -- --ignored --nocapture"]
async fn handshake_medians() {
    let rounds = std::env::var("SSHQ_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(50);
    for kex in [&["x25519"][..], &["x25519-sntrup761"], &["x25519-mlkem768"]] {
        let m = handshake_median(kex, rounds).await;
        println!(
            "{}: median handshake {m:?} ({rounds} rounds)",
            kex.join(",")
        );
    }
}

fn op_median(rounds: usize, mut op: impl FnMut()) -> Duration {
    let times = (0..rounds)
        .map(|_| {
            let t0 = Instant::now();
            op();
            t0.elapsed()
        })
        .collect();
    median(times)
}

#[test]
#[ignore = "timing, run by hand: cargo test -p sshq-quic --release kx_operation_medians -- --ignored --nocapture"]
fn kx_operation_medians() {
    use pqcrypto_ntruprime::sntrup761;
    for (name, group) in [
        ("x25519", rustls::crypto::ring::kx_group::X25519),
        ("x25519-sntrup761", X25519_SNTRUP761),
        ("x25519-mlkem768", X25519_MLKEM768),
    ] {
        let start = op_median(200, || {
            std::hint::black_box(group.start().unwrap());
        });
        let share = group.start().unwrap().pub_key().to_vec();
        let server = op_median(200, || {
            std::hint::black_box(group.start_and_complete(&share).unwrap());
        });
        let complete = op_median(200, || {
            let c = group.start().unwrap();
            let s = group.start_and_complete(c.pub_key()).unwrap();
            std::hint::black_box(c.complete(&s.pub_key).unwrap());
        });
        println!(
            "{name}: start {start:?}, start_and_complete {server:?}, full exchange {complete:?}"
        );
    }
    let keygen = op_median(200, || {
        std::hint::black_box(sntrup761::keypair());
    });
    println!("sntrup761 keypair (what the pool hides): {keygen:?}");
}
