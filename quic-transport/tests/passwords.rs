//! Passwords, keyboard-interactive and AuthenticationMethods over real
//! QUIC (draft §7.2, §7.4, §7.7): sshq's server with a test policy, and
//! sshq's client with a scripted prompter or a client that writes frames by
//! hand.

// The lab is shared with protocol.rs; this test uses only part of it.
#[allow(dead_code)]
mod lab;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use lab::{step, Fixture, USER};
use sshq_core::auth::{AuthPolicy, BoxFuture, UserKey};
use sshq_core::auth_methods::{
    AuthMethod, AuthMethods, ClientAuthOptions, InfoRequest, KbdInteractive, KbdStep, Prompt,
    Prompter,
};
use sshq_core::ssh_key::PublicKey;
use sshq_core::zeroize::Zeroizing;
use sshq_quic::one_stream::ChannelMapping;
use sshq_quic::wire::{
    encode_frame, ErrorCode, Frame, InfoResponse, KeyboardInteractiveRequest, PasswordRequest,
};
use sshq_quic::{AuthOutcome, ClientAuth};

const PASSWORD: &str = "correct horse battery staple";
const CODE: &str = "123456";

// --- the server's policy ------------------------------------------------

/// Lets [`USER`] in with the user key, [`PASSWORD`], or a two-round
/// keyboard-interactive conversation (the password, then [`CODE`]).
struct PasswordPolicy {
    key: PublicKey,
    methods: AuthMethods,
    max_tries: u32,
    account_allowed: bool,
}

impl PasswordPolicy {
    fn new(key: PublicKey, methods: AuthMethods) -> Self {
        PasswordPolicy {
            key,
            methods,
            max_tries: 6,
            account_allowed: true,
        }
    }
}

impl AuthPolicy for PasswordPolicy {
    fn publickey_allowed<'a>(&'a self, user: &'a str, key: &'a PublicKey) -> BoxFuture<'a, bool> {
        let allowed = user == USER && key.key_data() == self.key.key_data();
        Box::pin(async move { allowed })
    }

    fn max_auth_tries(&self) -> u32 {
        self.max_tries
    }

    fn methods<'a>(
        &'a self,
        _user: &'a str,
        _peer: Option<SocketAddr>,
    ) -> BoxFuture<'a, AuthMethods> {
        Box::pin(async move { self.methods.clone() })
    }

    fn password_allowed<'a>(
        &'a self,
        user: &'a str,
        password: &'a str,
        _peer: Option<SocketAddr>,
    ) -> BoxFuture<'a, bool> {
        let allowed = user == USER && password == PASSWORD;
        Box::pin(async move { allowed })
    }

    fn keyboard_interactive<'a>(
        &'a self,
        user: &'a str,
        _peer: Option<SocketAddr>,
    ) -> BoxFuture<'a, Option<Box<dyn KbdInteractive>>> {
        let conversation: Option<Box<dyn KbdInteractive>> =
            (user == USER).then(|| Box::new(TwoFactor { round: 0 }) as Box<dyn KbdInteractive>);
        Box::pin(async move { conversation })
    }

    fn account_allowed<'a>(
        &'a self,
        _user: &'a str,
        _peer: Option<SocketAddr>,
    ) -> BoxFuture<'a, bool> {
        let allowed = self.account_allowed;
        Box::pin(async move { allowed })
    }
}

/// A PAM stack of two modules: the password, then a one-time code.
struct TwoFactor {
    round: u32,
}

impl KbdInteractive for TwoFactor {
    fn step(&mut self, answers: Vec<Zeroizing<String>>) -> BoxFuture<'_, KbdStep> {
        let round = self.round;
        self.round += 1;
        let answer = |expected: &str| answers.len() == 1 && answers[0].as_str() == expected;
        let step = match round {
            0 => ask("Password: ", false),
            1 if answer(PASSWORD) => ask("Verification code: ", true),
            2 if answer(CODE) => KbdStep::Accepted,
            _ => KbdStep::Refused,
        };
        Box::pin(async move { step })
    }
}

fn ask(prompt: &str, echo: bool) -> KbdStep {
    KbdStep::Ask(InfoRequest {
        name: "sshq test".to_string(),
        instruction: String::new(),
        prompts: vec![Prompt {
            text: prompt.to_string(),
            echo,
        }],
    })
}

fn methods(enabled: &[AuthMethod], required: &[&[AuthMethod]]) -> AuthMethods {
    AuthMethods {
        enabled: enabled.to_vec(),
        required: required.iter().map(|list| list.to_vec()).collect(),
    }
}

