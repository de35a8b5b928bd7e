//! Issue 10, how long sshqd keeps a TCP client, against real OpenSSH ssh
//! behind a proxy that plays the hostile part:
//! - ClientAliveCountMax counts unanswered keepalive@openssh.com requests,
//!   and only an answer resets the count (as in sshd), not any packet: a
//!   client that keeps sending data but never answers is dropped;
//! - after sshqd sent SSH_MSG_DISCONNECT, a client that neither reads nor
//!   closes loses its socket within a few seconds.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{wait_until, Lab};

/// A TCP proxy in front of sshqd for one client connection.
struct Proxy {
    port: u16,
    /// Set: bytes from sshqd are read and thrown away, so the client never
    /// sees them (and cannot answer keepalives); its own bytes still flow.
    blackhole: Arc<AtomicBool>,
    /// The proxy's socket to sshqd, kept open (and unread once the client
    /// is gone) for as long as the test runs: a peer that never closes.
    upstream: Arc<Mutex<Option<TcpStream>>>,
    /// The proxy's local port on its connection to sshqd, once connected.
    upstream_port: Arc<Mutex<Option<u16>>>,
}

impl Proxy {
    fn start(server_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let blackhole = Arc::new(AtomicBool::new(false));
        let upstream = Arc::new(Mutex::new(None));
        let upstream_port = Arc::new(Mutex::new(None));
        let (hole, keep, keep_port) = (blackhole.clone(), upstream.clone(), upstream_port.clone());
        std::thread::spawn(move || {
            let Ok((client, _)) = listener.accept() else {
                return;
            };
            let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)) else {
                return;
            };
            if let Ok(addr) = server.local_addr() {
                *keep_port.lock().unwrap() = Some(addr.port());
            }
            let (Ok(mut client_in), Ok(mut server_out)) = (client.try_clone(), server.try_clone())
            else {
                return;
            };
            *keep.lock().unwrap() = server.try_clone().ok();
            // Client to sshqd; the client's EOF is not passed on.
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n @ 1..) = client_in.read(&mut buf) {
                    if server_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
            // sshqd to the client, until the client is gone; then sshqd's
            // socket is left alone, neither read nor closed.
            let (mut server_in, mut client_out) = (server, client);
            let mut buf = [0u8; 16384];
            while let Ok(n @ 1..) = server_in.read(&mut buf) {
                if hole.load(Ordering::SeqCst) {
                    continue;
                }
                if client_out.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = client_out.shutdown(Shutdown::Both);
            // Hold sshqd's socket until the test ends (`upstream` owns a
            // clone of it).
        });
        Proxy {
            port,
            blackhole,
            upstream,
            upstream_port,
        }
    }
}

/// Whether sshqd (process `pid`) still holds a TCP socket whose peer is
/// 127.0.0.1:`peer_port`, per `ss`.
fn sshqd_holds_socket_to(pid: u32, peer_port: u16) -> bool {
    let out = Command::new("ss")
        .args(["-tanpH"])
        .output()
        .expect("ss must be installed (iproute2)");
    let listing = String::from_utf8_lossy(&out.stdout);
    let peer = format!("127.0.0.1:{peer_port} ");
    let owner = format!("pid={pid},");
    listing.lines().any(|line| {
        let columns: Vec<&str> = line.split_whitespace().collect();
        // State Recv-Q Send-Q Local Peer Process
        columns.get(4).is_some_and(|p| format!("{p} ") == peer) && line.contains(&owner)
    })
}

#[test]
fn client_alive_drops_a_client_that_sends_data_but_never_answers() {
    let lab = Lab::new();
    // Three unanswered requests, one a second (sshd drops the client when
    // the count passes ClientAliveCountMax).
    let server = lab.start_sshqd("ClientAliveInterval 1\nClientAliveCountMax 2\n");
    let proxy = Proxy::start(server.port);
    let received = lab.path("received");
    let args = lab.client_args(
        "user",
        "accept-new",
        proxy.port,
        &[],
        &[&format!("echo started; cat > {}", received.display())],
    );
    let mut client = Command::new("ssh")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ssh");
    let mut stdout = client.stdout.take().expect("ssh stdout");
    let mut started = [0u8; 8];
    stdout
        .read_exact(&mut started)
        .expect("the session starts and prints");
    assert_eq!(&started, b"started\n");
    let mut stdin = client.stdin.take().expect("ssh stdin");
    // From now on the client never hears from sshqd, so never answers its
    // keepalives, but its data keeps arriving: a line every 1.5 s, more
    // often than the 3 s sshqd allows without an answer.
    proxy.blackhole.store(true, Ordering::SeqCst);
    let blackholed = Instant::now();
    let timeout_line = format!(
        "Timeout, client not responding from user {} 127.0.0.1 port",
        lab.user
    );
    let mut tick = 0;
    let mut dropped = false;
    while blackholed.elapsed() < Duration::from_secs(15) {
        tick += 1;
        let _ = writeln!(stdin, "tick {tick}");
        let _ = stdin.flush();
        if wait_until(Duration::from_millis(1500), || {
            server.log_text().contains(&timeout_line)
        }) {
            dropped = true;
            break;
        }
    }
    let took = blackholed.elapsed();
    let _ = client.kill();
    let _ = client.wait();
    assert!(
        dropped,
        "sshqd kept a client that sent data for 15 s but answered no keepalive; its log:\n{}",
        server.log_text()
    );
    // Its data did arrive after it went deaf: it was dropped for not
    // answering, not for being silent.
    let got = std::fs::read_to_string(&received).unwrap_or_default();
    assert!(got.contains("tick 2\n"), "sshqd received only {got:?}");
    assert!(
        took >= Duration::from_secs(2) && took <= Duration::from_secs(10),
        "dropped {took:?} after the client stopped answering, expected 3 to 5 s"
    );
}

#[test]
fn a_disconnected_client_that_never_closes_loses_its_socket() {
    let lab = Lab::new();
    for name in ["extra1", "extra2", "extra3"] {
        lab.keygen(name, "ed25519", name);
    }
    // ssh offers four keys sshqd does not accept; at the second failure
    // sshqd sends "Too many authentication failures" and disconnects.
    let mut server = lab.start_sshqd("MaxAuthTries 2\nLoginGraceTime 120\n");
    let proxy = Proxy::start(server.port);
    let extra: Vec<String> = ["extra1", "extra2", "extra3"]
        .iter()
        .flat_map(|k| ["-i".to_string(), lab.path(k).display().to_string()])
        .collect();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let out = lab.client("ssh", "stranger", proxy.port, &extra, &["true"], b"");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Too many authentication failures"),
        "{}",
        common::show(&out)
    );
    // ssh is gone; the proxy keeps sshqd's socket open and reads nothing.
    let upstream_port = proxy
        .upstream_port
        .lock()
        .unwrap()
        .expect("proxy connected");
    assert!(proxy.upstream.lock().unwrap().is_some());
    let disconnected = Instant::now();
    let released = wait_until(Duration::from_secs(10), || {
        !sshqd_holds_socket_to(server.pid(), upstream_port)
    });
    assert!(
        released,
        "sshqd still holds the socket of a client it disconnected {:?} ago; its log:\n{}",
        disconnected.elapsed(),
        server.log_text()
    );
    assert!(server.alive(), "{}", server.log_text());
}
