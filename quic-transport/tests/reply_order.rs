//! A channel's FIN never overtakes the answer to a request received before
//! it. The answer and the FIN come from different places (the answer from
//! whoever handles the request, through the channel's reply task; the FIN
//! from the data writer), and nothing may follow a FIN: an answer it
//! overtook was lost. That is how sshqd lost the exec reply of commands that
//! exit at once (sshq issue 10), and the client took the exec as refused.

// The lab is shared with protocol.rs; this test uses only part of it.
#[allow(dead_code)]
mod lab;

use lab::{step, Fixture, RawChannel};
use sshq_core::channel::ChannelRequest;
use sshq_quic::wire::{encode_frame, Frame};

/// Rounds of "request, then EOF at once": the race is lost only now and
/// then, so one round proves little.
const ROUNDS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eof_right_after_a_request_still_gets_its_answer_before_the_fin() {
    let f = Fixture::new(6, None);
    let client = f.raw_logged_in().await;
    let request = encode_frame(&Frame::ChannelRequest {
        request: ChannelRequest::Exec(b"exit 3".to_vec()),
        want_reply: true,
    })
    .expect("a small request encodes");
    let mut lost = 0;
    for _ in 0..ROUNDS {
        // The lab's server answers every request (from one task) and ends
        // its side as soon as ours ends (from another).
        let mut channel = RawChannel::session(&client.conn).await;
        channel.write(&request).await.expect("write the request");
        channel.send.finish().expect("finish");
        let mut answered = false;
        loop {
            match step("the server's frames", channel.frames.next()).await {
                Ok(Some(Frame::ChannelSuccess)) => answered = true,
                Ok(Some(other)) => panic!("unexpected frame {other:?}"),
                Ok(None) => break,
                Err(e) => panic!("the channel failed: {e}"),
            }
        }
        if !answered {
            lost += 1;
        }
    }
    assert_eq!(
        lost, 0,
        "{lost} of {ROUNDS} answers were lost behind the server's FIN"
    );
}
