//! sshqd bounds what a logged-in client can make it hold, over both
//! transports: MaxSessions, channels, remote forwards and env variables per
//! connection, and memory under floods of tiny data packets or of requests
//! whose replies are never read. Each case also checks that sshqd lives on
//! and serves another client.
//!
//! The clients are sshq's own transport crates driven directly (and, for
//! hostile QUIC traffic, raw frames on a QUIC stream), since the sshq
//! command never sends such traffic.

mod common;

use std::time::{Duration, Instant};

use sshq_core::channel::{
    ChannelKind, ChannelRequest, GlobalReply, GlobalRequest, OpenFailureReason,
};
use sshq_core::error::TransportError;
use sshq_core::transport::{Channel, ChannelControl, ChannelParts, Connection};
use sshq_quic::wire::Frame;
use sshq_test_kit::quinn;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::clients::{quic_client, step, tcp_client};
use common::{Lab, Listeners, Server};

fn start(lab: &Lab, extra: &str) -> Server {
    lab.start_sshqd_on(&format!("AcceptEnv *\n{extra}"), Listeners::Both)
}

/// Opens a channel and waits for the server's answer (QUIC pipelines the
/// open, so a refusal shows in `opened`).
async fn open<C: Connection>(
    conn: &C,
    kind: ChannelKind,
) -> Result<ChannelParts<C::Channel>, TransportError> {
    let channel = step("open", conn.open_channel(kind)).await?;
    let parts = channel.split();
    step("open answer", parts.control.opened()).await?;
    Ok(parts)
}

/// Runs `command` on a new session channel; its output.
async fn exec_output<C: Connection>(conn: &C, command: &str) -> Vec<u8> {
    let mut parts = open(conn, ChannelKind::Session)
        .await
        .expect("a session channel");
    let request = ChannelRequest::Exec(command.as_bytes().to_vec());
    assert!(
        step("exec", parts.control.request(request, true))
            .await
            .expect("exec reply"),
        "exec {command} refused"
    );
    let _ = parts.data_out.shutdown().await;
    let mut out = Vec::new();
    step("output", parts.data_in.read_to_end(&mut out))
        .await
        .expect("read the output");
    out
}

/// sshqd still serves a new client over TCP and QUIC.
async fn others_unaffected(lab: &Lab, server: &Server) {
    let tcp = tcp_client(lab, server).await;
    assert_eq!(exec_output(&tcp, "echo ok").await, b"ok\n", "a TCP client");
    let quic = quic_client(lab, server).await;
    assert_eq!(
        exec_output(&quic, "echo ok").await,
        b"ok\n",
        "a QUIC client"
    );
}

fn assert_refused(
    result: Result<impl Sized, TransportError>,
    reason: OpenFailureReason,
    what: &str,
) {
    match result {
        Err(TransportError::OpenRefused(failure)) => {
            assert_eq!(failure.reason, reason, "{what}: {failure}")
        }
        Err(other) => panic!("{what}: expected an open failure, got {other}"),
        Ok(_) => panic!("{what}: the channel was opened"),
    }
}

/// Opens `n` sessions, all accepted.
async fn sessions<C: Connection>(conn: &C, n: usize) -> Vec<ChannelParts<C::Channel>> {
    let mut open_ones = Vec::new();
    for i in 0..n {
        match open(conn, ChannelKind::Session).await {
            Ok(parts) => open_ones.push(parts),
            Err(e) => panic!("session {} of {n} refused: {e}", i + 1),
        }
    }
    open_ones
}

