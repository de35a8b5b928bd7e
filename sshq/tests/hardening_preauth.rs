//! sshqd's limits before login (issue 10): MaxStartups, the per-source
//! limit, PerSourcePenalties, and over QUIC the pre-authentication stream
//! and flow-control limits and Retry. Stalled clients come from 127.0.0.2
//! (all of 127.0.0.0/8 is loopback on Linux), legitimate ones from
//! 127.0.0.1, so one source is shown not to lock out another.
//!
//! Each test sets a pre-authentication keyword, so the lab's relaxed
//! limits (common::LAB_PREAUTH_LIMITS) do not apply.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{show, text, wait_until, Lab, Listeners, Server};
use sshq_test_kit::quinn;

/// sshd's default MaxStartups, written out: sshqd's defaults then apply to
/// everything else (per-source limit 5, penalties on).
const SSHD_DEFAULTS: &str = "MaxStartups 10:30:100\nLoginGraceTime 60";

const STALLED: usize = 400;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("tokio runtime")
}

/// `n` TCP connections from `source` to sshqd that never say a word.
fn stalled_tcp(
    rt: &tokio::runtime::Runtime,
    source: [u8; 4],
    port: u16,
    n: usize,
) -> Vec<tokio::net::TcpStream> {
    rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..n {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind(SocketAddr::from((source, 0)))
                .expect("bind the stalled client's address");
            let server = SocketAddr::from(([127, 0, 0, 1], port));
            // Refused connections are accepted by the kernel, then closed by
            // sshqd: either way the client keeps its end.
            if let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(5), socket.connect(server)).await
            {
                held.push(stream);
            }
        }
        held
    })
}

/// Accepts whatever host key sshqd presents: these clients test limits,
/// not host keys.
struct AnyHostKey;

impl sshq_core::auth::ServerKeyVerifier for AnyHostKey {
    fn verify(&self, _key: &sshq_core::ssh_key::PublicKey) -> bool {
        true
    }
}

/// A raw QUIC client on `bind` that speaks sshq/1's TLS but never logs in.
fn quic_client(bind: [u8; 4]) -> (quinn::Endpoint, quinn::ClientConfig) {
    let provider = sshq_quic::kx::crypto_provider(sshq_quic::kx::DEFAULT_KEX).expect("kex");
    let tls = sshq_quic::tls::client_tls(Arc::new(AnyHostKey), provider).expect("tls");
    let config = sshq_quic::tls::client_config(tls).expect("quic config");
    let endpoint =
        sshq_quic::endpoint::client_endpoint(SocketAddr::from((bind, 0))).expect("endpoint");
    (endpoint, config)
}

async fn quic_connect(
    endpoint: &quinn::Endpoint,
    config: &quinn::ClientConfig,
    server: SocketAddr,
) -> Result<quinn::Connection, String> {
    let connecting = endpoint
        .connect_with(config.clone(), server, "sshq")
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(10), connecting).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err("handshake timed out".to_string()),
    }
}

fn login_works(lab: &Lab, server: &Server, transport: &str) -> Result<(), String> {
    let option = format!("Transport={transport}");
    let out = lab.sshq(server.port, &["-o", &option], &["echo ok"], b"");
    if out.status.code() == Some(0) && text(&out.stdout) == "ok\n" {
        Ok(())
    } else {
        Err(format!("sshq over {transport}:\n{}", show(&out)))
    }
}

fn ssh_login_works(lab: &Lab, server: &Server) -> Result<(), String> {
    let out = lab.ssh(server.port, &[], &["echo ok"], b"");
    if out.status.code() == Some(0) && text(&out.stdout) == "ok\n" {
        Ok(())
    } else {
        Err(format!("ssh:\n{}", show(&out)))
    }
}

fn log_has(server: &Server, needle: &str) -> bool {
    wait_until(Duration::from_secs(5), || {
        server.log_text().contains(needle)
    })
}

