//! Reattachable sessions (issue 13, draft §8.12), end to end: a real sshq
//! on a real pty, frozen with SIGSTOP as a laptop lid closes, against a
//! real sshqd that drops silent clients (ClientAliveInterval), over QUIC
//! and TCP. The client comes back to the same shell by itself; what the
//! shell wrote meanwhile arrives exactly once; what was typed meanwhile is
//! not lost; a session the server gave up on, or one ended with `~.`,
//! ends clearly.

mod common;

use std::time::Duration;

use nix::sys::signal::Signal;

use common::{Lab, Listeners, PtyClient, Server, SSHQ};

/// sshqd dropping a client that is silent for about 3 s.
const DROPS_SILENT_CLIENTS: &str = "ClientAliveInterval 1\nClientAliveCountMax 2";

/// How long a frozen client stays frozen: past the server's drop.
const FREEZE: Duration = Duration::from_secs(6);

const WAIT: Duration = Duration::from_secs(40);

use common::{pty_sshq as client, shell_ready};

fn freeze(client: &PtyClient, how_long: Duration) {
    client.signal(Signal::SIGSTOP);
    std::thread::sleep(how_long);
    client.signal(Signal::SIGCONT);
}

fn same_shell_after_a_freeze(transport: &str) {
    let lab = Lab::new();
    let server = lab.start_sshqd_on(DROPS_SILENT_CLIENTS, Listeners::Both);
    let mut client = client(&lab, &server, transport, &[]);
    shell_ready(&client, &server);
    client.type_keys("(sleep 3; echo LATE-$((6*7))) &\r");
    std::thread::sleep(Duration::from_millis(500));
    client.signal(Signal::SIGSTOP);
    // Typed while the client is frozen: it reads it once it runs again,
    // while reconnecting, and must send it after the reattach.
    client.type_keys("echo TYPED-$X\r");
    std::thread::sleep(FREEZE);
    client.signal(Signal::SIGCONT);
    for expected in ["LATE-42", "TYPED-42"] {
        assert!(
            client.wait_for(expected, WAIT),
            "{transport}: {expected} never arrived; terminal:\n{}\n{}",
            client.output(),
            server.log_text()
        );
    }
    let log = server.log_text();
    assert!(log.contains("reattached to the session"), "{log}");
    assert_eq!(log.matches("Accepted publickey").count(), 2, "{log}");
    // Each shows once: nothing replayed twice.
    let screen = client.output();
    assert_eq!(screen.matches("LATE-42").count(), 1, "{screen}");
    assert_eq!(screen.matches("TYPED-42").count(), 1, "{screen}");
    assert!(client.running());
    client.type_keys("exit 7\r");
    let (status, screen) = client.finish();
    assert_eq!(status.code(), Some(7), "{screen}");
    // The client acknowledged the last output, so nothing stays held.
    assert!(
        common::wait_until(Duration::from_secs(10), || server
            .log_text()
            .contains("held session ended: the program ended")),
        "{}",
        server.log_text()
    );
}

/// The shell ends while the client is away: its last words and its exit
/// status still arrive, once.
#[test]
fn a_session_that_ended_during_an_outage_still_reports() {
    for transport in ["quic", "tcp"] {
        let lab = Lab::new();
        let server = lab.start_sshqd_on(DROPS_SILENT_CLIENTS, Listeners::Both);
        let client = client(&lab, &server, transport, &[]);
        shell_ready(&client, &server);
        client.type_keys("sleep 1; echo BYE-$((1+1)); exit 5\r");
        assert!(client.wait_for("exit 5", WAIT));
        freeze(&client, FREEZE);
        let (status, screen) = client.finish();
        assert_eq!(status.code(), Some(5), "{transport}: {screen}");
        assert_eq!(screen.matches("BYE-2").count(), 1, "{transport}: {screen}");
    }
}

#[test]
fn a_frozen_client_comes_back_to_the_same_shell_over_quic() {
    same_shell_after_a_freeze("quic");
}

#[test]
fn a_frozen_client_comes_back_to_the_same_shell_over_tcp() {
    same_shell_after_a_freeze("tcp");
}

