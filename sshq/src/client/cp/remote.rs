//! One remote host for `sshq cp`: the connection (sshq's own, with its
//! config, known_hosts, keys, agent, jump hosts and Transport), and SFTP
//! sessions on `session` channels running the `sftp` subsystem.
//!
//! Over QUIC each channel is its own stream, so several SFTP sessions on
//! one connection move several files (or parts of one) without one lost
//! packet holding up the others. Over TCP every channel shares one byte
//! stream, where more channels buy nothing that pipelined requests on one
//! channel do not already give, so one session is opened there.

use std::sync::Arc;

use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use sshq_core::channel::{ChannelKind, ChannelRequest};
use sshq_core::stream::ChannelStream;
use sshq_core::transport::{Channel, ChannelControl, ChannelParts, Connection};
use tokio::io::AsyncBufReadExt;

use super::args::{CpCli, RemoteSpec};
use super::fs::{CpError, Stat};
use crate::client::connect::AnyConnection;
use crate::client::{auth, connect, jump, Cli, Destination};

/// SFTP sessions per QUIC connection.
pub const QUIC_SESSIONS: usize = 4;

/// OpenSSH's extension for a rename that replaces the target atomically.
const POSIX_RENAME: &str = "posix-rename@openssh.com";

/// A logged-in connection and its SFTP sessions.
pub struct Remote {
    /// Kept open while the sessions are used.
    _chain: jump::JumpChain,
    _conn: Arc<AnyConnection>,
    pub sessions: Vec<Arc<RawSftpSession>>,
    posix_rename: bool,
}

/// The `sshq` command line that reaches `spec`, built from scp's flags.
fn ssh_command_line(cli: &CpCli, spec: &RemoteSpec) -> Vec<String> {
    let mut args = vec!["sshq".to_string()];
    let mut push = |flag: &str, value: &str| {
        args.push(flag.to_string());
        args.push(value.to_string());
    };
    // The user's -o come first: the first value obtained wins.
    for option in &cli.options {
        push("-o", option);
    }
    if cli.batch {
        push("-o", "BatchMode=yes");
    }
    if cli.compression {
        push("-o", "Compression=yes");
    }
    if let Some(cipher) = &cli.cipher {
        push("-o", &format!("Ciphers={cipher}"));
    }
    // What scp passes to ssh: a copy forwards nothing.
    push("-o", "ClearAllForwardings=yes");
    push("-o", "ForwardAgent=no");
    if let Some(file) = &cli.config_file {
        push("-F", file);
    }
    for identity in &cli.identity_files {
        push("-i", identity);
    }
    if let Some(jump) = &cli.jump {
        push("-J", jump);
    }
    if let Some(port) = spec
        .port
        .map(|p| p.to_string())
        .or_else(|| cli.port.clone())
    {
        push("-p", &port);
    }
    if let Some(user) = &spec.user {
        push("-l", user);
    }
    if cli.ipv4 {
        args.push("-4".into());
    }
    if cli.ipv6 {
        args.push("-6".into());
    }
    if cli.quiet {
        args.push("-q".into());
    }
    for _ in 0..cli.verbose {
        args.push("-v".into());
    }
    args.push("--".into());
    args.push(spec.host.clone());
    args
}

impl Remote {
    /// Connects to `spec`'s host and opens its SFTP sessions.
    pub async fn connect(cli: &CpCli, spec: &RemoteSpec) -> Result<Remote, CpError> {
        let ssh = <Cli as clap::Parser>::try_parse_from(ssh_command_line(cli, spec))
            .map_err(|e| CpError::Connect(e.to_string()))?;
        let destination = Destination {
            user: spec.user.clone(),
            host: spec.host.clone(),
            port: spec.port,
        };
        let failed = |e: crate::client::error::ClientError| CpError::Connect(e.to_string());
        let plan = crate::client::resolve(&ssh, &destination).map_err(failed)?;
        crate::client::init_logging(ssh.verbose, plan.quiet);
        let hops = jump::hop_plans(&ssh, &plan).map_err(failed)?;
        let (chain, conn) = crate::client::establish(&hops, &plan, auth::Prompts::Allowed)
            .await
            .map_err(failed)?;
        let conn = connect::logged_in(conn, &plan)
            .await
            .map_err(|e| failed(e.into()))?;
        let label = match &spec.user {
            Some(user) => format!("{user}@{}", spec.host),
            None => spec.host.clone(),
        };
        let count = match &conn {
            AnyConnection::Quic(_) => QUIC_SESSIONS,
            AnyConnection::Tcp(_) => 1,
        };
        let conn = Arc::new(conn);
        let mut sessions = Vec::with_capacity(count);
        let mut posix_rename = false;
        for _ in 0..count {
            let (session, renames) = match conn.as_ref() {
                AnyConnection::Quic(c) => open_sftp(c).await?,
                AnyConnection::Tcp(c) => open_sftp(c).await?,
            };
            posix_rename = renames;
            sessions.push(Arc::new(session));
        }
        tracing::debug!(
            "{label}: {count} SFTP session(s); posix-rename {}",
            if posix_rename { "yes" } else { "no" }
        );
        Ok(Remote {
            _chain: chain,
            _conn: conn,
            sessions,
            posix_rename,
        })
    }

