//! Dynamic forwarding (-D, `DynamicForward`): a SOCKS4, SOCKS4a and SOCKS5
//! proxy on the client; each CONNECT becomes a `direct-tcpip` channel whose
//! target the server resolves and connects to (so domain names are resolved
//! on the server side, as ssh does).
//!
//! The handshake parser is our own rather than a crate's: `fast-socks5`
//! (checked at 1.0.0) serves SOCKS5 only (its `socks4` feature is a client),
//! and its server wants to connect or resolve itself, whereas here the only
//! thing wanted is the raw target to hand to the server. The three server
//! handshakes are a few dozen lines; every field is length-checked and
//! bounded, and nothing past the request is read, so the bytes a client
//! sends after its request all reach the channel.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use sshq_core::channel::{ChannelKind, OpenFailureReason};
use sshq_core::error::TransportError;
use sshq_core::transport::{Channel, ChannelControl, ChannelParts, Connection};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// A parsed `-D [bind_address:]port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicForward {
    pub bind_address: Option<String>,
    pub bind_port: u16,
}

/// Why a dynamic forwarding spec could not be read.
#[derive(Debug, thiserror::Error)]
#[error("Bad dynamic forwarding specification '{0}'")]
pub struct BadDynamicForward(pub String);

impl DynamicForward {
    /// Parses `port`, `addr:port`, `[v6addr]:port` or `*:port` (an empty
    /// or `*` address means all interfaces).
    pub fn parse(spec: &str) -> Result<DynamicForward, BadDynamicForward> {
        let bad = || BadDynamicForward(spec.to_string());
        let (bind_address, port) = if let Some(rest) = spec.strip_prefix('[') {
            let (addr, after) = rest.split_once(']').ok_or_else(bad)?;
            let port = after.strip_prefix(':').ok_or_else(bad)?;
            if addr.is_empty() || addr.contains(['[', ']']) {
                return Err(bad());
            }
            (Some(addr.to_string()), port)
        } else {
            match spec.rsplit_once(':') {
                // A bare IPv6 address without brackets is ambiguous: refuse.
                Some((addr, _)) if addr.contains([':', '[', ']']) => return Err(bad()),
                Some((addr, port)) => (Some(addr.to_string()), port),
                None => (None, spec),
            }
        };
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let bind_port = port.parse::<u16>().map_err(|_| bad())?;
        Ok(DynamicForward {
            bind_address,
            bind_port,
        })
    }

    /// Where to listen (see `forward::listen_address`).
    #[cfg(test)]
    fn listen_on(&self) -> String {
        super::listen_address(self.bind_address.as_deref(), self.bind_port)
    }
}

/// Binds the listener of one -D; on failure, ssh's message lines (without
/// the closing "Could not request local forwarding.").
pub async fn bind(forward: &DynamicForward) -> Result<TcpListener, super::ForwardError> {
    super::bind_listener(forward.bind_address.as_deref(), forward.bind_port).await
}

/// How long a client may take to send its whole request.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Accepts SOCKS clients until the task is dropped.
pub async fn serve<C: Connection>(conn: Arc<C>, listener: TcpListener) {
    loop {
        let (mut stream, peer) = super::accept(&listener, "dynamic forward").await;
        let conn = conn.clone();
        tokio::spawn(async move {
            let request =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_request(&mut stream)).await {
                    Ok(Ok(request)) => request,
                    Ok(Err(e)) => {
                        tracing::debug!("dynamic forward from {peer}: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("dynamic forward from {peer}: handshake timed out");
                        return;
                    }
                };
            let kind = ChannelKind::DirectTcpip {
                host: request.host.clone(),
                port: u32::from(request.port),
                originator: peer.ip().to_string(),
                originator_port: u32::from(peer.port()),
            };
            let opened = match conn.open_channel(kind).await {
                Ok(channel) => confirmed(channel).await,
                Err(e) => Err(e),
            };
            match opened {
                Ok(channel) => {
                    let _listed = super::listing::list(format!(
                        "dynamic-tcpip: {}:{}, connect from {} port {}",
                        request.host,
                        request.port,
                        peer.ip(),
                        peer.port()
                    ));
                    if stream.write_all(&request.version.success()).await.is_ok() {
                        crate::forward::local::splice(channel, stream).await;
                    }
                }
                Err(e) => {
                    let reason = match &e {
                        TransportError::OpenRefused(failure) => failure.to_string(),
                        other => other.to_string(),
                    };
                    eprintln!(
                        "channel: open failed: {reason} (dynamic forwarding to {}:{})",
                        request.host, request.port
                    );
                    let _ = stream.write_all(&request.version.failure(&e)).await;
                    let _ = stream.shutdown().await;
                }
            }
        });
    }
}

