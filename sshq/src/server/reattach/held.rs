//! One held session: the program, its pty, the output the client has not
//! acknowledged, and who is attached. It lives in its session holder
//! (`super::holder`) until the program's end has reached a client, the
//! client ends it, or nobody reattached within `ClientReattachTimeout`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sshq_core::channel::WindowSize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::super::process::{
    ExitStatus, SessionOutput, SessionProcess, SessionStdin, SignalError, DEFAULT_HANGUP_GRACE,
};
use crate::reattach::replay::ReplayBuffer;
use crate::reattach::wire::{Token, MAX_DATA};

/// Client input queued for the pty at most (a client keeps at most 1 MiB
/// unacknowledged, draft §8.12.4).
pub const MAX_QUEUED_INPUT: usize = 2 * 1024 * 1024;

/// How long a session is held, at most, whose client never showed that it
/// got the token (no frame after START): most likely its SESSION never
/// arrived, and then nobody can ever reattach to it.
pub const UNCONFIRMED_HOLD: Duration = Duration::from_secs(30);

/// A client queued more input than [`MAX_QUEUED_INPUT`].
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("more than {MAX_QUEUED_INPUT} bytes of input queued for the terminal")]
pub struct InputFlood;

/// What the input writer does.
enum InputOp {
    Data(u64, Vec<u8>),
    Eof(u64),
}

/// The first read size of a held session's pty: a screenful of typing.
const IDLE_READ: usize = 1024;

/// Who a held session belongs to, and how it is held.
#[derive(Debug, Clone)]
pub struct HeldConfig {
    pub user_name: String,
    pub uid: u32,
    /// For log lines: who started it.
    pub label: String,
    /// `ClientReattachTimeout`.
    pub hold: Duration,
    /// `ClientReattachBuffer`.
    pub buffer: usize,
}

/// A held session, shared by its holder, its own tasks and the channel
/// attached to it.
pub struct Held {
    token: Token,
    user_name: String,
    uid: u32,
    /// For log lines: who started it.
    label: String,
    hold: Duration,
    state: Mutex<State>,
    /// Woken on every change of `state`.
    changed: Notify,
    /// The pty's writing side, held by the input writer during each write
    /// (see [`Held::input_idle`]).
    stdin: tokio::sync::Mutex<Option<SessionStdin>>,
    /// Client input on its way to the pty, with the attachment it came on.
    input: mpsc::UnboundedSender<InputOp>,
    /// Bytes in `input`: a client that sends more than the pty takes is
    /// bounded by its own unacknowledged-input limit; one that does not
    /// is stopped at [`MAX_QUEUED_INPUT`].
    queued_input: AtomicUsize,
    /// Taken (and dropped, which hangs the program up) when the session ends.
    process: Mutex<Option<SessionProcess>>,
}

/// What changes while the session is held.
pub struct State {
    pub output: ReplayBuffer,
    /// The pty reported end of file or an error: no more output.
    pub output_ended: bool,
    pub exit: Option<ExitStatus>,
    /// Input written to the pty since the start, in bytes.
    pub input_received: u64,
    /// The generation of the attached channel; 0 when none is.
    pub attachment: u64,
    next_generation: u64,
    /// When the last attachment went, while none is attached.
    detached_at: Option<Instant>,
    /// The session is over; nothing may attach.
    pub ended: bool,
    /// A client is known to hold the token: it sent a frame after SESSION
    /// (sshq acknowledges SESSION at once), or it resumed.
    confirmed: bool,
    /// The pty is let go (after the end, once the program is gone or had
    /// its grace period): its output is no longer read.
    terminal_released: bool,
    /// The window size last set, to redraw with after lost output.
    pub size: WindowSize,
}

impl Held {
    /// Holds `process` under `token` and starts pumping its output.
    pub fn start(
        token: Token,
        mut process: SessionProcess,
        size: WindowSize,
        config: HeldConfig,
    ) -> Arc<Held> {
        let stdout = process.take_stdout();
        let stdin = process.take_stdin();
        let (input, input_ops) = mpsc::unbounded_channel();
        let held = Arc::new(Held {
            token,
            user_name: config.user_name,
            uid: config.uid,
            label: config.label,
            hold: config.hold,
            state: Mutex::new(State {
                output: ReplayBuffer::new(config.buffer),
                output_ended: false,
                exit: None,
                input_received: 0,
                attachment: 0,
                next_generation: 1,
                detached_at: Some(Instant::now()),
                ended: false,
                confirmed: false,
                terminal_released: false,
                size,
            }),
            changed: Notify::new(),
            stdin: tokio::sync::Mutex::new(stdin),
            input,
            queued_input: AtomicUsize::new(0),
            process: Mutex::new(None),
        });
        let wait = process.wait();
        *held.lock_process() = Some(process);
        tokio::spawn(pump_output(held.clone(), stdout, wait));
        tokio::spawn(write_input(held.clone(), input_ops));
        tokio::spawn(keep(held.clone()));
        held
    }

    pub fn uid(&self) -> u32 {
        self.uid
    }