/// The numbers `seq` printed, in the order the terminal showed them. A
/// line may start with what a terminal would have overwritten: bash's
/// bracketed-paste switch, or sshq's status line and the sequence that
/// clears it (`ESC [ K`).
fn numbers(screen: &str) -> Vec<u64> {
    without_status_lines(screen)
        .lines()
        .map(after_last_escape_sequence)
        .filter_map(|line| line.trim().parse::<u64>().ok())
        .collect()
}

/// The session's own bytes: sshq's status line while disconnected starts
/// on a line of its own, is rewritten in place (each time ending in
/// `ESC [ K`), and is cleared (`CR ESC [ K`) before the session's output
/// goes on; CRs are already gone from `screen`.
fn without_status_lines(screen: &str) -> String {
    const START: &str = "\nsshq: connection lost";
    const CLEARED: &str = "\x1b[K\x1b[K";
    let mut rest = screen;
    let mut kept = String::with_capacity(screen.len());
    while let Some(start) = rest.find(START) {
        kept.push_str(&rest[..start]);
        let Some(end) = rest[start..].find(CLEARED) else {
            return kept; // still disconnected
        };
        rest = &rest[start + end + CLEARED.len()..];
    }
    kept.push_str(rest);
    kept
}

fn after_last_escape_sequence(line: &str) -> &str {
    let Some(start) = line.rfind('\x1b') else {
        return line;
    };
    let rest = &line[start..];
    match rest.find(|c: char| c.is_ascii_alphabetic()) {
        Some(end) => &rest[end + 1..],
        None => "",
    }
}

const LINES: u64 = 1_500_000; // about 10.9 MB of output

/// Output written while the client is away (about 11 MB, far more than
/// the socket buffers hold) arrives whole, in order, exactly once.
#[test]
fn output_written_during_an_outage_arrives_byte_for_byte() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on(DROPS_SILENT_CLIENTS, Listeners::Both);
    let client = client(&lab, &server, "quic", &[]);
    shell_ready(&client, &server);
    client.type_keys(&format!("sleep 2; seq 1 {LINES}; echo SEQ-$((1+1))-DONE\r"));
    // Frozen once the shell has the command (its echo came back).
    assert!(client.wait_for(&format!("seq 1 {LINES}; echo"), WAIT));
    freeze(&client, FREEZE);
    assert!(
        client.wait_for("SEQ-2-DONE", Duration::from_secs(120)),
        "the output never finished; server log:\n{}",
        server.log_text()
    );
    let seen = numbers(&client.output());
    let expected: Vec<u64> = (1..=LINES).collect();
    assert!(
        seen == expected,
        "{} numbers seen, first wrong at index {:?}",
        seen.len(),
        seen.iter().zip(&expected).position(|(a, b)| a != b)
    );
    assert!(server.log_text().contains("reattached to the session"));
}

/// With a replay buffer smaller than the output, the client says what was
/// lost, shows nothing twice, and the shell goes on.
#[test]
fn overflowing_the_replay_buffer_is_said_and_the_session_goes_on() {
    let lab = Lab::new();
    let config = format!("{DROPS_SILENT_CLIENTS}\nClientReattachBuffer 64K");
    let server = lab.start_sshqd_on(&config, Listeners::Both);
    let client = client(&lab, &server, "tcp", &[]);
    shell_ready(&client, &server);
    client.type_keys(&format!("sleep 2; seq 1 {LINES}\r"));
    assert!(client.wait_for(&format!("seq 1 {LINES}"), WAIT));
    freeze(&client, FREEZE);
    assert!(
        client.wait_for("bytes of output were lost while disconnected", WAIT),
        "no notice; server log:\n{}",
        server.log_text()
    );
    client.type_keys("echo AFTER-$((2+2))\r");
    assert!(client.wait_for("AFTER-4", WAIT), "{}", client.output());
    // Before the notice and after it, each in order and none twice; where
    // the output was cut, a line is cut too (as on a terminal after lost
    // output), so the last number before the notice may be a head and the
    // first after it a tail.
    let screen = client.output();
    let (before, after) = screen
        .split_once("bytes of output were lost while disconnected")
        .unwrap_or((&screen, ""));
    let before = numbers(before);
    let after = numbers(after);
    let whole_before = before
        .get(..before.len().saturating_sub(1))
        .unwrap_or_default();
    for part in [whole_before, after.get(1..).unwrap_or_default()] {
        let wrong = part.windows(2).position(|pair| pair[0] >= pair[1]);
        assert!(
            wrong.is_none(),
            "numbers shown twice or out of order at {wrong:?}: {:?}\nscreen tail: {:?}",
            wrong.map(|at| &part[at.saturating_sub(3)..(at + 4).min(part.len())]),
            &screen[screen.len().saturating_sub(600)..]
        );
    }
    assert!(
        ((before.len() + after.len()) as u64) < LINES,
        "nothing was lost?"
    );
}

