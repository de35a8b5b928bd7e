//! -L, -R and -D forwarding specifications.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sshq::fuzzing::forward_spec(data));