    pub fn user_name(&self) -> &str {
        &self.user_name
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// How long the session is held once nobody is attached: the
    /// configured time, or [`UNCONFIRMED_HOLD`] if no client ever showed
    /// that it got the token.
    pub fn hold(&self) -> Duration {
        self.hold_when(self.state().confirmed)
    }

    fn hold_when(&self, confirmed: bool) -> Duration {
        match confirmed {
            true => self.hold,
            false => self.hold.min(UNCONFIRMED_HOLD),
        }
    }

    /// The configured hold time (what SESSION announces).
    pub fn configured_hold(&self) -> Duration {
        self.hold
    }

    /// Notes that a client holds the token.
    pub fn confirm(&self) {
        if !self.state().confirmed {
            self.update(|state| state.confirmed = true);
        }
    }

    /// The session is over and its terminal let go: its holder may go.
    pub fn finished(&self) -> bool {
        let state = self.state();
        state.ended && state.terminal_released
    }

    pub fn token(&self) -> &Token {
        &self.token
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        // Every update is a few assignments that cannot panic half-way.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_process(&self) -> MutexGuard<'_, Option<SessionProcess>> {
        self.process.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the state and wakes whoever waits on it.
    pub fn update<T>(&self, change: impl FnOnce(&mut State) -> T) -> T {
        let result = change(&mut self.state());
        self.changed.notify_waiters();
        result
    }

    /// A future that resolves at the next [`update`](Self::update); create
    /// it before looking at the state, so no change is missed in between.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Makes a new attachment the current one (a channel still attached is
    /// superseded: it sees its generation gone and lets go).
    pub fn attach(&self) -> Option<u64> {
        self.update(|state| {
            if state.ended {
                return None;
            }
            let generation = state.next_generation;
            state.next_generation += 1;
            state.attachment = generation;
            state.detached_at = None;
            Some(generation)
        })
    }

    /// The attachment `generation` is gone; the session is held from now.
    pub fn detach(&self, generation: u64) {
        self.update(|state| {
            if state.attachment == generation {
                state.attachment = 0;
                state.detached_at = Some(Instant::now());
            }
        });
    }

    /// Ends the session: forgets it, and hangs the program up if it runs.
    ///
    /// A terminal hang-up in two steps: SIGHUP while the terminal is still
    /// up, then the terminal closes once the program has gone or its grace
    /// period is over. Both at once race in the shell: a read that sees the
    /// closed terminal first makes it exit as at end of input, leaving its
    /// background jobs running, where SIGHUP makes it hang them up too.
    pub fn end(self: &Arc<Self>, why: &str) {
        self.update(|state| state.ended = true);
        let process = self.lock_process().take();
        let Some(process) = process else {
            self.release_terminal();
            return;
        };
        tracing::info!("{}: held session ended: {why}", self.label);
        let gone = process.wait();
        // SIGHUP now; SIGKILL to what is left after the grace period.
        drop(process);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.release_terminal();
            return;
        };
        let held = Arc::clone(self);
        runtime.spawn(async move {
            let _ = tokio::time::timeout(DEFAULT_HANGUP_GRACE, gone).await;
            held.release_terminal();
        });
    }

    /// Lets the pty go: the output pump stops reading it and the writing
    /// side closes, unless a write holds it (it is dropped with the session
    /// then). With every side closed the kernel hangs the terminal up, even
    /// for jobs that ignored SIGHUP.
    fn release_terminal(&self) {
        self.update(|state| state.terminal_released = true);
        if let Ok(mut stdin) = self.stdin.try_lock() {
            stdin.take();
        }
    }

    /// Queues client input that came on attachment `generation` for the
    /// pty. Never waits, so a program that does not read its input holds up
    /// no acknowledgement or END behind it; fails once the client has
    /// queued more than [`MAX_QUEUED_INPUT`].
    pub fn queue_input(&self, generation: u64, bytes: Vec<u8>) -> Result<(), InputFlood> {
        let queued = self.queued_input.fetch_add(bytes.len(), Ordering::SeqCst) + bytes.len();
        if queued > MAX_QUEUED_INPUT {
            return Err(InputFlood);
        }
        let _ = self.input.send(InputOp::Data(generation, bytes));
        Ok(())
    }

    /// The client's input ended (on attachment `generation`).
    pub fn close_input(&self, generation: u64) {
        let _ = self.input.send(InputOp::Eof(generation));
    }

    /// Waits until no write of an earlier attachment's input is under way,
    /// so that `input_received` is final for them: a new attachment reads
    /// it to tell the client what to send again.
    pub async fn input_idle(&self) {
        drop(self.stdin.lock().await);
    }

    /// Applies a window change.
    pub fn resize(&self, size: WindowSize) -> std::io::Result<()> {
        self.update(|state| state.size = size);
        match self.lock_process().as_ref() {
            Some(process) => process.resize(size.cols, size.rows, size.pix_width, size.pix_height),
            None => Ok(()),
        }
    }

    /// Sends a signal to the program's process group.
    pub fn signal(&self, name: &str) -> Result<(), SignalError> {
        match self.lock_process().as_ref() {
            Some(process) => process.signal(name),
            None => Err(SignalError::Exited),
        }
    }

    /// Makes the program redraw its screen, after output the client never
    /// saw was dropped: two window changes (the kernel only signals a real
    /// change), ending at the size the client has.
    pub async fn redraw(&self) {
        let size = self.state().size;
        let mut smaller = size;
        smaller.rows = size.rows.saturating_sub(1).max(1);
        if smaller == size {
            smaller.cols = size.cols.saturating_add(1);
        }
        let _ = self.resize(smaller);
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The client's own window change may have come meanwhile: only
        // undo ours.
        if self.state().size == smaller {
            let _ = self.resize(size);
        }
    }
}

/// Copies the pty's output into the replay buffer until it ends, then
/// waits for the program's exit status.
async fn pump_output(
    held: Arc<Held>,
    stdout: Option<SessionOutput>,
    wait: impl std::future::Future<Output = std::io::Result<ExitStatus>>,
) {
    if let Some(mut stdout) = stdout {
        // Small while the session is interactive (a held shell is mostly
        // idle), the frame's maximum once a read fills it.
        let mut chunk = vec![0u8; IDLE_READ];
        loop {
            // An attached client that has not acknowledged a buffer's worth
            // is not ahead of us: wait for it (the program blocks on its
            // terminal, as behind a slow link), rather than drop output it
            // has not seen while its offsets run on.
            let changed = held.changed();
            let (released, wait_for_acks) = {
                let state = held.state();
                (
                    state.terminal_released,
                    state.attachment != 0 && state.output.is_full(),
                )
            };
            if released {
                break;
            }
            if wait_for_acks {
                changed.await;
                continue;
            }
            let read = tokio::select! {
                read = stdout.read(&mut chunk) => read,
                () = changed => continue,
            };
            match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if n == chunk.len() && chunk.len() < MAX_DATA {
                        chunk.resize(MAX_DATA, 0);
                    }
                    let bytes = chunk.get(..n).unwrap_or_default().to_vec();
                    let dropped = held.update(|state| {
                        let may_drop = state.attachment == 0;
                        state.output.push(bytes, may_drop)
                    });
                    if dropped > 0 {
                        tracing::debug!(
                            "{}: {dropped} bytes of unacknowledged output dropped",
                            held.label
                        );
                    }
                }
            }
        }
    }
    let status = wait.await;
    held.update(|state| {
        state.output_ended = true;
        // A lost track of the process ends the session like a hang-up.
        state.exit = Some(status.unwrap_or(ExitStatus::Signal {
            name: "HUP".to_string(),
            core_dumped: false,
        }));
    });
}