/// Waits until the server has accepted `channel`, so that a refused target
/// gets a SOCKS failure rather than a success followed by a closed
/// connection. Over TCP `open_channel` already waited for the answer; over
/// QUIC a channel is usable at once and a refusal only shows later.
async fn confirmed<Ch: Channel>(channel: Ch) -> Result<Split<Ch>, TransportError> {
    let kind = channel.kind().clone();
    let parts = channel.split();
    if let Err(e @ TransportError::OpenRefused(_)) = parts.control.opened().await {
        return Err(e);
    }
    // Anything else (even a channel the target already closed) is an
    // accepted open: its data may still be waiting to be read.
    Ok(Split { kind, parts })
}

/// A channel already split (to wait for its open), handed on to
/// [`crate::forward::local::splice`] as a channel again.
struct Split<Ch: Channel> {
    kind: ChannelKind,
    parts: ChannelParts<Ch>,
}

impl<Ch: Channel> Channel for Split<Ch> {
    type Reader = Ch::Reader;
    type Writer = Ch::Writer;
    type Control = Ch::Control;
    type Requests = Ch::Requests;

    fn kind(&self) -> &ChannelKind {
        &self.kind
    }

    fn split(self) -> ChannelParts<Self> {
        let ChannelParts {
            data_in,
            ext_in,
            data_out,
            ext_out,
            control,
            requests,
        } = self.parts;
        ChannelParts {
            data_in,
            ext_in,
            data_out,
            ext_out,
            control,
            requests,
        }
    }
}

/// Which protocol a client spoke (and so how to answer it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Socks4,
    Socks5,
}

impl Version {
    /// The reply granting the request. The bound address is not known on
    /// this side (the server connects), so it is all zeros, as in ssh.
    fn success(self) -> Vec<u8> {
        match self {
            Version::Socks4 => vec![0, SOCKS4_GRANTED, 0, 0, 0, 0, 0, 0],
            Version::Socks5 => socks5_reply(SOCKS5_SUCCEEDED),
        }
    }

    /// The reply refusing the request because the channel did not open.
    fn failure(self, error: &TransportError) -> Vec<u8> {
        match self {
            Version::Socks4 => vec![0, SOCKS4_REJECTED, 0, 0, 0, 0, 0, 0],
            Version::Socks5 => socks5_reply(match error {
                TransportError::OpenRefused(f) => match f.reason {
                    OpenFailureReason::ConnectFailed => SOCKS5_CONNECTION_REFUSED,
                    OpenFailureReason::AdministrativelyProhibited => SOCKS5_NOT_ALLOWED,
                    _ => SOCKS5_GENERAL_FAILURE,
                },
                _ => SOCKS5_GENERAL_FAILURE,
            }),
        }
    }
}

/// A CONNECT request: where the server is to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub version: Version,
    /// An IP address in text form or a domain name (resolved by the server).
    pub host: String,
    pub port: u16,
}

/// Why a handshake failed (after the refusing reply, where there is one).
#[derive(Debug, thiserror::Error)]
pub enum SocksError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("unknown SOCKS version {0}")]
    BadVersion(u8),
    #[error("SOCKS5 client offers no acceptable authentication method")]
    NoAcceptableMethod,
    #[error("unsupported SOCKS{0} command {1}")]
    UnsupportedCommand(u8, u8),
    #[error("unsupported SOCKS5 address type {0}")]
    UnsupportedAddressType(u8),
    #[error("malformed SOCKS request: {0}")]
    Malformed(&'static str),
}

