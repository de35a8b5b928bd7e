//! Pty details for session processes: RFC 4254 terminal modes, the window
//! size, and who owns the slave device.
//!
//! The pty is allocated here ([`open_pair`]) and then handed to
//! `pty-process`, which covers the rest of what we need: an async master,
//! and a `pre_exec` hook that runs after it has made the child a session
//! leader with the slave as its controlling terminal, so that the switch to
//! the user happens after that (as in sshd). What it does not cover
//! (atomic close-on-exec, modes, resizing through a second descriptor,
//! ownership) lives here and works on plain descriptors.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use nix::fcntl::OFlag;
use nix::libc;
use nix::pty::{grantpt, ptsname_r, unlockpt, PtyMaster};
use nix::sys::stat::{fchmod, Mode};
use nix::sys::termios::{tcgetattr, tcsetattr, SetArg, Termios};
use nix::unistd::{fchown, Gid, Group, Uid};

nix::ioctl_write_ptr_bad!(
    /// `TIOCSWINSZ`: the kernel also sends SIGWINCH to the foreground
    /// process group, which is how full-screen programs learn of the change.
    set_winsize_ioctl,
    libc::TIOCSWINSZ,
    libc::winsize
);

/// Allocates a pty: the master (non-blocking, registered with tokio) and
/// the slave, both close-on-exec from the moment they exist.
///
/// `pty_process::open` sets FD_CLOEXEC on the master only after opening
/// it; a session of another user forking in between would inherit this
/// terminal's master and could read and type into it. Opening with
/// O_CLOEXEC closes that window.
pub(super) fn open_pair() -> io::Result<(pty_process::Pty, pty_process::Pts)> {
    // draft §12.11: descriptors MUST be close-on-exec from the moment they are created
    let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    let master = nix::fcntl::open("/dev/ptmx", flags, Mode::empty())?;
    // SAFETY: `master` was just opened from /dev/ptmx: a pty master.
    let master = unsafe { PtyMaster::from_owned_fd(master) };
    grantpt(&master)?;
    unlockpt(&master)?;
    let slave_path = ptsname_r(&master)?;
    // std opens every file with O_CLOEXEC.
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&slave_path)?;
    // SAFETY: an open pty master in non-blocking mode, as `from_fd` asks.
    let master = unsafe { pty_process::Pty::from_fd(OwnedFd::from(master)) }
        .map_err(|e| io::Error::other(e.to_string()))?;
    // SAFETY: the slave end of that pty, open.
    let slave = unsafe { pty_process::Pts::from_fd(OwnedFd::from(slave)) };
    Ok((master, slave))
}

/// Sets the window size of the terminal behind `fd` (master or slave).
///
/// Sizes beyond what the kernel structure holds are clamped rather than
/// wrapped, so an absurd request gives a huge window and not a tiny one.
pub(super) fn set_window_size(
    fd: BorrowedFd<'_>,
    cols: u32,
    rows: u32,
    pix_width: u32,
    pix_height: u32,
) -> nix::Result<()> {
    let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
    let ws = libc::winsize {
        ws_row: clamp(rows),
        ws_col: clamp(cols),
        ws_xpixel: clamp(pix_width),
        ws_ypixel: clamp(pix_height),
    };
    // SAFETY: `fd` is a live descriptor for the duration of the call and
    // `ws` is a valid `winsize` that the kernel only reads.
    unsafe { set_winsize_ioctl(fd.as_raw_fd(), &ws) }.map(drop)
}

/// Gives the slave device to the user as sshd does (`pty_setowner`): owned
/// by the user, group `tty` with mode 0620 when that group exists (so
/// `write`/`wall` work), otherwise the user's group with mode 0600.
///
/// Only meaningful when we are root; the caller checks.
pub(super) fn give_to_user(tty: BorrowedFd<'_>, uid: u32, gid: u32) -> nix::Result<()> {
    let (group, mode) = match Group::from_name("tty") {
        Ok(Some(g)) => (g.gid, 0o620),
        _ => (Gid::from_raw(gid), 0o600),
    };
    fchown(tty, Some(Uid::from_raw(uid)), Some(group))?;
    fchmod(tty, Mode::from_bits_truncate(mode))
}

