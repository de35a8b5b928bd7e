//! One held session: the program, its pty, the output the client has not
//! acknowledged, and who is attached. It lives until the program's end has
//! reached a client, the client ends it, or nobody reattached within
//! `ClientReattachTimeout`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sshq_core::channel::WindowSize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::super::context::SessionContext;
use super::super::process::{ExitStatus, SessionOutput, SessionProcess, SessionStdin};
use crate::reattach::replay::ReplayBuffer;
use crate::reattach::wire::{Token, MAX_DATA};

/// The first read size of a held session's pty: a screenful of typing.
const IDLE_READ: usize = 1024;

/// A held session, shared by the registry, its own tasks and the channel
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
    /// The pty's writing side; one attachment writes at a time.
    stdin: tokio::sync::Mutex<Option<SessionStdin>>,
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
    /// The window size last set, to redraw with after lost output.
    pub size: WindowSize,
    /// The forwarded agent's socket, kept while the session is.
    _agent: Option<super::super::agent::AgentSocket>,
}

impl Held {
    /// Holds `process` under `token` and starts pumping its output.
    pub fn start(
        token: Token,
        mut process: SessionProcess,
        size: WindowSize,
        agent: Option<super::super::agent::AgentSocket>,
        ctx: &SessionContext,
    ) -> Arc<Held> {
        let stdout = process.take_stdout();
        let stdin = process.take_stdin();
        let held = Arc::new(Held {
            token,
            user_name: ctx.user.name.clone(),
            uid: ctx.user.uid,
            label: ctx.peer.clone(),
            hold: ctx.reattach.hold.unwrap_or_default(),
            state: Mutex::new(State {
                output: ReplayBuffer::new(ctx.reattach.buffer),
                output_ended: false,
                exit: None,
                input_received: 0,
                attachment: 0,
                next_generation: 1,
                detached_at: Some(Instant::now()),
                ended: false,
                size,
                _agent: agent,
            }),
            changed: Notify::new(),
            stdin: tokio::sync::Mutex::new(stdin),
            process: Mutex::new(None),
        });
        let wait = process.wait();
        *held.lock_process() = Some(process);
        tokio::spawn(pump_output(held.clone(), stdout, wait));
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

    pub fn hold(&self) -> Duration {
        self.hold
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
    pub fn end(&self, why: &str) {
        super::forget(&self.token);
        self.update(|state| state.ended = true);
        let process = self.lock_process().take();
        if process.is_some() {
            tracing::info!("{}: held session ended: {why}", self.label);
        }
        drop(process);
    }

    /// Writes client input to the pty; counts it once written.
    pub async fn write_input(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut stdin = self.stdin.lock().await;
        if let Some(stdin) = stdin.as_mut() {
            stdin.write_all(bytes).await?;
        }
        self.update(|state| state.input_received += bytes.len() as u64);
        Ok(())
    }

    /// The client's input ended.
    pub async fn close_input(&self) {
        if let Some(mut stdin) = self.stdin.lock().await.take() {
            let _ = stdin.shutdown().await;
        }
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
    pub fn signal(&self, name: &str) -> Result<(), String> {
        match self.lock_process().as_ref() {
            Some(process) => process.signal(name).map_err(|e| e.to_string()),
            None => Err("the session has ended".to_string()),
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
        let _ = self.resize(size);
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
            match stdout.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if n == chunk.len() && chunk.len() < MAX_DATA {
                        chunk.resize(MAX_DATA, 0);
                    }
                    let bytes = chunk.get(..n).unwrap_or_default().to_vec();
                    let dropped = held.update(|state| state.output.push(bytes));
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

/// Ends the session once nobody has been attached for the hold time.
async fn keep(held: Arc<Held>) {
    loop {
        let changed = held.changed();
        let deadline = {
            let state = held.state();
            if state.ended {
                return;
            }
            state.detached_at.map(|since| since + held.hold)
        };
        match deadline {
            Some(deadline) if deadline <= Instant::now() => {
                held.end(&format!(
                    "nobody reattached within ClientReattachTimeout ({} s)",
                    held.hold.as_secs()
                ));
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
