//! sshd_config-style configuration for `sshqd`, read the way OpenSSH 9.2's `sshd` reads it.
//!
//! Administrators know sshd_config, so sshqd takes the same keywords and rules:
//! keywords ignore case, the first value wins for single-valued keywords, `-o`
//! options are read before the file (so they win), and errors use sshd's wording.
//! Like sshd, unknown keywords and malformed lines are all collected and reported
//! before giving up, while an invalid value stops reading at once.
//!
//! Keywords whose omission would loosen access control (AllowUsers, Ciphers, ...)
//! are refused rather than ignored: a server must never run more permissively
//! than its configuration says.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::admission::keywords::PreauthLimits;
use crate::config_syntax::{
    departs_from_default, glob_paths, io_reason, lines_of, parse_bind_mask, parse_duration,
    parse_duration_or_none, parse_port, split_line, LogLevel,
};

/// sshd's file name for `-o` options (with line 0).
const CMDLINE: At<'static> = At("command-line", 0);
const MAX_INCLUDE_DEPTH: usize = 16;
/// sshd's default host keys, used when neither `-h` nor `HostKey` names one;
/// missing files are for the caller to skip, as sshd does.
const DEFAULT_HOST_KEYS: [&str; 3] = [
    "/etc/ssh/ssh_host_rsa_key",
    "/etc/ssh/ssh_host_ecdsa_key",
    "/etc/ssh/ssh_host_ed25519_key",
];

/// sshd keywords accepted and ignored: they configure features sshqd lacks
/// (X11, GSSAPI, Kerberos, host-based and rhosts logins, last-log, DNS checks)
/// or liveness and logging details, so ignoring them never grants more access.
#[rustfmt::skip]
const IGNORED: &[&str] = &[
    "compression", "debianbanner",
    "gssapiauthentication", "gssapicleanupcredentials", "gssapikeyexchange",
    "gssapistrictacceptorcheck", "hostbasedauthentication", "ignorerhosts", "ipqos",
    "ignoreuserknownhosts", "kerberosauthentication", "kerberosorlocalpasswd",
    "kerberosticketcleanup", "printlastlog",
    "x11displayoffset", "x11forwarding", "x11uselocalhost", "xauthlocation",
];

/// sshd keywords that restrict who may log in, what runs or which algorithms
/// are allowed: ignoring them would make sshqd more permissive than configured.
/// Each is paired with its sshd default; writing exactly that value changes
/// nothing and is accepted, anything else is an error ("" = no such value).
#[rustfmt::skip]
const UNSUPPORTED: &[(&str, &str)] = &[
    ("allowgroups", ""), ("allowusers", ""),
    ("banner", "none"), ("casignaturealgorithms", ""),
    ("ciphers", ""), ("denygroups", ""), ("denyusers", ""), ("disableforwarding", "no"),
    ("exposeauthinfo", "no"), ("hostbasedacceptedalgorithms", ""),
    ("hostkeyalgorithms", ""), ("macs", ""),
    ("permittty", "yes"),
    ("permittunnel", "no"), ("permituserrc", "yes"),
    ("pubkeyacceptedalgorithms", ""), ("rdomain", "none"),
    ("setenv", ""),
];

/// Everything that can be wrong with sshqd's configuration; `Display` gives the
/// text sshd prints for the same problem, naming the file and line.
#[derive(Debug, thiserror::Error)]
pub enum ServerConfigError {
    /// An unknown keyword (reading continues, as in sshd).
    #[error("{file}: line {line}: Bad configuration option: {keyword}")]
    UnknownKeyword {
        file: String,
        line: usize,
        keyword: String,
    },
    /// A line of the wrong shape: missing or extra arguments, bad quotes (reading continues).
    #[error("{file} line {line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
    /// An invalid value or a setting sshqd cannot honour (reading stops, as in sshd).
    #[error("{file} line {line}: {message}")]
    BadValue {
        file: String,
        line: usize,
        message: String,
    },
    /// The unknown keywords and syntax errors of one file, with sshd's closing line.
    #[error("{}{file}: terminating, {} bad configuration options", lines_of(errors), errors.len())]
    Terminating {
        file: String,
        errors: Vec<ServerConfigError>,
    },
    /// The configuration file could not be read.
    #[error("{file}: {reason}")]
    Open { file: String, reason: String },
    /// Settings valid one by one that cannot work together (sshd's
    /// `fatal()` after reading them), e.g. AuthenticationMethods naming
    /// only disabled methods.
    #[error("{0}")]
    Unsatisfiable(String),
    /// A `ListenAddress` host that does not resolve.
    #[error("bad addr or host: {host} ({reason})")]
    BadAddress { host: String, reason: String },
}

/// `PermitRootLogin`; `without-password` is the old name of `prohibit-password`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermitRootLogin {
    Yes,
    ProhibitPassword,
    ForcedCommandsOnly,
    No,
}

