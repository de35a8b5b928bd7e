//! A QUIC client for the hostile-input suite that speaks sshq/1 by hand to
//! a real sshqd: the QUIC and TLS handshake from sshq-quic's public API
//! (the host key checked as sshq does), then frames written as raw octets
//! (the layouts of draft §6), so that any of them can be malformed.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sshq_core::auth::sign_with_private_key;
use sshq_core::ssh_key::{PrivateKey, PublicKey};
use sshq_quic::wire::{self, msg, ErrorCode, Frame, UserauthRequest};
use sshq_quic::{endpoint, kx, tls};
use sshq_test_kit::quinn;

use super::clients::TrustHostKey;

/// Limit on any one step (a handshake, a frame, a close): only against hangs.
pub const STEP: Duration = Duration::from_secs(20);

/// Runs one step, failing the test if it hangs.
pub async fn step<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    super::clients::within(STEP, what, work).await
}

pub fn load_private(path: &Path) -> PrivateKey {
    let text = std::fs::read_to_string(path).expect("read a key");
    PrivateKey::from_openssh(text).expect("parse a key")
}

pub fn load_public(path: &Path) -> PublicKey {
    let text = std::fs::read_to_string(path).expect("read a public key");
    PublicKey::from_openssh(text.trim()).expect("parse a public key")
}

/// A QUIC client configuration that trusts `host` and offers `alpn`.
pub fn client_config(host: &PublicKey, alpn: &[u8]) -> quinn::ClientConfig {
    let provider = kx::crypto_provider(kx::DEFAULT_KEX).expect("crypto provider");
    let mut tls =
        tls::client_tls(Arc::new(TrustHostKey(host.clone())), provider).expect("client TLS");
    tls.alpn_protocols = vec![alpn.to_vec()];
    tls::client_config(tls).expect("quinn client config")
}

/// A client endpoint bound to `source` (port 0: any).
pub fn client_endpoint(source: [u8; 4]) -> quinn::Endpoint {
    endpoint::client_endpoint(SocketAddr::from((source, 0))).expect("client endpoint")
}

/// A QUIC connection to sshqd on `port`, TLS done, nothing sent yet.
pub async fn connect(
    endpoint: &quinn::Endpoint,
    port: u16,
    host: &PublicKey,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let config = client_config(host, tls::ALPN);
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    let connecting = endpoint
        .connect_with(config, server, "sshq")
        .expect("start a QUIC connection");
    step("QUIC handshake", connecting).await
}

// --- frames as octets --------------------------------------------------

/// A frame of any type (known or not) around `payload`.
pub fn raw_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    out.push(kind);
    out.extend_from_slice(payload);
    out
}

pub fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

pub fn open_session() -> Vec<u8> {
    encode_frame(&Frame::ChannelOpen(
        sshq_core::channel::ChannelKind::Session,
    ))
    .to_vec()
}

pub fn data(bytes: &[u8]) -> Vec<u8> {
    raw_frame(msg::CHANNEL_DATA, bytes)
}

/// CHANNEL_REQUEST "exec" (draft §8.6: type, want-reply, command).
pub fn exec(command: &str, want_reply: bool) -> Vec<u8> {
    let mut payload = Vec::new();
    string(&mut payload, b"exec");
    payload.push(u8::from(want_reply));
    string(&mut payload, command.as_bytes());
    raw_frame(msg::CHANNEL_REQUEST, &payload)
}

/// A USERAUTH_REQUEST for `user`, signed by `key` over `exporter` — but
/// with the signed data naming `signed_user` (the same, normally).
pub fn userauth(key: &PrivateKey, exporter: &[u8], user: &str, signed_user: &str) -> Vec<u8> {
    let public = key.public_key();
    let algorithm = public.algorithm().as_str().to_string();
    let blob = public.to_bytes().expect("public key blob");
    let signed =
        wire::userauth_signed_data(exporter, signed_user, "ssh-connection", &algorithm, &blob)
            .expect("signed data");
    let signature = sign_with_private_key(key, &signed, None, "test key").expect("sign");
    encode_frame(&Frame::UserauthRequest(UserauthRequest {
        user: user.to_string(),
        service: "ssh-connection".to_string(),
        algorithm,
        public_key: blob,
        signature,
    }))
    .to_vec()
}

// --- reading frames ------------------------------------------------------

/// Frames read from one stream, as (type, payload).
pub struct Frames {
    recv: quinn::RecvStream,
    buf: Vec<u8>,
}

/// What a stream delivered next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Frame(u8, Vec<u8>),
    /// The clean end (FIN).
    End,
    /// Reset by the peer, with this code.
    Reset(u64),
    /// Anything else (connection lost, ...).
    Error(String),
}

impl Frames {
    pub fn new(recv: quinn::RecvStream) -> Frames {
        Frames {
            recv,
            buf: Vec::new(),
        }
    }

