//! The `-L` and `-R` arguments (and `LocalForward` / `RemoteForward`), read
//! the way ssh reads them: each side is a TCP port or a Unix-domain socket
//! path, so one parser serves
//!
//! ```text
//! [bind_address:]port:host:hostport     listen on a port, connect to a port
//! [bind_address:]port:/socket           listen on a port, connect to a socket
//! /socket:host:hostport                 listen on a socket, connect to a port
//! /socket:/socket                       listen on a socket, connect to a socket
//! ```
//!
//! As in ssh, a field is a path when it contains a `/`; a field in square
//! brackets is taken literally (IPv6 addresses, paths with colons), and a
//! backslash makes the next character literal.

/// Where a forward listens: a port (on an address) or a socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// `[bind_address:]port`; no address means loopback (GatewayPorts no),
    /// `*` or an empty address means every interface.
    Port {
        bind_address: Option<String>,
        port: u16,
    },
    /// A Unix-domain socket path.
    Path(String),
}

/// Where a forwarded connection goes: `host:port` or a socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Port { host: String, port: u16 },
    Path(String),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Port {
                bind_address: Some(address),
                port,
            } => write!(f, "{address}:{port}"),
            Listen::Port {
                bind_address: None,
                port,
            } => write!(f, "port {port}"),
            Listen::Path(path) => f.write_str(path),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Port { host, port } => write!(f, "{host}:{port}"),
            Target::Path(path) => f.write_str(path),
        }
    }
}

/// One `-L` or `-R`: what listens (on this side for -L, on the server for
/// -R) and where each connection is taken (from the server for -L, from
/// this side for -R).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub listen: Listen,
    pub target: Target,
}

/// Why a forwarding argument could not be read; the text is ssh's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadForward {
    #[error("Bad local forwarding specification '{0}'")]
    Local(String),
    #[error("Bad remote forwarding specification '{0}'")]
    Remote(String),
    /// `-R [bind_address:]port` alone asks the server to be a SOCKS proxy
    /// back into this side, which sshq does not offer.
    #[error(
        "sshq: remote dynamic forwarding (-R '{0}' without a target) is not supported yet; \
         nothing was run"
    )]
    RemoteDynamic(String),
}

impl Forward {
    /// Reads a `-L` argument.
    pub fn parse_local(spec: &str) -> Result<Forward, BadForward> {
        parse(spec).ok_or_else(|| BadForward::Local(spec.to_string()))
    }

    /// Reads a `-R` argument (the same forms as `-L`; the listening side is
    /// the server's).
    pub fn parse_remote(spec: &str) -> Result<Forward, BadForward> {
        if let Some(fields) = split(spec) {
            let dynamic = match fields.as_slice() {
                [port] => !port.is_path,
                [_, port] => !port.is_path,
                _ => false,
            };
            if dynamic {
                return Err(BadForward::RemoteDynamic(spec.to_string()));
            }
        }
        parse(spec).ok_or_else(|| BadForward::Remote(spec.to_string()))
    }
}

/// One field between colons, and whether ssh would read it as a path.
#[derive(Debug)]
struct Field {
    text: String,
    is_path: bool,
}

/// Splits at colons outside brackets; `None` for an unclosed bracket, a
/// bracket not followed by a colon or the end, or a trailing backslash.
fn split(spec: &str) -> Option<Vec<Field>> {
    let mut fields = Vec::new();
    let mut chars = spec.chars().peekable();
    loop {
        let mut field = Field {
            text: String::new(),
            is_path: false,
        };
        if chars.peek() == Some(&'[') {
            chars.next();
            loop {
                match chars.next()? {
                    ']' => break,
                    c => {
                        field.is_path |= c == '/';
                        field.text.push(c);
                    }
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Some(fields);
                }
                Some(':') => {
                    fields.push(field);
                    continue;
                }
                Some(_) => return None,
            }
        }
        loop {
            match chars.next() {
                None => {
                    fields.push(field);
                    return Some(fields);
                }
                Some(':') => break,
                Some('\\') => field.text.push(chars.next()?),
                Some(c) => {
                    field.is_path |= c == '/';
                    field.text.push(c);
                }
            }
        }
        fields.push(field);
    }
}

fn port(field: &Field) -> Option<u16> {
    if field.text.is_empty() || !field.text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    field.text.parse().ok()
}

fn host(field: &Field) -> Option<String> {
    (!field.text.is_empty()).then(|| field.text.clone())
}

fn listen_port(address: Option<&Field>, port_field: &Field) -> Option<Listen> {
    Some(Listen::Port {
        bind_address: address.map(|a| a.text.clone()),
        port: port(port_field)?,
    })
}

