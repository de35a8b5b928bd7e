//! The local terminal: raw mode for interactive sessions (restored on every
//! way out), the window size, and the terminal modes sent with `pty-req`.

use std::io::IsTerminal;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Mutex;

use nix::sys::termios::{
    self, InputFlags, LocalFlags, OutputFlags, SetArg, SpecialCharacterIndices as Cc, Termios,
};
use sshq_core::channel::WindowSize;

/// The terminal settings to restore, kept globally so that every exit path
/// (normal end, error, `std::process::exit`, a fatal signal) can restore them.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

/// Puts stdin's terminal into raw mode until [`restore`] (or the guard's drop).
pub struct RawMode {
    _private: (),
}

impl RawMode {
    /// Enters raw mode if stdin is a terminal; `None` otherwise.
    pub fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let original = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = original.clone();
        // Like OpenSSH's enter_raw_mode: no echo, no line editing, no signal
        // keys, no CR/NL translation; output processing off so the remote
        // pty's own processing is what the user sees.
        raw.input_flags |= InputFlags::IGNPAR;
        raw.input_flags &= !(InputFlags::ISTRIP
            | InputFlags::INLCR
            | InputFlags::IGNCR
            | InputFlags::ICRNL
            | InputFlags::IXON
            | InputFlags::IXANY
            | InputFlags::IXOFF);
        raw.local_flags &= !(LocalFlags::ISIG
            | LocalFlags::ICANON
            | LocalFlags::ECHO
            | LocalFlags::ECHOE
            | LocalFlags::ECHOK
            | LocalFlags::ECHONL
            | LocalFlags::IEXTEN);
        raw.output_flags &= !OutputFlags::OPOST;
        raw.control_chars[Cc::VMIN as usize] = 1;
        raw.control_chars[Cc::VTIME as usize] = 0;
        if let Ok(mut saved) = SAVED.lock() {
            *saved = Some(original);
        }
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSADRAIN, &raw).ok()?;
        Some(RawMode { _private: () })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}

/// Restores the terminal saved by [`RawMode::enter`], if any. Safe to call
/// more than once and from any exit path.
pub fn restore() {
    let saved = SAVED.lock().ok().and_then(|mut saved| saved.take());
    if let Some(original) = saved {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &original);
    }
}

/// Writes sshq's own text (escape answers, notices) to the terminal at
/// once; in raw mode the caller's text carries its own `\r\n`.
pub fn print_now(text: &str) {
    use std::io::Write;
    let mut stderr = std::io::stderr();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
}

/// `~^Z`: gives the terminal back, stops sshq as the shell's job control
/// expects, and takes raw mode again when continued (`fg`).
pub fn suspend() {
    let was_raw = SAVED.lock().map(|saved| saved.is_some()).unwrap_or(false);
    restore();
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGTSTP);
    // Running again: the guard held by the session restores on its way out.
    if was_raw {
        if let Some(raw) = RawMode::enter() {
            std::mem::forget(raw);
        }
    }
}

/// The size of the terminal on `fd`, if it is one.
pub fn window_size_of(fd: BorrowedFd<'_>) -> Option<WindowSize> {
    let mut ws = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the pointed-to struct,
    // which lives for the whole call.
    let rc = unsafe {
        nix::libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            nix::libc::TIOCGWINSZ,
            &mut ws,
        )
    };
    (rc == 0).then_some(WindowSize {
        cols: u32::from(ws.ws_col),
        rows: u32::from(ws.ws_row),
        pix_width: u32::from(ws.ws_xpixel),
        pix_height: u32::from(ws.ws_ypixel),
    })
}

/// The local window size for `pty-req`: stdin's terminal, else stdout's,
/// else 80x24 (what OpenSSH sends when it cannot tell).
pub fn local_window_size() -> WindowSize {
    window_size_of(std::io::stdin().as_fd())
        .or_else(|| window_size_of(std::io::stdout().as_fd()))
        .filter(|ws| ws.cols > 0 && ws.rows > 0)
        .unwrap_or(WindowSize {
            cols: 80,
            rows: 24,
            pix_width: 0,
            pix_height: 0,
        })
}

/// RFC 4254 §8 opcodes for the control characters.
const CHAR_OPCODES: &[(u8, Cc)] = &[
    (1, Cc::VINTR),
    (2, Cc::VQUIT),
    (3, Cc::VERASE),
    (4, Cc::VKILL),
    (5, Cc::VEOF),
    (6, Cc::VEOL),
    (7, Cc::VEOL2),
    (8, Cc::VSTART),
    (9, Cc::VSTOP),
    (10, Cc::VSUSP),
    (12, Cc::VREPRINT),
    (13, Cc::VWERASE),
    (14, Cc::VLNEXT),
    (18, Cc::VDISCARD),
];

/// RFC 4254 §8 opcodes for the input, local and output flags.
const INPUT_OPCODES: &[(u8, InputFlags)] = &[
    (30, InputFlags::IGNPAR),
    (31, InputFlags::PARMRK),
    (32, InputFlags::INPCK),
    (33, InputFlags::ISTRIP),
    (34, InputFlags::INLCR),
    (35, InputFlags::IGNCR),
    (36, InputFlags::ICRNL),
    (38, InputFlags::IXON),
    (39, InputFlags::IXANY),
    (40, InputFlags::IXOFF),
    (41, InputFlags::IMAXBEL),
    (42, InputFlags::IUTF8),
];
const LOCAL_OPCODES: &[(u8, LocalFlags)] = &[
    (50, LocalFlags::ISIG),
    (51, LocalFlags::ICANON),
    (53, LocalFlags::ECHO),
    (54, LocalFlags::ECHOE),
    (55, LocalFlags::ECHOK),
    (56, LocalFlags::ECHONL),
    (57, LocalFlags::NOFLSH),
    (58, LocalFlags::TOSTOP),
    (59, LocalFlags::IEXTEN),
    (60, LocalFlags::ECHOCTL),
    (61, LocalFlags::ECHOKE),
    (62, LocalFlags::PENDIN),
];
const OUTPUT_OPCODES: &[(u8, OutputFlags)] = &[
    (70, OutputFlags::OPOST),
    (72, OutputFlags::ONLCR),
    (73, OutputFlags::OCRNL),
    (74, OutputFlags::ONOCR),
    (75, OutputFlags::ONLRET),
];

/// The local terminal's modes as `pty-req` opcode/value pairs, so the remote
/// pty behaves like the local one (erase key, signals, UTF-8, ...). Empty
/// when stdin is not a terminal (-tt without one): the server then uses its
/// defaults, as with OpenSSH.
pub fn local_terminal_modes() -> Vec<(u8, u32)> {
    let Ok(t) = termios::tcgetattr(std::io::stdin().as_fd()) else {
        return Vec::new();
    };
    let mut modes = Vec::new();
    for &(op, cc) in CHAR_OPCODES {
        let value = t.control_chars.get(cc as usize).copied().unwrap_or(0);
        // _POSIX_VDISABLE (0) is sent as 255, as OpenSSH does.
        modes.push((op, if value == 0 { 255 } else { u32::from(value) }));
    }
    for &(op, flag) in INPUT_OPCODES {
        modes.push((op, u32::from(t.input_flags.contains(flag))));
    }
    for &(op, flag) in LOCAL_OPCODES {
        modes.push((op, u32::from(t.local_flags.contains(flag))));
    }
    for &(op, flag) in OUTPUT_OPCODES {
        modes.push((op, u32::from(t.output_flags.contains(flag))));
    }
    modes
}
