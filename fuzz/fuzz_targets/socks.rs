//! SOCKS4, SOCKS4a and SOCKS5 CONNECT requests (-D), parsed alone and through the stream handshake.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sshq::fuzzing::socks_request(data));
