//! No queue in front of a keystroke over TCP (issue 12, item 1): the
//! mechanism, checked by counting bytes, never by timing.
//!
//! Client and server are sshq-tcp, built in this process, connected over
//! real loopback sockets through a small proxy that can stall or slow the
//! server-to-client direction, the way a lossy link does. What is counted:
//! the bytes a server-side bulk channel managed to hand to sshq-tcp against
//! the bytes that left the server (read by the proxy), and the bulk bytes
//! that reached the client ahead of a terminal's echo. Without send pacing
//! both reach the channel window (2 MiB): russh takes all the window allows
//! and the kernel's autotuned send buffer takes the rest.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sshq_core::auth::{FileKey, UserKey};
use sshq_core::channel::{ChannelKind, ChannelRequest, PtyRequest, WindowSize};
use sshq_core::transport::{
    Channel, ChannelControl, ChannelParts, Connection, Incoming, RequestStream,
};
use sshq_tcp::{ClientParams, KexList, ServerParams, TcpClientConnection, TcpServerConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

use common::clients::{OneHostKey, OneKey};
use common::Lab;

const USER: &str = "tcplat";

/// The channel window both ends grant (tcp-transport's CHANNEL_WINDOW).
const WINDOW: u64 = 2 * 1024 * 1024;

/// The most the server may hold beyond what the proxy has read: the send
/// budget, the kernel's unsent low-water mark, one packet in flight
/// inside russh, and the kernel buffers of the loopback hop, with room to
/// spare; still half the window.
const HELD_AT_MOST: u64 = WINDOW / 2;

/// Limit on any one step: only against hangs, never a performance bound.
const STEP: Duration = Duration::from_secs(30);

async fn step<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, work).await {
        Ok(done) => done,
        Err(_) => panic!("{what}: no progress within {STEP:?}"),
    }
}

/// How the proxy passes the server's bytes on to the client.
#[derive(Clone)]
struct Downstream {
    /// While set, the proxy reads nothing more from the server.
    stalled: Arc<AtomicBool>,
    /// Bytes the proxy has read from the server.
    taken: Arc<AtomicU64>,
    /// A pause after each read of at most 16 KiB (a slow link).
    pause: Option<Duration>,
}

/// A logged-in client and server, through the proxy.
struct Pair {
    client: TcpClientConnection,
    server: TcpServerConnection,
    downstream: Downstream,
    _lab: Lab,
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Relays one client connection to `server`, the server's bytes as
/// `downstream` says. The proxy's socket to the server has a small receive
/// buffer, so what the server has sent and the proxy not yet read stays
/// small and known.
async fn proxy(listener: TcpListener, server: SocketAddr, downstream: Downstream) {
    let Ok((client, _)) = listener.accept().await else {
        return;
    };
    let Ok(socket) = TcpSocket::new_v4() else {
        return;
    };
    let _ = socket.set_recv_buffer_size(32 * 1024);
    let Ok(upstream) = socket.connect(server).await else {
        return;
    };
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = upstream.into_split();
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if downstream.stalled.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let n = match from_server.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        downstream.taken.fetch_add(n as u64, Ordering::AcqRel);
        if to_client.write_all(&buf[..n]).await.is_err() {
            return;
        }
        if let Some(pause) = downstream.pause {
            tokio::time::sleep(pause).await;
        }
    }
}