/// Applies the encoded terminal modes of a `pty-req` (RFC 4254 section 8) to
/// the terminal behind `tty`.
///
/// Opcodes this platform has no equivalent for, and unknown opcodes, are
/// ignored, as the RFC asks; sshd does the same.
pub(super) fn apply_modes(tty: BorrowedFd<'_>, modes: &[(u8, u32)]) -> nix::Result<()> {
    if modes.is_empty() {
        return Ok(());
    }
    // Work on the raw structure: nix's flag types lack a few of the bits the
    // RFC names (IUCLC, XCASE), and a table over raw bits is simpler.
    let mut t: libc::termios = tcgetattr(tty)?.into();
    for &(opcode, value) in modes {
        apply_mode(&mut t, opcode, value);
    }
    tcsetattr(tty, SetArg::TCSANOW, &Termios::from(t))
}

#[derive(Clone, Copy)]
enum Field {
    Input,
    Output,
    Local,
    Control,
}

/// Boolean modes: opcode, the termios field it lives in, and its bit.
const FLAG_MODES: &[(u8, Field, libc::tcflag_t)] = &[
    (30, Field::Input, libc::IGNPAR),
    (31, Field::Input, libc::PARMRK),
    (32, Field::Input, libc::INPCK),
    (33, Field::Input, libc::ISTRIP),
    (34, Field::Input, libc::INLCR),
    (35, Field::Input, libc::IGNCR),
    (36, Field::Input, libc::ICRNL),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    (37, Field::Input, libc::IUCLC),
    (38, Field::Input, libc::IXON),
    (39, Field::Input, libc::IXANY),
    (40, Field::Input, libc::IXOFF),
    (41, Field::Input, libc::IMAXBEL),
    // IUTF8 is opcode 42 per RFC 8160.
    #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
    (42, Field::Input, libc::IUTF8),
    (50, Field::Local, libc::ISIG),
    (51, Field::Local, libc::ICANON),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    (52, Field::Local, libc::XCASE),
    (53, Field::Local, libc::ECHO),
    (54, Field::Local, libc::ECHOE),
    (55, Field::Local, libc::ECHOK),
    (56, Field::Local, libc::ECHONL),
    (57, Field::Local, libc::NOFLSH),
    (58, Field::Local, libc::TOSTOP),
    (59, Field::Local, libc::IEXTEN),
    (60, Field::Local, libc::ECHOCTL),
    (61, Field::Local, libc::ECHOKE),
    (62, Field::Local, libc::PENDIN),
    (70, Field::Output, libc::OPOST),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    (71, Field::Output, libc::OLCUC),
    (72, Field::Output, libc::ONLCR),
    (73, Field::Output, libc::OCRNL),
    (74, Field::Output, libc::ONOCR),
    (75, Field::Output, libc::ONLRET),
    (92, Field::Control, libc::PARENB),
    (93, Field::Control, libc::PARODD),
];

/// Special characters: opcode and index into `c_cc`. VDSUSP (11), VFLUSH
/// (15) and VSTATUS (17) have no Linux equivalent and are left out.
const CHAR_MODES: &[(u8, usize)] = &[
    (1, libc::VINTR),
    (2, libc::VQUIT),
    (3, libc::VERASE),
    (4, libc::VKILL),
    (5, libc::VEOF),
    (6, libc::VEOL),
    (7, libc::VEOL2),
    (8, libc::VSTART),
    (9, libc::VSTOP),
    (10, libc::VSUSP),
    (12, libc::VREPRINT),
    (13, libc::VWERASE),
    (14, libc::VLNEXT),
    #[cfg(any(target_os = "linux", target_os = "android"))]
    (16, libc::VSWTC),
    (18, libc::VDISCARD),
];

const OP_CS7: u8 = 90;
const OP_CS8: u8 = 91;
const OP_ISPEED: u8 = 128;
const OP_OSPEED: u8 = 129;

