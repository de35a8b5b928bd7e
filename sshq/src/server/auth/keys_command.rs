//! AuthorizedKeysCommand and AuthorizedPrincipalsCommand, run as sshd runs
//! them (auth2-pubkey.c, misc.c `subprocess`): the command line is split
//! into arguments (sshd's quoting), its `%` tokens expanded, the program
//! must be an absolute path owned by root and writable by no one else
//! (checked with the rights of the user it runs as), and it runs as
//! AuthorizedKeysCommandUser / AuthorizedPrincipalsCommandUser with
//! /dev/null as stdin and sshd's small environment. Its stdout is read as
//! authorized_keys (or principals) lines; a command that exits non-zero or
//! on a signal lets nothing in.
//!
//! What sshqd adds: the output is capped at [`MAX_KEYS_FILE`] and the
//! command must finish within [`COMMAND_LIMIT`] (it is killed, with its
//! process group, otherwise), and its stderr goes to the log instead of
//! being lost. Nothing here blocks an async worker: the user lookup, the
//! checks on the program and the fork/exec run off the workers.
//!
//! `%C` and `%D` (the connection's endpoints, its routing domain) are
//! refused when the configuration is read: sshqd decides a login before
//! it knows the connection's local address.

use std::io;
use std::net::IpAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use sshq_core::log_escape;
use sshq_core::ssh_key::{Certificate, HashAlg, PublicKey};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::keys_file::{self, Owner, MAX_KEYS_FILE};
use super::KeyOptions;
use crate::fs_identity::{as_identity_within, Identity};
use crate::server::blocking;
use crate::server::process::{child, SessionUser};

/// How long a command may run before it is killed and lets nothing in.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(30);

/// How much of a command's stderr is logged.
const MAX_STDERR: u64 = 16 * 1024;

/// Which of the two commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    Keys,
    Principals,
}

impl CommandKind {
    /// sshd's name for the command, used in its log lines.
    pub fn keyword(self) -> &'static str {
        match self {
            CommandKind::Keys => "AuthorizedKeysCommand",
            CommandKind::Principals => "AuthorizedPrincipalsCommand",
        }
    }

    /// The tokens sshd expands in its arguments (sshd_config(5) TOKENS),
    /// `C` and `D` aside (see the module's comment).
    fn tokens(self) -> &'static str {
        match self {
            CommandKind::Keys => "fhktUu",
            CommandKind::Principals => "FfhiKksTtUu",
        }
    }
}

/// What is wrong with a command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandLineError {
    #[error("{keyword} \"{command}\" contains invalid quotes")]
    Quotes {
        keyword: &'static str,
        command: String,
    },
    #[error("{keyword}: unknown token %{token} in \"{command}\"")]
    UnknownToken {
        keyword: &'static str,
        token: String,
        command: String,
    },
    #[error(
        "{keyword}: token %{token} is not supported by sshqd: it decides logins before it \
         knows the connection's local address and routing domain"
    )]
    Unsupported { keyword: &'static str, token: char },
}

/// Checks a command line as it is read: quotes that close, and only the
/// tokens its kind takes.
pub fn check_command_line(kind: CommandKind, command: &str) -> Result<(), CommandLineError> {
    let argv = argv_split(command).ok_or_else(|| CommandLineError::Quotes {
        keyword: kind.keyword(),
        command: command.to_string(),
    })?;
    let placeholders: Vec<(char, String)> =
        kind.tokens().chars().map(|c| (c, String::new())).collect();
    for arg in argv.iter().skip(1) {
        if let Err(token) = expand(arg, &placeholders) {
            if let Some(token @ ('C' | 'D')) = token {
                return Err(CommandLineError::Unsupported {
                    keyword: kind.keyword(),
                    token,
                });
            }
            return Err(CommandLineError::UnknownToken {
                keyword: kind.keyword(),
                token: token.map(String::from).unwrap_or_default(),
                command: command.to_string(),
            });
        }
    }
    Ok(())
}

/// sshd's argv_split: words separated by blanks, `'` and `"` quoting,
/// `\` escaping a quote, a backslash or (outside quotes) a blank. `None`
/// when a quote is left open.
pub fn argv_split(text: &str) -> Option<Vec<String>> {
    let mut argv = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        if chars.peek().is_none() {
            return Some(argv);
        }
        let mut arg = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (_, '\\') => {
                    let escaped = chars.next_if(|n| {
                        matches!(n, '\'' | '"' | '\\') || (quote.is_none() && *n == ' ')
                    });
                    arg.push(escaped.unwrap_or('\\'));
                }
                (None, ' ' | '\t') => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (_, c) => arg.push(c),
            }
        }
        if quote.is_some() {
            return None;
        }
        argv.push(arg);
    }
}