async fn pair(pause: Option<Duration>) -> Pair {
    let lab = Lab::new();
    let host = lab.private_key("host_ed25519");
    let user = lab.private_key("user");
    let listener = TcpListener::bind(loopback())
        .await
        .expect("bind the server");
    let server_addr = listener.local_addr().expect("server address");
    let proxy_listener = TcpListener::bind(loopback()).await.expect("bind the proxy");
    let proxy_addr = proxy_listener.local_addr().expect("proxy address");
    let downstream = Downstream {
        stalled: Arc::new(AtomicBool::new(false)),
        taken: Arc::new(AtomicU64::new(0)),
        pause,
    };
    tokio::spawn(proxy(proxy_listener, server_addr, downstream.clone()));
    let params = Arc::new(ServerParams {
        host_keys: vec![host.clone()],
        host_certificates: Vec::new(),
        policy: Arc::new(OneKey {
            user: USER,
            key: user.public_key().clone(),
        }),
        login_grace_time: None,
        allow_agent_forwarding: false,
        client_alive_interval: None,
        client_alive_count_max: 3,
        kex: KexList::server_default(),
    });
    let server = async move {
        let (stream, peer) = listener.accept().await.expect("accept the client");
        // As sshqd does at accept.
        sshq_tcp::tune_socket(&stream).expect("TCP_NOTSENT_LOWAT");
        let local = stream.local_addr().ok();
        sshq_tcp::accept(stream, local, Some(peer), params).await
    };
    let client = sshq_tcp::connect_tcp(
        proxy_addr,
        ClientParams {
            host: "127.0.0.1".to_string(),
            user: USER.to_string(),
            auth_options: Default::default(),
            keys: vec![Arc::new(FileKey::new(user.clone(), "user")) as Arc<dyn UserKey>],
            verifier: Arc::new(OneHostKey(host.public_key().clone())),
            kex: None,
            known_host_key_types: Vec::new(),
            congestion: None,
            tcp_keepalive: true,
        },
    );
    let (server, client) = step("login", async { tokio::join!(server, client) }).await;
    Pair {
        client: client.expect("client login"),
        server: server.expect("server accept"),
        downstream,
        _lab: lab,
    }
}

/// The client opens a channel of `kind`, the server accepts it.
async fn open<A: Connection, B: Connection>(
    client: &A,
    server: &B,
    kind: ChannelKind,
) -> (ChannelParts<A::Channel>, ChannelParts<B::Channel>) {
    let accepting = async {
        loop {
            match server.accept().await {
                Some(Incoming::Channel(pending)) => return pending.accept().split(),
                Some(Incoming::GlobalRequest(_)) => continue,
                None => panic!("the connection ended before the channel opened"),
            }
        }
    };
    let opening = async {
        client
            .open_channel(kind)
            .await
            .expect("open_channel")
            .split()
    };
    step("open a channel", async { tokio::join!(opening, accepting) }).await
}

fn forward() -> ChannelKind {
    ChannelKind::DirectTcpip {
        host: "bulk.example".to_string(),
        port: 9,
        originator: "127.0.0.1".to_string(),
        originator_port: 50000,
    }
}

/// Writes to `writer` for ever, counting what it accepted in `pulled`.
fn saturate(
    mut writer: impl tokio::io::AsyncWrite + Unpin + Send + 'static,
    pulled: Arc<AtomicU64>,
) {
    tokio::spawn(async move {
        let chunk = vec![0x5a_u8; 16 * 1024];
        loop {
            match writer.write(&chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => pulled.fetch_add(n as u64, Ordering::AcqRel),
            };
        }
    });
}

/// Reads `reader` for ever, counting what arrived in `got`.
fn drain(mut reader: impl tokio::io::AsyncRead + Unpin + Send + 'static, got: Arc<AtomicU64>) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.fetch_add(n as u64, Ordering::AcqRel),
            };
        }
    });
}