/// A session the server stopped holding: a clear message and status 255.
#[test]
fn a_reattach_after_the_server_timeout_fails_clearly() {
    let lab = Lab::new();
    let config = format!("{DROPS_SILENT_CLIENTS}\nClientReattachTimeout 2");
    let server = lab.start_sshqd_on(&config, Listeners::Both);
    let client = client(&lab, &server, "quic", &[]);
    shell_ready(&client, &server);
    // Dropped after about 3 s, forgotten 2 s later.
    freeze(&client, Duration::from_secs(8));
    let (status, screen) = client.finish();
    assert_eq!(status.code(), Some(255), "{screen}");
    assert!(
        screen.contains("sshq: the session is gone: no such session"),
        "{screen}"
    );
    assert!(server
        .log_text()
        .contains("nobody reattached within ClientReattachTimeout"));
}

/// `~.` ends the session at once, and nothing is held for it.
#[test]
fn tilde_dot_ends_the_session_and_nothing_is_held() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("", Listeners::Both);
    let client = client(&lab, &server, "quic", &[]);
    shell_ready(&client, &server);
    client.type_keys("\r~.");
    let (status, screen) = client.finish();
    assert_eq!(status.code(), Some(255), "{screen}");
    assert!(
        screen.contains("Connection to 127.0.0.1 closed."),
        "{screen}"
    );
    assert!(
        common::wait_until(Duration::from_secs(10), || server
            .log_text()
            .contains("held session ended: the client ended it")),
        "{}",
        server.log_text()
    );
}

/// A killed client (no goodbye) leaves its session held, processes and
/// all, for ClientReattachTimeout; then they go.
#[test]
fn a_killed_clients_session_is_held_then_ended() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("ClientReattachTimeout 4", Listeners::Both);
    let client = client(&lab, &server, "tcp", &[]);
    shell_ready(&client, &server);
    let marker = format!("sleep 7{}", std::process::id() % 1000);
    client.type_keys(&format!("{marker} &\r"));
    assert!(common::wait_until(WAIT, || !common::pgrep(&marker).is_empty()));
    drop(client); // SIGKILL
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !common::pgrep(&marker).is_empty(),
        "the held session's processes went with the connection"
    );
    assert!(
        common::wait_until(Duration::from_secs(15), || common::pgrep(&marker)
            .is_empty()),
        "still running after ClientReattachTimeout: {:?}\n{}",
        common::pgrep(&marker),
        server.log_text()
    );
}

/// `Reattach no`, or a server with `ClientReattachTimeout 0`: an ordinary
/// session, as with OpenSSH.
#[test]
fn without_reattach_the_session_is_an_ordinary_one() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("ClientReattachTimeout 0", Listeners::Both);
    let client = client(&lab, &server, "quic", &[]);
    shell_ready(&client, &server);
    client.type_keys("exit 3\r");
    let (status, screen) = client.finish();
    assert_eq!(status.code(), Some(3), "{screen}");
    assert!(!server.log_text().contains("reattachable session started"));

    let server = lab.start_sshqd_on("", Listeners::Both);
    let client = client_with(&lab, &server, &["-o", "Reattach=no"]);
    shell_ready(&client, &server);
    client.type_keys("exit 4\r");
    let (status, _) = client.finish();
    assert_eq!(status.code(), Some(4));
    assert!(!server.log_text().contains("reattachable session started"));
}

