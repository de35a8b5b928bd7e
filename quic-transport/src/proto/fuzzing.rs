//! Entry points for fuzzing the state machines, and the back-to-back pairs
//! they (and the tests) use: two machines wired to each other, with time
//! advanced by hand. Whatever the input, nothing here may panic.

use std::time::{Duration, Instant};

use sshq_core::channel::{
    ChannelKind, ChannelRequest, GlobalReply, GlobalRequest, OpenFailure, OpenFailureReason,
};

use super::channel::{ChannelEvent, ChannelMachine};
use super::control::{Control, ControlEvent};
use super::{RequestId, Transmit};
use sshq_core::auth_methods::{AuthMethod, InfoRequest, Prompt};
use sshq_core::zeroize::Zeroizing;

use super::control::AuthVerdict;
use crate::wire::{
    encode_frame, AuthRequest, KeyboardInteractiveRequest, OtherMethodRequest, PasswordRequest,
    UserauthRequest,
};

/// One direction of a stream between the two machines of a pair.
#[derive(Debug, Default)]
pub struct Wire {
    /// Frames (encoded) not yet delivered.
    pub bytes: Vec<u8>,
    /// The sender's FIN.
    pub finished: bool,
    /// The sender's RESET_STREAM.
    pub reset: bool,
    /// The receiver's STOP_SENDING: nothing more is read.
    pub stopped: bool,
    /// The reset or stop has been reported to the machine it concerns.
    pub abort_seen: bool,
}

/// Carries one machine's transmit: onto `out`, the direction it sends on,
/// or (STOP_SENDING) onto `into`, the direction it receives on.
fn carry(transmit: Transmit, out: &mut Wire, into: &mut Wire) {
    match transmit {
        Transmit::Frame(frame) => {
            if !out.finished && !out.reset && !out.stopped {
                out.bytes
                    .extend_from_slice(&encode_frame(&frame).unwrap_or_default());
            }
        }
        Transmit::Finish => out.finished = true,
        Transmit::Reset(_) => out.reset = true,
        Transmit::StopSending(_) => {
            into.stopped = true;
            into.bytes.clear();
        }
    }
}

/// A client and a server control stream, back to back.
pub struct ControlPair {
    pub now: Instant,
    pub client: Control,
    pub server: Control,
    pub to_server: Wire,
    pub to_client: Wire,
    pub client_events: Vec<ControlEvent>,
    pub server_events: Vec<ControlEvent>,
}

impl ControlPair {
    pub fn new(now: Instant, grace: Option<Duration>, max_auth_tries: u32) -> Self {
        let deadline = grace.and_then(|g| now.checked_add(g));
        ControlPair {
            now,
            client: Control::client(),
            server: Control::server(now, deadline, max_auth_tries),
            to_server: Wire::default(),
            to_client: Wire::default(),
            client_events: Vec::new(),
            server_events: Vec::new(),
        }
    }

    /// Delivers everything in flight, both ways, until nothing moves.
    pub fn run(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.client.poll_transmit() {
                carry(t, &mut self.to_server, &mut self.to_client);
            }
            while let Some(t) = self.server.poll_transmit() {
                carry(t, &mut self.to_client, &mut self.to_server);
            }
            moved |= deliver_control(self.now, &mut self.to_server, &mut self.server);
            moved |= deliver_control(self.now, &mut self.to_client, &mut self.client);
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
                moved = true;
            }
            while let Some(e) = self.server.poll_event() {
                self.server_events.push(e);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    /// Moves the clock on and lets the machines' timers fire.
    pub fn advance(&mut self, by: Duration) {
        self.now = self.now.checked_add(by).unwrap_or(self.now);
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.run();
    }
}

/// An opener and an acceptor channel, back to back.
pub struct ChannelPair {
    pub now: Instant,
    pub opener: ChannelMachine,
    pub acceptor: ChannelMachine,
    pub to_acceptor: Wire,
    pub to_opener: Wire,
    pub opener_events: Vec<ChannelEvent>,
    pub acceptor_events: Vec<ChannelEvent>,
}

impl ChannelPair {
    pub fn new(now: Instant, kind: ChannelKind, open_timeout: Duration) -> Self {
        ChannelPair {
            now,
            opener: ChannelMachine::opener(kind),
            acceptor: ChannelMachine::acceptor(now, open_timeout),
            to_acceptor: Wire::default(),
            to_opener: Wire::default(),
            opener_events: Vec::new(),
            acceptor_events: Vec::new(),
        }
    }

