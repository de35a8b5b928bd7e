//! ssh_config-style client options, read the way OpenSSH 9.2's `ssh` reads them.
//!
//! Users point `sshq` at the same `~/.ssh/config` and `/etc/ssh/ssh_config` they
//! use with `ssh`, so the rules follow OpenSSH rather than inventing new ones:
//! the first value obtained for an option wins (command-line `-o` first, then the
//! files in order), every line is validated even inside blocks that do not apply,
//! and error texts copy OpenSSH's wording so they read the same in either tool.
//!
//! The small parsers at the bottom (line splitting, durations, ports, `~`, globs)
//! are shared with the server's sshd_config reader.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sshq_core::pattern::{matches, matches_list};

pub use crate::config_syntax::{
    departs_from_default, glob_paths, io_reason, lines_of, parse_bind_mask, parse_duration,
    parse_duration_or_none, parse_port, split_line, LogLevel,
};

/// OpenSSH's limit on nested `Include`s; it stops include loops.
const MAX_INCLUDE_DEPTH: usize = 16;
/// The system-wide file read after `~/.ssh/config` when no `-F` is given.
pub const SYSTEM_CONFIG_PATH: &str = "/etc/ssh/ssh_config";

/// Keywords OpenSSH knows that sshq accepts and ignores. Each one only tunes a
/// feature sshq does not have (GSSAPI, X11, multiplexing, canonicalisation,
/// algorithm lists, known_hosts hashing) or asks for something sshq's fixed
/// behaviour already satisfies or exceeds (it never runs local commands, never
/// trusts DNS or a global known_hosts more than the user's). Ignoring them lets
/// Debian's default /etc/ssh/ssh_config (SendEnv, HashKnownHosts,
/// GSSAPIAuthentication) and typical user files work unchanged.
#[rustfmt::skip]
const IGNORED: &[&str] = &[
    "addkeystoagent", "addressfamily", "canonicaldomains", "canonicalizefallbacklocal",
    "canonicalizehostname", "canonicalizemaxdots", "canonicalizepermittedcnames",
    "casignaturealgorithms", "checkhostip", "cipher",
    "ciphers", "compression", "compressionlevel", "connectionattempts", "controlmaster",
    "controlpath", "controlpersist", "enableescapecommandline", "enablesshkeysign",
    "escapechar", "fingerprinthash", "forwardx11", "forwardx11timeout",
    "forwardx11trusted", "gatewayports", "gssapiauthentication",
    "gssapiclientidentity", "gssapidelegatecredentials", "gssapikeyexchange",
    "gssapikexalgorithms", "gssapirenewalforcesrekey", "gssapiserveridentity", "gssapitrustdns",
    "hashknownhosts", "hostbasedacceptedalgorithms", "hostbasedauthentication",
    "hostbasedkeytypes", "hostkeyalgorithms", "ipqos",
    // Submethods for keyboard-interactive: sshd with PAM has one device
    // and answers the same whatever the client names, so sshq sends none.
    "kbdinteractivedevices", "keepalive", "localcommand", "logverbose", "macs",
    "nohostauthenticationforlocalhost",
    "permitlocalcommand", "protocol", "pubkeyacceptedalgorithms",
    "pubkeyacceptedkeytypes", "rekeylimit", "requiredrsasize",
    "rhostsrsaauthentication", "rsaauthentication", "syslogfacility",
    "tunnel", "tunneldevice", "updatehostkeys", "useprivilegedport",
    "useroaming", "verifyhostkeydns", "visualhostkey", "xauthlocation",
];

/// Keywords OpenSSH knows whose silent omission would change where sshq connects,
/// what it runs, or which keys it trusts. Each is paired with its OpenSSH default:
/// writing exactly that value changes nothing and is accepted ("" = no such value).
/// Other values are an error when they apply to the host being contacted, and pass
/// unnoticed in blocks for other hosts so one entry does not make sshq unusable.
#[rustfmt::skip]
const UNSUPPORTED: &[(&str, &str)] = &[
    ("bindaddress", ""), ("bindinterface", ""),
    ("forkafterauthentication", "no"), ("hostkeyalias", ""),
    ("identityagent", "SSH_AUTH_SOCK"), ("knownhostscommand", "none"),
    ("permitremoteopen", "any"), ("pkcs11provider", "none"), ("proxyusefdpass", "no"), ("remotecommand", "none"), ("revokedhostkeys", "none"),
    ("securitykeyprovider", "internal"), ("sessiontype", "default"), ("smartcarddevice", ""),
    ("stdinnull", "no"),
];

