//! The control stream in virtual time: a client and a server machine back
//! to back (`fuzzing::ControlPair`), the clock moved by hand. No sockets,
//! no sleeps.

use std::time::{Duration, Instant};

use sshq_core::channel::{GlobalReply, GlobalRequest};

use super::{AuthVerdict, Close, Control, ControlEvent, SendError};
use crate::proto::fuzzing::{drive_control, ControlPair};
use crate::proto::{ProtocolError, RequestId, StreamKind, Transmit};
use crate::wire::{ErrorCode, Frame, UserauthRequest, WireError};
use sshq_core::auth_methods::AuthMethod;

/// A frame as bytes (the frames here are small: encoding cannot fail).
fn encode_frame(frame: &Frame) -> bytes::Bytes {
    crate::wire::encode_frame(frame).expect("a test frame encodes")
}

const GRACE: Duration = Duration::from_secs(120);

fn request(user: &str) -> UserauthRequest {
    UserauthRequest {
        user: user.to_string(),
        service: "ssh-connection".to_string(),
        algorithm: "ssh-ed25519".to_string(),
        public_key: vec![1, 2, 3],
        signature: vec![4, 5, 6],
    }
}

/// A refusal with publickey left to try, as a keys-only server answers.
pub(crate) fn refused() -> AuthVerdict {
    AuthVerdict::Refused {
        can_continue: vec![AuthMethod::PublicKey],
    }
}

fn pair(max_auth_tries: u32) -> ControlPair {
    ControlPair::new(Instant::now(), Some(GRACE), max_auth_tries)
}

/// Logs the client in: one request, accepted.
fn logged_in() -> ControlPair {
    let mut p = pair(6);
    p.client.send_userauth(request("alice"));
    p.run();
    p.server.auth_verdict(p.now, AuthVerdict::Accepted);
    p.run();
    assert_eq!(p.server_events.len(), 2);
    assert_eq!(p.client_events, vec![ControlEvent::Authenticated]);
    p.server_events.clear();
    p.client_events.clear();
    p
}

fn closed(events: &[ControlEvent]) -> Option<&Close> {
    events.iter().find_map(|e| match e {
        ControlEvent::Closed(close) => Some(close),
        _ => None,
    })
}

/// The protocol error a machine closed with, and its code.
fn closed_with(events: &[ControlEvent]) -> (ErrorCode, ProtocolError) {
    let close = closed(events).expect("the connection was closed");
    let error = close.error.clone().expect("a protocol error");
    (close.code, error)
}

fn frame_bytes(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    bytes.push(kind);
    bytes.extend_from_slice(payload);
    bytes
}

#[test]
fn userauth_success() {
    let mut p = pair(6);
    p.client.send_userauth(request("alice"));
    p.run();
    assert_eq!(
        p.server_events,
        vec![ControlEvent::UserauthRequest(request("alice").into())]
    );
    assert!(!p.server.is_authenticated());
    p.server.auth_verdict(p.now, AuthVerdict::Accepted);
    p.run();
    assert_eq!(p.server_events.last(), Some(&ControlEvent::Authenticated));
    assert_eq!(p.client_events, vec![ControlEvent::Authenticated]);
    assert!(p.client.is_authenticated() && p.server.is_authenticated());
    // Authenticated: no LoginGraceTime any more.
    assert_eq!(p.server.poll_timeout(), None);
}

#[test]
fn userauth_failure_then_next_key() {
    let mut p = pair(6);
    p.client.send_userauth(request("alice"));
    p.run();
    p.server.auth_verdict(p.now, refused());
    p.run();
    assert_eq!(
        p.client_events,
        vec![ControlEvent::UserauthFailure {
            methods: "publickey".to_string(),
            partial: false,
        }]
    );
    p.client.send_userauth(request("alice"));
    p.run();
    p.server.auth_verdict(p.now, AuthVerdict::Accepted);
    p.run();
    assert_eq!(p.client_events.last(), Some(&ControlEvent::Authenticated));
}

