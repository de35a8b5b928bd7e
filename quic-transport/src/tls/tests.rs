//! End-to-end tests with real quinn endpoints on 127.0.0.1, real
//! `ssh-keygen` host keys and (for the X.509 cases) real `openssl`
//! certificates.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{Connection, ConnectionError, Endpoint, EndpointConfig, TransportErrorCode};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::AlwaysResolvesServerRawPublicKeys;
use rustls::sign::CertifiedKey;
use sshq_core::auth::ServerKeyVerifier;
use sshq_core::ssh_key::{PrivateKey, PublicKey};

use super::server::host_key_certified;
use super::*;

/// TLS alert numbers, as QUIC carries them (error code 0x100 + alert).
const ALERT_ACCESS_DENIED: u8 = 49;
const ALERT_NO_APPLICATION_PROTOCOL: u8 = 120;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Runs `ssh-keygen -t <kind>` into `dir/name` and reads both halves back.
fn ssh_keygen(dir: &Path, name: &str, kind: &str, passphrase: &str) -> (PrivateKey, PublicKey) {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            kind,
            "-N",
            passphrase,
            "-C",
            "test host key",
            "-f",
        ])
        .arg(&path)
        .status()
        .expect("run ssh-keygen");
    assert!(status.success(), "ssh-keygen -t {kind} failed");
    let private = std::fs::read_to_string(&path).expect("read private key");
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("read public key");
    (
        PrivateKey::from_openssh(private).expect("parse private key"),
        PublicKey::from_openssh(public.trim()).expect("parse public key"),
    )
}

/// A self-signed Ed25519 X.509 certificate and its PKCS#8 key, by `openssl`.
fn openssl_x509(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let key_pem = dir.join("x509.key.pem");
    let cert_der = dir.join("x509.cert.der");
    let key_der = dir.join("x509.key.der");
    let run = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .output()
            .expect("run openssl");
        assert!(
            output.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let (key_pem_s, cert_der_s, key_der_s) = (
        key_pem.to_str().expect("utf-8 path"),
        cert_der.to_str().expect("utf-8 path"),
        key_der.to_str().expect("utf-8 path"),
    );
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ed25519",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-days",
        "1",
        "-keyout",
        key_pem_s,
        "-outform",
        "DER",
        "-out",
        cert_der_s,
    ]);
    run(&[
        "pkey", "-in", key_pem_s, "-outform", "DER", "-out", key_der_s,
    ]);
    (
        std::fs::read(cert_der).expect("read cert"),
        std::fs::read(key_der).expect("read key"),
    )
}

/// A host-key policy that answers `accept` and records what it was asked.
struct RecordingPolicy {
    accept: bool,
    seen: Mutex<Vec<PublicKey>>,
}

impl RecordingPolicy {
    fn new(accept: bool) -> Arc<Self> {
        Arc::new(RecordingPolicy {
            accept,
            seen: Mutex::new(Vec::new()),
        })
    }

    fn seen(&self) -> Vec<PublicKey> {
        self.seen.lock().expect("lock").clone()
    }
}