fn fixture(make: impl FnOnce(PublicKey) -> PasswordPolicy) -> Fixture {
    Fixture::with_policy(
        |key| Arc::new(make(key)) as Arc<dyn AuthPolicy>,
        None,
        ChannelMapping::StreamPerChannel,
    )
}

// --- the client's prompter ----------------------------------------------

/// Answers from a script, and remembers what it was asked.
#[derive(Default)]
struct Script {
    passwords: Mutex<VecDeque<&'static str>>,
    codes: Mutex<VecDeque<Vec<&'static str>>>,
    asked: Mutex<Vec<String>>,
    refusals: Mutex<u32>,
}

impl Prompter for Script {
    fn password<'a>(&'a self, prompt: &'a str) -> BoxFuture<'a, Option<Zeroizing<String>>> {
        self.asked.lock().expect("asked").push(prompt.to_string());
        let answer = self.passwords.lock().expect("passwords").pop_front();
        Box::pin(async move { answer.map(|a| Zeroizing::new(a.to_string())) })
    }

    fn keyboard_interactive<'a>(
        &'a self,
        request: &'a InfoRequest,
    ) -> BoxFuture<'a, Option<Vec<Zeroizing<String>>>> {
        let mut asked = self.asked.lock().expect("asked");
        asked.extend(request.prompts.iter().map(|p| p.text.clone()));
        let answers = self.codes.lock().expect("codes").pop_front();
        Box::pin(async move {
            answers.map(|a| {
                a.into_iter()
                    .map(|s| Zeroizing::new(s.to_string()))
                    .collect()
            })
        })
    }

    fn password_refused(&self) {
        *self.refusals.lock().expect("refusals") += 1;
    }
}

impl Script {
    fn asked(&self) -> Vec<String> {
        self.asked.lock().expect("asked").clone()
    }
}

/// sshq's client with `keys`, `preferred` methods and `script` answering.
async fn login(
    f: &Fixture,
    keys: Vec<Arc<dyn UserKey>>,
    preferred: &[AuthMethod],
    script: &Arc<Script>,
) -> (
    quinn::Endpoint,
    sshq_quic::QuicConnection,
    Result<(), AuthOutcome>,
) {
    let (endpoint, conn) = f.quic().await;
    let auth = ClientAuth {
        user: USER.to_string(),
        host: "server.example".to_string(),
        keys,
        auth_options: ClientAuthOptions {
            preferred: preferred.to_vec(),
            password_prompts: 3,
            prompter: Some(script.clone() as Arc<dyn Prompter>),
        },
    };
    let session = step("client session", sshq_quic::client_session(conn, auth))
        .await
        .expect("client session");
    let outcome = step("login", session.authenticated()).await;
    (endpoint, session, outcome)
}

const PROMPT: &str = "tester@server.example's password: ";

