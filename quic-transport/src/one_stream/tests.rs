//! The carrier's scheduling, without I/O: which frame the writer takes
//! next, and when bulk data must wait.

use super::*;

fn state(streams: &[u32]) -> State {
    let mut state = State::new(0, None);
    state.streams = streams.iter().map(|&id| (id, Virtual::new())).collect();
    state
}

fn data(len: usize) -> Pending {
    Pending::Data(Bytes::from(vec![0u8; len]))
}

fn stream_of(frame: Option<CarrierFrame>) -> Option<u32> {
    match frame? {
        CarrierFrame::Data { stream, .. }
        | CarrierFrame::Fin { stream }
        | CarrierFrame::Reset { stream, .. }
        | CarrierFrame::Stop { stream, .. } => Some(stream),
        CarrierFrame::Consumed { .. } => None,
    }
}

#[test]
fn streams_take_turns_and_a_terminal_goes_first() {
    let mut s = state(&[0, 2, 4]);
    for _ in 0..2 {
        s.queue(0, data(100));
        s.queue(2, data(100));
    }
    let window = u64::MAX;
    assert_eq!(stream_of(s.next_frame(window)), Some(0));
    assert_eq!(stream_of(s.next_frame(window)), Some(2));
    // Stream 4 is a terminal: its keystroke jumps the queue.
    s.streams.get_mut(&4).expect("stream 4").interactive = true;
    s.queue(4, data(1));
    assert_eq!(stream_of(s.next_frame(window)), Some(4));
    assert_eq!(stream_of(s.next_frame(window)), Some(0));
    assert_eq!(stream_of(s.next_frame(window)), Some(2));
    assert_eq!(s.next_frame(window), None);
}

#[test]
fn bulk_waits_for_the_window_but_a_terminal_does_not() {
    let mut s = state(&[0, 2]);
    s.streams.get_mut(&2).expect("stream 2").interactive = true;
    s.queue(0, data(1000));
    s.queue(0, data(1000));
    // 1000 bytes may be outstanding: the first frame goes, the second waits.
    assert_eq!(stream_of(s.next_frame(1000)), Some(0));
    assert_eq!(s.next_frame(1000), None);
    // A keystroke is not held by the window.
    s.queue(2, data(1));
    assert_eq!(stream_of(s.next_frame(1000)), Some(2));
    // The peer reports what it passed on: bulk goes again.
    s.peer_consumed = 1000;
    assert_eq!(stream_of(s.next_frame(1000)), Some(0));
}

#[test]
fn control_frames_go_first_and_consumption_is_reported() {
    let mut s = state(&[0]);
    s.queue(0, data(10));
    s.unconsumed = 20_000;
    // Below the reporting step, and the stream still has data queued.
    assert!(!s.pass_on(100, false));
    assert!(s.control.is_empty(), "no report yet");
    // Ran dry: what was passed on is reported at once.
    assert!(s.pass_on(100, true));
    assert_eq!(
        s.next_frame(u64::MAX),
        Some(CarrierFrame::Consumed { bytes: 200 })
    );
    assert_eq!(stream_of(s.next_frame(u64::MAX)), Some(0));
}

#[test]
fn a_reset_drops_what_was_queued_and_the_stream_loses_its_turn() {
    let mut s = state(&[0, 2]);
    s.queue(0, data(10));
    s.queue(2, data(10));
    // As SharedSend::reset does.
    let stream = s.streams.get_mut(&0).expect("stream 0");
    stream.send_closed = true;
    stream.pending.clear();
    stream.pending_bytes = 0;
    s.queue(0, Pending::Reset(4));
    assert_eq!(
        s.next_frame(u64::MAX),
        Some(CarrierFrame::Reset { stream: 0, code: 4 })
    );
    assert_eq!(stream_of(s.next_frame(u64::MAX)), Some(2));
    assert_eq!(s.next_frame(u64::MAX), None);
}