async fn max_sessions_case<C: Connection>(conn: &C, what: &str) {
    let mut open_ones = sessions(conn, 10).await;
    let eleventh = open(conn, ChannelKind::Session).await;
    // sshd's refusal: reason 2 with the text "open failed" (russh does not
    // pass the text on, sshq-quic does).
    if let Err(TransportError::OpenRefused(failure)) = &eleventh {
        if !failure.message.is_empty() {
            assert_eq!(failure.message, "open failed", "{what}");
        }
    }
    assert_refused(eleventh, OpenFailureReason::ConnectFailed, what);
    // Other channel kinds are not sessions: a forward to sshqd's own port.
    let kind = ChannelKind::DirectTcpip {
        host: "127.0.0.1".into(),
        port: u32::from(conn.info().peer_addr.map(|a| a.port()).unwrap_or(22)),
        originator: "127.0.0.1".into(),
        originator_port: 1,
    };
    let forward = open(conn, kind).await;
    assert!(forward.is_ok(), "{what}: direct-tcpip beside 10 sessions");
    // Closing one session frees its place, on the same connection.
    let closing = open_ones.pop().expect("a session");
    closing.control.close().await;
    drop(closing);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match open(conn, ChannelKind::Session).await {
            Ok(parts) => {
                open_ones.push(parts);
                break;
            }
            Err(e) if Instant::now() > deadline => {
                panic!("{what}: a session closed 10 s ago still counts: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_sessions_refuses_the_eleventh_session_both_transports() {
    let lab = Lab::new();
    let server = start(&lab, ""); // MaxSessions defaults to 10, as in sshd
    let tcp = tcp_client(&lab, &server).await;
    max_sessions_case(&tcp, "TCP").await;
    let quic = quic_client(&lab, &server).await;
    max_sessions_case(&quic, "QUIC").await;
    others_unaffected(&lab, &server).await;
    assert!(
        server.log_text().contains("no more sessions"),
        "sshd's log line; log:\n{}",
        server.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_sessions_zero_refuses_every_session() {
    let lab = Lab::new();
    let server = start(&lab, "MaxSessions 0");
    let tcp = tcp_client(&lab, &server).await;
    assert_refused(
        open(&tcp, ChannelKind::Session).await,
        OpenFailureReason::ConnectFailed,
        "TCP",
    );
    let quic = quic_client(&lab, &server).await;
    assert_refused(
        open(&quic, ChannelKind::Session).await,
        OpenFailureReason::ConnectFailed,
        "QUIC",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_per_connection_are_capped_both_transports() {
    let lab = Lab::new();
    let server = start(&lab, "MaxSessions 100000");
    let tcp = tcp_client(&lab, &server).await;
    let _tcp_open = sessions(&tcp, 256).await;
    assert_refused(
        open(&tcp, ChannelKind::Session).await,
        OpenFailureReason::ResourceShortage,
        "TCP, channel 257",
    );
    let quic = quic_client(&lab, &server).await;
    let _quic_open = sessions(&quic, 256).await;
    assert_refused(
        open(&quic, ChannelKind::Session).await,
        OpenFailureReason::ResourceShortage,
        "QUIC, channel 257",
    );
    // The cap is per connection: others open theirs.
    others_unaffected(&lab, &server).await;
}

async fn remote_forward_case<C: Connection>(conn: &C, what: &str) {
    let forward = || GlobalRequest::TcpipForward {
        address: "127.0.0.1".into(),
        port: 0,
    };
    let mut ports = Vec::new();
    for i in 0..64 {
        match step("tcpip-forward", conn.global_request(forward())).await {
            Ok(GlobalReply::Success {
                bound_port: Some(port),
            }) => ports.push(port),
            other => panic!("{what}: forward {} of 64: {other:?}", i + 1),
        }
    }
    let refused = step("tcpip-forward 65", conn.global_request(forward())).await;
    assert!(
        matches!(refused, Ok(GlobalReply::Failure)),
        "{what}: the 65th remote forward: {refused:?}"
    );
    // Cancelling one makes room again.
    let port = ports.pop().expect("a port");
    let cancel = GlobalRequest::CancelTcpipForward {
        address: "127.0.0.1".into(),
        port,
    };
    let cancelled = step("cancel", conn.global_request(cancel)).await;
    assert!(
        matches!(cancelled, Ok(GlobalReply::Success { .. })),
        "{what}"
    );
    let again = step("tcpip-forward again", conn.global_request(forward())).await;
    assert!(
        matches!(again, Ok(GlobalReply::Success { .. })),
        "{what}: {again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_forwards_per_connection_are_capped_both_transports() {
    let lab = Lab::new();
    let server = start(&lab, "");
    let tcp = tcp_client(&lab, &server).await;
    remote_forward_case(&tcp, "TCP").await;
    let quic = quic_client(&lab, &server).await;
    remote_forward_case(&quic, "QUIC").await;
    others_unaffected(&lab, &server).await;
}

async fn env_case<C: Connection>(conn: &C, what: &str) {
    let parts = open(conn, ChannelKind::Session).await.expect("a session");
    let mut accepted = 0;
    for i in 0..140 {
        let request = ChannelRequest::Env {
            name: format!("SSHQ_TEST_{i}"),
            value: "x".into(),
        };
        if step("env", parts.control.request(request, true))
            .await
            .expect("env reply")
        {
            accepted += 1;
        }
    }
    // sshd: "if (s->num_env > 128) ... too many env vars", so 129 are set.
    assert_eq!(accepted, 129, "{what}: env variables accepted");
    let exec = ChannelRequest::Exec(b"true".to_vec());
    assert!(
        step("exec", parts.control.request(exec, true))
            .await
            .expect("exec reply"),
        "{what}: the session still runs a command"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_variables_per_session_are_capped_both_transports() {
    let lab = Lab::new();
    let server = start(&lab, "");
    let tcp = tcp_client(&lab, &server).await;
    env_case(&tcp, "TCP").await;
    let quic = quic_client(&lab, &server).await;
    env_case(&quic, "QUIC").await;
}

/// sshqd's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Writes one-byte packets on a session whose program never reads its
/// input, until `count` are sent or the server stops taking them; how many
/// were sent.
async fn one_byte_flood<C: Connection>(conn: &C, count: usize) -> usize {
    let mut parts = open(conn, ChannelKind::Session).await.expect("a session");
    let exec = ChannelRequest::Exec(b"sleep 600".to_vec());
    assert!(step("exec", parts.control.request(exec, true))
        .await
        .expect("exec reply"));
    let mut sent = 0;
    while sent < count {
        let batch = async {
            for _ in 0..1000 {
                parts.data_out.write_all(b"x").await?;
            }
            parts.data_out.flush().await
        };
        match tokio::time::timeout(Duration::from_secs(3), batch).await {
            Ok(Ok(())) => sent += 1000,
            // The server stopped reading (or closed): the point of the test.
            _ => break,
        }
    }
    // Keep the channel (and its stalled reader) while memory is measured.
    std::mem::forget(parts);
    sent
}

/// Floods with one-byte packets and checks sshqd's memory grew by less
/// than `bound_mib`.
async fn flood_case<C: Connection>(
    conn: &C,
    server: &Server,
    count: usize,
    bound_mib: u64,
    what: &str,
) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(server.pid());
    let started = Instant::now();
    let sent = one_byte_flood(conn, count).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(server.pid());
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!(
        "{what}: {sent} one-byte packets in {:?}; sshqd RSS {before} KiB -> {after} KiB",
        started.elapsed()
    );
    assert!(
        grown_mib < bound_mib,
        "{what}: {sent} one-byte packets grew sshqd by {grown_mib} MiB (bound {bound_mib} MiB)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_byte_data_flood_on_a_stalled_channel_keeps_memory_bounded_tcp() {
    let lab = Lab::new();
    let mut server = start(&lab, "");
    let tcp = tcp_client(&lab, &server).await;
    // Charged by payload alone, 2 million one-byte packets queue ~250 MiB
    // of chunks; charged by memory the queue stops near 64 MiB.
    flood_case(&tcp, &server, 2_000_000, 120, "TCP").await;
    assert!(server.alive(), "sshqd died");
    others_unaffected(&lab, &server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_byte_data_flood_on_a_stalled_channel_keeps_memory_bounded_quic() {
    let lab = Lab::new();
    let mut server = start(&lab, "");
    let quic = quic_client(&lab, &server).await;
    // QUIC's own stream window (32 MiB) holds the rest once sshqd stops
    // reading; before, a million one-byte chunks (~100 MiB) came first.
    flood_case(&quic, &server, 4_000_000, 80, "QUIC").await;
    assert!(server.alive(), "sshqd died");
    others_unaffected(&lab, &server).await;
}

/// Raw frames on a QUIC channel: a session open, then `count` env requests
/// wanting replies, whose replies are never read.
async fn request_flood(conn: &quinn::Connection, count: usize) -> usize {
    let (mut send, _recv_never_read) = step("open a stream", conn.open_bi())
        .await
        .expect("a stream");
    send.write_all(&encode_frame(&Frame::ChannelOpen(ChannelKind::Session)))
        .await
        .expect("OPEN");
    let request = encode_frame(&Frame::ChannelRequest {
        request: ChannelRequest::Env {
            name: "SSHQ_TEST_FLOOD".into(),
            value: "x".repeat(64),
        },
        want_reply: true,
    });
    let batch: Vec<u8> = request
        .iter()
        .copied()
        .cycle()
        .take(request.len() * 1000)
        .collect();
    let mut sent = 0;
    while sent < count {
        match tokio::time::timeout(Duration::from_secs(3), send.write_all(&batch)).await {
            Ok(Ok(())) => sent += 1000,
            _ => break,
        }
    }
    std::mem::forget(send);
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_flood_with_unread_replies_keeps_memory_bounded_quic() {
    let lab = Lab::new();
    let mut server = start(&lab, "");
    let quic = quic_client(&lab, &server).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(server.pid());
    let sent = request_flood(quic.quic(), 1_000_000).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(server.pid());
    eprintln!("QUIC: {sent} requests; sshqd RSS {before} KiB -> {after} KiB");
    assert!(
        after.saturating_sub(before) / 1024 < 100,
        "{sent} requests with unread replies grew sshqd from {before} to {after} KiB"
    );
    assert!(server.alive(), "sshqd died");
    others_unaffected(&lab, &server).await;
}

/// Test frames always fit; the checked encoder's error would be a test bug.
fn encode_frame(frame: &Frame) -> Vec<u8> {
    sshq_quic::wire::encode_frame(frame)
        .expect("a test frame encodes")
        .to_vec()
}
