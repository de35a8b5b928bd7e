//! Issue 10, items 7, 8 and 13, with real servers: what sshqd's UDP relay
//! (direct-udp@sshq) may carry and where, that its exit status arrives over
//! both transports, that QuicRelay reaches its SSH server only for tunnels
//! that send something, and that a session the client gives up on leaves
//! no process behind.

mod common;

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{
    pgrep, run_with_input, run_with_timeout, show, text, wait_until, Background, Lab, Listeners,
    Server, TcpService, SSHQ,
};

const TRANSPORTS: [&str; 2] = ["tcp", "quic"];

/// A UDP echo service on a free loopback port that counts what it got.
struct UdpEcho {
    port: u16,
    received: Arc<AtomicUsize>,
}

impl UdpEcho {
    fn start() -> UdpEcho {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP echo service");
        let port = socket.local_addr().expect("address").port();
        let received = Arc::new(AtomicUsize::new(0));
        let count = received.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 65535];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                count.fetch_add(1, Ordering::SeqCst);
                let _ = socket.send_to(&buf[..n], from);
            }
        });
        UdpEcho { port, received }
    }

    fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

/// The relay's first bytes: `string host || uint32 port` (draft §11.1).
fn udp_relay_target(host: &str, port: u16) -> Vec<u8> {
    let mut target = u32::try_from(host.len())
        .expect("short host")
        .to_be_bytes()
        .to_vec();
    target.extend_from_slice(host.as_bytes());
    target.extend_from_slice(&u32::from(port).to_be_bytes());
    target
}

/// One datagram in the relay's stream framing (`uint16 length || payload`).
fn framed(payload: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(payload.len())
        .expect("small datagram")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(payload);
    out
}

/// `sshq -o Transport=T -s ... direct-udp@sshq`, the relay's raw channel.
/// Over TCP the draft's name with a domain (`direct-udp@sshq.dev`), over
/// QUIC sshq 0.1's, so every test checks sshqd accepts both (draft §11.1).
fn relay_args(lab: &Lab, server: &Server, transport: &str) -> Vec<String> {
    let subsystem = if transport == "tcp" {
        "direct-udp@sshq.dev"
    } else {
        "direct-udp@sshq"
    };
    let transport = format!("Transport={transport}");
    lab.client_args(
        "user",
        "accept-new",
        server.port,
        &["-o", &transport, "-s"],
        &[subsystem],
    )
}

/// Runs the relay with `input` as its whole channel data.
fn relay_once(lab: &Lab, server: &Server, transport: &str, input: &[u8]) -> Output {
    lab.run(SSHQ, &relay_args(lab, server, transport), input)
}

fn sshqd(lab: &Lab, extra: &str) -> Server {
    lab.start_sshqd_on(&format!("Transports quic,tcp\n{extra}"), Listeners::Both)
}

