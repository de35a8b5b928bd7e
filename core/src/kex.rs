//! `KexAlgorithms`: one list for both transports.
//!
//! Over TCP, key exchanges have OpenSSH's names (`sntrup761x25519-sha512`,
//! `mlkem768x25519-sha256`, `curve25519-sha256`, ...); over QUIC they are
//! TLS groups with sshq's names (`x25519-sntrup761`, `x25519-mlkem768`,
//! `x25519`). A user writes one `KexAlgorithms` list, in either vocabulary
//! or both, with OpenSSH's syntax, and each transport takes from it what it
//! can do. Names for the same hybrid are equivalent across transports:
//!
//! | family | TCP (OpenSSH names) | QUIC (TLS group) |
//! |---|---|---|
//! | sntrup761 + X25519 | `sntrup761x25519-sha512`, `sntrup761x25519-sha512@openssh.com` | `x25519-sntrup761` |
//! | ML-KEM-768 + X25519 | `mlkem768x25519-sha256` | `x25519-mlkem768` |
//! | X25519 | `curve25519-sha256`, `curve25519-sha256@libssh.org` | `x25519` |
//!
//! So an existing OpenSSH-style `KexAlgorithms sntrup761x25519-sha512@openssh.com`
//! also makes QUIC post-quantum only, and `KexAlgorithms x25519-mlkem768`
//! makes TCP ML-KEM only: dropping UDP never bypasses a policy. Names with no
//! equivalent (the Diffie-Hellman and NIST ECDH exchanges) are ignored by
//! QUIC. A list that leaves a transport nothing is an error for that
//! transport ([`KexListError::NothingLeft`]), not a silent fallback.
//!
//! Syntax, as ssh_config(5): `a,b` exactly these; `+a,b` the defaults then
//! these; `-a,b` the defaults without these (wildcards `*` and `?` allowed
//! here only, as OpenSSH); `^a,b` these then the rest of the defaults.
//! Unknown names are an error (OpenSSH's "Bad SSH2 KexAlgorithms").

use crate::pattern;
use crate::transport::TransportKind;

/// Which end of a connection a list is for: their TCP defaults differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

/// Key exchanges that are the same construction on both transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Sntrup761X25519,
    MlKem768X25519,
    X25519,
}

struct Algorithm {
    name: &'static str,
    transport: TransportKind,
    family: Option<Family>,
}

const fn tcp(name: &'static str, family: Option<Family>) -> Algorithm {
    Algorithm {
        name,
        transport: TransportKind::Tcp,
        family,
    }
}

const fn quic(name: &'static str, family: Family) -> Algorithm {
    Algorithm {
        name,
        transport: TransportKind::Quic,
        family: Some(family),
    }
}

/// Every name sshq knows; within a family, TCP names in OpenSSH's order.
const ALGORITHMS: &[Algorithm] = &[
    tcp("mlkem768x25519-sha256", Some(Family::MlKem768X25519)),
    tcp("sntrup761x25519-sha512", Some(Family::Sntrup761X25519)),
    tcp(
        "sntrup761x25519-sha512@openssh.com",
        Some(Family::Sntrup761X25519),
    ),
    tcp("curve25519-sha256", Some(Family::X25519)),
    tcp("curve25519-sha256@libssh.org", Some(Family::X25519)),
    tcp("ecdh-sha2-nistp256", None),
    tcp("ecdh-sha2-nistp384", None),
    tcp("ecdh-sha2-nistp521", None),
    tcp("diffie-hellman-group-exchange-sha256", None),
    tcp("diffie-hellman-group16-sha512", None),
    tcp("diffie-hellman-group18-sha512", None),
    tcp("diffie-hellman-group14-sha256", None),
    tcp("diffie-hellman-group15-sha512", None),
    tcp("diffie-hellman-group17-sha512", None),
    tcp("diffie-hellman-group14-sha1", None),
    tcp("diffie-hellman-group-exchange-sha1", None),
    tcp("diffie-hellman-group1-sha1", None),
    quic("x25519-sntrup761", Family::Sntrup761X25519),
    quic("x25519-mlkem768", Family::MlKem768X25519),
    quic("x25519", Family::X25519),
];

