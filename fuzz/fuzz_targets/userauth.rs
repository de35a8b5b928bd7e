//! USERAUTH_REQUEST frames checked as the server checks them: key blob, algorithm, signature blob, signature.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sshq_quic::fuzzing::userauth(data));