#[test]
fn too_many_failures_closes_with_auth_failed() {
    let mut p = pair(2);
    for _ in 0..2 {
        p.client.send_userauth(request("mallory"));
        p.run();
        p.server.auth_verdict(p.now, refused());
        p.run();
    }
    // draft §7.7: no USERAUTH_FAILURE for the last one, AUTH_FAILED instead.
    assert_eq!(p.client_events.len(), 1);
    let (code, error) = closed_with(&p.server_events);
    assert_eq!(code, ErrorCode::AuthFailed);
    assert_eq!(
        error,
        ProtocolError::TooManyAuthFailures("mallory".to_string())
    );
    assert!(p.server.is_closed());
}

#[test]
fn max_auth_tries_zero_lets_nobody_in() {
    let mut p = pair(0);
    p.client.send_userauth(request("alice"));
    p.run();
    // The request is not even handed out for checking.
    assert!(!p
        .server_events
        .iter()
        .any(|e| matches!(e, ControlEvent::UserauthRequest(_))));
    assert_eq!(closed_with(&p.server_events).0, ErrorCode::AuthFailed);
}

#[test]
fn too_many_failures_escapes_the_user_name() {
    let mut p = pair(1);
    p.client.send_userauth(request("evil\nuser"));
    p.run();
    p.server.auth_verdict(p.now, refused());
    p.run();
    let (_, error) = closed_with(&p.server_events);
    let ProtocolError::TooManyAuthFailures(user) = error else {
        panic!("expected TooManyAuthFailures");
    };
    assert!(!user.contains('\n'), "{user:?}");
}

#[test]
fn login_grace_time_expires_without_a_request() {
    let mut p = pair(6);
    assert_eq!(p.server.poll_timeout(), Some(p.now + GRACE));
    p.advance(GRACE - Duration::from_secs(1));
    assert!(closed(&p.server_events).is_none());
    p.advance(Duration::from_secs(1));
    let (code, error) = closed_with(&p.server_events);
    assert_eq!(code, ErrorCode::AuthTimeout);
    assert_eq!(error, ProtocolError::LoginGraceTimeExpired);
    assert_eq!(p.server.poll_timeout(), None);
}

#[test]
fn login_grace_time_covers_a_pending_verdict_and_failures() {
    let mut p = pair(6);
    p.client.send_userauth(request("alice"));
    p.run();
    p.server.auth_verdict(p.now, refused());
    p.client.send_userauth(request("alice"));
    p.run();
    // The check of the second request takes too long.
    p.advance(GRACE);
    assert_eq!(closed_with(&p.server_events).0, ErrorCode::AuthTimeout);
    // A verdict after the close changes nothing.
    p.server.auth_verdict(p.now, AuthVerdict::Accepted);
    p.run();
    assert!(!p.server.is_authenticated());
    assert!(!p.client_events.contains(&ControlEvent::Authenticated));
}

#[test]
fn no_login_grace_time_means_no_timer() {
    let mut p = ControlPair::new(Instant::now(), None, 6);
    assert_eq!(p.server.poll_timeout(), None);
    p.advance(Duration::from_secs(86_400));
    assert!(closed(&p.server_events).is_none());
}

#[test]
fn grace_time_already_over_at_creation() {
    let now = Instant::now();
    let mut server = Control::server(now, Some(now), 6);
    assert!(matches!(
        server.poll_event(),
        Some(ControlEvent::Closed(Close {
            code: ErrorCode::AuthTimeout,
            ..
        }))
    ));
}

#[test]
fn global_request_before_auth_is_a_protocol_error() {
    let mut p = pair(6);
    p.to_server.bytes = encode_frame(&Frame::GlobalRequest {
        request: GlobalRequest::Unknown {
            name: "keepalive@openssh.com".to_string(),
        },
        want_reply: true,
    })
    .to_vec();
    p.run();
    let (code, error) = closed_with(&p.server_events);
    assert_eq!(code, ErrorCode::ProtocolError);
    assert_eq!(error, ProtocolError::FrameBeforeAuth("GLOBAL_REQUEST"));
}