/// `AllowTcpForwarding`; `all` is a spelling of `yes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowTcpForwarding {
    Yes,
    No,
    Local,
    Remote,
}

/// `AllowStreamLocalForwarding` takes the same words as AllowTcpForwarding
/// (yes or all, no, local, remote), for Unix-domain socket forwarding.
pub type AllowStreamLocalForwarding = AllowTcpForwarding;

/// `GatewayPorts`: may remote forwardings listen on other than loopback?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayPorts {
    No,
    Yes,
    ClientSpecified,
}

/// `PermitOpen` / `PermitListen`: `any`, `none`, or a list of `host:port`
/// entries (PermitListen also takes a bare port); `*` is a wildcard host or port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermitList {
    Any,
    Nothing,
    Only(Vec<String>),
}

impl PermitList {
    /// Whether forwarding to (PermitOpen) or listening on (PermitListen) `host:port` is allowed.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        match self {
            PermitList::Any => true,
            PermitList::Nothing => false,
            PermitList::Only(list) => list.iter().any(|entry| {
                let (h, p) = split_host_port(entry).unwrap_or(("*", entry));
                (h == "*" || h.eq_ignore_ascii_case(host))
                    && (p == "*" || parse_port(p) == Some(port))
            }),
        }
    }
}

/// sshqd's own `Transports`: which carriers to serve.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transports {
    pub quic: bool,
    pub tcp: bool,
}

/// A `ListenAddress`: a host or address, with a port that overrides `Port` if given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress {
    pub host: String,
    pub port: Option<u16>,
}