/// Everything that can be wrong with client configuration. `Display` gives the
/// text OpenSSH prints for the same problem, naming the file and line (`-o`
/// options are "command-line", line 0, as in OpenSSH).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A keyword that is neither known nor covered by `IgnoreUnknown`.
    #[error("{file}: line {line}: Bad configuration option: {keyword}")]
    UnknownKeyword {
        file: String,
        line: usize,
        keyword: String,
    },
    /// A known keyword with a missing, extra or invalid value.
    #[error("{file} line {line}: {message}")]
    BadLine {
        file: String,
        line: usize,
        message: String,
    },
    /// Valid OpenSSH configuration that sshq cannot honour (a keyword or `Match` criterion).
    #[error("{file} line {line}: {message}")]
    Unsupported {
        file: String,
        line: usize,
        message: String,
    },
    /// A configuration file could not be read.
    #[error("Can't open user config file {file}: {reason}")]
    Open { file: String, reason: String },
    /// A user configuration file others could write to, which OpenSSH refuses too.
    #[error("Bad owner or permissions on {file}")]
    Permissions { file: String },
    /// All bad lines of one file, reported together as OpenSSH does before giving up.
    #[error("{}{file}: terminating, {} bad configuration options", lines_of(errors), errors.len())]
    Terminating {
        file: String,
        errors: Vec<ConfigError>,
    },
}

type Res<T = ()> = Result<T, ConfigError>;

/// The `StrictHostKeyChecking` policy lives with the host-key check in the
/// core; `off` and `false` are spellings of `No`, `true` of `Yes`.
pub use sshq_core::host_key_check::StrictHostKeyChecking;

/// `RequestTTY`: whether to ask the server for a pseudo-terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestTty {
    No,
    Yes,
    Force,
    Auto,
}

/// sshq's `Transport` keyword: which carrier to use; `Auto` tries QUIC, then TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Quic,
    Auto,
}

/// `ForwardAgent`: a flag, or which agent socket to forward (an absolute or
/// `~` path, already expanded, or `$VARIABLE` naming one, left for the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardAgent {
    No,
    Yes,
    Socket(String),
}

#[rustfmt::skip]
const FLAG: &[(&str, bool)] = &[("yes", true), ("true", true), ("no", false), ("false", false)];
#[rustfmt::skip]
const STRICT: &[(&str, StrictHostKeyChecking)] = &[
    ("yes", StrictHostKeyChecking::Yes), ("true", StrictHostKeyChecking::Yes),
    ("no", StrictHostKeyChecking::No), ("false", StrictHostKeyChecking::No),
    ("off", StrictHostKeyChecking::No), ("ask", StrictHostKeyChecking::Ask),
    ("accept-new", StrictHostKeyChecking::AcceptNew),
];
#[rustfmt::skip]
const TTY: &[(&str, RequestTty)] = &[
    ("yes", RequestTty::Yes), ("true", RequestTty::Yes), ("no", RequestTty::No),
    ("false", RequestTty::No), ("force", RequestTty::Force), ("auto", RequestTty::Auto),
];
/// PubkeyAuthentication: `unbound` and `host-bound` only choose which
/// signature ssh makes (sshq's binds nothing to the host key), so both
/// mean yes.
#[rustfmt::skip]
const PUBKEY: &[(&str, bool)] = &[
    ("yes", true), ("true", true), ("unbound", true), ("host-bound", true),
    ("no", false), ("false", false),
];
#[rustfmt::skip]
const TRANSPORTS: &[(&str, Transport)] =
    &[("tcp", Transport::Tcp), ("quic", Transport::Quic), ("auto", Transport::Auto)];

