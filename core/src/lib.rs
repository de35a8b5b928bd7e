//! sshq-core: everything about SSH that does not depend on what carries it.
//!
//! The transport trait ([`transport`]) is the seam: `sshq-tcp` (russh over a byte
//! stream) and `sshq-quic` (one QUIC stream per channel) implement it, and the
//! session, exec, pty, forwarding and agent logic in the `sshq` crate is written
//! once against it. Host-key policy ([`known_hosts`], [`host_key_check`]) lives
//! here too, so both transports check a server exactly the same way.

pub mod auth;
pub mod auth_methods;
pub mod channel;
pub mod error;
pub mod host_certificate;
pub mod host_key_check;
pub mod kex;
pub mod known_hosts;
pub mod log_escape;
pub mod pattern;
pub mod pipe;
pub mod replies;
pub mod stream;
pub mod transport;

pub use ssh_key;
pub use zeroize;