/// What sshq offers over TCP as a client: OpenSSH 10's default list,
/// post-quantum first.
pub const TCP_CLIENT_DEFAULT: &[&str] = &[
    "mlkem768x25519-sha256",
    "sntrup761x25519-sha512",
    "sntrup761x25519-sha512@openssh.com",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group14-sha256",
];

/// What sshqd accepts over TCP: the client list without the large
/// finite-field groups (group exchange up to 8192 bits, groups 16 and 18),
/// whose modular exponentiations let an unauthenticated peer spend the
/// server's CPU many times over what it spends; the 2048-bit group 14
/// stays for clients without elliptic curves.
// draft §12.6: over SSH/TCP do not offer key exchanges that make an unauthenticated peer cost much work
pub const TCP_SERVER_DEFAULT: &[&str] = &[
    "mlkem768x25519-sha256",
    "sntrup761x25519-sha512",
    "sntrup761x25519-sha512@openssh.com",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group14-sha256",
];

/// The QUIC groups, both sides, sntrup761 first (OpenSSH 9.x's post-quantum
/// choice), then ML-KEM, then plain X25519 for classical-only peers.
// draft §4.4: clients SHOULD offer x25519-sntrup761; the default order is the table's
pub const QUIC_DEFAULT: &[&str] = &["x25519-sntrup761", "x25519-mlkem768", "x25519"];

/// The post-quantum hybrids, on either transport (for logs and tests).
pub fn is_post_quantum(name: &str) -> bool {
    find(name).is_some_and(|a| {
        matches!(
            a.family,
            Some(Family::Sntrup761X25519 | Family::MlKem768X25519)
        )
    })
}

/// Errors of a `KexAlgorithms` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KexListError {
    /// A name sshq does not know (OpenSSH: "Bad SSH2 KexAlgorithms").
    #[error("Bad SSH2 KexAlgorithms '{spec}': unknown key exchange algorithm '{name}' (known: {known})", known = known_names())]
    Unknown {
        /// The whole value, as OpenSSH quotes it.
        spec: String,
        /// The offending name.
        name: String,
    },
    /// The list leaves this transport no algorithm it implements.
    #[error("no matching key exchange method found: KexAlgorithms '{spec}' leaves nothing to use over {transport} (it can do: {can_do})", can_do = transport_names(*transport).join(","))]
    NothingLeft {
        spec: String,
        transport: TransportKind,
    },
}

fn known_names() -> String {
    ALGORITHMS
        .iter()
        .map(|a| a.name)
        .collect::<Vec<_>>()
        .join(",")
}

/// Every name `transport` implements, in no particular order.
pub fn transport_names(transport: TransportKind) -> Vec<&'static str> {
    ALGORITHMS
        .iter()
        .filter(|a| a.transport == transport)
        .map(|a| a.name)
        .collect()
}

fn find(name: &str) -> Option<&'static Algorithm> {
    ALGORITHMS.iter().find(|a| a.name == name)
}

/// The default list of `transport` for `role`.
pub fn default_list(transport: TransportKind, role: Role) -> &'static [&'static str] {
    match (transport, role) {
        (TransportKind::Quic, _) => QUIC_DEFAULT,
        (TransportKind::Tcp, Role::Client) => TCP_CLIENT_DEFAULT,
        (TransportKind::Tcp, Role::Server) => TCP_SERVER_DEFAULT,
    }
}

/// What `algorithm` means on `transport`: itself if it belongs there, its
/// equivalents if it has some, nothing otherwise.
fn on_transport(algorithm: &Algorithm, transport: TransportKind) -> Vec<&'static str> {
    if algorithm.transport == transport {
        return vec![algorithm.name];
    }
    match algorithm.family {
        Some(family) => ALGORITHMS
            .iter()
            .filter(|a| a.transport == transport && a.family == Some(family))
            .map(|a| a.name)
            .collect(),
        None => Vec::new(),
    }
}

/// Checks every name of `spec` without resolving it (for `-t` and config
/// loading: a typo must fail at once, not at the first connection).
pub fn validate(spec: &str) -> Result<(), KexListError> {
    parse(spec).map(|_| ())
}

enum Operation {
    Replace,
    Append,
    Remove,
    Prepend,
}

