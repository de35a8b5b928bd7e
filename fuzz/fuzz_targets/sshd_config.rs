//! sshd_config lines, as sshqd reads its -o options and ListenAddress values.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sshq::fuzzing::sshd_config(data));
