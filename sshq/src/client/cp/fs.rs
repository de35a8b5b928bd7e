//! The two kinds of place a copy reads from or writes to, behind one face:
//! the local file system, and a remote host's over SFTP.

use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::sync::Arc;

use super::remote::{self, Remote};

/// Why (part of) a copy failed, worded as scp words it.
#[derive(Debug, thiserror::Error)]
pub enum CpError {
    /// Connecting or logging in failed; already worded by ssh's rules.
    #[error("{0}")]
    Connect(String),
    /// Anything else, printed after "sshq cp: ".
    #[error("{0}")]
    Message(String),
}

impl CpError {
    pub fn remote(path: &str, e: russh_sftp::client::error::Error) -> CpError {
        CpError::Message(format!("{path}: {}", remote::why(&e)))
    }

    pub fn local(path: &str, e: &std::io::Error) -> CpError {
        CpError::Message(format!("{path}: {}", io_why(e)))
    }
}

/// The C library's words for an I/O error, without Rust's "(os error N)".
pub fn io_why(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}

/// What a copy needs to know of a file.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stat {
    pub is_dir: bool,
    pub is_file: bool,
    pub size: u64,
    /// Permission bits (with setuid/setgid/sticky), no file type.
    pub mode: u32,
    pub atime: u32,
    pub mtime: u32,
}

/// Where files are: here, or on a remote host.
#[derive(Clone)]
pub enum Side {
    Local,
    Remote(Arc<Remote>),
}

/// An open file, on however many SFTP sessions it is spread over.
pub enum Handle {
    Local(Arc<std::fs::File>),
    Remote {
        remote: Arc<Remote>,
        handles: Vec<(usize, String)>,
    },
}

impl Side {
    /// stat, following symlinks as scp does; `None` if there is no such file.
    pub async fn stat(&self, path: &str) -> Result<Option<Stat>, CpError> {
        match self {
            Side::Remote(remote) => remote.stat(path).await,
            Side::Local => match std::fs::metadata(path) {
                Ok(meta) => Ok(Some(Stat {
                    is_dir: meta.is_dir(),
                    is_file: meta.is_file(),
                    size: meta.len(),
                    mode: meta.mode() & 0o7777,
                    atime: meta.atime().clamp(0, u32::MAX as i64) as u32,
                    mtime: meta.mtime().clamp(0, u32::MAX as i64) as u32,
                })),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(CpError::local(path, &e)),
            },
        }
    }

    /// A directory's entries (without `.` and `..`), each with its stat
    /// (symlinks followed; `None` for a dangling one).
    pub async fn list_dir(&self, path: &str) -> Result<Vec<(String, Option<Stat>)>, CpError> {
        match self {
            Side::Remote(remote) => remote.list_dir(path).await,
            Side::Local => {
                let entries = std::fs::read_dir(path).map_err(|e| CpError::local(path, &e))?;
                let mut names = Vec::new();
                for entry in entries {
                    let entry = entry.map_err(|e| CpError::local(path, &e))?;
                    let name = entry.file_name().into_string().map_err(|name| {
                        // SFTP paths are strings here.
                        CpError::Message(format!(
                            "{path}/{}: file name is not UTF-8",
                            name.to_string_lossy()
                        ))
                    })?;
                    let full = format!("{}/{name}", path.trim_end_matches('/'));
                    let stat = Side::Local.stat(&full).await.ok().flatten();
                    names.push((name, stat));
                }
                Ok(names)
            }
        }
    }

    /// mkdir; an existing directory is fine.
    pub async fn mkdir(&self, path: &str, mode: u32) -> Result<(), CpError> {
        match self {
            Side::Remote(remote) => remote.mkdir(path, mode).await,
            Side::Local => {
                use std::os::unix::fs::DirBuilderExt;
                match std::fs::DirBuilder::new().mode(mode & 0o7777).create(path) {
                    Ok(()) => Ok(()),
                    Err(_) if std::path::Path::new(path).is_dir() => Ok(()),
                    Err(e) => Err(CpError::Message(format!(
                        "local mkdir \"{path}\": {}",
                        io_why(&e)
                    ))),
                }
            }
        }
    }

    /// Opens `path` for reading, spread over `sessions` when remote.
    pub async fn open_read(&self, path: &str, sessions: &[usize]) -> Result<Handle, CpError> {
        match self {
            Side::Remote(remote) => Ok(Handle::Remote {
                remote: remote.clone(),
                handles: remote.open(path, sessions, None).await?,
            }),
            Side::Local => std::fs::File::open(path)
                .map(|f| Handle::Local(Arc::new(f)))
                .map_err(|e| CpError::local(path, &e)),
        }
    }

