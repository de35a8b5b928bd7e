//! Entry points for the fuzz targets in `fuzz/` (not part of the API).
//!
//! Each function feeds arbitrary bytes to one of this crate's decoders, as
//! a peer could, and checks what must hold for every input; a panic here is
//! a bug in the decoder. They call the narrowest entry points (the codec,
//! `userauth::verify`, the tunnel's close decoding), so when one of those
//! is renamed or reshaped only this file changes, not the fuzz targets.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use quinn::{ApplicationClose, ConnectionClose, ConnectionError, TransportErrorCode, VarInt};
use sshq_core::auth::{AuthPolicy, BoxFuture};
use sshq_core::ssh_key::PublicKey;

use crate::one_stream::frame::CarrierFrame;
use crate::tunnel;
use crate::wire::{self, ErrorCode, Frame};

/// What the frames of a byte stream decode to: the frames, then how the
/// stream stopped (`None`: it needs more bytes).
type Decoded<T, E> = (Vec<T>, Option<E>);

/// Decodes `data` as the bytes of one QUIC stream, the way the control and
/// channel stream readers do. The first byte chooses how the rest arrives:
/// all at once, or in pieces of that many bytes; either way the frames and
/// the error must be the same. Every decoded frame must encode to bytes
/// that decode to the same frame.
pub fn decode_frames(data: &[u8]) {
    let Some((frames, _)) = decode_whole_and_in_pieces(data, wire::decode_frame) else {
        return;
    };
    for frame in &frames {
        check_round_trip(frame);
    }
}

/// Decodes the bytes after `data`'s first byte whole and in pieces of that
/// byte's size (at least 1), and checks that both give the same frames and
/// error; None for empty `data`.
fn decode_whole_and_in_pieces<T, E>(
    data: &[u8],
    decode: impl Fn(&mut BytesMut) -> Result<Option<T>, E>,
) -> Option<Decoded<T, E>>
where
    T: PartialEq + std::fmt::Debug,
    E: PartialEq + std::fmt::Debug,
{
    let (&piece, stream) = data.split_first()?;
    let whole = decode_in_pieces(stream, stream.len().max(1), &decode);
    let pieces = decode_in_pieces(stream, usize::from(piece).max(1), &decode);
    assert_eq!(whole, pieces, "decoding depends on how the bytes arrive");
    Some(whole)
}

/// Feeds `stream` to `decode`, `piece` bytes at a time, as a stream reader
/// does; an incomplete frame must consume nothing.
fn decode_in_pieces<T, E>(
    stream: &[u8],
    piece: usize,
    decode: impl Fn(&mut BytesMut) -> Result<Option<T>, E>,
) -> Decoded<T, E> {
    let mut buffered = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in stream.chunks(piece) {
        buffered.extend_from_slice(chunk);
        loop {
            let before = buffered.len();
            match decode(&mut buffered) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => {
                    assert_eq!(buffered.len(), before, "an incomplete frame was consumed");
                    break;
                }
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

fn check_round_trip(frame: &Frame) {
    // A frame that decoded fits the limits, so it must encode again.
    let encoded = match wire::encode_frame(frame) {
        Ok(encoded) => encoded,
        Err(e) => panic!("a decoded frame does not encode: {e}"),
    };
    let mut buffered = BytesMut::from(&encoded[..]);
    match wire::decode_frame(&mut buffered) {
        Ok(Some(again)) => assert_eq!(&again, frame, "a frame changed on re-encoding"),
        other => panic!("a decoded frame does not decode after encoding: {other:?}"),
    }
    assert!(buffered.is_empty(), "re-encoding left trailing bytes");
}

/// The exporter value of the draft's userauth test vector (32 × 0x11), so
/// that the vector in the seed corpus verifies all the way to the policy.
const VECTOR_EXPORTER: [u8; 32] = [0x11; 32];

/// A policy allowing every key and certificate, so the whole of `verify`
/// is reached.
struct AllowAll;

impl AuthPolicy for AllowAll {
    fn publickey_allowed<'a>(&'a self, _user: &'a str, _key: &'a PublicKey) -> BoxFuture<'a, bool> {
        Box::pin(async { true })
    }

    fn certificate_allowed_from<'a>(
        &'a self,
        _user: &'a str,
        _certificate: &'a sshq_core::ssh_key::Certificate,
        _peer: Option<std::net::SocketAddr>,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async { true })
    }

    fn max_auth_tries(&self) -> u32 {
        6
    }
}

/// Decodes `data` as a USERAUTH_REQUEST frame and, if it is one, checks it
/// as the server does: the key blob, the algorithm, the signature blob and
/// the signature over the (fixed) exporter value.
pub fn userauth(data: &[u8]) {
    let mut buffered = BytesMut::from(data);
    let Ok(Some(Frame::UserauthRequest(request))) = wire::decode_frame(&mut buffered) else {
        return;
    };
    let verdict = run_ready(crate::userauth::verify(
        &request,
        &VECTOR_EXPORTER,
        &AllowAll,
        None,
    ));
    if let Some(Ok(credential)) = verdict {
        // Whatever logged in is the key or certificate the request named.
        let blob = match &credential {
            sshq_core::auth::UserCredential::Key(key) => key.to_bytes().ok(),
            sshq_core::auth::UserCredential::Certificate(cert) => cert.to_bytes().ok(),
        };
        assert_eq!(blob.as_deref(), Some(&request.public_key[..]));
    }
}

