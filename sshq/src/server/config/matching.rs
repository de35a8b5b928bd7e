//! `Match` blocks (sshd_config(5)): settings that apply only to some
//! connections, chosen by the user, their groups, the client's address
//! or name, or the address and port it connected to.
//!
//! The lines of a block are checked when the file is read (as `sshd -t`
//! would) and kept; [`super::ServerConfig::for_connection`] applies the
//! blocks a connection matches, in file order, on top of the global
//! settings: the first value a matching block gives for a keyword wins,
//! as in sshd.

use std::collections::HashSet;
use std::net::IpAddr;

use super::{At, Parser, Res, ServerConfig, ServerConfigError};

/// What a connection is matched on.
#[derive(Debug, Clone, Default)]
pub struct ConnectionFacts {
    pub user: String,
    /// The user's groups (primary and supplementary), by name.
    pub groups: Vec<String>,
    pub address: Option<IpAddr>,
    /// The client's name for `Match Host`: its reverse DNS name with
    /// UseDNS yes; `None` matches the address as text (sshd under its
    /// default, UseDNS no).
    pub host: Option<String>,
    /// The server port the client connected to; unknown while sshqd
    /// decides a login (see [`AUTHENTICATION_KEYWORDS`]).
    pub local_port: Option<u16>,
    /// The server address the client connected to; unknown while sshqd
    /// decides a login, as the port.
    pub local_address: Option<IpAddr>,
}

/// One criterion of a `Match` line: its pattern list, `!` negating.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Criterion {
    All,
    User(String),
    Group(String),
    Address(String),
    Host(String),
    LocalAddress(String),
    LocalPort(String),
}

/// What is wrong with a `Match` line, or with a line inside a block;
/// `Display` gives sshd's words where sshd has them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    #[error("'all' cannot be combined with other Match attributes")]
    AllCombined,
    #[error("Missing Match criteria for {0}")]
    MissingCriteria(String),
    #[error("Invalid LocalPort '{0}' on Match line")]
    BadLocalPort(String),
    #[error("Invalid Match localaddress argument '{0}'")]
    BadLocalAddress(String),
    #[error(
        "Unsupported Match attribute {0} (sshqd matches User, Group, Host, Address, \
         LocalAddress, LocalPort and All)"
    )]
    UnsupportedAttribute(String),
    #[error(
        "Match {0} is not supported by sshqd: it listens in no routing domain (VRF), so no \
         connection has one to match"
    )]
    RDomain(String),
    #[error("One or more attributes required for Match")]
    NoAttributes,
    #[error("{0} is not supported inside Match by sshqd (set it globally)")]
    GlobalOnly(String),
    #[error("Directive '{0}' is not allowed within a Match block")]
    NotAllowed(String),
    #[error(
        "{0} cannot be set in a Match LocalPort or LocalAddress block: sshqd decides logins \
         without the local address and port"
    )]
    LoginKeywordByPort(String),
}

/// A `Match` block: what it matches and its lines, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchBlock {
    criteria: Vec<Criterion>,
    /// (file, line number, text) of each line in the block.
    pub(super) lines: Vec<(String, usize, String)>,
}

/// The keywords sshd allows inside `Match`; others are an error there.
#[rustfmt::skip]
const ALLOWED_IN_MATCH: &[&str] = &[
    "acceptenv", "allowagentforwarding", "allowgroups", "allowstreamlocalforwarding",
    "allowtcpforwarding", "allowusers", "authenticationmethods", "authorizedkeyscommand",
    "authorizedkeyscommanduser", "authorizedkeysfile", "authorizedprincipalscommand",
    "authorizedprincipalscommanduser", "authorizedprincipalsfile", "banner",
    "casignaturealgorithms", "chrootdirectory", "denygroups", "denyusers", "disableforwarding",
    "exposeauthinfo", "forcecommand", "gatewayports", "gssapiauthentication",
    "hostbasedacceptedalgorithms", "hostbasedauthentication", "ignorerhosts", "ipqos",
    "kbdinteractiveauthentication", "kerberosauthentication", "maxsessions",
    "passwordauthentication", "permitemptypasswords", "permitlisten", "permitopen",
    "permitrootlogin", "permittty", "permittunnel", "permituserrc",
    "pubkeyacceptedalgorithms", "pubkeyauthentication", "rdomain", "revokedkeys", "setenv",
    "streamlocalbindmask", "streamlocalbindunlink", "trustedusercakeys", "x11displayoffset",
    "x11forwarding", "x11uselocalhost",
];

