//! The one-stream baseline's carrier frames (quic-transport one_stream): decoded whole and in pieces, each frame re-encoded to its own bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sshq_quic::fuzzing::decode_carrier(data));
