//! The SFTP server proper: reads requests from the client, does them on the
//! file system with the rights of the process (the user's), and answers as
//! OpenSSH's sftp-server does (the same status codes for the same errno,
//! the same extensions, the same limits).
//!
//! One request at a time, in order, with blocking system calls: the
//! process serves one session and nothing else, as sftp-server does.
//! Replies are buffered and written out whenever the next request is not
//! already complete in the input buffer, so a client that pipelines (sftp
//! keeps 64 reads in flight) gets them in batches.

use std::ffi::{CString, OsStr};
use std::fs::{File, ReadDir};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::listing::Names;
use super::options::Options;
use super::wire::{self, Attrs, Malformed, Packet, Reader, Status};

/// Entries per READDIR reply, as sftp-server sends them.
const NAMES_PER_REPLY: usize = 100;
/// The most handles open at once whatever RLIMIT_NOFILE allows: each costs
/// a descriptor and a little memory, so a client cannot make us hoard.
const MAX_HANDLES: u64 = 4096;

/// The extensions announced in VERSION, with sftp-server's versions.
const EXTENSIONS: &[(&str, &str)] = &[
    ("posix-rename@openssh.com", "1"),
    ("statvfs@openssh.com", "2"),
    ("fstatvfs@openssh.com", "2"),
    ("hardlink@openssh.com", "1"),
    ("fsync@openssh.com", "1"),
    ("lsetstat@openssh.com", "1"),
    ("limits@openssh.com", "1"),
    ("expand-path@openssh.com", "1"),
    ("home-directory", "1"),
];

/// How the session ended, as sftp-server's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The client closed its side: exit 0.
    Closed,
    /// A malformed or oversized packet, or one before INIT: sftp-server
    /// treats these as fatal.
    ProtocolError,
    /// Reading or writing the channel failed.
    Io,
}

enum Handle {
    File(File),
    Dir {
        path: PathBuf,
        entries: ReadDir,
        dots_sent: bool,
    },
}

/// The server's state for one session.
pub struct Server {
    options: Options,
    user: String,
    home: PathBuf,
    handles: Vec<Option<Handle>>,
    max_handles: usize,
    names: Names,
}

impl Server {
    pub fn new(options: Options, user: String, home: PathBuf) -> Server {
        Server {
            options,
            user,
            home,
            handles: Vec::new(),
            max_handles: max_handles() as usize,
            names: Names::default(),
        }
    }

    /// Serves requests from `input` until it ends; replies go to `output`.
    pub fn run(&mut self, input: impl Read, output: impl Write) -> Ending {
        let mut input = BufReader::with_capacity(wire::MAX_MESSAGE + 4, input);
        let mut output = io::BufWriter::with_capacity(wire::MAX_MESSAGE + 4, output);
        let mut initialised = false;
        let mut body = Vec::new();
        loop {
            if !complete_packet_buffered(input.buffer()) && output.flush().is_err() {
                return Ending::Io;
            }
            match read_packet(&mut input, &mut body) {
                Ok(true) => {}
                Ok(false) => {
                    return if output.flush().is_ok() {
                        Ending::Closed
                    } else {
                        Ending::Io
                    }
                }
                Err(PacketError::Io) => return Ending::Io,
                Err(PacketError::TooLong) => return Ending::ProtocolError,
            }
            let mut reader = Reader::new(&body);
            let Ok(kind) = reader.u8() else {
                return Ending::ProtocolError;
            };
            let reply = if kind == wire::FXP_INIT {
                if initialised {
                    return Ending::ProtocolError;
                }
                initialised = true;
                version()
            } else if !initialised {
                return Ending::ProtocolError;
            } else {
                let Ok(id) = reader.u32() else {
                    return Ending::ProtocolError;
                };
                match self.request(kind, id, &mut reader) {
                    Ok(reply) => reply,
                    Err(Malformed) => return Ending::ProtocolError,
                }
            };
            if output.write_all(&reply).is_err() {
                return Ending::Io;
            }
        }
    }

