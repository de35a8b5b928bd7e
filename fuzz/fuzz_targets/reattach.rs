//! The frames of reattachable sessions (draft §8.12.2) and the buffers
//! their acknowledgements drive.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sshq::fuzzing::reattach(data));