/// sshd's percent_expand: `%%` is `%`, `%x` the value of token `x`; any
/// other token (or a `%` at the end) is the error.
fn expand(template: &str, values: &[(char, String)]) -> Result<String, Option<char>> {
    let mut out = String::new();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(token) => match values.iter().find(|(name, _)| *name == token) {
                Some((_, value)) => out.push_str(value),
                None => return Err(Some(token)),
            },
            None => return Err(None),
        }
    }
    Ok(out)
}

/// A configured command and the user it runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    pub kind: CommandKind,
    /// The command line as configured.
    pub command: String,
    /// AuthorizedKeysCommandUser / AuthorizedPrincipalsCommandUser (`%u`
    /// allowed); `None` when a `Match` block set a command without it.
    pub run_as: Option<String>,
}

/// The commands a login may consult, and UseDNS for `Match Host`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginLookups {
    pub keys: Option<CommandSpec>,
    pub principals: Option<CommandSpec>,
    pub use_dns: bool,
}

impl LoginLookups {
    /// The lookups `sources` configure.
    pub fn from_config(sources: &crate::server::config::LoginSources) -> LoginLookups {
        let spec = |kind, command: &Option<String>, user: &Option<String>| {
            command.as_ref().map(|command| CommandSpec {
                kind,
                command: command.clone(),
                run_as: user.clone(),
            })
        };
        LoginLookups {
            keys: spec(
                CommandKind::Keys,
                &sources.authorized_keys_command,
                &sources.authorized_keys_command_user,
            ),
            principals: spec(
                CommandKind::Principals,
                &sources.authorized_principals_command,
                &sources.authorized_principals_command_user,
            ),
            use_dns: sources.use_dns,
        }
    }
}

/// The token values for a plain key.
pub fn key_tokens(owner: &Owner, key: &PublicKey) -> Vec<(char, String)> {
    let mut values = user_tokens(owner);
    values.push(('f', key.fingerprint(HashAlg::Sha256).to_string()));
    values.push(('k', base64_of(key.to_openssh().ok())));
    values.push(('t', key.algorithm().as_str().to_string()));
    values
}

/// The token values for a certificate (`%f` is its key's fingerprint, as
/// in sshd; `%k` and `%t` are the certificate's own).
pub fn certificate_tokens(owner: &Owner, cert: &Certificate) -> Vec<(char, String)> {
    let mut values = user_tokens(owner);
    let key = PublicKey::from(cert.public_key().clone());
    let ca = PublicKey::from(cert.signature_key().clone());
    values.push(('f', key.fingerprint(HashAlg::Sha256).to_string()));
    values.push(('k', base64_of(cert.to_openssh().ok())));
    values.push(('t', cert.algorithm().to_certificate_type().to_string()));
    values.push(('F', ca.fingerprint(HashAlg::Sha256).to_string()));
    values.push(('K', base64_of(ca.to_openssh().ok())));
    values.push(('T', ca.algorithm().as_str().to_string()));
    values.push(('i', cert.key_id().to_string()));
    values.push(('s', cert.serial().to_string()));
    values
}

fn user_tokens(owner: &Owner) -> Vec<(char, String)> {
    vec![
        ('u', owner.name.clone()),
        ('U', owner.uid.to_string()),
        ('h', owner.home.to_string_lossy().into_owned()),
    ]
}

