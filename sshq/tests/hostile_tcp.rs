//! sshqd's SSH-over-TCP side against hostile peers, protocol level: raw
//! bytes before and during the key exchange, a corrupted packet after
//! NEWKEYS (a relay flipping one bit of a real ssh's stream), and a russh
//! client doing what a well-behaved client does not (unknown requests and
//! channel types, requests out of order, data after EOF, floods).
//!
//! Every case checks three things: sshqd refused clearly (its log names
//! the peer, or the peer got a failure reply), sshqd is still running, and
//! a legitimate `sshq` client works right after.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::hostile::{
    assert_unharmed, client_kexinit, closed_within, expect_logged, local_port, raw_tcp,
    write_ignoring_hangup,
};
use common::{random_bytes, show, text, Lab, Server};
use russh::ChannelMsg;

/// A grace time long enough that "closed within a few seconds" proves sshqd
/// refused the bytes, not that it gave up waiting.
const LONG_GRACE: &str = "LoginGraceTime 60";
/// How soon a refusal must come.
const PROMPT: Duration = Duration::from_secs(5);

fn start(extra: &str) -> (Lab, Server) {
    let lab = Lab::new();
    let server = lab.start_sshqd(extra);
    (lab, server)
}

// --- raw SSH packets -------------------------------------------------------

const BANNER: &[u8] = b"SSH-2.0-HostileTest_1.0\r\n";