    /// One request after INIT: its reply.
    fn request(&mut self, kind: u8, id: u32, r: &mut Reader<'_>) -> Result<Vec<u8>, Malformed> {
        let (name, writes) = match request_name(kind) {
            Some(known) => known,
            None => return Ok(wire::status(id, Status::OpUnsupported)),
        };
        if kind == wire::FXP_EXTENDED {
            let extension = r.string()?.to_vec();
            return self.extended(id, &extension, r);
        }
        if let Some(refusal) = self.refusal(id, name, writes) {
            return Ok(refusal);
        }
        let reply = match kind {
            wire::FXP_OPEN => {
                let (path, pflags, attrs) = (r.path()?, r.u32()?, r.attrs()?);
                self.open(id, path, pflags, &attrs)
            }
            wire::FXP_CLOSE => {
                let handle = self.handle_index(r)?;
                match handle.and_then(|at| self.handles.get_mut(at)?.take()) {
                    // Dropping closes; close(2)'s own errors are not worth
                    // the client's attention once the data was written.
                    Some(_) => wire::status(id, Status::Ok),
                    None => wire::status(id, Status::Failure),
                }
            }
            wire::FXP_READ => {
                let (handle, offset, len) = (self.handle_index(r)?, r.u64()?, r.u32()?);
                self.read(id, handle, offset, len)
            }
            wire::FXP_WRITE => {
                let (handle, offset, data) = (self.handle_index(r)?, r.u64()?, r.string()?);
                match self.file(handle) {
                    Some(file) => status_of(id, file.write_all_at(data, offset)),
                    None => wire::status(id, Status::Failure),
                }
            }
            wire::FXP_LSTAT => attrs_reply(id, std::fs::symlink_metadata(path_of(r.path()?))),
            wire::FXP_STAT => attrs_reply(id, std::fs::metadata(path_of(r.path()?))),
            wire::FXP_FSTAT => match self.handle_index(r)?.and_then(|h| self.file(Some(h))) {
                Some(file) => attrs_reply(id, file.metadata()),
                None => wire::status(id, Status::Failure),
            },
            wire::FXP_SETSTAT => {
                let (path, attrs) = (r.path()?, r.attrs()?);
                status_of(id, set_path_attrs(path_of(path), &attrs, true))
            }
            wire::FXP_FSETSTAT => {
                let (handle, attrs) = (self.handle_index(r)?, r.attrs()?);
                match self.file(handle) {
                    Some(file) => status_of(id, set_file_attrs(file, &attrs)),
                    None => wire::status(id, Status::Failure),
                }
            }
            wire::FXP_OPENDIR => self.opendir(id, r.path()?),
            wire::FXP_READDIR => {
                let handle = self.handle_index(r)?;
                self.readdir(id, handle)
            }
            wire::FXP_REMOVE => status_of(id, std::fs::remove_file(path_of(r.path()?))),
            wire::FXP_MKDIR => {
                let (path, attrs) = (r.path()?, r.attrs()?);
                let mode = attrs.permissions.map_or(0o777, |p| p & 0o7777);
                status_of(id, errno_result(mkdir(path, mode)))
            }
            wire::FXP_RMDIR => status_of(id, std::fs::remove_dir(path_of(r.path()?))),
            wire::FXP_REALPATH => match realpath(r.path()?) {
                Ok(resolved) => name_reply(id, &resolved),
                Err(e) => wire::status(id, Status::from_io(&e)),
            },
            wire::FXP_RENAME => {
                let (old, new) = (r.path()?, r.path()?);
                wire::status(id, rename(path_of(old), path_of(new)))
            }
            wire::FXP_READLINK => match std::fs::read_link(path_of(r.path()?)) {
                Ok(target) => name_reply(id, target.as_os_str().as_bytes()),
                Err(e) => wire::status(id, Status::from_io(&e)),
            },
            wire::FXP_SYMLINK => {
                // OpenSSH sends the link's target first and the link's
                // own path second (the reverse of the draft); every
                // client in use follows OpenSSH.
                let (target, link) = (r.path()?, r.path()?);
                status_of(
                    id,
                    std::os::unix::fs::symlink(path_of(target), path_of(link)),
                )
            }
            _ => wire::status(id, Status::OpUnsupported),
        };
        Ok(reply)
    }

    /// PERMISSION_DENIED for a request `-P`/`-p` or `-R` rule out.
    fn refusal(&self, id: u32, name: &str, writes: bool) -> Option<Vec<u8>> {
        let refused = !self.options.permits(name) || (writes && self.options.read_only);
        refused.then(|| wire::status(id, Status::PermissionDenied))
    }

