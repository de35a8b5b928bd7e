//! PAM for real: a test service in /etc/pam.d (root), checked through the
//! same calls sshqd makes.

use std::time::{Duration, Instant};

use sshq_core::auth_methods::{KbdInteractive, KbdStep, Prompt};
use zeroize::Zeroizing;

use super::*;

/// The test service (shared with the integration tests).
#[path = "../../../../tests/common/pam.rs"]
pub(crate) mod test_service;

use test_service::{TestPamService, TEST_PASSWORD};

/// A user that exists everywhere and is not root (pam_nologin lets root in).
pub(crate) const TEST_USER: &str = "nobody";

fn request(service: &TestPamService, user: &str) -> PamRequest {
    PamRequest {
        service: service.name().to_string(),
        user: user.to_string(),
        rhost: Some("192.0.2.1".parse().unwrap()),
    }
}

fn secret(text: &str) -> Zeroizing<String> {
    Zeroizing::new(text.to_string())
}

fn answers(texts: &[&str]) -> Vec<Zeroizing<String>> {
    texts.iter().map(|t| secret(t)).collect()
}

#[tokio::test]
async fn passwords_are_checked_by_the_service() {
    if !sshq_test_kit::needs_root("writes a PAM service to /etc/pam.d") {
        return;
    }
    let service = TestPamService::install(TEST_USER, TEST_PASSWORD);
    let right = check_password(request(&service, TEST_USER), secret(TEST_PASSWORD), false);
    assert_eq!(right.await, PamVerdict::Success);
    let wrong = check_password(request(&service, TEST_USER), secret("wrong"), false).await;
    assert!(matches!(wrong, PamVerdict::Refused(_)), "{wrong:?}");
    // The right password, another user.
    let other = check_password(
        request(&service, "sshq-no-such-user"),
        secret(TEST_PASSWORD),
        false,
    );
    assert!(matches!(other.await, PamVerdict::Refused(_)));
    // Junk of the same length is what an unknown user's password becomes.
    let fake = fake_password(TEST_PASSWORD);
    assert_eq!(fake.len(), TEST_PASSWORD.len());
    assert_ne!(fake.as_str(), TEST_PASSWORD);
    let faked = check_password(request(&service, TEST_USER), fake, false).await;
    assert!(matches!(faked, PamVerdict::Refused(_)));
}

#[tokio::test]
async fn keyboard_interactive_relays_messages_and_prompts() {
    if !sshq_test_kit::needs_root("writes a PAM service to /etc/pam.d") {
        return;
    }
    let banner = "sshq test service: use the test password";
    let service = TestPamService::install_with_info(TEST_USER, TEST_PASSWORD, Some(banner));
    let start = || PamConversation::start(request(&service, TEST_USER), false, true).unwrap();

    let mut conversation = start();
    // The text message comes first, as the instruction of a round without
    // prompts (sshd's sshpam_query), then the password prompt alone.
    let shown = conversation.step(Vec::new()).await;
    let KbdStep::Ask(round) = shown else {
        panic!("expected the message round, got {shown:?}");
    };
    assert_eq!(round.name, "");
    assert_eq!(round.instruction, banner);
    assert!(round.prompts.is_empty());
    let asked = conversation.step(Vec::new()).await;
    let KbdStep::Ask(round) = asked else {
        panic!("expected the prompt, got {asked:?}");
    };
    assert_eq!((round.name.as_str(), round.instruction.as_str()), ("", ""));
    assert_eq!(
        round.prompts,
        [Prompt {
            text: "Password: ".into(),
            echo: false
        }]
    );
    let done = conversation.step(answers(&[TEST_PASSWORD])).await;
    assert_eq!(done, KbdStep::Accepted);

    // A wrong answer is refused, and stays refused.
    let mut conversation = start();
    conversation.step(Vec::new()).await;
    conversation.step(Vec::new()).await;
    assert_eq!(
        conversation.step(answers(&["wrong"])).await,
        KbdStep::Refused
    );
    assert!(conversation.refusal().is_some());
    assert_eq!(conversation.step(Vec::new()).await, KbdStep::Refused);

    // Two answers to one prompt: refused, as sshd refuses them.
    let mut conversation = start();
    conversation.step(Vec::new()).await;
    conversation.step(Vec::new()).await;
    let two = answers(&[TEST_PASSWORD, TEST_PASSWORD]);
    assert_eq!(conversation.step(two).await, KbdStep::Refused);

    // Not genuine (unknown user, or root without PermitRootLogin yes): the
    // right answer goes to PAM as junk, and nothing succeeds.
    let mut conversation =
        PamConversation::start(request(&service, TEST_USER), false, false).unwrap();
    conversation.step(Vec::new()).await;
    conversation.step(Vec::new()).await;
    assert_eq!(
        conversation.step(answers(&[TEST_PASSWORD])).await,
        KbdStep::Refused
    );
}

#[tokio::test]
async fn a_dropped_conversation_ends_its_thread() {
    if !sshq_test_kit::needs_root("writes a PAM service to /etc/pam.d") {
        return;
    }
    let service = TestPamService::install(TEST_USER, TEST_PASSWORD);
    let mut conversation =
        PamConversation::start(request(&service, TEST_USER), false, true).unwrap();
    // PAM now waits in the conversation for the answer...
    let asked = conversation.step(Vec::new()).await;
    assert!(matches!(asked, KbdStep::Ask(_)), "{asked:?}");
    // ...which never comes: the transport gave up (LoginGraceTime).
    let thread = conversation.end();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !thread.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the PAM thread outlived its conversation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    thread.join().unwrap();
}

#[tokio::test]
async fn the_account_stage_follows_the_service() {
    if !sshq_test_kit::needs_root("writes a PAM service to /etc/pam.d") {
        return;
    }
    let service = TestPamService::install(TEST_USER, TEST_PASSWORD);
    assert_eq!(
        check_account(request(&service, TEST_USER)).await,
        PamVerdict::Success
    );
    service.block_logins();
    let blocked = check_account(request(&service, TEST_USER)).await;
    assert!(matches!(blocked, PamVerdict::Refused(_)), "{blocked:?}");
    service.allow_logins();
    assert_eq!(
        check_account(request(&service, TEST_USER)).await,
        PamVerdict::Success
    );
}

#[test]
fn fake_passwords_are_junk_of_the_same_length() {
    assert_eq!(fake_password("").as_str(), "");
    assert_eq!(fake_password("abc").as_str(), "\u{8}\n\r");
    let long = "x".repeat(40);
    let fake = fake_password(&long);
    assert_eq!(fake.len(), 40);
    assert!(fake.contains("INCORRECT"));
}
