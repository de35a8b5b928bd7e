//! `sshq cp`'s command line: scp's flags (OpenSSH 9.2's scp(1)), and its
//! rules for telling a remote `[user@]host:path` or `scp://` URI from a
//! local file name.

use clap::{ArgAction, Parser};

/// scp's synopsis, with sshq's additions.
pub const USAGE: &str = concat!(
    "usage: sshq cp [-346ABCpqRrTv] [-c cipher] [-F ssh_config] [-i identity_file]\n",
    "            [-J destination] [-l limit] [-o ssh_option] [-P port]\n",
    "            [-X sftp_option] [--resume] source ... target",
);

/// Copies files between hosts over SFTP, on QUIC or TCP. Flags follow OpenSSH's scp(1).
#[derive(Debug, Parser)]
#[command(
    name = "sshq cp",
    disable_help_flag = true,
    disable_version_flag = true,
    override_usage = USAGE
)]
pub struct CpCli {
    /// Copies between two remote hosts go through the local host (the default).
    #[arg(short = '3')]
    pub through_local: bool,
    /// IPv4 addresses only.
    #[arg(short = '4')]
    pub ipv4: bool,
    /// IPv6 addresses only.
    #[arg(short = '6')]
    pub ipv6: bool,
    /// Accepted for scp's sake: `sshq cp` never forwards the agent.
    #[arg(short = 'A')]
    pub forward_agent: bool,
    /// Batch mode: never ask for passwords or passphrases.
    #[arg(short = 'B')]
    pub batch: bool,
    /// Compression (passed on as Compression=yes).
    #[arg(short = 'C')]
    pub compression: bool,
    /// Cipher (passed on as Ciphers=).
    #[arg(short = 'c', value_name = "cipher")]
    pub cipher: Option<String>,
    /// Local SFTP server program (scp's debugging aid): not supported.
    #[arg(short = 'D', value_name = "sftp_server_path")]
    pub sftp_direct: Option<String>,
    /// Alternative per-user configuration file.
    #[arg(short = 'F', value_name = "ssh_config")]
    pub config_file: Option<String>,
    /// Identity (private key) file; may be given several times.
    #[arg(short = 'i', action = ArgAction::Append, value_name = "identity_file")]
    pub identity_files: Vec<String>,
    /// Jump hosts (ProxyJump).
    #[arg(short = 'J', value_name = "destination")]
    pub jump: Option<String>,
    /// Bandwidth limit in Kbit/s.
    #[arg(short = 'l', value_name = "limit")]
    pub limit: Option<String>,
    /// The legacy SCP protocol: not supported (sshq cp speaks SFTP).
    #[arg(short = 'O')]
    pub legacy: bool,
    /// Options in ssh_config format.
    #[arg(short = 'o', action = ArgAction::Append, value_name = "ssh_option")]
    pub options: Vec<String>,
    /// Port to connect to.
    #[arg(short = 'P', value_name = "port")]
    pub port: Option<String>,
    /// Preserve modification times, access times and modes.
    #[arg(short = 'p')]
    pub preserve: bool,
    /// Quiet: no progress meter, no warnings.
    #[arg(short = 'q')]
    pub quiet: bool,
    /// Copies between two remote hosts run scp on the origin host.
    #[arg(short = 'R')]
    pub remote_to_remote: bool,
    /// Recursive copy of directories.
    #[arg(short = 'r')]
    pub recursive: bool,
    /// SFTP mode (accepted: it is the only one).
    #[arg(short = 's')]
    pub sftp_mode: bool,
    /// Program for the connection: not supported (sshq cp is its own).
    #[arg(short = 'S', value_name = "program")]
    pub program: Option<String>,
    /// Strict filename checking off (SFTP names what it sends; no effect).
    #[arg(short = 'T')]
    pub no_strict_names: bool,
    /// Verbose; repeat for more.
    #[arg(short = 'v', action = ArgAction::Count)]
    pub verbose: u8,
    /// SFTP options: nrequests=N, buffer=N.
    #[arg(short = 'X', action = ArgAction::Append, value_name = "sftp_option")]
    pub sftp_options: Vec<String>,
    /// Continue an interrupted copy from its partial file.
    #[arg(long = "resume")]
    pub resume: bool,
    /// Print this help.
    #[arg(long = "help", action = ArgAction::Help)]
    pub help: Option<bool>,
    /// Sources, then the target.
    #[arg(value_name = "source ... target", required = true, num_args = 2..)]
    pub paths: Vec<String>,
}

/// A remote location: who and where, and the path there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub path: String,
}

/// Where a source or the target is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(String),
    Remote(RemoteSpec),
}

impl Location {
    /// scp's reading of an argument: an `scp://` URI, `[user@]host:path`
    /// (a ':' before any '/', outside brackets), else a local name.
    pub fn parse(text: &str) -> Result<Location, String> {
        if let Some(rest) = text.strip_prefix("scp://") {
            return parse_uri(rest).ok_or_else(|| format!("invalid uri: {text}"));
        }
        match remote_colon(text) {
            Some(at) => {
                let (userhost, path) = text.split_at(at);
                let path = &path[1..];
                let (user, host) = match userhost.rsplit_once('@') {
                    Some((user, host)) if !user.is_empty() => (Some(user.to_string()), host),
                    Some((_, host)) => (None, host),
                    None => (None, userhost),
                };
                let host = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host);
                if host.is_empty() {
                    return Ok(Location::Local(text.to_string()));
                }
                Ok(Location::Remote(RemoteSpec {
                    user,
                    host: host.to_string(),
                    port: None,
                    path: path.to_string(),
                }))
            }
            None => Ok(Location::Local(text.to_string())),
        }
    }
}