const SOCKS4_GRANTED: u8 = 0x5a;
const SOCKS4_REJECTED: u8 = 0x5b;
const SOCKS5_SUCCEEDED: u8 = 0x00;
const SOCKS5_GENERAL_FAILURE: u8 = 0x01;
const SOCKS5_NOT_ALLOWED: u8 = 0x02;
const SOCKS5_CONNECTION_REFUSED: u8 = 0x05;
const SOCKS5_COMMAND_NOT_SUPPORTED: u8 = 0x07;
const SOCKS5_ADDRESS_TYPE_NOT_SUPPORTED: u8 = 0x08;
const SOCKS_CONNECT: u8 = 0x01;
const SOCKS5_NO_AUTH: u8 = 0x00;
const SOCKS5_NO_ACCEPTABLE: u8 = 0xff;
/// The most a SOCKS4 user id or SOCKS4a host name may take (its NUL
/// included); SOCKS5 names are limited to 255 by their length byte.
const SOCKS4_MAX_FIELD: usize = 256;

fn socks5_reply(code: u8) -> Vec<u8> {
    vec![5, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

/// Reads one SOCKS4, SOCKS4a or SOCKS5 CONNECT request from `stream`,
/// answering the SOCKS5 method negotiation and refusing what is not
/// supported. Reads exactly the request's bytes (as [`parse_request`] asks
/// for them) and never more than a few hundred in all.
pub async fn read_request<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
) -> Result<Request, SocksError> {
    let mut received = Vec::new();
    loop {
        match parse_request(&received) {
            Ok(Parse::Done { request, .. }) => return Ok(request),
            Ok(Parse::NeedMore { bytes, reply }) => {
                if let Some(reply) = reply {
                    stream.write_all(&reply).await?;
                }
                let mut more = vec![0u8; bytes];
                stream.read_exact(&mut more).await?;
                received.extend_from_slice(&more);
            }
            Err(Refused { error, reply }) => {
                if let Some(reply) = reply {
                    let _ = stream.write_all(&reply).await;
                }
                return Err(error);
            }
        }
    }
}

/// How far the bytes received so far go toward a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// Read exactly `bytes` more (no more: what follows the request belongs
    /// to the channel), then parse everything received again. `reply` is
    /// the SOCKS5 method selection, to be written before reading on: the
    /// client waits for it. It comes once, when the bytes end exactly at
    /// the end of the greeting, as they do when read as asked.
    NeedMore {
        bytes: usize,
        reply: Option<[u8; 2]>,
    },
    /// A complete request, the first `len` bytes of the input.
    Done { request: Request, len: usize },
}

/// A request that cannot be served, with the reply (if the protocol has
/// one) to send before closing.
#[derive(Debug)]
pub struct Refused {
    pub error: SocksError,
    pub reply: Option<Vec<u8>>,
}

/// Parses the start of a SOCKS4, SOCKS4a or SOCKS5 connection: pure, over
/// the bytes received so far, so that every path can be tested and fuzzed
/// without a socket. Every length is checked before use; the longest
/// request is a few hundred bytes.
pub fn parse_request(input: &[u8]) -> Result<Parse, Refused> {
    let mut cursor = Cursor {
        input,
        at: 0,
        greeted: false,
    };
    let parsed = match cursor.byte() {
        Ok(4) => parse_socks4(&mut cursor),
        Ok(5) => parse_socks5(&mut cursor),
        Ok(other) => Err(refuse(SocksError::BadVersion(other), None)),
        Err(stop) => Err(stop),
    };
    match parsed {
        Ok(request) => Ok(Parse::Done {
            request,
            len: cursor.at,
        }),
        Err(Stop::NeedMore(bytes)) => Ok(Parse::NeedMore {
            bytes,
            reply: cursor.greeted.then_some([5, SOCKS5_NO_AUTH]),
        }),
        Err(Stop::Refused(refused)) => Err(refused),
    }
}

/// Why parsing stopped before a whole request.
enum Stop {
    /// This many more bytes are needed (at least; exactly, for fixed fields).
    NeedMore(usize),
    Refused(Refused),
}

fn refuse(error: SocksError, reply: Option<Vec<u8>>) -> Stop {
    Stop::Refused(Refused { error, reply })
}

