//! sshq's classic transport: SSH over TCP, or over any byte stream, with
//! russh, implementing the core's transport trait.
//!
//! russh's channel layer is welded to its encrypted session, so over this
//! transport every channel shares one ordered stream (and its head-of-line
//! blocking); that is what the QUIC transport exists to avoid.

mod auth_tries;
mod channel;
pub mod client;
mod client_auth;
mod cut;
mod ending;
mod kex;
mod paced;
mod pacing;
pub mod server;
mod server_auth;
mod socket_options;
mod window;

pub use channel::TcpChannel;
pub use channel::{ChannelReader, ChannelRequests};
pub use client::{connect_stream, connect_tcp, ClientParams, TcpClientConnection};
pub use kex::KexList;
pub use paced::QUEUE_LIMIT;
pub use pacing::{BULK_ONLY_BUDGET, MAX_BULK_WRITE, NOTSENT_LOWAT, SEND_BUDGET};
pub use server::{accept, ServerParams, TcpServerConnection};
pub use socket_options::{
    congestion_control, keepalive, set_congestion_control, set_keepalive, tune_socket,
    CongestionError, TcpCongestion,
};
pub use sshq_core::error::HandshakeError;
pub use sshq_core::pipe::PipeReader;
pub use window::ConsumingReader;

use sshq_core::channel::{OpenFailure, OpenFailureReason};
use sshq_core::error::TransportError;

/// Hands a channel the peer opened to the code above the trait, and
/// confirms or refuses it with russh once that code has decided.
/// Each channel's window, both directions: OpenSSH's 2 MiB. Over one TCP
/// connection every byte of window a bulk channel holds can sit in the
/// send queue ahead of a keystroke's echo on another channel; with 8 MiB a
/// forward on a 1%-loss link held echoes back for over 10 s (interop/run
/// hol), and on loopback 2 MiB is still far more than the path holds.
pub(crate) const CHANNEL_WINDOW: u32 = 2 * 1024 * 1024;

pub(crate) fn offer_channel<M>(
    incoming: &tokio::sync::mpsc::UnboundedSender<sshq_core::transport::Incoming<TcpChannel<M>>>,
    kind: sshq_core::channel::ChannelKind,
    channel: TcpChannel<M>,
    reply: russh::ChannelOpenHandleInner<M>,
) where
    M: From<(russh::ChannelId, russh::ChannelMsg)> + Send + Sync + 'static,
{
    let (decide_tx, decide_rx) = tokio::sync::oneshot::channel();
    let (confirmed_tx, confirmed_rx) = tokio::sync::watch::channel(false);
    let channel = channel.sending_after(confirmed_rx);
    let pending = sshq_core::transport::PendingChannel::new(kind, channel, decide_tx);
    if incoming
        .send(sshq_core::transport::Incoming::Channel(pending))
        .is_err()
    {
        return; // dropping `reply` refuses the channel
    }
    tokio::spawn(async move {
        match decide_rx.await {
            Ok(Ok(())) => {
                reply.accept().await;
                let _ = confirmed_tx.send(true);
            }
            Ok(Err(failure)) => reply.reject(open_failure_to_russh(&failure)).await,
            Err(_) => {}
        }
    });
}

/// The core's refusal as russh's: the reason code and the description,
/// both sent as they are (russh writes `Other`'s code and text).
pub(crate) fn open_failure_to_russh(failure: &OpenFailure) -> russh::ChannelOpenFailure {
    russh::ChannelOpenFailure::Other {
        code: failure.reason.code(),
        reason: failure.message.clone(),
    }
}

/// A failed channel open from russh as the core's error: the peer's reason
/// code and description (russh change 6 hands both over as `Other`).
pub(crate) fn open_error(e: russh::Error, closed: impl Fn() -> TransportError) -> TransportError {
    match e {
        russh::Error::ChannelOpenFailure(failure) => {
            let message = match &failure {
                russh::ChannelOpenFailure::Other { reason, .. } => reason.clone(),
                _ => String::new(),
            };
            TransportError::OpenRefused(OpenFailure {
                reason: OpenFailureReason::from_code(failure.code()),
                message,
            })
        }
        _ => closed(),
    }
}
