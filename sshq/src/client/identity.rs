//! The keys the client offers, found the way ssh finds them: ssh-agent
//! (SSH_AUTH_SOCK), `-i` / IdentityFile, or the default ~/.ssh/id_* files.
//! A passphrase-protected key is only unlocked (asking on the terminal) once
//! the server has said it would accept it, as OpenSSH does.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use sshq_core::auth::{
    sign_with_private_key, BoxFuture, CertifiedKey, FileKey, SignError, UserKey,
};
use sshq_core::ssh_key::{Certificate, HashAlg, PrivateKey, PublicKey};

/// The identity files ssh tries when none is configured, in its order.
pub const DEFAULT_IDENTITY_FILES: &[&str] =
    &["~/.ssh/id_rsa", "~/.ssh/id_ecdsa", "~/.ssh/id_ed25519"];

/// Where keys come from, resolved from options.
pub struct IdentityOptions {
    /// Configured identity files (`-i`, IdentityFile), `~` already expanded.
    pub files: Vec<PathBuf>,
    /// CertificateFile, `~` already expanded: certificates for keys found
    /// in the files or the agent.
    pub certificate_files: Vec<PathBuf>,
    /// IdentitiesOnly: only the configured files, even if the agent has more.
    pub identities_only: bool,
    /// BatchMode: never ask for a passphrase.
    pub batch_mode: bool,
    /// Print warnings about unreadable configured files.
    pub quiet: bool,
}

/// Collects the keys to try, in ssh's order: agent keys first (all of them,
/// or with IdentitiesOnly only those matching a configured file), then the
/// files whose keys the agent does not hold. A key with a certificate (an
/// identity file's `-cert.pub`, or a CertificateFile) is offered with the
/// certificate first, then bare.
pub async fn collect_keys(options: &IdentityOptions) -> Vec<Arc<dyn UserKey>> {
    let keys = collect_plain_keys(options).await;
    let certificates = certificates_for(options);
    let mut offered: Vec<Arc<dyn UserKey>> = Vec::new();
    // A certificate the agent holds too is offered once.
    let already = |offered: &[Arc<dyn UserKey>], certificate: &Certificate| {
        offered.iter().any(|k| k.certificate() == Some(certificate))
    };
    for key in keys {
        if key.certificate().is_none() {
            for (certificate, source) in &certificates {
                if already(&offered, certificate) {
                    continue;
                }
                let certified = CertifiedKey::new(key.clone(), certificate.clone(), source.clone());
                if let Some(certified) = certified {
                    offered.push(Arc::new(certified));
                }
            }
        } else if key.certificate().is_some_and(|c| already(&offered, c)) {
            continue;
        }
        offered.push(key);
    }
    offered
}

/// The certificates that may go with the keys: each identity file's
/// `-cert.pub` (missing ones skipped silently, as ssh does), then the
/// CertificateFiles (a missing or bad one is reported).
fn certificates_for(options: &IdentityOptions) -> Vec<(Certificate, String)> {
    let mut found = Vec::new();
    let identity_files: Vec<PathBuf> = if options.files.is_empty() {
        DEFAULT_IDENTITY_FILES
            .iter()
            .map(|f| super::config::expand_tilde(f))
            .collect()
    } else {
        options.files.clone()
    };
    for file in &identity_files {
        let mut path = file.clone().into_os_string();
        path.push("-cert.pub");
        let path = PathBuf::from(path);
        if let Ok(text) = std::fs::read_to_string(&path) {
            match Certificate::from_openssh(text.trim()) {
                Ok(certificate) => found.push((certificate, path.display().to_string())),
                Err(e) => tracing::debug!("{}: not a certificate: {e}", path.display()),
            }
        }
    }
    for path in &options.certificate_files {
        let read = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| Certificate::from_openssh(text.trim()).map_err(|e| e.to_string()));
        match read {
            Ok(certificate) => found.push((certificate, path.display().to_string())),
            Err(message) if !options.quiet => eprintln!(
                "Warning: Certificate file {} not accessible or invalid: {message}.",
                path.display()
            ),
            Err(_) => {}
        }
    }
    found
}

/// The keys of the agent and the files, without certificates from files.
async fn collect_plain_keys(options: &IdentityOptions) -> Vec<Arc<dyn UserKey>> {
    let mut keys: Vec<Arc<dyn UserKey>> = Vec::new();
    let explicit = !options.files.is_empty();
    let files: Vec<PathBuf> = if explicit {
        options.files.clone()
    } else {
        DEFAULT_IDENTITY_FILES
            .iter()
            .map(|f| super::config::expand_tilde(f))
            .collect()
    };
    let mut file_keys = Vec::new();
    for path in &files {
        match load_key_file(path, options.batch_mode) {
            Ok(Some(key)) => file_keys.push(key),
            Ok(None) => {}
            Err(message) => {
                if explicit && !options.quiet {
                    eprintln!(
                        "Warning: Identity file {} not accessible: {message}.",
                        path.display()
                    );
                }
            }
        }
    }
    let agent_keys = agent_keys().await;
    for agent_key in agent_keys {
        let wanted = !options.identities_only
            || file_keys
                .iter()
                .any(|k| k.public_key().key_data() == agent_key.public_key().key_data());
        if wanted {
            keys.push(Arc::new(agent_key));
        }
    }
    for key in file_keys {
        let in_agent = keys
            .iter()
            .any(|k| k.public_key().key_data() == key.public_key().key_data());
        if !in_agent {
            keys.push(key);
        }
    }
    keys
}