    /// Opens (creating) `path` for writing with `mode`; `truncate` empties it.
    pub async fn open_write(
        &self,
        path: &str,
        sessions: &[usize],
        mode: u32,
        truncate: bool,
    ) -> Result<Handle, CpError> {
        match self {
            Side::Remote(remote) => Ok(Handle::Remote {
                remote: remote.clone(),
                handles: remote.open(path, sessions, Some((mode, truncate))).await?,
            }),
            Side::Local => {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .read(true)
                    .create(true)
                    .truncate(truncate)
                    // As sftp: the source's mode, and writable by us.
                    .mode((mode & 0o777) | 0o200)
                    .open(path)
                    .map(|f| Handle::Local(Arc::new(f)))
                    .map_err(|e| CpError::Message(format!("open local \"{path}\": {}", io_why(&e))))
            }
        }
    }

    /// Sets the size (for cutting a partial file back), and with -p the mode and times.
    pub async fn set_attrs(
        &self,
        path: &str,
        size: Option<u64>,
        mode: Option<u32>,
        times: Option<(u32, u32)>,
    ) -> Result<(), CpError> {
        match self {
            Side::Remote(remote) => remote.set_attrs(path, size, mode, times).await,
            Side::Local => {
                let fail = |what: &str, e: std::io::Error| {
                    CpError::Message(format!("local {what} \"{path}\": {}", io_why(&e)))
                };
                if let Some(size) = size {
                    let file = std::fs::OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(|e| fail("open", e))?;
                    file.set_len(size).map_err(|e| fail("ftruncate", e))?;
                }
                if let Some(mode) = mode {
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
                        .map_err(|e| fail("chmod", e))?;
                }
                if let Some((atime, mtime)) = times {
                    let at = nix::sys::time::TimeSpec::new(atime.into(), 0);
                    let mt = nix::sys::time::TimeSpec::new(mtime.into(), 0);
                    nix::sys::stat::utimensat(
                        nix::fcntl::AT_FDCWD,
                        path,
                        &at,
                        &mt,
                        nix::sys::stat::UtimensatFlags::FollowSymlink,
                    )
                    .map_err(|e| fail("set times", e.into()))?;
                }
                Ok(())
            }
        }
    }

    /// Moves the finished temporary file to its final name, replacing what was there.
    pub async fn rename_over(&self, temp: &str, target: &str) -> Result<(), CpError> {
        match self {
            Side::Remote(remote) => remote.rename_over(temp, target).await,
            Side::Local => std::fs::rename(temp, target).map_err(|e| {
                CpError::Message(format!(
                    "local rename \"{temp}\" to \"{target}\": {}",
                    io_why(&e)
                ))
            }),
        }
    }

    /// How many SFTP sessions a remote side has (1 for local).
    pub fn sessions(&self) -> usize {
        match self {
            Side::Remote(remote) => remote.sessions.len(),
            Side::Local => 1,
        }
    }
}

impl Handle {
    /// Reads `len` bytes at `offset` (fewer only at end of file), on the
    /// handle's `lane`-th session.
    pub async fn read_at(
        &self,
        lane: usize,
        offset: u64,
        len: u32,
        path: &str,
    ) -> Result<Vec<u8>, CpError> {
        match self {
            Handle::Local(file) => {
                let file = file.clone();
                let path = path.to_string();
                let read = tokio::task::spawn_blocking(move || {
                    let mut data = vec![0u8; len as usize];
                    let mut got = 0;
                    while got < data.len() {
                        match file.read_at(&mut data[got..], offset + got as u64) {
                            Ok(0) => break,
                            Ok(n) => got += n,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(CpError::local(&path, &e)),
                        }
                    }
                    data.truncate(got);
                    Ok(data)
                });
                read.await
                    .map_err(|e| CpError::Message(format!("read: {e}")))?
            }
            Handle::Remote { remote, handles } => {
                let handle = &handles[lane % handles.len()];
                remote.read_at(handle, offset, len, path).await
            }
        }
    }

    pub async fn write_at(
        &self,
        lane: usize,
        offset: u64,
        data: Vec<u8>,
        path: &str,
    ) -> Result<(), CpError> {
        match self {
            Handle::Local(file) => {
                let file = file.clone();
                let path = path.to_string();
                let write = tokio::task::spawn_blocking(move || {
                    file.write_all_at(&data, offset).map_err(|e| {
                        CpError::Message(format!("write local \"{path}\": {}", io_why(&e)))
                    })
                });
                write
                    .await
                    .map_err(|e| CpError::Message(format!("write: {e}")))?
            }
            Handle::Remote { remote, handles } => {
                let handle = &handles[lane % handles.len()];
                remote.write_at(handle, offset, data, path).await
            }
        }
    }

    /// How many sessions the handle is spread over.
    pub fn lanes(&self) -> usize {
        match self {
            Handle::Local(_) => 1,
            Handle::Remote { handles, .. } => handles.len().max(1),
        }
    }

    pub async fn close(self) {
        if let Handle::Remote { remote, handles } = self {
            remote.close(handles).await;
        }
    }
}
