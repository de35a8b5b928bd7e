//! authorized_keys lines with their options (sshd(8), AUTHORIZED_KEYS FILE
//! FORMAT): `options keytype base64 comment`, where the options are
//! comma-separated, names in any case, and values in double quotes (with
//! `\"` inside) may hold spaces and commas.
//!
//! sshqd honours the options that restrict a key (`restrict`, `command=`,
//! `from=`, `expiry-time=`, `no-pty`, `no-port-forwarding`,
//! `no-agent-forwarding`, `no-X11-forwarding`, `no-user-rc`, and the `pty`,
//! `port-forwarding`, `agent-forwarding`, `X11-forwarding`, `user-rc` that
//! undo `restrict`), `no-touch-required`, `verify-required`, `permitopen=` and
//! `permitlisten=` (forwarding only to and from the places listed, on top
//! of PermitOpen and PermitListen), and `cert-authority` with
//! `principals=` (the line's key is a CA whose user certificates it
//! trusts). `environment=` is kept for sessions, which set it under
//! PermitUserEnvironment; `tunnel=` is read and has no effect, as in sshd
//! under PermitTunnel no (the only value sshqd accepts). A line with an option sshqd does not
//! know lets no key in: ignoring a restriction would grant more than the
//! line's owner meant.
//!
//! AuthorizedPrincipalsFile lines use the same options before a
//! principal name ([`parse_principal_line`]).

use std::net::IpAddr;

use sshq_core::ssh_key::PublicKey;

/// What a line's options allow, restrict and force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOptions {
    /// `command=`: run this instead of what the client asks for.
    pub command: Option<String>,
    /// `from=`: the patterns the client's address must match.
    pub from: Option<String>,
    /// `expiry-time=`: the key is refused from this time on (Unix seconds).
    pub expires_at: Option<i64>,
    pub pty: bool,
    pub port_forwarding: bool,
    pub agent_forwarding: bool,
    pub x11_forwarding: bool,
    pub user_rc: bool,
    /// False with `no-touch-required`.
    pub touch_required: bool,
    /// `verify-required`: a security key must have verified the user (PIN
    /// or biometric; flag 0x04 of its signature).
    pub verify_required: bool,
    /// `cert-authority`: the line's key signs user certificates; it never
    /// lets itself in as a plain key.
    pub cert_authority: bool,
    /// `principals=`: with `cert-authority`, the certificate principals
    /// accepted (comma-separated patterns) instead of the user's name.
    pub principals: Option<String>,
    /// `permitopen=`s: `host:port` (port or `*`) that direct-tcpip may
    /// reach; empty: no limit beyond PermitOpen.
    pub permit_open: Vec<String>,
    /// `permitlisten=`s: `[host:]port` that tcpip-forward may listen on;
    /// empty: no limit beyond PermitListen.
    pub permit_listen: Vec<String>,
    /// `environment=` values (`NAME=value`), the first for a name winning
    /// as in sshd; set in sessions only under PermitUserEnvironment.
    pub environment: Vec<String>,
}

impl Default for KeyOptions {
    /// A line without options: everything the configuration allows.
    fn default() -> Self {
        KeyOptions {
            command: None,
            from: None,
            expires_at: None,
            pty: true,
            port_forwarding: true,
            agent_forwarding: true,
            x11_forwarding: true,
            user_rc: true,
            touch_required: true,
            verify_required: false,
            cert_authority: false,
            principals: None,
            permit_open: Vec::new(),
            permit_listen: Vec::new(),
            environment: Vec::new(),
        }
    }
}

/// Why a line lets no key in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("not a key line")]
    NotAKey,
    #[error("unterminated quoted option value")]
    Unterminated,
    #[error("an option value must be in double quotes")]
    Unquoted,
    #[error("unexpected text after an option")]
    Malformed,
    #[error("key option {0} given twice")]
    Repeated(String),
    #[error("unknown key option {0}")]
    Unknown(String),
    #[error("key option {0} needs a value")]
    MissingValue(String),
    #[error("key option {0} takes no value")]
    UnexpectedValue(String),
    #[error("invalid expiry-time {0:?}")]
    BadExpiry(String),
    #[error("invalid {option} {value:?}: expected {expected}")]
    BadPermit {
        option: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("invalid environment {0:?}: expected NAME=value")]
    BadEnvironment(String),
}