    fn extended(&mut self, id: u32, name: &[u8], r: &mut Reader<'_>) -> Result<Vec<u8>, Malformed> {
        let Some((short, writes)) = extension_name(name) else {
            return Ok(wire::status(id, Status::OpUnsupported));
        };
        if let Some(refusal) = self.refusal(id, short, writes) {
            return Ok(refusal);
        }
        let reply = match short {
            "posix-rename" => {
                let (old, new) = (r.path()?, r.path()?);
                status_of(id, std::fs::rename(path_of(old), path_of(new)))
            }
            "hardlink" => {
                let (old, new) = (r.path()?, r.path()?);
                status_of(id, std::fs::hard_link(path_of(old), path_of(new)))
            }
            "statvfs" => {
                let path = cstring(r.path()?);
                // SAFETY: statvfs is plain data filled by the call.
                let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
                // SAFETY: a NUL-terminated path and a valid buffer.
                let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
                statvfs_reply(id, rc, &st)
            }
            "fstatvfs" => match self.handle_index(r)?.and_then(|h| self.file(Some(h))) {
                Some(file) => {
                    // SAFETY: as for statvfs, on an open descriptor.
                    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
                    // SAFETY: the descriptor is open for the call.
                    let rc = unsafe { libc::fstatvfs(file.as_raw_fd(), &mut st) };
                    statvfs_reply(id, rc, &st)
                }
                None => wire::status(id, Status::Failure),
            },
            "fsync" => match self.handle_index(r)?.and_then(|h| self.file(Some(h))) {
                Some(file) => status_of(id, file.sync_all()),
                None => wire::status(id, Status::Failure),
            },
            "lsetstat" => {
                let (path, attrs) = (r.path()?, r.attrs()?);
                status_of(id, set_path_attrs(path_of(path), &attrs, false))
            }
            "limits" => {
                let mut packet = Packet::reply(wire::FXP_EXTENDED_REPLY, id);
                packet
                    .u64(wire::MAX_MESSAGE as u64)
                    .u64(u64::from(wire::MAX_READ))
                    .u64(wire::MAX_MESSAGE as u64 - 1024)
                    .u64(self.max_handles as u64);
                packet.finish()
            }
            "expand-path" => match self.expand_path(r.path()?) {
                Ok(resolved) => name_reply(id, &resolved),
                Err(e) => wire::status(id, Status::from_io(&e)),
            },
            "home-directory" => {
                let name = r.string()?;
                if name.is_empty() || name == self.user.as_bytes() {
                    name_reply(id, self.home.as_os_str().as_bytes())
                } else {
                    let other = std::str::from_utf8(name)
                        .ok()
                        .and_then(|n| nix::unistd::User::from_name(n).ok().flatten());
                    match other {
                        Some(user) => name_reply(id, user.dir.as_os_str().as_bytes()),
                        None => wire::status_with(id, Status::NoSuchFile, "no such user"),
                    }
                }
            }
            _ => wire::status(id, Status::OpUnsupported),
        };
        Ok(reply)
    }

