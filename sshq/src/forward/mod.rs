//! Port forwarding, written once above the transport trait. Over QUIC each
//! forwarded connection is its own stream, so one stalled forward stalls
//! nothing else.
//!
//! - [`local`]: -L on the client, direct-tcpip on the server, and the
//!   splice between a channel and a TCP connection that every kind uses.
//! - [`remote`]: -R on the client (tcpip-forward requests, forwarded-tcpip
//!   channels connected to their targets); the server side is in
//!   `server::forwarding`.
//! - [`socks`]: -D on the client, a SOCKS4/4a/5 proxy whose connections
//!   become direct-tcpip channels.

pub mod local;
pub mod remote;
pub mod socks;

pub use local::{splice, start_local_forwards, LocalForward};
pub use socks::{start_dynamic_forwards, DynamicForward};
