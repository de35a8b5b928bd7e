//! One connected pair per transport, client and server both built in this
//! process from the transport crates' public API, over real loopback
//! sockets. Each transport's construction is in ONE function, so a change
//! of its setup API is fixed here and nowhere else.

use std::net::SocketAddr;
use std::sync::Arc;

use sshq_core::auth::{FileKey, UserKey};
use sshq_core::ssh_key::PrivateKey;
use sshq_core::transport::Connection;
use sshq_quic::{endpoint, kx, tls, ClientAuth, QuicConnection, ServerAuth};
use sshq_tcp::{ClientParams, KexList, ServerParams, TcpClientConnection, TcpServerConnection};

use crate::common::clients::{OneHostKey, OneKey};
use crate::common::Lab;
use crate::suite::step;

/// The user the pair's server lets in.
const USER: &str = "conformance";

/// Both ends of one logged-in connection, and what keeps them alive.
pub struct Pair<C: Connection, S: Connection> {
    pub client: C,
    pub server: S,
    _keep: Box<dyn std::any::Any + Send>,
}

/// The lab's host and user keys (made by ssh-keygen).
struct Keys {
    host: PrivateKey,
    user: PrivateKey,
    _lab: Lab,
}

impl Keys {
    fn new() -> Keys {
        let lab = Lab::new();
        Keys {
            host: lab.private_key("host_ed25519"),
            user: lab.private_key("user"),
            _lab: lab,
        }
    }

    fn policy(&self) -> Arc<OneKey> {
        Arc::new(OneKey {
            user: USER,
            key: self.user.public_key().clone(),
        })
    }

    fn verifier(&self) -> Arc<OneHostKey> {
        Arc::new(OneHostKey(self.host.public_key().clone()))
    }

    fn user_keys(&self) -> Vec<Arc<dyn UserKey>> {
        vec![Arc::new(FileKey::new(self.user.clone(), "user")) as Arc<dyn UserKey>]
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// sshq-tcp (russh) client and server over a loopback TCP connection.
pub async fn tcp() -> Pair<TcpClientConnection, TcpServerConnection> {
    let keys = Keys::new();
    let listener = tokio::net::TcpListener::bind(loopback())
        .await
        .expect("bind a loopback TCP port");
    let addr = listener.local_addr().expect("listener address");
    let params = Arc::new(ServerParams {
        host_keys: vec![keys.host.clone()],
        host_certificates: Vec::new(),
        policy: keys.policy(),
        login_grace_time: None,
        allow_agent_forwarding: false,
        client_alive_interval: None,
        client_alive_count_max: 3,
        kex: KexList::server_default(),
    });
    let server = async move {
        let (stream, peer) = listener.accept().await.expect("accept the TCP client");
        let local = stream.local_addr().ok();
        sshq_tcp::accept(stream, local, Some(peer), params).await
    };
    let client = sshq_tcp::connect_tcp(
        addr,
        ClientParams {
            host: "127.0.0.1".to_string(),
            user: USER.to_string(),
            auth_options: Default::default(),
            keys: keys.user_keys(),
            verifier: keys.verifier(),
            kex: None,
            known_host_key_types: Vec::new(),
            congestion: None,
            tcp_keepalive: true,
        },
    );
    let (server, client) = step("TCP login", async { tokio::join!(server, client) }).await;
    Pair {
        client: client.expect("TCP client login"),
        server: server.expect("TCP server accept"),
        _keep: Box::new(keys),
    }
}

/// sshq-quic client and server over a loopback UDP path.
pub async fn quic() -> Pair<QuicConnection, QuicConnection> {
    let keys = Keys::new();
    let provider = || kx::crypto_provider(kx::DEFAULT_KEX).expect("crypto provider");
    let server_tls = tls::server_tls(&keys.host, provider()).expect("server TLS");
    let server_config = tls::server_config(server_tls).expect("quinn server config");
    let server_endpoint =
        endpoint::server_endpoint(loopback(), server_config).expect("server endpoint");
    let addr = server_endpoint.local_addr().expect("server address");
    let auth = Arc::new(ServerAuth {
        policy: keys.policy(),
        login_grace_time: None,
        client_alive_interval: None,
        client_alive_count_max: 3,
        channel_mapping: Default::default(),
        host_certificate: Default::default(),
    });
    let accepting = server_endpoint.clone();
    let server = async move {
        let incoming = accepting.accept().await.expect("a QUIC client");
        sshq_quic::accept(incoming, auth).await
    };
    let client_tls = tls::client_tls(keys.verifier(), provider()).expect("client TLS");
    let client_config = tls::client_config(client_tls).expect("quinn client config");
    let client_endpoint = endpoint::client_endpoint(loopback()).expect("client endpoint");
    let connecting = client_endpoint
        .connect_with(client_config, addr, "sshq")
        .expect("connect");
    let user_keys = keys.user_keys();
    let client = async move {
        let conn = connecting.await.expect("QUIC handshake");
        let auth = ClientAuth {
            host: "127.0.0.1".to_string(),
            user: USER.to_string(),
            auth_options: Default::default(),
            keys: user_keys,
        };
        let session = sshq_quic::client_session(conn, auth)
            .await
            .expect("client session");
        session.authenticated().await.expect("QUIC login");
        session
    };
    let (server, client) = step("QUIC login", async { tokio::join!(server, client) }).await;
    Pair {
        client,
        server: server.expect("QUIC server accept"),
        _keep: Box::new((keys, server_endpoint, client_endpoint)),
    }
}