    fn open(&mut self, id: u32, path: &[u8], pflags: u32, attrs: &Attrs) -> Vec<u8> {
        let mut flags = match (pflags & wire::FXF_READ != 0, pflags & wire::FXF_WRITE != 0) {
            (true, true) => libc::O_RDWR,
            (false, true) => libc::O_WRONLY,
            _ => libc::O_RDONLY,
        };
        for (bit, flag) in [
            (wire::FXF_APPEND, libc::O_APPEND),
            (wire::FXF_CREAT, libc::O_CREAT),
            (wire::FXF_TRUNC, libc::O_TRUNC),
            (wire::FXF_EXCL, libc::O_EXCL),
        ] {
            if pflags & bit != 0 {
                flags |= flag;
            }
        }
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY
            || flags & (libc::O_CREAT | libc::O_TRUNC) != 0;
        if self.options.read_only && writes {
            return wire::status(id, Status::PermissionDenied);
        }
        if self.open_handles() >= self.max_handles {
            return wire::status(id, Status::Failure);
        }
        let mode = attrs.permissions.map_or(0o666, |p| p & 0o7777);
        let path = cstring(path);
        // SAFETY: a NUL-terminated path; the descriptor returned is ours.
        let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode) };
        if fd < 0 {
            return wire::status(id, Status::from_io(&io::Error::last_os_error()));
        }
        // SAFETY: open just returned this descriptor and nothing else owns it.
        let file = unsafe { File::from_raw_fd(fd) };
        self.add_handle(id, Handle::File(file))
    }

    fn read(&mut self, id: u32, handle: Option<usize>, offset: u64, len: u32) -> Vec<u8> {
        let Some(file) = self.file(handle) else {
            return wire::status(id, Status::Failure);
        };
        let len = len.min(wire::MAX_READ) as usize;
        let mut packet = Packet::reply(wire::FXP_DATA, id);
        let read = loop {
            match file.read_at(packet.data_slot(len), offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    packet = Packet::reply(wire::FXP_DATA, id);
                }
                other => break other,
            }
        };
        match read {
            Ok(0) => wire::status(id, Status::Eof),
            Ok(n) => {
                packet.truncate_data(len, n);
                packet.finish()
            }
            Err(e) => wire::status(id, Status::from_io(&e)),
        }
    }

    fn opendir(&mut self, id: u32, path: &[u8]) -> Vec<u8> {
        if self.open_handles() >= self.max_handles {
            return wire::status(id, Status::Failure);
        }
        let path = path_of(path).to_path_buf();
        match std::fs::read_dir(&path) {
            Ok(entries) => self.add_handle(
                id,
                Handle::Dir {
                    path,
                    entries,
                    dots_sent: false,
                },
            ),
            Err(e) => wire::status(id, Status::from_io(&e)),
        }
    }

    fn readdir(&mut self, id: u32, handle: Option<usize>) -> Vec<u8> {
        let Some(Some(Handle::Dir {
            path,
            entries,
            dots_sent,
        })) = handle.and_then(|at| self.handles.get_mut(at))
        else {
            return wire::status(id, Status::Failure);
        };
        // std leaves out `.` and `..`; sftp-server lists them (readdir(3)
        // does), and `ls -a` shows them.
        let mut names: Vec<Vec<u8>> = Vec::new();
        if !*dots_sent {
            *dots_sent = true;
            names.push(b".".to_vec());
            names.push(b"..".to_vec());
        }
        while names.len() < NAMES_PER_REPLY {
            match entries.next() {
                Some(Ok(entry)) => names.push(entry.file_name().as_bytes().to_vec()),
                // An entry that vanished or cannot be read is skipped.
                Some(Err(_)) => continue,
                None => break,
            }
        }
        let dir = path.clone();
        let mut count = 0u32;
        let mut body = Packet::new(0);
        for name in &names {
            // sftp-server leaves out what it cannot lstat.
            let Ok(meta) = std::fs::symlink_metadata(dir.join(OsStr::from_bytes(name))) else {
                continue;
            };
            body.string(name)
                .string(&self.names.long_name(name, &meta))
                .attrs(&Attrs::from_metadata(&meta));
            count += 1;
        }
        if count == 0 {
            return wire::status(id, Status::Eof);
        }
        let entries = body.finish();
        let mut packet = Packet::reply(wire::FXP_NAME, id);
        packet.u32(count);
        let mut bytes = packet.finish();
        // The entries follow the count; skip the scratch packet's header.
        bytes.extend_from_slice(entries.get(5..).unwrap_or_default());
        let len = (bytes.len() - 4) as u32;
        bytes[..4].copy_from_slice(&len.to_be_bytes());
        bytes
    }

    /// expand-path@openssh.com: `~` and `~/...` are the start directory
    /// (sftp-server's rule, so `-d` holds), `~user` that user's home.
    fn expand_path(&self, path: &[u8]) -> io::Result<Vec<u8>> {
        let cwd = std::env::current_dir()?;
        let cwd = cwd.as_os_str().as_bytes();
        let joined = |rest: &[u8]| [cwd, b"/", rest].concat();
        let expanded = match path {
            b"" => b".".to_vec(),
            b"~" => cwd.to_vec(),
            _ if path.starts_with(b"~/") => joined(&path[2..]),
            _ if path.starts_with(b"~") => {
                let end = path.iter().position(|&b| b == b'/').unwrap_or(path.len());
                let name = std::str::from_utf8(&path[1..end]).unwrap_or_default();
                let user = nix::unistd::User::from_name(name)
                    .ok()
                    .flatten()
                    .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
                [user.dir.as_os_str().as_bytes(), &path[end..]].concat()
            }
            _ if path.starts_with(b"/") => path.to_vec(),
            _ => joined(path),
        };
        realpath(&expanded)
    }

    fn open_handles(&self) -> usize {
        self.handles.iter().filter(|h| h.is_some()).count()
    }

    fn add_handle(&mut self, id: u32, handle: Handle) -> Vec<u8> {
        let at = match self.handles.iter().position(Option::is_none) {
            Some(free) => {
                self.handles[free] = Some(handle);
                free
            }
            None => {
                self.handles.push(Some(handle));
                self.handles.len() - 1
            }
        };
        let mut packet = Packet::reply(wire::FXP_HANDLE, id);
        packet.string(&(at as u32).to_be_bytes());
        packet.finish()
    }

    /// The handle a request names: `None` for one we never gave out
    /// (answered with FAILURE, as sftp-server does).
    fn handle_index(&self, r: &mut Reader<'_>) -> Result<Option<usize>, Malformed> {
        let bytes = r.string()?;
        let Ok(bytes) = <[u8; 4]>::try_from(bytes) else {
            return Ok(None);
        };
        let at = u32::from_be_bytes(bytes) as usize;
        Ok(self.handles.get(at).and_then(Option::as_ref).map(|_| at))
    }

    fn file(&self, handle: Option<usize>) -> Option<&File> {
        match self.handles.get(handle?)? {
            Some(Handle::File(file)) => Some(file),
            _ => None,
        }
    }
}

