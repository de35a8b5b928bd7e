//! What the authentication tests share: keys made by ssh-keygen, a
//! scripted AuthPolicy (passwords, keyboard-interactive rounds,
//! AuthenticationMethods), an sshq-tcp server on a loopback port that
//! runs `exec` requests as "exit 0", and a prompter that answers from a
//! script.

#![allow(dead_code)] // each test binary uses its own part of this

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sshq_core::auth::{AuthPolicy, BoxFuture, ServerKeyVerifier};
use sshq_core::auth_methods::{
    AuthMethod, AuthMethods, InfoRequest, KbdInteractive, KbdStep, Prompt, Prompter,
};
use sshq_core::channel::ChannelRequest;
use sshq_core::ssh_key::{PrivateKey, PublicKey};
use sshq_core::transport::{
    Channel, ChannelControl, Connection, ConnectionInfo, Incoming, RequestStream,
};
use sshq_core::zeroize::Zeroizing;
use sshq_tcp::{KexList, ServerParams};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// The user the test policies let in.
pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse";

/// A directory under the system's temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "sshq-tcp-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An Ed25519 key made by ssh-keygen in `dir` (file `name`, no passphrase).
pub fn keygen(dir: &TempDir, name: &str) -> PrivateKey {
    let path = dir.path(name);
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .expect("run ssh-keygen");
    assert!(status.success(), "ssh-keygen failed for {name}");
    PrivateKey::read_openssh_file(&path).expect("read the new key")
}

/// One round of a scripted keyboard-interactive conversation: what the
/// server asks, and the answers it wants.
#[derive(Clone)]
pub struct Round {
    pub request: InfoRequest,
    pub expect: Vec<&'static str>,
}

impl Round {
    pub fn new(instruction: &str, prompts: &[(&str, bool)], expect: &[&'static str]) -> Round {
        Round {
            request: InfoRequest {
                name: String::new(),
                instruction: instruction.to_string(),
                prompts: prompts
                    .iter()
                    .map(|(text, echo)| Prompt {
                        text: text.to_string(),
                        echo: *echo,
                    })
                    .collect(),
            },
            expect: expect.to_vec(),
        }
    }
}

/// A server policy for [`USER`]: the methods, keys, password and
/// conversation it takes, and what it saw.
#[derive(Clone)]
pub struct TestPolicy {
    pub methods: AuthMethods,
    pub keys: Vec<PublicKey>,
    pub rounds: Vec<Round>,
    pub account_allowed: bool,
    pub max_auth_tries: u32,
    /// How many passwords the policy was asked to check.
    pub passwords_checked: Arc<AtomicUsize>,
}

impl TestPolicy {
    pub fn new(enabled: &[AuthMethod], required: &[&[AuthMethod]]) -> TestPolicy {
        TestPolicy {
            methods: AuthMethods {
                enabled: enabled.to_vec(),
                required: required.iter().map(|list| list.to_vec()).collect(),
            },
            keys: Vec::new(),
            rounds: Vec::new(),
            account_allowed: true,
            max_auth_tries: 6,
            passwords_checked: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl AuthPolicy for TestPolicy {
    fn publickey_allowed<'a>(&'a self, user: &'a str, key: &'a PublicKey) -> BoxFuture<'a, bool> {
        let known = self.keys.iter().any(|k| k.key_data() == key.key_data());
        Box::pin(async move { user == USER && known })
    }

    fn max_auth_tries(&self) -> u32 {
        self.max_auth_tries
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
        self.passwords_checked.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { user == USER && password == PASSWORD })
    }

    fn keyboard_interactive<'a>(
        &'a self,
        user: &'a str,
        _peer: Option<SocketAddr>,
    ) -> BoxFuture<'a, Option<Box<dyn KbdInteractive>>> {
        let script = Script {
            rounds: self.rounds.clone(),
            next: 0,
            right_user: user == USER,
        };
        Box::pin(async move { Some(Box::new(script) as Box<dyn KbdInteractive>) })
    }

    fn account_allowed<'a>(
        &'a self,
        _user: &'a str,
        _peer: Option<SocketAddr>,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move { self.account_allowed })
    }
}

/// A keyboard-interactive conversation that asks its rounds in order and
/// accepts only the expected answers.
struct Script {
    rounds: Vec<Round>,
    next: usize,
    right_user: bool,
}

impl KbdInteractive for Script {
    fn step(&mut self, answers: Vec<Zeroizing<String>>) -> BoxFuture<'_, KbdStep> {
        let step = if self.next > 0 {
            let expected = self
                .rounds
                .get(self.next - 1)
                .map(|round| round.expect.clone())
                .unwrap_or_default();
            let given: Vec<&str> = answers.iter().map(|a| a.as_str()).collect();
            if given != expected {
                Some(KbdStep::Refused)
            } else {
                None
            }
        } else {
            None
        };
        let step = step.unwrap_or_else(|| match self.rounds.get(self.next) {
            Some(round) => {
                self.next += 1;
                KbdStep::Ask(round.request.clone())
            }
            None if self.right_user => KbdStep::Accepted,
            None => KbdStep::Refused,
        });
        Box::pin(async move { step })
    }
}

/// An sshq-tcp server on a loopback port. Each connection that logs in is
/// reported with its info and served: `exec` runs as "exit 0".
pub struct TestServer {
    pub addr: SocketAddr,
    logins: mpsc::UnboundedReceiver<Result<ConnectionInfo, String>>,
}

