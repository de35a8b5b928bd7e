//! A real OpenSSH agent for the agent-forwarding tests, and a test agent
//! holding FIDO security keys ([`SkAgent`]), which OpenSSH's agent cannot
//! do without a token.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{run_with_input, show, wait_until, Lab};

/// A real `ssh-agent -D` on a socket in the lab, holding the lab's user
/// key, killed on drop.
pub struct Agent {
    child: Child,
    pub socket: PathBuf,
}

impl Agent {
    /// Starts the agent and loads the lab's user key into it.
    pub fn start(lab: &Lab) -> Agent {
        let agent = Agent::empty(lab, "agent.sock");
        agent.add(lab, "user");
        agent
    }

    /// Starts an agent holding no key, on the lab socket `name`.
    pub fn empty(lab: &Lab, name: &str) -> Agent {
        let socket = lab.path(name);
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent must be installed (openssh-client)");
        let agent = Agent { child, socket };
        assert!(
            wait_until(Duration::from_secs(10), || agent.socket.exists()),
            "ssh-agent did not create {}",
            agent.socket.display()
        );
        agent
    }

    /// `ssh-add` of the lab key `key` (ssh-add adds `key-cert.pub` too
    /// when it is there); returns what ssh-add said on stderr.
    pub fn add(&self, lab: &Lab, key: &str) -> String {
        let out = run_with_input(
            Command::new("ssh-add")
                .arg(lab.path(key))
                .env("SSH_AUTH_SOCK", &self.socket),
            b"",
        );
        assert!(out.status.success(), "ssh-add {key}: {}", show(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which FIDO security key the [`SkAgent`] pretends to hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkKind {
    /// `sk-ssh-ed25519@openssh.com`
    Ed25519,
    /// `sk-ecdsa-sha2-nistp256@openssh.com`
    EcdsaP256,
}

/// The application string of OpenSSH's security keys.
pub const SK_APPLICATION: &str = "ssh:";
/// The user-presence flag of a security key signature (PROTOCOL.u2f).
pub const SK_USER_PRESENCE: u8 = 0x01;
/// The user-verification flag of a security key signature.
pub const SK_USER_VERIFICATION: u8 = 0x04;

/// Agent protocol message numbers (draft-miller-ssh-agent).
const AGENT_FAILURE: u8 = 5;
const AGENT_REQUEST_IDENTITIES: u8 = 11;
const AGENT_IDENTITIES_ANSWER: u8 = 12;
const AGENT_SIGN_REQUEST: u8 = 13;
const AGENT_SIGN_RESPONSE: u8 = 14;

/// One security key: an ordinary key pair standing in for the
/// authenticator's, presented in its `sk-*` form.
struct SkKey {
    /// The plain key that makes the authenticator's signatures.
    signer: sshq_core::ssh_key::PrivateKey,
    /// The `sk-*` public key blob clients and servers see.
    blob: Vec<u8>,
    algorithm: &'static str,
    comment: String,
}

/// A test ssh-agent holding FIDO security keys, as an agent does that
/// talks to a token: it signs the way an authenticator signs
/// (PROTOCOL.u2f: ECDSA/Ed25519 over SHA-256(application) || flags ||
/// counter || SHA-256(data)) with the flags the test sets (touch, user
/// verification), so that servers can be shown signatures with and
/// without them. Only REQUEST_IDENTITIES and SIGN_REQUEST are answered;
/// every other request gets FAILURE. Stopped on drop.
pub struct SkAgent {
    pub socket: PathBuf,
    flags: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SkAgent {
    /// Makes the security key `name` in the lab: the lab key `name` (a
    /// plain key made with ssh-keygen) and `name-sk.pub`, its `sk-*`
    /// public key in OpenSSH format (application "ssh:"), which
    /// authorized_keys, `ssh-keygen -l` and `ssh-keygen -s` read. Returns
    /// the public key line.
    pub fn make_key(lab: &Lab, name: &str, kind: SkKind) -> String {
        use sshq_core::ssh_key::public::{EcdsaPublicKey, KeyData, SkEcdsaSha2NistP256, SkEd25519};
        match kind {
            SkKind::Ed25519 => lab.keygen(name, "ed25519", name),
            SkKind::EcdsaP256 => lab.keygen(name, "ecdsa", name),
        }
        let plain = lab.private_key(name);
        let sk = match plain.public_key().key_data() {
            KeyData::Ed25519(public) => KeyData::SkEd25519(SkEd25519::new(*public, SK_APPLICATION)),
            KeyData::Ecdsa(EcdsaPublicKey::NistP256(point)) => {
                KeyData::SkEcdsaSha2NistP256(SkEcdsaSha2NistP256::new(*point, SK_APPLICATION))
            }
            other => panic!("no security key form for {:?}", other.algorithm()),
        };
        let public = sshq_core::ssh_key::PublicKey::new(sk, format!("{name}-sk"));
        let line = public.to_openssh().expect("encode the sk public key");
        std::fs::write(lab.path(&format!("{name}-sk.pub")), format!("{line}\n"))
            .expect("write the sk public key");
        line
    }

    /// Starts the agent on the lab socket `socket_name`, holding the
    /// security keys `names` (made by [`SkAgent::make_key`]); it signs
    /// with the user-presence flag until told otherwise.
    pub fn start(lab: &Lab, socket_name: &str, names: &[&str]) -> SkAgent {
        let keys: Vec<SkKey> = names
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(lab.path(&format!("{name}-sk.pub")))
                    .expect("read the sk public key");
                let public = sshq_core::ssh_key::PublicKey::from_openssh(text.trim())
                    .expect("parse the sk public key");
                let algorithm = match public.algorithm() {
                    sshq_core::ssh_key::Algorithm::SkEd25519 => "sk-ssh-ed25519@openssh.com",
                    sshq_core::ssh_key::Algorithm::SkEcdsaSha2NistP256 => {
                        "sk-ecdsa-sha2-nistp256@openssh.com"
                    }
                    other => panic!("{name}-sk.pub is not a security key: {other:?}"),
                };
                SkKey {
                    signer: lab.private_key(name),
                    blob: public.to_bytes().expect("sk public key blob"),
                    algorithm,
                    comment: format!("{name}-sk"),
                }
            })
            .collect();
        let socket = lab.path(socket_name);
        let listener = UnixListener::bind(&socket).expect("bind the test agent's socket");
        let flags = Arc::new(AtomicU8::new(SK_USER_PRESENCE));
        let stop = Arc::new(AtomicBool::new(false));
        let keys = Arc::new(keys);
        let thread = {
            let (flags, stop) = (flags.clone(), stop.clone());
            std::thread::spawn(move || {
                let counter = Arc::new(AtomicU32::new(0));
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (keys, flags, counter) = (keys.clone(), flags.clone(), counter.clone());
                    std::thread::spawn(move || serve_agent(stream, &keys, &flags, &counter));
                }
            })
        };
        SkAgent {
            socket,
            flags,
            stop,
            thread: Some(thread),
        }
    }

    /// The flags the next signatures carry (e.g. [`SK_USER_PRESENCE`] |
    /// [`SK_USER_VERIFICATION`], or 0 for a key that was not touched).
    pub fn set_flags(&self, flags: u8) {
        self.flags.store(flags, Ordering::SeqCst);
    }
}

impl Drop for SkAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the stop.
        let _ = UnixStream::connect(&self.socket);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Answers one client's requests until it hangs up.
fn serve_agent(mut stream: UnixStream, keys: &[SkKey], flags: &AtomicU8, counter: &AtomicU32) {
    loop {
        let mut length = [0u8; 4];
        if stream.read_exact(&mut length).is_err() {
            return;
        }
        let length = u32::from_be_bytes(length) as usize;
        if length == 0 || length > 256 * 1024 {
            return;
        }
        let mut message = vec![0u8; length];
        if stream.read_exact(&mut message).is_err() {
            return;
        }
        let reply = match message[0] {
            AGENT_REQUEST_IDENTITIES => {
                let mut reply = vec![AGENT_IDENTITIES_ANSWER];
                reply.extend_from_slice(&(keys.len() as u32).to_be_bytes());
                for key in keys {
                    put_string(&mut reply, &key.blob);
                    put_string(&mut reply, key.comment.as_bytes());
                }
                reply
            }
            AGENT_SIGN_REQUEST => sign_reply(&message[1..], keys, flags, counter)
                .unwrap_or_else(|| vec![AGENT_FAILURE]),
            _ => vec![AGENT_FAILURE],
        };
        let mut framed = (reply.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).is_err() {
            return;
        }
    }
}

/// SIGN_RESPONSE for a SIGN_REQUEST (string key blob, string data, uint32
/// flags), signed as an authenticator signs; None for a key not held.
fn sign_reply(
    mut request: &[u8],
    keys: &[SkKey],
    flags: &AtomicU8,
    counter: &AtomicU32,
) -> Option<Vec<u8>> {
    use sha2::{Digest, Sha256};
    let blob = take_string(&mut request)?;
    let data = take_string(&mut request)?;
    let key = keys.iter().find(|key| key.blob == blob)?;
    let flags = flags.load(Ordering::SeqCst);
    let counter = counter.fetch_add(1, Ordering::SeqCst).wrapping_add(1);
    let mut signed = Sha256::digest(SK_APPLICATION.as_bytes()).to_vec();
    signed.push(flags);
    signed.extend_from_slice(&counter.to_be_bytes());
    signed.extend_from_slice(&Sha256::digest(data));
    // The plain key's SSH signature blob: string algorithm, string
    // signature; the signature proper is what the sk blob carries (raw
    // Ed25519, or ECDSA's mpint r, mpint s).
    let plain =
        sshq_core::auth::sign_with_private_key(&key.signer, &signed, None, "test sk").ok()?;
    let mut plain = plain.as_slice();
    take_string(&mut plain)?;
    let signature = take_string(&mut plain)?;
    let mut sk = Vec::new();
    put_string(&mut sk, key.algorithm.as_bytes());
    put_string(&mut sk, signature);
    sk.push(flags);
    sk.extend_from_slice(&counter.to_be_bytes());
    let mut reply = vec![AGENT_SIGN_RESPONSE];
    put_string(&mut reply, &sk);
    Some(reply)
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn take_string<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    let length = u32::from_be_bytes(input.get(..4)?.try_into().ok()?) as usize;
    let bytes = input.get(4..4 + length)?;
    *input = &input[4 + length..];
    Some(bytes)
}