/// The options and key of one line (neither empty nor a comment).
pub fn parse_line(line: &str) -> Result<(KeyOptions, PublicKey), LineError> {
    let line = line.trim();
    // A line that starts with a key has no options.
    if let Ok(key) = PublicKey::from_openssh(line) {
        return Ok((KeyOptions::default(), key));
    }
    let (options, rest) = split_options(line)?;
    let key = PublicKey::from_openssh(rest.trim_start()).map_err(|_| LineError::NotAKey)?;
    Ok((parse_options(&options)?, key))
}

/// The options and principal of an AuthorizedPrincipalsFile line: the
/// principal is the last word, options (authorized_keys syntax) may come
/// before it (sshd's auth2-pubkeyfile.c).
pub fn parse_principal_line(line: &str) -> Result<(KeyOptions, String), LineError> {
    let line = line.trim();
    match line.rfind([' ', '\t']) {
        None => Ok((KeyOptions::default(), line.to_string())),
        Some(at) => {
            let (options_text, principal) = line.split_at(at);
            let principal = principal.trim_start().to_string();
            // The options end at the first blank: a blank inside them
            // (outside quotes) leaves text that is not the principal.
            let with_end = format!("{} ", options_text.trim_end());
            let (options, rest) = split_options(&with_end)?;
            if !rest.trim().is_empty() {
                return Err(LineError::Malformed);
            }
            Ok((parse_options(&options)?, principal))
        }
    }
}

/// An option's name and, after `=`, its value.
type RawOption = (String, Option<String>);

/// The options before the first space or tab, as sshd reads them
/// (auth-options.c): a name, then for a value `=` and a double-quoted
/// string in which only `\"` is an escape (any other backslash is itself);
/// after each option a comma, or the space that ends them. Anything else
/// (an unquoted value, text after a closing quote, a line that ends in the
/// options) is an error, never a guess. Returns the rest of the line too.
fn split_options(line: &str) -> Result<(Vec<RawOption>, &str), LineError> {
    let mut options = Vec::new();
    let mut rest = line;
    loop {
        let name_end = rest.find(['=', ',', ' ', '\t']).ok_or(LineError::NotAKey)?;
        let (name, after) = rest.split_at(name_end);
        let mut value = None;
        rest = after;
        if let Some(quoted) = rest.strip_prefix('=') {
            let body = quoted.strip_prefix('"').ok_or(LineError::Unquoted)?;
            let (text, after) = dequote(body)?;
            value = Some(text);
            rest = after;
        }
        options.push((name.to_string(), value));
        match rest.chars().next() {
            Some(',') => rest = rest.get(1..).unwrap_or_default(),
            Some(' ' | '\t') => return Ok((options, rest)),
            Some(_) => return Err(LineError::Malformed),
            None => return Err(LineError::NotAKey),
        }
    }
}

/// A quoted value's text up to its closing quote, and what follows that.
fn dequote(body: &str) -> Result<(String, &str), LineError> {
    let mut text = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(|(_, next)| *next == '"') => {
                chars.next();
                text.push('"');
            }
            '"' => return Ok((text, body.get(at + 1..).unwrap_or_default())),
            other => text.push(other),
        }
    }
    Err(LineError::Unterminated)
}

