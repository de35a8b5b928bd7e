//! `sshq`'s command line: OpenSSH's `ssh` flags, parsed with clap.

use clap::{ArgAction, Parser};

/// SSH over QUIC, with the classic SSH-over-TCP path. Flags follow OpenSSH's ssh(1).
#[derive(Debug, Parser)]
#[command(
    name = "sshq",
    version,
    disable_help_flag = true,
    disable_version_flag = true,
    override_usage = "sshq [-46AaNnqTtVvx] [-D [bind_address:]port] [-F configfile] [-i identity_file]\n            [-J destination] [-L address] [-l login_name] [-o option] [-p port]\n            [-R address] [-W host:port] destination [command [argument ...]]"
)]
pub struct Cli {
    /// Use IPv4 addresses only.
    #[arg(short = '4')]
    pub ipv4: bool,
    /// Use IPv6 addresses only.
    #[arg(short = '6')]
    pub ipv6: bool,
    /// Forward the authentication agent connection.
    #[arg(short = 'A')]
    pub forward_agent: bool,
    /// Do not forward the authentication agent connection.
    #[arg(short = 'a')]
    pub no_forward_agent: bool,
    /// Dynamic (SOCKS) port forwarding.
    #[arg(short = 'D', action = ArgAction::Append, value_name = "[bind_address:]port")]
    pub dynamic_forward: Vec<String>,
    /// Alternative per-user configuration file.
    #[arg(short = 'F', value_name = "configfile")]
    pub config_file: Option<String>,
    /// Go to background just before command execution.
    #[arg(short = 'f')]
    pub background: bool,
    /// Identity (private key) file; may be given several times.
    #[arg(short = 'i', action = ArgAction::Append, value_name = "identity_file")]
    pub identity_files: Vec<String>,
    /// Connect through these jump hosts.
    #[arg(short = 'J', value_name = "destination")]
    pub jump: Option<String>,
    /// Local port forwarding.
    #[arg(short = 'L', action = ArgAction::Append, value_name = "address")]
    pub local_forward: Vec<String>,
    /// User to log in as.
    #[arg(short = 'l', value_name = "login_name")]
    pub login_name: Option<String>,
    /// Do not execute a remote command (forwarding only).
    #[arg(short = 'N')]
    pub no_command: bool,
    /// Redirect stdin from /dev/null.
    #[arg(short = 'n')]
    pub null_stdin: bool,
    /// Options in ssh_config format, "Option=value" or "Option value".
    #[arg(short = 'o', action = ArgAction::Append, value_name = "option")]
    pub options: Vec<String>,
    /// Port to connect to (both TCP and, unless QuicPort is set, UDP).
    #[arg(short = 'p', value_name = "port")]
    pub port: Option<String>,
    /// The escape character for sessions with a pty (`~` by default; `none`).
    #[arg(short = 'e', value_name = "escape_char")]
    pub escape_char: Option<String>,
    /// Quiet mode.
    #[arg(short = 'q')]
    pub quiet: bool,
    /// Remote port forwarding.
    #[arg(short = 'R', action = ArgAction::Append, value_name = "address")]
    pub remote_forward: Vec<String>,
    /// Request a subsystem on the remote system.
    #[arg(short = 's')]
    pub subsystem: bool,
    /// Disable pseudo-terminal allocation.
    #[arg(short = 'T')]
    pub no_tty: bool,
    /// Force pseudo-terminal allocation; twice to force it without a local terminal.
    #[arg(short = 't', action = ArgAction::Count)]
    pub tty: u8,
    /// Display the version and exit.
    #[arg(short = 'V')]
    pub version: bool,
    /// Verbose mode; repeat for more.
    #[arg(short = 'v', action = ArgAction::Count)]
    pub verbose: u8,
    /// Forward stdin and stdout to host:port over the connection.
    #[arg(short = 'W', value_name = "host:port")]
    pub stdio_forward: Option<String>,
    /// Disable X11 forwarding (X11 forwarding is not supported).
    #[arg(short = 'x')]
    pub no_x11: bool,
    /// Print this help.
    #[arg(long = "help", action = ArgAction::Help)]
    pub help: Option<bool>,
    /// [user@]hostname or ssh://[user@]hostname[:port]
    #[arg(value_name = "destination")]
    pub destination: Option<String>,
    /// The command to run, and its arguments.
    #[arg(
        value_name = "command",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// A destination as ssh accepts it: `[user@]host` or `ssh://[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

/// Why a destination could not be read.
#[derive(Debug, thiserror::Error)]
#[error("sshq: invalid destination '{0}'")]
pub struct BadDestination(pub String);

impl Destination {
    pub fn parse(text: &str) -> Result<Destination, BadDestination> {
        let bad = || BadDestination(text.to_string());
        if let Some(rest) = text.strip_prefix("ssh://") {
            let (user, hostport) = split_user(rest);
            let (host, port) = split_host_port(hostport).ok_or_else(bad)?;
            return Ok(Destination { user, host, port });
        }
        let (user, host) = split_user(text);
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Destination {
            user,
            host: host.to_string(),
            port: None,
        })
    }
}

