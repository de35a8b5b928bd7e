//! sshq/1 frames (quic-transport wire codec): a stream's bytes, decoded whole and in pieces, each frame re-encoded.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sshq_quic::fuzzing::decode_frames(data));