/// sshqd's configuration with every default resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// `ListenAddress`es; empty means every address (see [`ServerConfig::listen_addrs`]).
    pub listen_addresses: Vec<ListenAddress>,
    /// `Port`s (default 22); `-p` replaces them all, as in sshd.
    pub ports: Vec<u16>,
    /// `-h` files then `HostKey`s; sshd's three default paths if none.
    pub host_keys: Vec<PathBuf>,
    /// `AuthorizedKeysFile` templates (empty for `none`); see [`ServerConfig::authorized_keys_files`].
    pub authorized_keys_file: Vec<String>,
    pub permit_root_login: PermitRootLogin,
    pub pubkey_authentication: bool,
    /// PasswordAuthentication and KbdInteractiveAuthentication: sshqd
    /// checks passwords only through PAM, so these count only with
    /// `UsePAM yes`, where they default to `yes` as in sshd (`no` without
    /// it); see [`ServerConfig::enabled_methods`].
    pub password_authentication: bool,
    pub kbd_interactive_authentication: bool,
    /// `UsePAM`: passwords, keyboard-interactive, and the account and
    /// session stages go through PAM, as in sshd.
    pub use_pam: bool,
    /// The PAM service sshqd names (`PAMServiceName`, an sshq keyword;
    /// sshd's is its program name, `sshd`, which is the default here too so
    /// that sshqd follows the host's sshd policy).
    pub pam_service_name: String,
    pub max_auth_tries: u32,
    /// `MaxSessions`: open session channels per connection (0: none).
    pub max_sessions: u32,
    /// `LoginGraceTime`; `None` for 0, meaning no limit.
    pub login_grace_time: Option<Duration>,
    /// `Subsystem`s as (name, command line); names are case-sensitive, as in sshd.
    pub subsystems: Vec<(String, String)>,
    /// `ForceCommand`: run this instead of what the client asks for (and
    /// of a key's `command=`), as sshd does; `None` for `none`.
    pub force_command: Option<String>,
    /// `ChrootDirectory` (tokens unexpanded); `None` for `none`.
    pub chroot_directory: Option<String>,
    pub log_level: LogLevel,
    /// `SyslogFacility` (AUTH by default), used unless logging to stderr.
    pub syslog_facility: super::logging::SyslogFacility,
    /// `ClientAliveInterval`; `None` for 0 (the default: never ask).
    pub client_alive_interval: Option<Duration>,
    /// `ClientAliveCountMax` (default 3).
    pub client_alive_count_max: u32,
    pub allow_tcp_forwarding: AllowTcpForwarding,
    pub gateway_ports: GatewayPorts,
    pub permit_open: PermitList,
    pub permit_listen: PermitList,
    pub allow_agent_forwarding: bool,
    pub allow_stream_local_forwarding: AllowStreamLocalForwarding,
    /// `StreamLocalBindUnlink`: replace a stale socket file for -R.
    pub stream_local_bind_unlink: bool,
    /// `StreamLocalBindMask`: the umask -R socket files are made with.
    pub stream_local_bind_mask: u32,
    /// `PidFile`; `None` (the default, and `none`) writes no pid file.
    pub pid_file: Option<PathBuf>,
    pub strict_modes: bool,
    /// `AcceptEnv` patterns (`*` and `?` wildcards).
    pub accept_env: Vec<String>,
    pub print_motd: bool,
    /// `TCPKeepAlive` (default yes): SO_KEEPALIVE on TCP connections, so
    /// that a vanished client's connection ends (and a reattachable
    /// session's hold time starts) even when nothing is sent to it.
    pub tcp_keepalive: bool,
    /// sshqd's own `Transports` (default both).
    pub transports: Transports,
    /// sshqd's own `QuicRelay`: `host:port` of an SSH server that QUIC sessions are relayed to.
    pub quic_relay: Option<String>,
    /// sshqd's own `AllowUdpRelay`: where direct-udp@sshq may send datagrams.
    pub allow_udp_relay: super::context::AllowUdpRelay,
    /// `KexAlgorithms`, raw (may start with `+`, `-` or `^` as in OpenSSH).
    pub kex_algorithms: Option<String>,
    /// sshqd's own `CongestionControl` for QUIC (cubic, bbr, newreno);
    /// `None` keeps quinn's default (cubic).
    pub congestion_control: Option<sshq_quic::tls::CongestionControl>,
    /// sshqd's own `OneStreamBaseline`: QUIC clients carry every channel on
    /// one stream, a lab baseline (`sshq_quic::one_stream`), never sshq/1.
    pub one_stream_baseline: bool,
    /// sshqd's own `QuicIdleTimeout` and `QuicKeepAlive`.
    pub quic_liveness: sshq_quic::tls::Liveness,
    /// sshqd's own `ClientReattachTimeout`, `ClientReattachBuffer` and
    /// `ClientReattachDirectory`.
    pub reattach: super::reattach::ReattachPolicy,
    /// MaxStartups, PerSourceMaxStartups, PerSourceNetBlockSize,
    /// PerSourcePenalties, PerSourcePenaltyExemptList.
    pub preauth: PreauthLimits,
    /// TrustedUserCAKeys, AuthorizedPrincipalsFile, RevokedKeys, HostCertificate.
    pub identity: IdentitySettings,
    /// PermitEmptyPasswords, AuthenticationMethods.
    pub authentication: AuthenticationSettings,
    /// AuthorizedKeysCommand, AuthorizedPrincipalsCommand (and their
    /// users), PermitUserEnvironment, UseDNS.
    pub login_sources: LoginSources,
    /// `Match` blocks, applied per connection by
    /// [`ServerConfig::for_connection`].
    pub matches: Vec<MatchBlock>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen_addresses: Vec::new(),
            ports: vec![22],
            host_keys: DEFAULT_HOST_KEYS.iter().map(PathBuf::from).collect(),
            authorized_keys_file: vec![
                ".ssh/authorized_keys".into(),
                ".ssh/authorized_keys2".into(),
            ],
            permit_root_login: PermitRootLogin::ProhibitPassword,
            pubkey_authentication: true,
            password_authentication: false,
            kbd_interactive_authentication: false,
            use_pam: false,
            pam_service_name: "sshd".to_string(),
            max_auth_tries: 6,
            max_sessions: super::limits::DEFAULT_MAX_SESSIONS,
            login_grace_time: Some(Duration::from_secs(120)),
            subsystems: Vec::new(),
            force_command: None,
            chroot_directory: None,
            log_level: LogLevel::Info,
            syslog_facility: super::logging::SyslogFacility::Auth,
            client_alive_interval: None,
            client_alive_count_max: 3,
            allow_tcp_forwarding: AllowTcpForwarding::Yes,
            gateway_ports: GatewayPorts::No,
            permit_open: PermitList::Any,
            permit_listen: PermitList::Any,
            allow_agent_forwarding: true,
            allow_stream_local_forwarding: AllowTcpForwarding::Yes,
            stream_local_bind_unlink: false,
            stream_local_bind_mask: 0o177,
            pid_file: None,
            strict_modes: true,
            accept_env: Vec::new(),
            print_motd: true,
            tcp_keepalive: true,
            transports: Transports {
                quic: true,
                tcp: true,
            },
            quic_relay: None,
            allow_udp_relay: super::context::AllowUdpRelay::Quic,
            kex_algorithms: None,
            congestion_control: None,
            one_stream_baseline: false,
            quic_liveness: sshq_quic::tls::Liveness::SERVER,
            reattach: super::reattach::ReattachPolicy::default(),
            preauth: PreauthLimits::new(),
            identity: IdentitySettings::default(),
            authentication: AuthenticationSettings::default(),
            login_sources: LoginSources::default(),
            matches: Vec::new(),
        }
    }
}

