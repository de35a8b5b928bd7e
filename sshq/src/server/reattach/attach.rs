//! A channel attached to a held session: output from the replay buffer
//! out, the client's input and acknowledgements in, window changes and
//! signals through, until the program's end is delivered, the client ends
//! the session, or the channel goes (and the session stays held).

use std::sync::Arc;
use std::time::Duration;

use sshq_core::channel::ChannelRequest;
use sshq_core::transport::{ChannelControl, IncomingRequest, RequestStream};
use tokio::io::{AsyncRead, AsyncWriteExt};

use super::super::process::ExitStatus;
use super::held::Held;
use crate::reattach::wire::{Frame, MAX_DATA};
use crate::reattach::{send, send_data, FrameReader};

/// How often the client hears how much of its input arrived, while it
/// types; it resends what was not acknowledged after a reattach.
const INPUT_ACK_INTERVAL: Duration = Duration::from_millis(500);

/// How long the client has to acknowledge the last output of a program
/// that ended before the session counts as detached instead of over.
const FINAL_ACK_LIMIT: Duration = Duration::from_secs(10);

/// The channel's halves, as [`serve`] uses them: in the holder, the ends
/// of its link to sshqd, which relays them to the real channel.
pub struct Attached<R, W, K, Q> {
    pub frames: FrameReader<R>,
    pub data_out: W,
    pub control: K,
    pub requests: Q,
}

/// How an attachment ended.
enum Ending {
    /// The program's end reached the client.
    Delivered(ExitStatus),
    /// Another channel took the session over.
    Superseded,
    /// The client ended the session (END).
    EndedByClient,
    /// The channel or its connection is gone; the session stays held.
    Lost(String),
}

/// Whether the attachment ended because another channel took the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Superseded,
    Otherwise,
}

/// Serves `held` on `channel`: a fresh session (`resume_from` `None`) is
/// told its token, a resumed one where its output resumes.
pub async fn serve<R, W, K, Q>(
    held: Arc<Held>,
    channel: Attached<R, W, K, Q>,
    resume_from: Option<u64>,
    peer: &str,
) -> Ended
where
    R: AsyncRead + Unpin,
    W: AsyncWriteExt + Unpin,
    K: ChannelControl,
    Q: RequestStream,
{
    let Attached {
        mut frames,
        mut data_out,
        control,
        mut requests,
    } = channel;
    // A RESUME that cannot be honoured is refused before it takes the
    // session from the channel attached now.
    let end = held.state().output.end();
    if let Some(received) = resume_from.filter(|received| *received > end) {
        let reason = format!("resumed at output byte {received}, beyond the {end} sent");
        let _ = send(&mut data_out, &Frame::Refused(reason)).await;
        return Ended::Otherwise;
    }
    let Some(generation) = held.attach() else {
        let reason = "the session has ended".to_string();
        let _ = send(&mut data_out, &Frame::Refused(reason)).await;
        return Ended::Otherwise;
    };
    // The previous attachment's input writes stop now; what they wrote is
    // counted before the count goes to the client.
    held.input_idle().await;
    let (first, cursor, lost) = opening(&held, resume_from);
    if send(&mut data_out, &first).await.is_err() {
        held.detach(generation);
        return Ended::Otherwise;
    }
    if resume_from.is_some() {
        tracing::info!(
            "{}: reattached to the session {} started{}",
            peer,
            held.label(),
            match lost {
                0 => String::new(),
                lost => format!(" ({lost} bytes of output were lost)"),
            }
        );
    }
    if lost > 0 {
        let redraw = held.clone();
        tokio::spawn(async move { redraw.redraw().await });
    }
    let ending = tokio::select! {
        ending = output(&held, generation, cursor, &mut data_out) => ending,
        ending = input(&held, generation, &mut frames) => ending,
        () = requests_to(&held, &mut requests, peer) => Ending::Lost("no more requests".into()),
        () = control.closed() => Ending::Lost("channel closed".into()),
        // Also while `output` waits on a dead connection's full window.
        () = superseded(&held, generation) => Ending::Superseded,
    };
    let superseded = matches!(ending, Ending::Superseded);
    match ending {
        Ending::Delivered(status) => {
            let request = status.into_request();
            let _ = control.request(request, false).await;
            let _ = data_out.shutdown().await;
            // The session's end is the client's once it acknowledged all
            // the output; until then (the link may go just now) the session
            // stays held, its last output and status ready for a reattach.
            if final_ack(&held, &mut frames).await {
                held.end("the program ended");
            } else {
                tracing::info!(
                    "{}: the program ended, but its last output was not acknowledged; \
                     held for {} s",
                    peer,
                    held.hold().as_secs()
                );
                held.detach(generation);
            }
        }
        Ending::EndedByClient => held.end("the client ended it"),
        Ending::Superseded => {
            tracing::info!("{}: session taken over by a newer connection", peer);
            held.detach(generation);
        }
        Ending::Lost(why) => {
            tracing::info!(
                "{}: session detached ({why}); held for {} s",
                peer,
                held.hold().as_secs()
            );
            held.detach(generation);
        }
    }
    // A superseded channel is the caller's to close: it says why first,
    // so that sshqd closes that connection at once (draft §8.12.3).
    if superseded {
        return Ended::Superseded;
    }
    control.close().await;
    Ended::Otherwise
}

/// Resolves once another attachment has taken the session.
async fn superseded(held: &Held, generation: u64) {
    loop {
        let changed = held.changed();
        if held.state().attachment != generation {
            return;
        }
        changed.await;
    }
}