fn client_with(lab: &Lab, server: &Server, extra: &[&str]) -> PtyClient {
    client(lab, server, "tcp", extra)
}

/// Against OpenSSH's sshd, which has no reattachable sessions, the session
/// is an ordinary one, and the escapes work the same: `~?` lists them,
/// `~#` lists the connections open through forwards, `~.` ends the
/// session at once.
#[test]
fn escapes_in_an_ordinary_session_with_openssh() {
    let lab = Lab::new();
    let server = lab.start_sshd();
    let port = common::free_port();
    let forward = format!("{port}:127.0.0.1:{}", server.port);
    let client = client(&lab, &server, "tcp", &["-L", &forward]);
    shell_ready(&client, &server);
    client.type_keys("\r~?");
    assert!(
        client.wait_for("Supported escape sequences:", WAIT),
        "{}",
        client.output()
    );
    // `~#` lists the session and a connection open through -L.
    let _open = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to -L");
    let listed = format!("direct-tcpip: listening port {port} for ");
    assert!(
        common::wait_until(WAIT, || {
            client.type_keys("\r~#");
            client.wait_for(&listed, Duration::from_secs(2))
        }),
        "{}",
        client.output()
    );
    assert!(client.output().contains("#0 client-session"));
    client.type_keys("~.");
    let (status, screen) = client.finish();
    assert_eq!(status.code(), Some(255), "{screen}");
    assert!(
        screen.contains("Connection to 127.0.0.1 closed."),
        "{screen}"
    );
}

/// After `~R`, the session still answers, without a complaint, and ends
/// with the shell's status.
fn still_answers_after_rekey(client: PtyClient) {
    client.type_keys("echo AFTER-$((2+2))\r");
    assert!(client.wait_for("AFTER-4", WAIT), "{}", client.output());
    let screen = client.output();
    assert!(!screen.contains("Cannot rekey"), "{screen}");
    client.type_keys("exit\r");
    assert_eq!(client.finish().0.code(), Some(0));
}

/// `~R` asks for new keys: a second key exchange that OpenSSH's sshd logs
/// (over TCP), a QUIC key update (over QUIC); the session goes on either way.
#[test]
fn tilde_r_asks_for_new_keys() {
    let lab = Lab::new();
    let sshd = lab.start_sshd_with("LogLevel DEBUG1");
    let over_tcp = client(&lab, &sshd, "tcp", &[]);
    shell_ready(&over_tcp, &sshd);
    let kex_count = || sshd.log_text().matches("SSH2_MSG_KEXINIT received").count();
    let before = kex_count();
    assert!(before >= 1, "{}", sshd.log_text());
    over_tcp.type_keys("\r~R");
    assert!(
        common::wait_until(WAIT, || kex_count() > before),
        "no second key exchange:\n{}",
        sshd.log_text()
    );
    still_answers_after_rekey(over_tcp);

    let server = lab.start_sshqd_on("", Listeners::Both);
    let over_quic = client(&lab, &server, "quic", &[]);
    shell_ready(&over_quic, &server);
    over_quic.type_keys("\r~R");
    still_answers_after_rekey(over_quic);
}

/// -L and -R come back with the session: after a reattach both forward
/// again, over TCP (the old connection's -R listener went with it).
#[test]
fn forwards_come_back_after_a_reattach() {
    use common::{echo_service, echo_works_within, free_port, Endpoint};
    let lab = Lab::new();
    let server = lab.start_sshqd_on(DROPS_SILENT_CLIENTS, Listeners::Both);
    let service = echo_service();
    let (local, remote) = (free_port(), free_port());
    let l = format!("{local}:127.0.0.1:{}", service.port);
    let r = format!("{remote}:127.0.0.1:{}", service.port);
    let client = client(&lab, &server, "tcp", &["-L", &l, "-R", &r]);
    shell_ready(&client, &server);
    for port in [local, remote] {
        assert!(
            echo_works_within(&Endpoint::Port(port), WAIT),
            "port {port}"
        );
    }
    freeze(&client, FREEZE);
    client.type_keys("echo BACK-$X\r");
    assert!(client.wait_for("BACK-42", WAIT), "{}", client.output());
    for port in [local, remote] {
        assert!(
            echo_works_within(&Endpoint::Port(port), WAIT),
            "port {port} does not forward after the reattach\n{}",
            server.log_text()
        );
    }
}

