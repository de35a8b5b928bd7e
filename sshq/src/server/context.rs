//! What a logged-in connection's sessions and forwards need to know: who
//! is logged in, and what the configuration lets them do.
//!
//! It sits below the modules that serve a connection (`session`,
//! `forwarding`, `udp_relay`): they all read it, and it depends on none of
//! them, so none of them depends on another through it. The policies'
//! behaviour (which port a relay may reach, how a socket is bound) stays
//! with the module that applies it.

use super::config::{self, GatewayPorts, PermitList, ServerConfig};
use super::limits::ConnectionLimits;
use super::process::SessionUser;
use crate::forward::unix_socket::BindOptions;

/// What a connection's sessions need to know.
pub struct SessionContext {
    pub user: SessionUser,
    /// "client_ip client_port server_ip server_port", for SSH_CONNECTION.
    pub ssh_connection: String,
    /// Subsystem name → command line, from the Subsystem keyword.
    pub subsystems: Vec<(String, String)>,
    /// AcceptEnv patterns: which client variables a session may set.
    pub accept_env: Vec<String>,
    /// Who is logged in, for log lines.
    pub peer: String,
    /// What may be forwarded, and where.
    pub forwarding: ForwardingPolicy,
    /// MaxSessions and the other per-connection ceilings.
    pub limits: ConnectionLimits,
    /// ClientReattachTimeout, ClientReattachBuffer, ClientReattachDirectory.
    pub reattach: super::reattach::ReattachPolicy,
    /// The options of the authorized_keys line the user logged in with:
    /// `command=` and `no-pty` apply to sessions; the forwarding ones are
    /// already in `forwarding`.
    pub key_options: super::auth::KeyOptions,
    /// UsePAM yes: the PAM service (PAMServiceName) whose session every
    /// session program runs in (`super::pam_session`); `None`: UsePAM no.
    pub pam_service: Option<String>,
    /// PermitUserEnvironment: which variables ~/.ssh/environment and the
    /// key's `environment=` may set (`super::session::user_environment`).
    pub permit_user_environment: config::PermitUserEnvironment,
    /// `ChrootDirectory`, its tokens not yet expanded; `None` for `none`.
    /// Only internal-sftp sessions run under it (`super::sftp`).
    pub chroot_directory: Option<String>,
}

/// Lists that must all allow a forward: the configuration's and, when
/// the key's line has any, the key's (sshd checks both).
#[derive(Debug, Clone)]
pub struct PermitLists(pub Vec<PermitList>);

impl PermitLists {
    /// Whether every list allows `host:port`.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.0.iter().all(|list| list.allows(host, port))
    }
}

/// What the configuration lets a connection forward: TCP both ways, Unix
/// sockets, the agent, and UDP relayed for a QUIC hop.
pub struct ForwardingPolicy {
    /// AllowTcpForwarding permits direct-tcpip (yes, all or local).
    pub allow_local: bool,
    /// PermitOpen and a key's `permitopen=`: where direct-tcpip may connect.
    pub permit_open: PermitLists,
    /// AllowTcpForwarding permits tcpip-forward (yes, all or remote).
    pub allow_remote: bool,
    /// PermitListen and a key's `permitlisten=`: where tcpip-forward may listen.
    pub permit_listen: PermitLists,
    /// GatewayPorts: whether remote forwards may listen beyond loopback.
    pub gateway_ports: GatewayPorts,
    /// AllowAgentForwarding: whether auth-agent-req@openssh.com is honoured.
    pub allow_agent: bool,
    /// AllowStreamLocalForwarding and the StreamLocalBind options.
    pub streamlocal: StreamlocalPolicy,
    /// AllowUdpRelay and the ports it counts as SSH's.
    pub udp_relay: UdpRelayPolicy,
}

