//! sshq's classic transport: SSH over TCP, or over any byte stream, with
//! russh, implementing the core's transport trait.
//!
//! russh's channel layer is welded to its encrypted session, so over this
//! transport every channel shares one ordered stream (and its head-of-line
//! blocking); that is what the QUIC transport exists to avoid.

mod channel;
pub mod client;
mod cut;
mod pipe;
pub mod server;

pub use channel::TcpChannel;
pub use client::{connect_stream, connect_tcp, ClientParams, TcpClientConnection};
pub use pipe::PipeReader;
pub use server::{accept, HandshakeError, ServerParams, TcpServerConnection};

use sshq_core::channel::{OpenFailure, OpenFailureReason};
use sshq_core::error::TransportError;

/// The core's refusal reason as russh's.
pub(crate) fn open_failure_to_russh(failure: &OpenFailure) -> russh::ChannelOpenFailure {
    match failure.reason {
        OpenFailureReason::AdministrativelyProhibited => {
            russh::ChannelOpenFailure::AdministrativelyProhibited
        }
        OpenFailureReason::ConnectFailed => russh::ChannelOpenFailure::ConnectFailed,
        OpenFailureReason::UnknownChannelType => russh::ChannelOpenFailure::UnknownChannelType,
        OpenFailureReason::ResourceShortage => russh::ChannelOpenFailure::ResourceShortage,
    }
}

/// A failed channel open from russh as the core's error.
pub(crate) fn open_error(e: russh::Error, closed: impl Fn() -> TransportError) -> TransportError {
    match e {
        russh::Error::ChannelOpenFailure(reason) => {
            let reason = match reason {
                russh::ChannelOpenFailure::AdministrativelyProhibited => {
                    OpenFailureReason::AdministrativelyProhibited
                }
                russh::ChannelOpenFailure::UnknownChannelType => {
                    OpenFailureReason::UnknownChannelType
                }
                russh::ChannelOpenFailure::ResourceShortage => OpenFailureReason::ResourceShortage,
                _ => OpenFailureReason::ConnectFailed,
            };
            TransportError::OpenRefused(OpenFailure {
                reason,
                message: String::new(),
            })
        }
        _ => closed(),
    }
}
