//! The entry points the binaries use instead of quinn and rustls: a server
//! from `server::ListenerConfig` / `ServerEndpoint`, a client from
//! `client::ClientEndpoint`, and the tunnel relay loop of `relay`, over
//! real UDP sockets on loopback.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sshq_core::auth::ServerKeyVerifier;
use sshq_core::ssh_key::private::Ed25519Keypair;
use sshq_core::ssh_key::{PrivateKey, PublicKey};
use sshq_quic::client::{ClientEndpoint, ConnectFailure, ConnectParams};
use sshq_quic::relay::{self, OpeningError, Tunnel};
use sshq_quic::server::{ListenerConfig, ServerEndpoint, ServerSettings};
use sshq_quic::tls::HandshakeFailure;
use sshq_quic::wire::ErrorCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Limit on any one step: only against hangs.
const STEP: Duration = Duration::from_secs(20);

/// Accepts exactly the key it was given.
struct Trust(PublicKey);

impl ServerKeyVerifier for Trust {
    fn verify(&self, key: &PublicKey) -> bool {
        key.key_data() == self.0.key_data()
    }
}

fn host_key(seed: u8) -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
}

fn kex() -> Vec<String> {
    sshq_quic::kx::DEFAULT_KEX
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// A server on a loopback port; `offer_tunnels` as sshqd with QuicRelay.
fn server(key: &PrivateKey, offer_tunnels: bool) -> ServerEndpoint {
    let kex = kex();
    let config = ListenerConfig::new(&ServerSettings {
        host_key: key,
        kex: &kex,
        offer_tunnels,
        congestion_control: None,
        liveness: sshq_quic::tls::Liveness::SERVER,
    })
    .expect("server configuration");
    ServerEndpoint::bind(SocketAddr::from(([127, 0, 0, 1], 0)), &config).expect("server endpoint")
}

fn params(trusted: &PrivateKey) -> ConnectParams {
    ConnectParams {
        verifier: Arc::new(Trust(trusted.public_key().clone())),
        kex: kex(),
        congestion_control: None,
        liveness: sshq_quic::tls::Liveness::CLIENT,
        channel_mapping: Default::default(),
    }
}

async fn step<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, work).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: no progress within {STEP:?}"),
    }
}

/// Runs the server's and the client's side of one test together.
async fn both<A: Future, B: Future>(
    what: &str,
    server_side: A,
    client_side: B,
) -> (A::Output, B::Output) {
    step(what, async { tokio::join!(server_side, client_side) }).await
}

/// A client endpoint for `server`, and the server's address.
fn client_for(server: &ServerEndpoint) -> (ClientEndpoint, SocketAddr) {
    let addr = server.local_addr().expect("server address");
    let client = ClientEndpoint::for_peer(addr).expect("client endpoint");
    (client, addr)
}

/// A login that offers no key: the tests here stop before user auth.
fn nobody() -> sshq_quic::ClientAuth {
    sshq_quic::ClientAuth {
        host: "sshq-test".to_string(),
        user: "nobody".to_string(),
        auth_options: Default::default(),
        keys: Vec::new(),
    }
}

async fn tunnel_to(server: &ServerEndpoint, key: &PrivateKey) -> (Tunnel, Option<&'static str>) {
    let (client, addr) = client_for(server);
    client
        .connect_tunnel(addr, &params(key))
        .await
        .expect("tunnel handshake")
}

/// The server's side of a tunnel: the next attempt, handshaken as one.
async fn accept_tunnel(server: &ServerEndpoint) -> Tunnel {
    let incoming = server.accept().await.expect("an attempt");
    let conn = incoming.handshake(None).await.expect("server handshake");
    assert!(conn.is_tunnel(), "the tunnel ALPN was negotiated");
    conn.into_tunnel()
}

/// The server's side of a handshake the client must give up: it fails.
async fn handshake_fails(server: &ServerEndpoint) {
    if let Some(incoming) = server.accept().await {
        assert!(incoming.handshake(None).await.is_err());
    }
}

/// Relays `stream` to and from a local end until both directions end.
async fn relay_uninterrupted<W: AsyncWrite + Unpin>(
    stream: relay::TunnelStream,
    local_read: impl AsyncRead + Unpin,
    local_write: W,
) -> relay::Relayed<W> {
    let never = std::future::pending::<()>();
    relay::relay(stream, local_read, local_write, never, Duration::ZERO).await
}