/// A path that vanished without a word (here: the server stopped, as when
/// a laptop moved to another network) is noticed once typed input goes
/// unanswered for 10 s, not after minutes of TCP retransmissions; the
/// client reattaches and the input is run once.
#[test]
fn unanswered_typing_leads_to_a_reattach() {
    for transport in ["tcp", "quic"] {
        let lab = Lab::new();
        let server = lab.start_sshqd_on("", Listeners::Both);
        let client = client(&lab, &server, transport, &[]);
        shell_ready(&client, &server);
        server.signal(Signal::SIGSTOP);
        client.type_keys("echo TYPED-$((6*7))-ONCE\r");
        std::thread::sleep(Duration::from_secs(13));
        server.signal(Signal::SIGCONT);
        assert!(
            client.wait_for("TYPED-42-ONCE", WAIT),
            "{transport}: {}\n{}",
            client.output(),
            server.log_text()
        );
        let screen = client.output();
        assert!(screen.contains("sshq: connection lost"), "{screen}");
        assert_eq!(screen.matches("TYPED-42-ONCE").count(), 1, "{screen}");
        assert!(server.log_text().contains("reattached to the session"));
    }
}

/// `~C`: forwards added and cancelled while the session runs, in a
/// reattachable session (sshqd) and an ordinary one (OpenSSH).
#[test]
fn command_line_adds_and_cancels_forwards() {
    use common::{echo_service, echo_works_within, free_port, Endpoint};
    let lab = Lab::new();
    let service = echo_service();
    let refused = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_err();
    for server in [lab.start_sshqd_on("", Listeners::Both), lab.start_sshd()] {
        let client = client(&lab, &server, "tcp", &[]);
        shell_ready(&client, &server);
        let (local, remote) = (free_port(), free_port());
        for (flag, port) in [("L", local), ("R", remote)] {
            let added = || client.output().matches("Forwarding port.").count();
            let before = added();
            client.type_keys(&format!("\r~C-{flag} {port}:127.0.0.1:{}\r", service.port));
            assert!(
                common::wait_until(WAIT, || added() > before),
                "{}",
                client.output()
            );
            assert!(
                echo_works_within(&Endpoint::Port(port), WAIT),
                "-{flag} {port}"
            );
            client.type_keys(&format!("\r~C-K{flag} {port}\r"));
            assert!(
                common::wait_until(WAIT, || refused(port)),
                "-K{flag} {port} did not cancel: {}",
                client.output()
            );
        }
        let screen = client.output();
        assert_eq!(
            screen.matches("Canceled forwarding.").count(),
            2,
            "{screen}"
        );
        client.type_keys("\r~C-X\r");
        assert!(
            client.wait_for("Invalid command.", WAIT),
            "{}",
            client.output()
        );
    }
}

/// ServerAliveInterval keeps its OpenSSH meaning (the connection is dead
/// after ServerAliveCountMax unanswered keepalives), but a reattachable
/// session then reconnects rather than exiting: a frozen server (as behind
/// a dead network) is waited out, and the same shell comes back.
#[test]
fn server_alive_timeout_leads_to_a_reattach_not_an_exit() {
    for transport in ["quic", "tcp"] {
        let lab = Lab::new();
        let server = lab.start_sshqd_on("", Listeners::Both);
        let client = client(
            &lab,
            &server,
            transport,
            &["-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2"],
        );
        shell_ready(&client, &server);
        server.signal(Signal::SIGSTOP);
        // Past the client's verdict (about 3 s), so it gives the connection up.
        std::thread::sleep(Duration::from_secs(5));
        server.signal(Signal::SIGCONT);
        client.type_keys("echo BACK-$X\r");
        assert!(
            client.wait_for("BACK-42", WAIT),
            "{transport}: no reattach; terminal:\n{}\n{}",
            client.output(),
            server.log_text()
        );
        let screen = client.output();
        assert!(!screen.contains("not responding"), "{transport}: {screen}");
        assert!(
            server.log_text().contains("reattached to the session"),
            "{transport}: {}",
            server.log_text()
        );
        client.type_keys("exit 4\r");
        let (status, screen) = client.finish();
        assert_eq!(status.code(), Some(4), "{transport}: {screen}");
    }
}

