//! direct-udp@sshq: the client's target, then its datagram framing, through the AllowUdpRelay quic gate.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sshq::fuzzing::udp_relay(data));