#[tokio::test]
async fn a_tunnel_relays_both_ways_and_ends_in_order() {
    let key = host_key(1);
    let server = server(&key, true);
    let accepting = async {
        let tunnel = accept_tunnel(&server).await;
        let (stream, first) = tunnel
            .accept_stream()
            .await
            .expect("stream and first bytes");
        // The server's local end: it reads what the client sent and
        // answers, then ends its direction.
        let (local, mut far) = tokio::io::duplex(64 * 1024);
        let (local_read, local_write) = tokio::io::split(local);
        let echo = async move {
            let mut received = first.to_vec();
            far.read_to_end(&mut received)
                .await
                .expect("server side read");
            far.write_all(b"pong").await.expect("server side write");
            far.shutdown().await.expect("server side shutdown");
            received
        };
        let relaying = relay_uninterrupted(stream, local_read, local_write);
        let (received, mut relayed) = tokio::join!(echo, relaying);
        assert!(relayed.both_finished(), "both directions ended in order");
        relayed.wait_acknowledged(STEP).await;
        tunnel.wait_closed(STEP).await;
        received
    };
    let connecting = async {
        let (tunnel, group) = tunnel_to(&server, &key).await;
        assert!(group.is_some(), "the key-exchange group is reported");
        let stream = tunnel.open_stream().await.expect("open the stream");
        let (local, mut near) = tokio::io::duplex(64 * 1024);
        let (local_read, local_write) = tokio::io::split(local);
        let user = async move {
            near.write_all(b"ping, and more")
                .await
                .expect("client side write");
            near.shutdown().await.expect("client side shutdown");
            let mut answer = Vec::new();
            near.read_to_end(&mut answer)
                .await
                .expect("client side read");
            answer
        };
        let relaying = relay_uninterrupted(stream, local_read, local_write);
        let (answer, mut relayed) = tokio::join!(user, relaying);
        assert!(relayed.both_finished(), "both directions ended in order");
        let outbound = relayed.outbound.as_ref().map(|h| h.bytes);
        relayed.wait_acknowledged(STEP).await;
        tunnel.close(ErrorCode::NoError, "done");
        tunnel.finish(Duration::from_secs(1)).await;
        (answer, outbound)
    };
    let (received, (answer, outbound)) = both("tunnel", accepting, connecting).await;
    assert_eq!(received, b"ping, and more");
    assert_eq!(answer, b"pong");
    assert_eq!(outbound, Some(b"ping, and more".len() as u64));
}

#[tokio::test]
async fn an_interrupted_relay_stops_after_its_grace_time() {
    let key = host_key(2);
    let server = server(&key, true);
    let accepting = async {
        let tunnel = accept_tunnel(&server).await;
        // Takes the stream and answers nothing: the client's relay must
        // end on its own.
        let opened = tunnel.accept_stream().await;
        tunnel.wait_closed(STEP).await;
        drop(opened);
    };
    let connecting = async {
        let (tunnel, _) = tunnel_to(&server, &key).await;
        let stream = tunnel.open_stream().await.expect("open the stream");
        let (local, mut near) = tokio::io::duplex(1024);
        let (local_read, local_write) = tokio::io::split(local);
        near.write_all(b"SSH-2.0-test\r\n").await.expect("write");
        let interrupt = tokio::time::sleep(Duration::from_millis(50));
        let relayed = relay::relay(
            stream,
            local_read,
            local_write,
            interrupt,
            Duration::from_millis(50),
        )
        .await;
        assert!(relayed.interrupted);
        assert!(relayed.inbound.is_none(), "the peer never ended its side");
        tunnel.close(ErrorCode::NoError, "interrupted");
        drop(near);
    };
    both("interrupted tunnel", accepting, connecting).await;
}