impl Destination {
    /// One ProxyJump hop: `[user@]host[:port]` (IPv6 in brackets when a port
    /// follows) or an `ssh://` URI, as ssh reads -J.
    pub fn parse_jump(text: &str) -> Result<Destination, BadDestination> {
        if text.starts_with("ssh://") {
            return Destination::parse(text);
        }
        let (user, hostport) = split_user(text);
        let (host, port) =
            split_host_port(hostport).ok_or_else(|| BadDestination(text.to_string()))?;
        Ok(Destination { user, host, port })
    }

    /// A whole -J / ProxyJump value: hops separated by commas, in order.
    pub fn parse_jump_list(text: &str) -> Result<Vec<Destination>, BadDestination> {
        text.split(',').map(Destination::parse_jump).collect()
    }
}

/// `host`, `host:port` or `[host]:port` (an IPv6 address with a port is in
/// brackets; one with more than one ':' and no brackets has no port).
/// Ports are 1 to 65535.
pub(crate) fn split_host_port(text: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = match text.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']')?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return None,
            }
        }
        None => match text.split_once(':') {
            Some((host, port)) if !port.contains(':') => (host, Some(port)),
            _ => (text, None),
        },
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0)?),
        None => None,
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// Splits at the *last* '@', as ssh does, so user names may contain '@'.
fn split_user(text: &str) -> (Option<String>, &str) {
    match text.rsplit_once('@') {
        Some((user, host)) if !user.is_empty() => (Some(user.to_string()), host),
        Some((_, host)) => (None, host),
        None => (None, text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        let d = Destination::parse("root@127.0.0.1").unwrap();
        assert_eq!(d.user.as_deref(), Some("root"));
        assert_eq!(d.host, "127.0.0.1");
        assert_eq!(d.port, None);
        let d = Destination::parse("ssh://a@b@[::1]:2222").unwrap();
        assert_eq!(d.user.as_deref(), Some("a@b"));
        assert_eq!(d.host, "::1");
        assert_eq!(d.port, Some(2222));
        assert!(Destination::parse("ssh://host:0").is_err());
        assert!(Destination::parse("user@").is_err());
    }

    #[test]
    fn jump_hosts() {
        let hops = Destination::parse_jump_list("a@j1:2200,j2,[::1]:22,::1,ssh://u@j3:7").unwrap();
        let view: Vec<_> = hops
            .iter()
            .map(|d| (d.user.as_deref(), d.host.as_str(), d.port))
            .collect();
        assert_eq!(
            view,
            [
                (Some("a"), "j1", Some(2200)),
                (None, "j2", None),
                (None, "::1", Some(22)),
                (None, "::1", None),
                (Some("u"), "j3", Some(7)),
            ]
        );
        for bad in ["", "j1,", "j:0", "j:x", "[::1", "[::1]x", "u@"] {
            assert!(Destination::parse_jump_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn openssh_style_flags() {
        let cli = Cli::try_parse_from([
            "sshq",
            "-tt",
            "-p",
            "2222",
            "-i",
            "k1",
            "-i",
            "k2",
            "-o",
            "Transport=tcp",
            "-o",
            "BatchMode yes",
            "-vv",
            "root@h",
            "ls",
            "-la",
            "x",
        ])
        .unwrap();
        assert_eq!(cli.tty, 2);
        assert_eq!(cli.port.as_deref(), Some("2222"));
        assert_eq!(cli.identity_files, ["k1", "k2"]);
        assert_eq!(cli.options, ["Transport=tcp", "BatchMode yes"]);
        assert_eq!(cli.verbose, 2);
        assert_eq!(cli.destination.as_deref(), Some("root@h"));
        assert_eq!(cli.command, ["ls", "-la", "x"]);
    }
}