fn parse(spec: &str) -> Result<(Operation, Vec<&str>), KexListError> {
    let trimmed = spec.trim();
    let (operation, body) = match trimmed.chars().next() {
        Some('+') => (Operation::Append, trimmed.get(1..).unwrap_or("")),
        Some('-') => (Operation::Remove, trimmed.get(1..).unwrap_or("")),
        Some('^') => (Operation::Prepend, trimmed.get(1..).unwrap_or("")),
        _ => (Operation::Replace, trimmed),
    };
    let entries: Vec<&str> = body
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    for entry in &entries {
        let known = match operation {
            // As OpenSSH, removals may be patterns; a pattern that matches
            // nothing is a typo all the same.
            Operation::Remove => ALGORITHMS.iter().any(|a| pattern::matches(entry, a.name)),
            _ => find(entry).is_some(),
        };
        if !known {
            return Err(KexListError::Unknown {
                spec: spec.to_string(),
                name: entry.to_string(),
            });
        }
    }
    Ok((operation, entries))
}

/// The key exchanges `transport` uses as `role`: its defaults, changed by
/// `spec` (a `KexAlgorithms` value; `None`: the defaults).
pub fn resolve(
    spec: Option<&str>,
    transport: TransportKind,
    role: Role,
) -> Result<Vec<&'static str>, KexListError> {
    let defaults = default_list(transport, role);
    let Some(spec) = spec else {
        return Ok(defaults.to_vec());
    };
    let (operation, entries) = parse(spec)?;
    let listed = || -> Vec<&'static str> {
        entries
            .iter()
            .filter_map(|entry| find(entry))
            .flat_map(|a| on_transport(a, transport))
            .collect()
    };
    let chosen: Vec<&'static str> = match operation {
        Operation::Replace => listed(),
        Operation::Append => defaults.iter().copied().chain(listed()).collect(),
        Operation::Prepend => listed()
            .into_iter()
            .chain(defaults.iter().copied())
            .collect(),
        Operation::Remove => {
            let removed: Vec<&'static str> = ALGORITHMS
                .iter()
                .filter(|a| entries.iter().any(|p| pattern::matches(p, a.name)))
                .flat_map(|a| on_transport(a, transport))
                .collect();
            defaults
                .iter()
                .copied()
                .filter(|n| !removed.contains(n))
                .collect()
        }
    };
    let mut unique: Vec<&'static str> = Vec::with_capacity(chosen.len());
    for name in chosen {
        if !unique.contains(&name) {
            unique.push(name);
        }
    }
    if unique.is_empty() {
        return Err(KexListError::NothingLeft {
            spec: spec.to_string(),
            transport,
        });
    }
    Ok(unique)
}

#[cfg(test)]
mod tests {
    use super::*;
    use TransportKind::{Quic, Tcp};

