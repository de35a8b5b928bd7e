//! OpenSSH's `ssh` logging in to sshq-tcp's server with a password,
//! keyboard-interactive, and a key then a password
//! (AuthenticationMethods), its answers given by an SSH_ASKPASS program.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{
    askpass, askpass_prompts, keygen, Round, TempDir, TestPolicy, TestServer, PASSWORD, USER,
};
use sshq_core::auth_methods::AuthMethod::{KeyboardInteractive, Password, PublicKey};

/// Runs `ssh ... USER@127.0.0.1 true` against `server` with `options`,
/// answering prompts with `askpass` only (no terminal, no agent, no
/// configuration files).
async fn ssh(server: &TestServer, askpass: &Path, options: &[&str]) -> Output {
    let mut command = tokio::process::Command::new("ssh");
    command
        .args(["-F", "/dev/null", "-p"])
        .arg(server.addr.port().to_string())
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "IdentityAgent=none",
            "-o",
            "BatchMode=no",
        ])
        .args(options)
        .arg(format!("{USER}@127.0.0.1"))
        .arg("true")
        .env("SSH_ASKPASS", askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("ssh ended within 30 s")
        .expect("run ssh")
}

fn show(output: &Output) -> String {
    format!(
        "status {:?}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn ssh_logs_in_with_a_password() {
    let dir = TempDir::new("ssh-password");
    let mut server = TestServer::start(TestPolicy::new(&[Password], &[]), &dir).await;
    let askpass = askpass(&dir, &[("password", PASSWORD)]);
    let out = ssh(
        &server,
        &askpass,
        &[
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        askpass_prompts(&dir),
        [format!("{USER}@127.0.0.1's password: ")]
    );
    let info = server.next_login().await.expect("server login");
    assert_eq!(info.credential, None);
}

#[tokio::test]
async fn ssh_logs_in_with_keyboard_interactive() {
    let dir = TempDir::new("ssh-kbdint");
    let mut policy = TestPolicy::new(&[KeyboardInteractive, Password], &[]);
    policy.rounds = vec![
        Round::new("", &[("Password: ", false)], &[PASSWORD]),
        Round::new("Your password expires in 3 days", &[], &[]),
        Round::new(
            "Second factor",
            &[("Verification code: ", true)],
            &["123456"],
        ),
    ];
    let checked = policy.passwords_checked.clone();
    let mut server = TestServer::start(policy, &dir).await;
    let askpass = askpass(
        &dir,
        &[("Password: ", PASSWORD), ("Verification code: ", "123456")],
    );
    let out = ssh(
        &server,
        &askpass,
        &[
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=keyboard-interactive",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", show(&out));
    // The round without prompts is shown, not asked (ssh names the
    // account before each prompt).
    assert_eq!(
        askpass_prompts(&dir),
        [
            format!("({USER}@127.0.0.1) Password: "),
            format!("({USER}@127.0.0.1) Verification code: "),
        ]
    );
    assert!(server.next_login().await.is_ok());
    assert_eq!(checked.load(Ordering::SeqCst), 0, "no password request");
}

#[tokio::test]
async fn ssh_logs_in_with_a_key_then_a_password() {
    let dir = TempDir::new("ssh-pkpw");
    let key = keygen(&dir, "user_key");
    let mut policy = TestPolicy::new(&[PublicKey, Password], &[&[PublicKey, Password]]);
    policy.keys = vec![key.public_key().clone()];
    let mut server = TestServer::start(policy, &dir).await;
    let askpass = askpass(&dir, &[("password", PASSWORD)]);
    let key_path = dir.path("user_key");
    let key_path = key_path.to_str().expect("a UTF-8 path");
    let out = ssh(
        &server,
        &askpass,
        &["-v", "-o", "IdentitiesOnly=yes", "-i", key_path],
    )
    .await;
    assert!(out.status.success(), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Authenticated using \"publickey\" with partial success."),
        "{}",
        show(&out)
    );
    let info = server.next_login().await.expect("server login");
    assert!(info.credential.is_some(), "the key's credential stays");
}

#[tokio::test]
async fn ssh_hears_too_many_authentication_failures() {
    let dir = TempDir::new("ssh-maxtries");
    let mut policy = TestPolicy::new(&[Password], &[]);
    policy.max_auth_tries = 2;
    let checked = policy.passwords_checked.clone();
    let mut server = TestServer::start(policy, &dir).await;
    let askpass = askpass(&dir, &[("password", "wrong")]);
    let out = ssh(
        &server,
        &askpass,
        &[
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "NumberOfPasswordPrompts=5",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Too many authentication failures"),
        "{}",
        show(&out)
    );
    assert_eq!(checked.load(Ordering::SeqCst), 2);
    // As with sshd, the disconnect takes the failure's place (russh change
    // 11), so ssh asks no third time.
    assert_eq!(askpass_prompts(&dir).len(), 2, "{}", show(&out));
    assert!(server.next_login().await.is_err());
}

#[tokio::test]
async fn ssh_is_denied_a_wrong_password() {
    let dir = TempDir::new("ssh-denied");
    let mut server = TestServer::start(TestPolicy::new(&[Password], &[]), &dir).await;
    let askpass = askpass(&dir, &[("password", "wrong")]);
    let out = ssh(&server, &askpass, &["-o", "PubkeyAuthentication=no"]).await;
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Permission denied (password)."),
        "{}",
        show(&out)
    );
    assert!(server.next_login().await.is_err());
}
