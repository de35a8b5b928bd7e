//! What sshqd does to its own process before anything else, so that
//! nothing it inherited reaches the sessions it starts.

use std::os::fd::RawFd;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::libc;

/// The umask sshqd runs with: whatever started it, files it makes are never
/// group- or world-writable, and sessions start with this one (as under an
/// sshd started by init).
const UMASK: u32 = 0o022;

/// Sets the umask, and makes every descriptor above stderr that sshqd
/// inherited close-on-exec, like sshd's `closefrom(STDERR_FILENO + 1)` at
/// start: a descriptor left open by whatever started sshqd (a pipe of a
/// service manager, a build tool's jobserver) would otherwise be inherited
/// by every user's session. Marking rather than closing keeps them usable
/// by sshqd itself, should anything rely on them.
///
/// Call it first thing in `main`, before any thread exists.
pub fn harden_process() {
    // draft §12.11: a server SHOULD set a known file-creation mask (022) at start
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(UMASK));
    // draft §12.11: descriptors the server inherited MUST NOT reach sessions
    // SAFETY: close_range only changes descriptor flags; no memory is involved.
    let marked = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if marked == 0 {
        return;
    }
    // Kernels before 5.11: flag each open descriptor listed in /proc.
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<RawFd> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: only the flags of a descriptor that may or may not still be
        // open (read_dir's own one is gone by now) are touched.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        if let Ok(flags) = fcntl(borrowed, FcntlArg::F_GETFD) {
            let flags = FdFlag::from_bits_truncate(flags) | FdFlag::FD_CLOEXEC;
            let _ = fcntl(borrowed, FcntlArg::F_SETFD(flags));
        }
    }
}
