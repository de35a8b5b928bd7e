//! The `StrictHostKeyChecking` policy: what to do with the key a server sent.
//!
//! This reproduces OpenSSH 9.2's `check_host_key()` (sshconnect.c), messages
//! included, byte for byte: users and scripts grep for these texts, and the
//! whole point of `sshq` is to behave like `ssh`. Like OpenSSH's log on stderr,
//! every message line ends with `\r\n`.
//!
//! Deliberate differences from `ssh`, both stricter:
//! - a revoked key is refused in every mode (`ssh` with
//!   `StrictHostKeyChecking=no` continues with authentication restricted);
//! - a known_hosts file that exists but cannot be read is an error (`ssh`
//!   ignores it, which could hide a changed key).
//!
//! With `StrictHostKeyChecking=no` and a *changed* key, OpenSSH connects but
//! turns off password and keyboard-interactive authentication and all
//! forwarding, since a man in the middle could abuse them. `sshq` does the
//! same: [`check_host_key`] returns [`HostKeyVerdict::Untrusted`], the
//! caller prints OpenSSH's notices with [`turn_off_untrusted`] (which also
//! applies ExitOnForwardFailure) and must then leave those features off.
//!
//! Host certificates (`@cert-authority` lines) are checked by
//! [`crate::host_certificate`], which falls back to [`check_host_key`] with
//! the certified plain key when the certificate is not trusted, as `ssh` does.
//!
//! Not implemented: CheckHostIP (off by default since OpenSSH 8.5),
//! VisualHostKey, VerifyHostKeyDNS, KnownHostsCommand, MD5 fingerprints.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use ssh_key::PublicKey;

use crate::known_hosts::{
    append_entry_name, fingerprint_sha256, hostfile_name, key_type_name, KnownHosts,
    KnownHostsError, Location, Lookup, DEFAULT_SSH_PORT,
};

/// OpenSSH's `StrictHostKeyChecking` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StrictHostKeyChecking {
    /// `yes`/`true`: never add keys; refuse unknown and changed hosts.
    Yes,
    /// `no`/`off`/`false`: add unknown keys silently-ish; changed keys connect untrusted.
    No,
    /// `accept-new`: add unknown keys, refuse changed ones.
    AcceptNew,
    /// `ask` (the default): ask the user about unknown keys, refuse changed ones.
    #[default]
    Ask,
}

impl FromStr for StrictHostKeyChecking {
    type Err = HostKeyError;

    /// Accepts the spellings of OpenSSH's readconf.c, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "yes" | "true" => Ok(Self::Yes),
            "no" | "off" | "false" => Ok(Self::No),
            "accept-new" => Ok(Self::AcceptNew),
            "ask" => Ok(Self::Ask),
            _ => Err(HostKeyError::InvalidPolicy {
                value: s.to_string(),
            }),
        }
    }
}

/// How much of the transcript to write, from OpenSSH's `LogLevel`.
/// Ordered: each level includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Verbosity {
    /// `-q` / `LogLevel QUIET`: nothing at all, not even the final failure line.
    Quiet,
    /// `LogLevel FATAL`: only "Host key verification failed.".
    Fatal,
    /// `LogLevel ERROR`: also the warning blocks.
    Error,
    /// `LogLevel INFO` and above (the default): also "Warning: Permanently added ...".
    #[default]
    Info,
}

impl Verbosity {
    /// Maps an OpenSSH `LogLevel` value (QUIET, FATAL, ERROR, INFO, VERBOSE,
    /// DEBUG, DEBUG1..3; case-insensitive) to what this module prints.
    pub fn from_log_level(value: &str) -> Option<Self> {
        match value.to_ascii_uppercase().as_str() {
            "QUIET" => Some(Self::Quiet),
            "FATAL" => Some(Self::Fatal),
            "ERROR" => Some(Self::Error),
            "INFO" | "VERBOSE" | "DEBUG" | "DEBUG1" | "DEBUG2" | "DEBUG3" => Some(Self::Info),
            _ => None,
        }
    }
}