/// The base64 word of an OpenSSH public key or certificate line.
fn base64_of(line: Option<String>) -> String {
    line.and_then(|line| line.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_default()
}

impl CommandSpec {
    /// Runs the command for `owner` with the token `values`; its stdout
    /// when it exits 0, `None` otherwise (every refusal logged).
    pub async fn output(&self, owner: &Owner, values: &[(char, String)]) -> Option<String> {
        self.output_within(owner, values, COMMAND_LIMIT).await
    }

    async fn output_within(
        &self,
        owner: &Owner,
        values: &[(char, String)],
        limit: Duration,
    ) -> Option<String> {
        let tag = self.kind.keyword();
        let Some(run_as) = &self.run_as else {
            tracing::error!("No user for {tag} specified, skipping");
            return None;
        };
        let run_as = expand(run_as, &[('u', owner.name.clone())]).unwrap_or(run_as.clone());
        let Some(mut argv) = argv_split(&self.command) else {
            tracing::error!("{tag} \"{}\" contains invalid quotes", self.command);
            return None;
        };
        if argv.is_empty() {
            tracing::error!("{tag} \"{}\" yielded no arguments", self.command);
            return None;
        }
        for arg in argv.iter_mut().skip(1) {
            match expand(arg, values) {
                Ok(expanded) => *arg = expanded,
                Err(_) => {
                    tracing::error!("{tag} \"{}\": a token cannot be expanded", self.command);
                    return None;
                }
            }
        }
        // Without arguments, the user name (sshd's older interface).
        if self.kind == CommandKind::Keys && argv.len() == 1 {
            argv.push(owner.name.clone());
        }
        let shown = log_escape::peer_text(&argv.join(" "));
        let user = runner(tag, &run_as).await?;
        if !program_safe(tag, &argv[0], &user).await {
            return None;
        }
        run(tag, &shown, argv, user, limit).await
    }
}

impl super::KeyPolicy {
    /// The options of the AuthorizedKeysCommand line that lets `key` in
    /// from `peer` (tried after the files, as in sshd).
    pub(super) async fn command_key_grant(
        &self,
        owner: &Owner,
        key: &PublicKey,
        peer: Option<IpAddr>,
    ) -> Option<KeyOptions> {
        let spec = self.lookups.keys.as_ref()?;
        let text = spec.output(owner, &key_tokens(owner, key)).await?;
        super::text_grant(&text, Path::new(&spec.command), key, peer)
    }

    /// The options of an AuthorizedKeysCommand `cert-authority` line that
    /// trusts the certificate's CA for `user`.
    pub(super) async fn command_ca_grant(
        &self,
        owner: &Owner,
        cert: &Certificate,
        user: &str,
        peer: Option<IpAddr>,
    ) -> Option<KeyOptions> {
        let spec = self.lookups.keys.as_ref()?;
        let text = spec.output(owner, &certificate_tokens(owner, cert)).await?;
        let source = Path::new(&spec.command);
        super::certificate::authorized_keys_ca_grant(&text, source, cert, user, peer)
    }

    /// The options of the AuthorizedPrincipalsCommand line that names one
    /// of the certificate's principals (the command's output read as an
    /// AuthorizedPrincipalsFile).
    pub(super) async fn command_principals_grant(
        &self,
        owner: &Owner,
        cert: &Certificate,
        peer: Option<IpAddr>,
    ) -> Option<KeyOptions> {
        let spec = self.lookups.principals.as_ref()?;
        let text = spec.output(owner, &certificate_tokens(owner, cert)).await?;
        super::certificate::principals_grant(&text, Path::new("(command)"), cert, peer)
    }
}

/// The account a command runs as, with its groups, looked up off the
/// async workers.
struct Runner {
    user: SessionUser,
    /// `None` when sshqd is not root (it then runs the command as itself).
    identity: Option<child::Identity>,
}

async fn runner(tag: &'static str, name: &str) -> Option<Runner> {
    let lookup_name = name.to_string();
    let looked_up = blocking::off_worker("command user lookup", super::LOOKUP_LIMIT, move || {
        let user = SessionUser::lookup(&lookup_name).ok().flatten()?;
        let identity = child::Identity::for_user(&user).ok()?;
        Some(Runner { user, identity })
    })
    .await;
    let Ok(Some(runner)) = looked_up else {
        tracing::error!("{tag}User \"{}\" not found", log_escape::peer_text(name));
        return None;
    };
    let me = nix::unistd::geteuid().as_raw();
    if runner.identity.is_none() && runner.user.uid != me {
        tracing::error!(
            "{tag}User \"{}\": sshqd runs as uid {me} and cannot run {tag} as another user",
            log_escape::peer_text(name)
        );
        return None;
    }
    Some(runner)
}

/// sshd's checks before it runs the program, made with the rights of the
/// user it runs as: an absolute path to a regular file owned by root,
/// writable by no one else, in directories that are so too (StrictModes'
/// rules for uid 0, see [`keys_file::secure_path`]).
async fn program_safe(tag: &'static str, program: &str, runner: &Runner) -> bool {
    if !program.starts_with('/') {
        tracing::error!("{tag} path is not absolute");
        return false;
    }
    let identity = Identity::User {
        name: runner.user.name.clone(),
        uid: runner.user.uid,
        gid: runner.user.gid,
    };
    let path = program.to_string();
    let checked = as_identity_within(&identity, None, super::LOOKUP_LIMIT, move || {
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) => return Ok(Err(format!("Could not stat {tag} \"{path}\": {e}"))),
        };
        let root = Owner {
            name: "root".into(),
            uid: 0,
            home: "/".into(),
        };
        Ok(keys_file::secure_path(Path::new(&path), &meta, &root)
            .map_err(|why| format!("Unsafe {tag} \"{path}\": {why}")))
    })
    .await;
    match checked {
        Ok(Ok(())) => true,
        Ok(Err(why)) => {
            tracing::error!("{}", log_escape::peer_text(&why));
            false
        }
        Err(e) => {
            tracing::error!(
                "{tag}: cannot check {}: {e}",
                log_escape::peer_text(program)
            );
            false
        }
    }
}