/// Where the host part of `host:path` ends, if the argument is remote:
/// scp's colon(). A leading ':' or a '/' before any ':' makes it local;
/// a bracketed IPv6 address may hold colons.
fn remote_colon(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    if bytes.first() == Some(&b':') {
        return None;
    }
    let mut in_brackets = bytes.first() == Some(&b'[');
    for (at, &byte) in bytes.iter().enumerate() {
        match byte {
            b'@' if bytes.get(at + 1) == Some(&b'[') => in_brackets = true,
            b']' if in_brackets && bytes.get(at + 1) == Some(&b':') => return Some(at + 1),
            b']' => in_brackets = false,
            b':' if !in_brackets => return Some(at),
            b'/' => return None,
            _ => {}
        }
    }
    None
}

/// `[user@]host[:port][/path]` after `scp://`; the path is relative to
/// the login directory unless it begins with a second '/', as in scp.
fn parse_uri(rest: &str) -> Option<Location> {
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, ""),
    };
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((user, hostport)) if !user.is_empty() => (Some(user.to_string()), hostport),
        _ => (None, authority),
    };
    let (host, port) = super::super::cli::split_host_port(hostport)?;
    Some(Location::Remote(RemoteSpec {
        user,
        host,
        port,
        path: if path.is_empty() {
            ".".into()
        } else {
            path.to_string()
        },
    }))
}

/// scp's -l: a positive number of Kbit/s (1024 bits), as bytes per second.
pub fn limit_bytes_per_second(text: &str) -> Option<f64> {
    let kbits: u64 = text.trim().parse().ok().filter(|k| *k > 0)?;
    Some(kbits as f64 * 1024.0 / 8.0)
}

/// scp's -X: `nrequests=N` and `buffer=N` (bytes per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SftpTuning {
    pub requests: usize,
    pub block: u32,
}

impl Default for SftpTuning {
    fn default() -> Self {
        // OpenSSH's sftp uses 64 requests of 32 KiB; larger blocks cost
        // nothing against sftp-server (it allows up to 255 KiB reads).
        SftpTuning {
            requests: 64,
            block: 64 * 1024,
        }
    }
}

impl SftpTuning {
    pub fn from_options(options: &[String]) -> Result<SftpTuning, String> {
        let mut tuning = SftpTuning::default();
        for option in options {
            let (name, value) = option.split_once('=').unwrap_or((option, ""));
            let number: Option<u64> = value.parse().ok().filter(|n| *n > 0);
            match (name, number) {
                ("nrequests", Some(n)) if n <= 4096 => tuning.requests = n as usize,
                ("buffer", Some(n)) if n <= 255 * 1024 => tuning.block = n as u32,
                ("nrequests" | "buffer", _) => {
                    return Err(format!("Invalid number for -X {name}: \"{value}\""))
                }
                _ => return Err(format!("Invalid -X option: {option}")),
            }
        }
        Ok(tuning)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(user: Option<&str>, host: &str, port: Option<u16>, path: &str) -> Location {
        Location::Remote(RemoteSpec {
            user: user.map(str::to_string),
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    #[test]
    fn locations_as_scp_reads_them() {
        let parse = |t| Location::parse(t).unwrap();
        assert_eq!(parse("host:f"), remote(None, "host", None, "f"));
        assert_eq!(parse("u@h:/tmp/x"), remote(Some("u"), "h", None, "/tmp/x"));
        assert_eq!(parse("a@b@h:"), remote(Some("a@b"), "h", None, ""));
        assert_eq!(parse("[::1]:/x"), remote(None, "::1", None, "/x"));
        assert_eq!(parse("u@[::1]:x"), remote(Some("u"), "::1", None, "x"));
        assert_eq!(parse("./a:b"), Location::Local("./a:b".into()));
        assert_eq!(parse("dir/a:b"), Location::Local("dir/a:b".into()));
        assert_eq!(parse(":x"), Location::Local(":x".into()));
        assert_eq!(parse("plain"), Location::Local("plain".into()));
        assert_eq!(
            parse("scp://u@h:2222/rel"),
            remote(Some("u"), "h", Some(2222), "rel")
        );
        assert_eq!(parse("scp://h//abs"), remote(None, "h", None, "/abs"));
        assert_eq!(parse("scp://h"), remote(None, "h", None, "."));
    }

    #[test]
    fn limits_and_tuning() {
        assert_eq!(limit_bytes_per_second("8"), Some(1024.0));
        assert_eq!(limit_bytes_per_second("0"), None);
        assert_eq!(limit_bytes_per_second("x"), None);
        let tuning =
            SftpTuning::from_options(&["nrequests=8".into(), "buffer=4096".into()]).unwrap();
        assert_eq!(
            tuning,
            SftpTuning {
                requests: 8,
                block: 4096
            }
        );
        assert!(SftpTuning::from_options(&["bogus".into()]).is_err());
        assert!(SftpTuning::from_options(&["buffer=0".into()]).is_err());
    }
}