/// Everything [`check_host_key`] needs to know besides the key itself.
#[derive(Debug, Clone)]
pub struct HostKeyCheck<'a> {
    /// The policy.
    pub policy: StrictHostKeyChecking,
    /// `UserKnownHostsFile`: read in order; new keys go to the first one.
    /// Empty means keys can never be added (as OpenSSH's "none").
    pub user_known_hosts: &'a [PathBuf],
    /// `GlobalKnownHostsFile`: read after the user files, never written.
    pub global_known_hosts: &'a [PathBuf],
    /// Host name as typed (or HostName), before resolution.
    pub host: &'a str,
    /// Server port.
    pub port: u16,
    /// `HostKeyAlias`: when set, keys are looked up and stored under it instead.
    pub host_key_alias: Option<&'a str>,
    /// Numeric address connected to, shown in the question; `None` with a proxy.
    pub ip: Option<IpAddr>,
    /// `BatchMode yes`: never ask.
    pub batch_mode: bool,
    /// `HashKnownHosts yes`: store new names hashed.
    pub hash_known_hosts: bool,
    /// From `LogLevel` / `-q`.
    pub verbosity: Verbosity,
}

impl<'a> HostKeyCheck<'a> {
    /// OpenSSH's defaults for everything but the host, port and user files.
    pub fn new(host: &'a str, port: u16, user_known_hosts: &'a [PathBuf]) -> Self {
        HostKeyCheck {
            policy: StrictHostKeyChecking::default(),
            user_known_hosts,
            global_known_hosts: &[],
            host,
            port,
            host_key_alias: None,
            ip: None,
            batch_mode: false,
            hash_known_hosts: false,
            verbosity: Verbosity::default(),
        }
    }
}

/// Why the connection may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyVerdict {
    /// The key is recorded for this host.
    Known,
    /// The user confirmed the unknown key at the prompt (it was also recorded,
    /// unless writing failed; a message says so).
    Confirmed,
    /// The key was unknown and `accept-new`/`no` accepted it without asking.
    AddedNew,
    /// `StrictHostKeyChecking=no` and the key has **changed**: go on, but turn
    /// off password and keyboard-interactive authentication, agent, X11 and
    /// port forwarding and tunnels, printing [`UntrustedFeature::notice`] for
    /// each one that was on, exactly as `ssh` does.
    Untrusted,
}

/// Features `ssh` turns off when it connects to a host whose key is not trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UntrustedFeature {
    /// `PasswordAuthentication`.
    Password,
    /// `KbdInteractiveAuthentication`.
    KeyboardInteractive,
    /// `ForwardAgent`.
    Agent,
    /// `ForwardX11`.
    X11,
    /// `-L`/`-R` forwards.
    PortForwarding,
    /// `Tunnel`.
    Tunnel,
}

impl UntrustedFeature {
    /// OpenSSH's message (an error-level log line) when the feature is turned off.
    pub fn notice(self) -> &'static str {
        match self {
            Self::Password => {
                "Password authentication is disabled to avoid man-in-the-middle attacks."
            }
            Self::KeyboardInteractive => {
                "Keyboard-interactive authentication is disabled to avoid man-in-the-middle attacks."
            }
            Self::Agent => "Agent forwarding is disabled to avoid man-in-the-middle attacks.",
            Self::X11 => "X11 forwarding is disabled to avoid man-in-the-middle attacks.",
            Self::PortForwarding => "Port forwarding is disabled to avoid man-in-the-middle attacks.",
            Self::Tunnel => "Tunnel forwarding is disabled to avoid man-in-the-middle attacks.",
        }
    }
}

impl UntrustedFeature {
    /// Every feature, in the order OpenSSH's `check_host_key()` turns them
    /// off (and prints their notices).
    pub const ALL: [UntrustedFeature; 6] = [
        Self::Password,
        Self::KeyboardInteractive,
        Self::Agent,
        Self::X11,
        Self::PortForwarding,
        Self::Tunnel,
    ];
}