/// Keywords sshd allows in `Match` that sshqd applies to the whole server
/// only: refused there rather than silently global.
const GLOBAL_ONLY: &[&str] = &[
    "clientalivecountmax",
    "clientaliveinterval",
    "include",
    "loglevel",
    "maxauthtries",
];

/// Keywords that decide a login. sshqd decides logins without the local
/// port, so a block with `LocalPort` may not set them (its other settings
/// apply to the session).
pub const AUTHENTICATION_KEYWORDS: &[&str] = &[
    "authenticationmethods",
    "authorizedkeyscommand",
    "authorizedkeyscommanduser",
    "authorizedkeysfile",
    "authorizedprincipalscommand",
    "authorizedprincipalscommanduser",
    "authorizedprincipalsfile",
    "kbdinteractiveauthentication",
    "passwordauthentication",
    "permitemptypasswords",
    "permitrootlogin",
    "pubkeyauthentication",
    "revokedkeys",
    "trustedusercakeys",
];

impl MatchBlock {
    /// The block a `Match` line opens.
    pub fn parse(args: &[String]) -> Result<MatchBlock, MatchError> {
        let mut criteria = Vec::new();
        let mut words = args.iter();
        while let Some(word) = words.next() {
            let lower = word.to_ascii_lowercase();
            if lower == "all" {
                if args.len() != 1 {
                    return Err(MatchError::AllCombined);
                }
                criteria.push(Criterion::All);
                continue;
            }
            let value = words
                .next()
                .ok_or_else(|| MatchError::MissingCriteria(word.clone()))?
                .clone();
            criteria.push(match lower.as_str() {
                "user" => Criterion::User(value),
                "group" => Criterion::Group(value),
                "address" => Criterion::Address(value),
                "host" => Criterion::Host(value),
                "localaddress" => {
                    if !address_list(&value) {
                        return Err(MatchError::BadLocalAddress(value));
                    }
                    Criterion::LocalAddress(value)
                }
                "rdomain" => return Err(MatchError::RDomain(word.clone())),
                "localport" => {
                    let ports_ok = value.split(',').all(|p| {
                        let p = p.strip_prefix('!').unwrap_or(p);
                        p.parse::<u16>().is_ok_and(|n| n != 0)
                    });
                    if !ports_ok {
                        return Err(MatchError::BadLocalPort(value));
                    }
                    Criterion::LocalPort(value)
                }
                _ => return Err(MatchError::UnsupportedAttribute(word.clone())),
            });
        }
        if criteria.is_empty() {
            return Err(MatchError::NoAttributes);
        }
        Ok(MatchBlock {
            criteria,
            lines: Vec::new(),
        })
    }

    /// Whether `keyword` (lower case; `written` as in the file) may be set
    /// in this block.
    pub fn admits(&self, keyword: &str, written: &str) -> Result<(), MatchError> {
        if GLOBAL_ONLY.contains(&keyword) {
            return Err(MatchError::GlobalOnly(written.to_string()));
        }
        if !ALLOWED_IN_MATCH.contains(&keyword) {
            return Err(MatchError::NotAllowed(written.to_string()));
        }
        let local_port = self
            .criteria
            .iter()
            .any(|c| matches!(c, Criterion::LocalPort(_) | Criterion::LocalAddress(_)));
        if local_port && AUTHENTICATION_KEYWORDS.contains(&keyword) {
            return Err(MatchError::LoginKeywordByPort(written.to_string()));
        }
        Ok(())
    }

    /// Whether every criterion holds for `facts`. A criterion on something
    /// unknown (the address, the local port) does not hold.
    pub fn matches(&self, facts: &ConnectionFacts) -> bool {
        self.criteria.iter().all(|criterion| match criterion {
            Criterion::All => true,
            Criterion::User(list) => list_matches(list, |p| pattern(p, &facts.user)),
            Criterion::Group(list) => facts
                .groups
                .iter()
                .any(|group| list_matches(list, |p| pattern(p, group))),
            Criterion::Address(list) => facts.address.is_some_and(|address| {
                list_matches(list, |p| {
                    super::super::auth::key_options::from_allows(p, Some(address))
                })
            }),
            Criterion::Host(list) => {
                let host = match &facts.host {
                    Some(host) => Some(host.to_ascii_lowercase()),
                    None => facts.address.map(|address| address.to_string()),
                };
                // sshd's match_hostname: case does not matter.
                host.is_some_and(|host| {
                    list_matches(list, |p| pattern(&p.to_ascii_lowercase(), &host))
                })
            }
            Criterion::LocalAddress(list) => facts.local_address.is_some_and(|address| {
                list_matches(list, |p| {
                    super::super::auth::key_options::from_allows(p, Some(address))
                })
            }),
            Criterion::LocalPort(list) => facts
                .local_port
                .is_some_and(|port| list_matches(list, |p| p.parse() == Ok(port))),
        })
    }
}

