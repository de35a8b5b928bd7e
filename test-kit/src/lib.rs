//! What sshq's integration tests share across the workspace's crates.
//!
//! - [`needs_root`]: one rule for tests that need root (sshd's privilege
//!   separation, other users' sessions): run as root, fail loudly elsewhere
//!   unless [`SKIP_ROOT_TESTS`] is set, so no run passes without testing.
//! - `quinn` and `rustls` (feature `quic`): for hostile tests that must speak QUIC by
//!   hand (malformed frames, a server that cannot sign for its key). They
//!   come from here, a dev-dependency, so that `sshq`'s own manifest and
//!   `sshq_quic`'s API name neither.

#[cfg(feature = "quic")]
pub use quinn;
#[cfg(feature = "quic")]
pub use rustls;

/// Set (to any value) to run the tests outside root: tests that need root
/// then pass without running, saying so. CI runs as root and never sets it.
pub const SKIP_ROOT_TESTS: &str = "SSHQ_TEST_SKIP_ROOT";

/// Whether a test that needs root (for `why`) should run: true as root.
/// Outside root it fails the test, so a run that is not root cannot pass
/// without testing, unless [`SKIP_ROOT_TESTS`] is set: then it says the
/// test is skipped and returns false.
pub fn needs_root(why: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os(SKIP_ROOT_TESTS).is_some() {
        println!("SKIPPED (needs root: {why}; {SKIP_ROOT_TESTS} is set)");
        return false;
    }
    panic!(
        "this test needs root ({why}); CI runs as root. To skip it elsewhere, set {SKIP_ROOT_TESTS}=1"
    );
}
