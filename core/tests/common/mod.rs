//! Helpers shared by the integration tests: real keys and real answers from
//! OpenSSH's `ssh-keygen`, so the tests check compatibility, not our own idea of it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use sshq_core::ssh_key::PublicKey;

/// Runs a program and returns (exit success, stdout).
pub fn run(program: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (install openssh-client): {e}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// A fresh key made by `ssh-keygen -t kind` (extra args such as `-b 384`),
/// returned with the path of its `.pub` file.
pub fn keygen(dir: &Path, name: &str, kind: &str, extra: &[&str]) -> (PublicKey, PathBuf) {
    let path = dir.join(name);
    let path_str = path.to_str().expect("utf-8 temp path");
    let mut args = vec!["-q", "-t", kind, "-N", "", "-C", name, "-f", path_str];
    args.extend_from_slice(extra);
    let (ok, _) = run("ssh-keygen", &args);
    assert!(ok, "ssh-keygen -t {kind} failed");
    let pub_path = dir.join(format!("{name}.pub"));
    let key = PublicKey::read_openssh_file(&pub_path).expect("ssh-keygen wrote a valid .pub");
    (key, pub_path)
}

/// The `type base64` part of a `.pub` file, as it appears in known_hosts.
pub fn key_text(pub_path: &Path) -> String {
    let text = std::fs::read_to_string(pub_path).expect("read .pub");
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The line numbers `ssh-keygen -F name -f file` reports as matching `name`.
pub fn keygen_find(name: &str, file: &Path) -> Vec<usize> {
    let (_, out) = run(
        "ssh-keygen",
        &["-F", name, "-f", file.to_str().expect("utf-8 path")],
    );
    out.lines()
        .filter_map(|l| l.split(" found: line ").nth(1))
        .filter_map(|n| n.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Set (to any value) to run the tests outside root: tests that need root
/// then pass without running, saying so. CI runs as root and never sets it.
pub const SKIP_ROOT_TESTS: &str = "SSHQ_TEST_SKIP_ROOT";

/// Whether a test that needs root (for `why`) should run: true as root.
/// Outside root it fails the test, so a run that is not root cannot pass
/// without testing, unless SSHQ_TEST_SKIP_ROOT is set: then it says the
/// test is skipped and returns false.
pub fn needs_root(why: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os(SKIP_ROOT_TESTS).is_some() {
        println!("SKIPPED (needs root: {why}; {SKIP_ROOT_TESTS} is set)");
        return false;
    }
    panic!("this test needs root ({why}); CI runs as root. To skip it elsewhere, set {SKIP_ROOT_TESTS}=1");
}