/// Waits until `count` reaches `at_least`.
async fn until_at_least(count: &AtomicU64, at_least: u64, what: &str) {
    step(what, async {
        while count.load(Ordering::Acquire) < at_least {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Waits until `count` has not moved for a while: whatever could be sent
/// has been.
async fn until_settled(count: &AtomicU64) -> u64 {
    let mut last = count.load(Ordering::Acquire);
    let mut still = 0;
    step("the counts settle", async {
        while still < 10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = count.load(Ordering::Acquire);
            still = if now == last { still + 1 } else { 0 };
            last = now;
        }
    })
    .await;
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_leaves_little_bulk_queued_at_the_server() {
    let pair = pair(None).await;
    let (client_side, server_side) = open(&pair.client, &pair.server, forward()).await;
    let pulled = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    saturate(server_side.data_out, pulled.clone());
    drain(client_side.data_in, received.clone());
    // The bulk runs at loopback speed for a while, then the client's
    // link stops taking anything.
    until_at_least(&received, 4 * WINDOW, "bulk flows").await;
    pair.downstream.stalled.store(true, Ordering::Release);
    let pulled = until_settled(&pulled).await;
    let left = pair.downstream.taken.load(Ordering::Acquire);
    let held = pulled.saturating_sub(left);
    eprintln!("pulled {pulled} bytes, {left} left the server: {held} held there");
    assert!(
        held <= HELD_AT_MOST,
        "the server pulled {held} bytes of bulk it could not send (at most {HELD_AT_MOST})"
    );
    // Nothing was lost: once the link runs again, the bulk goes on.
    pair.downstream.stalled.store(false, Ordering::Release);
    until_at_least(&received, left + 2 * WINDOW, "bulk flows again").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_stops_the_sender_at_one_window() {
    let pair = pair(None).await;
    let (client_side, server_side) = open(&pair.client, &pair.server, forward()).await;
    let pulled = Arc::new(AtomicU64::new(0));
    saturate(server_side.data_out, pulled.clone());
    // The client's SSH layer reads everything, its application nothing:
    // the window is granted only for what the application consumed, so
    // the sender stops after one window (plus what it may hold itself).
    let mut reader = client_side.data_in;
    let stopped_at = until_settled(&pulled).await;
    eprintln!("the server pulled {stopped_at} bytes while nobody read");
    assert!(
        stopped_at <= WINDOW + HELD_AT_MOST,
        "{stopped_at} bytes sent to a reader that read nothing (window {WINDOW})"
    );
    assert!(
        stopped_at >= WINDOW / 2,
        "the window was used: {stopped_at} bytes"
    );
    // Reading resumes: the window is granted again and the data flows.
    let got = Arc::new(AtomicU64::new(0));
    let mut first = vec![0u8; 1];
    step("read", reader.read_exact(&mut first))
        .await
        .expect("read");
    drain(reader, got.clone());
    until_at_least(&pulled, stopped_at + 2 * WINDOW, "bulk flows again").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_echo_overtakes_a_saturating_forward() {
    // About 3 MB/s: the forward always has more to send than the link takes.
    let pair = pair(Some(Duration::from_millis(5))).await;
    let (shell_client, mut shell_server) =
        open(&pair.client, &pair.server, ChannelKind::Session).await;
    let pty = ChannelRequest::Pty(PtyRequest {
        term: "xterm".to_string(),
        size: WindowSize {
            cols: 80,
            rows: 24,
            pix_width: 0,
            pix_height: 0,
        },
        modes: Vec::new(),
    });
    let asking = shell_client.control.request(pty, true);
    let answering = async {
        let request = shell_server.requests.next().await.expect("the pty request");
        assert!(matches!(request.request, ChannelRequest::Pty(_)));
        request.reply.send(true);
    };
    let (granted, ()) = step("pty request", async { tokio::join!(asking, answering) }).await;
    assert!(
        granted.expect("pty request sent"),
        "the server grants the pty"
    );

    let (bulk_client, bulk_server) = open(&pair.client, &pair.server, forward()).await;
    let pulled = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    saturate(bulk_server.data_out, pulled.clone());
    drain(bulk_client.data_in, received.clone());
    until_at_least(&received, WINDOW, "bulk flows").await;

    let mut echo_in = shell_client.data_in;
    let mut echo_out = shell_server.data_out;
    for round in 0..5 {
        // Let the queue in front of the echo fill as far as it can.
        until_at_least(
            &received,
            received.load(Ordering::Acquire) + WINDOW / 4,
            "bulk flows",
        )
        .await;
        let before = received.load(Ordering::Acquire);
        let echo = format!("echo {round}\r\n");
        step("write the echo", echo_out.write_all(echo.as_bytes()))
            .await
            .expect("write the echo");
        let mut got = vec![0u8; echo.len()];
        step("read the echo", echo_in.read_exact(&mut got))
            .await
            .expect("read the echo");
        assert_eq!(got, echo.as_bytes());
        let ahead = received.load(Ordering::Acquire).saturating_sub(before);
        eprintln!("round {round}: {ahead} bytes of bulk arrived ahead of the echo");
        assert!(
            ahead <= HELD_AT_MOST,
            "{ahead} bytes of bulk were queued in front of a terminal's echo (at most {HELD_AT_MOST})"
        );
    }
}