#[tokio::test]
async fn an_empty_tunnel_stream_is_answered_and_closed() {
    let key = host_key(3);
    let server = server(&key, true);
    let accepting = async {
        let tunnel = accept_tunnel(&server).await;
        match tunnel.accept_stream().await {
            Err(OpeningError::Empty(empty)) => empty.answer(&tunnel, STEP).await,
            Err(e) => panic!("expected an empty stream, got {e}"),
            Ok(_) => panic!("expected an empty stream, got bytes"),
        }
    };
    let connecting = async {
        let (tunnel, _) = tunnel_to(&server, &key).await;
        let stream = tunnel.open_stream().await.expect("open the stream");
        let relayed = relay_uninterrupted(stream, tokio::io::empty(), tokio::io::sink()).await;
        assert!(relayed.both_finished(), "an empty exchange ends in order");
    };
    both("empty tunnel", accepting, connecting).await;
}

#[tokio::test]
async fn a_server_without_tunnels_refuses_the_protocol_and_allows_fallback() {
    let key = host_key(4);
    let server = server(&key, false);
    let refusing = handshake_fails(&server);
    let connecting = async {
        let (client, addr) = client_for(&server);
        match client.connect_tunnel(addr, &params(&key)).await {
            Err(ConnectFailure::Handshake(failure)) => {
                assert_eq!(failure, HandshakeFailure::ProtocolRefused);
                assert!(failure.allows_fallback());
            }
            Err(e) => panic!("expected a refused protocol, got {e}"),
            Ok(_) => panic!("a server without QuicRelay accepted a tunnel"),
        }
    };
    both("refused tunnel", refusing, connecting).await;
}

#[tokio::test]
async fn a_host_key_the_verifier_refuses_is_final() {
    let key = host_key(5);
    let server = server(&key, false);
    let refusing = handshake_fails(&server);
    let connecting = async {
        let (client, addr) = client_for(&server);
        let stranger = host_key(6);
        match client
            .connect_session(addr, &params(&stranger), nobody())
            .await
        {
            Err(failure) => {
                let handshake = failure.handshake_failure().cloned();
                assert_eq!(handshake, Some(HandshakeFailure::HostKeyRejected));
                assert!(!HandshakeFailure::HostKeyRejected.allows_fallback());
            }
            Ok(_) => panic!("a host key the verifier refused was accepted"),
        }
    };
    both("refused host key", refusing, connecting).await;
}

#[tokio::test]
async fn a_session_reports_its_path_statistics() {
    let key = host_key(7);
    let server = server(&key, false);
    let accepting = async {
        let incoming = server.accept().await.expect("an attempt");
        let conn = incoming.handshake(None).await.expect("handshake");
        assert!(!conn.is_tunnel());
        // Hold the connection until the client has looked.
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(conn);
    };
    let connecting = async {
        let (client, addr) = client_for(&server);
        let session = client
            .connect_session(addr, &params(&key), nobody())
            .await
            .expect("session");
        let path = session.path_stats();
        assert!(path.sent_packets > 0, "the handshake sent packets");
        assert!(path.mtu >= 1200, "QUIC's minimum datagram size");
    };
    both("path statistics", accepting, connecting).await;
}

/// On loopback (a 64 KiB MTU), MTU discovery goes past Ethernet's 1472
/// bytes, up to what one GSO batch carries (`sshq_quic::path_mtu`); the
/// client's direction is the one measured here.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn loopback_paths_discover_large_datagrams() {
    use sshq_quic::path_mtu::{ETHERNET_IPV4_UDP_PAYLOAD, MAX_UDP_PAYLOAD};

    let key = host_key(8);
    let server = server(&key, false);
    let (client, addr) = client_for(&server);
    let accepting = async {
        let incoming = server.accept().await.expect("an attempt");
        let conn = incoming.handshake(None).await.expect("handshake");
        // Hold the connection until the client has looked.
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(conn);
    };
    let connecting = async {
        let session = client
            .connect_session(addr, &params(&key), nobody())
            .await
            .expect("session");
        // Discovery is a binary search, one probe per round trip: a few
        // milliseconds on loopback; this waits at most 2 s.
        let mut mtu = session.path_stats().mtu;
        for _ in 0..100 {
            if mtu > ETHERNET_IPV4_UDP_PAYLOAD {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            mtu = session.path_stats().mtu;
        }
        assert!(
            mtu > ETHERNET_IPV4_UDP_PAYLOAD && mtu <= MAX_UDP_PAYLOAD,
            "loopback MTU discovery ended at {mtu} bytes"
        );
    };
    both("loopback MTU discovery", accepting, connecting).await;
}
