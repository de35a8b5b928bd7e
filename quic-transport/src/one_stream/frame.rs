//! The carrier's frames: what the one-stream baseline writes on its single
//! QUIC stream (draft-notes, Appendix C.2.1).
//!
//! Every frame is a fixed 9-byte header, `type (u8) | stream (u32) |
//! value (u32)`, followed, for DATA only, by `value` bytes of the virtual
//! stream's data. The other frames carry their one number in `value`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes of a frame header.
pub(crate) const HEADER_LEN: usize = 9;

/// The largest DATA payload: a channel frame (at most
/// [`crate::wire::MAX_DATA_PAYLOAD`] of data plus its header) always fits.
pub(crate) const MAX_DATA: u32 = 64 * 1024;

const DATA: u8 = 0;
const FIN: u8 = 1;
const RESET: u8 = 2;
const STOP: u8 = 3;
const CONSUMED: u8 = 4;

/// One carrier frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CarrierFrame {
    /// Bytes of virtual stream `stream`; the first DATA of an unknown
    /// stream opened by the peer opens it.
    Data { stream: u32, payload: Bytes },
    /// The sender's direction of `stream` is finished.
    Fin { stream: u32 },
    /// The sender abandons its direction of `stream` (QUIC's RESET_STREAM).
    Reset { stream: u32, code: u32 },
    /// The receiver wants no more of `stream` (QUIC's STOP_SENDING).
    Stop { stream: u32, code: u32 },
    /// The receiver has handed `bytes` more DATA bytes to its channels
    /// (the carrier's flow control, see `one_stream`).
    Consumed { bytes: u32 },
}

/// Why the peer's carrier bytes cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CarrierError {
    #[error("unknown carrier frame type {0}")]
    UnknownType(u8),
    #[error("carrier DATA of {0} bytes is over the {MAX_DATA}-byte limit")]
    DataTooLong(u32),
    /// A field the frame type fixes at zero (FIN's value, CONSUMED's
    /// stream) is not.
    #[error("carrier frame type {0} with a nonzero reserved field")]
    ReservedNotZero(u8),
}

impl CarrierFrame {
    /// The header of this frame; for DATA, the payload goes after it.
    pub(crate) fn header(&self) -> [u8; HEADER_LEN] {
        let (kind, stream, value) = match self {
            CarrierFrame::Data { stream, payload } => {
                // Callers split data at MAX_DATA (see `encode_data`).
                (
                    DATA,
                    *stream,
                    u32::try_from(payload.len()).unwrap_or(u32::MAX),
                )
            }
            CarrierFrame::Fin { stream } => (FIN, *stream, 0),
            CarrierFrame::Reset { stream, code } => (RESET, *stream, *code),
            CarrierFrame::Stop { stream, code } => (STOP, *stream, *code),
            CarrierFrame::Consumed { bytes } => (CONSUMED, 0, *bytes),
        };
        let mut header = [0u8; HEADER_LEN];
        let mut out = &mut header[..];
        out.put_u8(kind);
        out.put_u32(stream);
        out.put_u32(value);
        header
    }