fn parse_options(options: &[RawOption]) -> Result<KeyOptions, LineError> {
    let mut parsed = KeyOptions::default();
    for (name, value) in options {
        let lower = name.to_ascii_lowercase();
        let flag = |set: &mut bool, to: bool| match value {
            None => {
                *set = to;
                Ok(())
            }
            Some(_) => Err(LineError::UnexpectedValue(name.clone())),
        };
        let needed = || {
            value
                .clone()
                .ok_or_else(|| LineError::MissingValue(name.clone()))
        };
        match lower.as_str() {
            "restrict" => {
                if value.is_some() {
                    return Err(LineError::UnexpectedValue(name.clone()));
                }
                parsed.pty = false;
                parsed.port_forwarding = false;
                parsed.agent_forwarding = false;
                parsed.x11_forwarding = false;
                parsed.user_rc = false;
            }
            "pty" => flag(&mut parsed.pty, true)?,
            "no-pty" => flag(&mut parsed.pty, false)?,
            "port-forwarding" => flag(&mut parsed.port_forwarding, true)?,
            "no-port-forwarding" => flag(&mut parsed.port_forwarding, false)?,
            "agent-forwarding" => flag(&mut parsed.agent_forwarding, true)?,
            "no-agent-forwarding" => flag(&mut parsed.agent_forwarding, false)?,
            "x11-forwarding" => flag(&mut parsed.x11_forwarding, true)?,
            "no-x11-forwarding" => flag(&mut parsed.x11_forwarding, false)?,
            "user-rc" => flag(&mut parsed.user_rc, true)?,
            "no-user-rc" => flag(&mut parsed.user_rc, false)?,
            "no-touch-required" => flag(&mut parsed.touch_required, false)?,
            // Twice is an error, as in sshd: a later one must not quietly
            // replace a restriction put first.
            "command" if parsed.command.is_some() => return Err(LineError::Repeated(lower)),
            "from" if parsed.from.is_some() => return Err(LineError::Repeated(lower)),
            "principals" if parsed.principals.is_some() => return Err(LineError::Repeated(lower)),
            "cert-authority" => flag(&mut parsed.cert_authority, true)?,
            "principals" => parsed.principals = Some(needed()?),
            "command" => parsed.command = Some(needed()?),
            "from" => parsed.from = Some(needed()?),
            "expiry-time" => {
                let text = needed()?;
                let at = parse_expiry(&text).ok_or(LineError::BadExpiry(text))?;
                // Several: the earliest holds, as in sshd.
                parsed.expires_at = Some(parsed.expires_at.map_or(at, |was| was.min(at)));
            }
            "permitopen" => {
                let value = needed()?;
                check_permit(&value, false)?;
                parsed.permit_open.push(value);
            }
            "permitlisten" => {
                let value = needed()?;
                check_permit(&value, true)?;
                parsed.permit_listen.push(value);
            }
            // Kept for the session, which sets it only under
            // PermitUserEnvironment (sshd's auth-options.c: a name of
            // letters, digits and `_`; the first value for a name wins).
            "environment" => {
                let value = needed()?;
                let Some((variable, _)) = value.split_once('=') else {
                    return Err(LineError::BadEnvironment(value));
                };
                let valid = !variable.is_empty()
                    && variable
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if !valid {
                    return Err(LineError::BadEnvironment(value));
                }
                let prefix = format!("{variable}=");
                if !parsed.environment.iter().any(|e| e.starts_with(&prefix)) {
                    parsed.environment.push(value);
                }
            }
            // Read, then dropped: PermitTunnel is no.
            "tunnel" => {
                needed()?;
            }
            "verify-required" => flag(&mut parsed.verify_required, true)?,
            _ => return Err(LineError::Unknown(name.clone())),
        }
    }
    Ok(parsed)
}

/// A `permitopen=` value (`host:port`) or, with `listen`, a
/// `permitlisten=` value (`[host:]port`): the port a number or `*`; an
/// IPv6 host in brackets.
fn check_permit(value: &str, listen: bool) -> Result<(), LineError> {
    let bad = || LineError::BadPermit {
        option: if listen { "permitlisten" } else { "permitopen" },
        value: value.to_string(),
        expected: if listen { "[host:]port" } else { "host:port" },
    };
    let (host, port) = match value.strip_prefix('[') {
        Some(rest) => rest.split_once("]:").ok_or_else(bad)?,
        None => match value.rsplit_once(':') {
            Some(split) => split,
            None if listen => ("*", value),
            None => return Err(bad()),
        },
    };
    let port_ok = port == "*" || port.parse::<u16>().is_ok_and(|p| p != 0);
    if host.is_empty() || !port_ok {
        return Err(bad());
    }
    Ok(())
}

