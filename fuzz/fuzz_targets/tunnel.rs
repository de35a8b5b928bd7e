//! sshq-tunnel/1: the peer's CONNECTION_CLOSE code and reason, and the ALPN refusal.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sshq_quic::fuzzing::tunnel_close(data));