/// The forms of OpenSSH's parse_forward, minus the dynamic ones.
fn parse(spec: &str) -> Option<Forward> {
    let fields = split(spec)?;
    let path = |f: &Field| f.is_path.then(|| f.text.clone());
    let (listen, target) = match fields.as_slice() {
        [listen, target] if listen.is_path && target.is_path => {
            (Listen::Path(path(listen)?), Target::Path(path(target)?))
        }
        [listen, target] if target.is_path => {
            (listen_port(None, listen)?, Target::Path(path(target)?))
        }
        [listen, host_field, port_field] if listen.is_path => (
            Listen::Path(path(listen)?),
            Target::Port {
                host: host(host_field)?,
                port: port(port_field)?,
            },
        ),
        [address, listen, target] if target.is_path => (
            listen_port(Some(address), listen)?,
            Target::Path(path(target)?),
        ),
        [listen, host_field, port_field] => (
            listen_port(None, listen)?,
            Target::Port {
                host: host(host_field)?,
                port: port(port_field)?,
            },
        ),
        [address, listen, host_field, port_field] => (
            listen_port(Some(address), listen)?,
            Target::Port {
                host: host(host_field)?,
                port: port(port_field)?,
            },
        ),
        _ => return None,
    };
    Some(Forward { listen, target })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port_listen(address: Option<&str>, port: u16) -> Listen {
        Listen::Port {
            bind_address: address.map(str::to_string),
            port,
        }
    }

    fn port_target(host: &str, port: u16) -> Target {
        Target::Port {
            host: host.to_string(),
            port,
        }
    }

    #[test]
    fn tcp_forms() {
        let f = Forward::parse_local("8080:example.com:80").unwrap();
        assert_eq!(f.listen, port_listen(None, 8080));
        assert_eq!(f.target, port_target("example.com", 80));
        let f = Forward::parse_local("127.0.0.1:8080:[::1]:22").unwrap();
        assert_eq!(f.listen, port_listen(Some("127.0.0.1"), 8080));
        assert_eq!(f.target, port_target("::1", 22));
        let f = Forward::parse_local("[::1]:8080:h:1").unwrap();
        assert_eq!(f.listen, port_listen(Some("::1"), 8080));
        let f = Forward::parse_remote("*:2222:h:22").unwrap();
        assert_eq!(f.listen, port_listen(Some("*"), 2222));
        let f = Forward::parse_remote(":2222:h:22").unwrap();
        assert_eq!(f.listen, port_listen(Some(""), 2222));
        let f = Forward::parse_remote("0:localhost:22").unwrap();
        assert_eq!(f.listen, port_listen(None, 0));
    }

    #[test]
    fn unix_socket_forms() {
        let f = Forward::parse_local("/tmp/l.sock:db:5432").unwrap();
        assert_eq!(f.listen, Listen::Path("/tmp/l.sock".into()));
        assert_eq!(f.target, port_target("db", 5432));
        let f = Forward::parse_local("5432:/run/postgresql/.s.PGSQL.5432").unwrap();
        assert_eq!(f.listen, port_listen(None, 5432));
        assert_eq!(
            f.target,
            Target::Path("/run/postgresql/.s.PGSQL.5432".into())
        );
        let f = Forward::parse_local("127.0.0.1:5432:/run/x.sock").unwrap();
        assert_eq!(f.listen, port_listen(Some("127.0.0.1"), 5432));
        assert_eq!(f.target, Target::Path("/run/x.sock".into()));
        let f = Forward::parse_remote("/tmp/r.sock:/tmp/l.sock").unwrap();
        assert_eq!(f.listen, Listen::Path("/tmp/r.sock".into()));
        assert_eq!(f.target, Target::Path("/tmp/l.sock".into()));
        // Brackets and backslashes keep colons inside a path.
        let f = Forward::parse_local("[/tmp/a:b.sock]:h:1").unwrap();
        assert_eq!(f.listen, Listen::Path("/tmp/a:b.sock".into()));
        let f = Forward::parse_local("/tmp/a\\:b.sock:h:1").unwrap();
        assert_eq!(f.listen, Listen::Path("/tmp/a:b.sock".into()));
    }

    #[test]
    fn bad_forms_are_named_as_ssh_names_them() {
        for bad in [
            "8080",
            "8080:h",
            "x:h:1",
            "1:h:65536",
            "1::22",
            "a:b:c:d:e",
            "[::1:1:h:2",
            "[::1]x:1:h:2",
            "/tmp/s:h",
            "1:h:2\\",
        ] {
            assert_eq!(
                Forward::parse_local(bad).unwrap_err().to_string(),
                format!("Bad local forwarding specification '{bad}'"),
                "{bad}"
            );
        }
        assert_eq!(
            Forward::parse_remote("1:h:x").unwrap_err(),
            BadForward::Remote("1:h:x".into())
        );
        for dynamic in ["1080", "127.0.0.1:1080"] {
            assert_eq!(
                Forward::parse_remote(dynamic).unwrap_err(),
                BadForward::RemoteDynamic(dynamic.into())
            );
        }
    }
}
