use super::*;
use crate::auth::{BoxFuture, SignError};
use ssh_key::private::Ed25519Keypair;
use ssh_key::{HashAlg, PrivateKey};

use AuthMethod::{KeyboardInteractive as Kbd, Password, PublicKey as Pk};

fn methods(enabled: &[AuthMethod], required: &[&[AuthMethod]]) -> AuthMethods {
    AuthMethods {
        enabled: enabled.to_vec(),
        required: required.iter().map(|list| list.to_vec()).collect(),
    }
}

#[test]
fn names_round_trip_and_unknown_names_are_skipped() {
    for method in AuthMethod::ALL {
        assert_eq!(AuthMethod::from_name(method.name()), Some(method));
    }
    assert_eq!(
        parse_name_list("publickey,hostbased,password,publickey,,gssapi-with-mic"),
        vec![Pk, Password]
    );
    assert_eq!(name_list(&[Pk, Kbd]), "publickey,keyboard-interactive");
}

#[test]
fn without_lists_any_enabled_method_completes_the_login() {
    let mut progress = AuthProgress::new(&methods(&[Pk, Password], &[]));
    assert!(progress.allows(Pk));
    assert!(progress.allows(Password));
    assert!(!progress.allows(Kbd), "a disabled method is never allowed");
    assert_eq!(progress.can_continue(), vec![Pk, Password]);
    assert_eq!(progress.succeeded(Password, None), MethodOutcome::Complete);
}

#[test]
fn a_sequence_needs_every_method_in_order() {
    let mut progress = AuthProgress::new(&methods(&[Pk, Kbd, Password], &[&[Pk, Kbd]]));
    assert!(progress.allows(Pk));
    assert!(!progress.allows(Kbd), "keyboard-interactive comes second");
    assert_eq!(progress.can_continue(), vec![Pk]);
    assert_eq!(
        progress.succeeded(Pk, None),
        MethodOutcome::Partial(vec![Kbd])
    );
    assert!(!progress.allows(Pk));
    assert!(progress.allows(Kbd));
    assert_eq!(progress.succeeded(Kbd, None), MethodOutcome::Complete);
}

#[test]
fn alternatives_advance_together_as_sshd_updates_them() {
    // AuthenticationMethods publickey,password publickey,keyboard-interactive
    let mut progress = AuthProgress::new(&methods(
        &[Pk, Kbd, Password],
        &[&[Pk, Password], &[Pk, Kbd]],
    ));
    assert_eq!(
        progress.succeeded(Pk, None),
        MethodOutcome::Partial(vec![Password, Kbd])
    );
    assert_eq!(progress.succeeded(Password, None), MethodOutcome::Complete);
}

#[test]
fn lists_with_a_disabled_method_are_dropped_and_none_left_allows_nothing() {
    let progress = AuthProgress::new(&methods(&[Pk], &[&[Pk, Password], &[Pk]]));
    assert!(progress.allows(Pk));
    let none_left = AuthProgress::new(&methods(&[Pk], &[&[Pk, Password]]));
    assert!(!none_left.allows(Pk));
    assert!(none_left.can_continue().is_empty());
}

#[test]
fn the_same_key_cannot_count_twice() {
    let key = seeded_key(1);
    let mut progress = AuthProgress::new(&methods(&[Pk], &[&[Pk, Pk]]));
    assert!(!progress.key_already_used(&key));
    assert_eq!(
        progress.succeeded(Pk, Some(&key)),
        MethodOutcome::Partial(vec![Pk])
    );
    assert!(progress.key_already_used(&key));
}

fn seeded_key(seed: u8) -> PublicKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
        .public_key()
        .clone()
}

struct TestKey(PublicKey);

impl UserKey for TestKey {
    fn public_key(&self) -> &PublicKey {
        &self.0
    }
    fn sign<'a>(
        &'a self,
        _data: &'a [u8],
        _rsa_hash: Option<HashAlg>,
    ) -> BoxFuture<'a, Result<Vec<u8>, SignError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn description(&self) -> String {
        "test key".into()
    }
}

struct Silent;

