//! The sshq client and the sshqd server, written once above the transport trait.

pub mod client;
pub mod config_syntax;
pub mod forward;
pub mod fs_identity;
#[doc(hidden)]
pub mod fuzzing;
pub mod io;
pub mod server;
