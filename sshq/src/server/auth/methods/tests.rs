//! The login methods as the transports ask for them: straight through the
//! AuthPolicy methods, with the real PAM test service where PAM is needed.

use std::sync::Arc;

use sshq_core::auth::AuthPolicy;
use sshq_core::auth_methods::AuthMethod::{KeyboardInteractive as Kbd, Password, PublicKey};
use sshq_core::auth_methods::{KbdInteractive, KbdStep};
use zeroize::Zeroizing;

use super::super::pam::tests::test_service::{TestPamService, TEST_PASSWORD};
use super::super::pam::tests::TEST_USER;
use super::super::RootLogin;
use super::*;

/// A client address, as the transports pass it.
fn peer() -> Option<SocketAddr> {
    Some("192.0.2.7:50022".parse().unwrap())
}

/// sshqd's policy for `text` (an sshqd_config), built as the server
/// builds it, Match blocks included.
fn policy(text: &str) -> KeyPolicy {
    let config = ServerConfig::parse_str("test_config", text, &[]).unwrap();
    build(&Arc::new(config), true)
}

fn build(config: &Arc<ServerConfig>, with_matches: bool) -> KeyPolicy {
    let keys_config = config.clone();
    let mut policy = KeyPolicy {
        pubkey_authentication: config.pubkey_authentication,
        root_login: match config.permit_root_login {
            PermitRootLogin::Yes | PermitRootLogin::ProhibitPassword => RootLogin::Allowed,
            PermitRootLogin::ForcedCommandsOnly => RootLogin::ForcedCommandsOnly,
            PermitRootLogin::No => RootLogin::No,
        },
        max_auth_tries: config.max_auth_tries,
        authorized_keys: Box::new(move |user, home| keys_config.authorized_keys_files(user, home)),
        strict_modes: config.strict_modes,
        trusted_user_ca_keys: None,
        principals_file: Box::new(|_, _| None),
        revoked_keys: None,
        login_methods: LoginMethods::from_config(config),
        lookups: Default::default(),
        matched: None,
    };
    if with_matches && !config.matches.is_empty() {
        let base = config.clone();
        policy.matched = Some(Box::new(move |facts| {
            let matched = base.for_connection(facts).ok()?;
            Some(build(&Arc::new(matched), false))
        }));
    }
    policy
}

fn answers(texts: &[&str]) -> Vec<Zeroizing<String>> {
    texts
        .iter()
        .map(|t| Zeroizing::new(t.to_string()))
        .collect()
}

/// Runs a keyboard-interactive conversation answering every prompt with
/// `answer`; the last step.
async fn converse(conversation: &mut Box<dyn KbdInteractive>, answer: &str) -> KbdStep {
    let mut replies = Vec::new();
    for _ in 0..8 {
        match conversation.step(replies).await {
            KbdStep::Ask(round) => {
                let texts: Vec<&str> = round.prompts.iter().map(|_| answer).collect();
                replies = answers(&texts);
            }
            done => return done,
        }
    }
    panic!("the conversation does not end");
}

#[tokio::test]
async fn methods_follow_the_configuration() {
    let methods = |text: &'static str, user: &'static str| async move {
        policy(text).methods(user, peer()).await
    };
    // Keys only, as before UsePAM.
    let keys = methods("", TEST_USER).await;
    assert_eq!(keys, AuthMethods::publickey_only());
    // Without PAM no password method exists, whatever is asked.
    let asked = methods(
        "PasswordAuthentication yes\nKbdInteractiveAuthentication yes\n",
        TEST_USER,
    );
    assert_eq!(asked.await, AuthMethods::publickey_only());
    // UsePAM yes: sshd's defaults, every method.
    let pam = methods("UsePAM yes\n", TEST_USER).await;
    assert_eq!(pam.enabled, [PublicKey, Kbd, Password]);
    assert!(pam.required.is_empty());
    let no_kbd = methods("UsePAM yes\nKbdInteractiveAuthentication no\n", TEST_USER).await;
    assert_eq!(no_kbd.enabled, [PublicKey, Password]);
    // Lists: one naming a method sshqd never offers is skipped.
    let lists = "UsePAM yes\n\
                 AuthenticationMethods publickey,password publickey,keyboard-interactive:pam hostbased\n";
    let lists = methods(lists, TEST_USER).await;
    assert_eq!(
        lists.required,
        [vec![PublicKey, Password], vec![PublicKey, Kbd]]
    );
}

#[tokio::test]
async fn methods_under_match_user() {
    let text = "UsePAM yes\n\
                Match User nobody\n\
                \x20 AuthenticationMethods publickey,password\n\
                \x20 KbdInteractiveAuthentication no\n\
                Match User sshq-lonely\n\
                \x20 AuthenticationMethods publickey,password\n\
                \x20 PasswordAuthentication no\n";
    let policy = policy(text);
    let nobody = policy.methods(TEST_USER, peer()).await;
    assert_eq!(nobody.enabled, [PublicKey, Password]);
    assert_eq!(nobody.required, [vec![PublicKey, Password]]);
    // Someone else: the global settings.
    let other = policy.methods("sshq-no-such-user", peer()).await;
    assert_eq!(other.enabled, [PublicKey, Kbd, Password]);
    assert!(other.required.is_empty());
    // Every list names a disabled method: nothing is allowed (sshd
    // refuses the connection), not "any".
    let lonely = policy.methods("sshq-lonely", peer()).await;
    assert!(lonely.enabled.is_empty() && lonely.required.is_empty());
}