/// The options sshq understands. `None` (or an empty list) means "not set yet":
/// a later source may still supply it, and the caller applies defaults at the end.
/// Lists marked "accumulates" collect values from every applicable line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientOptions {
    /// `HostName`, raw; see [`ClientOptions::expanded_host_name`] for `%h`.
    pub host_name: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// `IdentityFile`, `~` expanded; accumulates, without duplicates.
    pub identity_files: Vec<PathBuf>,
    /// `CertificateFile`, `~` expanded; accumulates, without duplicates.
    pub certificate_files: Vec<PathBuf>,
    pub identities_only: Option<bool>,
    /// `BatchMode`: no question to the user at all (no password, no
    /// keyboard-interactive answer, no passphrase).
    pub batch_mode: Option<bool>,
    /// `PreferredAuthentications`, as written: the order of methods; names
    /// sshq does not speak are kept and never match, as in ssh.
    pub preferred_authentications: Option<String>,
    pub pubkey_authentication: Option<bool>,
    pub password_authentication: Option<bool>,
    /// `KbdInteractiveAuthentication` (also spelt ChallengeResponseAuthentication).
    pub kbd_interactive_authentication: Option<bool>,
    /// `NumberOfPasswordPrompts` (0 to INT_MAX, as ssh reads it).
    pub number_of_password_prompts: Option<u32>,
    /// `ClearAllForwardings`: drop every -L/-R/-D and their config
    /// equivalents (scp and sftp pass `yes` to the ssh they run).
    pub clear_all_forwardings: Option<bool>,
    pub strict_host_key_checking: Option<StrictHostKeyChecking>,
    /// `UserKnownHostsFile`, `~` expanded; `Some(empty)` is `none`.
    pub user_known_hosts_files: Option<Vec<PathBuf>>,
    /// `GlobalKnownHostsFile`, read but never written; `Some(empty)` is `none`.
    pub global_known_hosts_files: Option<Vec<PathBuf>>,
    pub log_level: Option<LogLevel>,
    /// `ConnectTimeout`; zero (also written `none`) means no timeout, as in OpenSSH.
    pub connect_timeout: Option<Duration>,
    /// `ServerAliveInterval`; zero disables keepalives.
    pub server_alive_interval: Option<Duration>,
    pub server_alive_count_max: Option<u32>,
    pub request_tty: Option<RequestTty>,
    /// `SendEnv` patterns; accumulates, and `-pattern` removes earlier entries.
    pub send_env: Vec<String>,
    /// `SetEnv` as (name, value); the first applicable line wins as a whole.
    pub set_env: Option<Vec<(String, String)>>,
    /// `ProxyJump`, raw (`none` included, meaning connect directly).
    pub proxy_jump: Option<String>,
    /// `ProxyCommand`, the shell command as written (`none`: connect directly).
    pub proxy_command: Option<String>,
    /// `LocalForward`s in `ssh -L` syntax (the two config arguments joined by `:`),
    /// so one parser serves both; accumulates.
    pub local_forwards: Vec<String>,
    /// `RemoteForward`s in `ssh -R` syntax; accumulates.
    pub remote_forwards: Vec<String>,
    /// `DynamicForward`s in `ssh -D` syntax; accumulates.
    pub dynamic_forwards: Vec<String>,
    pub forward_agent: Option<ForwardAgent>,
    /// `ExitOnForwardFailure`: a forward that cannot be set up ends sshq.
    pub exit_on_forward_failure: Option<bool>,
    /// `StreamLocalBindUnlink`: replace a stale socket file for -L.
    pub stream_local_bind_unlink: Option<bool>,
    /// `StreamLocalBindMask`: the umask -L socket files are made with.
    pub stream_local_bind_mask: Option<u32>,
    /// `IgnoreUnknown`: comma-separated keyword patterns.
    pub ignore_unknown: Option<String>,
    /// sshq's own `Transport` (tcp|quic|auto).
    pub transport: Option<Transport>,
    /// sshq's own `QuicPort`: the UDP port for QUIC when it differs from `Port`.
    pub quic_port: Option<u16>,
    /// `TCPKeepAlive` (default yes): SO_KEEPALIVE on TCP connections.
    pub tcp_keepalive: Option<bool>,
    /// `KexAlgorithms`, raw (may start with `+`, `-` or `^` as in OpenSSH).
    pub kex_algorithms: Option<String>,
    /// sshq's own `QuicFallbackTimeout`: how long `auto` waits for QUIC before TCP.
    /// Written like other times (`2s`, `1m`), plus `ms` for sub-second values.
    pub quic_fallback_timeout: Option<Duration>,
    /// sshq's own `CongestionControl` for QUIC (cubic, bbr, newreno).
    pub congestion_control: Option<sshq_quic::tls::CongestionControl>,
    /// sshq's own `OneStreamBaseline`: a lab baseline that carries every
    /// channel on one QUIC stream (`sshq_quic::one_stream`); the server
    /// must run it too.
    pub one_stream_baseline: Option<bool>,
    /// sshq's own `QuicIdleTimeout`: the QUIC connection ends after this long
    /// without a packet from the server; `Some(None)` for `none`.
    pub quic_idle_timeout: Option<Option<Duration>>,
    /// sshq's own `QuicKeepAlive`: how often an idle QUIC connection sends a
    /// PING; `Some(None)` for `none`.
    pub quic_keep_alive: Option<Option<Duration>>,
    /// sshq's own `Reattach`: ask for sessions the server holds across a
    /// lost connection (default yes).
    pub reattach: Option<bool>,
    /// `EscapeChar`; `Some(None)` for `none`.
    pub escape_char: Option<Option<u8>>,
}

/// Where a file came from: it decides where relative `Include` paths live
/// (`~/.ssh` or `/etc/ssh`), as in OpenSSH.
#[derive(Debug, Clone, Copy)]
enum Origin {
    User,
    System,
}