/// The RFC encodes "no character" as 255; termios uses `_POSIX_VDISABLE`.
const RFC_DISABLED_CHAR: u32 = 255;

fn apply_mode(t: &mut libc::termios, opcode: u8, value: u32) {
    if let Some(&(_, index)) = CHAR_MODES.iter().find(|(op, _)| *op == opcode) {
        t.c_cc[index] = if value == RFC_DISABLED_CHAR {
            libc::_POSIX_VDISABLE
        } else {
            // Characters are bytes; anything larger is a client bug, keep the
            // low byte rather than refusing the whole request.
            (value & 0xff) as libc::cc_t
        };
        return;
    }
    if let Some(&(_, field, bit)) = FLAG_MODES.iter().find(|(op, _, _)| *op == opcode) {
        let word = match field {
            Field::Input => &mut t.c_iflag,
            Field::Output => &mut t.c_oflag,
            Field::Local => &mut t.c_lflag,
            Field::Control => &mut t.c_cflag,
        };
        if value != 0 {
            *word |= bit;
        } else {
            *word &= !bit;
        }
        return;
    }
    match opcode {
        // CS7 and CS8 are values of the CSIZE field, not independent bits:
        // "on" selects that size, "off" says nothing about the other one.
        OP_CS7 | OP_CS8 if value != 0 => {
            let size = if opcode == OP_CS7 {
                libc::CS7
            } else {
                libc::CS8
            };
            t.c_cflag = (t.c_cflag & !libc::CSIZE) | size;
        }
        OP_ISPEED | OP_OSPEED => {
            if let Some(speed) = speed_constant(value) {
                // SAFETY: `t` is a valid, exclusively borrowed termios.
                unsafe {
                    if opcode == OP_ISPEED {
                        libc::cfsetispeed(t, speed);
                    } else {
                        libc::cfsetospeed(t, speed);
                    }
                }
            }
        }
        _ => {}
    }
}

/// Maps a baud rate in bits per second to its termios constant. A pty has no
/// line speed, so rates without a constant are simply not applied.
fn speed_constant(baud: u32) -> Option<libc::speed_t> {
    Some(match baud {
        0 => libc::B0,
        50 => libc::B50,
        75 => libc::B75,
        110 => libc::B110,
        134 => libc::B134,
        150 => libc::B150,
        200 => libc::B200,
        300 => libc::B300,
        600 => libc::B600,
        1200 => libc::B1200,
        1800 => libc::B1800,
        2400 => libc::B2400,
        4800 => libc::B4800,
        9600 => libc::B9600,
        19200 => libc::B19200,
        38400 => libc::B38400,
        57600 => libc::B57600,
        115200 => libc::B115200,
        230400 => libc::B230400,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank() -> libc::termios {
        // SAFETY: termios is plain old data; all-zero is a valid value.
        unsafe { std::mem::zeroed() }
    }

    #[test]
    fn flags_characters_and_sizes() {
        let mut t = blank();
        apply_mode(&mut t, 53, 1); // ECHO on
        apply_mode(&mut t, 72, 1); // ONLCR on
        apply_mode(&mut t, 36, 1); // ICRNL on
        apply_mode(&mut t, 36, 0); // ICRNL off again
        apply_mode(&mut t, 1, 3); // VINTR = ^C
        apply_mode(&mut t, 5, 255); // VEOF disabled
        apply_mode(&mut t, 91, 1); // CS8
        apply_mode(&mut t, 90, 0); // CS7 off: no effect on CS8
        apply_mode(&mut t, 200, 1); // unknown: ignored
        apply_mode(&mut t, 11, 1); // VDSUSP: unsupported here, ignored
        assert_ne!(t.c_lflag & libc::ECHO, 0);
        assert_ne!(t.c_oflag & libc::ONLCR, 0);
        assert_eq!(t.c_iflag & libc::ICRNL, 0);
        assert_eq!(t.c_cc[libc::VINTR], 3);
        assert_eq!(t.c_cc[libc::VEOF], libc::_POSIX_VDISABLE);
        assert_eq!(t.c_cflag & libc::CSIZE, libc::CS8);
    }
}