impl TestServer {
    pub async fn start(policy: TestPolicy, dir: &TempDir) -> TestServer {
        let host_key = keygen(dir, "host_key");
        let params = Arc::new(ServerParams {
            host_keys: vec![host_key],
            host_certificates: Vec::new(),
            policy: Arc::new(policy),
            login_grace_time: Some(Duration::from_secs(60)),
            allow_agent_forwarding: false,
            client_alive_interval: None,
            client_alive_count_max: 3,
            kex: KexList::server_default(),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("listener address");
        let (tx, logins) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let params = params.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let local = stream.local_addr().ok();
                    match sshq_tcp::accept(stream, local, Some(peer), params).await {
                        Ok(conn) => {
                            let _ = tx.send(Ok(conn.info()));
                            serve(conn).await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                        }
                    }
                });
            }
        });
        TestServer { addr, logins }
    }

    /// How the next connection's login ended on the server.
    pub async fn next_login(&mut self) -> Result<ConnectionInfo, String> {
        tokio::time::timeout(Duration::from_secs(30), self.logins.recv())
            .await
            .expect("the server ended a login within 30 s")
            .expect("the server is running")
    }
}

/// Runs each session's `exec` as a command that exits 0 at once.
async fn serve(conn: sshq_tcp::TcpServerConnection) {
    while let Some(incoming) = conn.accept().await {
        let Incoming::Channel(pending) = incoming else {
            continue;
        };
        let parts = pending.accept().split();
        tokio::spawn(async move {
            let mut requests = parts.requests;
            let mut data_out = parts.data_out;
            while let Some(request) = requests.next().await {
                let exec = matches!(request.request, ChannelRequest::Exec(_));
                request.reply.send(exec);
                if exec {
                    let _ = parts
                        .control
                        .request(ChannelRequest::ExitStatus(0), false)
                        .await;
                    let _ = data_out.shutdown().await;
                    parts.control.close().await;
                    break;
                }
            }
        });
    }
}

/// Trusts any host key: these tests are about user authentication.
pub struct AnyHostKey;

impl ServerKeyVerifier for AnyHostKey {
    fn verify(&self, _key: &PublicKey) -> bool {
        true
    }
}

/// A prompter that answers from a script and records what it was asked.
#[derive(Default)]
pub struct ScriptedPrompter {
    pub passwords: Mutex<VecDeque<String>>,
    /// Answers to keyboard-interactive prompts, by prompt text.
    pub answers: HashMap<String, String>,
    /// What was asked, in order: "password: PROMPT" or "round: INSTRUCTION
    /// (N prompts)".
    pub asked: Mutex<Vec<String>>,
    pub refusals_shown: AtomicUsize,
}

impl ScriptedPrompter {
    pub fn with_passwords(passwords: &[&str]) -> ScriptedPrompter {
        ScriptedPrompter {
            passwords: Mutex::new(passwords.iter().map(|p| p.to_string()).collect()),
            ..Default::default()
        }
    }

    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().map(|a| a.clone()).unwrap_or_default()
    }

    fn record(&self, what: String) {
        if let Ok(mut asked) = self.asked.lock() {
            asked.push(what);
        }
    }
}

impl Prompter for ScriptedPrompter {
    fn password<'a>(&'a self, prompt: &'a str) -> BoxFuture<'a, Option<Zeroizing<String>>> {
        self.record(format!("password: {prompt}"));
        let answer = self
            .passwords
            .lock()
            .ok()
            .and_then(|mut queue| queue.pop_front())
            .map(Zeroizing::new);
        Box::pin(async move { answer })
    }

    fn keyboard_interactive<'a>(
        &'a self,
        request: &'a InfoRequest,
    ) -> BoxFuture<'a, Option<Vec<Zeroizing<String>>>> {
        self.record(format!(
            "round: {} ({} prompts)",
            request.instruction,
            request.prompts.len()
        ));
        let answers = request
            .prompts
            .iter()
            .map(|prompt| self.answers.get(&prompt.text).cloned().map(Zeroizing::new))
            .collect();
        Box::pin(async move { answers })
    }

    fn password_refused(&self) {
        self.refusals_shown.fetch_add(1, Ordering::SeqCst);
    }
}

/// Writes an SSH_ASKPASS program that answers prompts containing a key
/// of `answers` with its value, and fails on any other prompt. Each
/// prompt is appended to `askpass.log` in `dir` (see [`askpass_prompts`]).
pub fn askpass(dir: &TempDir, answers: &[(&str, &str)]) -> PathBuf {
    let log = dir.path("askpass.log");
    let mut script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\ncase \"$1\" in\n",
        log.display()
    );
    for (contains, answer) in answers {
        script.push_str(&format!("  *'{contains}'*) printf '%s\\n' '{answer}' ;;\n"));
    }
    script.push_str("  *) exit 1 ;;\nesac\n");
    let path = dir.path("askpass");
    std::fs::write(&path, script).expect("write the askpass script");
    set_executable(&path);
    path
}

fn set_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .expect("make the askpass script executable");
}

/// The prompts the askpass program of `dir` was run with, in order.
pub fn askpass_prompts(dir: &TempDir) -> Vec<String> {
    std::fs::read_to_string(dir.path("askpass.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}
