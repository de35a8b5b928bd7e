//! ssh_config files (Host and Match blocks, every keyword sshq reads), as with -F.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sshq::fuzzing::ssh_config(data));