/// OpenSSH's fatal message when ExitOnForwardFailure is set and an untrusted
/// host key turned something off.
pub const FORWARDING_CANCELLED: &str = "Error: forwarding disabled due to host key check failure";

/// What follows a [`HostKeyVerdict::Untrusted`] verdict, as OpenSSH's
/// `continue_unsafe` (sshconnect.c): for each feature of `enabled`, in
/// OpenSSH's order, its notice ("... is disabled to avoid man-in-the-middle
/// attacks."); the caller must then really leave those features off. With
/// `exit_on_forward_failure`, turning anything off ends the connection with
/// OpenSSH's fatal line instead ([`HostKeyError::ForwardingCancelled`]),
/// since the user asked for forwarding that cannot be given.
pub fn turn_off_untrusted(
    enabled: &[UntrustedFeature],
    exit_on_forward_failure: bool,
    verbosity: Verbosity,
    out: &mut dyn Write,
) -> Result<(), HostKeyError> {
    let mut log = Log {
        out,
        level: verbosity,
    };
    let mut cancelled = false;
    for feature in UntrustedFeature::ALL {
        if enabled.contains(&feature) {
            log.error(feature.notice());
            cancelled = true;
        }
    }
    if exit_on_forward_failure && cancelled {
        log.fatal(FORWARDING_CANCELLED);
        return Err(HostKeyError::ForwardingCancelled);
    }
    Ok(())
}

/// The key the server sent, as the messages and errors describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKey {
    /// Hostfile name: `host`, `[host]:port` or the HostKeyAlias, lowercased.
    pub host: String,
    /// Type as OpenSSH prints it: "ED25519", "ECDSA", "RSA"...
    pub key_type: &'static str,
    /// `SHA256:...`.
    pub fingerprint: String,
}

impl fmt::Display for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} host key {} of {}",
            self.key_type, self.fingerprint, self.host
        )
    }
}

/// Errors of host key checking. For every variant but [`Self::KnownHosts`] and
/// [`Self::InvalidPolicy`], OpenSSH's full transcript (ending with "Host key
/// verification failed.") has already been written to the message sink, so
/// the caller should just exit with status 255; see [`Self::already_reported`].
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    /// Unknown host with `StrictHostKeyChecking=yes`.
    #[error(
        "the {0} is not known and StrictHostKeyChecking is yes; check the fingerprint and \
         add the key to your known_hosts file, or connect once with \
         StrictHostKeyChecking=accept-new or ask"
    )]
    UnknownHost(ServerKey),
    /// Unknown host that could not be added: no `UserKnownHostsFile`.
    #[error(
        "the {0} is not known and there is no UserKnownHostsFile to record it in; \
         set UserKnownHostsFile or add the key to a known_hosts file"
    )]
    NoWritableFile(ServerKey),
    /// Unknown host, `ask`, and the user said no (or BatchMode, or no terminal).
    #[error(
        "the {server} is not known and was not accepted{}; check the fingerprint and \
         answer yes, or add the key to your known_hosts file",
        if *batch_mode { " (BatchMode is on, so nobody was asked)" } else { "" }
    )]
    NotConfirmed {
        /// The unknown key.
        server: ServerKey,
        /// Whether BatchMode prevented the question.
        batch_mode: bool,
    },
    /// The host is known with another key: possible man in the middle.
    #[error(
        "the {server} does not match the {offending_type} key recorded in {offending} \
         (possible man-in-the-middle attack); if the change is expected, remove the old \
         key with ssh-keygen -f \"{}\" -R \"{}\"",
        offending.path.display(),
        server.host
    )]
    Changed {
        /// The key the server sent.
        server: ServerKey,
        /// The known_hosts line with the other key (the last one, as OpenSSH).
        offending: Location,
        /// Type of the recorded key.
        offending_type: &'static str,
    },
    /// The server's key is marked `@revoked`.
    #[error(
        "the {server} is marked as revoked in {revoked}: it may be stolen and used to \
         impersonate the host; contact its administrator"
    )]
    Revoked {
        /// The key the server sent.
        server: ServerKey,
        /// The `@revoked` line.
        revoked: Location,
    },
    /// `StrictHostKeyChecking=no` let a changed key through, but features the
    /// user asked for had to be turned off and `ExitOnForwardFailure` is set
    /// (see [`turn_off_untrusted`]).
    #[error(
        "{FORWARDING_CANCELLED}: the host key has changed, so forwarding was turned off, \
         and ExitOnForwardFailure is set"
    )]
    ForwardingCancelled,
    /// A known_hosts file could not be read. Nothing was written to the sink.
    #[error("host key verification failed: {0}")]
    KnownHosts(#[from] KnownHostsError),
    /// A `StrictHostKeyChecking` value OpenSSH does not accept.
    #[error(
        "unsupported StrictHostKeyChecking value \"{value}\": \
         expected yes, no, off, ask or accept-new (or true/false)"
    )]
    InvalidPolicy {
        /// The rejected value.
        value: String,
    },
}

