//! The client programs the login tests run, each with the options that
//! choose its transport: sshq over QUIC, sshq over TCP, and OpenSSH's ssh.

use super::SSHQ;

/// A client program and the options that choose its transport.
#[derive(Clone, Copy)]
pub struct Client {
    pub name: &'static str,
    pub program: &'static str,
    pub options: &'static [&'static str],
}

pub const SSHQ_QUIC: Client = Client {
    name: "sshq over QUIC",
    program: SSHQ,
    options: &["-o", "Transport=quic"],
};

pub const SSHQ_TCP: Client = Client {
    name: "sshq over TCP",
    program: SSHQ,
    options: &["-o", "Transport=tcp"],
};

pub const SSH_TCP: Client = Client {
    name: "OpenSSH ssh over TCP",
    program: "ssh",
    options: &[],
};

/// sshq over both transports.
pub const SSHQ_BOTH: [Client; 2] = [SSHQ_QUIC, SSHQ_TCP];

/// sshq over both transports and OpenSSH's ssh.
pub const EVERY_CLIENT: [Client; 3] = [SSHQ_QUIC, SSHQ_TCP, SSH_TCP];