#[tokio::test]
async fn passwords_through_pam() {
    if !sshq_test_kit::needs_root("writes a PAM service to /etc/pam.d") {
        return;
    }
    let service = TestPamService::install(TEST_USER, TEST_PASSWORD);
    let policy = policy(&service.config_lines());
    assert!(
        policy
            .password_allowed(TEST_USER, TEST_PASSWORD, peer())
            .await
    );
    assert!(!policy.password_allowed(TEST_USER, "wrong", peer()).await);
    assert!(
        !policy
            .password_allowed("sshq-no-such-user", TEST_PASSWORD, peer())
            .await
    );
    // Disabled, globally or by Match: refused whatever the password.
    let off = format!("{}PasswordAuthentication no\n", service.config_lines());
    assert!(
        !self::policy(&off)
            .password_allowed(TEST_USER, TEST_PASSWORD, peer())
            .await
    );
    let matched = format!(
        "{}Match User {TEST_USER}\n  PasswordAuthentication no\n",
        service.config_lines()
    );
    let matched = self::policy(&matched);
    assert!(
        !matched
            .password_allowed(TEST_USER, TEST_PASSWORD, peer())
            .await
    );
    // Without UsePAM there is no password at all.
    assert!(
        !self::policy("PasswordAuthentication yes\n")
            .password_allowed(TEST_USER, TEST_PASSWORD, peer())
            .await
    );
}

#[tokio::test]
async fn empty_passwords_need_permit_empty_passwords() {
    if !sshq_test_kit::needs_root("writes a PAM service to /etc/pam.d") {
        return;
    }
    // A service that would take the empty password: only
    // PermitEmptyPasswords lets it be asked.
    let service = TestPamService::install(TEST_USER, "");
    let refused = policy(&service.config_lines());
    assert!(!refused.password_allowed(TEST_USER, "", peer()).await);
    let permitted = format!("{}PermitEmptyPasswords yes\n", service.config_lines());
    assert!(
        policy(&permitted)
            .password_allowed(TEST_USER, "", peer())
            .await
    );
}

#[tokio::test]
async fn root_passwords_need_permit_root_login_yes() {
    if !sshq_test_kit::needs_root("writes a PAM service to /etc/pam.d") {
        return;
    }
    let service = TestPamService::install("root", TEST_PASSWORD);
    // prohibit-password, sshqd's default, and the rest: keys only.
    for setting in [
        "",
        "PermitRootLogin prohibit-password\n",
        "PermitRootLogin forced-commands-only\n",
        "PermitRootLogin no\n",
    ] {
        let text = format!("{}{setting}", service.config_lines());
        let policy = policy(&text);
        assert!(
            !policy.password_allowed("root", TEST_PASSWORD, peer()).await,
            "{setting}"
        );
        let mut conversation = policy.keyboard_interactive("root", peer()).await.unwrap();
        assert_eq!(
            converse(&mut conversation, TEST_PASSWORD).await,
            KbdStep::Refused
        );
    }
    let text = format!("{}PermitRootLogin yes\n", service.config_lines());
    let policy = policy(&text);
    assert!(policy.password_allowed("root", TEST_PASSWORD, peer()).await);
    let mut conversation = policy.keyboard_interactive("root", peer()).await.unwrap();
    assert_eq!(
        converse(&mut conversation, TEST_PASSWORD).await,
        KbdStep::Accepted
    );
}

#[tokio::test]
async fn keyboard_interactive_through_pam() {
    if !sshq_test_kit::needs_root("writes a PAM service to /etc/pam.d") {
        return;
    }
    let service = TestPamService::install(TEST_USER, TEST_PASSWORD);
    let policy = policy(&service.config_lines());
    let mut conversation = policy
        .keyboard_interactive(TEST_USER, peer())
        .await
        .unwrap();
    let KbdStep::Ask(round) = conversation.step(Vec::new()).await else {
        panic!("no prompt");
    };
    assert_eq!(round.prompts.len(), 1);
    assert_eq!(round.prompts[0].text, "Password: ");
    assert!(!round.prompts[0].echo);
    assert_eq!(
        conversation.step(answers(&[TEST_PASSWORD])).await,
        KbdStep::Accepted
    );
    let mut conversation = policy
        .keyboard_interactive(TEST_USER, peer())
        .await
        .unwrap();
    assert_eq!(converse(&mut conversation, "wrong").await, KbdStep::Refused);
    // An unknown user gets the same prompt, and is refused.
    let mut conversation = policy
        .keyboard_interactive("sshq-no-such-user", peer())
        .await
        .unwrap();
    assert_eq!(
        converse(&mut conversation, TEST_PASSWORD).await,
        KbdStep::Refused
    );
    // Disabled, or without PAM: no conversation.
    let off = format!(
        "{}KbdInteractiveAuthentication no\n",
        service.config_lines()
    );
    assert!(self::policy(&off)
        .keyboard_interactive(TEST_USER, peer())
        .await
        .is_none());
    let no_pam = self::policy("KbdInteractiveAuthentication yes\n");
    assert!(no_pam
        .keyboard_interactive(TEST_USER, peer())
        .await
        .is_none());
}

#[tokio::test]
async fn the_account_stage_runs_with_use_pam() {
    if !sshq_test_kit::needs_root("writes a PAM service to /etc/pam.d") {
        return;
    }
    let service = TestPamService::install(TEST_USER, TEST_PASSWORD);
    let policy = policy(&service.config_lines());
    assert!(policy.account_allowed(TEST_USER, peer()).await);
    service.block_logins();
    assert!(!policy.account_allowed(TEST_USER, peer()).await);
    // Without UsePAM there is no PAM account stage.
    assert!(self::policy("").account_allowed(TEST_USER, peer()).await);
    service.allow_logins();
    assert!(policy.account_allowed(TEST_USER, peer()).await);
}