/// Reads fields off the front of the received bytes.
struct Cursor<'a> {
    input: &'a [u8],
    at: usize,
    /// The SOCKS5 greeting ends exactly where the input does: the method
    /// selection is due now.
    greeted: bool,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Stop> {
        let rest = self.input.get(self.at..).unwrap_or_default();
        match rest.get(..n) {
            Some(field) => {
                self.at += n;
                Ok(field)
            }
            None => Err(Stop::NeedMore(n - rest.len())),
        }
    }

    fn byte(&mut self) -> Result<u8, Stop> {
        let field = self.take(1)?;
        Ok(field.first().copied().unwrap_or(0))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Stop> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A field up to its NUL (which is consumed, not returned), refusing
    /// fields longer than [`SOCKS4_MAX_FIELD`]. Without a NUL yet, one more
    /// byte is asked for, so nothing past the NUL is ever read.
    fn nul_terminated(&mut self) -> Result<&'a [u8], Stop> {
        let rest = self.input.get(self.at..).unwrap_or_default();
        let window = rest.get(..SOCKS4_MAX_FIELD).unwrap_or(rest);
        match window.iter().position(|&b| b == 0) {
            Some(end) => {
                self.at += end + 1;
                Ok(window.get(..end).unwrap_or_default())
            }
            None if window.len() >= SOCKS4_MAX_FIELD => {
                Err(refuse(SocksError::Malformed("SOCKS4 field too long"), None))
            }
            None => Err(Stop::NeedMore(1)),
        }
    }
}

/// SOCKS4/4a after the version byte: CMD, DSTPORT, DSTIP, USERID NUL and,
/// for 4a (DSTIP 0.0.0.x, x ≠ 0), HOSTNAME NUL.
fn parse_socks4(cursor: &mut Cursor<'_>) -> Result<Request, Stop> {
    let [command, port_high, port_low, a, b, c, d] = cursor.array::<7>()?;
    let port = u16::from_be_bytes([port_high, port_low]);
    let ip = Ipv4Addr::new(a, b, c, d);
    // The user id is read (to find where the request ends) and ignored.
    cursor.nul_terminated()?;
    let socks4a = matches!(ip.octets(), [0, 0, 0, x] if x != 0);
    let host = if socks4a {
        let name = cursor.nul_terminated()?;
        host_name(name).map_err(|e| refuse(e, None))?
    } else {
        ip.to_string()
    };
    if command != SOCKS_CONNECT {
        let reply = vec![0, SOCKS4_REJECTED, 0, 0, 0, 0, 0, 0];
        return Err(refuse(
            SocksError::UnsupportedCommand(4, command),
            Some(reply),
        ));
    }
    Ok(Request {
        version: Version::Socks4,
        host,
        port,
    })
}

/// A domain name from the wire: non-empty UTF-8 without NULs.
fn host_name(bytes: &[u8]) -> Result<String, SocksError> {
    if bytes.is_empty() || bytes.contains(&0) {
        return Err(SocksError::Malformed("empty or invalid host name"));
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| SocksError::Malformed("host name is not UTF-8"))
}