impl HostKeyError {
    /// Whether the user has already been told, through the message sink
    /// (unless quiet), everything OpenSSH would print for this failure.
    pub fn already_reported(&self) -> bool {
        !matches!(self, Self::KnownHosts(_) | Self::InvalidPolicy { .. })
    }
}

/// Asks the user a question and reads one line of answer.
pub trait HostKeyPrompt {
    /// Shows `prompt` and returns the line typed, without its newline;
    /// `Ok(None)` when nobody can answer (no terminal, end of file).
    fn ask(&mut self, prompt: &str) -> io::Result<Option<String>>;
}

/// Asks on the controlling terminal, as OpenSSH's `read_passphrase(RP_ECHO)`:
/// never on stdin, which may be a pipe carrying data for the remote command.
#[derive(Debug, Clone)]
pub struct TtyPrompt {
    path: PathBuf,
}

impl Default for TtyPrompt {
    fn default() -> Self {
        TtyPrompt {
            path: PathBuf::from("/dev/tty"),
        }
    }
}

impl TtyPrompt {
    /// Asks on `/dev/tty`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks on another terminal device (tests use a pseudo-terminal).
    pub fn with_device(path: impl Into<PathBuf>) -> Self {
        TtyPrompt { path: path.into() }
    }
}

/// Longest answer kept; OpenSSH reads into a 1024-byte buffer.
const MAX_ANSWER: usize = 1024;

