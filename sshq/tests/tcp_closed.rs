//! `Connection::closed` over TCP tells an orderly end from a failure, as the
//! transport trait promises: `None` after we close the connection, the
//! reason when the server dies under it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use sshq_core::auth::{FileKey, ServerKeyVerifier, UserKey};
use sshq_core::error::TransportError;
use sshq_core::ssh_key::{PrivateKey, PublicKey};
use sshq_core::transport::Connection;

use common::{Lab, Listeners, Server};

/// How long one step may take before it counts as hung.
const STEP: Duration = Duration::from_secs(60);

async fn step<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, work)
        .await
        .unwrap_or_else(|_| panic!("{what}: no progress within {STEP:?}"))
}

/// Trusts exactly the lab's host key.
struct TrustHostKey(PublicKey);

impl ServerKeyVerifier for TrustHostKey {
    fn verify(&self, key: &PublicKey) -> bool {
        key.key_data() == self.0.key_data()
    }
}

async fn tcp_client(lab: &Lab, server: &Server) -> sshq_tcp::TcpClientConnection {
    let host_key = std::fs::read_to_string(lab.path("host_ed25519.pub")).expect("host key");
    let user_key = PrivateKey::read_openssh_file(lab.path("user")).expect("user key");
    let params = sshq_tcp::ClientParams {
        host: "127.0.0.1".to_string(),
        user: lab.user.clone(),
        keys: vec![Arc::new(FileKey::new(user_key, "user")) as Arc<dyn UserKey>],
        verifier: Arc::new(TrustHostKey(
            PublicKey::from_openssh(&host_key).expect("host public key"),
        )),
        kex: None,
        known_host_key_types: Vec::new(),
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.port));
    step("TCP login", sshq_tcp::connect_tcp(addr, params))
        .await
        .expect("TCP login")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_it_ourselves_is_no_failure() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("", Listeners::Tcp);
    let conn = tcp_client(&lab, &server).await;
    conn.close("disconnected by user").await;
    let why = step("closed", conn.closed()).await;
    assert!(why.is_none(), "an orderly close reported {why:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_dies_is_reported_with_why() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("", Listeners::Tcp);
    let conn = tcp_client(&lab, &server).await;
    // SIGKILL: the kernel closes the socket without an SSH disconnect.
    drop(server);
    match step("closed", conn.closed()).await {
        Some(TransportError::ConnectionClosed(Some(why))) => {
            assert!(!why.is_empty(), "an empty reason");
        }
        other => panic!("a dead server must be a failure with a reason, got {other:?}"),
    }
}