/// Reading state of one file: whether lines currently apply to the host.
struct Scope<'a> {
    host: &'a str,
    origin: Origin,
    depth: usize,
    active: bool,
    /// Set inside files included from a block that did not apply, so their own
    /// `Host`/`Match` lines cannot switch options back on.
    never_match: bool,
}

impl<'a> Scope<'a> {
    fn top(host: &'a str, origin: Origin) -> Self {
        Scope {
            host,
            origin,
            depth: 0,
            active: true,
            never_match: false,
        }
    }
}

/// The file name and line number of a line, for error messages.
struct At<'a>(&'a str, usize);

/// `-o` options, as OpenSSH names them in messages.
const CMDLINE: At<'static> = At("command-line", 0);

impl At<'_> {
    fn bad(&self, message: impl Into<String>) -> ConfigError {
        let (file, line, message) = (self.0.to_string(), self.1, message.into());
        ConfigError::BadLine {
            file,
            line,
            message,
        }
    }

    /// The one argument of a single-valued keyword.
    fn single<'v>(&self, kw: &str, args: &'v [String]) -> Res<&'v str> {
        match args {
            [one] => Ok(one),
            _ => Err(self.bad(format!("keyword {kw} extra arguments at end of line"))),
        }
    }

    /// Looks a word up in a table of accepted spellings, ignoring case.
    fn pick<T: Copy>(&self, v: &str, table: &[(&str, T)]) -> Res<T> {
        let found = table.iter().find(|(name, _)| name.eq_ignore_ascii_case(v));
        found
            .map(|(_, t)| *t)
            .ok_or_else(|| self.bad(format!("unsupported option \"{v}\".")))
    }

    /// An `int` keyword's value as ssh's `atoi_err` reads it: 0 to INT_MAX.
    fn int(&self, v: &str) -> Res<u32> {
        match v.parse::<i64>() {
            Ok(n) if n < 0 => Err(self.bad("integer value too small.")),
            Ok(n) if n > i64::from(i32::MAX) => Err(self.bad("integer value too large.")),
            Ok(n) => u32::try_from(n).map_err(|_| self.bad("integer value too large.")),
            Err(_) => Err(self.bad("integer value invalid.")),
        }
    }

    fn duration(&self, v: &str) -> Res<Duration> {
        parse_duration(v).ok_or_else(|| self.bad("invalid time value."))
    }

    fn port(&self, v: &str) -> Res<u16> {
        parse_port(v).ok_or_else(|| self.bad(format!("Bad port '{v}'.")))
    }
}

/// EscapeChar's value as ssh reads it: `none`, one character, or `^X` for
/// a control character.
pub fn parse_escape_char(v: &str) -> Option<Option<u8>> {
    match v.as_bytes() {
        _ if v.eq_ignore_ascii_case("none") => Some(None),
        [c] if c.is_ascii() => Some(Some(*c)),
        [b'^', c] if c.is_ascii() => Some(Some(c & 0x1f)),
        _ => None,
    }
}

/// Stores a value unless one was obtained before: OpenSSH's "first value wins".
fn first<T>(slot: &mut Option<T>, active: bool, value: T) {
    if active && slot.is_none() {
        *slot = Some(value);
    }
}

impl ClientOptions {
    /// QuicIdleTimeout and QuicKeepAlive, over the client's defaults.
    pub fn quic_liveness(&self) -> sshq_quic::tls::Liveness {
        let defaults = sshq_quic::tls::Liveness::CLIENT;
        sshq_quic::tls::Liveness {
            idle_timeout: self.quic_idle_timeout.unwrap_or(defaults.idle_timeout),
            keep_alive: self.quic_keep_alive.unwrap_or(defaults.keep_alive),
        }
    }

    /// Applies one `-o` option, `Option=value` or `Option value`. Call it for the
    /// `-o` options before reading files so they take precedence.
    pub fn apply_option_str(&mut self, option: &str) -> Result<(), ConfigError> {
        self.process_line(&CMDLINE, option, None)
    }

    /// Reads a configuration file as `-F path` does and applies the blocks that
    /// match `host` (the destination as typed on the command line). Every bad
    /// line is collected into one [`ConfigError::Terminating`].
    pub fn apply_file(&mut self, path: &Path, host: &str) -> Result<(), ConfigError> {
        self.read_file(path, &mut Scope::top(host, Origin::User), false)
    }

    /// Applies `text` as [`ClientOptions::apply_file`] applies a file's
    /// contents, naming it `name` in errors: the same line parser, from
    /// memory (for the fuzz targets, which must not write a file per
    /// input). An `Include` in `text` still reads the files it names.
    pub fn apply_str(&mut self, name: &str, text: &str, host: &str) -> Result<(), ConfigError> {
        self.apply_text(name, text, &mut Scope::top(host, Origin::User))
    }

