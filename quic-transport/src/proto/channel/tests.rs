//! Channel streams in virtual time: an opener and an acceptor machine back
//! to back (`fuzzing::ChannelPair`), the clock moved by hand. No sockets,
//! no sleeps.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sshq_core::channel::{ChannelKind, ChannelRequest, OpenFailure, OpenFailureReason};

use super::{ChannelEnd, ChannelEvent, ChannelMachine, RequestRefused};
use crate::proto::control::tests::noise;
use crate::proto::fuzzing::{drive_channel, ChannelPair};
use crate::proto::{ProtocolError, RequestId, StreamKind, Transmit};
use crate::wire::{ErrorCode, Frame};

/// A frame as bytes (the frames here are small: encoding cannot fail).
fn encode_frame(frame: &Frame) -> bytes::Bytes {
    crate::wire::encode_frame(frame).expect("a test frame encodes")
}

const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

fn pair() -> ChannelPair {
    ChannelPair::new(Instant::now(), ChannelKind::Session, OPEN_TIMEOUT)
}

/// A channel opened and confirmed.
fn open_pair() -> ChannelPair {
    let mut p = pair();
    p.run();
    p.acceptor.accept(p.now);
    p.run();
    assert_eq!(p.opener_events, vec![ChannelEvent::Confirmed]);
    p.opener_events.clear();
    p.acceptor_events.clear();
    p
}

fn exec() -> ChannelRequest {
    ChannelRequest::Exec(b"echo hi".to_vec())
}

