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

/// One rule for tests that need root, shared by every crate's tests.
#[allow(unused_imports)] // not every test binary has a test that needs root
pub use sshq_test_kit::needs_root;