/// Reads until the server's identification line has arrived.
fn read_server_banner(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while !seen.contains(&b'\n') && start.elapsed() < PROMPT {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    assert!(
        text(&seen).starts_with("SSH-2.0-"),
        "no server banner: {:?}",
        text(&seen)
    );
    seen
}

/// Sends `bytes` (after our banner when `after_banner`), then expects sshqd
/// to hang up within [`PROMPT`] and say so in its log; then the usual
/// checks. Returns sshqd's log line about this client.
fn expect_prompt_hangup(bytes: &[u8], after_banner: bool, what: &str) -> String {
    let (lab, mut server) = start(LONG_GRACE);
    let mut stream = raw_tcp(server.port);
    let port = local_port(&stream);
    let started = Instant::now();
    if after_banner {
        write_ignoring_hangup(&mut stream, BANNER);
        read_server_banner(&mut stream);
    }
    // Large inputs from a thread: sshqd may hang up before reading them all.
    let mut writer = stream.try_clone().expect("clone the stream");
    let bytes = bytes.to_vec();
    let feeder = std::thread::spawn(move || write_ignoring_hangup(&mut writer, &bytes));
    let mut seen = Vec::new();
    let closed = closed_within(&mut stream, started, PROMPT, &mut seen);
    assert!(
        closed.is_some(),
        "{what}: sshqd still holds the connection after {PROMPT:?} (LoginGraceTime 60); log:\n{}",
        server.log_text()
    );
    drop(stream);
    let _ = feeder.join();
    let line = expect_logged(&server, port, what);
    assert_unharmed(&lab, &mut server, false, what);
    line
}

// --- before and during the key exchange ------------------------------------

#[test]
fn garbage_instead_of_the_banner() {
    let mut junk = random_bytes(4096);
    junk[..4].copy_from_slice(b"\xff\xfe\xfd\xfc");
    junk[100] = b'\n';
    expect_prompt_hangup(&junk, false, "garbage instead of the banner");
}

#[test]
fn non_ssh_lines_instead_of_the_banner() {
    // RFC 4253 §4.2 lets only the server send lines before its banner.
    let lines = "GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200);
    expect_prompt_hangup(lines.as_bytes(), false, "HTTP instead of SSH");
}

#[test]
fn huge_banner_line() {
    // RFC 4253 §4.2: at most 255 characters. 1 MiB without a line end must
    // not be buffered until LoginGraceTime.
    let mut banner = b"SSH-2.0-".to_vec();
    banner.extend(std::iter::repeat_n(b'A', 1 << 20));
    expect_prompt_hangup(&banner, false, "a 1 MiB banner line");
}

#[test]
fn wrong_protocol_version() {
    expect_prompt_hangup(b"SSH-1.5-Ancient\r\n", false, "SSH-1.5");
}

#[test]
fn banner_without_newline_then_silence() {
    let (lab, mut server) = start("LoginGraceTime 2");
    let mut stream = raw_tcp(server.port);
    let port = local_port(&stream);
    let started = Instant::now();
    write_ignoring_hangup(&mut stream, b"SSH-2.0-NeverEnding");
    let closed = closed_within(
        &mut stream,
        started,
        Duration::from_secs(15),
        &mut Vec::new(),
    );
    let after = closed.unwrap_or_else(|| {
        panic!(
            "a banner without line end: still connected after 15 s (LoginGraceTime 2); log:\n{}",
            server.log_text()
        )
    });
    assert!(
        after >= Duration::from_secs(1) && after <= Duration::from_secs(8),
        "dropped after {after:?}, expected about 2 s"
    );
    expect_logged(&server, port, "banner without newline");
    assert_unharmed(&lab, &mut server, false, "banner without newline");
}

#[test]
fn packet_length_2_pow_31() {
    let mut bytes = vec![0x80, 0, 0, 0, 4];
    bytes.extend_from_slice(&random_bytes(64));
    expect_prompt_hangup(&bytes, true, "packet_length 2^31");
}

#[test]
fn packet_length_4_gib() {
    let mut bytes = vec![0xff, 0xff, 0xff, 0xff, 4];
    bytes.extend_from_slice(&random_bytes(64));
    expect_prompt_hangup(&bytes, true, "packet_length 2^32-1");
}

#[test]
fn packet_length_shorter_than_its_padding() {
    // length 1: only the padding-length octet, which claims 200 octets.
    expect_prompt_hangup(&[0, 0, 0, 1, 200], true, "padding longer than the packet");
}

#[test]
fn truncated_kexinit_then_eof() {
    let (lab, mut server) = start(LONG_GRACE);
    let mut stream = raw_tcp(server.port);
    let port = local_port(&stream);
    write_ignoring_hangup(&mut stream, BANNER);
    read_server_banner(&mut stream);
    let full = client_kexinit("curve25519-sha256");
    write_ignoring_hangup(&mut stream, &full[..full.len() / 2]);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let started = Instant::now();
    assert!(
        closed_within(&mut stream, started, PROMPT, &mut Vec::new()).is_some(),
        "half a KEXINIT then EOF: sshqd kept the connection; log:\n{}",
        server.log_text()
    );
    expect_logged(&server, port, "truncated KEXINIT");
    assert_unharmed(&lab, &mut server, false, "truncated KEXINIT");
}

#[test]
fn kexinit_with_no_common_algorithm() {
    let line = expect_prompt_hangup(
        &client_kexinit("no-such-kex@example.com"),
        true,
        "KEXINIT with no common key exchange",
    );
    // As sshd's "no matching key exchange method found": the reason.
    assert!(line.contains("No common"), "sshqd logged: {line}");
}

#[test]
fn client_that_never_finishes_the_key_exchange() {
    let (lab, mut server) = start("LoginGraceTime 2");
    let mut stream = raw_tcp(server.port);
    let port = local_port(&stream);
    let started = Instant::now();
    write_ignoring_hangup(&mut stream, BANNER);
    read_server_banner(&mut stream);
    // A valid KEXINIT, then never the key-exchange init that must follow.
    write_ignoring_hangup(&mut stream, &client_kexinit("curve25519-sha256"));
    let closed = closed_within(
        &mut stream,
        started,
        Duration::from_secs(15),
        &mut Vec::new(),
    );
    let after = closed.unwrap_or_else(|| {
        panic!(
            "stalled key exchange: still connected after 15 s (LoginGraceTime 2); log:\n{}",
            server.log_text()
        )
    });
    assert!(
        after <= Duration::from_secs(8),
        "dropped only after {after:?}"
    );
    expect_logged(&server, port, "stalled key exchange");
    assert_unharmed(&lab, &mut server, false, "stalled key exchange");
}

// --- after NEWKEYS: a relay corrupts one octet of a real ssh's stream ------

/// A TCP relay to `target` that passes one connection through, copying the
/// server's bytes unchanged and the client's bytes packet by packet until
/// the client's NEWKEYS, then flips one bit inside the first encrypted
/// packet. Returns its port and, once known, its own port towards sshqd.
fn corrupting_relay(target: u16) -> (u16, Arc<Mutex<Option<u16>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
    let port = listener.local_addr().expect("relay address").port();
    let upstream_port = Arc::new(Mutex::new(None));
    let record = upstream_port.clone();
    std::thread::spawn(move || {
        let Ok((mut client, _)) = listener.accept() else {
            return;
        };
        let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)) else {
            return;
        };
        *record.lock().expect("relay port") = Some(local_port(&server));
        let (Ok(mut server_rx), Ok(mut client_tx)) = (server.try_clone(), client.try_clone())
        else {
            return;
        };
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut server_rx, &mut client_tx);
            let _ = client_tx.shutdown(std::net::Shutdown::Write);
        });
        let _ = relay_and_corrupt(&mut client, &mut server);
        let _ = server.shutdown(std::net::Shutdown::Write);
    });
    (port, upstream_port)
}