    fn tcp_client(spec: &str) -> Result<Vec<&'static str>, KexListError> {
        resolve(Some(spec), Tcp, Role::Client)
    }
    fn quic_any(spec: &str) -> Result<Vec<&'static str>, KexListError> {
        resolve(Some(spec), Quic, Role::Client)
    }

    #[test]
    fn defaults_put_post_quantum_first_and_the_server_drops_big_dh() {
        let tcp = resolve(None, Tcp, Role::Client).unwrap();
        assert_eq!(
            &tcp[..5],
            &[
                "mlkem768x25519-sha256",
                "sntrup761x25519-sha512",
                "sntrup761x25519-sha512@openssh.com",
                "curve25519-sha256",
                "curve25519-sha256@libssh.org"
            ]
        );
        let server = resolve(None, Tcp, Role::Server).unwrap();
        assert!(server.iter().all(|n| !n.contains("group-exchange")
            && !n.contains("group16")
            && !n.contains("group18")));
        assert_eq!(server.last(), Some(&"diffie-hellman-group14-sha256"));
        assert_eq!(resolve(None, Quic, Role::Server).unwrap(), QUIC_DEFAULT);
    }

    #[test]
    fn openssh_names_restrict_quic_too() {
        assert_eq!(
            quic_any("sntrup761x25519-sha512@openssh.com").unwrap(),
            ["x25519-sntrup761"]
        );
        assert_eq!(
            tcp_client("sntrup761x25519-sha512@openssh.com").unwrap(),
            ["sntrup761x25519-sha512@openssh.com"]
        );
        assert_eq!(quic_any("curve25519-sha256").unwrap(), ["x25519"]);
        assert_eq!(
            quic_any("mlkem768x25519-sha256,diffie-hellman-group14-sha256").unwrap(),
            ["x25519-mlkem768"]
        );
    }

    #[test]
    fn quic_names_restrict_tcp_too() {
        assert_eq!(
            tcp_client("x25519-mlkem768").unwrap(),
            ["mlkem768x25519-sha256"]
        );
        assert_eq!(
            tcp_client("x25519-sntrup761,x25519").unwrap(),
            [
                "sntrup761x25519-sha512",
                "sntrup761x25519-sha512@openssh.com",
                "curve25519-sha256",
                "curve25519-sha256@libssh.org"
            ]
        );
    }

    #[test]
    fn plus_minus_caret() {
        assert_eq!(
            resolve(Some("+diffie-hellman-group1-sha1"), Tcp, Role::Server)
                .unwrap()
                .last(),
            Some(&"diffie-hellman-group1-sha1")
        );
        // Appending a QUIC name the defaults already cover changes nothing.
        assert_eq!(quic_any("+curve25519-sha256").unwrap(), QUIC_DEFAULT);
        assert_eq!(
            quic_any("-x25519-sntrup761").unwrap(),
            ["x25519-mlkem768", "x25519"]
        );
        assert_eq!(
            quic_any("^x25519").unwrap(),
            ["x25519", "x25519-sntrup761", "x25519-mlkem768"]
        );
        assert_eq!(
            tcp_client("^x25519-mlkem768").unwrap().first(),
            Some(&"mlkem768x25519-sha256")
        );
        // Patterns in removals, as OpenSSH: a post-quantum-only policy.
        let pq_only = "-curve25519*,ecdh-*,diffie-hellman-*";
        assert_eq!(
            tcp_client(pq_only).unwrap(),
            [
                "mlkem768x25519-sha256",
                "sntrup761x25519-sha512",
                "sntrup761x25519-sha512@openssh.com"
            ]
        );
        assert_eq!(
            quic_any(pq_only).unwrap(),
            ["x25519-sntrup761", "x25519-mlkem768"]
        );
        assert!(tcp_client(pq_only)
            .unwrap()
            .iter()
            .all(|n| is_post_quantum(n)));
        assert_eq!(
            resolve(Some("-diffie-hellman*"), Tcp, Role::Server)
                .unwrap()
                .len(),
            TCP_SERVER_DEFAULT.len() - 1
        );
    }

    #[test]
    fn errors_are_clear() {
        let err = tcp_client("sntrup761x25519-sha512,bogus").unwrap_err();
        assert_eq!(
            err,
            KexListError::Unknown {
                spec: "sntrup761x25519-sha512,bogus".into(),
                name: "bogus".into()
            }
        );
        let text = err.to_string();
        assert!(text.starts_with("Bad SSH2 KexAlgorithms 'sntrup761x25519-sha512,bogus'"));
        assert!(text.contains("x25519-sntrup761"), "{text}");
        // A pattern is only for removals; one that matches nothing is a typo.
        assert!(tcp_client("curve*").is_err());
        assert!(tcp_client("-nope*").is_err());
        assert!(validate("x25519,curve25519-sha256").is_ok());

        let err = quic_any("diffie-hellman-group14-sha256").unwrap_err();
        assert_eq!(
            err,
            KexListError::NothingLeft {
                spec: "diffie-hellman-group14-sha256".into(),
                transport: Quic
            }
        );
        assert!(err
            .to_string()
            .starts_with("no matching key exchange method found"));
        assert!(matches!(
            quic_any(""),
            Err(KexListError::NothingLeft { .. })
        ));
        assert_eq!(quic_any("+").unwrap(), QUIC_DEFAULT);
    }

    #[test]
    fn every_family_has_names_on_both_transports() {
        for a in ALGORITHMS.iter().filter(|a| a.family.is_some()) {
            assert!(!on_transport(a, Tcp).is_empty(), "{}", a.name);
            assert!(!on_transport(a, Quic).is_empty(), "{}", a.name);
        }
        for name in TCP_CLIENT_DEFAULT.iter().chain(TCP_SERVER_DEFAULT) {
            assert_eq!(find(name).map(|a| a.transport), Some(Tcp), "{name}");
        }
    }
}
