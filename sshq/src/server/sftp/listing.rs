//! What a directory listing shows: `ls -l` lines as sftp-server's ls_file
//! writes them (the client prints them for `ls -l`), with owner and group
//! names looked up once each.

use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

/// Half a year: newer files show the time of day, older ones the year
/// (ls's rule, and sftp-server's).
const SIX_MONTHS: i64 = 365 * 24 * 60 * 60 / 2;

/// Owner and group names by id, remembered for the session (inside a
/// chroot they are usually unknown, and shown as numbers).
#[derive(Default)]
pub struct Names {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Names {
    fn user(&mut self, uid: u32) -> &str {
        self.users.entry(uid).or_insert_with(|| {
            nix::unistd::User::from_uid(uid.into())
                .ok()
                .flatten()
                .map_or_else(|| uid.to_string(), |user| user.name)
        })
    }

    fn group(&mut self, gid: u32) -> &str {
        self.groups.entry(gid).or_insert_with(|| {
            nix::unistd::Group::from_gid(gid.into())
                .ok()
                .flatten()
                .map_or_else(|| gid.to_string(), |group| group.name)
        })
    }

    /// The `ls -l` line for `name`.
    pub fn long_name(&mut self, name: &[u8], meta: &Metadata) -> Vec<u8> {
        let user = self.user(meta.uid()).to_string();
        let group = self.group(meta.gid()).to_string();
        let line = format!(
            "{} {:>3} {:<8} {:<8} {:>8} {} ",
            mode_string(meta.mode()),
            meta.nlink(),
            user,
            group,
            meta.size(),
            date(meta.mtime()),
        );
        let mut bytes = line.into_bytes();
        bytes.extend_from_slice(name);
        bytes
    }
}

/// `drwxr-xr-x ` as strmode(3) writes it (with its trailing space).
pub fn mode_string(mode: u32) -> String {
    let kind = match mode & libc::S_IFMT {
        libc::S_IFDIR => 'd',
        libc::S_IFLNK => 'l',
        libc::S_IFCHR => 'c',
        libc::S_IFBLK => 'b',
        libc::S_IFSOCK => 's',
        libc::S_IFIFO => 'p',
        _ => '-',
    };
    let bit = |mask: u32, c: char| if mode & mask != 0 { c } else { '-' };
    let special = |exec: u32, special: u32, set: char, unset: char| match (
        mode & exec != 0,
        mode & special != 0,
    ) {
        (true, true) => set,
        (false, true) => unset,
        (true, false) => 'x',
        (false, false) => '-',
    };
    [
        kind,
        bit(0o400, 'r'),
        bit(0o200, 'w'),
        special(0o100, 0o4000, 's', 'S'),
        bit(0o040, 'r'),
        bit(0o020, 'w'),
        special(0o010, 0o2000, 's', 'S'),
        bit(0o004, 'r'),
        bit(0o002, 'w'),
        special(0o001, 0o1000, 't', 'T'),
        ' ',
    ]
    .iter()
    .collect()
}

/// `Jan  5 13:07` for the last half year, `Jan  5  2019` before (local
/// time, as sftp-server formats it).
fn date(mtime: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let format: &CStr = if now - SIX_MONTHS < mtime && now >= mtime {
        c"%b %e %H:%M"
    } else {
        c"%b %e  %Y"
    };
    let time: libc::time_t = mtime as libc::time_t;
    // SAFETY: tm is plain data; localtime_r fills it or returns NULL.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call.
    if unsafe { libc::localtime_r(&time, &mut tm) }.is_null() {
        return "?".repeat(12);
    }
    let mut buf = [0u8; 64];
    // SAFETY: buf's length is passed; strftime writes at most that many
    // bytes and returns how many (0 on overflow).
    let len = unsafe { libc::strftime(buf.as_mut_ptr().cast(), buf.len(), format.as_ptr(), &tm) };
    String::from_utf8_lossy(buf.get(..len).unwrap_or_default()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_as_strmode() {
        assert_eq!(mode_string(0o040755), "drwxr-xr-x ");
        assert_eq!(mode_string(0o100644), "-rw-r--r-- ");
        assert_eq!(mode_string(0o104755), "-rwsr-xr-x ");
        assert_eq!(mode_string(0o041777), "drwxrwxrwt ");
        assert_eq!(mode_string(0o120777), "lrwxrwxrwx ");
    }
}