#[rustfmt::skip]
const YESNO: &[(&str, bool)] = &[("yes", true), ("no", false)];
#[rustfmt::skip]
const ROOT: &[(&str, PermitRootLogin)] = &[
    ("yes", PermitRootLogin::Yes), ("prohibit-password", PermitRootLogin::ProhibitPassword),
    ("without-password", PermitRootLogin::ProhibitPassword),
    ("forced-commands-only", PermitRootLogin::ForcedCommandsOnly), ("no", PermitRootLogin::No),
];
#[rustfmt::skip]
const TCPFWD: &[(&str, AllowTcpForwarding)] = &[
    ("yes", AllowTcpForwarding::Yes), ("all", AllowTcpForwarding::Yes),
    ("no", AllowTcpForwarding::No), ("local", AllowTcpForwarding::Local),
    ("remote", AllowTcpForwarding::Remote),
];
#[rustfmt::skip]
const GATEWAY: &[(&str, GatewayPorts)] = &[
    ("no", GatewayPorts::No), ("yes", GatewayPorts::Yes),
    ("clientspecified", GatewayPorts::ClientSpecified),
];

impl ServerConfig {
    /// Builds the configuration as `sshqd [-f path] [-p port]... [-h key]... [-o opt]...`
    /// would: `-o` options first (so they win), then the file at `path` (`None`: no
    /// file; choosing a default path is the caller's business). `ListenAddress` hosts
    /// are resolved here so a bad one is reported at startup, as sshd does.
    pub fn load(
        path: Option<&Path>,
        overrides: &[String],
        cli_ports: &[u16],
        cli_host_keys: &[PathBuf],
    ) -> Result<ServerConfig, ServerConfigError> {
        let mut parser = Parser::new(overrides, cli_ports, cli_host_keys)?;
        if let Some(path) = path {
            parser.read_file(path, 0)?;
        }
        let cfg = parser.finish();
        cfg.resolve_listen(true)?;
        cfg.check_authentication_methods()?;
        cfg.login_sources
            .check()
            .map_err(ServerConfigError::Unsatisfiable)?;
        Ok(cfg)
    }

    /// Builds the configuration as [`ServerConfig::load`] does with `-o`
    /// `overrides` and a file, the file's contents given as `text` (named
    /// `name` in errors): the same line parser, from memory (for the fuzz
    /// targets). `ListenAddress` hosts are checked for syntax but not
    /// resolved, so no lookup happens here. An `Include` in `text` still
    /// reads the files it names, relative to the current directory.
    pub fn parse_str(
        name: &str,
        text: &str,
        overrides: &[String],
    ) -> Result<ServerConfig, ServerConfigError> {
        let mut parser = Parser::new(overrides, &[], &[])?;
        parser.read_text(name, text, Path::new("."), 0)?;
        let cfg = parser.finish();
        cfg.check_authentication_methods()?;
        cfg.login_sources
            .check()
            .map_err(ServerConfigError::Unsatisfiable)?;
        Ok(cfg)
    }

    /// The sockets to listen on: each `ListenAddress` with its own port or every
    /// `Port`; without `ListenAddress`, 0.0.0.0 and :: on every port (the listener
    /// should set IPV6_V6ONLY on the :: socket so both can bind). Duplicates removed.
    /// Host names are resolved now; [`ServerConfig::load`] already checked they resolve,
    /// so one that stops resolving later is skipped rather than failing the call.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.resolve_listen(false).unwrap_or_default()
    }

    fn resolve_listen(&self, strict: bool) -> Res<Vec<SocketAddr>> {
        let wildcard = ["0.0.0.0", "::"].map(|host| ListenAddress {
            host: host.into(),
            port: None,
        });
        let list = if self.listen_addresses.is_empty() {
            wildcard.as_slice()
        } else {
            self.listen_addresses.as_slice()
        };
        let mut out = Vec::new();
        for la in list {
            for port in la.port.map_or_else(|| self.ports.clone(), |p| vec![p]) {
                let addrs: Vec<SocketAddr> = match la.host.parse::<IpAddr>() {
                    Ok(ip) => vec![SocketAddr::new(ip, port)],
                    Err(_) => match (la.host.as_str(), port).to_socket_addrs() {
                        Ok(found) => found.collect(),
                        Err(e) if strict => {
                            let (host, reason) = (la.host.clone(), e.to_string());
                            return Err(ServerConfigError::BadAddress { host, reason });
                        }
                        Err(_) => Vec::new(),
                    },
                };
                for addr in addrs {
                    if !out.contains(&addr) {
                        out.push(addr);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The authorized_keys files to consult for `user`: `%h` becomes `home`, `%u`
    /// the user name, `%%` a `%`, and relative paths are taken from `home`, as in sshd.
    pub fn authorized_keys_files(&self, user: &str, home: &Path) -> Vec<PathBuf> {
        let home_text = home.to_string_lossy();
        self.authorized_keys_file
            .iter()
            .filter_map(|template| expand_tokens(template, user, &home_text).ok())
            .map(|path| home.join(path))
            .collect()
    }
}

/// The file name and line number of a line, for error messages.
struct At<'a>(&'a str, usize);

type Res<T = ()> = Result<T, ServerConfigError>;

impl At<'_> {
    fn syntax(&self, message: impl Into<String>) -> ServerConfigError {
        let (file, line, message) = (self.0.to_string(), self.1, message.into());
        ServerConfigError::Syntax {
            file,
            line,
            message,
        }
    }

    fn bad(&self, message: impl Into<String>) -> ServerConfigError {
        let (file, line, message) = (self.0.to_string(), self.1, message.into());
        ServerConfigError::BadValue {
            file,
            line,
            message,
        }
    }

    /// The one argument of a single-valued keyword (`keyword` as written, like sshd).
    fn single<'v>(&self, keyword: &str, args: &'v [String]) -> Res<&'v str> {
        match args {
            [one] => Ok(one),
            _ => Err(self.syntax(format!("keyword {keyword} extra arguments at end of line"))),
        }
    }

    fn pick<T: Copy>(&self, v: &str, table: &[(&str, T)]) -> Res<T> {
        let found = table.iter().find(|(name, _)| name.eq_ignore_ascii_case(v));
        found
            .map(|(_, t)| *t)
            .ok_or_else(|| self.bad(format!("unsupported option \"{v}\".")))
    }
}