fn relay_and_corrupt(client: &mut TcpStream, server: &mut TcpStream) -> std::io::Result<()> {
    // The identification line.
    let mut byte = [0u8; 1];
    loop {
        client.read_exact(&mut byte)?;
        server.write_all(&byte)?;
        if byte[0] == b'\n' {
            break;
        }
    }
    // Cleartext packets until NEWKEYS (21).
    loop {
        let mut length = [0u8; 4];
        client.read_exact(&mut length)?;
        let mut body = vec![0u8; u32::from_be_bytes(length).min(256 * 1024) as usize];
        client.read_exact(&mut body)?;
        server.write_all(&length)?;
        server.write_all(&body)?;
        if body.get(1) == Some(&21) {
            break;
        }
    }
    // The first encrypted packet: one bit flipped past the length field.
    let mut first = [0u8; 16];
    client.read_exact(&mut first)?;
    first[8] ^= 0x01;
    server.write_all(&first)?;
    std::io::copy(client, server)?;
    Ok(())
}

#[test]
fn corrupted_packet_after_newkeys() {
    let (lab, mut server) = start(LONG_GRACE);
    let (relay_port, upstream) = corrupting_relay(server.port);
    let out = lab.ssh(relay_port, &[], &["echo reached"], b"");
    assert_eq!(
        out.status.code(),
        Some(255),
        "ssh through the corrupting relay:\n{}",
        show(&out)
    );
    assert!(!text(&out.stdout).contains("reached"), "{}", show(&out));
    let port = upstream
        .lock()
        .expect("relay port")
        .expect("the relay connected to sshqd");
    let line = expect_logged(&server, port, "bad MAC after NEWKEYS");
    // As sshd's "Corrupted MAC on input": the reason, not only the end.
    assert!(
        line.contains("before authentication: "),
        "sshqd logged no reason: {line}"
    );
    assert_unharmed(&lab, &mut server, false, "bad MAC after NEWKEYS");
}

// --- after login: a russh client that misbehaves ---------------------------

mod misbehaving {
    use super::*;
    use russh::client::{self, Handle, Handler};
    use russh::keys::{load_secret_key, PrivateKeyWithHashAlg};

    pub struct AnyHostKey;

    impl Handler for AnyHostKey {
        type Error = russh::Error;

        async fn check_server_key(
            &mut self,
            _key: &russh::keys::PublicKeyOrCertificate,
        ) -> Result<bool, Self::Error> {
            Ok(true)
        }
    }

    /// A russh client logged in to sshqd as the lab's user.
    pub async fn login(lab: &Lab, port: u16) -> Handle<AnyHostKey> {
        let config = Arc::new(client::Config::default());
        let mut handle = client::connect(config, ("127.0.0.1", port), AnyHostKey)
            .await
            .expect("connect with russh");
        let key = load_secret_key(lab.path("user"), None).expect("load the user key");
        let result = handle
            .authenticate_publickey(&lab.user, PrivateKeyWithHashAlg::new(Arc::new(key), None))
            .await
            .expect("authenticate");
        assert!(result.success(), "login refused: {result:?}");
        handle
    }

    /// The messages of a channel until it closes (or 20 s pass).
    pub async fn drain(channel: &mut russh::Channel<client::Msg>) -> Vec<ChannelMsg> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, channel.wait()).await {
            let done = matches!(msg, ChannelMsg::Close);
            seen.push(msg);
            if done {
                break;
            }
        }
        seen
    }

    pub fn stdout_of(msgs: &[ChannelMsg]) -> String {
        let mut out = Vec::new();
        for msg in msgs {
            if let ChannelMsg::Data { data } = msg {
                out.extend_from_slice(data);
            }
        }
        text(&out)
    }

    pub fn exit_status(msgs: &[ChannelMsg]) -> Option<u32> {
        msgs.iter().find_map(|m| match m {
            ChannelMsg::ExitStatus { exit_status } => Some(*exit_status),
            _ => None,
        })
    }

    /// The next reply (SUCCESS or FAILURE) on a channel, skipping others.
    pub async fn reply(channel: &mut russh::Channel<client::Msg>) -> Option<bool> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, channel.wait()).await {
            match msg {
                ChannelMsg::Success => return Some(true),
                ChannelMsg::Failure => return Some(false),
                ChannelMsg::Close => return None,
                _ => {}
            }
        }
        None
    }

    /// Runs `command` on a fresh channel of `handle`: its output and status.
    pub async fn exec(handle: &Handle<AnyHostKey>, command: &str) -> (String, Option<u32>) {
        let mut channel = handle.channel_open_session().await.expect("open a session");
        channel.exec(true, command).await.expect("exec");
        let msgs = drain(&mut channel).await;
        (stdout_of(&msgs), exit_status(&msgs))
    }
}

