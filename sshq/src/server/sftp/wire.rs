//! SFTP version 3 on the wire (draft-ietf-secsh-filexfer-02, the version
//! OpenSSH speaks): packet framing, the request fields, file attributes
//! and the replies, with names kept as bytes (file names need not be
//! UTF-8, and OpenSSH passes them through untouched).

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

/// sftp-server's SFTP_MAX_MSG_LENGTH: the largest packet either side sends.
pub const MAX_MESSAGE: usize = 256 * 1024;
/// sftp-server's SFTP_MAX_READ_LENGTH: a READ asks for at most this much.
pub const MAX_READ: u32 = (MAX_MESSAGE - 1024) as u32;

pub const FXP_INIT: u8 = 1;
pub const FXP_VERSION: u8 = 2;
pub const FXP_OPEN: u8 = 3;
pub const FXP_CLOSE: u8 = 4;
pub const FXP_READ: u8 = 5;
pub const FXP_WRITE: u8 = 6;
pub const FXP_LSTAT: u8 = 7;
pub const FXP_FSTAT: u8 = 8;
pub const FXP_SETSTAT: u8 = 9;
pub const FXP_FSETSTAT: u8 = 10;
pub const FXP_OPENDIR: u8 = 11;
pub const FXP_READDIR: u8 = 12;
pub const FXP_REMOVE: u8 = 13;
pub const FXP_MKDIR: u8 = 14;
pub const FXP_RMDIR: u8 = 15;
pub const FXP_REALPATH: u8 = 16;
pub const FXP_STAT: u8 = 17;
pub const FXP_RENAME: u8 = 18;
pub const FXP_READLINK: u8 = 19;
pub const FXP_SYMLINK: u8 = 20;
pub const FXP_STATUS: u8 = 101;
pub const FXP_HANDLE: u8 = 102;
pub const FXP_DATA: u8 = 103;
pub const FXP_NAME: u8 = 104;
pub const FXP_ATTRS: u8 = 105;
pub const FXP_EXTENDED: u8 = 200;
pub const FXP_EXTENDED_REPLY: u8 = 201;

/// SSH_FX_* status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    Eof = 1,
    NoSuchFile = 2,
    PermissionDenied = 3,
    Failure = 4,
    BadMessage = 5,
    OpUnsupported = 8,
}

impl Status {
    /// sftp-server's errno_to_portable.
    pub fn from_errno(errno: i32) -> Status {
        match errno {
            0 => Status::Ok,
            libc::ENOENT | libc::ENOTDIR | libc::EBADF | libc::ELOOP => Status::NoSuchFile,
            libc::EPERM | libc::EACCES | libc::EFAULT => Status::PermissionDenied,
            libc::ENAMETOOLONG | libc::EINVAL => Status::BadMessage,
            libc::ENOSYS => Status::OpUnsupported,
            _ => Status::Failure,
        }
    }

    pub fn from_io(error: &std::io::Error) -> Status {
        error
            .raw_os_error()
            .map_or(Status::Failure, Status::from_errno)
    }

    /// The message sftp-server sends with each code.
    pub fn message(self) -> &'static str {
        match self {
            Status::Ok => "Success",
            Status::Eof => "End of file",
            Status::NoSuchFile => "No such file",
            Status::PermissionDenied => "Permission denied",
            Status::Failure => "Failure",
            Status::BadMessage => "Bad message",
            Status::OpUnsupported => "Operation unsupported",
        }
    }
}

pub const ATTR_SIZE: u32 = 0x1;
pub const ATTR_UIDGID: u32 = 0x2;
pub const ATTR_PERMISSIONS: u32 = 0x4;
pub const ATTR_ACMODTIME: u32 = 0x8;
pub const ATTR_EXTENDED: u32 = 0x8000_0000;

pub const FXF_READ: u32 = 0x1;
pub const FXF_WRITE: u32 = 0x2;
pub const FXF_APPEND: u32 = 0x4;
pub const FXF_CREAT: u32 = 0x8;
pub const FXF_TRUNC: u32 = 0x10;
pub const FXF_EXCL: u32 = 0x20;

/// A request that does not parse: sftp-server treats it as a fatal
/// protocol error and ends the session.
#[derive(Debug, thiserror::Error)]
#[error("malformed request")]
pub struct Malformed;

