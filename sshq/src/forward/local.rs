//! Local port forwarding: -L on the
//! client (local listener → direct-tcpip channel) and direct-tcpip on the
//! server (channel → outgoing TCP connection). Over QUIC each forwarded
//! connection is its own stream, so one stalled forward stalls nothing else.

use std::sync::Arc;

use sshq_core::channel::ChannelKind;
use sshq_core::transport::{Channel, ChannelParts, Connection};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// A parsed `-L [bind_address:]port:host:hostport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalForward {
    pub bind_address: Option<String>,
    pub bind_port: u16,
    pub host: String,
    pub host_port: u16,
}

/// Why a forwarding spec could not be read.
#[derive(Debug, thiserror::Error)]
#[error("Bad local forwarding specification '{0}'")]
pub struct BadForward(pub String);

impl LocalForward {
    /// Parses ssh's `-L` syntax (IPv6 addresses in brackets; `*` or an empty
    /// bind address means all interfaces).
    pub fn parse(spec: &str) -> Result<LocalForward, BadForward> {
        let bad = || BadForward(spec.to_string());
        let fields = split_fields(spec).ok_or_else(bad)?;
        let (bind_address, rest) = match fields.len() {
            3 => (None, &fields[..]),
            4 => (Some(fields[0].clone()), &fields[1..]),
            _ => return Err(bad()),
        };
        let [port, host, host_port] = rest else {
            return Err(bad());
        };
        let bind_port = port.parse::<u16>().map_err(|_| bad())?;
        let host_port = host_port.parse::<u16>().map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        Ok(LocalForward {
            bind_address,
            bind_port,
            host: host.clone(),
            host_port,
        })
    }

    /// Where to listen (see `forward::listen_address`).
    #[cfg(test)]
    fn listen_on(&self) -> String {
        super::listen_address(self.bind_address.as_deref(), self.bind_port)
    }
}

/// Splits on ':' outside of brackets, dropping the brackets.
fn split_fields(spec: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut in_brackets = false;
    for c in spec.chars() {
        match c {
            '[' if !in_brackets => in_brackets = true,
            ']' if in_brackets => in_brackets = false,
            ':' if !in_brackets => fields.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    if in_brackets {
        return None;
    }
    fields.push(current);
    Some(fields)
}

/// Binds every -L listener now (so failures are reported before the session
/// starts, as ssh does), and returns the task serving them.
pub async fn start_local_forwards<C: Connection>(
    conn: Arc<C>,
    forwards: &[LocalForward],
) -> Result<tokio::task::JoinSet<()>, String> {
    let mut tasks = tokio::task::JoinSet::new();
    for forward in forwards {
        let listener =
            super::bind_listener(forward.bind_address.as_deref(), forward.bind_port, "local")
                .await?;
        tasks.spawn(serve_local_forward(conn.clone(), listener, forward.clone()));
    }
    Ok(tasks)
}

async fn serve_local_forward<C: Connection>(
    conn: Arc<C>,
    listener: TcpListener,
    forward: LocalForward,
) {
    loop {
        let (stream, peer) = super::accept(&listener, "local forward").await;
        let conn = conn.clone();
        let forward = forward.clone();
        tokio::spawn(async move {
            let kind = ChannelKind::DirectTcpip {
                host: forward.host.clone(),
                port: u32::from(forward.host_port),
                originator: peer.ip().to_string(),
                originator_port: u32::from(peer.port()),
            };
            match conn.open_channel(kind).await {
                Ok(channel) => splice(channel, stream).await,
                Err(e) => eprintln!(
                    "channel: open failed: {e} (forwarding to {}:{})",
                    forward.host, forward.host_port
                ),
            }
        });
    }
}

/// Copies between a channel and a byte stream (a TCP connection, a Unix
/// socket) until both directions end, passing each side's EOF on as the
/// other's half-close.
pub async fn splice<Ch, S>(channel: Ch, stream: S)
where
    Ch: Channel,
    S: AsyncRead + AsyncWrite,
{
    let ChannelParts {
        data_in,
        ext_in,
        mut data_out,
        ext_out,
        control,
        requests,
    } = channel.split();
    drop((ext_in, ext_out, requests));
    let (mut stream_read, mut stream_write) = tokio::io::split(stream);
    let upstream = async {
        let _ = crate::io::copy_large(&mut stream_read, &mut data_out).await;
        let _ = data_out.shutdown().await;
    };
    let downstream = async {
        let _ = crate::io::copy_buffered(data_in, &mut stream_write).await;
        let _ = stream_write.shutdown().await;
    };
    tokio::join!(upstream, downstream);
    drop(control);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_forward_specs() {
        let f = LocalForward::parse("8080:example.com:80").unwrap();
        assert_eq!(
            (f.bind_address, f.bind_port, f.host.as_str(), f.host_port),
            (None, 8080, "example.com", 80)
        );
        let f = LocalForward::parse("127.0.0.1:8080:[::1]:22").unwrap();
        assert_eq!(f.bind_address.as_deref(), Some("127.0.0.1"));
        assert_eq!(f.host, "::1");
        let f = LocalForward::parse("[::1]:8080:h:1").unwrap();
        assert_eq!(f.listen_on(), "[::1]:8080");
        assert!(LocalForward::parse("8080:h").is_err());
        assert!(LocalForward::parse("x:h:1").is_err());
        assert!(LocalForward::parse("1:h:99999").is_err());
        assert!(LocalForward::parse("[::1:1:h:1").is_err());
    }
}