/// Starts the program (off the async workers) and collects its output.
async fn run(
    tag: &'static str,
    shown: &str,
    argv: Vec<String>,
    runner: Runner,
    limit: Duration,
) -> Option<String> {
    let started = blocking::off_worker("starting a login command", blocking::SPAWN_LIMIT, {
        move || spawn(argv, runner)
    })
    .await;
    let mut child = match started {
        Ok(Ok(child)) => child,
        Ok(Err(e)) => {
            tracing::error!("{tag} {shown}: cannot start it: {e}");
            return None;
        }
        Err(e) => {
            tracing::error!("{tag} {shown}: {e}");
            return None;
        }
    };
    let group = child.id().map(|pid| nix::unistd::Pid::from_raw(pid as i32));
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let collected = tokio::time::timeout(limit, async {
        let stderr = tokio::spawn(read_capped(stderr, MAX_STDERR));
        let out = read_capped(stdout, MAX_KEYS_FILE).await;
        if matches!(out, Ok((_, true))) {
            // Too much: stop it now rather than wait for it to finish.
            kill_group(group);
        }
        let status = child.wait().await;
        let errors = stderr.await.ok().and_then(Result::ok);
        (out, status, errors)
    })
    .await;
    let Ok((out, status, errors)) = collected else {
        kill_group(group);
        tracing::error!(
            "{tag} {shown} did not finish within {} s: killed",
            limit.as_secs()
        );
        return None;
    };
    if let Some((text, _)) = errors {
        for line in String::from_utf8_lossy(&text).lines() {
            tracing::info!("{tag} {shown}: {}", log_escape::peer_text(line));
        }
    }
    let (out, too_big) = match out {
        Ok(read) => read,
        Err(e) => {
            tracing::error!("{tag} {shown}: cannot read its output: {e}");
            return None;
        }
    };
    if too_big {
        tracing::error!("{tag} {shown} wrote more than {MAX_KEYS_FILE} bytes: ignored");
        return None;
    }
    match status {
        Ok(status) if status.success() => Some(String::from_utf8_lossy(&out).into_owned()),
        Ok(status) => {
            match (status.signal(), status.code()) {
                (Some(signal), _) => {
                    tracing::error!("{tag} {shown} exited on signal {signal}")
                }
                (None, code) => {
                    tracing::info!("{tag} {shown} failed, status {}", code.unwrap_or(-1))
                }
            }
            None
        }
        Err(e) => {
            tracing::error!("{tag} waitpid: {e}");
            None
        }
    }
}

/// The fork and exec, as misc.c's subprocess: stdin /dev/null, sshd's
/// environment (PATH, USER, LOGNAME, HOME, LANG), default signals, the
/// runner's groups, gid and uid; a process group of its own, so that it
/// can be killed with whatever it started.
fn spawn(argv: Vec<String>, runner: Runner) -> io::Result<tokio::process::Child> {
    let Some((program, args)) = argv.split_first() else {
        return Err(io::Error::other("no program"));
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", crate::server::process::USER_PATH)
        .env("USER", &runner.user.name)
        .env("LOGNAME", &runner.user.name)
        .env("HOME", &runner.user.home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(lang) = std::env::var_os("LANG") {
        command.env("LANG", lang);
    }
    let identity = runner.identity;
    // SAFETY: between fork and exec the hook makes only plain system calls
    // (sigaction, sigprocmask, setgroups, setgid, setuid) and allocates
    // nothing: everything was prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            child::reset_signals();
            if let Some(identity) = &identity {
                identity
                    .switch(&mut || {})
                    .map_err(|(_, errno)| io::Error::from(errno))?;
            }
            Ok(())
        });
    }
    command.spawn()
}

/// Reads up to `cap` bytes; true when there was more.
async fn read_capped<R: AsyncRead + Unpin>(
    from: Option<R>,
    cap: u64,
) -> io::Result<(Vec<u8>, bool)> {
    let mut bytes = Vec::new();
    if let Some(from) = from {
        from.take(cap + 1).read_to_end(&mut bytes).await?;
    }
    let more = bytes.len() as u64 > cap;
    bytes.truncate(cap as usize);
    Ok((bytes, more))
}

fn kill_group(group: Option<nix::unistd::Pid>) {
    if let Some(group) = group {
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests;
