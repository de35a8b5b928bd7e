//! The messages between sshqd and a session holder: a holder outlives the
//! sshqd that started it and reads whatever a later one sends.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sshq::fuzzing::holder_wire(data));