    /// Reads the files `ssh` would: the `-F` file if given (`none` reads nothing),
    /// otherwise `~/.ssh/config` (refused if others may write it) then
    /// [`SYSTEM_CONFIG_PATH`], each only if present.
    pub fn load_files(
        &mut self,
        config_file: Option<&Path>,
        host: &str,
    ) -> Result<(), ConfigError> {
        match config_file {
            Some(p) if p == Path::new("none") => Ok(()),
            Some(p) => self.apply_file(p, host),
            None => {
                if let Some(user) = home_dir().map(|h| h.join(".ssh/config")) {
                    if user.exists() {
                        self.read_file(&user, &mut Scope::top(host, Origin::User), true)?;
                    }
                }
                let system = Path::new(SYSTEM_CONFIG_PATH);
                if system.exists() {
                    self.read_file(system, &mut Scope::top(host, Origin::System), false)?;
                }
                Ok(())
            }
        }
    }

    /// `HostName` with `%h` replaced by `host` and `%%` by `%` (OpenSSH's tokens
    /// for this keyword); `host` itself when no `HostName` was set.
    pub fn expanded_host_name(&self, host: &str) -> String {
        // A NUL cannot occur in either string, so it safely stands in for `%%`.
        let expand = |n: &String| n.replace("%%", "\0").replace("%h", host).replace('\0', "%");
        self.host_name
            .as_ref()
            .map_or_else(|| host.to_string(), expand)
    }

    fn read_file(&mut self, path: &Path, scope: &mut Scope<'_>, check_perm: bool) -> Res {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| open_error(&name, &e))?;
        if check_perm {
            check_owner(path, &name)?;
        }
        self.apply_text(&name, &String::from_utf8_lossy(&bytes), scope)
    }

    /// Applies a file's lines; every bad line is collected into one
    /// [`ConfigError::Terminating`] naming the file `name`.
    fn apply_text(&mut self, name: &str, text: &str, scope: &mut Scope<'_>) -> Res {
        let mut errors = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            match self.process_line(&At(name, n + 1), raw, Some(&mut *scope)) {
                Ok(()) => {}
                // An included file's problems were already summarised for that file.
                Err(e @ (ConfigError::Terminating { .. } | ConfigError::Open { .. })) => {
                    return Err(e)
                }
                Err(e @ ConfigError::Permissions { .. }) => return Err(e),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            let file = name.to_string();
            Err(ConfigError::Terminating { file, errors })
        }
    }

    fn process_line(&mut self, at: &At<'_>, raw: &str, scope: Option<&mut Scope<'_>>) -> Res {
        let Some((keyword, args)) = split_line(raw).map_err(|m| at.bad(m))? else {
            return Ok(());
        };
        let kw = keyword.to_ascii_lowercase();
        if args.is_empty() {
            return Err(at.bad(format!("no argument after keyword \"{kw}\"")));
        }
        let directive = ["Host", "Match", "Include"]
            .into_iter()
            .find(|d| d.eq_ignore_ascii_case(&kw));
        match (scope, directive) {
            (Some(scope), Some(_)) => self.directive(at, &kw, &args, scope),
            (None, Some(d)) => Err(at.bad(format!(
                "{d} directive not supported as a command-line option"
            ))),
            (scope, None) => self.option(at, &kw, &args, scope.is_none_or(|s| s.active)),
        }
    }

