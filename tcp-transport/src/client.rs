//! The client side of SSH over a byte stream: russh's client session, host
//! key checked by the core's policy, user authentication (keys from files
//! or ssh-agent, keyboard-interactive, passwords) in client_auth.rs.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex as StdMutex};

use russh::client::ChannelOpenHandle;
use russh::client::{Msg, Session};
use russh::keys::PublicKeyOrCertificate;
use sshq_core::auth::{ServerKeyVerifier, UserKey};
use sshq_core::channel::{ChannelKind, GlobalReply, GlobalRequest};
use sshq_core::error::{ConnectError, ProtocolError, TransportError};
use sshq_core::kex::Role;
use sshq_core::transport::{Connection, ConnectionInfo, Incoming, TransportKind};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, Mutex};

use crate::ending::{EndingSender, EndingWatch};
use crate::paced::Paced;
use crate::pacing::{Pacer, SEND_BUDGET};

use crate::channel::{Side, TcpChannel};

/// A client-side channel over TCP.
pub type ClientChannel = TcpChannel<Msg>;

/// What the client needs to log in.
pub struct ClientParams {
    /// The host name as the user gave it, for messages.
    pub host: String,
    pub user: String,
    /// Keys to try, in order.
    pub keys: Vec<Arc<dyn UserKey>>,
    /// Passwords, keyboard-interactive and the order of methods.
    pub auth_options: sshq_core::auth_methods::ClientAuthOptions,
    pub verifier: Arc<dyn ServerKeyVerifier>,
    /// Key exchange algorithms in order of preference (OpenSSH names, as
    /// `sshq_core::kex::resolve` gives them); None: sshq's client default,
    /// post-quantum first (`sshq_core::kex::TCP_CLIENT_DEFAULT`).
    pub kex: Option<Vec<String>>,
    /// Host key types already recorded for this host (e.g. `ssh-ed25519`,
    /// `ecdsa-sha2-nistp256`, `ssh-rsa`), preferred in that order, as ssh
    /// does: a host known by its ECDSA key must not look "changed" merely
    /// because it would rather present its Ed25519 key.
    pub known_host_key_types: Vec<String>,
    /// The socket's congestion controller ([`connect_tcp`] only; None: the
    /// system's default).
    pub congestion: Option<crate::TcpCongestion>,
    /// `TCPKeepAlive` ([`connect_tcp`] only).
    pub tcp_keepalive: bool,
}

/// AES-GCM first: with AES instructions it is several times faster than
/// russh's ChaCha20-Poly1305, and bulk throughput is CPU-bound here.
const FAST_CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_256_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_192_CTR,
    russh::cipher::AES_128_CTR,
];

/// An authenticated client-side SSH connection over a byte stream.
pub struct TcpClientConnection {
    handle: russh::client::Handle<ClientHandler>,
    /// Holds bulk channel data until the socket can take it.
    pacer: Pacer,
    incoming: Mutex<mpsc::UnboundedReceiver<Incoming<ClientChannel>>>,
    info: ConnectionInfo,
    ending: EndingWatch,
}

/// Connects over TCP (with TCP_NODELAY), then logs in.
pub async fn connect_tcp(
    addr: SocketAddr,
    params: ClientParams,
) -> Result<TcpClientConnection, ConnectError> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| ConnectError::Connect {
            host: params.host.clone(),
            port: addr.port(),
            source,
        })?;
    // Interactive sessions send small packets: never wait for Nagle; and
    // the kernel holds little unsent data (see pacing.rs).
    let _ = crate::socket_options::tune_socket(&stream);
    if let Err(e) = crate::socket_options::set_keepalive(&stream, params.tcp_keepalive) {
        tracing::debug!("TCPKeepAlive: {e}");
    }
    if let Some(controller) = params.congestion {
        // Not fatal: the connection works with the system's controller.
        if let Err(e) = crate::socket_options::set_congestion_control(&stream, controller) {
            tracing::warn!("{e}; using the system's default");
        }
    }
    let local = stream.local_addr().ok();
    connect_stream(stream, local, Some(addr), params).await
}

