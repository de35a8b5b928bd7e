//! sshq's transport crates driven directly as clients of a lab's sshqd,
//! for tests that need what the sshq command never does (hold a
//! connection while the server dies, flood it with requests).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sshq_core::auth::{FileKey, ServerKeyVerifier, UserKey};
use sshq_core::ssh_key::{PrivateKey, PublicKey};
use sshq_quic::client::{ClientEndpoint, ConnectParams};

use super::{Lab, Server};

/// How long one step of a logged-in client may take before it counts as
/// hung (floods make a slow server): only against hangs.
pub const STEP: Duration = Duration::from_secs(60);

/// Runs one step, failing the test if it is not done within `limit`.
pub async fn within<T>(limit: Duration, what: &str, work: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or_else(|_| panic!("{what}: no progress within {limit:?}"))
}

/// Runs one step, failing the test if it hangs ([`STEP`]).
pub async fn step<T>(what: &str, work: impl Future<Output = T>) -> T {
    within(STEP, what, work).await
}

/// Trusts exactly one host key.
pub struct TrustHostKey(pub PublicKey);

impl ServerKeyVerifier for TrustHostKey {
    fn verify(&self, key: &PublicKey) -> bool {
        key.key_data() == self.0.key_data()
    }
}

/// A verifier trusting exactly the lab's Ed25519 host key.
pub fn trust_lab_host_key(lab: &Lab) -> Arc<dyn ServerKeyVerifier> {
    let text = std::fs::read_to_string(lab.path("host_ed25519.pub")).expect("host key");
    Arc::new(TrustHostKey(
        PublicKey::from_openssh(&text).expect("host public key"),
    ))
}

/// The lab's user key, as a login offers it.
pub fn user_keys(lab: &Lab) -> Vec<Arc<dyn UserKey>> {
    let key = PrivateKey::read_openssh_file(lab.path("user")).expect("user key");
    vec![Arc::new(FileKey::new(key, "user")) as Arc<dyn UserKey>]
}

/// The server's loopback address.
pub fn server_addr(server: &Server) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], server.port))
}

/// The lab's user logged in to `server` over TCP.
pub async fn tcp_client(lab: &Lab, server: &Server) -> sshq_tcp::TcpClientConnection {
    tcp_client_as(lab, server, &lab.user, "user").await
}

/// `user` logged in to `server` over TCP with the lab's key `key`.
pub async fn tcp_client_as(
    lab: &Lab,
    server: &Server,
    user: &str,
    key: &str,
) -> sshq_tcp::TcpClientConnection {
    let key_file = PrivateKey::read_openssh_file(lab.path(key)).expect("user key");
    let params = sshq_tcp::ClientParams {
        host: "127.0.0.1".to_string(),
        user: user.to_string(),
        auth_options: Default::default(),
        keys: vec![Arc::new(FileKey::new(key_file, key)) as Arc<dyn UserKey>],
        verifier: trust_lab_host_key(lab),
        kex: None,
        known_host_key_types: Vec::new(),
        congestion: None,
        tcp_keepalive: true,
    };
    step(
        "TCP login",
        sshq_tcp::connect_tcp(server_addr(server), params),
    )
    .await
    .expect("TCP login")
}

/// The lab's user logged in to `server` over QUIC (the connection keeps
/// its endpoint).
pub async fn quic_client(lab: &Lab, server: &Server) -> sshq_quic::QuicConnection {
    let endpoint =
        ClientEndpoint::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("client endpoint");
    let params = ConnectParams {
        verifier: trust_lab_host_key(lab),
        kex: sshq_quic::kx::DEFAULT_KEX
            .iter()
            .map(|name| name.to_string())
            .collect(),
        congestion_control: None,
        liveness: sshq_quic::tls::Liveness::CLIENT,
        channel_mapping: Default::default(),
    };
    let auth = sshq_quic::ClientAuth {
        host: "127.0.0.1".to_string(),
        user: lab.user.clone(),
        auth_options: Default::default(),
        keys: user_keys(lab),
    };
    let session = step(
        "QUIC session",
        endpoint.connect_session(server_addr(server), &params, auth),
    )
    .await
    .expect("QUIC session");
    step("QUIC login", session.authenticated())
        .await
        .expect("QUIC login");
    session
}

/// A server policy that lets one user in with one key (for transports
/// driven in-process, without sshqd).
pub struct OneKey {
    pub user: &'static str,
    pub key: PublicKey,
}

impl sshq_core::auth::AuthPolicy for OneKey {
    fn publickey_allowed<'a>(
        &'a self,
        user: &'a str,
        key: &'a PublicKey,
    ) -> sshq_core::auth::BoxFuture<'a, bool> {
        let allowed = user == self.user && key.key_data() == self.key.key_data();
        Box::pin(async move { allowed })
    }

    fn max_auth_tries(&self) -> u32 {
        6
    }
}

/// A client verifier that trusts exactly one host key.
pub struct OneHostKey(pub PublicKey);

impl ServerKeyVerifier for OneHostKey {
    fn verify(&self, key: &PublicKey) -> bool {
        key.key_data() == self.0.key_data()
    }
}
