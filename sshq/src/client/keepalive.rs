//! ServerAliveInterval and ServerAliveCountMax, as in ssh: every interval
//! a `keepalive@openssh.com` request asks the server for an answer (any
//! answer, success or failure, proves it alive); after CountMax intervals
//! without one, the session ends with ssh's message and status 255.
//!
//! It runs above the transport trait, so it means the same over TCP and
//! QUIC: QUIC's own keep-alives keep NAT bindings open, but say nothing
//! about whether sshqd still serves the connection.

use std::time::Duration;

use sshq_core::channel::GlobalRequest;
use sshq_core::transport::Connection;

use super::Plan;

/// OpenSSH's default ServerAliveCountMax.
const DEFAULT_COUNT_MAX: u32 = 3;

/// Resolves, with the message to print, once the server has failed to
/// answer CountMax probes in a row; never resolves when ServerAliveInterval
/// is unset or 0, or CountMax is 0 (both disable the check in ssh), or
/// once the connection is gone (the session notices that by itself).
pub async fn watchdog<C: Connection>(conn: &C, plan: &Plan) -> String {
    let interval = match plan.options.server_alive_interval {
        Some(interval) if !interval.is_zero() => interval,
        _ => return std::future::pending().await,
    };
    let count_max = plan
        .options
        .server_alive_count_max
        .unwrap_or(DEFAULT_COUNT_MAX);
    if count_max == 0 {
        return std::future::pending().await;
    }
    let mut unanswered = 0u32;
    tokio::time::sleep(interval).await;
    loop {
        let started = tokio::time::Instant::now();
        let probe = conn.global_request(GlobalRequest::Unknown {
            name: "keepalive@openssh.com".to_string(),
        });
        match tokio::time::timeout(interval, probe).await {
            Ok(Ok(_answer)) => {
                unanswered = 0;
                tokio::time::sleep_until(started + interval).await;
            }
            Ok(Err(_gone)) => return std::future::pending().await,
            Err(_silence) => {
                unanswered += 1;
                tracing::debug!(
                    "no answer to keepalive {unanswered} of {count_max} within {}",
                    seconds(interval)
                );
                if unanswered >= count_max {
                    return format!("Timeout, server {} not responding.", plan.hostname);
                }
            }
        }
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}