/// Runs SSH over any byte stream (a TCP socket, a QUIC stream, a pipe).
pub async fn connect_stream<S>(
    stream: S,
    local_addr: Option<SocketAddr>,
    peer_addr: Option<SocketAddr>,
    params: ClientParams,
) -> Result<TcpClientConnection, ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut config = russh::client::Config {
        window_size: crate::CHANNEL_WINDOW,
        maximum_packet_size: 65535,
        nodelay: true,
        // Windows are granted as the application reads (window.rs).
        window_on_consume: true,
        ..Default::default()
    };
    config.preferred.cipher = std::borrow::Cow::Borrowed(FAST_CIPHERS);
    config.preferred.key = std::borrow::Cow::Owned(host_key_order(
        &config.preferred.key,
        &params.known_host_key_types,
    ));
    config.preferred.kex = std::borrow::Cow::Owned(kex_names(params.kex.as_deref(), &params.host)?);
    // Host certificates are asked for only when known_hosts has an
    // @cert-authority line for the host: otherwise none could be trusted.
    if params.verifier.trusts_host_certificates() {
        config.preferred.host_key_certificates = config.preferred.key.clone();
    }
    let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
    let (ending_tx, ending_rx) = crate::ending::ending();
    let pacer = Pacer::new(SEND_BUDGET);
    let stream = Paced::new(stream, pacer.clone());
    let kex_name = Arc::new(StdMutex::new(None));
    let host_key_rejected = Arc::new(StdMutex::new(false));
    let handler = ClientHandler {
        verifier: params.verifier.clone(),
        incoming: incoming_tx,
        pacer: pacer.clone(),
        kex: kex_name.clone(),
        host_key_rejected: host_key_rejected.clone(),
        ending: ending_tx,
    };
    let mut handle = match russh::client::connect_stream(Arc::new(config), stream, handler).await {
        Ok(handle) => handle,
        Err(e) => {
            if host_key_rejected.lock().map(|r| *r).unwrap_or(false) {
                return Err(ConnectError::HostKeyRejected);
            }
            return Err(map_handshake_error(e, &params.host));
        }
    };
    crate::client_auth::authenticate(&mut handle, &params).await?;
    let kex = kex_name.lock().ok().and_then(|k| k.clone());
    Ok(TcpClientConnection {
        handle,
        pacer,
        incoming: Mutex::new(incoming_rx),
        info: ConnectionInfo {
            transport: TransportKind::Tcp,
            local_addr,
            peer_addr,
            user: params.user.clone(),
            credential: None,
            kex,
        },
        ending: ending_rx,
    })
}

/// `default` with the algorithms of `known` types moved to the front, in
/// the order of `known` (an RSA key covers all three RSA signatures).
fn host_key_order(
    default: &[russh::keys::Algorithm],
    known: &[String],
) -> Vec<russh::keys::Algorithm> {
    let mut ordered: Vec<russh::keys::Algorithm> = Vec::new();
    for name in known {
        for algorithm in default {
            let same_key_type = match algorithm {
                russh::keys::Algorithm::Rsa { .. } => name == "ssh-rsa",
                other => other.as_str() == name,
            };
            if same_key_type && !ordered.contains(algorithm) {
                ordered.push(algorithm.clone());
            }
        }
    }
    for algorithm in default {
        if !ordered.contains(algorithm) {
            ordered.push(algorithm.clone());
        }
    }
    ordered
}

fn kex_names(names: Option<&[String]>, host: &str) -> Result<Vec<russh::kex::Name>, ConnectError> {
    let listed = match names {
        Some(names) => crate::kex::KexList::new(names),
        None => Ok(crate::kex::KexList::client_default()),
    };
    listed
        .map(|list| list.russh_names())
        .map_err(|e| ConnectError::Negotiation {
            host: host.to_string(),
            message: e.to_string(),
        })
}

fn map_handshake_error(e: russh::Error, host: &str) -> ConnectError {
    match e {
        // OpenSSH's words: "no matching key exchange method found. Their offer: ..."
        russh::Error::NoCommonAlgo { kind, theirs, .. } => ConnectError::Negotiation {
            host: host.to_string(),
            message: format!(
                "no matching {} found. Their offer: {}",
                match kind {
                    russh::AlgorithmKind::Kex => "key exchange method",
                    russh::AlgorithmKind::Key => "host key type",
                    russh::AlgorithmKind::Cipher => "cipher",
                    russh::AlgorithmKind::Mac => "MAC",
                    russh::AlgorithmKind::Compression => "compression method",
                },
                theirs.join(",")
            ),
        },
        russh::Error::UnknownKey => ConnectError::HostKeyRejected,
        other => ConnectError::Transport(TransportError::ConnectionClosed(Some(other.to_string()))),
    }
}

