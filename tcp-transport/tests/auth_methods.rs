//! Passwords, keyboard-interactive and AuthenticationMethods over TCP:
//! sshq-tcp's client against sshq-tcp's server on loopback, and a raw
//! russh client for what sshq's client never sends (the same key twice,
//! another user name).

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    keygen, AnyHostKey, Round, ScriptedPrompter, TempDir, TestPolicy, TestServer, PASSWORD, USER,
};
use sshq_core::auth::{FileKey, UserCredential, UserKey};
use sshq_core::auth_methods::{AuthMethod, ClientAuthOptions};
use sshq_core::error::ConnectError;
use sshq_core::ssh_key::public::KeyData;
use sshq_core::ssh_key::PrivateKey;
use sshq_core::transport::ConnectionInfo;
use sshq_tcp::{ClientParams, TcpClientConnection};

use AuthMethod::{KeyboardInteractive, Password, PublicKey};

/// Logs in with sshq-tcp's client: `keys`, then keyboard-interactive and
/// passwords answered by `prompter` (ssh's default order).
async fn login(
    server: &TestServer,
    keys: &[(&PrivateKey, &str)],
    prompter: Option<Arc<ScriptedPrompter>>,
    password_prompts: u32,
) -> Result<TcpClientConnection, ConnectError> {
    let keys = keys
        .iter()
        .map(|(key, name)| Arc::new(FileKey::new((*key).clone(), *name)) as Arc<dyn UserKey>)
        .collect();
    let params = ClientParams {
        host: "127.0.0.1".to_string(),
        user: USER.to_string(),
        keys,
        auth_options: ClientAuthOptions {
            preferred: vec![PublicKey, KeyboardInteractive, Password],
            password_prompts,
            prompter: prompter.map(|p| p as Arc<dyn sshq_core::auth_methods::Prompter>),
        },
        verifier: Arc::new(AnyHostKey),
        kex: None,
        known_host_key_types: Vec::new(),
        congestion: None,
        tcp_keepalive: false,
    };
    tokio::time::timeout(
        Duration::from_secs(30),
        sshq_tcp::connect_tcp(server.addr, params),
    )
    .await
    .expect("the login ended within 30 s")
}

/// The key of a plain-key credential (the comment is not sent).
fn logged_in_key(info: &ConnectionInfo) -> Option<KeyData> {
    match &info.credential {
        Some(UserCredential::Key(key)) => Some(key.key_data().clone()),
        _ => None,
    }
}

fn denied_methods(result: Result<TcpClientConnection, ConnectError>) -> String {
    match result {
        Err(ConnectError::PermissionDenied { methods, .. }) => methods,
        Err(other) => panic!("expected permission denied, got: {other}"),
        Ok(_) => panic!("expected permission denied, but the login succeeded"),
    }
}

#[tokio::test]
async fn a_password_logs_in_without_a_credential() {
    let dir = TempDir::new("password");
    let mut server = TestServer::start(TestPolicy::new(&[Password], &[]), &dir).await;
    let prompter = Arc::new(ScriptedPrompter::with_passwords(&[PASSWORD]));
    let conn = login(&server, &[], Some(prompter.clone()), 3).await;
    assert!(conn.is_ok(), "login failed: {:?}", conn.err());
    let info = server.next_login().await.expect("server login");
    assert_eq!(info.user, USER);
    assert_eq!(info.credential, None, "no key was used");
    assert_eq!(
        prompter.asked(),
        [format!("password: {USER}@127.0.0.1's password: ")]
    );
}