#[test]
fn stalled_tcp_connections_from_one_source_do_not_lock_out_another() {
    let lab = Lab::new();
    let server = lab.start_sshqd(SSHD_DEFAULTS);
    let rt = runtime();
    let stalled = stalled_tcp(&rt, [127, 0, 0, 2], server.port, STALLED);
    assert!(
        stalled.len() > 300,
        "only {} stalled connections",
        stalled.len()
    );
    ssh_login_works(&lab, &server).unwrap_or_else(|e| panic!("{e}\n{}", server.log_text()));
    login_works(&lab, &server, "tcp").unwrap_or_else(|e| panic!("{e}\n{}", server.log_text()));
    assert!(
        log_has(&server, "drop connection #5 from [127.0.0.2]:"),
        "the sixth stalled connection is dropped by the per-source limit; log:\n{}",
        server.log_text()
    );
    assert!(server.log_text().contains("on [127.0.0.1]:"));
    assert!(
        server
            .log_text()
            .contains("Maxstartups logging rate-limited")
            || server
                .log_text()
                .lines()
                .filter(|l| l.contains("drop connection"))
                .count()
                <= 10,
        "drop lines are rate-limited"
    );
    drop(stalled);
}

#[test]
fn stalled_quic_connections_from_one_source_do_not_lock_out_another() {
    let lab = Lab::new();
    let extra = format!("{SSHD_DEFAULTS}\nTransports quic,tcp");
    let server = lab.start_sshqd_on(&extra, Listeners::Both);
    let rt = runtime();
    let addr = SocketAddr::from(([127, 0, 0, 1], server.port));
    let (endpoint, config) = rt.block_on(async { quic_client([127, 0, 0, 2]) });
    let results: Vec<Result<quinn::Connection, String>> = rt.block_on(async {
        let attempts = (0..STALLED).map(|_| {
            let (endpoint, config) = (endpoint.clone(), config.clone());
            async move { quic_connect(&endpoint, &config, addr).await }
        });
        join_all(attempts).await
    });
    let completed: Vec<&quinn::Connection> =
        results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert!(
        completed.len() <= 5,
        "{} stalled QUIC handshakes completed from one source (limit 5)",
        completed.len()
    );
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.contains("refused")))
        .count();
    assert!(
        refused >= STALLED - 5,
        "only {refused} refused; an error: {:?}",
        results.iter().find_map(|r| r.as_ref().err())
    );
    login_works(&lab, &server, "quic").unwrap_or_else(|e| panic!("{e}\n{}", server.log_text()));
    ssh_login_works(&lab, &server).unwrap_or_else(|e| panic!("{e}\n{}", server.log_text()));
    assert!(
        log_has(&server, "from [127.0.0.2]:"),
        "drops are logged; log:\n{}",
        server.log_text()
    );
    drop(results);
}

/// Runs futures concurrently, as tasks; their outputs in order.
async fn join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        if let Ok(result) = handle.await {
            out.push(result);
        }
    }
    out
}

#[test]
fn max_startups_full_refuses_new_connections_on_both_transports() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on(
        "MaxStartups 3\nPerSourceMaxStartups none\nPerSourcePenalties no\nLoginGraceTime 60\n\
         Transports quic,tcp",
        Listeners::Both,
    );
    // sshqd greets admitted clients with its SSH banner. The lab's own
    // readiness probe may still hold a slot for a moment (sshqd frees it
    // when it sees the probe's EOF), so a refused one is tried again.
    let admitted = |port: u16| -> TcpStream {
        for _ in 0..50 {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut first = [0u8; 4];
            stream.read_exact(&mut first).expect("banner");
            if &first == b"SSH-" {
                return stream;
            }
            assert_eq!(&first, b"Not ", "refused with something else");
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("sshqd never admitted a connection below MaxStartups");
    };
    let stalled: Vec<TcpStream> = (0..3).map(|_| admitted(server.port)).collect();
    let mut fourth = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    fourth
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut said = Vec::new();
    let _ = fourth.read_to_end(&mut said);
    assert_eq!(text(&said), "Not allowed at this time\r\n");
    assert!(
        log_has(&server, "drop connection #"),
        "log:\n{}",
        server.log_text()
    );
    assert!(server.log_text().contains("Maxstartups"));

    let rt = runtime();
    let addr = SocketAddr::from(([127, 0, 0, 1], server.port));
    let refused = rt.block_on(async {
        let (endpoint, config) = quic_client([127, 0, 0, 1]);
        quic_connect(&endpoint, &config, addr).await.map(|_| ())
    });
    assert!(
        matches!(&refused, Err(e) if e.contains("refused")),
        "QUIC at MaxStartups: {refused:?}"
    );
    assert!(ssh_login_works(&lab, &server).is_err(), "full is full");

    drop(stalled);
    // The slots come back when the stalled connections go.
    assert!(
        wait_until(Duration::from_secs(10), || ssh_login_works(&lab, &server)
            .is_ok()),
        "no login after the stalled connections left; log:\n{}",
        server.log_text()
    );
    login_works(&lab, &server, "quic").unwrap_or_else(|e| panic!("{e}\n{}", server.log_text()));
}

