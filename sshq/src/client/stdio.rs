//! -W host:port: our stdin and stdout, carried to host:port through the
//! server (what ProxyJump used to be built from, and still is for OpenSSH).

use sshq_core::channel::ChannelKind;
use sshq_core::transport::{Channel, ChannelControl, Connection};
use tokio::io::AsyncWriteExt;

use super::error::ClientError;

/// Splices stdin/stdout with a `direct-tcpip` channel to `target`; returns
/// once the far end closes. Exit status 0, or ssh's messages and 255.
pub async fn forward<C: Connection>(conn: &C, target: &str) -> Result<i32, ClientError> {
    let (host, port) =
        parse_target(target).ok_or_else(|| ClientError::BadStdioTarget(target.to_string()))?;
    let kind = ChannelKind::DirectTcpip {
        host,
        port: u32::from(port),
        originator: "stdio-forward".to_string(),
        originator_port: 0,
    };
    let channel = conn
        .open_channel(kind)
        .await
        .map_err(ClientError::StdioOpen)?;
    let (data_in, mut data_out, control) = channel.split().into_data_halves();
    control.opened().await.map_err(ClientError::StdioOpen)?;
    let upload = tokio::spawn(async move {
        let mut chunks = super::session::read_stdin_in_chunks();
        while let Some(chunk) = chunks.recv().await {
            if data_out.write_all(&chunk).await.is_err() {
                break;
            }
        }
        // Our EOF becomes the far end's.
        let _ = data_out.shutdown().await;
    });
    let mut stdout = tokio::io::stdout();
    let _ = crate::io::copy_buffered(data_in, &mut stdout).await;
    let _ = stdout.flush().await;
    upload.abort();
    drop(control);
    Ok(0)
}

/// `host:port`, with an IPv6 host in brackets.
fn parse_target(target: &str) -> Option<(String, u16)> {
    match super::cli::split_host_port(target)? {
        (host, Some(port)) => Some((host, port)),
        (_, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(parse_target("h:22"), Some(("h".into(), 22)));
        assert_eq!(parse_target("[::1]:22"), Some(("::1".into(), 22)));
        for bad in ["h", ":22", "h:", "h:x", "::1:22", "[::1]", "h:70000"] {
            assert_eq!(parse_target(bad), None, "{bad}");
        }
    }
}