/// Decodes what a tunnel peer controls: the application error code and
/// reason of its CONNECTION_CLOSE, and the transport error a refused ALPN
/// arrives as. The first 8 bytes are the code (a QUIC varint, so 62 bits),
/// the rest the reason phrase.
pub fn tunnel_close(data: &[u8]) {
    let (head, reason) = data.split_at(data.len().min(8));
    let mut code_bytes = [0u8; 8];
    code_bytes
        .iter_mut()
        .zip(head)
        .for_each(|(slot, byte)| *slot = *byte);
    let code = u64::from_be_bytes(code_bytes) & ((1 << 62) - 1);
    let Ok(error_code) = VarInt::from_u64(code) else {
        return;
    };
    let known = ErrorCode::from_code(code);
    if let Some(known) = known {
        assert_eq!(u64::from(known.code()), code);
        assert_eq!(tunnel::varint(known).into_inner(), code);
    }
    let closed = ConnectionError::ApplicationClosed(ApplicationClose {
        error_code,
        reason: Bytes::copy_from_slice(reason),
    });
    match tunnel::peer_close(&closed) {
        Some((decoded, text)) => {
            assert_eq!(Some(decoded), known);
            assert_eq!(text.is_empty(), reason.is_empty());
        }
        None => assert_eq!(known, None),
    }
    assert!(!tunnel::alpn_refused(&closed));
    let alert = head.first().copied().unwrap_or(0);
    let refused = ConnectionError::ConnectionClosed(ConnectionClose {
        error_code: TransportErrorCode::crypto(alert),
        frame_type: None,
        reason: Bytes::copy_from_slice(reason),
    });
    assert_eq!(tunnel::alpn_refused(&refused), alert == 120);
    assert!(tunnel::peer_close(&refused).is_none());
}

/// Polls `future` once with a waker that does nothing: the decoders fed
/// here never wait on I/O, so anything but `Ready` means they did.
pub fn run_ready<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// Decodes `data` as the one-stream baseline's carrier (the lab mapping of
/// `crate::one_stream`), whole and in pieces of the first byte's size: the
/// frames and the error must not depend on how the bytes arrive, an
/// incomplete frame must consume nothing, and every frame must re-encode
/// to the bytes it came from.
pub fn decode_carrier(data: &[u8]) {
    let Some((frames, _)) = decode_whole_and_in_pieces(data, CarrierFrame::decode) else {
        return;
    };
    let encoded: Vec<u8> = frames.iter().flat_map(|frame| frame.encode()).collect();
    assert!(
        data.get(1..)
            .is_some_and(|stream| stream.starts_with(&encoded)),
        "frames do not re-encode to the bytes they came from"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The draft's userauth vector: the request frame, as in
    /// `draft-notes/test-vectors/userauth.txt`.
    fn vector_frame() -> Vec<u8> {
        let text = include_str!("../../draft-notes/test-vectors/userauth.txt");
        let hex = text
            .lines()
            .find_map(|l| l.strip_prefix("userauth_request_frame = "))
            .expect("userauth_request_frame in the vector file");
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn the_userauth_vector_verifies_through_the_fuzz_entry() {
        let frame = vector_frame();
        let mut buffered = BytesMut::from(&frame[..]);
        let Ok(Some(Frame::UserauthRequest(request))) = wire::decode_frame(&mut buffered) else {
            panic!("the vector does not decode");
        };
        let verdict = run_ready(crate::userauth::verify(
            &request,
            &VECTOR_EXPORTER,
            &AllowAll,
            None,
        ));
        assert!(matches!(verdict, Some(Ok(_))), "{verdict:?}");
        userauth(&frame);
    }

    #[test]
    fn entries_accept_any_bytes() {
        let frame = vector_frame();
        for input in [&[][..], &[0], &[1, 0, 0, 0, 1, 52], &frame[..], &[0xff; 9]] {
            decode_frames(input);
            userauth(input);
            tunnel_close(input);
        }
        tunnel_close(&[0, 0, 0, 0, 0, 0, 0, 7, b'x']);
    }

    /// The frame fuzz target's seeds (fuzz/corpus/frame), the password and
    /// keyboard-interactive frames among them, decode and re-encode.
    #[test]
    fn the_frame_fuzz_seeds_round_trip() {
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/frame");
        let mut seeds = 0;
        for entry in std::fs::read_dir(&corpus).expect("the frame corpus") {
            let path = entry.expect("a corpus entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !name.starts_with("seed-") {
                continue;
            }
            let data = std::fs::read(&path).expect("a seed");
            decode_frames(&data);
            let userauth_seed = [
                "seed-password-request",
                "seed-keyboard-interactive-request",
                "seed-info-request",
                "seed-info-response",
                "seed-userauth-failure-partial",
                "seed-userauth-failure-all-methods",
                "seed-none-request",
            ]
            .contains(&name);
            seeds += 1;
            if !userauth_seed {
                continue;
            }
            // The userauth seeds are one whole frame after the piece size.
            let mut buffered = BytesMut::from(data.get(1..).unwrap_or_default());
            let first = wire::decode_frame(&mut buffered);
            assert!(matches!(first, Ok(Some(_))), "{name}: {first:?}");
            assert!(buffered.is_empty(), "{name}: one frame");
        }
        assert!(seeds >= 20, "only {seeds} seeds in {}", corpus.display());
    }
}
