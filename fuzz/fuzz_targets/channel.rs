//! sshq/1's channel-stream state machine (quic-transport proto, sans-IO): both ends wired back to back and fed arbitrary bytes, decisions and time; it must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sshq_quic::proto::fuzzing::drive_channel(data));