/// Reads the fields of one packet's body.
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub fn new(body: &'a [u8]) -> Reader<'a> {
        Reader(body)
    }

    pub fn u8(&mut self) -> Result<u8, Malformed> {
        let (&first, rest) = self.0.split_first().ok_or(Malformed)?;
        self.0 = rest;
        Ok(first)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < n {
            return Err(Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub fn u32(&mut self) -> Result<u32, Malformed> {
        let bytes: [u8; 4] = self.take(4)?.try_into().map_err(|_| Malformed)?;
        Ok(u32::from_be_bytes(bytes))
    }

    pub fn u64(&mut self) -> Result<u64, Malformed> {
        let bytes: [u8; 8] = self.take(8)?.try_into().map_err(|_| Malformed)?;
        Ok(u64::from_be_bytes(bytes))
    }

    pub fn string(&mut self) -> Result<&'a [u8], Malformed> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    /// A path: a string without NUL bytes (the C API could not take it;
    /// sftp-server's sshbuf_get_cstring refuses it too).
    pub fn path(&mut self) -> Result<&'a [u8], Malformed> {
        let path = self.string()?;
        if path.contains(&0) {
            return Err(Malformed);
        }
        Ok(path)
    }

    pub fn attrs(&mut self) -> Result<Attrs, Malformed> {
        let flags = self.u32()?;
        let mut attrs = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            attrs.size = Some(self.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            attrs.owner = Some((self.u32()?, self.u32()?));
        }
        if flags & ATTR_PERMISSIONS != 0 {
            attrs.permissions = Some(self.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            attrs.times = Some((self.u32()?, self.u32()?));
        }
        if flags & ATTR_EXTENDED != 0 {
            // Read and ignored, as sftp-server does.
            let count = self.u32()?;
            for _ in 0..count {
                self.string()?;
                self.string()?;
            }
        }
        Ok(attrs)
    }
}

/// File attributes: what a request sets, or what a reply reports.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Attrs {
    pub size: Option<u64>,
    pub owner: Option<(u32, u32)>,
    pub permissions: Option<u32>,
    /// (atime, mtime) in seconds since the epoch; v3 has 32 bits.
    pub times: Option<(u32, u32)>,
}

impl Attrs {
    /// Everything a stat reports, as sftp-server's stat_to_attrib.
    pub fn from_metadata(meta: &Metadata) -> Attrs {
        Attrs {
            size: Some(meta.size()),
            owner: Some((meta.uid(), meta.gid())),
            permissions: Some(meta.mode()),
            // v3 carries 32 bits; later times wrap as in sftp-server.
            times: Some((meta.atime() as u32, meta.mtime() as u32)),
        }
    }
}

/// Builds one reply packet: the length is filled in by [`Packet::finish`].
pub struct Packet(Vec<u8>);

impl Packet {
    pub fn new(kind: u8) -> Packet {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(&[0, 0, 0, 0, kind]);
        Packet(bytes)
    }

    /// A reply to request `id`.
    pub fn reply(kind: u8, id: u32) -> Packet {
        let mut packet = Packet::new(kind);
        packet.u32(id);
        packet
    }

    pub fn u32(&mut self, value: u32) -> &mut Packet {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn u64(&mut self, value: u64) -> &mut Packet {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn string(&mut self, value: &[u8]) -> &mut Packet {
        // Every value we send is far below 4 GiB (names, at most a read).
        self.u32(value.len() as u32);
        self.0.extend_from_slice(value);
        self
    }

    pub fn attrs(&mut self, attrs: &Attrs) -> &mut Packet {
        let mut flags = 0;
        if attrs.size.is_some() {
            flags |= ATTR_SIZE;
        }
        if attrs.owner.is_some() {
            flags |= ATTR_UIDGID;
        }
        if attrs.permissions.is_some() {
            flags |= ATTR_PERMISSIONS;
        }
        if attrs.times.is_some() {
            flags |= ATTR_ACMODTIME;
        }
        self.u32(flags);
        if let Some(size) = attrs.size {
            self.u64(size);
        }
        if let Some((uid, gid)) = attrs.owner {
            self.u32(uid).u32(gid);
        }
        if let Some(permissions) = attrs.permissions {
            self.u32(permissions);
        }
        if let Some((atime, mtime)) = attrs.times {
            self.u32(atime).u32(mtime);
        }
        self
    }

    /// Room for a DATA reply's payload, written in place (saves a copy of
    /// every read).
    pub fn data_slot(&mut self, len: usize) -> &mut [u8] {
        self.u32(len as u32);
        let start = self.0.len();
        self.0.resize(start + len, 0);
        &mut self.0[start..]
    }

    /// Trims a DATA payload reserved with [`Packet::data_slot`] to the
    /// `len` bytes actually read.
    pub fn truncate_data(&mut self, reserved: usize, len: usize) {
        let start = self.0.len() - reserved;
        self.0.truncate(start + len);
        let len_at = start - 4;
        self.0[len_at..start].copy_from_slice(&(len as u32).to_be_bytes());
    }

    /// The packet with its length in front.
    pub fn finish(mut self) -> Vec<u8> {
        let len = (self.0.len() - 4) as u32;
        self.0[..4].copy_from_slice(&len.to_be_bytes());
        self.0
    }
}

/// A STATUS reply.
pub fn status(id: u32, status: Status) -> Vec<u8> {
    status_with(id, status, status.message())
}

/// A STATUS reply with a message of our own.
pub fn status_with(id: u32, status: Status, message: &str) -> Vec<u8> {
    let mut packet = Packet::reply(FXP_STATUS, id);
    packet
        .u32(status as u32)
        .string(message.as_bytes())
        .string(b"");
    packet.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrs_round_trip() {
        let attrs = Attrs {
            size: Some(5),
            owner: None,
            permissions: Some(0o100644),
            times: Some((1, 2)),
        };
        let mut packet = Packet::new(FXP_ATTRS);
        packet.attrs(&attrs);
        let bytes = packet.finish();
        let mut reader = Reader::new(&bytes[5..]);
        assert_eq!(reader.attrs().unwrap(), attrs);
    }

    #[test]
    fn short_fields_are_malformed() {
        assert!(Reader::new(&[0, 0, 0, 9, b'a']).string().is_err());
        assert!(Reader::new(&[0, 0, 0, 1, 0]).path().is_err());
        assert!(Reader::new(&[0, 0]).u32().is_err());
    }

    #[test]
    fn data_slot_is_trimmed_to_what_was_read() {
        let mut packet = Packet::reply(FXP_DATA, 7);
        packet.data_slot(10)[..3].copy_from_slice(b"abc");
        packet.truncate_data(10, 3);
        let bytes = packet.finish();
        assert_eq!(&bytes[..4], &(1 + 4 + 4 + 3u32).to_be_bytes());
        assert_eq!(&bytes[9..], &[0, 0, 0, 3, b'a', b'b', b'c']);
    }
}