/// Stores `value` only for the first occurrence of a keyword.
/// The bounds of ClientReattachBuffer: below 64 KiB a burst of output
/// overflows it in a moment; above 1 GiB one session could take a large
/// share of the server's memory.
const REATTACH_BUFFER_MIN: usize = 64 * 1024;
const REATTACH_BUFFER_MAX: usize = 1024 * 1024 * 1024;

fn set<T>(fresh: bool, slot: &mut T, value: T) {
    if fresh {
        *slot = value;
    }
}

struct Parser {
    cfg: ServerConfig,
    /// Keywords already given, for "first value wins".
    seen: HashSet<String>,
    /// `-p` was given: `Port` lines are then checked but not used, as in sshd.
    cli_ports: bool,
    /// The `Match` block lines now go to (an index into `cfg.matches`).
    current_match: Option<usize>,
}

impl Parser {
    /// A parser holding the command line's settings: `-p` ports, `-h` host
    /// keys, then the `-o` options (applied first, so they win).
    fn new(overrides: &[String], cli_ports: &[u16], cli_host_keys: &[PathBuf]) -> Res<Parser> {
        let cfg = ServerConfig {
            ports: cli_ports.to_vec(),
            host_keys: cli_host_keys.to_vec(),
            ..ServerConfig::default()
        };
        let cli_ports = !cli_ports.is_empty();
        let mut parser = Parser {
            cfg,
            seen: HashSet::new(),
            cli_ports,
            current_match: None,
        };
        for option in overrides {
            parser.line(&CMDLINE, option, None, 0)?;
        }
        Ok(parser)
    }

    /// The configuration read, with sshd's defaults for what nothing set.
    fn finish(self) -> ServerConfig {
        let mut cfg = self.cfg;
        if cfg.ports.is_empty() {
            cfg.ports.push(22);
        }
        if cfg.host_keys.is_empty() {
            cfg.host_keys = DEFAULT_HOST_KEYS.iter().map(PathBuf::from).collect();
        }
        // sshd's defaults for the password methods, where sshqd has them.
        if cfg.use_pam {
            cfg.password_authentication |= !self.seen.contains("passwordauthentication");
            let kbd_set = self.seen.contains("kbdinteractiveauthentication");
            cfg.kbd_interactive_authentication |= !kbd_set;
        }
        cfg
    }