    /// Ends the connection in order, so the server's SFTP sessions end at
    /// once rather than when it notices the connection gone.
    pub async fn disconnect(&self) {
        for session in &self.sessions {
            let _ = session.close_session();
        }
        match self._conn.as_ref() {
            AnyConnection::Quic(c) => c.close("disconnected by user").await,
            AnyConnection::Tcp(c) => c.close("disconnected by user").await,
        }
    }

    fn first(&self) -> &RawSftpSession {
        &self.sessions[0]
    }

    /// stat (following symlinks); `None` when there is no such file.
    pub async fn stat(&self, path: &str) -> Result<Option<Stat>, CpError> {
        match self.first().stat(path).await {
            Ok(attrs) => Ok(Some(stat_of(&attrs.attrs))),
            Err(e) if is_status(&e, StatusCode::NoSuchFile) => Ok(None),
            Err(e) => Err(CpError::remote(path, e)),
        }
    }

    /// A directory's entries, without `.` and `..`, with their stat from
    /// the listing (a symlink's target is asked for: scp follows them).
    pub async fn list_dir(&self, path: &str) -> Result<Vec<(String, Option<Stat>)>, CpError> {
        let session = self.first();
        let handle = session
            .opendir(path)
            .await
            .map_err(|e| CpError::remote(path, e))?
            .handle;
        let mut listed = Vec::new();
        loop {
            match session.readdir(handle.as_str()).await {
                Ok(batch) => listed.extend(
                    batch
                        .files
                        .into_iter()
                        .filter(|f| f.filename != "." && f.filename != ".."),
                ),
                Err(e) if is_status(&e, StatusCode::Eof) => break,
                Err(e) => {
                    let _ = session.close(handle.as_str()).await;
                    return Err(CpError::remote(path, e));
                }
            }
        }
        let _ = session.close(handle).await;
        let mut entries = Vec::with_capacity(listed.len());
        for file in listed {
            let mode = file.attrs.permissions.unwrap_or(0);
            let stat = if mode & 0o170000 == 0o120000 {
                let full = format!("{}/{}", path.trim_end_matches('/'), file.filename);
                self.stat(&full).await.ok().flatten()
            } else {
                Some(stat_of(&file.attrs))
            };
            entries.push((file.filename, stat));
        }
        Ok(entries)
    }

    /// Runs `command` (words, quoted for the remote shell) on the host,
    /// its output passed on; its exit status.
    pub async fn exec(&self, command: &[String]) -> Result<i32, CpError> {
        let line = command
            .iter()
            .map(|word| shell_quote(word))
            .collect::<Vec<_>>()
            .join(" ");
        match self._conn.as_ref() {
            AnyConnection::Quic(c) => exec_on(c, line).await,
            AnyConnection::Tcp(c) => exec_on(c, line).await,
        }
    }

    /// mkdir; an existing directory is fine.
    pub async fn mkdir(&self, path: &str, mode: u32) -> Result<(), CpError> {
        let attrs = FileAttributes {
            permissions: Some(mode & 0o7777),
            ..FileAttributes::empty()
        };
        match self.first().mkdir(path, attrs).await {
            Ok(_) => Ok(()),
            Err(e) => match self.stat(path).await {
                Ok(Some(stat)) if stat.is_dir => Ok(()),
                _ => Err(CpError::Message(format!(
                    "remote mkdir \"{path}\": {}",
                    why(&e)
                ))),
            },
        }
    }

