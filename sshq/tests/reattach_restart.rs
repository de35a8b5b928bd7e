//! Sessions that outlive sshqd itself (issue 13, item 3): a reattachable
//! session's program lives in a session holder, not in the listening
//! sshqd. sshqd is stopped (SIGTERM, as a service manager restarts it) or
//! killed (a crash), a new sshqd starts on the same port, and the real
//! sshq client on a real pty comes back to the same shell by itself, with
//! what the shell wrote meanwhile and what the user typed meanwhile.

mod common;

use std::time::Duration;

use nix::sys::signal::Signal;

use common::{shell_ready, wait_until, Lab, Listeners, PtyClient, Server};

const WAIT: Duration = Duration::from_secs(40);

/// An interactive sshq on a real pty over `transport`.
fn client(lab: &Lab, server: &Server, transport: &str) -> PtyClient {
    common::pty_sshq(lab, server, transport, &[])
}

/// Stops sshqd with `signal`, starts it again on the same port, and checks
/// the client finds the same shell and the output written meanwhile.
fn same_shell_after_a_restart(transport: &str, signal: Signal) {
    let lab = Lab::new();
    let mut server = lab.start_sshqd_on("", Listeners::Both);
    let mut client = client(&lab, &server, transport);
    shell_ready(&client, &server);
    assert_eq!(lab.holders().len(), 1, "one holder for the one session");
    client.type_keys("(sleep 3; echo LATE-$((6*7))) &\r");
    std::thread::sleep(Duration::from_millis(500));

    server.signal(signal);
    let status = server.exit_within(Duration::from_secs(10));
    assert!(status.is_some(), "sshqd did not exit on {signal}");
    if signal == Signal::SIGTERM {
        assert_eq!(status.and_then(|s| s.code()), Some(0));
    }
    // The session is not sshqd's: it is still there with sshqd gone.
    assert_eq!(lab.holders().len(), 1, "{}", server.log_text());
    assert!(
        client.wait_for("sshq: connection lost", WAIT),
        "{}",
        client.output()
    );
    // Typed while no sshqd runs: sent once the client is back.
    client.type_keys("echo TYPED-$X\r");
    std::thread::sleep(Duration::from_secs(1));

    let again = lab.restart_sshqd(server.port, Listeners::Both);
    for expected in ["LATE-42", "TYPED-42"] {
        assert!(
            client.wait_for(expected, WAIT),
            "{transport}: {expected} never arrived; terminal:\n{}\nold sshqd:\n{}\nnew sshqd:\n{}",
            client.output(),
            server.log_text(),
            again.log_text()
        );
    }
    assert!(
        wait_until(WAIT, || again.log_text().contains("Accepted publickey")),
        "{}",
        again.log_text()
    );
    client.type_keys("echo AGAIN-$X\r");
    assert!(
        client.wait_for("AGAIN-42", WAIT),
        "{transport}: not the same shell; terminal:\n{}",
        client.output()
    );
    let screen = client.output();
    assert_eq!(screen.matches("LATE-42").count(), 1, "{screen}");
    assert_eq!(screen.matches("TYPED-42").count(), 1, "{screen}");
    assert!(client.running());

    client.type_keys("exit 3\r");
    let (status, screen) = client.finish();
    assert_eq!(status.code(), Some(3), "{transport}: {screen}");
    // The holder goes with its session.
    assert!(
        wait_until(Duration::from_secs(10), || lab.holders().is_empty()),
        "holders left: {:?}",
        lab.holders()
    );
}

#[test]
fn a_session_outlives_a_restart_of_sshqd_over_quic() {
    same_shell_after_a_restart("quic", Signal::SIGTERM);
}

#[test]
fn a_session_outlives_a_crash_of_sshqd_over_tcp() {
    same_shell_after_a_restart("tcp", Signal::SIGKILL);
}

/// sshqd and the session's holder both gone (a reboot, or an administrator
/// who killed everything): the new sshqd has no such session, and the
/// client says so and exits 255 instead of trying on.
#[test]
fn a_restart_after_the_holder_is_gone_says_the_session_is_gone() {
    let lab = Lab::new();
    let mut server = lab.start_sshqd_on("", Listeners::Both);
    let client = client(&lab, &server, "quic");
    shell_ready(&client, &server);
    server.signal(Signal::SIGKILL);
    let _ = server.exit_within(Duration::from_secs(10));
    for pid in lab.holders() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
    assert!(wait_until(Duration::from_secs(10), || lab
        .holders()
        .is_empty()));
    assert!(
        client.wait_for("sshq: connection lost", WAIT),
        "{}",
        client.output()
    );
    let again = lab.restart_sshqd(server.port, Listeners::Both);
    let (status, screen) = client.finish();
    assert_eq!(status.code(), Some(255), "{screen}\n{}", again.log_text());
    assert!(
        screen.contains("sshq: the session is gone: no such session"),
        "{screen}"
    );
    // The dead holder's socket was cleared when the new sshqd started.
    let held = std::fs::read_dir(lab.path(common::HELD_DIR)).expect("held dir");
    assert_eq!(held.count(), 0);
    assert!(again
        .log_text()
        .contains("removed 1 session socket of holders that are gone"));
}

/// The holder checks who attaches: with sshqd gone, nobody reaches the
/// session through its socket without the token, and its socket and
/// directory are closed to other users.
#[test]
fn the_holder_directory_is_private_and_the_token_is_checked() {
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::new();
    let mut server = lab.start_sshqd_on("", Listeners::Both);
    let client = client(&lab, &server, "tcp");
    shell_ready(&client, &server);
    let held = lab.path(common::HELD_DIR);
    let mode = std::fs::metadata(&held)
        .expect("held dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    let sockets: Vec<_> = std::fs::read_dir(&held)
        .expect("held dir")
        .flatten()
        .map(|entry| entry.path())
        .collect();
    assert_eq!(sockets.len(), 1, "{sockets:?}");
    server.signal(Signal::SIGKILL);
    let _ = server.exit_within(Duration::from_secs(10));

    // A made-up attachment: right user, wrong token. The holder refuses
    // it (a REFUSED frame, then the link closes) and keeps the session.
    use sshq::server::reattach::holder_wire::{AttachOrder, Message, ToHolder};
    let mut stream = std::os::unix::net::UnixStream::connect(&sockets[0]).expect("connect");
    let mut attach = Vec::new();
    ToHolder::Attach(AttachOrder {
        token: sshq::reattach::wire::Token([0; 32]),
        uid: nix::unistd::geteuid().as_raw(),
        user: lab.user.clone(),
        peer: String::new(),
        resume_from: None,
    })
    .encode(&mut attach);
    use std::io::{Read, Write};
    stream.write_all(&attach).expect("write");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains("no such session"), "{answer:?}");
    assert_eq!(lab.holders().len(), 1, "the session must stay");
}