/// By default the relay carries QUIC and nothing else: a plain UDP
/// datagram to a loopback service is refused with the reason and exit
/// status 1 (which must arrive over QUIC too, where the status used to be
/// sent after the stream's FIN and lost), and never reaches the service.
#[test]
fn udp_relay_refuses_plain_udp_by_default_and_reports_it() {
    let lab = Lab::new();
    let server = sshqd(&lab, "");
    let echo = UdpEcho::start();
    for transport in TRANSPORTS {
        let mut input = udp_relay_target("127.0.0.1", echo.port);
        input.extend(framed(b"a DNS query, or anything else not QUIC"));
        let out = relay_once(&lab, &server, transport, &input);
        assert_eq!(out.status.code(), Some(1), "{transport}: {}", show(&out));
        let err = text(&out.stderr);
        assert!(
            err.contains("AllowUdpRelay relays only QUIC"),
            "{transport}: {err}"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(echo.received(), 0, "a refused datagram reached the service");
    assert!(server.log_text().contains("AllowUdpRelay relays only QUIC"));
}

/// `AllowUdpRelay ssh-port` limits the target port to 22 and the server's
/// own; `no` refuses the subsystem itself, as sshd refuses a subsystem.
#[test]
fn udp_relay_ssh_port_and_no_refuse_other_targets() {
    let lab = Lab::new();
    let echo = UdpEcho::start();
    let ssh_port = sshqd(&lab, "AllowUdpRelay ssh-port");
    let none = sshqd(&lab, "AllowUdpRelay no");
    for transport in TRANSPORTS {
        let out = relay_once(
            &lab,
            &ssh_port,
            transport,
            &udp_relay_target("127.0.0.1", echo.port),
        );
        assert_eq!(out.status.code(), Some(1), "{transport}: {}", show(&out));
        assert!(
            text(&out.stderr).contains(&format!(
                "relaying UDP to 127.0.0.1 port {} is not permitted by this server (AllowUdpRelay ssh-port",
                echo.port
            )),
            "{transport}: {}",
            show(&out)
        );

        let out = relay_once(&lab, &none, transport, &udp_relay_target("127.0.0.1", 22));
        assert_eq!(out.status.code(), Some(255), "{transport}: {}", show(&out));
        assert!(
            text(&out.stderr).contains("subsystem request failed on channel 0"),
            "{transport}: {}",
            show(&out)
        );
    }
    assert_eq!(echo.received(), 0);
}

/// `AllowUdpRelay yes` relays any datagram PermitOpen allows: one goes to
/// the echo service and back; when the client ends the channel the relay
/// ends with exit status 0, over both transports.
#[test]
fn udp_relay_yes_carries_any_datagram_and_its_status_arrives() {
    let lab = Lab::new();
    let server = sshqd(&lab, "AllowUdpRelay yes");
    let echo = UdpEcho::start();
    for transport in TRANSPORTS {
        let mut child = Command::new(SSHQ)
            .args(relay_args(&lab, &server, transport))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sshq");
        let mut stdin = child.stdin.take().expect("stdin");
        let mut input = udp_relay_target("127.0.0.1", echo.port);
        input.extend(framed(b"ping"));
        stdin.write_all(&input).expect("write the target");
        stdin.flush().expect("flush");
        let mut stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reply = [0u8; 6];
            let _ = tx.send(stdout.read_exact(&mut reply).map(|()| reply));
        });
        let reply = rx.recv_timeout(Duration::from_secs(30));
        drop(stdin);
        let status = wait_for_exit(&mut child, Duration::from_secs(30));
        let mut err = String::new();
        let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
        assert!(
            matches!(&reply, Ok(Ok(r)) if r == b"\x00\x04ping"),
            "{transport}: no echo through the relay: {reply:?}; stderr: {err}"
        );
        assert_eq!(status, Some(0), "{transport}: stderr: {err}");
    }
}