    fn option(&mut self, at: &At<'_>, kw: &str, args: &[String], on: bool) -> Res {
        let one = || at.single(kw, args);
        let unsupported = departs_from_default(UNSUPPORTED, kw, args);
        match kw {
            "hostname" => first(&mut self.host_name, on, one()?.to_string()),
            "user" => first(&mut self.user, on, one()?.to_string()),
            "port" => first(&mut self.port, on, at.port(one()?)?),
            "quicport" => first(&mut self.quic_port, on, at.port(one()?)?),
            "identitiesonly" => first(&mut self.identities_only, on, at.pick(one()?, FLAG)?),
            "batchmode" => first(&mut self.batch_mode, on, at.pick(one()?, FLAG)?),
            "preferredauthentications" => {
                let v = one()?.to_string();
                first(&mut self.preferred_authentications, on, v);
            }
            "pubkeyauthentication" | "dsaauthentication" => {
                first(
                    &mut self.pubkey_authentication,
                    on,
                    at.pick(one()?, PUBKEY)?,
                );
            }
            "passwordauthentication" => {
                first(
                    &mut self.password_authentication,
                    on,
                    at.pick(one()?, FLAG)?,
                );
            }
            // ssh's aliases of one option.
            "kbdinteractiveauthentication"
            | "challengeresponseauthentication"
            | "skeyauthentication"
            | "tisauthentication" => {
                let v = at.pick(one()?, FLAG)?;
                first(&mut self.kbd_interactive_authentication, on, v);
            }
            "numberofpasswordprompts" => {
                let v = at.int(one()?)?;
                first(&mut self.number_of_password_prompts, on, v);
            }
            "tcpkeepalive" => first(&mut self.tcp_keepalive, on, at.pick(one()?, FLAG)?),
            "clearallforwardings" => {
                let v = at.pick(one()?, FLAG)?;
                first(&mut self.clear_all_forwardings, on, v)
            }
            "exitonforwardfailure" => {
                let v = at.pick(one()?, FLAG)?;
                first(&mut self.exit_on_forward_failure, on, v);
            }
            "streamlocalbindunlink" => {
                let v = at.pick(one()?, FLAG)?;
                first(&mut self.stream_local_bind_unlink, on, v);
            }
            "streamlocalbindmask" => {
                let v = parse_bind_mask(one()?)
                    .ok_or_else(|| at.bad("Invalid StreamLocalBindMask."))?;
                first(&mut self.stream_local_bind_mask, on, v);
            }
            "requesttty" => first(&mut self.request_tty, on, at.pick(one()?, TTY)?),
            "transport" => first(&mut self.transport, on, at.pick(one()?, TRANSPORTS)?),
            // Whichever of ProxyJump and ProxyCommand comes first wins, as in ssh.
            "proxyjump" => {
                let v = one()?.to_string();
                first(&mut self.proxy_jump, on && self.proxy_command.is_none(), v)
            }
            "proxycommand" => {
                let v = one()?.to_string();
                first(&mut self.proxy_command, on && self.proxy_jump.is_none(), v)
            }
            "ignoreunknown" => first(&mut self.ignore_unknown, on, one()?.to_string()),
            "kexalgorithms" => {
                // One list for both transports (sshq_core::kex); a bad name
                // fails here, as in ssh, not at the first connection.
                let v = one()?;
                sshq_core::kex::validate(v).map_err(|e| at.bad(e.to_string()))?;
                first(&mut self.kex_algorithms, on, v.to_string());
            }
            "congestioncontrol" => {
                let v = at.pick(one()?, sshq_quic::tls::CongestionControl::NAMES)?;
                first(&mut self.congestion_control, on, v);
            }
            "onestreambaseline" => {
                first(&mut self.one_stream_baseline, on, at.pick(one()?, FLAG)?);
            }
            "reattach" => first(&mut self.reattach, on, at.pick(one()?, FLAG)?),
            "escapechar" => {
                let v = one()?;
                let c = parse_escape_char(v)
                    .ok_or_else(|| at.bad(format!("Bad escape character '{v}'.")))?;
                first(&mut self.escape_char, on, c);
            }
            "quicidletimeout" => {
                let v =
                    parse_duration_or_none(one()?).ok_or_else(|| at.bad("invalid time value."))?;
                first(&mut self.quic_idle_timeout, on, v);
            }
            "quickeepalive" => {
                let v =
                    parse_duration_or_none(one()?).ok_or_else(|| at.bad("invalid time value."))?;
                first(&mut self.quic_keep_alive, on, v);
            }
            "stricthostkeychecking" => {
                let v = at.pick(one()?, STRICT)?;
                first(&mut self.strict_host_key_checking, on, v);
            }
            "serveraliveinterval" => {
                let v = at.duration(one()?)?;
                first(&mut self.server_alive_interval, on, v);
            }
            "quicfallbacktimeout" => {
                let v = at.duration(one()?)?;
                first(&mut self.quic_fallback_timeout, on, v);
            }
            "connecttimeout" => {
                let v = one()?;
                let v = if v.eq_ignore_ascii_case("none") {
                    Duration::ZERO
                } else {
                    at.duration(v)?
                };
                first(&mut self.connect_timeout, on, v);
            }
            "loglevel" => {
                let v = one()?;
                let level = LogLevel::parse(v)
                    .ok_or_else(|| at.bad(format!("unsupported log level '{v}'")))?;
                first(&mut self.log_level, on, level);
            }
            "serveralivecountmax" => {
                let v: i64 = one()?
                    .parse()
                    .map_err(|_| at.bad("integer value invalid."))?;
                let v = u32::try_from(v).map_err(|_| at.bad("integer value too small."))?;
                first(&mut self.server_alive_count_max, on, v);
            }
            "identityfile" => {
                let path = expand_tilde(one()?);
                if on && !self.identity_files.contains(&path) {
                    self.identity_files.push(path);
                }
            }
            "certificatefile" => {
                let value = one()?;
                let path = expand_tilde(value);
                if on && value != "none" && !self.certificate_files.contains(&path) {
                    self.certificate_files.push(path);
                }
            }
            "userknownhostsfile" => {
                let files = match args {
                    [one] if one == "none" => Vec::new(),
                    _ => args.iter().map(|a| expand_tilde(a)).collect(),
                };
                first(&mut self.user_known_hosts_files, on, files);
            }
            "globalknownhostsfile" => {
                let files = match args {
                    [one] if one == "none" => Vec::new(),
                    _ => args.iter().map(|a| expand_tilde(a)).collect(),
                };
                first(&mut self.global_known_hosts_files, on, files);
            }
            "sendenv" => {
                if args
                    .iter()
                    .any(|a| a.is_empty() || a == "-" || a.contains('='))
                {
                    return Err(at.bad("Invalid environment name."));
                }
                for arg in args.iter().filter(|_| on) {
                    match arg.strip_prefix('-') {
                        Some(pattern) => self.send_env.retain(|e| !matches(pattern, e)),
                        None if !self.send_env.contains(arg) => self.send_env.push(arg.clone()),
                        None => {}
                    }
                }
            }
            "setenv" => {
                let mut list: Vec<(String, String)> = Vec::new();
                for arg in args {
                    let (name, value) = arg
                        .split_once('=')
                        .ok_or_else(|| at.bad("Invalid SetEnv."))?;
                    if !list.iter().any(|(n, _)| n == name) {
                        list.push((name.to_string(), value.to_string()));
                    }
                }
                first(&mut self.set_env, on, list);
            }
            "localforward" | "remoteforward" | "dynamicforward" => {
                let spec = match args {
                    [listen, target] if kw != "dynamicforward" => format!("{listen}:{target}"),
                    [_] if kw == "localforward" => return Err(at.bad("Missing target argument.")),
                    _ => one()?.to_string(),
                };
                let list = match kw {
                    "localforward" => &mut self.local_forwards,
                    "remoteforward" => &mut self.remote_forwards,
                    _ => &mut self.dynamic_forwards,
                };
                if on {
                    list.push(spec);
                }
            }
            "forwardagent" => {
                let v = one()?;
                let agent = match at.pick(v, FLAG) {
                    Ok(true) => ForwardAgent::Yes,
                    Ok(false) => ForwardAgent::No,
                    Err(_) if v.starts_with('$') => ForwardAgent::Socket(v.to_string()),
                    Err(_) if v.starts_with('/') || v.starts_with('~') => {
                        ForwardAgent::Socket(expand_tilde(v).to_string_lossy().into_owned())
                    }
                    Err(_) => {
                        let msg =
                            format!("ForwardAgent \"{v}\": expected yes, no, a path or $VARIABLE");
                        return Err(at.bad(msg));
                    }
                };
                first(&mut self.forward_agent, on, agent);
            }
            k if IGNORED.contains(&k) || self.ignores(k) => {}
            _ if unsupported == Some(true) && on => {
                let message = format!(
                    "keyword {kw} is not supported by sshq (list it in IgnoreUnknown to skip it)"
                );
                return Err(ConfigError::Unsupported {
                    file: at.0.to_string(),
                    line: at.1,
                    message,
                });
            }
            _ if unsupported.is_some() => {}
            _ => {
                let (file, line, keyword) = (at.0.to_string(), at.1, kw.to_string());
                return Err(ConfigError::UnknownKeyword {
                    file,
                    line,
                    keyword,
                });
            }
        }
        Ok(())
    }

