//! The frames of `sshq-session@sshq.dev` (draft §8.12): what a reattachable
//! session's channel carries in its data stream, in both directions.
//!
//! A frame is `uint32 length`, then `length` bytes: a type byte and its
//! body. Every body is parsed whole: a frame with bytes left over, a
//! length beyond [`MAX_FRAME`], an unknown type or a token of the wrong
//! size is an error, never a guess.

use std::fmt;

/// The subsystem name that asks for a reattachable session.
pub const SUBSYSTEM: &str = "sshq-session@sshq.dev";

/// The size of a session token.
pub const TOKEN_LEN: usize = 32;

/// The most bytes one DATA frame carries.
pub const MAX_DATA: usize = 32 * 1024;

/// The largest frame body (type byte included) a peer may send.
pub const MAX_FRAME: usize = 1 + MAX_DATA;

/// The secret that names a held session. It never leaves the client
/// process that started the session, and is only good together with a
/// fresh login as the same user (draft §8.12.3).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Token(pub [u8; TOKEN_LEN]);

impl Token {
    /// Compares in constant time: how long a wrong guess takes says
    /// nothing of how much of it was right.
    pub fn matches(&self, other: &Token) -> bool {
        let differences =
            (self.0.iter().zip(other.0.iter())).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(differences) == 0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never in logs.
        f.write_str("Token(..)")
    }
}

/// What a fresh session runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    Shell,
    Command(Vec<u8>),
}

/// One frame of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Client: start a fresh session running `program` on the pty asked for.
    Start(Program),
    /// Client: take over the held session `token`; `output_received` bytes
    /// of its output have arrived so far.
    Resume { token: Token, output_received: u64 },
    /// Server: the session runs; `token` reattaches to it for `hold_secs`
    /// seconds after a connection is lost.
    Session { token: Token, hold_secs: u32 },
    /// Server: reattached. `input_received` bytes of the client's input
    /// reached the session; output resumes at offset `output_from` (above
    /// the client's count when output was lost).
    Resumed {
        input_received: u64,
        output_from: u64,
    },
    /// Either side: session bytes (input from the client, output from the
    /// server).
    Data(Vec<u8>),
    /// Either side: this many bytes of the peer's DATA have arrived in total.
    Ack(u64),
    /// Client: the input has ended.
    Eof,
    /// Client: end the session now (the user left with `~.`, or closed the
    /// terminal); nothing is held.
    End,
    /// Server: no reattach; why.
    Refused(String),
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of {0} bytes is longer than the {MAX_FRAME} allowed")]
    TooLong(usize),
    #[error("empty frame")]
    Empty,
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    #[error("{what} frame is truncated")]
    Truncated { what: &'static str },
    #[error("{what} frame has {extra} bytes left over")]
    TrailingBytes { what: &'static str, extra: usize },
    #[error("START names unknown program kind {0}")]
    UnknownProgram(u8),
    #[error("START for a shell carries a command")]
    ShellWithCommand,
    #[error("token of {0} bytes, not {TOKEN_LEN}")]
    TokenLength(usize),
    #[error("REFUSED reason is not UTF-8")]
    NotUtf8,
    #[error("DATA frame of {0} bytes is longer than the {MAX_DATA} allowed")]
    DataTooLong(usize),
}

const START: u8 = 1;
const RESUME: u8 = 2;
const SESSION: u8 = 3;
const RESUMED: u8 = 4;
const DATA: u8 = 5;
const ACK: u8 = 6;
const EOF: u8 = 7;
const END: u8 = 8;
const REFUSED: u8 = 9;

impl Frame {
    /// Appends the frame's encoding to `out`.
    ///
    /// DATA longer than [`MAX_DATA`] must be split by the caller
    /// ([`encode_data`] does).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        match self {
            Frame::Start(program) => {
                out.push(START);
                match program {
                    Program::Shell => {
                        out.push(0);
                        put_string(out, b"");
                    }
                    Program::Command(command) => {
                        out.push(1);
                        put_string(out, command);
                    }
                }
            }
            Frame::Resume {
                token,
                output_received,
            } => {
                out.push(RESUME);
                put_string(out, &token.0);
                out.extend_from_slice(&output_received.to_be_bytes());
            }
            Frame::Session { token, hold_secs } => {
                out.push(SESSION);
                put_string(out, &token.0);
                out.extend_from_slice(&hold_secs.to_be_bytes());
            }
            Frame::Resumed {
                input_received,
                output_from,
            } => {
                out.push(RESUMED);
                out.extend_from_slice(&input_received.to_be_bytes());
                out.extend_from_slice(&output_from.to_be_bytes());
            }
            Frame::Data(bytes) => {
                out.push(DATA);
                out.extend_from_slice(bytes);
            }
            Frame::Ack(count) => {
                out.push(ACK);
                out.extend_from_slice(&count.to_be_bytes());
            }
            Frame::Eof => out.push(EOF),
            Frame::End => out.push(END),
            Frame::Refused(reason) => {
                out.push(REFUSED);
                put_string(out, reason.as_bytes());
            }
        }
        let body = out.len() - start - 4;
        // Bodies are bounded by what the callers put in (MAX_DATA, a token,
        // a reason line), far below 4 GiB.
        let length = u32::try_from(body).unwrap_or(u32::MAX).to_be_bytes();
        out[start..start + 4].copy_from_slice(&length);
    }

    /// Decodes one frame from the front of `buf`: `Ok(None)` when more bytes
    /// are needed, else the frame and how many bytes it took.
    pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, WireError> {
        let Some(header) = buf.first_chunk::<4>() else {
            return Ok(None);
        };
        let length = u32::from_be_bytes(*header) as usize;
        if length > MAX_FRAME {
            return Err(WireError::TooLong(length));
        }
        let Some(body) = buf.get(4..4 + length) else {
            return Ok(None);
        };
        let (&kind, rest) = body.split_first().ok_or(WireError::Empty)?;
        let mut r = Reader {
            rest,
            what: name(kind),
        };
        let frame = match kind {
            START => {
                let program = match r.u8()? {
                    0 if r.string()?.is_empty() => Program::Shell,
                    0 => return Err(WireError::ShellWithCommand),
                    1 => Program::Command(r.string()?.to_vec()),
                    other => return Err(WireError::UnknownProgram(other)),
                };
                Frame::Start(program)
            }
            RESUME => Frame::Resume {
                token: r.token()?,
                output_received: r.u64()?,
            },
            SESSION => Frame::Session {
                token: r.token()?,
                hold_secs: r.u32()?,
            },
            RESUMED => Frame::Resumed {
                input_received: r.u64()?,
                output_from: r.u64()?,
            },
            DATA => Frame::Data(std::mem::take(&mut r.rest).to_vec()),
            ACK => Frame::Ack(r.u64()?),
            EOF => Frame::Eof,
            END => Frame::End,
            REFUSED => {
                let reason = std::str::from_utf8(r.string()?).map_err(|_| WireError::NotUtf8)?;
                Frame::Refused(reason.to_string())
            }
            other => return Err(WireError::UnknownType(other)),
        };
        r.finish()?;
        Ok(Some((frame, 4 + length)))
    }
}