#[test]
fn a_source_that_failed_to_log_in_is_refused_until_its_penalty_expires() {
    let lab = Lab::new();
    // A refused key makes a `noauth` ending, as in sshd (authfail needs a
    // checked signature or password).
    let server = lab.start_sshqd_on(
        "PerSourcePenalties noauth:6s min:1s\nTransports quic,tcp",
        Listeners::Both,
    );
    let out = lab.client("ssh", "stranger", server.port, &[], &["true"], b"");
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    let failed_at = Instant::now();
    assert!(
        // "new ... active penalty", or "activating" when the lab's readiness
        // probe (a connection that never authenticated) left a deferred one.
        wait_until(Duration::from_secs(5), || {
            let log = server.log_text();
            log.contains(
                "127.0.0.1/32 active penalty of 6.000 seconds for penalty: connections without attempting authentication",
            ) || log.contains("127.0.0.1/32: activating ipv4 penalty of")
        }),
        "log:\n{}",
        server.log_text()
    );
    // Refused early, on both transports, while the penalty lasts.
    let during_tcp = ssh_login_works(&lab, &server);
    let during_quic = login_works(&lab, &server, "quic");
    assert!(
        failed_at.elapsed() < Duration::from_secs(5),
        "too slow to observe the penalty: {:?}",
        failed_at.elapsed()
    );
    assert!(during_tcp.is_err(), "ssh logged in while penalised");
    assert!(
        during_quic.is_err(),
        "sshq over QUIC logged in while penalised"
    );
    assert!(
        log_has(&server, "drop connection #0 from [127.0.0.1]:"),
        "log:\n{}",
        server.log_text()
    );
    assert!(server.log_text().contains("on [127.0.0.1]:"));
    // The penalty is 6 s, plus what was left of a deferred one (the lab's
    // readiness probe never authenticated): logins work again after it.
    assert!(
        wait_until(Duration::from_secs(15), || ssh_login_works(&lab, &server)
            .is_ok()),
        "still refused long after the penalty; log:\n{}",
        server.log_text()
    );
    assert!(
        failed_at.elapsed() >= Duration::from_millis(5500),
        "let in before the penalty ran out: {:?}",
        failed_at.elapsed()
    );
    login_works(&lab, &server, "quic")
        .unwrap_or_else(|e| panic!("after expiry: {e}\n{}", server.log_text()));
}

#[test]
fn login_grace_time_is_penalised_unless_the_source_is_exempt() {
    let lab = Lab::new();
    let penalised =
        lab.start_sshqd("LoginGraceTime 2\nPerSourcePenalties grace-exceeded:30s min:1s");
    let exempt = lab.start_sshqd(
        "LoginGraceTime 2\nPerSourcePenalties grace-exceeded:30s min:1s\n\
         PerSourcePenaltyExemptList 10.0.0.0/8,127.0.0.1",
    );
    let silent: Vec<TcpStream> = [&penalised, &exempt]
        .iter()
        .map(|s| TcpStream::connect(("127.0.0.1", s.port)).expect("connect"))
        .collect();
    for server in [&penalised, &exempt] {
        assert!(
            wait_until(Duration::from_secs(10), || server
                .log_text()
                .contains("timeout before authentication")),
            "LoginGraceTime did not end the silent client; log:\n{}",
            server.log_text()
        );
    }
    assert!(
        log_has(&penalised, "penalty: exceeded LoginGraceTime"),
        "log:\n{}",
        penalised.log_text()
    );
    assert!(
        ssh_login_works(&lab, &penalised).is_err(),
        "penalised source logged in"
    );
    ssh_login_works(&lab, &exempt).unwrap_or_else(|e| panic!("exempt: {e}\n{}", exempt.log_text()));
    assert!(
        !exempt.log_text().contains("penalty"),
        "{}",
        exempt.log_text()
    );
    drop(silent);
}