impl ServerConfig {
    /// The settings for one connection: the global ones with the lines of
    /// every `Match` block `facts` match applied on top, in file order,
    /// the first value for a keyword winning (sshd's rule). The lines were
    /// checked when the file was read, so an error here is unexpected; it
    /// is returned all the same (the caller refuses the connection).
    pub fn for_connection(
        &self,
        facts: &ConnectionFacts,
    ) -> Result<ServerConfig, ServerConfigError> {
        let mut parser = Parser::scratch(self.clone());
        for block in self.matches.iter().filter(|block| block.matches(facts)) {
            for (file, line, text) in &block.lines {
                parser.line(&At(file, *line), text, None, 0)?;
            }
        }
        Ok(parser.cfg)
    }
}

impl Parser {
    /// A line inside `Match` block `index`: checked as sshd would check it
    /// (allowed in a block, a valid value), then kept for
    /// [`ServerConfig::for_connection`].
    pub(super) fn match_line(
        &mut self,
        index: usize,
        at: &At<'_>,
        raw: &str,
        kw: &str,
        keyword: &str,
    ) -> Res {
        let Some(block) = self.cfg.matches.get_mut(index) else {
            return Ok(());
        };
        // An unknown keyword or a bad value is reported as outside a
        // block; then whether the block may hold it.
        if kw != "include" {
            let mut scratch = Parser::scratch(ServerConfig::default());
            scratch.line(at, raw, None, 0)?;
        }
        block
            .admits(kw, keyword)
            .map_err(|e| at.bad(e.to_string()))?;
        block.lines.push((at.0.to_string(), at.1, raw.to_string()));
        Ok(())
    }

    /// A parser that applies lines to `cfg` as if none had been given.
    pub(super) fn scratch(cfg: ServerConfig) -> Parser {
        Parser {
            cfg,
            seen: HashSet::new(),
            cli_ports: true,
            current_match: None,
        }
    }
}

/// Whether a LocalAddress list is made of addresses, networks
/// (`address/bits`) and wildcard patterns of address characters, as
/// sshd's addr_match_list requires.
fn address_list(list: &str) -> bool {
    list.split(',').all(|entry| {
        let entry = entry.strip_prefix('!').unwrap_or(entry);
        let (address, bits) = match entry.split_once('/') {
            Some((address, bits)) => (address, Some(bits)),
            None => (entry, None),
        };
        match bits {
            Some(bits) => address.parse::<IpAddr>().is_ok_and(|ip| {
                let most = if ip.is_ipv4() { 32 } else { 128 };
                bits.parse::<u32>().is_ok_and(|bits| bits <= most)
            }),
            None => {
                !address.is_empty()
                    && address
                        .chars()
                        .all(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '*' | '?'))
            }
        }
    })
}

fn pattern(pattern: &str, text: &str) -> bool {
    sshq_core::pattern::matches(pattern, text)
}