    /// Opens `path` on `sessions` (one handle per session).
    pub async fn open(
        &self,
        path: &str,
        sessions: &[usize],
        write: Option<(u32, bool)>,
    ) -> Result<Vec<(usize, String)>, CpError> {
        let mut handles = Vec::new();
        for (n, &index) in sessions.iter().enumerate() {
            let (flags, attrs) = match write {
                // The first handle creates (and maybe truncates); the others
                // open what it made.
                Some((mode, truncate)) if n == 0 => {
                    // Readable too: --resume reads the partial file back.
                    let mut flags = OpenFlags::WRITE | OpenFlags::READ | OpenFlags::CREATE;
                    if truncate {
                        flags |= OpenFlags::TRUNCATE;
                    }
                    let attrs = FileAttributes {
                        permissions: Some(mode & 0o777),
                        ..FileAttributes::empty()
                    };
                    (flags, attrs)
                }
                Some(_) => (OpenFlags::WRITE | OpenFlags::READ, FileAttributes::empty()),
                None => (OpenFlags::READ, FileAttributes::empty()),
            };
            let session = &self.sessions[index % self.sessions.len()];
            match session.open(path, flags, attrs).await {
                Ok(handle) => handles.push((index % self.sessions.len(), handle.handle)),
                Err(e) => {
                    self.close(handles).await;
                    return Err(CpError::remote(path, e));
                }
            }
        }
        Ok(handles)
    }

    pub async fn close(&self, handles: Vec<(usize, String)>) {
        for (index, handle) in handles {
            let _ = self.sessions[index].close(handle).await;
        }
    }

    /// Reads up to `len` bytes at `offset`; fewer only at end of file.
    pub async fn read_at(
        &self,
        (index, handle): &(usize, String),
        offset: u64,
        len: u32,
        path: &str,
    ) -> Result<Vec<u8>, CpError> {
        let session = &self.sessions[*index];
        let mut data = Vec::with_capacity(len as usize);
        // A server may answer with less than asked for; ask again for the rest.
        while data.len() < len as usize {
            let want = len - data.len() as u32;
            match session
                .read(handle.as_str(), offset + data.len() as u64, want)
                .await
            {
                Ok(got) if got.data.is_empty() => break,
                Ok(got) => data.extend_from_slice(&got.data),
                Err(e) if is_status(&e, StatusCode::Eof) => break,
                Err(e) => return Err(CpError::remote(path, e)),
            }
        }
        Ok(data)
    }

    pub async fn write_at(
        &self,
        (index, handle): &(usize, String),
        offset: u64,
        data: Vec<u8>,
        path: &str,
    ) -> Result<(), CpError> {
        self.sessions[*index]
            .write(handle.as_str(), offset, data)
            .await
            .map(|_| ())
            .map_err(|e| CpError::remote(path, e))
    }

    /// Sets size, mode and times as given (`None`s are left alone).
    pub async fn set_attrs(
        &self,
        path: &str,
        size: Option<u64>,
        mode: Option<u32>,
        times: Option<(u32, u32)>,
    ) -> Result<(), CpError> {
        let attrs = FileAttributes {
            size,
            permissions: mode.map(|m| m & 0o7777),
            atime: times.map(|t| t.0),
            mtime: times.map(|t| t.1),
            ..FileAttributes::empty()
        };
        self.first()
            .setstat(path, attrs)
            .await
            .map(|_| ())
            .map_err(|e| CpError::Message(format!("remote setstat \"{path}\": {}", why(&e))))
    }

    /// Moves the finished temporary file over `target`: atomically with
    /// posix-rename@openssh.com, else (plain SFTP rename refuses an
    /// existing target) by removing the target first.
    pub async fn rename_over(&self, temp: &str, target: &str) -> Result<(), CpError> {
        let session = self.first();
        let failed = |e: russh_sftp::client::error::Error| {
            CpError::Message(format!(
                "remote rename \"{temp}\" to \"{target}\": {}",
                why(&e)
            ))
        };
        if self.posix_rename {
            let mut data = Vec::new();
            for path in [temp, target] {
                data.extend_from_slice(&(path.len() as u32).to_be_bytes());
                data.extend_from_slice(path.as_bytes());
            }
            return match session.extended(POSIX_RENAME, data).await.map_err(failed)? {
                Packet::Status(s) if s.status_code == StatusCode::Ok => Ok(()),
                Packet::Status(s) => Err(failed(s.into())),
                _ => Err(CpError::Message(format!(
                    "remote rename \"{temp}\" to \"{target}\": unexpected reply"
                ))),
            };
        }
        let _ = session.remove(target).await;
        session
            .rename(temp, target)
            .await
            .map(|_| ())
            .map_err(failed)
    }
}