    fn read_file(&mut self, path: &Path, depth: usize) -> Res {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| {
            let (file, reason) = (name.clone(), io_reason(&e));
            ServerConfigError::Open { file, reason }
        })?;
        // A bare file name has an empty parent; its includes are relative to ".".
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        self.read_text(&name, &String::from_utf8_lossy(&bytes), dir, depth)
    }

    /// Applies a file's lines (`dir`: the file's directory, for relative
    /// `Include`s); bad lines are collected into one
    /// [`ServerConfigError::Terminating`] naming the file `name`.
    fn read_text(&mut self, name: &str, text: &str, dir: &Path, depth: usize) -> Res {
        let mut errors = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            match self.line(&At(name, n + 1), raw, Some(dir), depth) {
                Ok(()) => {}
                Err(
                    e @ (ServerConfigError::UnknownKeyword { .. }
                    | ServerConfigError::Syntax { .. }),
                ) => errors.push(e),
                Err(e) => return Err(e),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            let file = name.to_string();
            Err(ServerConfigError::Terminating { file, errors })
        }
    }

    /// Applies one line; `dir` (the file's directory, for relative `Include`s) is
    /// `None` for `-o` options.
    fn line(&mut self, at: &At<'_>, raw: &str, dir: Option<&Path>, depth: usize) -> Res {
        let Some((keyword, args)) = split_line(raw).map_err(|m| at.syntax(m))? else {
            return Ok(());
        };
        if args.is_empty() {
            return Err(at.syntax(format!("no argument after keyword \"{keyword}\"")));
        }
        let mut kw = keyword.to_ascii_lowercase();
        if kw == "challengeresponseauthentication" {
            kw = "kbdinteractiveauthentication".to_string(); // sshd's older name for it
        }
        if kw == "match" {
            let block = MatchBlock::parse(&args).map_err(|e| at.bad(e.to_string()))?;
            self.cfg.matches.push(block);
            self.current_match = Some(self.cfg.matches.len() - 1);
            return Ok(());
        }
        if let Some(index) = self.current_match {
            return self.match_line(index, at, raw, &kw, &keyword);
        }
        let fresh = !self.seen.contains(&kw);
        let one = || at.single(&keyword, &args);
        let flag = || at.pick(one()?, YESNO);
        let unsupported = departs_from_default(UNSUPPORTED, &kw, &args);
        let c = &mut self.cfg;
        match kw.as_str() {
            "port" => {
                let port =
                    parse_port(one()?).ok_or_else(|| at.bad("Badly formatted port number."))?;
                if !self.cli_ports && !c.ports.contains(&port) {
                    c.ports.push(port);
                }
            }
            "listenaddress" => {
                if matches!(args.as_slice(), [_, r, _] if r == "rdomain") {
                    return Err(at.bad("rdomain is not supported by sshqd"));
                }
                let la = parse_listen(one()?).map_err(|m| at.bad(m))?;
                if !c.listen_addresses.contains(&la) {
                    c.listen_addresses.push(la);
                }
            }
            "hostkey" => {
                let key = PathBuf::from(one()?);
                if !c.host_keys.contains(&key) {
                    c.host_keys.push(key);
                }
            }
            "authorizedkeysfile" => {
                for arg in &args {
                    if let Err(token) = expand_tokens(arg, "u", "/h") {
                        return Err(at.bad(format!(
                            "AuthorizedKeysFile: unknown token {token} in \"{arg}\""
                        )));
                    }
                }
                let files = if args == ["none"] {
                    Vec::new()
                } else {
                    args.clone()
                };
                set(fresh, &mut c.authorized_keys_file, files);
            }
            "permitrootlogin" => set(fresh, &mut c.permit_root_login, at.pick(one()?, ROOT)?),
            "pubkeyauthentication" => set(fresh, &mut c.pubkey_authentication, flag()?),
            "passwordauthentication" => set(fresh, &mut c.password_authentication, flag()?),
            "kbdinteractiveauthentication" => {
                set(fresh, &mut c.kbd_interactive_authentication, flag()?)
            }
            "allowagentforwarding" => set(fresh, &mut c.allow_agent_forwarding, flag()?),
            "strictmodes" => set(fresh, &mut c.strict_modes, flag()?),
            "printmotd" => set(fresh, &mut c.print_motd, flag()?),
            "tcpkeepalive" => set(fresh, &mut c.tcp_keepalive, flag()?),
            "allowtcpforwarding" => {
                set(fresh, &mut c.allow_tcp_forwarding, at.pick(one()?, TCPFWD)?)
            }
            "gatewayports" => set(fresh, &mut c.gateway_ports, at.pick(one()?, GATEWAY)?),
            "allowstreamlocalforwarding" => {
                let v = at.pick(one()?, TCPFWD)?;
                set(fresh, &mut c.allow_stream_local_forwarding, v)
            }
            "streamlocalbindunlink" => set(fresh, &mut c.stream_local_bind_unlink, flag()?),
            "streamlocalbindmask" => {
                let mask = parse_bind_mask(one()?)
                    .ok_or_else(|| at.bad("Invalid StreamLocalBindMask."))?;
                set(fresh, &mut c.stream_local_bind_mask, mask)
            }
            "maxauthtries" => {
                let n: i64 = one()?
                    .parse()
                    .map_err(|_| at.bad("MaxAuthTries integer value invalid."))?;
                let n = u32::try_from(n)
                    .map_err(|_| at.bad("MaxAuthTries integer value too small."))?;
                set(fresh, &mut c.max_auth_tries, n);
            }
            "maxsessions" => {
                let n: i64 = one()?
                    .parse()
                    .map_err(|_| at.bad("MaxSessions integer value invalid."))?;
                let n =
                    u32::try_from(n).map_err(|_| at.bad("MaxSessions integer value too small."))?;
                set(fresh, &mut c.max_sessions, n);
            }
            "logingracetime" => {
                let d = parse_duration(one()?).ok_or_else(|| at.bad("invalid time value."))?;
                set(fresh, &mut c.login_grace_time, (!d.is_zero()).then_some(d));
            }
            "loglevel" => {
                let v = one()?;
                let level = LogLevel::parse(v)
                    .ok_or_else(|| at.bad(format!("unsupported log level '{v}'")))?;
                set(fresh, &mut c.log_level, level);
            }
            "syslogfacility" => {
                let v = one()?;
                let facility = super::logging::SyslogFacility::parse(v)
                    .ok_or_else(|| at.bad(format!("unsupported log facility '{v}'")))?;
                set(fresh, &mut c.syslog_facility, facility);
            }
            "clientaliveinterval" => {
                let d = parse_duration(one()?).ok_or_else(|| at.bad("invalid time value."))?;
                set(
                    fresh,
                    &mut c.client_alive_interval,
                    (!d.is_zero()).then_some(d),
                );
            }
            "clientalivecountmax" => {
                let n: i64 = one()?
                    .parse()
                    .map_err(|_| at.bad("ClientAliveCountMax integer value invalid."))?;
                let n = u32::try_from(n)
                    .map_err(|_| at.bad("ClientAliveCountMax integer value too small."))?;
                set(fresh, &mut c.client_alive_count_max, n);
            }
            "subsystem" => {
                let (name, command) = match args.split_first() {
                    Some((name, command)) if !command.is_empty() => {
                        (name.clone(), command.join(" "))
                    }
                    _ => return Err(at.bad("Missing subsystem command.")),
                };
                if c.subsystems.iter().any(|(n, _)| *n == name) {
                    return Err(at.bad(format!("Subsystem '{name}' already defined.")));
                }
                c.subsystems.push((name, command));
            }
            "permitopen" | "permitlisten" => {
                let list = match args.as_slice() {
                    [word] if word.eq_ignore_ascii_case("any") => PermitList::Any,
                    [word] if word.eq_ignore_ascii_case("none") => PermitList::Nothing,
                    _ => {
                        let port_ok = |p: &str| p == "*" || parse_port(p).is_some();
                        let ok = |a: &String| match split_host_port(a) {
                            Some((host, port)) => !host.is_empty() && port_ok(port),
                            None => kw == "permitlisten" && port_ok(a),
                        };
                        if !args.iter().all(ok) {
                            return Err(at.bad(format!("{keyword} bad port number")));
                        }
                        PermitList::Only(args.clone())
                    }
                };
                let slot = if kw == "permitopen" {
                    &mut c.permit_open
                } else {
                    &mut c.permit_listen
                };
                set(fresh, slot, list);
            }
            "forcecommand" => {
                let command = args.join(" ");
                set(
                    fresh,
                    &mut c.force_command,
                    (command != "none").then_some(command),
                );
            }
            chroot::KEYWORD => {
                chroot::apply(&mut c.chroot_directory, &args, fresh).map_err(|m| at.bad(m))?
            }
            "pidfile" => {
                let v = one()?;
                let pid_file = (v != "none").then(|| PathBuf::from(v));
                set(fresh, &mut c.pid_file, pid_file);
            }
            "usepam" => set(fresh, &mut c.use_pam, flag()?),
            "pamservicename" => {
                let name = authentication::pam_service_name(one()?);
                set(
                    fresh,
                    &mut c.pam_service_name,
                    name.map_err(|e| at.bad(e.to_string()))?,
                )
            }
            "acceptenv" => {
                if args.iter().any(|a| a.is_empty() || a.contains('=')) {
                    return Err(at.bad("Invalid environment name."));
                }
                for arg in &args {
                    if !c.accept_env.contains(arg) {
                        c.accept_env.push(arg.clone());
                    }
                }
            }
            "transports" => {
                let mut t = Transports::default();
                for word in one()?.split(',') {
                    match word.to_ascii_lowercase().as_str() {
                        "quic" => t.quic = true,
                        "tcp" => t.tcp = true,
                        _ => {
                            return Err(at.bad(format!(
                                "unsupported transport \"{word}\" (expected quic and/or tcp)"
                            )))
                        }
                    }
                }
                set(fresh, &mut c.transports, t);
            }
            "quicrelay" => {
                let v = one()?;
                match parse_listen(v) {
                    Ok(ListenAddress { port: Some(_), .. }) => {
                        set(fresh, &mut c.quic_relay, Some(v.to_string()))
                    }
                    _ => return Err(at.bad(format!("QuicRelay \"{v}\": expected host:port"))),
                }
            }
            "allowudprelay" => {
                let v = at.pick(one()?, super::context::ALLOW_UDP_RELAY)?;
                set(fresh, &mut c.allow_udp_relay, v)
            }
            "kexalgorithms" => {
                // One list for TCP and QUIC (sshq_core::kex), checked here so
                // `sshqd -t` catches a bad name.
                let v = one()?;
                sshq_core::kex::validate(v).map_err(|e| at.bad(e.to_string()))?;
                set(fresh, &mut c.kex_algorithms, Some(v.to_string()))
            }
            "congestioncontrol" => {
                let v = at.pick(one()?, sshq_quic::tls::CongestionControl::NAMES)?;
                set(fresh, &mut c.congestion_control, Some(v))
            }
            "onestreambaseline" => set(fresh, &mut c.one_stream_baseline, flag()?),
            "clientreattachtimeout" => {
                let d = parse_duration(one()?).ok_or_else(|| at.bad("invalid time value."))?;
                set(fresh, &mut c.reattach.hold, (!d.is_zero()).then_some(d))
            }
            "clientreattachdirectory" => {
                let v = one()?;
                if !v.starts_with('/') {
                    return Err(at.bad(format!(
                        "ClientReattachDirectory '{v}' is not an absolute path."
                    )));
                }
                set(fresh, &mut c.reattach.directory, Some(PathBuf::from(v)))
            }
            "clientreattachbuffer" => {
                let v = one()?;
                let bytes = crate::config_syntax::parse_size(v)
                    .filter(|n| (REATTACH_BUFFER_MIN..=REATTACH_BUFFER_MAX).contains(n))
                    .ok_or_else(|| {
                        at.bad(format!(
                            "ClientReattachBuffer '{v}' is not a size from 64K to 1G."
                        ))
                    })?;
                set(fresh, &mut c.reattach.buffer, bytes)
            }
            "quicidletimeout" => {
                let v =
                    parse_duration_or_none(one()?).ok_or_else(|| at.bad("invalid time value."))?;
                set(fresh, &mut c.quic_liveness.idle_timeout, v)
            }
            "quickeepalive" => {
                let v =
                    parse_duration_or_none(one()?).ok_or_else(|| at.bad("invalid time value."))?;
                set(fresh, &mut c.quic_liveness.keep_alive, v)
            }
            "include" => {
                let Some(dir) = dir else {
                    return Err(at.bad("Include directive not supported as a command-line option"));
                };
                if depth >= MAX_INCLUDE_DEPTH {
                    return Err(at.bad("Too many recursive configuration includes"));
                }
                // Relative paths are taken from the including file's directory.
                // A Match block in an included file ends with that file.
                let outer = self.current_match;
                for file in args.iter().flat_map(|arg| glob_paths(&dir.join(arg))) {
                    self.read_file(&file, depth + 1)?;
                    self.current_match = outer;
                }
            }
            "maxstartups"
            | "persourcemaxstartups"
            | "persourcenetblocksize"
            | "persourcepenalties"
            | "persourcepenaltyexemptlist" => {
                c.preauth
                    .apply(&kw, &keyword, &args, fresh)
                    .map_err(|m| at.bad(m.to_string()))?;
            }
            k if identity::KEYWORDS.contains(&k) => {
                c.identity
                    .apply(&kw, &keyword, &args, fresh)
                    .map_err(|e| at.bad(e.to_string()))?;
            }
            k if authentication::KEYWORDS.contains(&k) => {
                let flag = (k == "permitemptypasswords").then(flag).transpose()?;
                c.authentication
                    .apply(&kw, &keyword, &args, flag, fresh)
                    .map_err(|e| at.bad(e.to_string()))?;
            }
            k if login_sources::KEYWORDS.contains(&k) => {
                let flag = (k == "usedns").then(flag).transpose()?;
                let rest = login_sources::rest_of_line(raw);
                c.login_sources
                    .apply(&kw, &keyword, rest, &args, flag, fresh)
                    .map_err(|e| at.bad(e.to_string()))?;
            }
            k if IGNORED.contains(&k) => {}
            _ if unsupported == Some(true) => {
                return Err(at.bad(format!("{keyword} is not supported by sshqd")));
            }
            _ if unsupported.is_some() => {}
            _ => {
                let (file, line) = (at.0.to_string(), at.1);
                return Err(ServerConfigError::UnknownKeyword {
                    file,
                    line,
                    keyword,
                });
            }
        }
        self.seen.insert(kw);
        Ok(())
    }
}

mod authentication;
mod chroot;
mod host_name;
mod identity;
mod login_sources;
mod matching;
mod values;
pub use authentication::{AuthenticationMethods, AuthenticationSettings, MethodList, MethodStep};
pub use host_name::client_host;
pub use identity::IdentitySettings;
pub use login_sources::{LoginSources, PermitUserEnvironment};
pub use matching::{ConnectionFacts, MatchBlock, AUTHENTICATION_KEYWORDS};
pub(crate) use values::parse_listen;
use values::{expand_tokens, split_host_port};

#[cfg(test)]
mod tests;