/// sshd's match_pattern_list: some entry matches and no `!` entry does.
fn list_matches(list: &str, hit: impl Fn(&str) -> bool) -> bool {
    let mut matched = false;
    for entry in list.split(',').map(str::trim) {
        match entry.strip_prefix('!') {
            Some(negated) if hit(negated) => return false,
            Some(_) => {}
            None => matched |= hit(entry),
        }
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(line: &str) -> MatchBlock {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        MatchBlock::parse(&args).unwrap()
    }

    fn facts(user: &str, groups: &[&str], address: &str, port: Option<u16>) -> ConnectionFacts {
        ConnectionFacts {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            address: address.parse().ok(),
            local_port: port,
            ..ConnectionFacts::default()
        }
    }

    #[test]
    fn criteria_as_sshd_reads_them() {
        let alice = facts("alice", &["staff", "sftp"], "192.0.2.7", Some(2222));
        assert!(block("User alice,bob").matches(&alice));
        assert!(!block("User a*,!alice").matches(&alice));
        assert!(block("Group sftp").matches(&alice));
        assert!(block("User alice Group staff Address 192.0.2.0/24").matches(&alice));
        assert!(!block("User alice Address 10.0.0.0/8").matches(&alice));
        assert!(block("LocalPort 2222").matches(&alice));
        assert!(!block("LocalPort 22").matches(&alice));
        assert!(block("All").matches(&alice));
        // Unknown facts match nothing.
        let unknown = facts("alice", &[], "", None);
        assert!(!block("Address *").matches(&unknown));
        assert!(!block("LocalPort 2222").matches(&unknown));
    }

    #[test]
    fn matching_blocks_override_the_global_settings_first_value_winning() {
        let text = "ForceCommand global\nAllowTcpForwarding yes\n\
                    Match User alice\n  ForceCommand alice-1\n\
                    Match All\n  ForceCommand all\n  AllowTcpForwarding no\n";
        let config = ServerConfig::parse_str("F", text, &[]).unwrap();
        let alice = config
            .for_connection(&facts("alice", &[], "127.0.0.1", None))
            .unwrap();
        assert_eq!(alice.force_command.as_deref(), Some("alice-1"));
        assert_eq!(
            alice.allow_tcp_forwarding,
            super::super::AllowTcpForwarding::No
        );
        let bob = config
            .for_connection(&facts("bob", &[], "127.0.0.1", None))
            .unwrap();
        assert_eq!(bob.force_command.as_deref(), Some("all"));
        // The global settings themselves are untouched.
        assert_eq!(config.force_command.as_deref(), Some("global"));
    }

    #[test]
    fn bad_match_lines_and_keywords() {
        let parse = |line: &str| {
            let args: Vec<String> = line.split_whitespace().map(String::from).collect();
            MatchBlock::parse(&args)
        };
        assert_eq!(
            parse("User"),
            Err(MatchError::MissingCriteria("User".into()))
        );
        assert_eq!(
            parse("Version x"),
            Err(MatchError::UnsupportedAttribute("Version".into()))
        );
        assert_eq!(
            parse("RDomain x"),
            Err(MatchError::RDomain("RDomain".into()))
        );
        assert_eq!(
            parse("LocalAddress example.com"),
            Err(MatchError::BadLocalAddress("example.com".into()))
        );
        let by_address = block("LocalAddress 127.0.0.1");
        assert!(by_address
            .admits("authorizedkeyscommand", "AuthorizedKeysCommand")
            .is_err());
        assert_eq!(parse("All User x"), Err(MatchError::AllCombined));
        assert_eq!(
            parse("LocalPort 0"),
            Err(MatchError::BadLocalPort("0".into()))
        );
        let b = block("User alice");
        assert!(b.admits("forcecommand", "ForceCommand").is_ok());
        assert_eq!(
            b.admits("port", "Port"),
            Err(MatchError::NotAllowed("Port".into()))
        );
        assert_eq!(
            b.admits("loglevel", "LogLevel"),
            Err(MatchError::GlobalOnly("LogLevel".into()))
        );
        let by_port = block("LocalPort 2222");
        assert!(by_port
            .admits("pubkeyauthentication", "PubkeyAuthentication")
            .is_err());
        assert!(by_port
            .admits("allowtcpforwarding", "AllowTcpForwarding")
            .is_ok());
    }

    #[test]
    fn host_and_local_address() {
        let mut client = facts("alice", &[], "192.0.2.7", Some(22));
        // UseDNS no: Host sees the address as text.
        assert!(block("Host 192.0.2.*").matches(&client));
        assert!(!block("Host *.example.com").matches(&client));
        client.host = Some("WS1.Example.COM".into());
        assert!(block("Host *.example.com,!ws2.*").matches(&client));
        assert!(!block("Host *.example.com,!ws1.*").matches(&client));
        // The local address: unknown (at login) matches nothing.
        assert!(!block("LocalAddress 127.0.0.1").matches(&client));
        client.local_address = "127.0.0.1".parse().ok();
        assert!(block("LocalAddress 127.0.0.0/8").matches(&client));
        assert!(block("LocalAddress 127.0.0.*").matches(&client));
        assert!(!block("LocalAddress 10.0.0.1,::1").matches(&client));
        assert!(!block("LocalAddress *,!127.0.0.1").matches(&client));
    }
}