/// Waits (at most [`FINAL_ACK_LIMIT`]) for the client to acknowledge all
/// the output after the program ended.
async fn final_ack<R: tokio::io::AsyncRead + Unpin>(
    held: &Held,
    frames: &mut FrameReader<R>,
) -> bool {
    let end = held.state().output.end();
    let acknowledged = async {
        loop {
            match frames.next().await {
                Ok(Some(Frame::Ack(offset))) if offset >= end => return true,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return false,
            }
        }
    };
    tokio::time::timeout(FINAL_ACK_LIMIT, acknowledged)
        .await
        .unwrap_or(false)
}

/// The first frame to send, the output offset to go on from, and how much
/// output the client lost: SESSION for a fresh session, RESUMED for a
/// resumed one (whose offset was checked before it attached).
fn opening(held: &Held, resume_from: Option<u64>) -> (Frame, u64, u64) {
    let state = held.state();
    let Some(received) = resume_from else {
        let session = Frame::Session {
            token: held.token().clone(),
            hold_secs: u32::try_from(held.configured_hold().as_secs()).unwrap_or(u32::MAX),
        };
        return (session, 0, 0);
    };
    // Output the client never saw was dropped: replay nothing (what is
    // left may start inside an escape sequence) and have the program
    // redraw instead.
    let from = if received < state.output.start() {
        state.output.end()
    } else {
        received.min(state.output.end())
    };
    let resumed = Frame::Resumed {
        input_received: state.input_received,
        output_from: from,
    };
    (resumed, from, from.saturating_sub(received))
}

/// Sends output from `cursor` on, and acknowledgements of input, until the
/// program's end is delivered or the session is taken over.
async fn output<W: AsyncWriteExt + Unpin>(
    held: &Held,
    generation: u64,
    mut cursor: u64,
    to: &mut W,
) -> Ending {
    let mut acked_input = held.state().input_received;
    let mut last_ack = tokio::time::Instant::now();
    loop {
        let changed = held.changed();
        let (chunk, exit, input_received) = {
            let state = held.state();
            if state.attachment != generation {
                return Ending::Superseded;
            }
            // Dropped while attached (the client fell more than the buffer
            // behind in acknowledging): carry on from what is left.
            cursor = cursor.max(state.output.start());
            let chunk = state.output.read_from(cursor, 4 * MAX_DATA).to_vec();
            let exit = (state.output_ended && chunk.is_empty())
                .then(|| state.exit.clone())
                .flatten();
            (chunk, exit, state.input_received)
        };
        // Input acknowledgements go out at most every INPUT_ACK_INTERVAL:
        // a keystroke's echo already tells the user it arrived.
        let ack_due = last_ack + INPUT_ACK_INTERVAL;
        if input_received > acked_input && ack_due <= tokio::time::Instant::now() {
            acked_input = input_received;
            last_ack = tokio::time::Instant::now();
            if let Err(e) = send(to, &Frame::Ack(acked_input)).await {
                return Ending::Lost(e.to_string());
            }
        }
        if !chunk.is_empty() {
            if let Err(e) = send_data(to, &chunk).await {
                return Ending::Lost(e.to_string());
            }
            cursor += chunk.len() as u64;
            continue;
        }
        if let Some(status) = exit {
            return Ending::Delivered(status);
        }
        let ack_pending = input_received > acked_input;
        tokio::select! {
            () = changed => {}
            () = tokio::time::sleep_until(ack_due), if ack_pending => {}
        };
    }
}

/// Reads the client's frames: input to the pty, acknowledgements to the
/// replay buffer.
async fn input<R: tokio::io::AsyncRead + Unpin>(
    held: &Held,
    generation: u64,
    frames: &mut FrameReader<R>,
) -> Ending {
    let mut confirmed = false;
    loop {
        let frame = match frames.next().await {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ending::Lost("end of the client's stream".into()),
            Err(e) => return Ending::Lost(e.to_string()),
        };
        // Once per attachment, not per keystroke: it takes the state's lock.
        if !confirmed {
            held.confirm();
            confirmed = true;
        }
        match frame {
            Frame::Data(bytes) => {
                if let Err(e) = held.queue_input(generation, bytes) {
                    return Ending::Lost(e.to_string());
                }
            }
            Frame::Ack(offset) => {
                if let Err(e) = held.update(|state| state.output.ack(offset)) {
                    return Ending::Lost(e.to_string());
                }
            }
            Frame::Eof => held.close_input(generation),
            Frame::End => return Ending::EndedByClient,
            other => return Ending::Lost(format!("unexpected {other:?} from the client")),
        }
    }
}

/// Window changes and signals, while attached.
async fn requests_to<R: RequestStream>(held: &Held, requests: &mut R, peer: &str) {
    while let Some(IncomingRequest { request, reply }) = requests.next().await {
        let ok = match &request {
            ChannelRequest::WindowChange(size) => held.resize(*size).is_ok(),
            ChannelRequest::Signal(name) => {
                super::super::session::signal_answer(held.signal(name), name, peer)
            }
            other => {
                tracing::debug!(
                    "{}: refused channel request {} on a reattachable session",
                    peer,
                    other.wire_name()
                );
                false
            }
        };
        reply.send(ok);
    }
    // Over QUIC the request stream ends with the client's EOF, which a
    // reattachable session never sends while it runs: the channel is gone.
    std::future::pending::<()>().await;
}