    /// The frame as one buffer (tests and control frames; DATA is written
    /// as header and payload without a copy).
    pub(crate) fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER_LEN);
        out.put_slice(&self.header());
        if let CarrierFrame::Data { payload, .. } = self {
            out.put_slice(payload);
        }
        out.freeze()
    }

    /// Takes one whole frame off the front of `buf`: `Ok(None)` while more
    /// bytes are needed, an error for bytes that can never be a frame.
    pub(crate) fn decode(buf: &mut BytesMut) -> Result<Option<CarrierFrame>, CarrierError> {
        let Some(mut header) = buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let kind = header.get_u8();
        let stream = header.get_u32();
        let value = header.get_u32();
        let frame = match kind {
            DATA => {
                if value > MAX_DATA {
                    return Err(CarrierError::DataTooLong(value));
                }
                let total = HEADER_LEN + value as usize;
                if buf.len() < total {
                    return Ok(None);
                }
                buf.advance(HEADER_LEN);
                let payload = buf.split_to(value as usize).freeze();
                return Ok(Some(CarrierFrame::Data { stream, payload }));
            }
            FIN if value != 0 => return Err(CarrierError::ReservedNotZero(FIN)),
            FIN => CarrierFrame::Fin { stream },
            RESET => CarrierFrame::Reset {
                stream,
                code: value,
            },
            STOP => CarrierFrame::Stop {
                stream,
                code: value,
            },
            CONSUMED if stream != 0 => return Err(CarrierError::ReservedNotZero(CONSUMED)),
            CONSUMED => CarrierFrame::Consumed { bytes: value },
            other => return Err(CarrierError::UnknownType(other)),
        };
        buf.advance(HEADER_LEN);
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Result<Vec<CarrierFrame>, CarrierError> {
        let mut buf = BytesMut::from(bytes);
        let mut frames = Vec::new();
        while let Some(frame) = CarrierFrame::decode(&mut buf)? {
            frames.push(frame);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        Ok(frames)
    }

    /// The draft's vectors (draft-notes/test-vectors/carrier.txt, Appendix
    /// C.2.1), written by hand from its text.
    #[test]
    fn draft_vectors() {
        let file = include_str!("../../../draft-notes/test-vectors/carrier.txt");
        let vectors: std::collections::HashMap<&str, &str> = file
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .filter_map(|line| line.split_once(" = "))
            .collect();
        let expected = [
            (
                "data_stream2_hi",
                CarrierFrame::Data {
                    stream: 2,
                    payload: Bytes::from_static(b"hi"),
                },
            ),
            ("fin_stream3", CarrierFrame::Fin { stream: 3 }),
            (
                "reset_stream4_code16",
                CarrierFrame::Reset {
                    stream: 4,
                    code: 0x10,
                },
            ),
            (
                "stop_stream5_code0",
                CarrierFrame::Stop { stream: 5, code: 0 },
            ),
            ("consumed_70000", CarrierFrame::Consumed { bytes: 70000 }),
        ];
        assert_eq!(vectors.len(), expected.len(), "every vector is checked");
        for (name, frame) in expected {
            let hex = vectors.get(name).unwrap_or_else(|| panic!("vector {name}"));
            let encoded = frame.encode();
            assert_eq!(hex::encode(&encoded), *hex, "{name}");
            assert_eq!(decode_all(&encoded), Ok(vec![frame]), "{name}");
        }
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let frame = CarrierFrame::Data {
            stream: 7,
            payload: Bytes::from(vec![0xab; 300]),
        }
        .encode();
        for cut in [0, 1, HEADER_LEN - 1, HEADER_LEN, frame.len() - 1] {
            let mut buf = BytesMut::from(&frame[..cut]);
            assert_eq!(CarrierFrame::decode(&mut buf), Ok(None), "cut at {cut}");
            assert_eq!(buf.len(), cut, "nothing consumed at {cut}");
        }
    }

    #[test]
    fn bad_frames_are_refused() {
        assert_eq!(
            decode_all(&[9, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(CarrierError::UnknownType(9))
        );
        // A DATA header announcing more than MAX_DATA is refused at once,
        // before its payload is waited for.
        let mut too_long = vec![0u8, 0, 0, 0, 1];
        too_long.extend_from_slice(&(MAX_DATA + 1).to_be_bytes());
        assert_eq!(
            decode_all(&too_long),
            Err(CarrierError::DataTooLong(MAX_DATA + 1))
        );
        // Every frame has one encoding: fields the type fixes at zero are
        // zero (the fuzz target's first find: a FIN with a value).
        assert_eq!(
            decode_all(&[1, 0, 0, 0, 2, 0, 0, 0, 0x23]),
            Err(CarrierError::ReservedNotZero(1))
        );
        assert_eq!(
            decode_all(&[4, 0, 0, 0, 1, 0, 0, 0, 5]),
            Err(CarrierError::ReservedNotZero(4))
        );
    }

    #[test]
    fn frames_follow_each_other() {
        let frames = vec![
            CarrierFrame::Data {
                stream: 0,
                payload: Bytes::from_static(b"abc"),
            },
            CarrierFrame::Consumed { bytes: 3 },
            CarrierFrame::Fin { stream: 0 },
        ];
        let bytes: Vec<u8> = frames.iter().flat_map(|f| f.encode().to_vec()).collect();
        assert_eq!(decode_all(&bytes), Ok(frames));
    }
}
