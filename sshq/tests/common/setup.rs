//! The one per-test setup of the session tests: a lab with the server of
//! one direction running, and its client (sshq or OpenSSH's ssh, over TCP
//! or QUIC) with the lab's keys. `tests/directions.rs` runs its checks in
//! every [`Dir`]; `tests/quic.rs` uses the QUIC direction for what only
//! QUIC has.

use std::net::TcpStream;
use std::process::Output;
use std::time::Duration;

use super::{show, wait_until, Background, Lab, Listeners, PtyClient, Server, SSHQ};

/// Which client talks to which server, over which transport.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// sshq to OpenSSH's sshd (TCP).
    sshq_to_sshd,
    /// OpenSSH's ssh to sshqd (TCP).
    ssh_to_sshqd,
    /// sshq to sshqd over TCP.
    sshq_to_sshqd,
    /// sshq to sshqd over QUIC (`-o Transport=quic`, no fallback).
    sshq_quic_to_sshqd,
}

/// The option that makes sshq use QUIC only (no fallback).
pub const QUIC: [&str; 2] = ["-o", "Transport=quic"];

/// A lab with the server of one direction running.
pub struct Setup {
    pub server: Server,
    pub lab: Lab,
    /// The client program.
    pub client: &'static str,
    /// Options every client run of this direction gets first.
    transport: &'static [&'static str],
}

impl Setup {
    pub fn new(dir: Dir) -> Setup {
        match dir {
            Dir::sshq_quic_to_sshqd => Setup::quic_with("Transports quic,tcp", Listeners::Both),
            _ => {
                let lab = Lab::new();
                let (server, client) = match dir {
                    Dir::sshq_to_sshd => (lab.start_sshd(), SSHQ),
                    Dir::ssh_to_sshqd => (lab.start_sshqd(""), "ssh"),
                    _ => (lab.start_sshqd(""), SSHQ),
                };
                Setup {
                    server,
                    lab,
                    client,
                    transport: &[],
                }
            }
        }
    }

    /// sshqd with `config` lines, ready once `listeners` are open; the
    /// client is sshq over QUIC.
    pub fn quic_with(config: &str, listeners: Listeners) -> Setup {
        Setup::quic_in(Lab::new(), config, listeners)
    }

    /// As [`Setup::quic_with`], in a lab the test prepared (e.g. with
    /// another host key named in `config`).
    pub fn quic_in(lab: Lab, config: &str, listeners: Listeners) -> Setup {
        Setup {
            transport: &QUIC,
            ..Setup::sshqd_in(lab, config, listeners)
        }
    }

    /// sshqd with `config` lines, ready once `listeners` are open; the
    /// client is sshq with no transport chosen (each run says, or takes
    /// sshq's default).
    pub fn sshqd_in(lab: Lab, config: &str, listeners: Listeners) -> Setup {
        let server = lab.start_sshqd_on(config, listeners);
        Setup {
            server,
            lab,
            client: SSHQ,
            transport: &[],
        }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// The options that choose this direction's transport (none for TCP).
    pub fn transport_options(&self) -> &'static [&'static str] {
        self.transport
    }

    /// `extra` after the direction's transport options.
    fn with_transport<'a>(&self, extra: &[&'a str]) -> Vec<&'a str> {
        self.transport.iter().chain(extra).copied().collect()
    }

    /// The client's whole argument list with `key` and StrictHostKeyChecking
    /// `strict`, without the direction's transport options (`extra` says).
    pub fn args(&self, key: &str, strict: &str, extra: &[&str], command: &[&str]) -> Vec<String> {
        self.lab
            .client_args(key, strict, self.port(), extra, command)
    }

    /// `sshq -N -L local:127.0.0.1:target_port` (with this direction's
    /// transport options and `extra`) in the background; returns it and
    /// its local port once that port accepts.
    pub fn local_forward(&self, extra: &[&str], target_port: u16) -> (Background, u16) {
        let local = super::free_port();
        let spec = format!("{local}:127.0.0.1:{target_port}");
        let mut options = self.with_transport(extra);
        options.extend(["-N", "-L", &spec]);
        let args = self.args("user", "accept-new", &options, &[]);
        let mut client = Background::spawn(SSHQ, &args, self.lab.path("sshq-forward.log"));
        let listening = wait_until(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", local)).is_ok()
        });
        assert!(
            listening && client.alive(),
            "sshq -N -L {spec} does not listen; its log:\n{}\n{}",
            client.log_text(),
            self.server_log()
        );
        (client, local)
    }

    /// Fails the test if any of `total` forwarded connections through
    /// `client` failed, with their errors and both sides' logs.
    pub fn assert_none_failed(&self, failures: &[String], total: usize, client: &Background) {
        assert!(
            failures.is_empty(),
            "{} of {total} forwarded connections failed:\n{}\nsshq log:\n{}\n{}",
            failures.len(),
            failures.join("\n"),
            client.log_text(),
            self.server_log()
        );
    }

    /// The client with the lab's user key and StrictHostKeyChecking=accept-new.
    pub fn run(&self, extra: &[&str], command: &[&str], input: &[u8]) -> Output {
        let extra = self.with_transport(extra);
        self.lab
            .client(self.client, "user", self.port(), &extra, command, input)
    }

    /// The client with StrictHostKeyChecking `strict`.
    pub fn run_strict(&self, strict: &str, command: &[&str]) -> Output {
        let args = self.args("user", strict, self.transport, command);
        self.lab.run(self.client, &args, b"")
    }

    /// The client with another key and StrictHostKeyChecking; `extra`
    /// chooses the transport.
    pub fn run_as(&self, key: &str, strict: &str, extra: &[&str], command: &[&str]) -> Output {
        self.lab
            .run(self.client, &self.args(key, strict, extra, command), b"")
    }

    /// The client on a terminal of `rows` x `cols`, with TERM=xterm-256color.
    pub fn on_pty(&self, extra: &[&str], command: &[&str], rows: u16, cols: u16) -> PtyClient {
        let args = self.args("user", "accept-new", &self.with_transport(extra), command);
        PtyClient::spawn(
            self.client,
            &args,
            rows,
            cols,
            &[("TERM", "xterm-256color")],
        )
    }

    /// A client run and the end of the server's log, for assertion messages.
    pub fn show(&self, out: &Output) -> String {
        format!("{}\n{}", show(out), self.server_log())
    }

    pub fn server_log(&self) -> String {
        let log = self.server.log_text();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        format!("server log (end):\n{tail}")
    }

    /// How many logins sshqd logged over `transport` ("quic" or "tcp").
    pub fn logins_over(&self, transport: &str) -> usize {
        let needle = format!(" over {transport}");
        self.server
            .log_text()
            .lines()
            .filter(|l| l.contains("Accepted publickey") && l.ends_with(&needle))
            .count()
    }
}