/// The request's name for `-P`/`-p`, and whether it writes (refused by
/// `-R`); `None` for a type that is not a request.
fn request_name(kind: u8) -> Option<(&'static str, bool)> {
    Some(match kind {
        wire::FXP_OPEN => ("open", false),
        wire::FXP_CLOSE => ("close", false),
        wire::FXP_READ => ("read", false),
        wire::FXP_WRITE => ("write", false),
        wire::FXP_LSTAT => ("lstat", false),
        wire::FXP_FSTAT => ("fstat", false),
        wire::FXP_SETSTAT => ("setstat", true),
        wire::FXP_FSETSTAT => ("fsetstat", true),
        wire::FXP_OPENDIR => ("opendir", false),
        wire::FXP_READDIR => ("readdir", false),
        wire::FXP_REMOVE => ("remove", true),
        wire::FXP_MKDIR => ("mkdir", true),
        wire::FXP_RMDIR => ("rmdir", true),
        wire::FXP_REALPATH => ("realpath", false),
        wire::FXP_STAT => ("stat", false),
        wire::FXP_RENAME => ("rename", true),
        wire::FXP_READLINK => ("readlink", false),
        wire::FXP_SYMLINK => ("symlink", true),
        wire::FXP_EXTENDED => ("extended", false),
        _ => return None,
    })
}

/// An extension's short name (sftp-server's, for `-P`/`-p`) and whether
/// it writes.
fn extension_name(name: &[u8]) -> Option<(&'static str, bool)> {
    Some(match name {
        b"posix-rename@openssh.com" => ("posix-rename", true),
        b"statvfs@openssh.com" => ("statvfs", false),
        b"fstatvfs@openssh.com" => ("fstatvfs", false),
        b"hardlink@openssh.com" => ("hardlink", true),
        b"fsync@openssh.com" => ("fsync", true),
        b"lsetstat@openssh.com" => ("lsetstat", true),
        b"limits@openssh.com" => ("limits", false),
        b"expand-path@openssh.com" => ("expand-path", false),
        b"home-directory" => ("home-directory", false),
        _ => return None,
    })
}

/// The request names `-Q requests` prints.
pub fn request_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = (1..=20)
        .filter_map(request_name)
        .map(|(name, _)| name)
        .collect();
    names.extend(
        EXTENSIONS
            .iter()
            .filter_map(|(name, _)| extension_name(name.as_bytes()).map(|(short, _)| short)),
    );
    names
}

