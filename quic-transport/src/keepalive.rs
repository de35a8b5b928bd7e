//! ClientAliveInterval and ClientAliveCountMax over QUIC, with sshd's
//! meaning: after every ClientAliveInterval without anything from the
//! client, the server sends `keepalive@openssh.com` (want-reply) on the
//! control stream; once more than ClientAliveCountMax of them went
//! unanswered in a row, it logs sshd's "Timeout, client not responding"
//! and closes the connection.
//!
//! "Anything from the client" is any QUIC packet: channel data, or the
//! client's QUIC keep-alive PINGs and acknowledgements, which a live client
//! sends while idle (so that an idle session outlives QUIC's idle
//! timeout). As in sshd, only an answer to a request resets the count of
//! silent intervals; a client that is stopped or gone sends nothing, and
//! the requests go unanswered.

use std::collections::VecDeque;
use std::time::Duration;

use sshq_core::channel::{GlobalReply, GlobalRequest};
use sshq_core::log_escape;
use tokio::sync::oneshot;

use crate::conn::{Command, CommandSender};
use crate::wire::ErrorCode;

/// The request OpenSSH's sshd sends; clients answer it (usually failure).
pub(crate) const KEEPALIVE_REQUEST: &str = "keepalive@openssh.com";

/// ClientAliveInterval and ClientAliveCountMax.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAlive {
    pub interval: Duration,
    pub count_max: u32,
}

/// Unanswered requests kept track of at most (ClientAliveCountMax 0 never
/// gives up, but must not make the list grow for ever).
const MAX_OUTSTANDING: usize = 16;

/// Watches a server-side connection until it closes, or until the client
/// stops answering; then closes it.
pub(crate) async fn watch_client(
    conn: quinn::Connection,
    control: CommandSender,
    alive: ClientAlive,
    user: String,
) {
    let mut heard = conn.stats().udp_rx.bytes;
    // sshd's alive_timeouts: silent intervals since the last answer.
    let mut silent = 0u32;
    let mut outstanding: VecDeque<oneshot::Receiver<GlobalReply>> = VecDeque::new();
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + alive.interval, alive.interval);
    loop {
        tokio::select! {
            _ = conn.closed() => return,
            _ = ticks.tick() => {}
        }
        // Any answer, success or failure, proves the client alive (sshd's
        // server_input_keep_alive).
        while let Some(front) = outstanding.front_mut() {
            match front.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => break,
                Ok(_) | Err(oneshot::error::TryRecvError::Closed) => {
                    outstanding.pop_front();
                    silent = 0;
                }
            }
        }
        // As in sshd, an interval in which the client sent something
        // needs no question.
        let now_heard = conn.stats().udp_rx.bytes;
        if now_heard != heard {
            heard = now_heard;
            continue;
        }
        // As sshd: a count of 0 never gives up, but still asks.
        silent = silent.saturating_add(1);
        if alive.count_max > 0 && silent > alive.count_max {
            tracing::info!(
                "Timeout, client not responding from {}",
                log_escape::connection_id(&user, Some(conn.remote_address()))
            );
            conn.close(
                ErrorCode::ByApplication.code().into(),
                b"client not responding",
            );
            return;
        }
        if outstanding.len() >= MAX_OUTSTANDING {
            continue;
        }
        let (reply_tx, reply) = oneshot::channel();
        let request = Command::Request {
            request: GlobalRequest::Unknown {
                name: KEEPALIVE_REQUEST.to_string(),
            },
            reply: reply_tx,
        };
        if control.send(request).await.is_err() {
            return;
        }
        outstanding.push_back(reply);
    }
}
