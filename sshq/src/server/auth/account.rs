//! The account checks sshd makes before any key is considered (auth.c
//! `allowed_user` with UsePAM no, which is all sshqd supports): a locked
//! account (password field starting with "!", as `usermod -L` and
//! `passwd -l` make it on Linux) or an expired one (shadow's expiry date,
//! `chage -E`) may not log in, whatever key it offers.
//!
//! These read the passwd and shadow databases, which may block (NSS, LDAP):
//! call them off the async workers.

use std::ffi::{CStr, CString};

use nix::errno::Errno;
use nix::libc;

use crate::server::process::{SessionUser, UserLookupError};

/// How a locked password field begins on Linux (OpenSSH's
/// LOCKED_PASSWD_PREFIX for Linux).
const LOCKED_PREFIX: &str = "!";

/// A user as the login decision needs it.
#[derive(Debug, Clone)]
pub struct Account {
    pub user: SessionUser,
    /// Why sshd would not let this account in at all, as the lines sshd
    /// logs; `None` when it may log in.
    pub refusal: Option<Vec<String>>,
}

/// The shadow entry's parts that matter here.
struct Shadow {
    password: String,
    /// Days since 1970-01-01 after which the account is expired; -1: never.
    expire: i64,
}

/// The names of the groups `name` (primary group `gid`) belongs to, for
/// `Match Group`; groups without a name are left out. Blocks (NSS).
pub fn group_names(name: &str, gid: u32) -> Vec<String> {
    let Ok(c_name) = CString::new(name) else {
        return Vec::new();
    };
    let groups = nix::unistd::getgrouplist(&c_name, nix::unistd::Gid::from_raw(gid))
        .unwrap_or_else(|_| vec![nix::unistd::Gid::from_raw(gid)]);
    groups
        .into_iter()
        .filter_map(|gid| nix::unistd::Group::from_gid(gid).ok().flatten())
        .map(|group| group.name)
        .collect()
}

/// Looks `name` up in passwd and shadow. `Ok(None)`: no such user.
pub fn lookup(name: &str) -> Result<Option<Account>, UserLookupError> {
    let failed = |source| UserLookupError {
        user: name.to_owned(),
        source,
    };
    let Some(entry) = nix::unistd::User::from_name(name).map_err(failed)? else {
        return Ok(None);
    };
    let passwd_field = entry.passwd.to_string_lossy().into_owned();
    let user = SessionUser {
        name: entry.name,
        uid: entry.uid.as_raw(),
        gid: entry.gid.as_raw(),
        home: entry.dir,
        shell: entry.shell,
    };
    // Without root (or without a shadow entry) there is nothing more to
    // know: the passwd field is all there is, as in sshd.
    let shadow = shadow_entry(name).unwrap_or(None);
    let refusal = refusal(&user.name, &passwd_field, shadow.as_ref(), today());
    Ok(Some(Account { user, refusal }))
}

/// sshd's `platform_locked_account`: expired (with its "has expired" line
/// first), or a locked password.
fn refusal(
    name: &str,
    passwd_field: &str,
    shadow: Option<&Shadow>,
    today: i64,
) -> Option<Vec<String>> {
    let locked = format!("User {name} not allowed because account is locked");
    if let Some(shadow) = shadow {
        // draft §12.11: an expired or locked account MUST refuse a key login
        if shadow.expire != -1 && shadow.expire < today {
            return Some(vec![format!("Account {name} has expired"), locked]);
        }
    }
    let password = shadow.map_or(passwd_field, |s| s.password.as_str());
    if password.starts_with(LOCKED_PREFIX) {
        return Some(vec![locked]);
    }
    None
}

/// Days since the epoch, as shadow counts them.
fn today() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs / 86_400).unwrap_or(i64::MAX)
}

/// The shadow entry of `name`, through glibc (so NSS sources count too).
fn shadow_entry(name: &str) -> Result<Option<Shadow>, Errno> {
    let name = CString::new(name).map_err(|_| Errno::EINVAL)?;
    let mut size = 1024usize;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        // SAFETY: spwd is plain data that getspnam_r fills in.
        let mut entry: libc::spwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::spwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf` is `size` long
        // and outlives every use of the strings `entry` points into.
        let rc = unsafe {
            libc::getspnam_r(
                name.as_ptr(),
                &mut entry,
                buf.as_mut_ptr(),
                size,
                &mut found,
            )
        };
        match rc {
            0 if found.is_null() => return Ok(None),
            0 => {
                let password = if entry.sp_pwdp.is_null() {
                    String::new()
                } else {
                    // SAFETY: a NUL-terminated string inside `buf`.
                    unsafe { CStr::from_ptr(entry.sp_pwdp) }
                        .to_string_lossy()
                        .into_owned()
                };
                return Ok(Some(Shadow {
                    password,
                    // c_long: i64 here, i32 on 32-bit targets.
                    #[allow(clippy::useless_conversion)]
                    expire: i64::from(entry.sp_expire),
                }));
            }
            libc::ERANGE if size < 1 << 20 => size *= 4,
            // ENOENT: no entry (or no shadow file); EACCES: not root.
            libc::ENOENT => return Ok(None),
            other => return Err(Errno::from_raw(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shadow(password: &str, expire: i64) -> Shadow {
        Shadow {
            password: password.into(),
            expire,
        }
    }

    #[test]
    fn locked_and_expired_as_sshd_sees_them() {
        let today = 20_000;
        assert!(refusal("u", "x", Some(&shadow("*", -1)), today).is_none());
        assert!(refusal("u", "x", Some(&shadow("$y$j9T$abc", today)), today).is_none());
        assert!(refusal("u", "x", None, today).is_none());
        let locked = refusal("u", "x", Some(&shadow("!$y$j9T$abc", -1)), today).unwrap();
        assert_eq!(locked, ["User u not allowed because account is locked"]);
        // useradd's default: "!" alone, also locked.
        assert!(refusal("u", "x", Some(&shadow("!", -1)), today).is_some());
        // Without shadow, the passwd field decides.
        assert!(refusal("u", "!", None, today).is_some());
        // chage -E 0: expired since 1970.
        let expired = refusal("u", "x", Some(&shadow("*", 0)), today).unwrap();
        assert_eq!(
            expired,
            [
                "Account u has expired",
                "User u not allowed because account is locked"
            ]
        );
        assert!(refusal("u", "x", Some(&shadow("*", today - 1)), today).is_some());
    }
}
