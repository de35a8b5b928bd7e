//! Agent forwarding (-A, ForwardAgent, AllowAgentForwarding) end to end,
//! with a real ssh-agent holding the lab's user key: sshq against sshqd
//! over TCP and over QUIC, OpenSSH's ssh against sshqd, and sshq against
//! OpenSSH's sshd. The remote side lists the key through the forwarded
//! socket and reports the socket's and its directory's modes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::agent::Agent;
use common::{run_with_input, show, text, wait_until, Lab, Listeners, Server, SSHQ};

/// What the remote side runs: the agent's keys, the socket, the modes.
const PROBE: &str = "ssh-add -l; echo \"rc=$?\"; echo \"sock=$SSH_AUTH_SOCK\"; \
                     if [ -n \"$SSH_AUTH_SOCK\" ]; then \
                     stat -c 'mode=%a' \"$(dirname \"$SSH_AUTH_SOCK\")\" \"$SSH_AUTH_SOCK\"; fi";

/// The SHA256 fingerprint of the lab's user key, as ssh-add -l shows it.
fn user_fingerprint(lab: &Lab) -> String {
    let out = run_with_input(
        Command::new("ssh-keygen")
            .arg("-lf")
            .arg(lab.path("user.pub")),
        b"",
    );
    assert!(out.status.success(), "ssh-keygen -lf: {}", show(&out));
    text(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_string()
}

/// Runs `program` (sshq or ssh) with `extra` options and the agent's
/// socket in SSH_AUTH_SOCK, running [`PROBE`] remotely.
fn probe(lab: &Lab, program: &str, port: u16, agent: &Agent, extra: &[&str]) -> Output {
    let args = lab.client_args("user", "accept-new", port, extra, &[PROBE]);
    run_with_input(
        Command::new(program)
            .args(&args)
            .env("SSH_AUTH_SOCK", &agent.socket),
        b"",
    )
}

/// The value after `key=` on the output's line starting with it.
fn field<'a>(out: &'a str, key: &str) -> Vec<&'a str> {
    out.lines()
        .filter_map(|line| line.strip_prefix(key))
        .collect()
}

/// Checks a probe that had the agent forwarded: the key is listed, the
/// directory is 0700 and the socket 0600. Returns the socket's directory.
fn assert_forwarded(lab: &Lab, out: &Output) -> PathBuf {
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", show(out));
    assert!(
        stdout.contains(&user_fingerprint(lab)) && stdout.contains("rc=0"),
        "the forwarded agent does not list the key: {}",
        show(out)
    );
    let sock = field(&stdout, "sock=");
    let sock = Path::new(sock.first().expect("sock line"));
    assert!(sock.is_absolute(), "SSH_AUTH_SOCK unset: {}", show(out));
    assert_eq!(
        field(&stdout, "mode="),
        ["700", "600"],
        "modes of the directory and socket: {}",
        show(out)
    );
    sock.parent().expect("socket directory").to_path_buf()
}

fn sshqd(lab: &Lab, extra: &str) -> Server {
    lab.start_sshqd_on(&format!("Transports quic,tcp\n{extra}"), Listeners::Both)
}

#[test]
fn sshq_forwards_the_agent_over_tcp_and_quic() {
    let lab = Lab::new();
    let agent = Agent::start(&lab);
    let server = sshqd(&lab, "");
    for transport in ["tcp", "quic"] {
        let option = format!("Transport={transport}");
        let out = probe(&lab, SSHQ, server.port, &agent, &["-A", "-o", &option]);
        let dir = assert_forwarded(&lab, &out);
        let dir_name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            dir.starts_with("/tmp") && dir_name.starts_with("sshq-"),
            "socket directory {}",
            dir.display()
        );
        assert!(
            wait_until(Duration::from_secs(10), || !dir.exists()),
            "{} still exists after the session over {transport}",
            dir.display()
        );
    }
}

#[test]
fn forward_agent_option_and_no_forwarding_without_it() {
    let lab = Lab::new();
    let agent = Agent::start(&lab);
    let server = sshqd(&lab, "");
    for transport in ["tcp", "quic"] {
        let option = format!("Transport={transport}");
        let out = probe(
            &lab,
            SSHQ,
            server.port,
            &agent,
            &["-o", "ForwardAgent=yes", "-o", &option],
        );
        assert_forwarded(&lab, &out);

        let out = probe(&lab, SSHQ, server.port, &agent, &["-o", &option]);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{}", show(&out));
        assert_eq!(
            field(&stdout, "sock="),
            [""],
            "SSH_AUTH_SOCK set without -A: {}",
            show(&out)
        );
        assert!(!stdout.contains("rc=0"), "{}", show(&out));
    }
}

#[test]
fn server_refusing_agent_forwarding_still_runs_the_session() {
    let lab = Lab::new();
    let agent = Agent::start(&lab);
    let server = sshqd(&lab, "AllowAgentForwarding no\n");
    for transport in ["tcp", "quic"] {
        let option = format!("Transport={transport}");
        let out = probe(&lab, SSHQ, server.port, &agent, &["-A", "-o", &option]);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{}", show(&out));
        assert!(
            stdout.contains("rc=") && !stdout.contains("rc=0"),
            "ssh-add -l worked although forwarding is refused: {}",
            show(&out)
        );
        assert_eq!(field(&stdout, "sock="), [""], "{}", show(&out));
    }
}

#[test]
fn openssh_client_forwards_its_agent_to_sshqd() {
    let lab = Lab::new();
    let agent = Agent::start(&lab);
    let server = lab.start_sshqd("");
    let out = probe(&lab, "ssh", server.port, &agent, &["-A"]);
    let dir = assert_forwarded(&lab, &out);
    assert!(
        wait_until(Duration::from_secs(10), || !dir.exists()),
        "{} still exists after the session",
        dir.display()
    );
}

#[test]
fn sshq_forwards_its_agent_to_openssh_sshd() {
    let lab = Lab::new();
    let agent = Agent::start(&lab);
    let server = lab.start_sshd();
    let out = probe(
        &lab,
        SSHQ,
        server.port,
        &agent,
        &["-A", "-o", "Transport=tcp"],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout.contains(&user_fingerprint(&lab)) && stdout.contains("rc=0"),
        "sshd's forwarded agent does not list the key: {}",
        show(&out)
    );
}