impl HostKeyPrompt for TtyPrompt {
    fn ask(&mut self, prompt: &str) -> io::Result<Option<String>> {
        let mut tty = match OpenOptions::new().read(true).write(true).open(&self.path) {
            Ok(tty) => tty,
            // No controlling terminal: OpenSSH then treats the answer as "no".
            Err(e) => {
                tracing::debug!("read_passphrase: can't open {}: {e}", self.path.display());
                return Ok(None);
            }
        };
        // "\r" first so the question starts at the left margin, then drop
        // anything typed ahead so it cannot answer a question not yet shown.
        tty.write_all(b"\r")?;
        let _ = nix::sys::termios::tcflush(&tty, nix::sys::termios::FlushArg::TCIFLUSH);
        tty.write_all(prompt.as_bytes())?;
        tty.flush()?;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match tty.read(&mut byte) {
                Ok(0) if line.is_empty() => return Ok(None),
                Ok(0) => break,
                Ok(_) if byte == *b"\n" => break,
                Ok(_) => {
                    if line.len() < MAX_ANSWER {
                        line.extend_from_slice(&byte);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Some(String::from_utf8_lossy(&line).into_owned()))
    }
}

/// Checks `key`, the host key the server sent, against the known_hosts files
/// and the policy, talking to the user through `prompt` and `out` (stderr in
/// `sshq`) exactly as OpenSSH 9.2 does. `Ok` means the connection may go on;
/// see [`HostKeyVerdict`] for the one case where it may only go on restricted.
pub fn check_host_key(
    check: &HostKeyCheck<'_>,
    key: &PublicKey,
    prompt: &mut dyn HostKeyPrompt,
    out: &mut dyn Write,
) -> Result<HostKeyVerdict, HostKeyError> {
    let user = check.user_known_hosts.iter();
    let files: Vec<&PathBuf> = user.chain(check.global_known_hosts).collect();
    let known = KnownHosts::read_files(&files)?;
    let (host, status) = match check.host_key_alias {
        Some(alias) => (alias.to_ascii_lowercase(), known.lookup_name(alias, key)),
        None => (
            hostfile_name(check.host, check.port),
            known.lookup(check.host, check.port, key),
        ),
    };
    let mut log = Log {
        out,
        level: check.verbosity,
    };
    let key_type = key_type_name(key);
    let server = |host: String| ServerKey {
        host,
        key_type,
        fingerprint: fingerprint_sha256(key),
    };
    let strict = check.policy != StrictHostKeyChecking::No;

    match status {
        Lookup::Found(location) => {
            tracing::debug!("Host '{host}' is known and matches the {key_type} host key.");
            tracing::debug!("Found key in {location}");
            Ok(HostKeyVerdict::Known)
        }
        Lookup::Revoked(revoked) => {
            warn_revoked(&mut log, key_type, &host, strict);
            let server = server(host);
            Err(HostKeyError::Revoked { server, revoked })
        }
        Lookup::Changed {
            location,
            key_type: offending_type,
        } => {
            let server = server(host);
            warn_changed(&mut log, check, &server, &location, offending_type);
            if !strict {
                return Ok(HostKeyVerdict::Untrusted);
            }
            log.error(&format!(
                "Host key for {} has changed and you have requested strict checking.",
                trunc(&server.host, 200)
            ));
            log.fatal(VERIFICATION_FAILED);
            let offending = location;
            Err(HostKeyError::Changed {
                server,
                offending,
                offending_type,
            })
        }
        Lookup::NotFound => {
            // Without a user file the key could not be recorded: ssh fails
            // ("readonly") whatever the policy.
            let Some(user_file) = check.user_known_hosts.first() else {
                log.fatal(VERIFICATION_FAILED);
                return Err(HostKeyError::NoWritableFile(server(host)));
            };
            let verdict = match check.policy {
                StrictHostKeyChecking::Yes => {
                    log.error(&format!(
                        "No {key_type} host key is known for {} and you have requested strict checking.",
                        trunc(&host, 200)
                    ));
                    log.fatal(VERIFICATION_FAILED);
                    return Err(HostKeyError::UnknownHost(server(host)));
                }
                StrictHostKeyChecking::Ask => {
                    let server = server(host.clone());
                    let question = new_host_question(&known, check, &server, key);
                    if check.batch_mode || !confirm(prompt, &question, &server.fingerprint) {
                        log.fatal(VERIFICATION_FAILED);
                        let batch_mode = check.batch_mode;
                        return Err(HostKeyError::NotConfirmed { server, batch_mode });
                    }
                    HostKeyVerdict::Confirmed
                }
                StrictHostKeyChecking::AcceptNew | StrictHostKeyChecking::No => {
                    HostKeyVerdict::AddedNew
                }
            };
            match append_entry_name(user_file, &host, key, check.hash_known_hosts) {
                Ok(()) => log.info(&format!(
                    "Warning: Permanently added '{}' ({key_type}) to the list of known hosts.",
                    trunc(&host, 200)
                )),
                // As ssh: failing to remember the key does not stop the connection.
                Err(e) => {
                    tracing::debug!("{e}");
                    log.info(&format!(
                        "Failed to add the host to the list of known hosts ({}).",
                        trunc(&user_file.display().to_string(), 500)
                    ));
                }
            }
            Ok(verdict)
        }
    }
}

/// OpenSSH's HOST_REVOKED case of `check_host_key()`, ending with the
/// final failure line: `sshq` refuses a revoked key in every mode.
pub(crate) fn warn_revoked(log: &mut Log<'_>, key_type: &str, host: &str, strict: bool) {
    log.error(AT_LINE);
    log.error("@       WARNING: REVOKED HOST KEY DETECTED!               @");
    log.error(AT_LINE);
    log.error(&format!(
        "The {key_type} host key for {host} is marked as revoked."
    ));
    log.error("This could mean that a stolen key is being used to");
    log.error("impersonate this host.");
    if strict {
        log.error(&format!(
            "{key_type} host key for {} was revoked and you have requested strict checking.",
            trunc(host, 200)
        ));
    }
    log.fatal(VERIFICATION_FAILED);
}

/// OpenSSH's `warn_changed_key()` and the lines after it that say which line
/// to remove; shared by the refusal and by `StrictHostKeyChecking=no`.
fn warn_changed(
    log: &mut Log<'_>,
    check: &HostKeyCheck<'_>,
    server: &ServerKey,
    offending: &Location,
    offending_type: &str,
) {
    log.error(AT_LINE);
    log.error("@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @");
    log.error(AT_LINE);
    log.error("IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!");
    log.error("Someone could be eavesdropping on you right now (man-in-the-middle attack)!");
    log.error("It is also possible that a host key has just been changed.");
    log.error(&format!(
        "The fingerprint for the {} key sent by the remote host is\n{}.",
        server.key_type, server.fingerprint
    ));
    log.error("Please contact your system administrator.");
    // printf("%s", NULL) prints "(null)" in glibc: mirrored for UserKnownHostsFile none.
    let add_to = check.user_known_hosts.first();
    let add_to = add_to.map_or_else(|| "(null)".into(), |p| p.display().to_string());
    log.error(&format!(
        "Add correct host key in {} to get rid of this message.",
        trunc(&add_to, 100)
    ));
    log.error(&format!("Offending {offending_type} key in {offending}"));
    log.error("  remove with:");
    let file = offending.path.display();
    log.error(&format!(
        "  ssh-keygen -f \"{file}\" -R \"{}\"",
        server.host
    ));
}

/// The question asked about an unknown key (`StrictHostKeyChecking=ask`).
fn new_host_question(
    known: &KnownHosts,
    check: &HostKeyCheck<'_>,
    server: &ServerKey,
    key: &PublicKey,
) -> String {
    let ip = match check.ip {
        Some(ip) => hostfile_name(&ip.to_string(), check.port),
        None => "<no hostip for proxy command>".to_string(),
    };
    let question = format!(
        "The authenticity of host '{} ({ip})' can't be established.\n\
         {} key fingerprint is {}.\n{}\n\
         Are you sure you want to continue connecting (yes/no/[fingerprint])? ",
        trunc(&server.host, 200),
        server.key_type,
        server.fingerprint,
        other_names_message(known, check, key)
    );
    sanitize(&question).into_owned()
}

/// The frame of OpenSSH's warning blocks.
const AT_LINE: &str = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@";
/// OpenSSH's final fatal message for every refusal.
pub(crate) const VERIFICATION_FAILED: &str = "Host key verification failed.";
/// OpenSSH lists at most this many other names for a key.
const MAX_OTHER_NAMES: usize = 8;

/// OpenSSH's `confirm()`: "yes"/"no" in any case, or the exact fingerprint;
/// only the first word counts, an empty answer or no answer means no.
fn confirm(prompt: &mut dyn HostKeyPrompt, question: &str, fingerprint: &str) -> bool {
    let mut message = question;
    loop {
        let answer = match prompt.ask(message) {
            Ok(Some(answer)) => answer,
            Ok(None) => return false,
            Err(e) => {
                tracing::debug!("reading the answer failed: {e}");
                return false;
            }
        };
        let word = answer.trim_start_matches([' ', '\t']);
        let word = word.split([' ', '\t', '\n']).next().unwrap_or_default();
        if word.is_empty() || word.eq_ignore_ascii_case("no") {
            return false;
        }
        if word.eq_ignore_ascii_case("yes") || word == fingerprint {
            return true;
        }
        message = "Please type 'yes', 'no' or the fingerprint: ";
    }
}

/// The "known by other names" part of the question (OpenSSH's `other_hostkeys_message`).
fn other_names_message(known: &KnownHosts, check: &HostKeyCheck<'_>, key: &PublicKey) -> String {
    let names = match check.host_key_alias {
        Some(alias) => known.other_names(alias, DEFAULT_SSH_PORT, key),
        None => known.other_names(check.host, check.port, key),
    };
    if names.is_empty() {
        return "This key is not known by any other names.".to_string();
    }
    let mut message = "This host key is known by the following other names/addresses:".to_string();
    for name in names.iter().take(MAX_OTHER_NAMES) {
        message.push_str("\n    ");
        message.push_str(name);
    }
    if names.len() > MAX_OTHER_NAMES {
        let omitted = names.len() - MAX_OTHER_NAMES;
        message.push_str(&format!("\n    ({omitted} additional names omitted)"));
    }
    message
}

/// Writes OpenSSH-style log lines at or below the configured verbosity.
pub(crate) struct Log<'a> {
    pub(crate) out: &'a mut dyn Write,
    pub(crate) level: Verbosity,
}

impl Log<'_> {
    fn write(&mut self, level: Verbosity, message: &str) {
        if level <= self.level && self.level != Verbosity::Quiet {
            // Like ssh, a broken stderr does not change the outcome.
            let _ = write!(self.out, "{}\r\n", sanitize(message));
            let _ = self.out.flush();
        }
    }
    pub(crate) fn fatal(&mut self, message: &str) {
        self.write(Verbosity::Fatal, message);
    }
    pub(crate) fn error(&mut self, message: &str) {
        self.write(Verbosity::Error, message);
    }
    fn info(&mut self, message: &str) {
        self.write(Verbosity::Info, message);
    }
}