impl Connection for TcpClientConnection {
    type Channel = ClientChannel;

    async fn rekey(&self) -> Result<(), TransportError> {
        self.handle
            .rekey_soon()
            .await
            .map_err(|_| TransportError::ConnectionClosed(None))
    }

    async fn open_channel(&self, kind: ChannelKind) -> Result<ClientChannel, TransportError> {
        let closed = || TransportError::ConnectionClosed(None);
        let channel = match &kind {
            ChannelKind::Session => self.handle.channel_open_session().await,
            ChannelKind::DirectTcpip {
                host,
                port,
                originator,
                originator_port,
            } => {
                self.handle
                    .channel_open_direct_tcpip(
                        host.clone(),
                        *port,
                        originator.clone(),
                        *originator_port,
                    )
                    .await
            }
            ChannelKind::DirectStreamlocal { socket_path } => {
                self.handle
                    .channel_open_direct_streamlocal(socket_path.clone())
                    .await
            }
            ChannelKind::ForwardedTcpip { .. }
            | ChannelKind::ForwardedStreamlocal { .. }
            | ChannelKind::Agent => {
                return Err(ProtocolError::WrongSideOpen {
                    side: Role::Client,
                    kind: kind.wire_name().to_string(),
                }
                .into())
            }
        }
        .map_err(|e| crate::open_error(e, closed))?;
        Ok(TcpChannel::new(kind, channel, Side::Client).paced_by(&self.pacer))
    }

    async fn accept(&self) -> Option<Incoming<ClientChannel>> {
        self.incoming.lock().await.recv().await
    }

    async fn global_request(&self, request: GlobalRequest) -> Result<GlobalReply, TransportError> {
        let closed = |e: russh::Error| TransportError::ConnectionClosed(Some(e.to_string()));
        match request {
            GlobalRequest::TcpipForward { address, port } => {
                match self.handle.tcpip_forward(address, port).await {
                    Ok(bound) => Ok(GlobalReply::Success {
                        bound_port: (port == 0).then_some(bound),
                    }),
                    Err(russh::Error::RequestDenied) => Ok(GlobalReply::Failure),
                    Err(e) => Err(closed(e)),
                }
            }
            GlobalRequest::CancelTcpipForward { address, port } => {
                match self.handle.cancel_tcpip_forward(address, port).await {
                    Ok(()) => Ok(GlobalReply::Success { bound_port: None }),
                    Err(russh::Error::RequestDenied) => Ok(GlobalReply::Failure),
                    Err(e) => Err(closed(e)),
                }
            }
            GlobalRequest::StreamlocalForward { socket_path } => {
                match self.handle.streamlocal_forward(socket_path).await {
                    Ok(()) => Ok(GlobalReply::Success { bound_port: None }),
                    Err(russh::Error::RequestDenied) => Ok(GlobalReply::Failure),
                    Err(e) => Err(closed(e)),
                }
            }
            GlobalRequest::CancelStreamlocalForward { socket_path } => {
                match self.handle.cancel_streamlocal_forward(socket_path).await {
                    Ok(()) => Ok(GlobalReply::Success { bound_port: None }),
                    Err(russh::Error::RequestDenied) => Ok(GlobalReply::Failure),
                    Err(e) => Err(closed(e)),
                }
            }
            GlobalRequest::Unknown { name } if name == "keepalive@openssh.com" => {
                // russh sends keepalive@openssh.com with want-reply and
                // reports only that an answer came, not which: servers
                // answer it with failure, so that is what we report.
                self.handle.send_ping().await.map_err(closed)?;
                Ok(GlobalReply::Failure)
            }
            request => Err(ProtocolError::UnsendableGlobalRequest {
                transport: TransportKind::Tcp,
                side: Role::Client,
                request,
            }
            .into()),
        }
    }

