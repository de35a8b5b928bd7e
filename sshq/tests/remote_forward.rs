//! Remote port forwarding (-R) end to end, with real processes and sockets:
//! sshq against sshqd over TCP and over QUIC, and OpenSSH's ssh against
//! sshqd. The server listens, each connection to it comes back to the
//! client as a forwarded-tcpip channel, and the client connects it to an
//! echo service.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::{
    echo_service, echo_works_within, random_bytes, wait_until, Background, Endpoint, Lab,
    Listeners, Server, SSHQ,
};

struct Setup {
    server: Server,
    lab: Lab,
}

impl Setup {
    /// sshqd serving QUIC and TCP on the same port, with `extra` lines.
    fn new(extra: &str) -> Setup {
        let lab = Lab::new();
        let server = lab.start_sshqd_on(&format!("Transports quic,tcp\n{extra}"), Listeners::Both);
        Setup { server, lab }
    }

    /// Starts `program` (sshq or ssh) with `extra` options, in the background.
    fn background(&self, program: &str, extra: &[&str], log: &str) -> Background {
        let args = self
            .lab
            .client_args("user", "accept-new", self.server.port, extra, &[]);
        Background::spawn(program, &args, self.lab.path(log))
    }
}

/// Waits until the forward on `port` carries an echo; fails with the logs.
fn wait_forward(client: &mut Background, s: &Setup, port: u16) {
    let up = echo_works_within(&Endpoint::Port(port), Duration::from_secs(20));
    assert!(
        up && client.alive(),
        "the remote forward on port {port} does not work; client log:\n{}\nserver log:\n{}",
        client.log_text(),
        s.server.log_text()
    );
}

/// `data` through the echo service behind `port` and back, unchanged.
fn check_echo(port: u16, data: &[u8]) -> Result<(), String> {
    common::check_echo(&Endpoint::Port(port), data)
}

/// `sshq -N -R P:127.0.0.1:echo`: 16 MiB through once, then 20 at once.
fn fixed_port(transport: &str) {
    let s = Setup::new("QuicIdleTimeout 20");
    let service = echo_service();
    let port = common::free_port();
    let spec = format!("{port}:127.0.0.1:{}", service.port);
    let mut client = s.background(
        SSHQ,
        &["-o", &format!("Transport={transport}"), "-N", "-R", &spec],
        "sshq-remote.log",
    );
    wait_forward(&mut client, &s, port);

    let big = random_bytes(16 * 1024 * 1024);
    if let Err(e) = check_echo(port, &big) {
        panic!(
            "16 MiB over -R ({transport}): {e}\nclient log:\n{}\nserver log:\n{}",
            client.log_text(),
            s.server.log_text()
        );
    }

    let threads: Vec<_> = (0..20usize)
        .map(|i| std::thread::spawn(move || check_echo(port, &random_bytes(128 * 1024 + i))))
        .collect();
    let failures: Vec<String> = threads
        .into_iter()
        .enumerate()
        .filter_map(|(i, t)| match t.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("#{i}: {e}")),
            Err(_) => Some(format!("#{i}: panicked")),
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of 20 connections over -R ({transport}) failed:\n{}\nclient log:\n{}\nserver log:\n{}",
        failures.len(),
        failures.join("\n"),
        client.log_text(),
        s.server.log_text()
    );
    assert!(client.alive(), "sshq exited:\n{}", client.log_text());

    // The listener belongs to the connection: once the client is gone (killed,
    // so over QUIC the server only notices at its idle timeout, 20 s here), it stops.
    drop(client);
    let limit = Duration::from_secs(if transport == "quic" { 40 } else { 10 });
    assert!(
        wait_until(limit, || TcpStream::connect(("127.0.0.1", port)).is_err()),
        "port {port} still listens after the client died ({transport}); server log:\n{}",
        s.server.log_text()
    );
}

#[test]
fn remote_forward_fixed_port_tcp() {
    fixed_port("tcp");
}

#[test]
fn remote_forward_fixed_port_quic() {
    fixed_port("quic");
}

/// `-R 0:...`: the server picks the port, sshq prints it as ssh does.
fn allocated_port(transport: &str) {
    let s = Setup::new("");
    let service = echo_service();
    let spec = format!("0:127.0.0.1:{}", service.port);
    let mut client = s.background(
        SSHQ,
        &["-o", &format!("Transport={transport}"), "-N", "-R", &spec],
        "sshq-remote0.log",
    );
    let suffix = format!(" for remote forward to 127.0.0.1:{}", service.port);
    let mut port = None;
    wait_until(Duration::from_secs(20), || {
        port = client.log_text().lines().find_map(|line| {
            line.strip_prefix("Allocated port ")?
                .strip_suffix(&suffix)?
                .parse::<u16>()
                .ok()
        });
        port.is_some()
    });
    let Some(port) = port else {
        panic!(
            "no \"Allocated port\" line ({transport}); client log:\n{}\nserver log:\n{}",
            client.log_text(),
            s.server.log_text()
        );
    };
    assert_ne!(port, 0);
    wait_forward(&mut client, &s, port);
    let data = random_bytes(1024 * 1024);
    check_echo(port, &data).unwrap_or_else(|e| panic!("-R 0 ({transport}): {e}"));
}

#[test]
fn remote_forward_allocated_port_tcp() {
    allocated_port("tcp");
}

#[test]
fn remote_forward_allocated_port_quic() {
    allocated_port("quic");
}

/// `AllowTcpForwarding local`: the request is refused, sshq warns as ssh
/// does, and the command still runs.
fn refused(transport: &str) {
    let s = Setup::new("AllowTcpForwarding local");
    let port = common::free_port();
    let spec = format!("{port}:127.0.0.1:9");
    let out = s.lab.sshq(
        s.server.port,
        &["-o", &format!("Transport={transport}"), "-R", &spec],
        &["echo", "still-here"],
        b"",
    );
    let stderr = common::text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "Warning: remote port forwarding failed for listen port {port}"
        )),
        "no warning ({transport}):\n{}",
        common::show(&out)
    );
    assert_eq!(
        common::text(&out.stdout).trim(),
        "still-here",
        "{}",
        common::show(&out)
    );
    assert_eq!(out.status.code(), Some(0), "{}", common::show(&out));
    let log = s.server.log_text();
    assert!(
        log.contains("refused") && log.contains("AllowTcpForwarding"),
        "the refusal is not logged with its reason:\n{log}"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "something listens on the refused port {port}"
    );
}

#[test]
fn remote_forward_refused_tcp() {
    refused("tcp");
}

#[test]
fn remote_forward_refused_quic() {
    refused("quic");
}

/// OpenSSH's `ssh -N -R` through sshqd over TCP.
#[test]
fn openssh_remote_forward_through_sshqd() {
    let s = Setup::new("");
    let service = echo_service();
    let port = common::free_port();
    let spec = format!("{port}:127.0.0.1:{}", service.port);
    let mut client = s.background(
        "ssh",
        &["-o", "ExitOnForwardFailure=yes", "-N", "-R", &spec],
        "ssh-remote.log",
    );
    wait_forward(&mut client, &s, port);
    let data = random_bytes(4 * 1024 * 1024);
    check_echo(port, &data).unwrap_or_else(|e| {
        panic!(
            "ssh -R through sshqd: {e}\nssh log:\n{}\nserver log:\n{}",
            client.log_text(),
            s.server.log_text()
        )
    });
}