/// Appends `bytes` as DATA frames of at most [`MAX_DATA`] bytes each.
pub fn encode_data(bytes: &[u8], out: &mut Vec<u8>) {
    for chunk in bytes.chunks(MAX_DATA) {
        out.extend_from_slice(&u32::try_from(chunk.len() + 1).unwrap_or(0).to_be_bytes());
        out.push(DATA);
        out.extend_from_slice(chunk);
    }
}

fn name(kind: u8) -> &'static str {
    match kind {
        START => "START",
        RESUME => "RESUME",
        SESSION => "SESSION",
        RESUMED => "RESUMED",
        DATA => "DATA",
        ACK => "ACK",
        EOF => "EOF",
        END => "END",
        REFUSED => "REFUSED",
        _ => "unknown",
    }
}

pub(crate) fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A bounds-checked cursor over a frame body.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// A cursor over `body`, a frame of kind `what` (for errors).
    pub(crate) fn new(body: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { rest: body, what }
    }

    /// What is left, all of it.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Truncated { what: self.what });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        let high = u64::from(self.u32()?);
        let low = u64::from(self.u32()?);
        Ok(high << 32 | low)
    }

    pub(crate) fn string(&mut self) -> Result<&'a [u8], WireError> {
        let length = self.u32()? as usize;
        self.take(length)
    }

    pub(crate) fn token(&mut self) -> Result<Token, WireError> {
        let bytes = self.string()?;
        let token: [u8; TOKEN_LEN] = bytes
            .try_into()
            .map_err(|_| WireError::TokenLength(bytes.len()))?;
        Ok(Token(token))
    }

    pub(crate) fn finish(self) -> Result<(), WireError> {
        match self.rest.len() {
            0 => Ok(()),
            extra => Err(WireError::TrailingBytes {
                what: self.what,
                extra,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frame: Frame) {
        let mut bytes = Vec::new();
        frame.encode(&mut bytes);
        assert_eq!(Frame::decode(&bytes), Ok(Some((frame, bytes.len()))));
        for cut in 0..bytes.len() {
            assert_eq!(Frame::decode(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn every_frame_round_trips() {
        let token = Token([7; TOKEN_LEN]);
        round_trip(Frame::Start(Program::Shell));
        round_trip(Frame::Start(Program::Command(b"top -d 1".to_vec())));
        round_trip(Frame::Resume {
            token: token.clone(),
            output_received: 1 << 40,
        });
        round_trip(Frame::Session {
            token,
            hold_secs: 3600,
        });
        round_trip(Frame::Resumed {
            input_received: 5,
            output_from: u64::MAX,
        });
        round_trip(Frame::Data(b"ls\r".to_vec()));
        round_trip(Frame::Data(vec![0xff; MAX_DATA]));
        round_trip(Frame::Ack(0));
        round_trip(Frame::Eof);
        round_trip(Frame::End);
        round_trip(Frame::Refused("the session is gone".into()));
    }

    #[test]
    fn bad_frames_are_refused() {
        let cases: &[(&[u8], WireError)] = &[
            (&[0, 0, 0, 0], WireError::Empty),
            (&[0, 0, 0, 1, 99], WireError::UnknownType(99)),
            (&[0, 1, 0, 2, 5], WireError::TooLong(0x10002)),
            (
                &[0, 0, 0, 2, 7, 0],
                WireError::TrailingBytes {
                    what: "EOF",
                    extra: 1,
                },
            ),
            (&[0, 0, 0, 3, 6, 0, 0], WireError::Truncated { what: "ACK" }),
            (
                &[0, 0, 0, 6, 1, 2, 0, 0, 0, 0],
                WireError::UnknownProgram(2),
            ),
            (&[0, 0, 0, 6, 3, 0, 0, 0, 1, 9], WireError::TokenLength(1)),
            (&[0, 0, 0, 6, 9, 0, 0, 0, 1, 0xff], WireError::NotUtf8),
        ];
        for (bytes, error) in cases {
            assert_eq!(Frame::decode(bytes), Err(error.clone()), "{bytes:?}");
        }
    }

    #[test]
    fn long_data_is_split() {
        let bytes = vec![1u8; MAX_DATA * 2 + 3];
        let mut out = Vec::new();
        encode_data(&bytes, &mut out);
        let mut at = 0;
        let mut back = Vec::new();
        while let Some((frame, used)) = Frame::decode(&out[at..]).unwrap() {
            let Frame::Data(chunk) = frame else {
                panic!("not DATA")
            };
            assert!(chunk.len() <= MAX_DATA);
            back.extend(chunk);
            at += used;
        }
        assert_eq!((at, back), (out.len(), bytes));
    }

    /// draft-notes/test-vectors/reattach.txt, written by hand from the
    /// draft's text: each frame encodes to its vector and decodes back.
    #[test]
    fn draft_vectors() {
        let text = include_str!("../../../draft-notes/test-vectors/reattach.txt");
        let hex = |name: &str| -> Vec<u8> {
            let line = text
                .lines()
                .find(|line| line.starts_with(&format!("{name} = ")))
                .unwrap_or_else(|| panic!("no vector {name}"));
            let digits = line.split_once(" = ").map(|(_, v)| v.trim()).unwrap_or("");
            (0..digits.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex"))
                .collect()
        };
        let cases = [
            ("start_shell", Frame::Start(Program::Shell)),
            (
                "start_exec_top",
                Frame::Start(Program::Command(b"top".to_vec())),
            ),
            (
                "resume_token11_at_1000",
                Frame::Resume {
                    token: Token([0x11; TOKEN_LEN]),
                    output_received: 1000,
                },
            ),
            (
                "session_token22_3600",
                Frame::Session {
                    token: Token([0x22; TOKEN_LEN]),
                    hold_secs: 3600,
                },
            ),
            (
                "resumed_5_4096",
                Frame::Resumed {
                    input_received: 5,
                    output_from: 4096,
                },
            ),
            ("data_ls_cr", Frame::Data(b"ls\r".to_vec())),
            ("ack_65536", Frame::Ack(65536)),
            ("eof", Frame::Eof),
            ("end", Frame::End),
            ("refused_gone", Frame::Refused("gone".into())),
        ];
        for (name, frame) in cases {
            let expected = hex(name);
            let mut encoded = Vec::new();
            frame.encode(&mut encoded);
            assert_eq!(encoded, expected, "{name}");
            assert_eq!(
                Frame::decode(&expected),
                Ok(Some((frame, expected.len()))),
                "{name}"
            );
        }
    }

    #[test]
    fn tokens_stay_out_of_debug_output() {
        assert_eq!(format!("{:?}", Token([0x41; TOKEN_LEN])), "Token(..)");
    }
}