    fn info(&self) -> ConnectionInfo {
        self.info.clone()
    }

    async fn close(&self, reason: &str) {
        self.ending.closing_here();
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, reason, "")
            .await;
    }

    async fn closed(&self) -> Option<TransportError> {
        self.ending.ended().await
    }
}

pub(crate) struct ClientHandler {
    verifier: Arc<dyn ServerKeyVerifier>,
    incoming: mpsc::UnboundedSender<Incoming<ClientChannel>>,
    /// The connection's send pacing, for the channels the server opens.
    pacer: Pacer,
    kex: Arc<StdMutex<Option<String>>>,
    host_key_rejected: Arc<StdMutex<bool>>,
    /// Records how the session ended (orderly when the handler is dropped
    /// without a word).
    ending: EndingSender,
}

impl ClientHandler {
    fn offer_channel(
        &self,
        kind: ChannelKind,
        channel: russh::Channel<Msg>,
        reply: ChannelOpenHandle,
    ) {
        let channel = TcpChannel::new(kind.clone(), channel, Side::Client).paced_by(&self.pacer);
        crate::offer_channel(&self.incoming, kind, channel, reply);
    }
}

impl russh::client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let presented = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => Ok(key.clone()),
            PublicKeyOrCertificate::Certificate(cert) => Err(cert.clone()),
        };
        let verifier = self.verifier.clone();
        // The policy may prompt on the terminal: keep it off the async threads.
        let accepted = tokio::task::spawn_blocking(move || match presented {
            Ok(key) => verifier.verify(&key),
            Err(certificate) => verifier.verify_certificate(&certificate),
        })
        .await
        .unwrap_or(false);
        if !accepted {
            if let Ok(mut rejected) = self.host_key_rejected.lock() {
                *rejected = true;
            }
        }
        Ok(accepted)
    }

    async fn disconnected(
        &mut self,
        reason: russh::client::DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        match reason {
            russh::client::DisconnectReason::ReceivedDisconnect(info) => {
                match crate::ending::disconnect_failure(info.reason_code, &info.message) {
                    Some(why) => self.ending.failed(why),
                    None => self.ending.orderly(),
                }
                Ok(())
            }
            russh::client::DisconnectReason::Error(e) => {
                self.ending.failed(&e);
                Err(e)
            }
        }
    }

    async fn kex_done(
        &mut self,
        _shared_secret: Option<&[u8]>,
        names: &russh::Names,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // ssh -v's line, so a post-quantum policy can be checked the same way.
        tracing::debug!("kex: algorithm: {}", names.kex.as_ref());
        if let Ok(mut kex) = self.kex.lock() {
            *kex = Some(names.kex.as_ref().to_string());
        }
        Ok(())
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: russh::Channel<Msg>,
        connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let kind = ChannelKind::ForwardedTcpip {
            connected_address: connected_address.to_string(),
            connected_port,
            originator: originator_address.to_string(),
            originator_port,
        };
        self.offer_channel(kind, channel, reply);
        Ok(())
    }

    async fn server_channel_open_forwarded_streamlocal(
        &mut self,
        channel: russh::Channel<Msg>,
        socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let kind = ChannelKind::ForwardedStreamlocal {
            socket_path: socket_path.to_string(),
        };
        self.offer_channel(kind, channel, reply);
        Ok(())
    }

    async fn server_channel_open_agent_forward(
        &mut self,
        channel: russh::Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.offer_channel(ChannelKind::Agent, channel, reply);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::{Algorithm, EcdsaCurve, HashAlg};

    #[test]
    fn known_host_key_types_go_first() {
        let default = [
            Algorithm::Ed25519,
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha512),
            },
            Algorithm::Rsa { hash: None },
        ];
        let order = host_key_order(
            &default,
            &["ssh-rsa".to_string(), "ecdsa-sha2-nistp256".to_string()],
        );
        assert_eq!(
            order,
            [
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha512)
                },
                Algorithm::Rsa { hash: None },
                Algorithm::Ecdsa {
                    curve: EcdsaCurve::NistP256
                },
                Algorithm::Ed25519,
            ]
        );
        assert_eq!(host_key_order(&default, &[]), default);
    }
}