    /// Whether `IgnoreUnknown` (as seen so far) covers a keyword.
    fn ignores(&self, kw: &str) -> bool {
        self.ignore_unknown
            .as_deref()
            .is_some_and(|list| matches_list(&list.to_ascii_lowercase(), kw))
    }

    fn directive(&mut self, at: &At<'_>, kw: &str, args: &[String], scope: &mut Scope<'_>) -> Res {
        let hit = match kw {
            // Patterns are whitespace-separated and compared with the host exactly as
            // typed (OpenSSH does not fold case here); a negated hit vetoes the block.
            "host" => {
                let negated =
                    |p: &String| p.strip_prefix('!').is_some_and(|p| matches(p, scope.host));
                !args.iter().any(negated)
                    && args
                        .iter()
                        .any(|p| !p.starts_with('!') && matches(p, scope.host))
            }
            "match" => self.match_line(at, args, scope.host)?,
            _ => return self.include(at, args, scope),
        };
        scope.active = hit && !scope.never_match;
        Ok(())
    }

    /// Evaluates a `Match` line: every criterion must hold (`!` negates one).
    fn match_line(&self, at: &At<'_>, args: &[String], host: &str) -> Res<bool> {
        let lone = |a: &str| {
            ["all", "canonical", "final"]
                .iter()
                .any(|w| w.eq_ignore_ascii_case(a))
        };
        let combined = args.iter().any(|a| !lone(a.trim_start_matches('!')));
        let mut result = true;
        let mut rest = args.iter();
        while let Some(raw) = rest.next() {
            let negate = raw.starts_with('!');
            let attr = raw.trim_start_matches('!').to_ascii_lowercase();
            let hit = match attr.as_str() {
                "all" if combined => {
                    return Err(at.bad("'all' cannot be combined with other Match attributes"))
                }
                "all" => true,
                // sshq never canonicalises host names, and its single pass is the final one.
                "canonical" => false,
                "final" => true,
                "host" | "originalhost" | "user" | "localuser" => {
                    let missing = || at.bad(format!("Missing Match criteria for {attr}"));
                    let list = rest.next().ok_or_else(missing)?;
                    match attr.as_str() {
                        "host" => lower_match(list, &self.expanded_host_name(host)),
                        "originalhost" => lower_match(list, host),
                        "user" => matches_list(list, &self.user.clone().unwrap_or_else(local_user)),
                        _ => matches_list(list, &local_user()),
                    }
                }
                _ => {
                    let message = format!(
                        "unsupported Match criterion \"{attr}\" (sshq supports all, canonical, final, \
                         host, originalhost, user, localuser)"
                    );
                    return Err(ConfigError::Unsupported {
                        file: at.0.to_string(),
                        line: at.1,
                        message,
                    });
                }
            };
            result &= hit != negate;
        }
        Ok(result)
    }

