//! sshq's QUIC transport: QUIC v1 (quinn) with TLS 1.3 (rustls), a hybrid
//! X25519+sntrup761 key exchange, the server's SSH host key as its TLS
//! identity, and every SSH channel on its own QUIC stream.

mod channel;
mod channel_streams;
pub mod client;
mod client_auth;
mod conn;
pub mod danger;
pub mod endpoint;
#[doc(hidden)]
pub mod fuzzing;
pub mod host_certificate;
mod keepalive;
pub mod kx;
pub mod one_stream;
pub mod path_mtu;
pub mod preauth;
pub mod preauth_credit;
pub mod proto;
pub mod relay;
pub mod server;
mod server_login;
mod stats;
pub mod stream_socket;
mod streams;
pub mod tls;
pub mod tunnel;
mod userauth;
pub mod wire;

pub use channel::QuicChannel;
pub use conn::{
    accept, client_session, client_session_with, handshake, login, AuthOutcome, ClientAuth,
    QuicConnection, ServerAuth,
};
pub use sshq_core::error::HandshakeError;
pub use stats::PathStats;
