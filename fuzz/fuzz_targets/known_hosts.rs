//! known_hosts files: every line parsed, hashed names and patterns looked up.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sshq::fuzzing::known_hosts(data));