impl ForwardingPolicy {
    /// What is left of this policy under a key's authorized_keys options
    /// (`no-port-forwarding` covers TCP, Unix socket and UDP forwarding,
    /// as in sshd).
    pub fn restricted_by(mut self, key: &super::auth::KeyOptions) -> ForwardingPolicy {
        if !key.port_forwarding {
            self.allow_local = false;
            self.allow_remote = false;
            self.streamlocal.allow_local = false;
            self.streamlocal.allow_remote = false;
            self.udp_relay.allow = AllowUdpRelay::No;
        }
        if !key.agent_forwarding {
            self.allow_agent = false;
        }
        if !key.permit_open.is_empty() {
            self.permit_open
                .0
                .push(PermitList::Only(key.permit_open.clone()));
        }
        if !key.permit_listen.is_empty() {
            self.permit_listen
                .0
                .push(PermitList::Only(key.permit_listen.clone()));
        }
        self
    }

    /// The policy `config` sets.
    pub fn from_config(config: &ServerConfig) -> ForwardingPolicy {
        use config::AllowTcpForwarding;
        ForwardingPolicy {
            allow_local: matches!(
                config.allow_tcp_forwarding,
                AllowTcpForwarding::Yes | AllowTcpForwarding::Local
            ),
            permit_open: PermitLists(vec![config.permit_open.clone()]),
            allow_remote: matches!(
                config.allow_tcp_forwarding,
                AllowTcpForwarding::Yes | AllowTcpForwarding::Remote
            ),
            permit_listen: PermitLists(vec![config.permit_listen.clone()]),
            gateway_ports: config.gateway_ports,
            allow_agent: config.allow_agent_forwarding,
            streamlocal: StreamlocalPolicy::from_config(config),
            udp_relay: UdpRelayPolicy {
                allow: config.allow_udp_relay,
                // Where this server listens, ListenAddress host:port included.
                own_ports: (config.ports.iter().copied())
                    .chain(config.listen_addresses.iter().filter_map(|la| la.port))
                    .collect(),
            },
        }
    }
}

/// What AllowStreamLocalForwarding, StreamLocalBindUnlink and
/// StreamLocalBindMask allow and ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamlocalPolicy {
    /// direct-streamlocal (yes, all or local).
    pub allow_local: bool,
    /// streamlocal-forward (yes, all or remote).
    pub allow_remote: bool,
    pub bind: BindOptions,
}

impl StreamlocalPolicy {
    pub fn from_config(config: &ServerConfig) -> StreamlocalPolicy {
        use config::AllowStreamLocalForwarding;
        let allowed = config.allow_stream_local_forwarding;
        StreamlocalPolicy {
            allow_local: matches!(
                allowed,
                AllowStreamLocalForwarding::Yes | AllowStreamLocalForwarding::Local
            ),
            allow_remote: matches!(
                allowed,
                AllowStreamLocalForwarding::Yes | AllowStreamLocalForwarding::Remote
            ),
            bind: BindOptions {
                unlink_first: config.stream_local_bind_unlink,
                mask: config.stream_local_bind_mask,
            },
        }
    }
}

/// `AllowUdpRelay`: what the relay may carry, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowUdpRelay {
    /// No UDP relay at all.
    No,
    /// A QUIC connection, to port 22 or one of this server's own `Port`s.
    SshPort,
    /// A QUIC connection, to any target PermitOpen allows (the default).
    Quic,
    /// Any datagrams, to any target PermitOpen allows.
    Yes,
}

/// The keyword's values, for the configuration parser.
#[rustfmt::skip]
pub const ALLOW_UDP_RELAY: &[(&str, AllowUdpRelay)] = &[
    ("no", AllowUdpRelay::No), ("ssh-port", AllowUdpRelay::SshPort),
    ("quic", AllowUdpRelay::Quic), ("yes", AllowUdpRelay::Yes),
];

/// What the UDP relay may do on one connection (see `super::udp_relay`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpRelayPolicy {
    pub allow: AllowUdpRelay,
    /// This server's `Port`s, which `ssh-port` allows besides 22.
    pub own_ports: Vec<u16>,
}