/// The default must not get in the way of what the relay is for: sshq
/// -J over QUIC reaches another sshqd on any port.
#[test]
fn proxy_jump_over_quic_passes_the_default_policy() {
    let lab = Lab::new();
    let hop = sshqd(&lab, "");
    let destination = sshqd(&lab, "");
    let config = lab.path("jump_config");
    std::fs::write(
        &config,
        format!(
            "Host hop\n  HostName 127.0.0.1\n  Port {}\n\
             Host *\n  Transport quic\n  User {}\n  IdentityFile {}\n  IdentitiesOnly yes\n  \
             BatchMode yes\n  UserKnownHostsFile {}\n  StrictHostKeyChecking accept-new\n",
            hop.port,
            lab.user,
            lab.path("user").display(),
            lab.path("known_hosts").display()
        ),
    )
    .expect("config");
    let args: Vec<String> = [
        "-F",
        &config.display().to_string(),
        "-J",
        "hop",
        "-p",
        &destination.port.to_string(),
        "-v",
        &lab.target(),
        "echo through",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = lab.run(SSHQ, &args, b"");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(text(&out.stdout), "through\n");
    assert!(text(&out.stderr).contains("over quic"), "{}", show(&out));
    assert!(
        hop.log_text().contains(&format!(
            "relaying UDP to 127.0.0.1 port {}",
            destination.port
        )),
        "{}",
        hop.log_text()
    );
}

/// A TCP service on a free port that counts the connections it accepts and
/// echoes what they send.
fn counting_echo() -> (TcpService, Arc<AtomicUsize>) {
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let service = TcpService::start(move |mut stream| {
        count.fetch_add(1, Ordering::SeqCst);
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            if stream.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
    (service, accepted)
}

/// `sshq proxy -v` to the relay with its stdin held open and nothing
/// written: a tunnel that never sends a byte.
fn silent_proxy(lab: &Lab, relay: &Server, n: usize) -> (Child, std::path::PathBuf) {
    let log = lab.path(&format!("silent.{n}.log"));
    let child = Command::new(SSHQ)
        .args(["proxy", "-v", "-o"])
        .arg(format!(
            "UserKnownHostsFile={}",
            lab.path("known_hosts.quic").display()
        ))
        .args(["-o", "StrictHostKeyChecking=accept-new", "127.0.0.1"])
        .arg(relay.port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start sshq proxy");
    (child, log)
}

/// QuicRelay connects to its SSH server only once the client's first bytes
/// arrive: tunnels that complete the QUIC handshake and then stay silent
/// never reach it (so they cannot fill its MaxStartups), while a tunnel
/// that speaks is relayed as before.
#[test]
fn silent_tunnels_never_reach_the_ssh_server() {
    let lab = Lab::new();
    let (service, accepted) = counting_echo();
    let relay = lab.start_sshqd_on(
        &format!("Transports quic\nQuicRelay 127.0.0.1:{}", service.port),
        Listeners::Quic,
    );
    let mut silent: Vec<(Child, std::path::PathBuf)> =
        (0..5).map(|n| silent_proxy(&lab, &relay, n)).collect();
    let connected = |log: &std::path::PathBuf| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("over quic")
    };
    assert!(
        wait_until(Duration::from_secs(30), || silent
            .iter()
            .all(|(_, log)| connected(log))),
        "the silent tunnels did not complete their handshakes"
    );
    // Give a relay that connects at once every chance to show it.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "silent tunnels made the relay connect to its SSH server"
    );

    let mut cmd = Command::new(SSHQ);
    cmd.args(["proxy", "-o"])
        .arg(format!(
            "UserKnownHostsFile={}",
            lab.path("known_hosts.quic").display()
        ))
        .args(["-o", "StrictHostKeyChecking=accept-new", "127.0.0.1"])
        .arg(relay.port.to_string());
    let out = run_with_input(&mut cmd, b"SSH-2.0-speaks\r\n");
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(text(&out.stdout), "SSH-2.0-speaks\r\n");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    for (child, _) in &mut silent {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Single-quoted for sh.
fn quoted(args: &[String]) -> String {
    args.iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `sshq ... command | head -1` through sh: returns the pipeline's output
/// once it ends, failing the test if it takes longer than 30 s.
fn piped_to_head(lab: &Lab, server: &Server, extra: &[&str], command: &str) -> Output {
    client_piped_to_head(SSHQ, lab, server, extra, command)
}

/// [`piped_to_head`] with another client (OpenSSH's `ssh`).
fn client_piped_to_head(
    client: &str,
    lab: &Lab,
    server: &Server,
    extra: &[&str],
    command: &str,
) -> Output {
    let mut args = vec![client.to_string()];
    args.extend(lab.client_args("user", "accept-new", server.port, extra, &[command]));
    let pipeline = format!("{} | head -1", quoted(&args));
    run_with_timeout(
        Command::new("sh").args(["-c", &pipeline]),
        b"",
        Duration::from_secs(30),
    )
}

/// `sshq host 'yes' | head -1` returns at once, as with ssh and sshd, and
/// no `yes` is left running on the server; the same with a pty, where the
/// shell's background job goes too. Over both transports.
#[test]
fn a_session_whose_output_nobody_reads_ends_its_processes() {
    let lab = Lab::new();
    let server = sshqd(&lab, "");
    for transport in TRANSPORTS {
        let option = format!("Transport={transport}");
        let marker = format!("sshq-yes-{}-{transport}", std::process::id());
        let out = piped_to_head(&lab, &server, &["-o", &option], &format!("yes {marker}"));
        assert_eq!(text(&out.stdout), format!("{marker}\n"), "{}", show(&out));
        // Anchored: the remote process, not a client naming it.
        let remote_yes = format!("^yes {marker}");
        assert!(
            wait_until(Duration::from_secs(10), || pgrep(&remote_yes).is_empty()),
            "{transport}: `yes {marker}` still runs on the server: {:?}",
            pgrep(&remote_yes)
        );

        let marker = format!("sshq-pty-{}-{transport}", std::process::id());
        let sleeper = format!("sleep 3{}.{}", std::process::id() % 1000, transport.len());
        let command = format!("{sleeper} & yes {marker}");
        let (remote_yes, remote_sleep) = (format!("^yes {marker}"), format!("^{sleeper}"));
        let out = piped_to_head(&lab, &server, &["-o", &option, "-tt"], &command);
        assert!(
            text(&out.stdout).starts_with(&marker),
            "{transport}: {}",
            show(&out)
        );
        assert!(
            wait_until(Duration::from_secs(10), || pgrep(&remote_yes).is_empty()
                && pgrep(&remote_sleep).is_empty()),
            "{transport}: the pty session's processes outlived it: {:?} {:?}",
            pgrep(&remote_yes),
            pgrep(&remote_sleep)
        );
    }
}

/// OpenSSH's `ssh host 'yes' | head -1` against sshqd over TCP returns at
/// once, as against sshd: ssh, whose stdout is gone, sends
/// `eow@openssh.com` and waits for the server to end the channel; sshqd
/// then closes the program's output, `yes` dies of SIGPIPE, and its exit
/// ends the channel. (This hung until ssh was killed: ssh sent no eow to
/// russh's `SSH-2.0-russh_...` banner, and russh dropped the request.) No
/// `yes` is left running on the server.
#[test]
fn openssh_whose_output_nobody_reads_ends_the_remote_command() {
    let lab = Lab::new();
    let server = sshqd(&lab, "");
    let marker = format!("sshq-eow-{}", std::process::id());
    let started = std::time::Instant::now();
    let out = client_piped_to_head("ssh", &lab, &server, &[], &format!("yes {marker}"));
    assert_eq!(text(&out.stdout), format!("{marker}\n"), "{}", show(&out));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "ssh ... | head -1 took {:?}",
        started.elapsed()
    );
    let remote_yes = format!("^yes {marker}");
    assert!(
        wait_until(Duration::from_secs(10), || pgrep(&remote_yes).is_empty()),
        "`yes {marker}` still runs on the server: {:?}",
        pgrep(&remote_yes)
    );
}

/// A client that dies (its connection goes) takes its session's processes
/// with it: at once over TCP, after QUIC's idle timeout over QUIC.
#[test]
fn a_lost_connection_ends_its_sessions_processes() {
    let lab = Lab::new();
    let server = sshqd(&lab, "QuicIdleTimeout 20");
    for transport in TRANSPORTS {
        let sleeper = format!("sleep 4{}.{}", std::process::id() % 1000, transport.len());
        let option = format!("Transport={transport}");
        let args = lab.client_args(
            "user",
            "accept-new",
            server.port,
            &["-o", &option],
            &[&sleeper],
        );
        let client = Background::spawn(SSHQ, &args, lab.path(&format!("lost.{transport}.log")));
        let remote = format!("^{sleeper}");
        assert!(
            wait_until(Duration::from_secs(20), || !pgrep(&remote).is_empty()),
            "{transport}: the remote command did not start"
        );
        drop(client); // SIGKILL: no goodbye
        assert!(
            wait_until(Duration::from_secs(45), || pgrep(&remote).is_empty()),
            "{transport}: `{sleeper}` outlived its connection: {:?}",
            pgrep(&remote)
        );
    }
}

fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let mut status = None;
    wait_until(limit, || match child.try_wait() {
        Ok(Some(s)) => {
            status = s.code();
            true
        }
        _ => false,
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}
