//! ClientAliveInterval and ClientAliveCountMax over QUIC, with sshd's
//! meaning: after every ClientAliveInterval without anything from the
//! client, the server sends `keepalive@openssh.com` (want-reply) on the
//! control stream; once more than ClientAliveCountMax of them went
//! unanswered in a row, it logs sshd's "Timeout, client not responding"
//! and closes the connection.
//!
//! "Anything from the client" is any QUIC packet, as russh counts any SSH
//! packet over TCP: the reply to our request, channel data, or the client's
//! QUIC keep-alive PINGs, which a live client sends while idle (so that an
//! idle session outlives QUIC's idle timeout). A client that is stopped or
//! gone sends nothing, and the requests go unanswered.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sshq_core::channel::{GlobalReply, GlobalRequest};
use sshq_core::log_escape;
use tokio::sync::mpsc;

use crate::wire::{encode_frame, ErrorCode, Frame};

/// The request OpenSSH's sshd sends; clients answer it (usually failure).
pub(crate) const KEEPALIVE_REQUEST: &str = "keepalive@openssh.com";

/// ClientAliveInterval and ClientAliveCountMax.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAlive {
    pub interval: Duration,
    pub count_max: u32,
}

/// Watches a server-side connection until it closes, or until the client
/// stops answering; then closes it.
pub(crate) async fn watch_client(
    conn: quinn::Connection,
    control: mpsc::Sender<Bytes>,
    pending: sshq_core::replies::ReplyQueue<GlobalReply>,
    order: std::sync::Arc<tokio::sync::Mutex<()>>,
    alive: ClientAlive,
    user: String,
) {
    let mut heard = conn.stats().udp_rx.bytes;
    let mut unanswered = 0u32;
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + alive.interval, alive.interval);
    loop {
        tokio::select! {
            _ = conn.closed() => return,
            _ = ticks.tick() => {}
        }
        let now_heard = conn.stats().udp_rx.bytes;
        if now_heard != heard {
            heard = now_heard;
            unanswered = 0;
            continue;
        }
        // As sshd: a count of 0 never gives up, but still asks.
        unanswered = unanswered.saturating_add(1);
        if alive.count_max > 0 && unanswered > alive.count_max {
            tracing::info!(
                "Timeout, client not responding from {}",
                connection_id(&user, conn.remote_address())
            );
            conn.close(
                ErrorCode::ByApplication.code().into(),
                b"client not responding",
            );
            return;
        }
        let request = Frame::GlobalRequest {
            request: GlobalRequest::Other(KEEPALIVE_REQUEST.to_string()),
            want_reply: true,
        };
        // The reply is awaited by nobody: its packet is what counts.
        let _order = order.lock().await;
        let Some(_reply) = pending.expect() else {
            return;
        };
        if control.send(encode_frame(&request)).await.is_err() {
            return;
        }
    }
}

/// sshd's way of naming a connection in logs ("user NAME ADDR port PORT").
fn connection_id(user: &str, peer: SocketAddr) -> String {
    format!(
        "user {} {} port {}",
        log_escape::peer_text(user),
        peer.ip(),
        peer.port()
    )
}