/// SOCKS5 after the version byte: the method negotiation (only "no
/// authentication" is accepted), then VER CMD RSV ATYP DST.ADDR DST.PORT.
fn parse_socks5(cursor: &mut Cursor<'_>) -> Result<Request, Stop> {
    let count = cursor.byte()?;
    let methods = cursor.take(usize::from(count))?;
    if !methods.contains(&SOCKS5_NO_AUTH) {
        let reply = vec![5, SOCKS5_NO_ACCEPTABLE];
        return Err(refuse(SocksError::NoAcceptableMethod, Some(reply)));
    }
    cursor.greeted = cursor.at == cursor.input.len();

    let [version, command, _reserved, address_type] = cursor.array::<4>()?;
    if version != 5 {
        return Err(refuse(SocksError::BadVersion(version), None));
    }
    let host = match address_type {
        1 => IpAddr::V4(Ipv4Addr::from(cursor.array::<4>()?)).to_string(),
        3 => {
            let len = cursor.byte()?;
            let name = cursor.take(usize::from(len))?;
            let reply = || Some(socks5_reply(SOCKS5_GENERAL_FAILURE));
            host_name(name).map_err(|e| refuse(e, reply()))?
        }
        4 => IpAddr::V6(Ipv6Addr::from(cursor.array::<16>()?)).to_string(),
        other => {
            // The address's length is unknown: the request cannot be read on.
            let reply = Some(socks5_reply(SOCKS5_ADDRESS_TYPE_NOT_SUPPORTED));
            return Err(refuse(SocksError::UnsupportedAddressType(other), reply));
        }
    };
    let port = u16::from_be_bytes(cursor.array::<2>()?);
    if command != SOCKS_CONNECT {
        let reply = Some(socks5_reply(SOCKS5_COMMAND_NOT_SUPPORTED));
        return Err(refuse(SocksError::UnsupportedCommand(5, command), reply));
    }
    Ok(Request {
        version: Version::Socks5,
        host,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sshq_core::channel::OpenFailure;

    #[test]
    fn dynamic_forward_specs() {
        let f = DynamicForward::parse("1080").unwrap();
        assert_eq!((f.bind_address.as_deref(), f.bind_port), (None, 1080));
        assert_eq!(f.listen_on(), "127.0.0.1:1080");
        let f = DynamicForward::parse("127.0.0.2:1081").unwrap();
        assert_eq!(f.bind_address.as_deref(), Some("127.0.0.2"));
        assert_eq!(f.listen_on(), "127.0.0.2:1081");
        let f = DynamicForward::parse("[::1]:1082").unwrap();
        assert_eq!(f.bind_address.as_deref(), Some("::1"));
        assert_eq!(f.listen_on(), "[::1]:1082");
        assert_eq!(
            DynamicForward::parse("*:1").unwrap().listen_on(),
            "0.0.0.0:1"
        );
        assert_eq!(
            DynamicForward::parse(":1").unwrap().listen_on(),
            "0.0.0.0:1"
        );
        assert_eq!(
            DynamicForward::parse("localhost:9").unwrap().listen_on(),
            "127.0.0.1:9"
        );
        for bad in [
            "", "x", "99999", "-1", "+1", "1:", "a:b", "::1:1", "[::1]", "[::1]1", "[::1:1",
            "[]:1", "1 ", "h:1:2",
        ] {
            assert!(DynamicForward::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    /// A stream reading `input` and collecting what is written to it.
    fn stream(input: &[u8]) -> tokio::io::Join<&[u8], Vec<u8>> {
        tokio::io::join(input, Vec::new())
    }

    async fn parse(input: &[u8]) -> (Result<Request, SocksError>, Vec<u8>, usize) {
        let mut s = stream(input);
        let result = read_request(&mut s).await;
        let (rest, written) = s.into_inner();
        (result, written, rest.len())
    }

    #[tokio::test]
    async fn socks5_requests() {
        // Domain name, with bytes after the request left unread.
        let mut input = vec![5, 2, 2, 0, 5, 1, 0, 3, 9];
        input.extend_from_slice(b"localhost");
        input.extend_from_slice(&[0x1f, 0x90]);
        input.extend_from_slice(b"GET /");
        let (r, written, left) = parse(&input).await;
        let r = r.unwrap();
        assert_eq!(
            r,
            Request {
                version: Version::Socks5,
                host: "localhost".into(),
                port: 8080
            }
        );
        assert_eq!(written, [5, 0]);
        assert_eq!(left, 5);

        let (r, _, left) = parse(&[5, 1, 0, 5, 1, 0, 1, 10, 0, 0, 1, 0, 22]).await;
        assert_eq!(r.unwrap().host, "10.0.0.1");
        assert_eq!(left, 0);

        let mut v6 = vec![5, 1, 0, 5, 1, 0, 4];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[0, 80]);
        let r = parse(&v6).await.0.unwrap();
        assert_eq!((r.host.as_str(), r.port), ("::1", 80));
    }

    #[tokio::test]
    async fn socks5_refusals() {
        // Only user/password offered: "no acceptable methods".
        let (r, written, _) = parse(&[5, 1, 2]).await;
        assert!(matches!(r, Err(SocksError::NoAcceptableMethod)));
        assert_eq!(written, [5, 0xff]);
        // BIND: command not supported.
        let (r, written, _) = parse(&[5, 1, 0, 5, 2, 0, 1, 1, 2, 3, 4, 0, 1]).await;
        assert!(matches!(r, Err(SocksError::UnsupportedCommand(5, 2))));
        assert_eq!(written[2..], socks5_reply(SOCKS5_COMMAND_NOT_SUPPORTED));
        // Unknown address type.
        let (r, written, _) = parse(&[5, 1, 0, 5, 1, 0, 9, 1, 2]).await;
        assert!(matches!(r, Err(SocksError::UnsupportedAddressType(9))));
        assert_eq!(
            written[2..],
            socks5_reply(SOCKS5_ADDRESS_TYPE_NOT_SUPPORTED)
        );
        // Empty and non-UTF-8 names.
        assert!(parse(&[5, 1, 0, 5, 1, 0, 3, 0, 0, 80]).await.0.is_err());
        assert!(parse(&[5, 1, 0, 5, 1, 0, 3, 2, 0xff, 0xfe, 0, 80])
            .await
            .0
            .is_err());
        // Wrong version in the request.
        assert!(matches!(
            parse(&[5, 1, 0, 4, 1, 0, 1, 1, 2, 3, 4, 0, 1]).await.0,
            Err(SocksError::BadVersion(4))
        ));
        // Unknown protocol version.
        assert!(matches!(
            parse(&[6]).await.0,
            Err(SocksError::BadVersion(6))
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\n").await.0,
            Err(SocksError::BadVersion(b'G'))
        ));
    }

    #[tokio::test]
    async fn socks4_requests() {
        let (r, written, left) = parse(&[4, 1, 0, 80, 127, 0, 0, 1, b'u', 0, b'x']).await;
        assert_eq!(
            r.unwrap(),
            Request {
                version: Version::Socks4,
                host: "127.0.0.1".into(),
                port: 80
            }
        );
        assert!(written.is_empty());
        assert_eq!(left, 1);
        // SOCKS4a: 0.0.0.x then a host name after the user id.
        let mut input = vec![4, 1, 1, 0, 0, 0, 0, 7, 0];
        input.extend_from_slice(b"example.org\0");
        let r = parse(&input).await.0.unwrap();
        assert_eq!((r.host.as_str(), r.port), ("example.org", 256));
        // 0.0.0.0 is a plain (if odd) address, not 4a.
        let r = parse(&[4, 1, 0, 1, 0, 0, 0, 0, 0]).await.0.unwrap();
        assert_eq!(r.host, "0.0.0.0");
        // BIND is refused with 0x5b.
        let (r, written, _) = parse(&[4, 2, 0, 80, 1, 2, 3, 4, 0]).await;
        assert!(matches!(r, Err(SocksError::UnsupportedCommand(4, 2))));
        assert_eq!(written, [0, SOCKS4_REJECTED, 0, 0, 0, 0, 0, 0]);
        // Empty 4a host name.
        assert!(parse(&[4, 1, 0, 80, 0, 0, 0, 1, 0, 0]).await.0.is_err());
    }

    #[tokio::test]
    async fn truncated_requests_fail_cleanly() {
        let mut full5 = vec![5, 1, 0, 5, 1, 0, 3, 4];
        full5.extend_from_slice(b"host\0\x50");
        let mut full4a = vec![4, 1, 0, 80, 0, 0, 0, 1, b'u', 0];
        full4a.extend_from_slice(b"host\0");
        let mut v6 = vec![5, 1, 0, 5, 1, 0, 4];
        v6.extend_from_slice(&[0; 18]);
        for full in [full5, full4a, v6] {
            assert!(parse(&full).await.0.is_ok());
            for cut in 0..full.len() {
                let result = parse(&full[..cut]).await.0;
                assert!(result.is_err(), "{:?} accepted", &full[..cut]);
            }
        }
    }

    #[tokio::test]
    async fn oversized_fields_are_bounded() {
        // An endless user id: refused after SOCKS4_MAX_FIELD bytes.
        let endless = (&[4u8, 1, 0, 80, 1, 2, 3, 4][..]).chain(tokio::io::repeat(b'a'));
        let mut s = tokio::io::join(endless, Vec::new());
        assert!(matches!(
            read_request(&mut s).await,
            Err(SocksError::Malformed(_))
        ));
        // An endless 4a host name, likewise.
        let endless = (&[4u8, 1, 0, 80, 0, 0, 0, 1, 0][..]).chain(tokio::io::repeat(b'a'));
        let mut s = tokio::io::join(endless, Vec::new());
        assert!(read_request(&mut s).await.is_err());
        // Exactly the longest fields pass.
        let mut input = vec![4, 1, 0, 80, 0, 0, 0, 1];
        input.extend(std::iter::repeat_n(b'u', SOCKS4_MAX_FIELD - 1));
        input.push(0);
        input.extend(std::iter::repeat_n(b'h', SOCKS4_MAX_FIELD - 1));
        input.push(0);
        assert_eq!(parse(&input).await.0.unwrap().host.len(), 255);
        // A SOCKS5 greeting followed by endless garbage reads only what its
        // lengths say.
        let mut greeting = vec![5, 255];
        greeting.extend(std::iter::repeat_n(0, 255));
        greeting.extend_from_slice(&[5, 1, 0, 3, 255]);
        greeting.extend(std::iter::repeat_n(b'n', 255));
        greeting.extend_from_slice(&[0, 80]);
        let mut s = tokio::io::join((&greeting[..]).chain(tokio::io::repeat(b'z')), Vec::new());
        let r = read_request(&mut s).await.unwrap();
        assert_eq!(r.host.len(), 255);
        // Nothing beyond the request was consumed.
        let (mut rest, _) = s.into_inner();
        let mut next = [0u8; 1];
        rest.read_exact(&mut next).await.unwrap();
        assert_eq!(next, [b'z']);
    }

    #[test]
    fn the_pure_parser_asks_for_exactly_what_it_needs() {
        let more = |bytes, reply| Ok::<_, ()>(Parse::NeedMore { bytes, reply });
        let parse = |input: &[u8]| parse_request(input).map_err(|_| ());
        assert_eq!(parse(&[]), more(1, None));
        assert_eq!(parse(&[5]), more(1, None));
        assert_eq!(parse(&[5, 2]), more(2, None));
        // The method selection is due exactly when the greeting is complete.
        assert_eq!(parse(&[5, 2, 1, 0]), more(4, Some([5, 0])));
        assert_eq!(parse(&[5, 2, 1, 0, 5]), more(3, None));
        assert_eq!(parse(&[5, 2, 1, 0, 5, 1, 0, 3]), more(1, None));
        assert_eq!(parse(&[5, 2, 1, 0, 5, 1, 0, 3, 4, b'h']), more(3, None));
        // NUL-terminated fields: one byte at a time.
        assert_eq!(parse(&[4, 1, 0, 80, 1, 2, 3, 4, b'u']), more(1, None));
        // A complete request says how long it was; what follows is not read.
        let input = [5, 1, 0, 5, 1, 0, 1, 10, 0, 0, 1, 0, 22, 99];
        let Ok(Parse::Done { request, len }) = parse_request(&input) else {
            panic!("not parsed");
        };
        assert_eq!(
            (request.host.as_str(), request.port, len),
            ("10.0.0.1", 22, 13)
        );
    }

    #[test]
    fn refusals_carry_their_replies() {
        let refused = |input: &[u8]| match parse_request(input) {
            Err(Refused { error, reply }) => (error.to_string(), reply),
            other => panic!("{input:?} not refused: {other:?}"),
        };
        assert_eq!(refused(&[5, 1, 2]).1, Some(vec![5, 0xff]));
        assert_eq!(refused(&[6]).1, None);
        assert_eq!(refused(&[5, 1, 0, 4, 1, 0, 1]).1, None);
        assert_eq!(
            refused(&[5, 1, 0, 5, 1, 0, 9]).1,
            Some(socks5_reply(SOCKS5_ADDRESS_TYPE_NOT_SUPPORTED))
        );
        assert_eq!(
            refused(&[4, 2, 0, 80, 1, 2, 3, 4, 0]).1,
            Some(vec![0, SOCKS4_REJECTED, 0, 0, 0, 0, 0, 0])
        );
        let mut long = vec![4, 1, 0, 80, 1, 2, 3, 4];
        long.extend([b'u'; SOCKS4_MAX_FIELD]);
        assert_eq!(
            refused(&long).0,
            "malformed SOCKS request: SOCKS4 field too long"
        );
    }

    #[test]
    fn failure_replies() {
        let refused = TransportError::OpenRefused(OpenFailure {
            reason: OpenFailureReason::ConnectFailed,
            message: String::new(),
        });
        assert_eq!(
            Version::Socks5.failure(&refused)[1],
            SOCKS5_CONNECTION_REFUSED
        );
        assert_eq!(
            Version::Socks5.failure(&TransportError::ChannelClosed)[1],
            SOCKS5_GENERAL_FAILURE
        );
        assert_eq!(Version::Socks4.failure(&refused)[1], SOCKS4_REJECTED);
        assert_eq!(Version::Socks4.success()[1], SOCKS4_GRANTED);
        assert_eq!(Version::Socks5.success(), [5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    }
}