#[test]
fn client_refuses_other_frames_while_authenticating() {
    let mut p = pair(6);
    p.client.send_userauth(request("alice"));
    p.run();
    p.to_client.bytes = encode_frame(&Frame::RequestFailure).to_vec();
    p.run();
    // The sshq client closes with BY_APPLICATION while authenticating.
    let (code, error) = closed_with(&p.client_events);
    assert_eq!(code, ErrorCode::ByApplication);
    assert_eq!(error, ProtocolError::FrameBeforeAuth("REQUEST_FAILURE"));
}

#[test]
fn userauth_answer_without_a_request() {
    let mut client = Control::client();
    client.handle_frame(Instant::now(), Frame::UserauthSuccess);
    let (_, error) = closed_with(&[client.poll_event().expect("an event")]);
    assert_eq!(
        error,
        ProtocolError::UnsolicitedAuthReply("USERAUTH_SUCCESS")
    );
}

#[test]
fn unknown_frame_type_closes_the_connection() {
    let mut p = logged_in();
    p.to_server.bytes = frame_bytes(93, b""); // WINDOW_ADJUST: not in sshq/1
    p.run();
    let (code, error) = closed_with(&p.server_events);
    assert_eq!(code, ErrorCode::ProtocolError);
    assert_eq!(error, ProtocolError::UnknownFrame(93));
}

#[test]
fn malformed_frames_close_the_connection() {
    let cases: Vec<(Vec<u8>, WireError)> = vec![
        // draft §6.4: length 0 and lengths over 1 MiB, without waiting.
        (vec![0, 0, 0, 0], WireError::BadLength(0)),
        (vec![0, 0x20, 0, 0], WireError::BadLength(0x20_0000)),
        // draft §6.3: a boolean that is not 0 or 1.
        (
            frame_bytes(80, &[0, 0, 0, 1, b'x', 2]),
            WireError::BadBool {
                frame: 80,
                field: "want reply",
                value: 2,
            },
        ),
        // draft §6.3: trailing bytes.
        (
            frame_bytes(82, b"junk"),
            WireError::TrailingBytes {
                frame: 82,
                extra: 4,
            },
        ),
    ];
    for (bytes, expected) in cases {
        let mut p = logged_in();
        p.to_server.bytes = bytes;
        p.run();
        let (code, error) = closed_with(&p.server_events);
        assert_eq!(code, ErrorCode::ProtocolError);
        assert_eq!(error, ProtocolError::Malformed(expected));
    }
}

#[test]
fn unexpected_frames_after_auth() {
    for frame in [
        Frame::UserauthRequest(request("alice")),
        Frame::ChannelOpen(sshq_core::channel::ChannelKind::Session),
        Frame::Data(bytes::Bytes::from_static(b"x")),
    ] {
        let mut p = logged_in();
        p.client.handle_frame(p.now, frame.clone());
        let events: Vec<_> = std::iter::from_fn(|| p.client.poll_event()).collect();
        let (_, error) = closed_with(&events);
        assert!(
            matches!(
                error,
                ProtocolError::UnexpectedFrame {
                    stream: StreamKind::Control,
                    ..
                }
            ),
            "{frame:?}: {error:?}"
        );
    }
}

#[test]
fn global_reply_without_request() {
    let mut p = logged_in();
    p.to_client.bytes = encode_frame(&Frame::RequestSuccess { bound_port: None }).to_vec();
    p.run();
    let (code, error) = closed_with(&p.client_events);
    assert_eq!(code, ErrorCode::ProtocolError);
    assert_eq!(error, ProtocolError::UnsolicitedReply(StreamKind::Control));
}

#[test]
fn no_global_request_before_auth() {
    let mut p = pair(6);
    assert_eq!(
        p.client.send_global_request(
            GlobalRequest::Unknown {
                name: "x".to_string()
            },
            true
        ),
        Err(SendError::NotAuthenticated)
    );
}

fn forward(port: u32) -> GlobalRequest {
    GlobalRequest::TcpipForward {
        address: "localhost".to_string(),
        port,
    }
}