/// Reads one key file. `Ok(None)`: the file is missing (normal for default
/// files) or the user declined to unlock it.
fn load_key_file(path: &Path, batch_mode: bool) -> Result<Option<Arc<dyn UserKey>>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("No such file or directory".to_string())
        }
        Err(e) => return Err(e.to_string()),
    };
    let name = path.display().to_string();
    // OpenSSH's own format keeps the public key in the clear, so an
    // encrypted key can be offered before it is unlocked.
    if let Ok(key) = PrivateKey::from_openssh(&text) {
        if key.is_encrypted() {
            return Ok(Some(Arc::new(LockedKey {
                public: key.public_key().clone(),
                locked: key,
                unlocked: Mutex::new(None),
                name,
                batch_mode,
            })));
        }
        return Ok(Some(Arc::new(FileKey::new(key, name))));
    }
    match russh::keys::decode_secret_key(&text, None) {
        Ok(key) => Ok(Some(Arc::new(FileKey::new(key, name)))),
        Err(russh::keys::Error::KeyIsEncrypted) => {
            // Older PEM formats hide the public key: unlock now.
            if batch_mode {
                return Ok(None);
            }
            for _ in 0..3 {
                let Some(pass) = ask_passphrase(&name) else {
                    return Ok(None);
                };
                if let Ok(key) = russh::keys::decode_secret_key(&text, Some(&pass)) {
                    return Ok(Some(Arc::new(FileKey::new(key, name))));
                }
                eprintln!("Bad passphrase, try again for {name}: ");
            }
            Ok(None)
        }
        Err(e) => Err(format!("invalid format ({e})")),
    }
}

/// Asks for a key's passphrase on the terminal; `None` when the user enters
/// nothing or there is no terminal.
fn ask_passphrase(name: &str) -> Option<String> {
    rpassword::prompt_password(format!("Enter passphrase for key '{name}': "))
        .ok()
        .filter(|p| !p.is_empty())
}

/// An OpenSSH key file protected by a passphrase, unlocked on first use.
struct LockedKey {
    public: PublicKey,
    locked: PrivateKey,
    unlocked: Mutex<Option<PrivateKey>>,
    name: String,
    batch_mode: bool,
}

impl LockedKey {
    fn unlock(&self) -> Result<PrivateKey, SignError> {
        let declined = || SignError::Failed {
            key: self.name.clone(),
            message: "not unlocked".to_string(),
        };
        if let Some(key) = self.unlocked.lock().ok().and_then(|k| k.clone()) {
            return Ok(key);
        }
        if self.batch_mode {
            return Err(declined());
        }
        for _ in 0..3 {
            let pass = ask_passphrase(&self.name).ok_or_else(declined)?;
            if let Ok(key) = self.locked.decrypt(pass.as_bytes()) {
                if let Ok(mut slot) = self.unlocked.lock() {
                    *slot = Some(key.clone());
                }
                return Ok(key);
            }
            eprintln!("Bad passphrase, try again for {}: ", self.name);
        }
        Err(declined())
    }
}

impl UserKey for LockedKey {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign<'a>(
        &'a self,
        data: &'a [u8],
        rsa_hash: Option<HashAlg>,
    ) -> BoxFuture<'a, Result<Vec<u8>, SignError>> {
        Box::pin(async move {
            // The prompt blocks on the terminal: keep it off async threads.
            let key = tokio::task::block_in_place(|| self.unlock())?;
            sign_with_private_key(&key, data, rsa_hash, &self.name)
        })
    }

    fn description(&self) -> String {
        self.name.clone()
    }
}

type SharedAgent = Arc<tokio::sync::Mutex<AgentClient<tokio::net::UnixStream>>>;

/// A key held by ssh-agent, or a certificate the agent holds with its key.
struct AgentKey {
    identity: AgentIdentity,
    public: PublicKey,
    certificate: Option<Certificate>,
    comment: String,
    agent: SharedAgent,
}

impl UserKey for AgentKey {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign<'a>(
        &'a self,
        data: &'a [u8],
        rsa_hash: Option<HashAlg>,
    ) -> BoxFuture<'a, Result<Vec<u8>, SignError>> {
        Box::pin(async move {
            let refused = || SignError::AgentRefused {
                key: self.comment.clone(),
            };
            let mut agent = self.agent.lock().await;
            let signed = agent
                .sign_request(&self.identity, rsa_hash, data.to_vec())
                .await
                .map_err(|_| refused())?;
            // The agent client returns data || string(signature blob).
            let blob = signed
                .get(data.len()..)
                .and_then(|rest| rest.get(4..))
                .ok_or_else(refused)?;
            Ok(blob.to_vec())
        })
    }

    fn description(&self) -> String {
        self.comment.clone()
    }

    fn certificate(&self) -> Option<&Certificate> {
        self.certificate.as_ref()
    }
}

/// The keys in the agent at SSH_AUTH_SOCK; none if there is no agent.
async fn agent_keys() -> Vec<AgentKey> {
    let Ok(mut client) = AgentClient::connect_env().await else {
        return Vec::new();
    };
    let Ok(identities) = client.request_identities().await else {
        return Vec::new();
    };
    let agent = Arc::new(tokio::sync::Mutex::new(client));
    identities
        .into_iter()
        .map(|identity| {
            let (public, certificate, comment) = match &identity {
                AgentIdentity::PublicKey { key, comment } => (key.clone(), None, comment.clone()),
                AgentIdentity::Certificate {
                    certificate,
                    comment,
                } => (
                    PublicKey::from(certificate.public_key().clone()),
                    Some(certificate.clone()),
                    comment.clone(),
                ),
            };
            AgentKey {
                public,
                certificate,
                comment,
                identity,
                agent: agent.clone(),
            }
        })
        .collect()
}