fn version() -> Vec<u8> {
    let mut packet = Packet::new(wire::FXP_VERSION);
    packet.u32(3);
    for (name, version) in EXTENSIONS {
        packet.string(name.as_bytes()).string(version.as_bytes());
    }
    packet.finish()
}

enum PacketError {
    Io,
    TooLong,
}

/// Reads one packet's body into `body`; `Ok(false)` at a clean end of input.
fn read_packet(input: &mut impl BufRead, body: &mut Vec<u8>) -> Result<bool, PacketError> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(_) => return Err(PacketError::Io),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > wire::MAX_MESSAGE {
        return Err(PacketError::TooLong);
    }
    body.clear();
    body.resize(len, 0);
    input.read_exact(body).map_err(|_| PacketError::Io)?;
    Ok(true)
}

/// Whether `buffered` holds a whole packet, so answering it needs no read.
fn complete_packet_buffered(buffered: &[u8]) -> bool {
    match buffered.get(..4) {
        Some(len) => {
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            buffered.len() - 4 >= len
        }
        None => false,
    }
}

/// RLIMIT_NOFILE less what sftp-server keeps spare, at most MAX_HANDLES.
fn max_handles() -> u64 {
    // SAFETY: rlimit is plain data filled by the call.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer for the call.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        64
    };
    soft.saturating_sub(5).clamp(1, MAX_HANDLES)
}

fn path_of(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

/// Paths reach us without NUL bytes (`Reader::path`).
fn cstring(bytes: &[u8]) -> CString {
    CString::new(bytes).unwrap_or_default()
}

fn errno_result(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn mkdir(path: &[u8], mode: u32) -> libc::c_int {
    let path = cstring(path);
    // SAFETY: a NUL-terminated path.
    unsafe { libc::mkdir(path.as_ptr(), mode) }
}

fn status_of(id: u32, result: io::Result<()>) -> Vec<u8> {
    match result {
        Ok(()) => wire::status(id, Status::Ok),
        Err(e) => wire::status(id, Status::from_io(&e)),
    }
}

fn attrs_reply(id: u32, meta: io::Result<std::fs::Metadata>) -> Vec<u8> {
    match meta {
        Ok(meta) => {
            let mut packet = Packet::reply(wire::FXP_ATTRS, id);
            packet.attrs(&Attrs::from_metadata(&meta));
            packet.finish()
        }
        Err(e) => wire::status(id, Status::from_io(&e)),
    }
}

/// A NAME reply with one name and no attributes (realpath, readlink and
/// the like), the long name being the name, as in sftp-server.
fn name_reply(id: u32, name: &[u8]) -> Vec<u8> {
    let mut packet = Packet::reply(wire::FXP_NAME, id);
    packet
        .u32(1)
        .string(name)
        .string(name)
        .attrs(&Attrs::default());
    packet.finish()
}

// statvfs's field types differ between platforms (u32 on some 32-bit
// ones): the casts are no-ops only here.
#[allow(clippy::unnecessary_cast)]
fn statvfs_reply(id: u32, rc: libc::c_int, st: &libc::statvfs) -> Vec<u8> {
    if rc != 0 {
        return wire::status(id, Status::from_io(&io::Error::last_os_error()));
    }
    let mut flag = 0u64;
    if st.f_flag & libc::ST_RDONLY != 0 {
        flag |= 1;
    }
    if st.f_flag & libc::ST_NOSUID != 0 {
        flag |= 2;
    }
    let mut packet = Packet::reply(wire::FXP_EXTENDED_REPLY, id);
    packet
        .u64(st.f_bsize as u64)
        .u64(st.f_frsize as u64)
        .u64(st.f_blocks as u64)
        .u64(st.f_bfree as u64)
        .u64(st.f_bavail as u64)
        .u64(st.f_files as u64)
        .u64(st.f_ffree as u64)
        .u64(st.f_favail as u64)
        .u64(st.f_fsid as u64)
        .u64(flag)
        .u64(st.f_namemax as u64);
    packet.finish()
}

/// sftp-server's realpath: symlinks resolved, relative to the current
/// directory, and the last component allowed not to exist (a file about
/// to be uploaded).
fn realpath(path: &[u8]) -> io::Result<Vec<u8>> {
    let path = if path.is_empty() { b"." as &[u8] } else { path };
    let path = path_of(path);
    match std::fs::canonicalize(path) {
        Ok(resolved) => Ok(resolved.into_os_string().into_vec()),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                return Err(e);
            };
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            let mut resolved = std::fs::canonicalize(parent)?;
            resolved.push(name);
            Ok(resolved.into_os_string().into_vec())
        }
        Err(e) => Err(e),
    }
}