    pub fn run(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.opener.poll_transmit() {
                carry(t, &mut self.to_acceptor, &mut self.to_opener);
            }
            while let Some(t) = self.acceptor.poll_transmit() {
                carry(t, &mut self.to_opener, &mut self.to_acceptor);
            }
            moved |= deliver(self.now, &mut self.to_acceptor, &mut self.acceptor);
            moved |= deliver(self.now, &mut self.to_opener, &mut self.opener);
            // A machine whose sending was stopped learns it as an abort.
            moved |= stopped(&mut self.to_acceptor, &mut self.opener);
            moved |= stopped(&mut self.to_opener, &mut self.acceptor);
            while let Some(e) = self.opener.poll_event() {
                self.opener_events.push(e);
                moved = true;
            }
            while let Some(e) = self.acceptor.poll_event() {
                self.acceptor_events.push(e);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    pub fn advance(&mut self, by: Duration) {
        self.now = self.now.checked_add(by).unwrap_or(self.now);
        self.opener.handle_timeout(self.now);
        self.acceptor.handle_timeout(self.now);
        self.run();
    }
}

/// Feeds one direction into a channel machine; true if anything moved.
fn deliver(now: Instant, wire: &mut Wire, machine: &mut ChannelMachine) -> bool {
    if wire.stopped {
        return false;
    }
    if !wire.bytes.is_empty() && machine.wants_input() {
        let bytes = std::mem::take(&mut wire.bytes);
        machine.handle_bytes(now, &bytes);
        return true;
    }
    if wire.reset && !wire.abort_seen {
        wire.abort_seen = true;
        machine.handle_peer_abort();
        return true;
    }
    if wire.finished && wire.bytes.is_empty() && machine.wants_input() {
        machine.handle_fin(now);
        return true;
    }
    false
}

/// Tells the sender on `wire` that its receiver stopped reading.
fn stopped(wire: &mut Wire, sender: &mut ChannelMachine) -> bool {
    if !wire.stopped || wire.abort_seen {
        return false;
    }
    wire.abort_seen = true;
    sender.handle_peer_stop();
    true
}

/// Feeds one direction into a control machine; true if anything moved.
fn deliver_control(now: Instant, wire: &mut Wire, machine: &mut Control) -> bool {
    if !machine.wants_input() {
        return false;
    }
    if !wire.bytes.is_empty() {
        let bytes = std::mem::take(&mut wire.bytes);
        machine.handle_bytes(now, &bytes);
        return true;
    }
    if wire.finished {
        machine.handle_fin(now);
        return true;
    }
    false
}

/// Reads the fuzzer's bytes as a script of operations.
struct Script<'a> {
    data: &'a [u8],
}

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.data.split_first()?;
        self.data = rest;
        Some(first)
    }

    fn chunk(&mut self) -> &[u8] {
        let len = usize::from(self.byte().unwrap_or(0));
        let len = len.min(self.data.len());
        let (chunk, rest) = self.data.split_at(len);
        self.data = rest;
        chunk
    }
}

fn sample_userauth() -> UserauthRequest {
    UserauthRequest {
        user: "fuzz".to_string(),
        service: "ssh-connection".to_string(),
        algorithm: "ssh-ed25519".to_string(),
        public_key: vec![0; 8],
        signature: vec![0; 8],
    }
}

/// The server's side of a login step, chosen by the op byte's high bits:
/// a verdict of each kind, or a keyboard-interactive round of up to three
/// prompts.
fn server_decides(pair: &mut ControlPair, op: u8) {
    let now = pair.now;
    match (op >> 4) & 3 {
        0 => pair.server.auth_verdict(
            now,
            AuthVerdict::Refused {
                can_continue: vec![AuthMethod::PublicKey, AuthMethod::Password],
            },
        ),
        1 => pair.server.auth_verdict(now, AuthVerdict::Accepted),
        2 => pair.server.auth_verdict(
            now,
            AuthVerdict::Partial {
                can_continue: vec![AuthMethod::KeyboardInteractive],
            },
        ),
        _ => pair.server.send_info_request(InfoRequest {
            name: "fuzz".to_string(),
            instruction: String::new(),
            prompts: (0..((op >> 2) & 3))
                .map(|i| Prompt {
                    text: format!("prompt {i}: "),
                    echo: i == 0,
                })
                .collect(),
        }),
    }
}

