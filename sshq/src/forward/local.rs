//! Local forwarding (-L) on the client: a local listener (a TCP port or a
//! Unix socket) whose every connection becomes a channel to the server:
//! `direct-tcpip` to a host and port, or `direct-streamlocal@openssh.com`
//! to a socket on the server. Over QUIC each forwarded connection is its
//! own stream, so one stalled forward stalls nothing else.

use std::sync::Arc;
use std::time::Duration;

use sshq_core::channel::ChannelKind;
use sshq_core::error::TransportError;
use sshq_core::transport::{Channel, ChannelControl, ChannelParts, Connection, TransportKind};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::spec::{Forward, Listen, Target};
use super::unix_socket::{self, BindOptions, Identity, SocketFile};
use super::ByteStream;

/// A bound -L listener.
pub enum LocalListener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

/// Binds the listener of one -L (with the socket file to remove when the
/// forward ends); on failure, ssh's message lines (without the closing
/// "Could not request local forwarding.").
pub async fn bind(
    forward: &Forward,
    options: BindOptions,
) -> Result<(LocalListener, Option<SocketFile>), super::ForwardError> {
    match &forward.listen {
        Listen::Port { bind_address, port } => {
            let listener = super::bind_listener(bind_address.as_deref(), *port).await?;
            Ok((LocalListener::Tcp(listener), None))
        }
        Listen::Path(path) => match unix_socket::bind(path, &Identity::Process, options).await {
            Ok((listener, file)) => Ok((LocalListener::Unix(listener), Some(file))),
            Err(source) => Err(super::ForwardError::BindPath {
                path: path.clone(),
                source,
            }),
        },
    }
}

/// Accepts connections until the task is dropped, opening a channel to
/// the forward's target for each.
pub async fn serve<C: Connection>(conn: Arc<C>, listener: LocalListener, target: Target) {
    let listening = match &listener {
        LocalListener::Tcp(listener) => listener
            .local_addr()
            .map(|addr| format!("port {}", addr.port()))
            .unwrap_or_default(),
        LocalListener::Unix(_) => "path".to_string(),
    };
    loop {
        let (stream, originator, originator_port): (Box<dyn ByteStream>, String, u32) =
            match &listener {
                LocalListener::Tcp(listener) => {
                    let (stream, peer) = super::accept(listener, "local forward").await;
                    let _ = stream.set_nodelay(true);
                    let port = u32::from(peer.port());
                    (Box::new(stream), peer.ip().to_string(), port)
                }
                LocalListener::Unix(listener) => {
                    let stream = super::accept_unix(listener, "local forward").await;
                    // A Unix peer has no address to report: loopback stands in.
                    (Box::new(stream), "127.0.0.1".to_string(), 0)
                }
            };
        let from = format!("{originator} port {originator_port}");
        let kind = match &target {
            Target::Port { host, port } => ChannelKind::DirectTcpip {
                host: host.clone(),
                port: u32::from(*port),
                originator,
                originator_port,
            },
            Target::Path(path) => ChannelKind::DirectStreamlocal {
                socket_path: path.clone(),
            },
        };
        let listed = super::listing::list(format!(
            "{}: listening {listening} for {target}, connect from {from}",
            kind.wire_name()
        ));
        let conn = conn.clone();
        let target = target.clone();
        tokio::spawn(async move {
            let _listed = listed;
            let what = format!("forwarding to {target}");
            match conn.open_channel(kind).await {
                // Over QUIC the channel is usable before the server answers
                // the open (data goes out at once); a refusal shows up later.
                Ok(channel) if conn.info().transport == TransportKind::Quic => {
                    splice_reporting_refusal(channel, stream, what).await
                }
                Ok(channel) => splice(channel, stream).await,
                Err(TransportError::OpenRefused(failure)) => {
                    eprintln!("channel: open failed: {failure} ({what})")
                }
                Err(e) => eprintln!("channel: open failed: {e} ({what})"),
            }
        });
    }
}

/// How long to wait for the server's answer to a QUIC channel open once
/// the forwarded connection is over; it is normally one round trip away.
const OPEN_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Copies between a channel and a byte stream (a TCP connection, a Unix
/// socket) until both directions end, passing each side's EOF on as the
/// other's half-close.
pub async fn splice<Ch, S>(channel: Ch, stream: S)
where
    Ch: Channel,
    S: AsyncRead + AsyncWrite,
{
    splice_inner(channel, stream, None).await
}

/// [`splice`] for a channel whose open the server has not answered yet
/// (over QUIC the open is pipelined with the data): if it refuses, says so
/// as ssh does ("channel: open failed: reason").
pub async fn splice_reporting_refusal<Ch, S>(channel: Ch, stream: S, what: String)
where
    Ch: Channel,
    S: AsyncRead + AsyncWrite,
{
    splice_inner(channel, stream, Some(what)).await
}

async fn splice_inner<Ch, S>(channel: Ch, stream: S, report_refusal: Option<String>)
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
    let refusal = async {
        let Some(what) = report_refusal else { return };
        let answer = tokio::time::timeout(OPEN_ANSWER_TIMEOUT, control.opened());
        if let Ok(Err(TransportError::OpenRefused(failure))) = answer.await {
            eprintln!("channel: open failed: {failure} ({what})");
        }
    };
    tokio::join!(upstream, downstream, refusal);
    drop(control);
}