impl ServerKeyVerifier for RecordingPolicy {
    fn verify(&self, key: &PublicKey) -> bool {
        self.seen.lock().expect("lock").push(key.clone());
        self.accept
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn server_endpoint(tls: rustls::ServerConfig) -> Endpoint {
    let config = server_config(tls).expect("quinn server config");
    let socket = bind_endpoint_socket(loopback()).expect("bind server socket");
    Endpoint::new(
        EndpointConfig::default(),
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .expect("server endpoint")
}

fn client_endpoint(tls: rustls::ClientConfig) -> Endpoint {
    let socket = bind_endpoint_socket(loopback()).expect("bind client socket");
    let mut endpoint = Endpoint::new(
        EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .expect("client endpoint");
    endpoint.set_default_client_config(client_config(tls).expect("quinn client config"));
    endpoint
}

/// One connection attempt; returns (client side, server side).
async fn handshake(
    server: &Endpoint,
    client: &Endpoint,
) -> (
    Result<Connection, ConnectionError>,
    Result<Connection, ConnectionError>,
) {
    let addr = server.local_addr().expect("server address");
    let both = async {
        tokio::join!(
            async {
                client
                    .connect(addr, "localhost")
                    .expect("start connecting")
                    .await
            },
            async { server.accept().await.expect("an incoming connection").await },
        )
    };
    tokio::time::timeout(Duration::from_secs(20), both)
        .await
        .expect("handshake timed out")
}

/// The server and client of an ordinary sshq connection.
fn sshq_pair(
    host_key: &PrivateKey,
    policy: Arc<RecordingPolicy>,
) -> (Endpoint, Endpoint, HostKeyOutcome) {
    let server = server_endpoint(server_tls(host_key, provider()).expect("server tls"));
    let (tls, outcome) = client_tls_with_outcome(policy, provider()).expect("client tls");
    (server, client_endpoint(tls), outcome)
}

/// A server whose resolver serves `cert` as its raw public key, signing with `host_key`.
fn raw_key_server(cert: Vec<u8>, host_key: &PrivateKey) -> Endpoint {
    let signing_key = host_key_certified(host_key, &provider())
        .expect("signing key")
        .key;
    let certified = CertifiedKey::new(vec![CertificateDer::from(cert)], signing_key);
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(Arc::new(
            certified,
        ))));
    tls.alpn_protocols = vec![ALPN.to_vec()];
    server_endpoint(tls)
}

fn closed_with_alert(error: &ConnectionError, alert: u8) -> bool {
    let expected = TransportErrorCode::crypto(alert);
    match error {
        ConnectionError::ConnectionClosed(close) => close.error_code == expected,
        ConnectionError::TransportError(e) => e.code == expected,
        _ => false,
    }
}

#[tokio::test]
async fn handshake_with_an_ssh_keygen_host_key_checks_exactly_that_key_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host_key, host_pub) = ssh_keygen(dir.path(), "host", "ed25519", "");
    let policy = RecordingPolicy::new(true);
    let (server, client, outcome) = sshq_pair(&host_key, policy.clone());

    let (client_conn, server_conn) = handshake(&server, &client).await;
    let client_conn = client_conn.expect("client connects");
    let server_conn = server_conn.expect("server accepts");

    let seen = policy.seen();
    assert_eq!(seen.len(), 1, "the policy is asked exactly once");
    assert_eq!(
        seen[0].key_data(),
        host_pub.key_data(),
        "about the key in the .pub file"
    );
    assert_eq!(
        seen[0].to_openssh().expect("encode"),
        host_pub
            .to_openssh()
            .expect("encode")
            .trim_end_matches(" test host key"),
    );
    assert!(
        matches!(outcome.verdict(), HostKeyVerdict::Accepted(k) if k.key_data() == host_pub.key_data())
    );
    assert!(!outcome.host_key_rejected());

    for conn in [&client_conn, &server_conn] {
        let data = conn
            .handshake_data()
            .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .expect("rustls handshake data");
        assert_eq!(data.protocol.as_deref(), Some(ALPN));
    }
    client_conn.close(0u32.into(), b"done");
}

#[tokio::test]
async fn a_refused_host_key_fails_the_connection_and_the_outcome_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host_key, host_pub) = ssh_keygen(dir.path(), "host", "ed25519", "");
    let policy = RecordingPolicy::new(false);
    let (server, client, outcome) = sshq_pair(&host_key, policy.clone());

    let (client_conn, server_conn) = handshake(&server, &client).await;
    assert!(client_conn.is_err(), "the client must not connect");
    let server_error = server_conn.expect_err("the server sees the refusal");
    assert!(
        closed_with_alert(&server_error, ALERT_ACCESS_DENIED),
        "refusal is an access_denied alert, got {server_error:?}"
    );
    assert_eq!(policy.seen().len(), 1);
    assert!(outcome.host_key_rejected());
    assert!(
        matches!(outcome.verdict(), HostKeyVerdict::Rejected(k) if k.key_data() == host_pub.key_data())
    );
}

