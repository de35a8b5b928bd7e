//! authorized_keys files, checked for a key as sshqd checks a login.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sshq::fuzzing::authorized_keys(data));