/// A forwarded agent keeps working after a reattach: the shell's
/// SSH_AUTH_SOCK (made when the session started) now reaches the agent
/// over the new connection, over QUIC and TCP.
#[test]
fn the_forwarded_agent_works_again_after_a_reattach() {
    for transport in ["quic", "tcp"] {
        let lab = Lab::new();
        let agent = common::agent::Agent::start(&lab);
        let server = lab.start_sshqd_on(DROPS_SILENT_CLIENTS, Listeners::Both);
        let option = format!("Transport={transport}");
        let args = lab.client_args(
            "user",
            "accept-new",
            server.port,
            &["-A", "-o", &option],
            &[],
        );
        let socket = agent.socket.to_string_lossy().to_string();
        let client = PtyClient::spawn(
            SSHQ,
            &args,
            40,
            120,
            &[("TERM", "xterm"), ("SSH_AUTH_SOCK", &socket)],
        );
        shell_ready(&client, &server);
        client.type_keys("ssh-add -l >/dev/null && echo AGENT-BEFORE-$((1+1))\r");
        assert!(
            client.wait_for("AGENT-BEFORE-2", WAIT),
            "{transport}: no agent at first; terminal:\n{}\n{}",
            client.output(),
            server.log_text()
        );
        freeze(&client, FREEZE);
        client.type_keys("ssh-add -l >/dev/null && echo AGENT-AFTER-$((1+1))\r");
        assert!(
            client.wait_for("AGENT-AFTER-2", WAIT),
            "{transport}: no agent after the reattach; terminal:\n{}\n{}",
            client.output(),
            server.log_text()
        );
        assert!(
            server.log_text().contains("reattached to the session"),
            "{transport}: {}",
            server.log_text()
        );
        client.type_keys("exit\r");
        let (status, screen) = client.finish();
        assert_eq!(status.code(), Some(0), "{transport}: {screen}");
    }
}

/// sshqd holds a session whose client never showed that SESSION arrived
/// only briefly (nobody could reattach to it); sshq acknowledges SESSION at
/// once, so even a session that prints nothing and reads nothing is held
/// for the whole ClientReattachTimeout when its client dies.
#[test]
fn a_silent_session_is_held_for_the_whole_timeout() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("ClientReattachTimeout 2m", Listeners::Both);
    let marker = format!("sleep 8{}", std::process::id() % 1000);
    let args = lab.client_args(
        "user",
        "accept-new",
        server.port,
        // TCP: the kernel closes a killed client's connection at once.
        &["-tt", "-o", "Transport=tcp"],
        &[&marker],
    );
    let client = PtyClient::spawn(SSHQ, &args, 40, 120, &[("TERM", "xterm")]);
    assert!(
        common::wait_until(WAIT, || !common::pgrep(&marker).is_empty()),
        "{}",
        server.log_text()
    );
    // The acknowledgement travels right after SESSION; let it arrive.
    std::thread::sleep(Duration::from_secs(1));
    drop(client); // SIGKILL
    assert!(
        common::wait_until(WAIT, || server.log_text().contains("session detached")),
        "{}",
        server.log_text()
    );
    let log = server.log_text();
    assert!(log.contains("held for 120 s"), "{log}");
    assert!(!common::pgrep(&marker).is_empty(), "{log}");
    let _ = std::process::Command::new("pkill")
        .args(["-f", &marker])
        .status();
}
