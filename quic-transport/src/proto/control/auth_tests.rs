//! The control stream's password, keyboard-interactive and
//! AuthenticationMethods rules (draft §7.2, §7.4, §7.7, §7.8), in virtual
//! time between a client and a server machine.

use std::time::{Duration, Instant};

use sshq_core::auth_methods::{AuthMethod, InfoRequest, Prompt};
use sshq_core::zeroize::Zeroizing;

use super::tests::refused;
use super::{AuthVerdict, Close, ControlEvent, SendError};
use crate::proto::fuzzing::ControlPair;
use crate::proto::ProtocolError;
use crate::wire::{
    AuthRequest, ErrorCode, Frame, InfoResponse, KeyboardInteractiveRequest, OtherMethodRequest,
    PasswordRequest, UserauthRequest,
};

const E: [u8; 32] = [0x11; 32];

fn pair(max_auth_tries: u32) -> ControlPair {
    ControlPair::new(
        Instant::now(),
        Some(Duration::from_secs(120)),
        max_auth_tries,
    )
}

fn password(user: &str, secret: &str) -> AuthRequest {
    AuthRequest::Password(PasswordRequest {
        user: user.to_string(),
        service: "ssh-connection".to_string(),
        exporter: E.to_vec(),
        password: Zeroizing::new(secret.to_string()),
    })
}

fn keyboard_interactive(user: &str) -> AuthRequest {
    AuthRequest::KeyboardInteractive(KeyboardInteractiveRequest {
        user: user.to_string(),
        service: "ssh-connection".to_string(),
        exporter: E.to_vec(),
        submethods: String::new(),
    })
}

fn publickey(user: &str) -> AuthRequest {
    AuthRequest::PublicKey(UserauthRequest {
        user: user.to_string(),
        service: "ssh-connection".to_string(),
        algorithm: "ssh-ed25519".to_string(),
        public_key: vec![1],
        signature: vec![2],
    })
}

fn other(user: &str, method: &str) -> AuthRequest {
    AuthRequest::Other(OtherMethodRequest {
        user: user.to_string(),
        service: "ssh-connection".to_string(),
        method: method.to_string(),
    })
}

fn round(prompts: &[&str]) -> InfoRequest {
    InfoRequest {
        name: "PAM".to_string(),
        instruction: String::new(),
        prompts: prompts
            .iter()
            .map(|text| Prompt {
                text: text.to_string(),
                echo: false,
            })
            .collect(),
    }
}

fn answers(texts: &[&str]) -> Vec<Zeroizing<String>> {
    texts
        .iter()
        .map(|t| Zeroizing::new(t.to_string()))
        .collect()
}

fn closed_with(events: &[ControlEvent]) -> (ErrorCode, Option<ProtocolError>) {
    let close: &Close = events
        .iter()
        .find_map(|e| match e {
            ControlEvent::Closed(close) => Some(close),
            _ => None,
        })
        .expect("the connection was closed");
    (close.code, close.error.clone())
}

fn has_closed(events: &[ControlEvent]) -> bool {
    events.iter().any(|e| matches!(e, ControlEvent::Closed(_)))
}

#[test]
fn a_password_is_handed_out_and_accepted() {
    let mut p = pair(6);
    p.client.send_userauth(password("alice", "hunter2"));
    p.run();
    assert_eq!(
        p.server_events,
        vec![ControlEvent::UserauthRequest(password("alice", "hunter2"))]
    );
    p.server.auth_verdict(p.now, AuthVerdict::Accepted);
    p.run();
    assert_eq!(p.client_events, vec![ControlEvent::Authenticated]);
}

#[test]
fn partial_success_lists_what_remains_and_is_not_counted() {
    // MaxAuthTries 1: a counted answer would close the connection.
    let mut p = pair(1);
    p.client.send_userauth(publickey("alice"));
    p.run();
    p.server.auth_verdict(
        p.now,
        AuthVerdict::Partial {
            can_continue: vec![AuthMethod::KeyboardInteractive, AuthMethod::Password],
        },
    );
    p.run();
    assert_eq!(
        p.client_events,
        vec![ControlEvent::UserauthFailure {
            methods: "keyboard-interactive,password".to_string(),
            partial: true,
        }]
    );
    assert!(!has_closed(&p.server_events));
    p.client.send_userauth(password("alice", "pw"));
    p.run();
    p.server.auth_verdict(p.now, AuthVerdict::Accepted);
    p.run();
    assert_eq!(p.client_events.last(), Some(&ControlEvent::Authenticated));
}