/// `YYYYMMDD[HHMM[SS]]`, in local time or, with a `Z`, UTC (sshd's
/// parse_absolute_time), as Unix seconds.
fn parse_expiry(text: &str) -> Option<i64> {
    let (digits, utc) = match text.strip_suffix(['Z', 'z']) {
        Some(digits) => (digits, true),
        None => (text, false),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let field = |range: std::ops::Range<usize>| -> Option<i32> { digits.get(range)?.parse().ok() };
    let (hour, minute, second) = match digits.len() {
        8 => (0, 0, 0),
        12 => (field(8..10)?, field(10..12)?, 0),
        14 => (field(8..10)?, field(10..12)?, field(12..14)?),
        _ => return None,
    };
    let (year, month, day) = (field(0..4)?, field(4..6)?, field(6..8)?);
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && hour < 24
        && minute < 60
        && second < 61;
    if !valid {
        return None;
    }
    // SAFETY: `tm` is a plain C struct, zeroed then filled; timegm and
    // mktime only read and normalise it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = minute;
    tm.tm_sec = second;
    tm.tm_isdst = -1;
    // SAFETY: as above; both return -1 for a time they cannot represent.
    let seconds = unsafe {
        match utc {
            true => libc::timegm(&mut tm),
            false => libc::mktime(&mut tm),
        }
    };
    (seconds != -1).then_some(seconds)
}

/// Whether the client at `peer` matches `from=`'s comma-separated
/// patterns, as sshd's match_host_and_ip: an address, `address/bits`, or a
/// wildcard pattern (any case) on the address; `!` excludes, and an
/// excluded match refuses whatever else matched. A malformed entry (an
/// empty one, a network with host bits set, a bad mask) refuses the key.
/// sshqd does not look names up (sshd's UseDNS no), so only addresses
/// match.
pub fn from_allows(patterns: &str, peer: Option<IpAddr>) -> bool {
    let Some(peer) = peer else {
        return false;
    };
    let peer = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let text = peer.to_string().to_ascii_lowercase();
    let mut matched = false;
    for pattern in patterns.split(',').map(str::trim) {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        if pattern.is_empty() {
            return false;
        }
        let hit = if let Some((network, bits)) = pattern.split_once('/') {
            match in_network(peer, network, bits) {
                Some(hit) => hit,
                None => return false,
            }
        } else if let Ok(address) = pattern.parse::<IpAddr>() {
            // Numerically, so that 2001:DB8::1 and 2001:0db8::1 are one.
            address == peer
        } else {
            sshq_core::pattern::matches(&pattern.to_ascii_lowercase(), &text)
        };
        if hit && negated {
            return false;
        }
        matched |= hit;
    }
    matched
}

/// Whether `peer` is in `network/bits`; `None` when that is malformed.
fn in_network(peer: IpAddr, network: &str, bits: &str) -> Option<bool> {
    let network = network.parse::<IpAddr>().ok()?;
    let bits = bits.parse::<u32>().ok()?;
    match network {
        IpAddr::V4(network) => {
            let mask = (bits <= 32).then(|| u32::MAX.checked_shl(32 - bits).unwrap_or(0))?;
            let network = u32::from(network);
            if network & !mask != 0 {
                return None;
            }
            Some(matches!(peer, IpAddr::V4(peer) if u32::from(peer) & mask == network))
        }
        IpAddr::V6(network) => {
            let mask = (bits <= 128).then(|| u128::MAX.checked_shl(128 - bits).unwrap_or(0))?;
            let network = u128::from(network);
            if network & !mask != 0 {
                return None;
            }
            Some(matches!(peer, IpAddr::V6(peer) if u128::from(peer) & mask == network))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE+ZuGJgMw1nw7LH+uRGHb8MKMuvM24XJpx9yNhbPsoE user";

    fn options(line_options: &str) -> Result<KeyOptions, LineError> {
        parse_line(&format!("{line_options} {KEY}")).map(|(options, _)| options)
    }

    #[test]
    fn plain_lines_and_quoted_values() {
        let (plain, key) = parse_line(KEY).unwrap();
        assert_eq!(plain, KeyOptions::default());
        assert_eq!(key.algorithm().as_str(), "ssh-ed25519");
        let forced = options(r#"command="echo \"hi, there\" $((6*7))",no-pty"#).unwrap();
        assert_eq!(
            forced.command.as_deref(),
            Some(r#"echo "hi, there" $((6*7))"#)
        );
        assert!(!forced.pty && forced.port_forwarding);
        let from = options(r#"from="10.0.0.0/8,!10.1.2.3""#).unwrap();
        assert_eq!(from.from.as_deref(), Some("10.0.0.0/8,!10.1.2.3"));
    }

    #[test]
    fn verify_required_is_honoured() {
        let verify = options("verify-required").unwrap();
        assert!(verify.verify_required && verify.touch_required);
        assert!(!KeyOptions::default().verify_required);
        // restrict leaves it alone, and the name is case-insensitive.
        let both = options("restrict,VERIFY-REQUIRED,no-touch-required").unwrap();
        assert!(both.verify_required && !both.touch_required);
    }

    #[test]
    fn restrict_and_what_undoes_it() {
        let restricted = options("restrict").unwrap();
        assert!(!restricted.pty && !restricted.port_forwarding && !restricted.agent_forwarding);
        assert!(!restricted.x11_forwarding && !restricted.user_rc && restricted.touch_required);
        let with_pty = options("restrict,PTY,no-touch-required").unwrap();
        assert!(with_pty.pty && !with_pty.port_forwarding && !with_pty.touch_required);
    }

    #[test]
    fn unknown_unsupported_and_malformed_options_let_nothing_in() {
        assert_eq!(
            options("frobnicate"),
            Err(LineError::Unknown("frobnicate".into()))
        );
        assert!(matches!(
            options(r#"permitopen="host""#),
            Err(LineError::BadPermit { .. })
        ));
        assert!(matches!(
            options(r#"permitlisten="host:0""#),
            Err(LineError::BadPermit { .. })
        ));
        assert_eq!(
            options(r#"environment="=x""#),
            Err(LineError::BadEnvironment("=x".into()))
        );
        assert_eq!(
            options("command"),
            Err(LineError::MissingValue("command".into()))
        );
        assert_eq!(
            options(r#"no-pty="x""#),
            Err(LineError::UnexpectedValue("no-pty".into()))
        );
        assert_eq!(
            parse_line(&format!(r#"command="never closed {KEY}"#)),
            Err(LineError::Unterminated)
        );
        assert_eq!(parse_line("no-pty garbage"), Err(LineError::NotAKey));
        assert_eq!(
            options(r#"expiry-time="2020""#),
            Err(LineError::BadExpiry("2020".into()))
        );
    }

    #[test]
    fn permits_accumulate_and_environment_is_read() {
        let read = options(
            r#"permitopen="db:5432",permitopen="[::1]:*",permitlisten="8080",environment="A=b",tunnel="0""#,
        )
        .unwrap();
        assert_eq!(read.permit_open, ["db:5432", "[::1]:*"]);
        assert_eq!(read.permit_listen, ["8080"]);
    }

    #[test]
    fn expiry_times_as_sshd_reads_them() {
        assert_eq!(parse_expiry("19700102Z"), Some(86_400));
        assert_eq!(parse_expiry("197001020001Z"), Some(86_460));
        assert_eq!(parse_expiry("19700102000102Z"), Some(86_462));
        assert_eq!(parse_expiry("19701302Z"), None);
        assert_eq!(parse_expiry("1970010"), None);
        assert!(parse_expiry("20991231").is_some());
        let twice = options(r#"expiry-time="20300101Z",expiry-time="20200101Z""#).unwrap();
        assert_eq!(twice.expires_at, parse_expiry("20200101Z"));
    }

    #[test]
    fn from_patterns() {
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(from_allows("127.0.0.1", Some(local)));
        assert!(from_allows("127.0.0.*", Some(mapped)));
        assert!(from_allows("10.0.0.0/8,127.0.0.0/8", Some(local)));
        assert!(!from_allows("10.0.0.0/8", Some(local)));
        assert!(!from_allows("127.0.0.0/8,!127.0.0.1", Some(local)));
        assert!(from_allows("::1/128", Some("::1".parse().unwrap())));
        assert!(!from_allows("*", None));
        // Malformed entries refuse, as in sshd.
        assert!(!from_allows("127.0.0.1/40", Some(local)));
        assert!(!from_allows("127.0.0.1/8", Some(local)));
        assert!(!from_allows("127.0.0.1,", Some(local)));
        // Addresses compare as numbers; patterns ignore case.
        let v6: IpAddr = "2001:db8::bad".parse().unwrap();
        assert!(!from_allows("2001:db8::/32,!2001:DB8::BAD", Some(v6)));
        assert!(!from_allows("2001:db8::/32,!2001:0db8::bad", Some(v6)));
        assert!(from_allows("2001:DB8::*", Some(v6)));
    }

    #[test]
    fn quoting_as_sshd_reads_it() {
        // Only \" is an escape: a backslash before anything else is itself,
        // so in `\\"` the quote is still escaped, and the value goes on:
        // one command=, and restrict stands.
        let tricky = r#"restrict,command="prefix \\",pty,port-forwarding,command=\\"""#;
        let read = options(tricky).unwrap();
        assert_eq!(
            read.command.as_deref(),
            Some(r#"prefix \",pty,port-forwarding,command=\""#)
        );
        assert!(!read.pty && !read.port_forwarding);
        let kept = options(r#"command="a\b\"c""#).unwrap();
        assert_eq!(kept.command.as_deref(), Some(r#"a\b"c"#));
        assert_eq!(options("from=*"), Err(LineError::Unquoted));
        assert_eq!(options(r#"command="x"y"#), Err(LineError::Malformed));
        assert_eq!(
            options(r#"command="a",command="b""#),
            Err(LineError::Repeated("command".into()))
        );
        assert_eq!(
            options(r#"from="10.0.0.0/8",from="*""#),
            Err(LineError::Repeated("from".into()))
        );
    }
}