// --- sshq's client against sshq's server --------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_logs_in() {
    let f = fixture(|key| PasswordPolicy::new(key, methods(&[AuthMethod::Password], &[])));
    let script = Arc::new(Script::default());
    script
        .passwords
        .lock()
        .expect("passwords")
        .push_back(PASSWORD);
    let (_endpoint, session, outcome) =
        login(&f, Vec::new(), &[AuthMethod::Password], &script).await;
    outcome.expect("logged in with the password");
    assert_eq!(script.asked(), vec![PROMPT.to_string()]);
    lab::normal_echo(&session, b"after a password").await;
    assert_eq!(f.server.events(|e| e.logins), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_then_the_right_one_logs_in() {
    let f = fixture(|key| PasswordPolicy::new(key, methods(&[AuthMethod::Password], &[])));
    let script = Arc::new(Script::default());
    script
        .passwords
        .lock()
        .expect("passwords")
        .extend(["wrong", PASSWORD]);
    let (_endpoint, _session, outcome) =
        login(&f, Vec::new(), &[AuthMethod::Password], &script).await;
    outcome.expect("logged in at the second try");
    assert_eq!(script.asked().len(), 2);
    // ssh's "Permission denied, please try again." before the second prompt.
    assert_eq!(*script.refusals.lock().expect("refusals"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_stop_after_number_of_password_prompts() {
    let f = fixture(|key| PasswordPolicy::new(key, methods(&[AuthMethod::Password], &[])));
    let script = Arc::new(Script::default());
    script
        .passwords
        .lock()
        .expect("passwords")
        .extend(["a", "b", "c", "d"]);
    let (_endpoint, _session, outcome) =
        login(&f, Vec::new(), &[AuthMethod::Password], &script).await;
    match outcome {
        Err(AuthOutcome::Refused { methods }) => assert_eq!(methods, "password"),
        other => panic!("three wrong passwords: {other:?}"),
    }
    assert_eq!(script.asked().len(), 3, "NumberOfPasswordPrompts 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyboard_interactive_with_two_rounds_logs_in() {
    let f =
        fixture(|key| PasswordPolicy::new(key, methods(&[AuthMethod::KeyboardInteractive], &[])));
    let script = Arc::new(Script::default());
    script
        .codes
        .lock()
        .expect("codes")
        .extend([vec![PASSWORD], vec![CODE]]);
    let (_endpoint, session, outcome) =
        login(&f, Vec::new(), &[AuthMethod::KeyboardInteractive], &script).await;
    outcome.expect("logged in after two rounds");
    assert_eq!(
        script.asked(),
        vec!["Password: ".to_string(), "Verification code: ".to_string()]
    );
    lab::normal_echo(&session, b"after two rounds").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_keyboard_interactive_prompt_gives_up() {
    let f =
        fixture(|key| PasswordPolicy::new(key, methods(&[AuthMethod::KeyboardInteractive], &[])));
    let script = Arc::new(Script::default()); // answers nothing
    let (_endpoint, session, outcome) =
        login(&f, Vec::new(), &[AuthMethod::KeyboardInteractive], &script).await;
    assert!(
        matches!(outcome, Err(AuthOutcome::Refused { .. })),
        "{outcome:?}"
    );
    // The client closed (draft §7.6: BY_APPLICATION).
    let closed = step("the close", session.quic().closed()).await;
    assert!(
        matches!(closed, quinn::ConnectionError::LocallyClosed),
        "{closed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_methods_publickey_then_password() {
    let f = fixture(|key| {
        PasswordPolicy::new(
            key,
            methods(
                &[AuthMethod::PublicKey, AuthMethod::Password],
                &[&[AuthMethod::PublicKey, AuthMethod::Password]],
            ),
        )
    });
    let script = Arc::new(Script::default());
    script
        .passwords
        .lock()
        .expect("passwords")
        .push_back(PASSWORD);
    let keys = vec![f.user_key.clone() as Arc<dyn UserKey>];
    let (_endpoint, session, outcome) = login(
        &f,
        keys,
        &[AuthMethod::PublicKey, AuthMethod::Password],
        &script,
    )
    .await;
    outcome.expect("logged in with the key and then the password");
    assert_eq!(script.asked(), vec![PROMPT.to_string()]);
    assert_eq!(
        *script.refusals.lock().expect("refusals"),
        0,
        "partial success is no refusal"
    );
    lab::normal_echo(&session, b"after two methods").await;
}

// --- a client that writes frames by hand --------------------------------

fn password_frame(exporter: &[u8], password: &str) -> bytes::Bytes {
    encode_frame(&Frame::UserauthPassword(PasswordRequest {
        user: USER.to_string(),
        service: "ssh-connection".to_string(),
        exporter: exporter.to_vec(),
        password: Zeroizing::new(password.to_string()),
    }))
    .expect("encodes")
}

fn failure(methods: &str, partial: bool) -> Result<Option<Frame>, String> {
    Ok(Some(Frame::UserauthFailure {
        methods: methods.to_string(),
        partial,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_success_on_the_wire() {
    let f = fixture(|key| {
        PasswordPolicy::new(
            key,
            methods(
                &[AuthMethod::PublicKey, AuthMethod::Password],
                &[&[AuthMethod::PublicKey, AuthMethod::Password]],
            ),
        )
    });
    let mut client = f.raw().await;
    // The password first is not allowed yet: refused, publickey listed.
    let early = password_frame(&client.exporter, PASSWORD);
    client.send_control(&early).await;
    assert_eq!(client.replies.next().await, failure("publickey", false));
    let signed = client.signed(&f.user_key).await;
    client.send_control(&signed).await;
    assert_eq!(client.replies.next().await, failure("password", true));
    // The same key again is not a second step.
    let again = client.signed(&f.user_key).await;
    client.send_control(&again).await;
    assert_eq!(client.replies.next().await, failure("password", false));
    let right = password_frame(&client.exporter, PASSWORD);
    client.send_control(&right).await;
    assert_eq!(
        client.replies.next().await,
        Ok(Some(Frame::UserauthSuccess))
    );
    lab::RawChannel::session(&client.conn)
        .await
        .echo(b"two steps")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_account_is_a_counted_failure() {
    let f = fixture(|key| PasswordPolicy {
        account_allowed: false,
        max_tries: 2,
        ..PasswordPolicy::new(key, methods(&[AuthMethod::Password], &[]))
    });
    let mut client = f.raw().await;
    let right = password_frame(&client.exporter, PASSWORD);
    client.send_control(&right).await;
    assert_eq!(client.replies.next().await, failure("password", false));
    client.send_control(&right).await;
    assert_eq!(
        client.close_code().await,
        Ok(u64::from(ErrorCode::AuthFailed.code()))
    );
    assert_eq!(f.server.events(|e| e.logins), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_auth_tries_counts_wrong_passwords() {
    let f = fixture(|key| PasswordPolicy {
        max_tries: 3,
        ..PasswordPolicy::new(key, methods(&[AuthMethod::Password], &[]))
    });
    let mut client = f.raw().await;
    let wrong = password_frame(&client.exporter, "wrong");
    for _ in 0..2 {
        client.send_control(&wrong).await;
        assert_eq!(client.replies.next().await, failure("password", false));
    }
    // The third failure reaches MaxAuthTries: AUTH_FAILED, no USERAUTH_FAILURE.
    client.send_control(&wrong).await;
    assert_eq!(
        client.close_code().await,
        Ok(u64::from(ErrorCode::AuthFailed.code()))
    );
    assert!(
        f.server
            .wait_events(|e| e.refused.iter().any(|r| r.contains(USER)))
            .await,
        "the server reports too many failures for the user"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_made_for_another_connection_is_refused() {
    let f = fixture(|key| PasswordPolicy::new(key, methods(&[AuthMethod::Password], &[])));
    let mut client = f.raw().await;
    // The right password, bound to some other connection's exporter value
    // (as a TLS-terminating relay would forward it).
    let mut elsewhere = client.exporter;
    elsewhere[0] ^= 1;
    let relayed = password_frame(&elsewhere, PASSWORD);
    client.send_control(&relayed).await;
    assert_eq!(client.replies.next().await, failure("password", false));
    // Bound to this connection, it logs in.
    let right = password_frame(&client.exporter, PASSWORD);
    client.send_control(&right).await;
    assert_eq!(
        client.replies.next().await,
        Ok(Some(Frame::UserauthSuccess))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyboard_interactive_on_the_wire_and_a_relayed_request() {
    let f =
        fixture(|key| PasswordPolicy::new(key, methods(&[AuthMethod::KeyboardInteractive], &[])));
    let mut client = f.raw().await;
    let request = |exporter: &[u8]| {
        encode_frame(&Frame::UserauthKeyboardInteractive(
            KeyboardInteractiveRequest {
                user: USER.to_string(),
                service: "ssh-connection".to_string(),
                exporter: exporter.to_vec(),
                submethods: String::new(),
            },
        ))
        .expect("encodes")
    };
    // Made for another connection: refused before any round.
    let relayed = request(&[0u8; 32]);
    client.send_control(&relayed).await;
    assert_eq!(
        client.replies.next().await,
        failure("keyboard-interactive", false)
    );
    let ours = request(&client.exporter);
    client.send_control(&ours).await;
    for (prompt, answer) in [("Password: ", PASSWORD), ("Verification code: ", CODE)] {
        match client.replies.next().await {
            Ok(Some(Frame::UserauthInfoRequest(round))) => {
                assert_eq!(round.prompts.len(), 1);
                assert_eq!(round.prompts[0].text, prompt);
            }
            other => panic!("waiting for the round {prompt:?}: {other:?}"),
        }
        let response = encode_frame(&Frame::UserauthInfoResponse(InfoResponse {
            responses: vec![Zeroizing::new(answer.to_string())],
        }))
        .expect("encodes");
        client.send_control(&response).await;
    }
    assert_eq!(
        client.replies.next().await,
        Ok(Some(Frame::UserauthSuccess))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn none_is_answered_with_the_methods_and_a_user_change_is_refused() {
    let f = fixture(|key| {
        PasswordPolicy::new(
            key,
            methods(&[AuthMethod::PublicKey, AuthMethod::Password], &[]),
        )
    });
    let mut client = f.raw().await;
    // RFC 4252's `none` request, written by hand.
    let mut payload = Vec::new();
    for field in [USER, "ssh-connection", "none"] {
        payload.extend((field.len() as u32).to_be_bytes());
        payload.extend(field.as_bytes());
    }
    let mut none = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    none.push(50);
    none.extend(payload);
    client.send_control(&none).await;
    assert_eq!(
        client.replies.next().await,
        failure("publickey,password", false)
    );
    let other_user = encode_frame(&Frame::UserauthPassword(PasswordRequest {
        user: "root".to_string(),
        service: "ssh-connection".to_string(),
        exporter: client.exporter.to_vec(),
        password: Zeroizing::new(PASSWORD.to_string()),
    }))
    .expect("encodes");
    client.send_control(&other_user).await;
    assert_eq!(
        client.close_code().await,
        Ok(u64::from(ErrorCode::ProtocolError.code()))
    );
}