/// sftp-server's RENAME: a regular file is linked then unlinked, so an
/// existing target is never replaced; anything else is renamed only when
/// the target does not exist.
fn rename(old: &Path, new: &Path) -> Status {
    let meta = match std::fs::symlink_metadata(old) {
        Ok(meta) => meta,
        Err(e) => return Status::from_io(&e),
    };
    if meta.is_file() {
        return match std::fs::hard_link(old, new) {
            Ok(()) => match std::fs::remove_file(old) {
                Ok(()) => Status::Ok,
                Err(e) => {
                    let _ = std::fs::remove_file(new);
                    Status::from_io(&e)
                }
            },
            // File systems without hard links: check, then rename (racy,
            // as sftp-server's fallback is).
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EXDEV | libc::EPERM)
                ) =>
            {
                if std::fs::metadata(new).is_ok() {
                    Status::Failure
                } else {
                    std::fs::rename(old, new).map_or_else(|e| Status::from_io(&e), |()| Status::Ok)
                }
            }
            Err(e) => Status::from_io(&e),
        };
    }
    if std::fs::metadata(new).is_ok() {
        return Status::Failure;
    }
    std::fs::rename(old, new).map_or_else(|e| Status::from_io(&e), |()| Status::Ok)
}

/// SETSTAT and lsetstat@openssh.com (`follow` false): size, permissions,
/// times, then owner, in sftp-server's order, stopping at the first error.
fn set_path_attrs(path: &Path, attrs: &Attrs, follow: bool) -> io::Result<()> {
    let c_path = cstring(path.as_os_str().as_bytes());
    if let Some(size) = attrs.size {
        let size = i64::try_from(size).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: a NUL-terminated path.
        errno_result(unsafe { libc::truncate(c_path.as_ptr(), size) })?;
    }
    let no_follow = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    if let Some(mode) = attrs.permissions {
        // SAFETY: a NUL-terminated path.
        let rc =
            unsafe { libc::fchmodat(libc::AT_FDCWD, c_path.as_ptr(), mode & 0o7777, no_follow) };
        errno_result(rc)?;
    }
    if let Some((atime, mtime)) = attrs.times {
        let times = timespecs(atime, mtime);
        // SAFETY: a NUL-terminated path and two timespecs.
        let rc =
            unsafe { libc::utimensat(libc::AT_FDCWD, c_path.as_ptr(), times.as_ptr(), no_follow) };
        errno_result(rc)?;
    }
    if let Some((uid, gid)) = attrs.owner {
        // SAFETY: a NUL-terminated path.
        let rc = unsafe { libc::fchownat(libc::AT_FDCWD, c_path.as_ptr(), uid, gid, no_follow) };
        errno_result(rc)?;
    }
    Ok(())
}

/// FSETSTAT, on an open file.
fn set_file_attrs(file: &File, attrs: &Attrs) -> io::Result<()> {
    if let Some(size) = attrs.size {
        file.set_len(size)?;
    }
    let fd = file.as_raw_fd();
    if let Some(mode) = attrs.permissions {
        // SAFETY: the descriptor is open for the call.
        errno_result(unsafe { libc::fchmod(fd, mode & 0o7777) })?;
    }
    if let Some((atime, mtime)) = attrs.times {
        let times = timespecs(atime, mtime);
        // SAFETY: an open descriptor and two timespecs.
        errno_result(unsafe { libc::futimens(fd, times.as_ptr()) })?;
    }
    if let Some((uid, gid)) = attrs.owner {
        // SAFETY: the descriptor is open for the call.
        errno_result(unsafe { libc::fchown(fd, uid, gid) })?;
    }
    Ok(())
}

fn timespecs(atime: u32, mtime: u32) -> [libc::timespec; 2] {
    let at = |seconds: u32| libc::timespec {
        tv_sec: seconds as libc::time_t,
        tv_nsec: 0,
    };
    [at(atime), at(mtime)]
}

#[cfg(test)]
mod tests;