/// A `session` channel running the `sftp` subsystem, as an SFTP session;
/// whether the server offers posix-rename@openssh.com.
async fn open_sftp<C: Connection>(conn: &C) -> Result<(RawSftpSession, bool), CpError> {
    let open_failed = |e: sshq_core::error::TransportError| {
        CpError::Connect(format!("channel 0: open failed: {e}"))
    };
    let channel = conn
        .open_channel(ChannelKind::Session)
        .await
        .map_err(open_failed)?;
    let ChannelParts {
        data_in,
        ext_in,
        data_out,
        ext_out,
        control,
        requests,
    } = channel.split();
    drop((ext_out, requests));
    let accepted = control
        .request(ChannelRequest::Subsystem("sftp".into()), true)
        .await
        .map_err(open_failed)?;
    if !accepted {
        return Err(CpError::Connect(
            "subsystem request failed on channel 0".into(),
        ));
    }
    // The server's sftp-server may complain on stderr: pass it on, as ssh does.
    tokio::spawn(async move {
        let mut lines = ext_in.lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("{line}");
        }
    });
    let stream = ChannelStream::<C::Channel>::from_halves(data_in, data_out, control);
    let config = russh_sftp::client::Config {
        // Replies are read into packets up to this size; 255 KiB reads fit.
        max_packet_len: 512 * 1024,
        // A rate-limited or slow link may hold a reply back for long; a
        // dead connection is ServerAlive*'s to notice.
        request_timeout_secs: 3600,
        ..Default::default()
    };
    let mut session = RawSftpSession::new_with_config(stream, config);
    let version = session
        .init()
        .await
        .map_err(|e| CpError::Connect(format!("Connection closed ({e})")))?;
    let has = |name: &str| version.extensions.contains_key(name);
    if has(russh_sftp::extensions::LIMITS) {
        if let Ok(limits) = session.limits().await {
            session.set_limits(limits.into());
        }
    }
    Ok((session, has(POSIX_RENAME)))
}

/// `word` in single quotes for a POSIX shell.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// An exec channel whose stdout and stderr go to ours; the exit status
/// (255 when there is none, as ssh).
async fn exec_on<C: Connection>(conn: &C, line: String) -> Result<i32, CpError> {
    use sshq_core::transport::{IncomingRequest, RequestStream};
    let failed = |e: sshq_core::error::TransportError| CpError::Message(e.to_string());
    let channel = conn
        .open_channel(ChannelKind::Session)
        .await
        .map_err(failed)?;
    let ChannelParts {
        mut data_in,
        mut ext_in,
        mut data_out,
        ext_out,
        control,
        mut requests,
    } = channel.split();
    drop(ext_out);
    if !control
        .request(ChannelRequest::Exec(line.into_bytes()), true)
        .await
        .map_err(failed)?
    {
        return Err(CpError::Message("exec request failed on channel 0".into()));
    }
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut data_out).await;
    let (mut stdout, mut stderr) = (tokio::io::stdout(), tokio::io::stderr());
    let out = tokio::io::copy(&mut data_in, &mut stdout);
    let err = tokio::io::copy(&mut ext_in, &mut stderr);
    let status = async {
        let mut status = 255;
        while let Some(request) = requests.next().await {
            if let IncomingRequest {
                request: ChannelRequest::ExitStatus(code),
                ..
            } = request
            {
                status = (code & 0xff) as i32;
            }
        }
        status
    };
    let (_, _, status) = tokio::join!(out, err, status);
    Ok(status)
}

fn is_status(e: &russh_sftp::client::error::Error, code: StatusCode) -> bool {
    matches!(e, russh_sftp::client::error::Error::Status(s) if s.status_code == code)
}

/// What sftp says for a failed request: the status's text.
pub fn why(e: &russh_sftp::client::error::Error) -> String {
    use russh_sftp::client::error::Error;
    match e {
        Error::Status(s) => match s.status_code {
            StatusCode::NoSuchFile => "No such file or directory".into(),
            StatusCode::PermissionDenied => "Permission denied".into(),
            StatusCode::Failure => "Failure".into(),
            StatusCode::OpUnsupported => "Operation unsupported".into(),
            StatusCode::ConnectionLost | StatusCode::NoConnection => "Connection closed".into(),
            other => other.to_string(),
        },
        Error::Timeout => "Connection timed out".into(),
        Error::IO(_) | Error::UnexpectedBehavior(_) => "Connection closed".into(),
        other => other.to_string(),
    }
}

fn stat_of(attrs: &FileAttributes) -> Stat {
    let mode = attrs.permissions.unwrap_or(0);
    Stat {
        is_dir: mode & 0o170000 == 0o040000,
        is_file: mode & 0o170000 == 0o100000,
        size: attrs.size.unwrap_or(0),
        mode: mode & 0o7777,
        atime: attrs.atime.unwrap_or(0),
        mtime: attrs.mtime.unwrap_or(0),
    }
}
