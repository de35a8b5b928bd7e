//! RevokedKeys files (KRLs and key lists), checked for a key and a
//! certificate as sshqd checks a login.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sshq::fuzzing::revoked_keys(data));