/// Escapes control characters as OpenSSH's log does (`strnvis` VIS_SAFE|VIS_OCTAL),
/// so names read from files or typed by a peer cannot drive the terminal.
fn sanitize(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char =
        |c: char| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\x07' | '\x08');
    if !text.chars().any(unsafe_char) {
        return text.into();
    }
    let mut clean = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                clean.push_str(&format!("\\{b:03o}"));
            }
        } else {
            clean.push(c);
        }
    }
    clean.into()
}

/// At most `max` bytes of `text` (on a char boundary), as printf's `%.Ns`.
fn trunc(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or(text)
}

impl fmt::Display for StrictHostKeyChecking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Yes => "yes",
            Self::No => "no",
            Self::AcceptNew => "accept-new",
            Self::Ask => "ask",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_and_trunc() {
        assert_eq!(sanitize("a\x1b[2Jb\n"), "a\\033[2Jb\n");
        assert_eq!(sanitize("plain"), "plain");
        assert_eq!(trunc("héllo", 2), "h");
        assert_eq!(trunc("abc", 200), "abc");
    }

    #[test]
    fn untrusted_features_are_announced_in_openssh_order() {
        let mut out = Vec::new();
        let enabled = [UntrustedFeature::PortForwarding, UntrustedFeature::Agent];
        let result = turn_off_untrusted(&enabled, false, Verbosity::Info, &mut out);
        assert!(result.is_ok());
        assert_eq!(
            String::from_utf8_lossy(&out),
            "Agent forwarding is disabled to avoid man-in-the-middle attacks.\r\n\
             Port forwarding is disabled to avoid man-in-the-middle attacks.\r\n"
        );
    }

    #[test]
    fn exit_on_forward_failure_ends_the_connection_only_when_something_was_turned_off() {
        let mut out = Vec::new();
        let result = turn_off_untrusted(&[], true, Verbosity::Info, &mut out);
        assert!(result.is_ok() && out.is_empty());
        let result =
            turn_off_untrusted(&[UntrustedFeature::Agent], true, Verbosity::Info, &mut out);
        assert!(matches!(result, Err(HostKeyError::ForwardingCancelled)));
        assert!(String::from_utf8_lossy(&out)
            .ends_with("Error: forwarding disabled due to host key check failure\r\n"));
        let mut quiet = Vec::new();
        let result = turn_off_untrusted(
            &[UntrustedFeature::Agent],
            true,
            Verbosity::Quiet,
            &mut quiet,
        );
        assert!(result.is_err() && quiet.is_empty());
    }
}