#[test]
fn before_login_a_quic_client_gets_five_streams_and_a_small_window() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on(
        &format!("{SSHD_DEFAULTS}\nTransports quic"),
        Listeners::Quic,
    );
    let rt = runtime();
    let addr = SocketAddr::from(([127, 0, 0, 1], server.port));
    let (opened, sent) = rt.block_on(async {
        let (endpoint, config) = quic_client([127, 0, 0, 1]);
        let conn = quic_connect(&endpoint, &config, addr)
            .await
            .expect("handshake");
        let mut streams = Vec::new();
        for _ in 0..100 {
            match tokio::time::timeout(Duration::from_millis(300), conn.open_bi()).await {
                Ok(Ok(stream)) => streams.push(stream),
                _ => break,
            }
        }
        let opened = streams.len();
        // The first stream is the control stream (read before login); fill
        // a channel stream, which is not read until login.
        let before = conn.stats().udp_tx.bytes;
        if let Some((send, _)) = streams.get_mut(1) {
            let payload = vec![0u8; 4 << 20];
            let _ = tokio::time::timeout(Duration::from_secs(2), send.write_all(&payload)).await;
        }
        (opened, conn.stats().udp_tx.bytes - before)
    });
    assert_eq!(opened, 5, "streams a client may open before logging in");
    assert!(
        sent < 256 * 1024,
        "{sent} bytes went out before login (window 64 KiB); log:\n{}",
        server.log_text()
    );
    // Logged-in clients are not limited: a session still works.
    login_works(&lab, &server, "quic").unwrap_or_else(|e| panic!("{e}\n{}", server.log_text()));
}

/// A UDP relay between a QUIC client and sshqd that notes the first octet
/// of every datagram sshqd sends back.
struct UdpRelay {
    port: u16,
    replies: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
}

impl UdpRelay {
    fn to(server_port: u16) -> UdpRelay {
        let front = UdpSocket::bind("127.0.0.1:0").expect("relay socket");
        let back = UdpSocket::bind("127.0.0.1:0").expect("relay socket");
        back.connect(("127.0.0.1", server_port)).expect("connect");
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
        }
        let port = front.local_addr().expect("addr").port();
        let replies = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        {
            let (front, back) = (
                front.try_clone().expect("clone"),
                back.try_clone().expect("clone"),
            );
            let (stop, client) = (stop.clone(), client.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = front.recv_from(&mut buf) {
                        *client.lock().expect("client") = Some(from);
                        let _ = back.send(&buf[..n]);
                    }
                }
            });
        }
        {
            let (replies, stop) = (replies.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = back.recv(&mut buf) {
                        if let Some(&first) = buf.first().filter(|_| n > 0) {
                            replies.lock().expect("replies").push(first);
                        }
                        if let Some(to) = *client.lock().expect("client") {
                            let _ = front.send_to(&buf[..n], to);
                        }
                    }
                }
            });
        }
        UdpRelay {
            port,
            replies,
            stop,
        }
    }

    /// The QUIC long-header packet type of sshqd's first reply (RFC 9000
    /// §17.2: 0 Initial, 3 Retry).
    fn first_reply_type(&self) -> Option<u8> {
        let replies = self.replies.lock().expect("replies");
        replies
            .first()
            .filter(|b| *b & 0x80 != 0)
            .map(|b| (b >> 4) & 0x3)
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

const INITIAL: u8 = 0;
const RETRY: u8 = 3;

#[test]
fn quic_retry_starts_once_unauthenticated_connections_pass_half_of_start() {
    let lab = Lab::new();
    // Start 4: Retry from 2 unauthenticated connections on.
    let server = lab.start_sshqd_on(
        "MaxStartups 4:30:100\nPerSourceMaxStartups none\nPerSourcePenalties no\n\
         LoginGraceTime 60\nTransports quic",
        Listeners::Quic,
    );
    let rt = runtime();
    let (endpoint, config) = rt.block_on(async { quic_client([127, 0, 0, 1]) });
    let mut held = Vec::new();
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let relay = UdpRelay::to(server.port);
        let addr = SocketAddr::from(([127, 0, 0, 1], relay.port));
        let conn = rt
            .block_on(quic_connect(&endpoint, &config, addr))
            .unwrap_or_else(|e| panic!("handshake through the relay: {e}\n{}", server.log_text()));
        kinds.push(relay.first_reply_type());
        held.push((conn, relay));
    }
    assert_eq!(
        kinds,
        [Some(INITIAL), Some(INITIAL), Some(RETRY)],
        "first reply to each client (0 Initial, 3 Retry)"
    );
    drop(held);
}