impl Prompter for Silent {
    fn password<'a>(
        &'a self,
        _prompt: &'a str,
    ) -> BoxFuture<'a, Option<zeroize::Zeroizing<String>>> {
        Box::pin(async { None })
    }
    fn keyboard_interactive<'a>(
        &'a self,
        _request: &'a InfoRequest,
    ) -> BoxFuture<'a, Option<Vec<zeroize::Zeroizing<String>>>> {
        Box::pin(async { None })
    }
}

fn keys(n: usize) -> Vec<Arc<dyn UserKey>> {
    (0..n)
        .map(|i| Arc::new(TestKey(seeded_key(i as u8 + 10))) as Arc<dyn UserKey>)
        .collect()
}

fn options(preferred: &[AuthMethod], prompts: u32) -> ClientAuthOptions {
    ClientAuthOptions {
        preferred: preferred.to_vec(),
        password_prompts: prompts,
        prompter: Some(Arc::new(Silent)),
    }
}

fn method_of(attempt: Option<Attempt>) -> Option<AuthMethod> {
    attempt.map(|a| a.method())
}

#[test]
fn the_client_tries_keys_then_conversations_then_passwords_as_ssh_does() {
    let mut plan = ClientAuthPlan::new(keys(2), options(&[Pk, Kbd, Password], 2));
    assert_eq!(method_of(plan.first()), Some(Pk));
    let all = [Pk, Kbd, Password];
    assert_eq!(method_of(plan.after_failure(&all, false)), Some(Pk));
    assert_eq!(method_of(plan.after_failure(&all, false)), Some(Kbd));
    plan.saw_info_request();
    assert_eq!(method_of(plan.after_failure(&all, false)), Some(Kbd));
    assert_eq!(method_of(plan.after_failure(&all, false)), Some(Password));
    assert_eq!(method_of(plan.after_failure(&all, false)), Some(Password));
    assert_eq!(
        method_of(plan.after_failure(&all, false)),
        None,
        "NumberOfPasswordPrompts 2 allows two passwords"
    );
}

#[test]
fn a_conversation_refused_without_a_round_is_not_retried() {
    let mut plan = ClientAuthPlan::new(Vec::new(), options(&[Kbd, Password], 3));
    assert_eq!(method_of(plan.first()), Some(Kbd));
    assert_eq!(
        method_of(plan.after_failure(&[Kbd, Password], false)),
        Some(Password)
    );
}

#[test]
fn the_client_follows_the_servers_list_and_its_own_preference() {
    let mut plan = ClientAuthPlan::new(keys(1), options(&[Password, Pk], 3));
    assert_eq!(method_of(plan.first()), Some(Password));
    assert_eq!(method_of(plan.after_failure(&[Pk], false)), Some(Pk));
    assert_eq!(method_of(plan.after_failure(&[Pk], false)), None);
}

#[test]
fn without_a_prompter_only_keys_are_tried() {
    let mut plan = ClientAuthPlan::new(
        keys(1),
        ClientAuthOptions {
            preferred: vec![Pk, Kbd, Password],
            password_prompts: 3,
            prompter: None,
        },
    );
    assert_eq!(method_of(plan.first()), Some(Pk));
    assert_eq!(
        method_of(plan.after_failure(&[Pk, Kbd, Password], false)),
        None
    );
}

#[test]
fn partial_success_offers_the_other_keys_again() {
    let mut plan = ClientAuthPlan::new(keys(2), options(&[Pk, Password], 3));
    let Some(Attempt::Key(first)) = plan.first() else {
        panic!("a key comes first")
    };
    let Some(Attempt::Key(second)) = plan.after_failure(&[Pk], false) else {
        panic!("then the second key")
    };
    // The second key succeeded partially; publickey,publickey wants another.
    let Some(Attempt::Key(again)) = plan.after_failure(&[Pk], true) else {
        panic!("the first key is offered again")
    };
    assert_eq!(again.public_key(), first.public_key());
    assert_ne!(again.public_key(), second.public_key());
    assert_eq!(method_of(plan.after_failure(&[Pk], false)), None);
}