#[test]
fn an_ecdsa_host_key_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host_key, _) = ssh_keygen(dir.path(), "host", "ecdsa", "");
    let error = server_tls(&host_key, provider()).expect_err("ECDSA must be refused");
    assert!(
        matches!(&error, TlsError::UnsupportedHostKey { algorithm } if algorithm.starts_with("ecdsa-sha2-"))
    );
    let message = error.to_string();
    assert!(message.contains("needs an Ed25519 host key"), "{message}");
    assert!(message.contains("ssh-keygen -t ed25519"), "{message}");
}

#[test]
fn an_encrypted_host_key_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host_key, _) = ssh_keygen(dir.path(), "host", "ed25519", "secret passphrase");
    let error = server_tls(&host_key, provider()).expect_err("encrypted key must be refused");
    assert!(matches!(error, TlsError::EncryptedHostKey), "{error}");
}

async fn assert_alpn_refused(client_alpn: Vec<Vec<u8>>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host_key, _) = ssh_keygen(dir.path(), "host", "ed25519", "");
    let server = server_endpoint(server_tls(&host_key, provider()).expect("server tls"));
    let policy = RecordingPolicy::new(true);
    let mut tls = client_tls(policy.clone(), provider()).expect("client tls");
    tls.alpn_protocols = client_alpn;
    let client = client_endpoint(tls);

    let (client_conn, server_conn) = handshake(&server, &client).await;
    let client_error = client_conn.expect_err("the client must be refused");
    assert!(
        closed_with_alert(&client_error, ALERT_NO_APPLICATION_PROTOCOL),
        "expected no_application_protocol, got {client_error:?}"
    );
    assert!(server_conn.is_err());
    assert!(
        policy.seen().is_empty(),
        "refused before the host key is looked at"
    );
}

#[tokio::test]
async fn a_client_with_another_alpn_is_refused() {
    assert_alpn_refused(vec![b"h3".to_vec(), b"sshq/2".to_vec()]).await;
}

#[tokio::test]
async fn a_client_without_alpn_is_refused() {
    assert_alpn_refused(Vec::new()).await;
}

#[tokio::test]
async fn exported_keying_material_matches_per_connection_and_differs_between_them() {
    const LABEL: &[u8] = b"EXPORTER-sshq-userauth";
    let dir = tempfile::tempdir().expect("tempdir");
    let (host_key, _) = ssh_keygen(dir.path(), "host", "ed25519", "");
    let (server, client, _) = sshq_pair(&host_key, RecordingPolicy::new(true));

    let mut per_connection = Vec::new();
    for _ in 0..2 {
        let (c, s) = handshake(&server, &client).await;
        let (c, s) = (c.expect("client connects"), s.expect("server accepts"));
        let mut client_value = [0u8; 32];
        let mut server_value = [0u8; 32];
        c.export_keying_material(&mut client_value, LABEL, b"")
            .expect("client export");
        s.export_keying_material(&mut server_value, LABEL, b"")
            .expect("server export");
        assert_eq!(
            client_value, server_value,
            "both ends derive the same value"
        );
        assert_ne!(client_value, [0u8; 32]);
        per_connection.push(client_value);
    }
    assert_ne!(
        per_connection[0], per_connection[1],
        "each connection has its own value"
    );
}

/// The client faces a raw-key server whose "raw public key" is not an
/// Ed25519 SPKI: the policy is never asked.
async fn assert_identity_refused(cert: Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host_key, _) = ssh_keygen(dir.path(), "host", "ed25519", "");
    let server = raw_key_server(cert, &host_key);
    let policy = RecordingPolicy::new(true);
    let (tls, outcome) = client_tls_with_outcome(policy.clone(), provider()).expect("client tls");
    let client = client_endpoint(tls);

    let (client_conn, server_conn) = handshake(&server, &client).await;
    let client_error = client_conn.expect_err("the client must refuse");
    assert!(server_conn.is_err());
    assert!(
        policy.seen().is_empty(),
        "the policy is not asked about a non-SSH identity"
    );
    assert_eq!(outcome.verdict(), HostKeyVerdict::NotAnSshHostKey);
    assert!(!outcome.host_key_rejected());
    assert!(
        client_error
            .to_string()
            .contains("not an SSH Ed25519 host key"),
        "the error says why: {client_error}"
    );
}

