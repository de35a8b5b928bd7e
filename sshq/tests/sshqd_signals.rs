//! sshqd's signals (issue 13, item 3), as with sshd: SIGHUP reloads the
//! configuration and drops no session; SIGTERM is logged, every client is
//! told, and sshqd exits.

mod common;

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use common::{show, text, wait_until, Background, Lab, Listeners, SSHQ};

const TRANSPORTS: [&str; 2] = ["quic", "tcp"];

fn running_session(lab: &Lab, port: u16, transport: &str, command: &str) -> Background {
    let option = format!("Transport={transport}");
    let args = lab.client_args("user", "accept-new", port, &["-o", &option], &[command]);
    Background::spawn(SSHQ, &args, lab.path(&format!("client.{transport}.log")))
}

#[test]
fn sighup_reloads_and_drops_no_session() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("", Listeners::Both);
    let started: Vec<_> = TRANSPORTS
        .iter()
        .map(|transport| {
            let out = lab.path(&format!("out.{transport}"));
            let command = format!("sleep 3; echo survived > {}", out.display());
            (out, running_session(&lab, server.port, transport, &command))
        })
        .collect();
    assert!(wait_until(Duration::from_secs(20), || {
        server.log_text().matches("Accepted publickey").count() == 2
    }));
    // A change that applies to new connections: no more forwarding.
    let config = lab.path(&format!("sshqd_config.{}", server.port));
    let mut text_now = std::fs::read_to_string(&config).expect("config");
    text_now.push_str("AllowTcpForwarding no\n");
    std::fs::write(&config, text_now).expect("config");
    server.signal(Signal::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(10), || server
            .log_text()
            .contains("Configuration reloaded")),
        "{}",
        server.log_text()
    );
    for (out, mut client) in started {
        assert!(
            wait_until(Duration::from_secs(20), || !client.alive()),
            "the session never ended"
        );
        assert_eq!(
            std::fs::read_to_string(&out).unwrap_or_default(),
            "survived\n",
            "a session was dropped by SIGHUP: {}\n{}",
            client.log_text(),
            server.log_text()
        );
    }
    // New logins are served, under the new configuration.
    let out = lab.sshq(
        server.port,
        &["-o", "Transport=quic", "-W", "127.0.0.1:9"],
        &[],
        b"",
    );
    assert!(
        text(&out.stderr).contains("administratively prohibited")
            || text(&out.stderr).contains("forwarding is not permitted"),
        "{}",
        show(&out)
    );

    // A file that does not load keeps the running configuration.
    std::fs::write(&config, "NoSuchKeyword yes\n").expect("config");
    server.signal(Signal::SIGHUP);
    assert!(wait_until(Duration::from_secs(10), || server
        .log_text()
        .contains("Configuration not reloaded, the running one stays")));
    let out = lab.sshq(server.port, &["-o", "Transport=tcp"], &["echo still"], b"");
    assert_eq!(text(&out.stdout), "still\n", "{}", show(&out));
}

#[test]
fn sigterm_tells_every_client_and_exits() {
    let lab = Lab::new();
    let mut server = lab.start_sshqd_on("", Listeners::Both);
    let mut clients: Vec<_> = TRANSPORTS
        .iter()
        .map(|transport| {
            let client = running_session(&lab, server.port, transport, "sleep 60");
            (*transport, client)
        })
        .collect();
    assert!(wait_until(Duration::from_secs(20), || {
        server.log_text().matches("Accepted publickey").count() == 2
    }));
    server.signal(Signal::SIGTERM);
    let status = server.exit_within(Duration::from_secs(10));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{}",
        server.log_text()
    );
    assert!(server
        .log_text()
        .contains("Received signal 15; terminating."));
    for (transport, client) in &mut clients {
        assert!(
            wait_until(Duration::from_secs(10), || !client.alive()),
            "{transport}: the client was not told"
        );
        assert!(
            client
                .log_text()
                .contains("Connection to 127.0.0.1 closed by remote host."),
            "{transport}: {}",
            client.log_text()
        );
    }
    // Nothing is left listening.
    let refused = Command::new(SSHQ)
        .args(lab.client_args(
            "user",
            "accept-new",
            server.port,
            &["-o", "Transport=tcp"],
            &["true"],
        ))
        .output()
        .expect("sshq");
    assert_eq!(refused.status.code(), Some(255), "{}", show(&refused));
}