#[tokio::test]
async fn a_wrong_password_then_the_right_one() {
    let dir = TempDir::new("retry");
    let policy = TestPolicy::new(&[Password], &[]);
    let checked = policy.passwords_checked.clone();
    let mut server = TestServer::start(policy, &dir).await;
    let prompter = Arc::new(ScriptedPrompter::with_passwords(&["wrong", PASSWORD]));
    let conn = login(&server, &[], Some(prompter.clone()), 3).await;
    assert!(conn.is_ok(), "login failed: {:?}", conn.err());
    assert!(server.next_login().await.is_ok());
    assert_eq!(prompter.asked().len(), 2);
    // ssh's "Permission denied, please try again." before the second prompt.
    assert_eq!(prompter.refusals_shown.load(Ordering::SeqCst), 1);
    assert_eq!(checked.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn only_the_prompts_allowed_are_tried_then_permission_denied() {
    let dir = TempDir::new("prompts");
    let mut server = TestServer::start(TestPolicy::new(&[Password], &[]), &dir).await;
    let prompter = Arc::new(ScriptedPrompter::with_passwords(&["a", "b", "c", "d"]));
    let result = login(&server, &[], Some(prompter.clone()), 2).await;
    assert_eq!(denied_methods(result), "password");
    assert_eq!(prompter.asked().len(), 2, "NumberOfPasswordPrompts 2");
    assert!(server.next_login().await.is_err());
}

#[tokio::test]
async fn keyboard_interactive_with_two_rounds_and_a_round_without_prompts() {
    let dir = TempDir::new("kbdint");
    let mut policy = TestPolicy::new(&[KeyboardInteractive], &[]);
    policy.rounds = vec![
        Round::new("", &[("Password: ", false)], &[PASSWORD]),
        Round::new("Your password expires in 3 days", &[], &[]),
        Round::new(
            "Second factor",
            &[("Code: ", true), ("Again: ", false)],
            &["123456", "123456"],
        ),
    ];
    let mut server = TestServer::start(policy, &dir).await;
    let mut prompter = ScriptedPrompter::default();
    prompter
        .answers
        .insert("Password: ".to_string(), PASSWORD.to_string());
    prompter
        .answers
        .insert("Code: ".to_string(), "123456".to_string());
    prompter
        .answers
        .insert("Again: ".to_string(), "123456".to_string());
    let prompter = Arc::new(prompter);
    let conn = login(&server, &[], Some(prompter.clone()), 3).await;
    assert!(conn.is_ok(), "login failed: {:?}", conn.err());
    let info = server.next_login().await.expect("server login");
    assert_eq!(info.credential, None);
    assert_eq!(
        prompter.asked(),
        [
            "round:  (1 prompts)",
            "round: Your password expires in 3 days (0 prompts)",
            "round: Second factor (2 prompts)",
        ]
    );
}

#[tokio::test]
async fn a_wrong_keyboard_interactive_answer_is_refused() {
    let dir = TempDir::new("kbdwrong");
    let mut policy = TestPolicy::new(&[KeyboardInteractive], &[]);
    policy.rounds = vec![Round::new("", &[("Password: ", false)], &[PASSWORD])];
    let mut server = TestServer::start(policy, &dir).await;
    let mut prompter = ScriptedPrompter::default();
    prompter
        .answers
        .insert("Password: ".to_string(), "wrong".to_string());
    let prompter = Arc::new(prompter);
    let result = login(&server, &[], Some(prompter.clone()), 2).await;
    assert_eq!(denied_methods(result), "keyboard-interactive");
    // One conversation per NumberOfPasswordPrompts, as ssh.
    assert_eq!(prompter.asked().len(), 2);
    assert!(server.next_login().await.is_err());
}

#[tokio::test]
async fn a_cancelled_prompt_stops_authentication() {
    let dir = TempDir::new("cancel");
    let mut server = TestServer::start(TestPolicy::new(&[Password], &[]), &dir).await;
    // No passwords queued: the prompter answers None, as at end of input.
    let prompter = Arc::new(ScriptedPrompter::default());
    let result = login(&server, &[], Some(prompter.clone()), 3).await;
    assert_eq!(denied_methods(result), "password");
    assert_eq!(prompter.asked().len(), 1);
    assert!(server.next_login().await.is_err());
}

#[tokio::test]
async fn publickey_then_password_is_a_partial_success_then_a_login() {
    let dir = TempDir::new("pkpw");
    let key = keygen(&dir, "user_key");
    let mut policy = TestPolicy::new(&[PublicKey, Password], &[&[PublicKey, Password]]);
    policy.keys = vec![key.public_key().clone()];
    let mut server = TestServer::start(policy, &dir).await;
    let prompter = Arc::new(ScriptedPrompter::with_passwords(&[PASSWORD]));
    let conn = login(&server, &[(&key, "user_key")], Some(prompter.clone()), 3).await;
    assert!(conn.is_ok(), "login failed: {:?}", conn.err());
    let info = server.next_login().await.expect("server login");
    // The key's credential stays, though the password ended the login:
    // sessions take the key's authorized_keys options from it.
    assert_eq!(
        logged_in_key(&info),
        Some(key.public_key().key_data().clone())
    );
    assert_eq!(prompter.asked().len(), 1);
    assert_eq!(prompter.refusals_shown.load(Ordering::SeqCst), 0);

    // Without a password to give, the key alone is not enough: the server
    // answered it with partial success and "password" only.
    let result = login(&server, &[(&key, "user_key")], None, 3).await;
    assert_eq!(denied_methods(result), "password");
    assert!(server.next_login().await.is_err());

    // And a password alone is not allowed first.
    let prompter = Arc::new(ScriptedPrompter::with_passwords(&[PASSWORD]));
    let result = login(&server, &[], Some(prompter.clone()), 3).await;
    assert_eq!(denied_methods(result), "publickey");
    assert!(prompter.asked().is_empty(), "{:?}", prompter.asked());
    assert!(server.next_login().await.is_err());
}

#[tokio::test]
async fn publickey_twice_needs_two_different_keys() {
    let dir = TempDir::new("pkpk");
    let first = keygen(&dir, "first");
    let second = keygen(&dir, "second");
    let mut policy = TestPolicy::new(&[PublicKey], &[&[PublicKey, PublicKey]]);
    policy.keys = vec![first.public_key().clone(), second.public_key().clone()];
    let mut server = TestServer::start(policy, &dir).await;

    let result = login(&server, &[(&first, "first")], None, 3).await;
    assert_eq!(denied_methods(result), "publickey");
    assert!(server.next_login().await.is_err());

    let conn = login(&server, &[(&first, "first"), (&second, "second")], None, 3).await;
    assert!(conn.is_ok(), "login failed: {:?}", conn.err());
    let info = server.next_login().await.expect("server login");
    assert_eq!(
        logged_in_key(&info),
        Some(second.public_key().key_data().clone())
    );

    // A client that offers the same key again is refused (no partial
    // success), then gets in with the other one.
    let mut raw = RawClient::connect(&server).await;
    let once = raw.publickey(USER, &first).await;
    assert_eq!(once, (false, true, vec!["publickey".to_string()]));
    let again = raw.publickey(USER, &first).await;
    assert_eq!(again, (false, false, vec!["publickey".to_string()]));
    let other = raw.publickey(USER, &second).await;
    assert!(other.0, "the second key completes the login");
    assert!(server.next_login().await.is_ok());
}

#[tokio::test]
async fn a_refused_account_refuses_the_login() {
    let dir = TempDir::new("account");
    let mut policy = TestPolicy::new(&[Password], &[]);
    policy.account_allowed = false;
    let mut server = TestServer::start(policy, &dir).await;
    let prompter = Arc::new(ScriptedPrompter::with_passwords(&[PASSWORD, PASSWORD]));
    let result = login(&server, &[], Some(prompter.clone()), 2).await;
    assert_eq!(denied_methods(result), "password");
    assert!(server.next_login().await.is_err());
}

#[tokio::test]
async fn max_auth_tries_counts_passwords() {
    let dir = TempDir::new("maxtries");
    let mut policy = TestPolicy::new(&[Password], &[]);
    policy.max_auth_tries = 2;
    let checked = policy.passwords_checked.clone();
    let mut server = TestServer::start(policy, &dir).await;
    let prompter = Arc::new(ScriptedPrompter::with_passwords(&["a", "b", "c", "d", "e"]));
    let result = login(&server, &[], Some(prompter.clone()), 5).await;
    assert!(
        matches!(result, Err(ConnectError::PermissionDenied { .. })),
        "{:?}",
        result.err()
    );
    assert!(server.next_login().await.is_err());
    // The first "none" is free; the two wrong passwords end it.
    assert_eq!(checked.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn another_user_name_ends_the_connection() {
    let dir = TempDir::new("username");
    let key = keygen(&dir, "user_key");
    let mut policy = TestPolicy::new(&[PublicKey, Password], &[]);
    policy.keys = vec![key.public_key().clone()];
    let mut server = TestServer::start(policy, &dir).await;
    let mut raw = RawClient::connect(&server).await;
    let none = raw
        .handle
        .authenticate_none(USER)
        .await
        .expect("none request");
    assert!(!none.success());
    let _ = raw.handle.authenticate_none("mallory").await;
    let message = raw.disconnect_message().await;
    assert!(
        message.contains("Change of username or service not allowed: (alice,ssh-connection) -> (mallory,ssh-connection)"),
        "{message:?}"
    );
    assert!(server.next_login().await.is_err());
}

/// russh's own client, for requests sshq's client never makes.
struct RawClient {
    handle: russh::client::Handle<RawHandler>,
    disconnect: Arc<Mutex<Option<String>>>,
}

struct RawHandler {
    disconnect: Arc<Mutex<Option<String>>>,
}

impl russh::client::Handler for RawHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }

    async fn disconnected(
        &mut self,
        reason: russh::client::DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        if let russh::client::DisconnectReason::ReceivedDisconnect(info) = reason {
            if let Ok(mut slot) = self.disconnect.lock() {
                *slot = Some(info.message);
            }
        }
        Ok(())
    }
}

impl RawClient {
    async fn connect(server: &TestServer) -> RawClient {
        let disconnect = Arc::new(Mutex::new(None));
        let handler = RawHandler {
            disconnect: disconnect.clone(),
        };
        let config = Arc::new(russh::client::Config::default());
        let handle = russh::client::connect(config, server.addr, handler)
            .await
            .expect("russh client connects");
        RawClient { handle, disconnect }
    }

    /// A signed publickey request: (success, partial success, methods).
    async fn publickey(&mut self, user: &str, key: &PrivateKey) -> (bool, bool, Vec<String>) {
        let key = russh::keys::PrivateKeyWithHashAlg::new(Arc::new(key.clone()), None);
        match self
            .handle
            .authenticate_publickey(user, key)
            .await
            .expect("publickey request")
        {
            russh::client::AuthResult::Success => (true, false, Vec::new()),
            russh::client::AuthResult::Failure {
                remaining_methods,
                partial_success,
            } => (
                false,
                partial_success,
                remaining_methods
                    .iter()
                    .map(|m| <&str>::from(m).to_string())
                    .collect(),
            ),
        }
    }

    /// The server's disconnect message, once it has come.
    async fn disconnect_message(&self) -> String {
        for _ in 0..100 {
            if let Some(message) = self.disconnect.lock().ok().and_then(|m| m.clone()) {
                return message;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no disconnect from the server within 5 s");
    }
}