#[test]
fn a_refusal_lists_the_methods_it_is_given() {
    let mut p = pair(6);
    p.client.send_userauth(password("alice", "wrong"));
    p.run();
    p.server.auth_verdict(
        p.now,
        AuthVerdict::Refused {
            can_continue: vec![AuthMethod::PublicKey, AuthMethod::Password],
        },
    );
    p.run();
    assert_eq!(
        p.client_events,
        vec![ControlEvent::UserauthFailure {
            methods: "publickey,password".to_string(),
            partial: false,
        }]
    );
}

#[test]
fn keyboard_interactive_with_two_rounds() {
    let mut p = pair(6);
    p.client.send_userauth(keyboard_interactive("alice"));
    p.run();
    assert_eq!(
        p.server_events,
        vec![ControlEvent::UserauthRequest(keyboard_interactive("alice"))]
    );
    p.server.send_info_request(round(&["Password: ", "Code: "]));
    p.run();
    assert_eq!(
        p.client_events,
        vec![ControlEvent::InfoRequest(round(&["Password: ", "Code: "]))]
    );
    // AWAIT_INFO: the server reads again, under LoginGraceTime.
    assert!(p.server.wants_input());
    assert!(p.server.poll_timeout().is_some());
    p.client
        .send_info_response(answers(&["pw", "123456"]))
        .expect("two answers to two prompts");
    p.run();
    assert_eq!(
        p.server_events.last(),
        Some(&ControlEvent::InfoResponse(InfoResponse {
            responses: answers(&["pw", "123456"])
        }))
    );
    p.server.send_info_request(round(&["New code: "]));
    p.run();
    p.client
        .send_info_response(answers(&["654321"]))
        .expect("one answer");
    p.run();
    p.server.auth_verdict(p.now, AuthVerdict::Accepted);
    p.run();
    assert_eq!(p.client_events.last(), Some(&ControlEvent::Authenticated));
    assert!(p.server.is_authenticated());
}

#[test]
fn a_round_without_prompts_is_answered_with_none() {
    let mut p = pair(6);
    p.client.send_userauth(keyboard_interactive("alice"));
    p.run();
    p.server.send_info_request(round(&[]));
    p.run();
    p.client
        .send_info_response(Vec::new())
        .expect("no answers to no prompts");
    p.run();
    assert!(matches!(
        p.server_events.last(),
        Some(ControlEvent::InfoResponse(r)) if r.responses.is_empty()
    ));
}

#[test]
fn the_client_machine_refuses_the_wrong_number_of_answers() {
    let mut p = pair(6);
    assert_eq!(
        p.client.send_info_response(Vec::new()),
        Err(SendError::NoInfoRequest)
    );
    p.client.send_userauth(keyboard_interactive("alice"));
    p.run();
    p.server.send_info_request(round(&["a", "b"]));
    p.run();
    assert_eq!(
        p.client.send_info_response(answers(&["only one"])),
        Err(SendError::AnswerCount {
            expected: 2,
            got: 1
        })
    );
}

#[test]
fn the_wrong_number_of_responses_is_a_protocol_error() {
    let mut p = pair(6);
    p.client.send_userauth(keyboard_interactive("alice"));
    p.run();
    p.server.send_info_request(round(&["a", "b"]));
    p.run();
    // A hand-made response with three answers.
    p.server.handle_frame(
        p.now,
        Frame::UserauthInfoResponse(InfoResponse {
            responses: answers(&["1", "2", "3"]),
        }),
    );
    assert_eq!(
        closed_with(&drain(&mut p.server)),
        (
            ErrorCode::ProtocolError,
            Some(ProtocolError::InfoResponseCount {
                expected: 2,
                got: 3
            })
        )
    );
}

fn drain(machine: &mut super::Control) -> Vec<ControlEvent> {
    std::iter::from_fn(|| machine.poll_event()).collect()
}

#[test]
fn a_response_without_a_round_is_a_protocol_error() {
    let mut p = pair(6);
    p.server
        .handle_frame(p.now, Frame::UserauthInfoResponse(InfoResponse::default()));
    assert_eq!(
        closed_with(&drain(&mut p.server)),
        (
            ErrorCode::ProtocolError,
            Some(ProtocolError::UnsolicitedAuthReply(
                "USERAUTH_INFO_RESPONSE"
            ))
        )
    );
}

#[test]
fn a_round_after_a_publickey_request_is_a_protocol_error() {
    let mut p = pair(6);
    p.client.send_userauth(publickey("alice"));
    p.run();
    // The server machine refuses to start a round for a key…
    p.server.send_info_request(round(&["x"]));
    p.run();
    assert!(p.client_events.is_empty());
    // …and a client that gets one anyway closes.
    p.client
        .handle_frame(p.now, Frame::UserauthInfoRequest(round(&["x"])));
    let (code, error) = closed_with(&drain(&mut p.client));
    assert_eq!(code, ErrorCode::ByApplication);
    assert_eq!(
        error,
        Some(ProtocolError::UnsolicitedAuthReply("USERAUTH_INFO_REQUEST"))
    );
}