use misbehaving::{drain, exec, exit_status, login, reply, stdout_of};

/// The same connection still runs a command, then the usual checks.
async fn still_serving(
    lab: &Lab,
    server: &mut Server,
    handle: &russh::client::Handle<misbehaving::AnyHostKey>,
    what: &str,
) {
    assert_eq!(
        exec(handle, "echo same-connection").await,
        ("same-connection\n".to_string(), Some(0)),
        "{what}: the misbehaving connection itself; log:\n{}",
        server.log_text()
    );
    assert_unharmed(lab, server, false, what);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_global_request_is_refused() {
    let (lab, mut server) = start("");
    let handle = login(&lab, server.port).await;
    let reply = handle
        .send_global_request("no-such-request@example.com", b"\x00\x01junk", true)
        .await;
    assert!(
        matches!(reply, Err(russh::Error::RequestDenied)),
        "an unknown global request: {reply:?}"
    );
    still_serving(&lab, &mut server, &handle, "unknown global request").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_of_a_type_the_server_does_not_accept() {
    let (lab, mut server) = start("");
    let handle = login(&lab, server.port).await;
    // x11 channels are opened by servers, never by clients.
    let opened = handle.channel_open_x11("127.0.0.1", 6000).await;
    assert!(
        matches!(opened, Err(russh::Error::ChannelOpenFailure(_))),
        "a client-opened x11 channel: {:?}",
        opened.map(|c| c.id())
    );
    still_serving(&lab, &mut server, &handle, "x11 channel from the client").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_exec_on_one_channel_is_refused() {
    let (lab, mut server) = start("");
    let handle = login(&lab, server.port).await;
    let mut channel = handle.channel_open_session().await.expect("open");
    channel
        .exec(true, "sleep 1; echo first")
        .await
        .expect("first exec");
    assert_eq!(reply(&mut channel).await, Some(true), "the first exec");
    channel
        .exec(true, "echo second")
        .await
        .expect("second exec");
    assert_eq!(reply(&mut channel).await, Some(false), "the second exec");
    let msgs = drain(&mut channel).await;
    assert_eq!(
        (stdout_of(&msgs), exit_status(&msgs)),
        ("first\n".to_string(), Some(0))
    );
    still_serving(&lab, &mut server, &handle, "second exec").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_before_any_program_runs() {
    let (lab, mut server) = start("");
    let handle = login(&lab, server.port).await;
    let mut channel = handle.channel_open_session().await.expect("open");
    // A window change and a signal for a session that has no pty and no
    // program yet, then data and EOF before the exec.
    channel
        .window_change(80, 24, 0, 0)
        .await
        .expect("window-change");
    channel.signal(russh::Sig::TERM).await.expect("signal");
    channel
        .data_bytes(&b"early\n"[..])
        .await
        .expect("early data");
    channel.exec(true, "cat").await.expect("exec");
    channel.eof().await.expect("eof");
    let msgs = drain(&mut channel).await;
    println!("after out-of-order requests: {msgs:?}");
    assert!(
        exit_status(&msgs).is_some() || msgs.iter().any(|m| matches!(m, ChannelMsg::Failure)),
        "the channel neither ran nor refused: {msgs:?}"
    );
    still_serving(&lab, &mut server, &handle, "requests before exec").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_after_eof_and_a_second_eof_are_not_delivered() {
    let (lab, mut server) = start("");
    let handle = login(&lab, server.port).await;
    let mut channel = handle.channel_open_session().await.expect("open");
    channel.exec(true, "wc -c").await.expect("exec");
    channel.data_bytes(&b"12345"[..]).await.expect("data");
    channel.eof().await.expect("eof");
    // Both are protocol violations (RFC 4254 §5.3): the program must not
    // see these octets.
    let _ = channel.data_bytes(&b"after-eof"[..]).await;
    let _ = channel.eof().await;
    let msgs = drain(&mut channel).await;
    assert_eq!(
        (stdout_of(&msgs).trim().to_string(), exit_status(&msgs)),
        ("5".to_string(), Some(0)),
        "{msgs:?}"
    );
    still_serving(&lab, &mut server, &handle, "data after EOF").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_after_close_is_dropped() {
    let (lab, mut server) = start("");
    let handle = login(&lab, server.port).await;
    let channel = handle.channel_open_session().await.expect("open");
    channel.exec(false, "cat >/dev/null").await.expect("exec");
    let id = channel.id();
    channel.close().await.expect("close");
    // Straight to the session, past the channel object: data for a channel
    // this client has closed.
    let _ = handle.data(id, &b"after-close"[..]).await;
    still_serving(&lab, &mut server, &handle, "data after close").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tiny_data_packets() {
    let (lab, mut server) = start("");
    let handle = login(&lab, server.port).await;
    let mut channel = handle.channel_open_session().await.expect("open");
    channel.exec(true, "wc -c").await.expect("exec");
    const PACKETS: usize = 20_000;
    for _ in 0..PACKETS {
        channel
            .data_bytes(&b"x"[..])
            .await
            .expect("a 1-octet packet");
    }
    channel.eof().await.expect("eof");
    let msgs = drain(&mut channel).await;
    assert_eq!(
        (stdout_of(&msgs).trim().to_string(), exit_status(&msgs)),
        (PACKETS.to_string(), Some(0)),
        "{msgs:?}"
    );
    still_serving(&lab, &mut server, &handle, "20,000 one-octet packets").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_flood_after_login() {
    let (lab, mut server) = start("");
    let handle = login(&lab, server.port).await;
    const CHANNELS: usize = 1000;
    let mut opened = Vec::new();
    let mut refused = 0;
    for _ in 0..CHANNELS {
        match tokio::time::timeout(Duration::from_secs(10), handle.channel_open_session()).await {
            Ok(Ok(channel)) => opened.push(channel),
            Ok(Err(_)) => refused += 1,
            Err(_) => panic!(
                "opening a session channel hung after {} opens",
                opened.len()
            ),
        }
    }
    println!(
        "{} session channels opened, {refused} refused",
        opened.len()
    );
    assert_unharmed(&lab, &mut server, false, "1000 session channels");
    drop(opened);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_pty_request() {
    let (lab, mut server) = start("");
    let handle = login(&lab, server.port).await;
    let mut channel = handle.channel_open_session().await.expect("open");
    channel
        .request_pty(
            true,
            &"x".repeat(4096),
            u32::MAX,
            u32::MAX,
            u32::MAX,
            u32::MAX,
            &[],
        )
        .await
        .expect("pty-req");
    let answer = reply(&mut channel).await;
    println!("a pty of u32::MAX x u32::MAX named 4096 x's: {answer:?}");
    still_serving(&lab, &mut server, &handle, "absurd pty request").await;
}

/// Not a timing test: the point is that the unrelated session is not
/// stalled for good while another connection misbehaves.
#[test]
fn raw_attacks_at_once_leave_a_running_session_alone() {
    let (lab, mut server) = start(LONG_GRACE);
    let port = server.port;
    std::thread::scope(|scope| {
        let session =
            scope.spawn(|| lab.sshq(port, &["-o", "Transport=tcp"], &["sleep 2; echo done"], b""));
        let attackers: Vec<_> = (0..20)
            .map(|i| {
                scope.spawn(move || {
                    let mut stream = raw_tcp(port);
                    write_ignoring_hangup(&mut stream, BANNER);
                    let mut junk = vec![0x7f, 0xff, 0xff, (i % 256) as u8];
                    junk.extend_from_slice(&random_bytes(32));
                    write_ignoring_hangup(&mut stream, &junk);
                    closed_within(&mut stream, Instant::now(), PROMPT, &mut Vec::new())
                })
            })
            .collect();
        for attacker in attackers {
            assert!(
                attacker.join().expect("attacker").is_some(),
                "an attacker's connection was not closed"
            );
        }
        let out = session.join().expect("session");
        assert_eq!(text(&out.stdout), "done\n", "{}", show(&out));
    });
    assert_unharmed(&lab, &mut server, false, "20 attackers at once");
}