#[test]
fn replies_go_out_in_request_order_when_answered_out_of_order() {
    let mut p = logged_in();
    let ours: Vec<RequestId> = (0..3)
        .map(|port| {
            p.client
                .send_global_request(forward(port), true)
                .expect("sent")
                .expect("an id")
        })
        .collect();
    p.run();
    let theirs: Vec<RequestId> = p
        .server_events
        .iter()
        .filter_map(|e| match e {
            ControlEvent::GlobalRequest { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(theirs.len(), 3);
    let answer = |i: usize| GlobalReply::Success {
        bound_port: Some(1000 + i as u32),
    };
    // The last is answered first: nothing may go out yet.
    p.server.answer(p.now, theirs[2], answer(2));
    p.run();
    assert!(p.client_events.is_empty());
    p.server.answer(p.now, theirs[0], answer(0));
    p.run();
    assert_eq!(
        p.client_events,
        vec![ControlEvent::GlobalReply {
            id: ours[0],
            reply: answer(0)
        }]
    );
    p.server.answer(p.now, theirs[1], answer(1));
    p.run();
    let expected: Vec<_> = (0..3)
        .map(|i| ControlEvent::GlobalReply {
            id: ours[i],
            reply: answer(i),
        })
        .collect();
    assert_eq!(p.client_events, expected);
}

#[test]
fn requests_without_reply_get_none_but_keep_the_order() {
    let mut p = logged_in();
    let first = p
        .client
        .send_global_request(forward(1), false)
        .expect("sent");
    assert_eq!(first, None);
    let second = p
        .client
        .send_global_request(forward(2), true)
        .expect("sent");
    p.run();
    let ids: Vec<RequestId> = p
        .server_events
        .iter()
        .filter_map(|e| match e {
            ControlEvent::GlobalRequest { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    p.server.answer(p.now, ids[1], GlobalReply::Failure);
    p.run();
    // The first (no reply wanted) is still unanswered: the second waits.
    assert!(p.client_events.is_empty());
    p.server.answer(p.now, ids[0], GlobalReply::Failure);
    p.run();
    assert_eq!(
        p.client_events,
        vec![ControlEvent::GlobalReply {
            id: second.expect("an id"),
            reply: GlobalReply::Failure
        }]
    );
}

#[test]
fn a_flood_of_requests_stops_the_reading() {
    let mut p = logged_in();
    let total = sshq_core::replies::REQUEST_QUEUE + 8;
    for port in 0..total {
        let _ = p.client.send_global_request(forward(port as u32), true);
    }
    p.run();
    let handed_out = |events: &[ControlEvent]| {
        events
            .iter()
            .filter(|e| matches!(e, ControlEvent::GlobalRequest { .. }))
            .count()
    };
    assert_eq!(
        handed_out(&p.server_events),
        sshq_core::replies::REQUEST_QUEUE
    );
    assert!(!p.server.wants_input());
    let first = p.server_events.iter().find_map(|e| match e {
        ControlEvent::GlobalRequest { id, .. } => Some(*id),
        _ => None,
    });
    p.server
        .answer(p.now, first.expect("a request"), GlobalReply::Failure);
    p.run();
    assert_eq!(
        handed_out(&p.server_events),
        sshq_core::replies::REQUEST_QUEUE + 1
    );
}

#[test]
fn requests_pipelined_behind_the_userauth_request_wait_for_success() {
    let mut p = pair(6);
    p.client.send_userauth(request("alice"));
    p.run();
    // A client that does not wait (as sshq's does not for channels).
    p.to_server.bytes = encode_frame(&Frame::GlobalRequest {
        request: forward(0),
        want_reply: true,
    })
    .to_vec();
    p.run();
    assert_eq!(p.server_events.len(), 1);
    p.server.auth_verdict(p.now, AuthVerdict::Accepted);
    p.run();
    assert!(matches!(
        p.server_events.as_slice(),
        [
            ControlEvent::UserauthRequest(_),
            ControlEvent::Authenticated,
            ControlEvent::GlobalRequest { .. }
        ]
    ));
}

#[test]
fn fin_before_auth_is_a_protocol_error() {
    let mut p = pair(6);
    p.client.finish();
    p.run();
    let (code, error) = closed_with(&p.server_events);
    assert_eq!(code, ErrorCode::ProtocolError);
    assert_eq!(error, ProtocolError::ControlEndedBeforeAuth);
}

#[test]
fn fin_after_auth_ends_the_session_with_no_error() {
    let mut p = logged_in();
    p.client.finish();
    p.run();
    let close = closed(&p.server_events).expect("closed");
    assert_eq!(close.code, ErrorCode::NoError);
    assert_eq!(close.error, None);
    // Nothing is sent after our FIN.
    assert_eq!(
        p.client.send_global_request(forward(1), true),
        Err(SendError::Closed)
    );
}

#[test]
fn fin_inside_a_frame() {
    let mut p = logged_in();
    p.to_server.bytes = vec![0, 0, 0, 9, 80];
    p.to_server.finished = true;
    p.run();
    assert_eq!(
        closed_with(&p.server_events).1,
        ProtocolError::FinInsideFrame(StreamKind::Control)
    );
}

#[test]
fn give_up_closes_by_application() {
    let mut p = pair(6);
    p.client.send_userauth(request("alice"));
    p.run();
    p.server.auth_verdict(p.now, refused());
    p.run();
    p.client.give_up();
    p.run();
    let close = closed(&p.client_events).expect("closed");
    assert_eq!(close.code, ErrorCode::ByApplication);
}

#[test]
fn finish_is_sent_once() {
    let mut p = logged_in();
    p.client.finish();
    p.client.finish();
    assert_eq!(p.client.poll_transmit(), Some(Transmit::Finish));
    assert_eq!(p.client.poll_transmit(), None);
}

/// Deterministic pseudo-random bytes (xorshift).
pub(crate) fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[test]
fn the_fuzzing_entry_point_survives_noise() {
    for seed in 0..300 {
        drive_control(&noise(seed, 64 + (seed as usize % 200)));
    }
    // And sequences that get past authentication.
    drive_control(&[4, 0x13, 5, 0x15, 6, 7, 8, 2, 200, 9]);
}

#[test]
fn a_reset_control_stream_before_login_ends_the_login() {
    let mut p = pair(6);
    p.server.handle_peer_reset();
    p.run();
    let (code, error) = closed_with(&p.server_events);
    assert_eq!(code, ErrorCode::ProtocolError);
    assert_eq!(error, ProtocolError::ControlEndedBeforeAuth);

    // The sshq client, still authenticating, closes with BY_APPLICATION.
    let mut p = pair(6);
    p.client.send_userauth(request("alice"));
    p.run();
    p.client.handle_peer_stop();
    p.run();
    assert_eq!(
        closed(&p.client_events).map(|c| c.code),
        Some(ErrorCode::ByApplication)
    );
}

/// draft §7.8 (Appendix A item 4): the control stream lives as long as the
/// connection; its reset or STOP_SENDING after login closes the connection
/// with PROTOCOL_ERROR, whichever side sees it.
#[test]
fn a_reset_or_stopped_control_stream_after_login_is_a_protocol_error() {
    type Abort = fn(&mut Control);
    let cases: [(&str, Abort, ProtocolError); 2] = [
        (
            "RESET_STREAM",
            Control::handle_peer_reset,
            ProtocolError::ControlStreamReset,
        ),
        (
            "STOP_SENDING",
            Control::handle_peer_stop,
            ProtocolError::ControlStreamStopped,
        ),
    ];
    for (what, abort, expected) in cases {
        let mut p = logged_in();
        abort(&mut p.server);
        p.run();
        assert_eq!(
            closed_with(&p.server_events),
            (ErrorCode::ProtocolError, expected.clone()),
            "server, {what}"
        );
        assert!(p.server.is_closed());
        assert!(!p.server.wants_input(), "server, {what}: still reading");

        let mut p = logged_in();
        abort(&mut p.client);
        p.run();
        assert_eq!(
            closed_with(&p.client_events),
            (ErrorCode::ProtocolError, expected),
            "client, {what}"
        );
        assert_eq!(
            p.client.send_global_request(forward(0), true),
            Err(SendError::Closed),
            "client, {what}: requests after the close"
        );
    }
}

#[test]
fn stop_sending_after_our_own_fin_is_no_error() {
    let mut p = logged_in();
    p.client.finish();
    p.run();
    p.client.handle_peer_stop();
    p.run();
    assert!(closed(&p.client_events).is_none());
    // The server saw the FIN and ends the session with NO_ERROR.
    assert_eq!(
        closed(&p.server_events).map(|c| c.code),
        Some(ErrorCode::NoError)
    );
}

#[test]
fn an_abort_after_the_close_changes_nothing() {
    let mut p = logged_in();
    p.to_server.finished = true;
    p.run();
    p.server.handle_peer_reset();
    p.server.handle_peer_stop();
    p.run();
    let closes = p
        .server_events
        .iter()
        .filter(|e| matches!(e, ControlEvent::Closed(_)))
        .count();
    assert_eq!(closes, 1);
    assert_eq!(
        closed(&p.server_events).map(|c| c.code),
        Some(ErrorCode::NoError)
    );
}

/// A pair whose server holds a host certificate (its bytes stand in for
/// one: the machine carries them, it does not read them).
fn pair_with_certificate(certificate: &'static [u8]) -> ControlPair {
    let mut p = pair(6);
    p.server = Control::server(p.now, Some(p.now + GRACE), 6)
        .with_host_certificate(bytes::Bytes::from_static(certificate));
    p
}

#[test]
fn the_host_certificate_comes_before_any_request() {
    let mut p = pair_with_certificate(b"certificate blob");
    p.client.request_host_certificate();
    // draft §5.5: nothing else goes out while the client waits.
    p.client.send_userauth(request("alice"));
    p.run();
    assert_eq!(
        p.client_events,
        vec![ControlEvent::HostCertificate(bytes::Bytes::from_static(
            b"certificate blob"
        ))]
    );
    assert!(p.server_events.is_empty(), "{:?}", p.server_events);
    // Decided: the login goes on as usual.
    p.client.send_userauth(request("alice"));
    p.run();
    assert_eq!(
        p.server_events,
        vec![ControlEvent::UserauthRequest(request("alice").into())]
    );
    p.server.auth_verdict(p.now, AuthVerdict::Accepted);
    p.run();
    assert!(p.client.is_authenticated() && p.server.is_authenticated());
}

#[test]
fn a_server_without_a_certificate_answers_empty() {
    let mut p = pair(6);
    p.client.request_host_certificate();
    p.run();
    assert_eq!(
        p.client_events,
        vec![ControlEvent::HostCertificate(bytes::Bytes::new())]
    );
    assert!(closed(&p.server_events).is_none());
}

#[test]
fn a_second_or_late_certificate_request_is_a_protocol_error() {
    let request_frame = encode_frame(&Frame::HostCertificateRequest);
    // Twice.
    let mut server = Control::server(Instant::now(), None, 6);
    server.handle_bytes(Instant::now(), &request_frame);
    server.handle_bytes(Instant::now(), &request_frame);
    let events: Vec<_> = std::iter::from_fn(|| server.poll_event()).collect();
    assert_eq!(
        closed_with(&events),
        (
            ErrorCode::ProtocolError,
            ProtocolError::HostCertificateRequestOutOfPlace
        )
    );
    // After a USERAUTH_REQUEST (refused), too.
    let mut p = pair(6);
    p.client.send_userauth(request("alice"));
    p.run();
    p.server.auth_verdict(p.now, refused());
    p.run();
    p.server.handle_bytes(p.now, &request_frame);
    p.run();
    assert_eq!(
        closed_with(&p.server_events).1,
        ProtocolError::HostCertificateRequestOutOfPlace
    );
}

#[test]
fn an_unrequested_host_certificate_is_a_protocol_error() {
    let mut client = Control::client();
    client.send_userauth(request("alice"));
    let answer = encode_frame(&Frame::HostCertificate(bytes::Bytes::new()));
    client.handle_bytes(Instant::now(), &answer);
    let events: Vec<_> = std::iter::from_fn(|| client.poll_event()).collect();
    assert_eq!(
        closed_with(&events),
        (
            ErrorCode::ByApplication,
            ProtocolError::UnsolicitedAuthReply("HOST_CERTIFICATE")
        )
    );
}
