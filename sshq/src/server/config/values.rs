//! Values that several keywords share: `%` tokens in paths, and
//! `host:port` forms (ListenAddress, PermitOpen, PermitListen).

use super::{parse_port, ListenAddress};

/// A `%` token AuthorizedKeysFile does not know (`%` alone at the end too).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("%{}", .0.map(String::from).unwrap_or_default())]
pub(super) struct UnknownToken(pub(super) Option<char>);

/// Replaces `%h`, `%u` and `%%`; any other token is the error.
/// (`Path::join` with an absolute result keeps it, which gives sshd's relative rule.)
pub(super) fn expand_tokens(
    template: &str,
    user: &str,
    home: &str,
) -> Result<String, UnknownToken> {
    let mut out = String::new();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => out.push_str(home),
            Some('u') => out.push_str(user),
            Some('%') => out.push('%'),
            other => return Err(UnknownToken(other)),
        }
    }
    Ok(out)
}

/// Splits `host:port` or `[host]:port` (the form IPv6 needs).
pub(super) fn split_host_port(s: &str) -> Option<(&str, &str)> {
    match s.strip_prefix('[') {
        Some(rest) => rest.split_once("]:"),
        None => s.rsplit_once(':'),
    }
}

/// Parses a `ListenAddress` value: `host`, `host:port`, `[host]:port`, `[host]`, or
/// a bare IPv6 address (more than one colon, so no port can be meant).
pub(crate) fn parse_listen(s: &str) -> Result<ListenAddress, &'static str> {
    let (host, port) = match s.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, tail)) => (
                host,
                Some(tail.strip_prefix(':').ok_or("bad address:port usage")?),
            ),
            None => return Err("bad address:port usage"),
        },
        None => match s.split_once(':') {
            Some((host, port)) if !port.contains(':') => (host, Some(port)),
            _ => (s, None),
        },
    };
    if host.is_empty() {
        return Err("bad address:port usage");
    }
    let port = port
        .map(|p| parse_port(p).ok_or("bad port number"))
        .transpose()?;
    Ok(ListenAddress {
        host: host.to_string(),
        port,
    })
}