    /// `Include`: glob each argument and read the files, each with its own copy of
    /// the current state, so a `Host` line inside one does not leak out of it.
    fn include(&mut self, at: &At<'_>, args: &[String], scope: &mut Scope<'_>) -> Res {
        if scope.depth >= MAX_INCLUDE_DEPTH {
            return Err(at.bad("Too many recursive configuration includes"));
        }
        let base = match scope.origin {
            Origin::User => home_dir().unwrap_or_default().join(".ssh"),
            Origin::System => PathBuf::from("/etc/ssh"),
        };
        let outer = scope.active;
        for arg in args {
            // `join` keeps absolute paths as they are.
            let path = if arg.starts_with('~') {
                expand_tilde(arg)
            } else {
                base.join(arg)
            };
            for file in glob_paths(&path) {
                let mut inner = Scope {
                    depth: scope.depth + 1,
                    never_match: scope.never_match || !outer,
                    ..*scope
                };
                self.read_file(&file, &mut inner, true)?;
            }
        }
        Ok(())
    }
}

/// Case-insensitive pattern-list match, as OpenSSH uses for host names.
fn lower_match(list: &str, name: &str) -> bool {
    matches_list(&list.to_ascii_lowercase(), &name.to_ascii_lowercase())
}

fn open_error(name: &str, e: &std::io::Error) -> ConfigError {
    ConfigError::Open {
        file: name.to_string(),
        reason: io_reason(e),
    }
}

/// OpenSSH refuses user files that someone other than the user (or root) owns or
/// that group/others may write, since they could redirect connections.
fn check_owner(path: &Path, name: &str) -> Res {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(path).map_err(|e| open_error(name, &e))?;
    let me = nix::unistd::getuid().as_raw();
    if (md.uid() != 0 && md.uid() != me) || md.mode() & 0o022 != 0 {
        return Err(ConfigError::Permissions {
            file: name.to_string(),
        });
    }
    Ok(())
}

/// The user's home: `$HOME`, else the password database.
pub fn home_dir() -> Option<PathBuf> {
    let from_passwd = || {
        nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.dir)
    };
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(from_passwd)
}

/// The name of the user running sshq, for `Match localuser` and as the default remote user.
pub fn local_user() -> String {
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten();
    user.map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_default()
}

/// Expands a leading `~` (home) or `~user` (that user's home); other text is kept.
pub fn expand_tilde(s: &str) -> PathBuf {
    let Some(rest) = s.strip_prefix('~') else {
        return PathBuf::from(s);
    };
    let (user, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let home = match user {
        "" => home_dir(),
        _ => nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .map(|u| u.dir),
    };
    home.map_or_else(
        || PathBuf::from(s),
        |h| if tail.is_empty() { h } else { h.join(tail) },
    )
}

#[cfg(test)]
mod tests;