fn request_ids(events: &[ChannelEvent]) -> Vec<RequestId> {
    events
        .iter()
        .filter_map(|e| match e {
            ChannelEvent::Request { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn ended(events: &[ChannelEvent]) -> Option<&ChannelEnd> {
    events.iter().find_map(|e| match e {
        ChannelEvent::Closed(end) => Some(end),
        _ => None,
    })
}

fn error(events: &[ChannelEvent]) -> ProtocolError {
    match ended(events) {
        Some(ChannelEnd::Error(e)) => e.clone(),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

fn raw_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    bytes.push(kind);
    bytes.extend_from_slice(payload);
    bytes
}

/// An acceptor fed `bytes` as the start of a stream.
fn acceptor_after(bytes: &[u8]) -> (ChannelMachine, Vec<ChannelEvent>, Vec<Transmit>) {
    let mut acceptor = ChannelMachine::acceptor(Instant::now(), OPEN_TIMEOUT);
    acceptor.handle_bytes(Instant::now(), bytes);
    let events = std::iter::from_fn(|| acceptor.poll_event()).collect();
    let transmits = std::iter::from_fn(|| acceptor.poll_transmit()).collect();
    (acceptor, events, transmits)
}

#[test]
fn pipelined_requests_wait_for_the_decision() {
    let mut p = pair();
    let id = p.opener.send_request(exec(), true).expect("sent");
    p.opener
        .send_request(
            ChannelRequest::Env {
                name: "LANG".to_string(),
                value: "C".to_string(),
            },
            false,
        )
        .expect("sent");
    p.run();
    // draft §8.9: nothing but the open is handed out before the decision.
    assert_eq!(
        p.acceptor_events,
        vec![ChannelEvent::OpenRequested(ChannelKind::Session)]
    );
    assert!(!p.acceptor.wants_input());
    p.acceptor.accept(p.now);
    p.run();
    let ids = request_ids(&p.acceptor_events);
    assert_eq!(ids.len(), 2);
    p.acceptor.answer(p.now, ids[0], true);
    p.run();
    assert_eq!(
        p.opener_events,
        vec![
            ChannelEvent::Confirmed,
            ChannelEvent::Reply {
                id: id.expect("an id"),
                success: true
            }
        ]
    );
}

#[test]
fn pipelined_opens_are_answered_independently() {
    let now = Instant::now();
    let mut pairs: Vec<ChannelPair> = (0..4)
        .map(|_| ChannelPair::new(now, ChannelKind::Session, OPEN_TIMEOUT))
        .collect();
    let mut ours = Vec::new();
    for p in &mut pairs {
        ours.push(p.opener.send_request(exec(), true).expect("sent"));
        p.opener
            .send_request(ChannelRequest::Shell, true)
            .expect("sent");
        p.run();
    }
    // Confirmed in reverse order; one refused.
    for (i, p) in pairs.iter_mut().enumerate().rev() {
        if i == 2 {
            p.acceptor.refuse(OpenFailure {
                reason: OpenFailureReason::ConnectFailed,
                message: "open failed".to_string(),
            });
        } else {
            p.acceptor.accept(p.now);
        }
        p.run();
        let ids = request_ids(&p.acceptor_events);
        for id in ids.iter().rev() {
            p.acceptor.answer(p.now, *id, i % 2 == 0);
        }
        p.run();
    }
    for (i, p) in pairs.iter().enumerate() {
        if i == 2 {
            assert!(matches!(
                p.opener_events.first(),
                Some(ChannelEvent::Refused(OpenFailure {
                    reason: OpenFailureReason::ConnectFailed,
                    ..
                }))
            ));
            assert!(request_ids(&p.acceptor_events).is_empty());
            continue;
        }
        let replies: Vec<_> = p
            .opener_events
            .iter()
            .filter(|e| matches!(e, ChannelEvent::Reply { .. }))
            .cloned()
            .collect();
        assert_eq!(
            replies.first(),
            Some(&ChannelEvent::Reply {
                id: ours[i].expect("an id"),
                success: i % 2 == 0
            }),
            "channel {i}"
        );
        assert_eq!(replies.len(), 2, "channel {i}");
    }
}

#[test]
fn refusal_fails_the_pipelined_requests() {
    let mut p = pair();
    p.opener.send_request(exec(), true).expect("sent");
    p.run();
    let failure = OpenFailure {
        reason: OpenFailureReason::AdministrativelyProhibited,
        message: "no".to_string(),
    };
    p.acceptor.refuse(failure.clone());
    p.run();
    assert_eq!(
        p.opener_events.first(),
        Some(&ChannelEvent::Refused(failure))
    );
    assert_eq!(ended(&p.opener_events), Some(&ChannelEnd::Refused));
    assert_eq!(ended(&p.acceptor_events), Some(&ChannelEnd::Refused));
    // The pipelined request never reached the application.
    assert!(request_ids(&p.acceptor_events).is_empty());
    assert_eq!(
        p.opener.send_request(exec(), true),
        Err(RequestRefused::Closed)
    );
}

#[test]
fn unknown_channel_type_is_refused_with_reason_3() {
    let mut payload = 3u32.to_be_bytes().to_vec();
    payload.extend_from_slice(b"x11");
    let (acceptor, events, transmits) = acceptor_after(&raw_frame(90, &payload));
    assert!(acceptor.is_closed());
    assert_eq!(events, vec![ChannelEvent::Closed(ChannelEnd::Refused)]);
    let Some(Transmit::Frame(Frame::OpenFailure(failure))) = transmits.first() else {
        panic!("expected OPEN_FAILURE first: {transmits:?}");
    };
    assert_eq!(failure.reason, OpenFailureReason::UnknownChannelType);
    assert_eq!(failure.message, "unknown channel type \"x11\"");
    assert_eq!(transmits.get(1), Some(&Transmit::Finish));
}

#[test]
fn a_stream_must_start_with_channel_open() {
    let (_, events, transmits) =
        acceptor_after(&encode_frame(&Frame::Data(Bytes::from_static(b"x"))));
    assert_eq!(error(&events), ProtocolError::MissingOpen("CHANNEL_DATA"));
    // draft §6.5: only this stream, STOP_SENDING + RESET_STREAM 0x01.
    assert_eq!(
        transmits,
        vec![
            Transmit::StopSending(ErrorCode::ProtocolError),
            Transmit::Reset(ErrorCode::ProtocolError)
        ]
    );
}

#[test]
fn a_second_open_is_a_duplicate_channel() {
    let mut p = open_pair();
    p.to_acceptor.bytes = encode_frame(&Frame::ChannelOpen(ChannelKind::Session)).to_vec();
    p.run();
    assert_eq!(error(&p.acceptor_events), ProtocolError::DuplicateOpen);
    // The opener learns it as an abort.
    assert_eq!(ended(&p.opener_events), Some(&ChannelEnd::PeerAborted));
}

#[test]
fn the_first_answer_must_be_confirmation_or_failure() {
    let mut p = pair();
    p.run();
    p.to_opener.bytes = encode_frame(&Frame::ChannelSuccess).to_vec();
    p.run();
    assert_eq!(
        error(&p.opener_events),
        ProtocolError::BadOpenAnswer("CHANNEL_SUCCESS")
    );
    // Whoever waits for the open learns it failed.
    assert!(matches!(
        p.opener_events.first(),
        Some(ChannelEvent::Refused(_))
    ));
}

#[test]
fn reply_without_request() {
    let mut p = open_pair();
    p.to_opener.bytes = encode_frame(&Frame::ChannelFailure).to_vec();
    p.run();
    assert_eq!(
        error(&p.opener_events),
        ProtocolError::UnsolicitedReply(StreamKind::Channel)
    );
}

#[test]
fn control_frames_on_a_channel_stream() {
    let mut p = open_pair();
    p.to_acceptor.bytes = encode_frame(&Frame::UserauthSuccess).to_vec();
    p.run();
    assert_eq!(
        error(&p.acceptor_events),
        ProtocolError::UnexpectedFrame {
            stream: StreamKind::Channel,
            frame: "USERAUTH_SUCCESS"
        }
    );
}

#[test]
fn malformed_and_unknown_frames_end_only_the_channel() {
    let (_, events, _) = acceptor_after(&raw_frame(96, b"")); // CHANNEL_EOF: not in sshq/1
    assert_eq!(error(&events), ProtocolError::UnknownFrame(96));
    let (_, events, _) = acceptor_after(&[0, 0, 0, 0]);
    assert!(matches!(error(&events), ProtocolError::Malformed(_)));
}

#[test]
fn open_timeout() {
    let mut p = pair();
    // The opener's OPEN never arrives.
    p.opener.poll_transmit();
    assert_eq!(p.acceptor.poll_timeout(), Some(p.now + OPEN_TIMEOUT));
    p.advance(OPEN_TIMEOUT - Duration::from_millis(1));
    assert!(ended(&p.acceptor_events).is_none());
    p.advance(Duration::from_millis(1));
    assert_eq!(error(&p.acceptor_events), ProtocolError::OpenTimeout);
    assert_eq!(p.acceptor.poll_timeout(), None);
}

#[test]
fn fin_before_the_answer_is_a_failed_open() {
    let mut p = pair();
    p.run();
    p.to_opener.finished = true;
    p.run();
    assert!(matches!(
        p.opener_events.first(),
        Some(ChannelEvent::Refused(OpenFailure {
            reason: OpenFailureReason::ConnectFailed,
            ..
        }))
    ));
}

#[test]
fn fin_inside_a_frame() {
    let mut p = open_pair();
    p.to_acceptor.bytes = vec![0, 0, 0, 5, 94, 1];
    p.to_acceptor.finished = true;
    p.run();
    assert_eq!(
        error(&p.acceptor_events),
        ProtocolError::FinInsideFrame(StreamKind::Channel)
    );
}

#[test]
fn eof_opener_first_then_acceptor() {
    let mut p = open_pair();
    p.opener.finish();
    p.run();
    assert_eq!(p.acceptor_events, vec![ChannelEvent::Eof]);
    // Half-closed: the acceptor still sends data and its exit status.
    p.acceptor
        .send_request(ChannelRequest::ExitStatus(0), false)
        .expect("sent");
    p.acceptor.finish();
    p.run();
    assert!(matches!(
        p.opener_events.as_slice(),
        [
            ChannelEvent::Request { .. },
            ChannelEvent::Eof,
            ChannelEvent::Closed(ChannelEnd::Orderly)
        ]
    ));
    assert_eq!(ended(&p.acceptor_events), Some(&ChannelEnd::Orderly));
    assert!(p.opener.is_closed() && p.acceptor.is_closed());
}

#[test]
fn eof_acceptor_first_then_opener() {
    let mut p = open_pair();
    p.acceptor.finish();
    p.run();
    assert_eq!(p.opener_events, vec![ChannelEvent::Eof]);
    assert!(!p.opener.is_closed());
    // draft §8.8: nothing after our own FIN.
    assert_eq!(
        p.acceptor
            .send_request(ChannelRequest::ExitStatus(0), false),
        Err(RequestRefused::AfterOurEof)
    );
    p.opener.finish();
    p.run();
    assert_eq!(ended(&p.opener_events), Some(&ChannelEnd::Orderly));
    assert_eq!(ended(&p.acceptor_events), Some(&ChannelEnd::Orderly));
}

#[test]
fn eof_both_at_once() {
    let mut p = open_pair();
    p.opener.finish();
    p.acceptor.finish();
    p.run();
    assert_eq!(ended(&p.opener_events), Some(&ChannelEnd::Orderly));
    assert_eq!(ended(&p.acceptor_events), Some(&ChannelEnd::Orderly));
}

#[test]
fn eof_before_the_confirmation_arrives() {
    // The opener sends its request and EOF at once (`sshq host cmd </dev/null`).
    let mut p = pair();
    p.opener.send_request(exec(), true).expect("sent");
    p.opener.finish();
    p.run();
    p.acceptor.accept(p.now);
    p.run();
    let ids = request_ids(&p.acceptor_events);
    assert_eq!(ids.len(), 1);
    assert_eq!(p.acceptor_events.last(), Some(&ChannelEvent::Eof));
    // The answer still goes out after the peer's FIN.
    p.acceptor.answer(p.now, ids[0], true);
    p.acceptor.finish();
    p.run();
    assert!(p
        .opener_events
        .iter()
        .any(|e| matches!(e, ChannelEvent::Reply { success: true, .. })));
    assert_eq!(ended(&p.opener_events), Some(&ChannelEnd::Orderly));
}

#[test]
fn abandon_reaches_the_peer_even_after_fins() {
    let mut p = open_pair();
    p.opener.finish();
    p.run();
    p.opener.abandon();
    p.run();
    assert_eq!(ended(&p.opener_events), Some(&ChannelEnd::Abandoned));
    assert_eq!(ended(&p.acceptor_events), Some(&ChannelEnd::PeerAborted));
}

#[test]
fn abandon_sends_channel_closed() {
    let mut p = open_pair();
    p.opener.abandon();
    let transmits: Vec<_> = std::iter::from_fn(|| p.opener.poll_transmit()).collect();
    assert_eq!(
        transmits,
        vec![
            Transmit::StopSending(ErrorCode::ChannelClosed),
            Transmit::Reset(ErrorCode::ChannelClosed)
        ]
    );
}

#[test]
fn channel_replies_in_request_order() {
    let mut p = open_pair();
    let ours: Vec<RequestId> = (0..3)
        .map(|_| {
            p.opener
                .send_request(ChannelRequest::Shell, true)
                .expect("sent")
                .expect("an id")
        })
        .collect();
    p.run();
    let theirs = request_ids(&p.acceptor_events);
    p.acceptor.answer(p.now, theirs[1], false);
    p.acceptor.answer(p.now, theirs[2], true);
    p.run();
    assert!(p.opener_events.is_empty());
    p.acceptor.answer(p.now, theirs[0], true);
    p.run();
    assert_eq!(
        p.opener_events,
        vec![
            ChannelEvent::Reply {
                id: ours[0],
                success: true
            },
            ChannelEvent::Reply {
                id: ours[1],
                success: false
            },
            ChannelEvent::Reply {
                id: ours[2],
                success: true
            },
        ]
    );
}

#[test]
fn data_stderr_and_other_extended_data() {
    let mut p = open_pair();
    p.to_opener.bytes = [
        encode_frame(&Frame::Data(Bytes::from_static(b"out"))),
        encode_frame(&Frame::ExtendedData {
            data_type: 1,
            data: Bytes::from_static(b"err"),
        }),
        encode_frame(&Frame::ExtendedData {
            data_type: 7,
            data: Bytes::from_static(b"dropped"),
        }),
    ]
    .concat();
    p.run();
    assert_eq!(
        p.opener_events,
        vec![
            ChannelEvent::Data(Bytes::from_static(b"out")),
            ChannelEvent::ExtendedData(Bytes::from_static(b"err")),
        ]
    );
}

#[test]
fn the_fuzzing_entry_point_survives_noise() {
    for seed in 0..300 {
        drive_channel(&noise(seed ^ 0x5eed, 64 + (seed as usize % 200)));
    }
    drive_channel(&[5, 0x35, 3, 6, 0x16, 7, 8, 9, 10]);
}

#[test]
fn a_stop_before_the_answer_leaves_the_refusal_its_say() {
    // The acceptor's STOP_SENDING can overtake its OPEN_FAILURE.
    let mut p = pair();
    p.run();
    p.opener.handle_peer_stop();
    assert!(!p.opener.is_closed());
    let failure = OpenFailure {
        reason: OpenFailureReason::ConnectFailed,
        message: "open failed".to_string(),
    };
    p.acceptor.refuse(failure.clone());
    p.run();
    assert_eq!(
        p.opener_events.first(),
        Some(&ChannelEvent::Refused(failure))
    );
    assert_eq!(ended(&p.opener_events), Some(&ChannelEnd::Refused));
    // Once open, a stop closes the channel.
    let mut p = open_pair();
    p.opener.handle_peer_stop();
    assert_eq!(
        p.opener.poll_event(),
        Some(ChannelEvent::Closed(ChannelEnd::PeerAborted))
    );
}

#[test]
fn no_want_reply_request_after_the_peers_fin() {
    let mut p = open_pair();
    p.acceptor.finish();
    p.run();
    assert_eq!(p.opener_events, vec![ChannelEvent::Eof]);
    // draft §8.7: the peer can no longer answer, so the call is refused
    // before anything is sent; a request without reply still goes.
    assert_eq!(
        p.opener.send_request(exec(), true),
        Err(RequestRefused::ReplyAfterPeerEof)
    );
    assert_eq!(
        p.opener
            .send_request(ChannelRequest::WindowChange(Default::default()), false),
        Ok(None)
    );
    p.run();
    assert_eq!(request_ids(&p.acceptor_events).len(), 1);
}

#[test]
fn no_request_once_our_fin_waits_for_answers() {
    let mut p = open_pair();
    p.opener.send_request(exec(), true).expect("sent");
    p.run();
    let ids = request_ids(&p.acceptor_events);
    // Our EOF is asked for while the answer is owed: the FIN waits, and
    // nothing may be sent behind it any more.
    p.acceptor.finish();
    assert_eq!(
        p.acceptor
            .send_request(ChannelRequest::ExitStatus(0), false),
        Err(RequestRefused::AfterOurEof)
    );
    p.acceptor.answer(p.now, ids[0], true);
    p.run();
    assert_eq!(
        p.opener_events
            .iter()
            .filter(|e| matches!(e, ChannelEvent::Reply { .. } | ChannelEvent::Eof))
            .count(),
        2,
        "the answer, then EOF: {:?}",
        p.opener_events
    );
}

#[test]
fn a_want_reply_request_after_our_fin_is_ignored() {
    let mut p = open_pair();
    p.acceptor.finish();
    p.run();
    p.acceptor_events.clear();
    // A peer breaking §8.7: its want-reply request after our FIN can get no
    // answer, so it neither reaches the application nor holds a queue slot.
    for _ in 0..2 * sshq_core::replies::REQUEST_QUEUE {
        p.acceptor.handle_frame(
            p.now,
            Frame::ChannelRequest {
                request: exec(),
                want_reply: true,
            },
        );
    }
    let events: Vec<_> = std::iter::from_fn(|| p.acceptor.poll_event()).collect();
    assert!(request_ids(&events).is_empty(), "{events:?}");
    assert!(p.acceptor.wants_input(), "the stream is still read");
}

#[test]
fn an_open_reset_before_the_decision_starts_nothing() {
    let mut p = pair();
    p.opener.send_request(exec(), true).expect("sent");
    p.run();
    assert_eq!(
        p.acceptor_events,
        vec![ChannelEvent::OpenRequested(ChannelKind::Session)]
    );
    p.acceptor_events.clear();
    // draft §8.4: the opener reset the stream before our answer; the
    // driver tells the machine before it carries out the decision.
    p.acceptor.handle_peer_abort();
    p.acceptor.accept(p.now);
    let events: Vec<_> = std::iter::from_fn(|| p.acceptor.poll_event()).collect();
    assert!(
        request_ids(&events).is_empty(),
        "the exec is not handed out"
    );
    assert_eq!(ended(&events), Some(&ChannelEnd::PeerAborted));
    assert!(
        !std::iter::from_fn(|| p.acceptor.poll_transmit())
            .any(|t| t == Transmit::Frame(Frame::OpenConfirmation)),
        "no confirmation for a channel already gone"
    );
}