/// The client's side of a login step, chosen by the op byte's high bits:
/// a request of each method, or answers (of a chosen count) to a round.
fn client_sends(pair: &mut ControlPair, op: u8) {
    let (user, service) = ("fuzz".to_string(), "ssh-connection".to_string());
    let exporter = vec![0x11; 32];
    let request = match (op >> 4) & 7 {
        0 => AuthRequest::PublicKey(sample_userauth()),
        1 => AuthRequest::Password(PasswordRequest {
            user,
            service,
            exporter,
            password: Zeroizing::new("fuzz".to_string()),
        }),
        2 => AuthRequest::KeyboardInteractive(KeyboardInteractiveRequest {
            user,
            service,
            exporter,
            submethods: String::new(),
        }),
        3 => AuthRequest::Other(OtherMethodRequest {
            user,
            service,
            method: "none".to_string(),
        }),
        _ => {
            let answers = (0..((op >> 2) & 3))
                .map(|_| Zeroizing::new("answer".to_string()))
                .collect();
            let _ = pair.client.send_info_response(answers);
            return;
        }
    };
    pair.client.send_userauth(request);
}

/// Drives a client and a server control stream with arbitrary bytes from
/// either side, verdicts, answers, requests and time. Never panics.
pub fn drive_control(data: &[u8]) {
    let start = Instant::now();
    let mut pair = ControlPair::new(start, Some(Duration::from_secs(120)), 6);
    let mut script = Script { data };
    let mut peer_ids: Vec<RequestId> = Vec::new();
    while let Some(op) = script.byte() {
        match op % 10 {
            0 => pair.to_server.bytes.extend_from_slice(script.chunk()),
            1 => pair.to_client.bytes.extend_from_slice(script.chunk()),
            2 => pair.advance(Duration::from_secs(u64::from(script.byte().unwrap_or(1)))),
            3 => server_decides(&mut pair, op),
            4 => client_sends(&mut pair, op),
            5 => {
                let _ = pair.client.send_global_request(
                    GlobalRequest::Unknown {
                        name: "keepalive@openssh.com".to_string(),
                    },
                    op & 0x10 != 0,
                );
                let _ = pair.server.send_global_request(
                    GlobalRequest::TcpipForward {
                        address: String::new(),
                        port: 0,
                    },
                    true,
                );
            }
            6 => {
                if let Some(id) = peer_ids.pop() {
                    pair.server.answer(pair.now, id, GlobalReply::Failure);
                    pair.client.answer(pair.now, id, GlobalReply::Failure);
                }
            }
            7 => pair.client.finish(),
            8 => pair.to_client.finished = true,
            _ => pair.client.give_up(),
        }
        pair.run();
        for event in pair
            .server_events
            .drain(..)
            .chain(pair.client_events.drain(..))
        {
            if let ControlEvent::GlobalRequest { id, .. } = event {
                peer_ids.push(id);
            }
        }
    }
}

/// Drives an opener and an acceptor channel with arbitrary bytes from
/// either side, decisions, requests, answers, EOFs, aborts and time.
/// Never panics.
pub fn drive_channel(data: &[u8]) {
    let start = Instant::now();
    let mut pair = ChannelPair::new(start, ChannelKind::Session, Duration::from_secs(30));
    let mut script = Script { data };
    let mut peer_ids: Vec<RequestId> = Vec::new();
    while let Some(op) = script.byte() {
        match op % 11 {
            0 => pair.to_acceptor.bytes.extend_from_slice(script.chunk()),
            1 => pair.to_opener.bytes.extend_from_slice(script.chunk()),
            2 => pair.advance(Duration::from_secs(u64::from(script.byte().unwrap_or(1)))),
            3 => pair.acceptor.accept(pair.now),
            4 => pair.acceptor.refuse(OpenFailure {
                reason: OpenFailureReason::AdministrativelyProhibited,
                message: String::new(),
            }),
            5 => {
                let _ = pair
                    .opener
                    .send_request(ChannelRequest::Shell, op & 0x10 != 0);
                let _ = pair
                    .acceptor
                    .send_request(ChannelRequest::ExitStatus(0), op & 0x20 != 0);
            }
            6 => {
                if let Some(id) = peer_ids.pop() {
                    pair.opener.answer(pair.now, id, op & 0x10 != 0);
                    pair.acceptor.answer(pair.now, id, op & 0x10 != 0);
                }
            }
            7 => pair.opener.finish(),
            8 => pair.acceptor.finish(),
            9 => pair.opener.abandon(),
            _ => pair.acceptor.abandon(),
        }
        pair.run();
        for event in pair
            .opener_events
            .drain(..)
            .chain(pair.acceptor_events.drain(..))
        {
            if let ChannelEvent::Request { id, .. } = event {
                peer_ids.push(id);
            }
        }
    }
}