/// Writes queued client input to the pty, counting what the pty took.
/// Input of an attachment that is no longer the current one is not
/// written: its client resends what was not counted on the new one.
async fn write_input(held: Arc<Held>, mut ops: mpsc::UnboundedReceiver<InputOp>) {
    while let Some(op) = ops.recv().await {
        let mut stdin = held.stdin.lock().await;
        let current = |generation: u64| {
            let state = held.state();
            state.attachment == generation && !state.ended
        };
        match op {
            InputOp::Data(generation, bytes) => {
                held.queued_input.fetch_sub(bytes.len(), Ordering::SeqCst);
                let mut at = 0;
                while at < bytes.len() && current(generation) {
                    let Some(pty) = stdin.as_mut() else {
                        break;
                    };
                    let rest = bytes.get(at..).unwrap_or_default();
                    // A new attachment (or the end) interrupts a write the
                    // program is slow to take; a pty write is all or nothing,
                    // so nothing is half counted.
                    let changed = held.changed();
                    let written = tokio::select! {
                        written = pty.write(rest) => written,
                        () = changed => continue,
                    };
                    match written {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            at += n;
                            held.update(|state| state.input_received += n as u64);
                        }
                    }
                }
            }
            InputOp::Eof(generation) => {
                if current(generation) {
                    if let Some(mut pty) = stdin.take() {
                        let _ = pty.shutdown().await;
                    }
                }
            }
        }
    }
}

/// Ends the session once nobody has been attached for the hold time.
async fn keep(held: Arc<Held>) {
    loop {
        let changed = held.changed();
        let (confirmed, deadline) = {
            let state = held.state();
            if state.ended {
                return;
            }
            let hold = held.hold_when(state.confirmed);
            (state.confirmed, state.detached_at.map(|since| since + hold))
        };
        match deadline {
            Some(deadline) if deadline <= Instant::now() => {
                let why = match confirmed {
                    true => format!(
                        "nobody reattached within ClientReattachTimeout ({} s)",
                        held.hold.as_secs()
                    ),
                    false => format!(
                        "its client never confirmed it, and nobody reattached within {} s",
                        held.hold_when(false).as_secs()
                    ),
                };
                held.end(&why);
                return;
            }
            Some(deadline) => {
                tokio::select! {
                    () = changed => {}
                    () = tokio::time::sleep_until(deadline) => {}
                }
            }
            None => changed.await,
        }
    }
}