    pub async fn next(&mut self) -> Next {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                    as usize;
                if self.buf.len() >= 4 + len && len >= 1 {
                    let kind = self.buf[4];
                    let payload = self.buf[5..4 + len].to_vec();
                    self.buf.drain(..4 + len);
                    return Next::Frame(kind, payload);
                }
            }
            match step("reading a frame", self.recv.read_chunk(64 * 1024, true)).await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.bytes),
                Ok(None) => return Next::End,
                Err(quinn::ReadError::Reset(code)) => return Next::Reset(code.into_inner()),
                Err(e) => return Next::Error(e.to_string()),
            }
        }
    }

    /// The next frame other than DATA and EXTENDED_DATA.
    pub async fn next_control(&mut self) -> Next {
        loop {
            match self.next().await {
                Next::Frame(msg::CHANNEL_DATA | msg::CHANNEL_EXTENDED_DATA, _) => {}
                other => return other,
            }
        }
    }

    /// All DATA octets until the stream ends, and the last exit-status seen.
    pub async fn output(&mut self) -> (Vec<u8>, Option<u32>) {
        let mut out = Vec::new();
        let mut status = None;
        loop {
            match self.next().await {
                Next::Frame(msg::CHANNEL_DATA, payload) => out.extend_from_slice(&payload),
                Next::Frame(msg::CHANNEL_REQUEST, payload) => {
                    if payload.get(4..15) == Some(&b"exit-status"[..]) {
                        status = payload
                            .get(16..20)
                            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                    }
                }
                Next::Frame(..) => {}
                _ => return (out, status),
            }
        }
    }
}

/// A client that writes sshq/1 frames by hand.
pub struct RawClient {
    pub conn: quinn::Connection,
    pub control: quinn::SendStream,
    pub replies: Frames,
    pub exporter: [u8; wire::USERAUTH_EXPORTER_LEN],
    pub endpoint: quinn::Endpoint,
}

impl RawClient {
    /// Connects from 127.0.0.1 and opens the control stream.
    pub async fn connect(port: u16, host: &PublicKey) -> RawClient {
        RawClient::connect_from([127, 0, 0, 1], port, host).await
    }

    pub async fn connect_from(source: [u8; 4], port: u16, host: &PublicKey) -> RawClient {
        let endpoint = client_endpoint(source);
        let conn = connect(&endpoint, port, host)
            .await
            .expect("QUIC handshake with sshqd");
        let mut exporter = [0u8; wire::USERAUTH_EXPORTER_LEN];
        conn.export_keying_material(&mut exporter, wire::USERAUTH_EXPORTER_LABEL, b"")
            .expect("TLS exporter");
        let (control, recv) = step("control stream", conn.open_bi())
            .await
            .expect("open the control stream");
        RawClient {
            conn,
            control,
            replies: Frames::new(recv),
            exporter,
            endpoint,
        }
    }

    /// The port this client sends from (as sshqd logs it).
    pub fn local_port(&self) -> u16 {
        self.endpoint.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub async fn send_control(&mut self, bytes: &[u8]) {
        // The server may already have closed: that shows in close_code().
        let _ = step("control write", self.control.write_all(bytes)).await;
    }

    /// Logs in as `user` with `key`, expecting USERAUTH_SUCCESS.
    pub async fn login(&mut self, key: &PrivateKey, user: &str) {
        let request = userauth(key, &self.exporter, user, user);
        self.send_control(&request).await;
        assert_eq!(
            self.replies.next().await,
            Next::Frame(msg::USERAUTH_SUCCESS, Vec::new()),
            "login"
        );
    }

    /// How the server closed the connection: the application error code,
    /// or a description of another end.
    pub async fn close_code(&self) -> Result<u64, String> {
        match step("waiting for the close", self.conn.closed()).await {
            quinn::ConnectionError::ApplicationClosed(close) => Ok(close.error_code.into_inner()),
            other => Err(format!("closed otherwise: {other}")),
        }
    }

    /// Expects the server to close with `code`.
    pub async fn expect_close(&self, code: ErrorCode, what: &str) {
        assert_eq!(
            self.close_code().await,
            Ok(u64::from(code.code())),
            "{what}: CONNECTION_CLOSE"
        );
    }

    /// Opens a stream and writes `first` on it.
    pub async fn stream(&self, first: &[u8]) -> RawChannel {
        let (mut send, recv) = step("open a stream", self.conn.open_bi())
            .await
            .expect("open a stream");
        let _ = step("write", send.write_all(first)).await;
        RawChannel {
            send,
            frames: Frames::new(recv),
        }
    }

    /// A session channel sshqd confirmed.
    pub async fn session(&self) -> RawChannel {
        let mut channel = self.stream(&open_session()).await;
        assert_eq!(
            channel.frames.next().await,
            Next::Frame(msg::CHANNEL_OPEN_CONFIRMATION, Vec::new()),
            "a session channel's confirmation"
        );
        channel
    }
}

/// A channel stream written by hand.
pub struct RawChannel {
    pub send: quinn::SendStream,
    pub frames: Frames,
}

impl RawChannel {
    pub async fn write(&mut self, bytes: &[u8]) {
        // A reset shows in what is read next.
        let _ = step("write", self.send.write_all(bytes)).await;
    }

    /// Expects sshqd to reset this stream with PROTOCOL_ERROR.
    pub async fn expect_protocol_reset(&mut self, what: &str) {
        let code = u64::from(ErrorCode::ProtocolError.code());
        loop {
            match self.frames.next().await {
                Next::Frame(..) => {}
                other => {
                    assert_eq!(other, Next::Reset(code), "{what}: RESET_STREAM");
                    return;
                }
            }
        }
    }

    /// Runs `command` on this (confirmed) session: its output and status.
    pub async fn run(&mut self, command: &str) -> (Vec<u8>, Option<u32>) {
        self.write(&exec(command, false)).await;
        let _ = self.send.finish();
        self.frames.output().await
    }
}

/// Test frames always fit; the checked encoder's error would be a test bug.
fn encode_frame(frame: &Frame) -> Vec<u8> {
    sshq_quic::wire::encode_frame(frame)
        .expect("a test frame encodes")
        .to_vec()
}
