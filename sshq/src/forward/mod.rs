//! Port forwarding, written once above the transport trait. Over QUIC each
//! forwarded connection is its own stream, so one stalled forward stalls
//! nothing else.
//!
//! - [`local`]: -L on the client, direct-tcpip on the server, and the
//!   splice between a channel and a TCP connection that every kind uses.

pub mod local;

pub use local::{splice, start_local_forwards, LocalForward};