#[test]
fn anything_from_the_server_while_the_client_answers_is_a_protocol_error() {
    let mut p = pair(6);
    p.client.send_userauth(keyboard_interactive("alice"));
    p.run();
    p.server.send_info_request(round(&["x"]));
    p.run();
    p.client.handle_frame(p.now, Frame::UserauthSuccess);
    assert_eq!(
        closed_with(&drain(&mut p.client)).1,
        Some(ProtocolError::UnsolicitedAuthReply("USERAUTH_SUCCESS"))
    );
}

#[test]
fn other_frames_in_await_info_are_a_protocol_error() {
    let mut p = pair(6);
    p.client.send_userauth(keyboard_interactive("alice"));
    p.run();
    p.server.send_info_request(round(&["x"]));
    p.run();
    p.server.handle_frame(p.now, Frame::RequestFailure);
    assert_eq!(
        closed_with(&drain(&mut p.server)),
        (
            ErrorCode::ProtocolError,
            Some(ProtocolError::FrameBeforeAuth("REQUEST_FAILURE"))
        )
    );
}

#[test]
fn a_new_request_abandons_the_conversation_and_counts() {
    let mut p = pair(6);
    p.client.send_userauth(keyboard_interactive("alice"));
    p.run();
    p.server.send_info_request(round(&["x"]));
    p.run();
    p.server_events.clear();
    p.server.handle_frame(
        p.now,
        Frame::UserauthPassword(match password("alice", "pw") {
            AuthRequest::Password(r) => r,
            _ => unreachable!(),
        }),
    );
    assert_eq!(
        drain(&mut p.server),
        vec![ControlEvent::UserauthRequest(password("alice", "pw"))]
    );
    // With MaxAuthTries 1 the abandonment alone ends the login.
    let mut p = pair(1);
    p.client.send_userauth(keyboard_interactive("alice"));
    p.run();
    p.server.send_info_request(round(&["x"]));
    p.run();
    p.server
        .handle_frame(p.now, keyboard_interactive("alice").into_frame());
    assert_eq!(
        closed_with(&drain(&mut p.server)),
        (
            ErrorCode::AuthFailed,
            Some(ProtocolError::TooManyAuthFailures("alice".to_string()))
        )
    );
}

#[test]
fn the_user_is_fixed_by_the_first_request() {
    let mut p = pair(6);
    p.client.send_userauth(password("alice", "x"));
    p.run();
    p.server.auth_verdict(p.now, refused());
    p.run();
    p.client.send_userauth(password("root", "x"));
    p.run();
    assert_eq!(
        closed_with(&p.server_events),
        (
            ErrorCode::ProtocolError,
            Some(ProtocolError::UserOrServiceChanged)
        )
    );
}

#[test]
fn a_first_none_request_is_not_counted_a_later_one_is() {
    let mut p = pair(1);
    p.client.send_userauth(other("alice", "none"));
    p.run();
    assert_eq!(
        p.server_events,
        vec![ControlEvent::UserauthRequest(other("alice", "none"))]
    );
    p.server.auth_verdict(p.now, refused());
    p.run();
    assert!(!has_closed(&p.server_events), "the first none is free");
    assert_eq!(p.client_events.len(), 1);
    p.client.send_userauth(other("alice", "none"));
    p.run();
    p.server.auth_verdict(p.now, refused());
    p.run();
    assert_eq!(closed_with(&p.server_events).0, ErrorCode::AuthFailed);
}

#[test]
fn hostbased_is_counted_like_any_refusal() {
    let mut p = pair(1);
    p.client.send_userauth(other("alice", "hostbased"));
    p.run();
    p.server.auth_verdict(p.now, refused());
    p.run();
    assert_eq!(closed_with(&p.server_events).0, ErrorCode::AuthFailed);
}

/// The control fuzz target's seeds (fuzz/corpus/control) run through its
/// entry point: they reach the login paths above without a panic.
#[test]
fn the_control_fuzz_seeds_run() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/control");
    let mut seeds = 0;
    for entry in std::fs::read_dir(&corpus).expect("the control corpus") {
        let path = entry.expect("a corpus entry").path();
        let is_seed = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("seed-"));
        if is_seed {
            crate::proto::fuzzing::drive_control(&std::fs::read(&path).expect("a seed"));
            seeds += 1;
        }
    }
    assert!(seeds >= 7, "only {seeds} seeds in {}", corpus.display());
}