#[tokio::test]
async fn an_x509_certificate_in_place_of_the_raw_key_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, _) = openssl_x509(dir.path());
    assert_identity_refused(cert).await;
}

#[tokio::test]
async fn a_garbage_raw_key_is_refused() {
    assert_identity_refused(b"\x30\x03garbage, not DER".to_vec()).await;
}

#[tokio::test]
async fn an_ordinary_x509_server_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = openssl_x509(dir.path());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .expect("x509 server config");
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let server = server_endpoint(tls);
    let policy = RecordingPolicy::new(true);
    let (tls, outcome) = client_tls_with_outcome(policy.clone(), provider()).expect("client tls");
    let client = client_endpoint(tls);

    let (client_conn, server_conn) = handshake(&server, &client).await;
    assert!(
        client_conn.is_err(),
        "no connection to an X.509-only server"
    );
    assert!(server_conn.is_err());
    assert!(policy.seen().is_empty());
    assert!(!outcome.host_key_rejected());
}

#[tokio::test]
async fn a_server_that_cannot_sign_for_the_key_it_shows_is_refused_before_the_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, shown_pub) = ssh_keygen(dir.path(), "shown", "ed25519", "");
    let (signer, _) = ssh_keygen(dir.path(), "signer", "ed25519", "");
    let Some(shown_key) = shown_pub.key_data().ed25519() else {
        panic!("an Ed25519 key");
    };
    let server = raw_key_server(ed25519_spki(shown_key), &signer);
    let policy = RecordingPolicy::new(true);
    let (tls, outcome) = client_tls_with_outcome(policy.clone(), provider()).expect("client tls");
    let client = client_endpoint(tls);

    let (client_conn, _) = handshake(&server, &client).await;
    assert!(client_conn.is_err());
    assert!(
        policy.seen().is_empty(),
        "a key not proven is never shown to the policy"
    );
    assert_eq!(outcome.verdict(), HostKeyVerdict::BadSignature);
}

#[test]
fn a_provider_without_ed25519_verification_is_refused() {
    let mut no_ed25519 = rustls::crypto::ring::default_provider();
    no_ed25519.signature_verification_algorithms = rustls::crypto::WebPkiSupportedAlgorithms {
        all: &[],
        mapping: &[],
    };
    let error =
        client_tls(RecordingPolicy::new(true), Arc::new(no_ed25519)).expect_err("must be refused");
    assert!(matches!(error, TlsError::NoEd25519Verification), "{error}");
}

#[test]
fn configurations_have_alpn_and_no_early_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (host_key, _) = ssh_keygen(dir.path(), "host", "ed25519", "");
    let server = server_tls(&host_key, provider()).expect("server tls");
    assert_eq!(server.alpn_protocols, vec![ALPN.to_vec()]);
    assert_eq!(server.max_early_data_size, 0);
    assert_eq!(server.send_tls13_tickets, 0);
    let client = client_tls(RecordingPolicy::new(true), provider()).expect("client tls");
    assert_eq!(client.alpn_protocols, vec![ALPN.to_vec()]);
    assert!(!client.enable_early_data);
    assert!(!client.enable_sni);
}

#[test]
fn endpoint_sockets_get_large_buffers() {
    let socket = bind_endpoint_socket(loopback()).expect("bind");
    let socket = socket2::SockRef::from(&socket);
    // Linux reports twice the usable size.
    let halve = |n: usize| if cfg!(target_os = "linux") { n / 2 } else { n };
    let receive = halve(socket.recv_buffer_size().expect("SO_RCVBUF"));
    let send = halve(socket.send_buffer_size().expect("SO_SNDBUF"));
    // Without the privilege to force them, the kernel's caps apply.
    let cap = |sysctl: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/core/{sysctl}"))
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(usize::MAX)
    };
    let expected_receive = SOCKET_BUFFER_BYTES.min(cap("rmem_max"));
    let expected_send = SOCKET_BUFFER_BYTES.min(cap("wmem_max"));
    assert!(
        receive >= expected_receive,
        "receive buffer {receive} < {expected_receive}"
    );
    assert!(
        send >= expected_send,
        "send buffer {send} < {expected_send}"
    );
    eprintln!("socket buffers: receive {receive}, send {send} bytes");
}
