//! ssh's escape sequences: the escape character (`~` by default,
//! `EscapeChar`) typed at the start of a line, followed by a command
//! character. Recognised only at the start of a line (after Enter, or as
//! the first key of the session), as ssh does; anything else passes
//! through unchanged.

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Escape {
    /// `~.`: end the session now.
    Terminate,
    /// `~^Z`: suspend sshq.
    Suspend,
    /// `~?`: list the escapes.
    Help,
    /// `~#`: list forwarded connections.
    ListForwards,
    /// `~s` (sshq's own): transport, path, RTT, loss and reattach state.
    Status,
    /// `~R`: new keys for the connection.
    Rekey,
    /// `~&`: ssh forks into the background; sshq says why it cannot.
    Background,
}

/// What `~&` prints. ssh forks to go on serving forwarded connections in
/// the background; a process with running threads (sshq's runtime) cannot
/// fork safely, so sshq leaves the session as it is and says what works.
pub const NO_BACKGROUND: &str = "~& is not available in sshq: it cannot fork into the background \
     once connected. Start it with -f (and -N) to run in the background.\r\n";

/// One piece of filtered input: bytes to send, or an escape to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Bytes(Vec<u8>),
    Escape(Escape),
    /// `~C`: show ssh's `ssh> ` prompt; what follows is the command line.
    Prompt,
    /// Show these bytes: the command line's own echo (the terminal is raw).
    Echo(Vec<u8>),
    /// The command line, once Enter ends it (empty when cancelled).
    Command(String),
}

/// The longest command line kept (ssh's is 512 bytes).
const MAX_COMMAND: usize = 512;

/// The help `~?` prints, in ssh's shape, with `%c` as the escape character.
pub fn help(escape_char: u8) -> String {
    let c = char::from(escape_char);
    [
        "Supported escape sequences:".to_string(),
        format!(" {c}.   - terminate connection (and any multiplexed sessions)"),
        format!(" {c}^Z  - suspend ssh"),
        format!(" {c}#   - list forwarded connections"),
        format!(" {c}&   - background ssh (not in sshq: use -f)"),
        format!(" {c}C   - open a command line"),
        format!(" {c}R   - request rekey"),
        format!(" {c}s   - show the transport, path and reattach state (sshq)"),
        format!(" {c}?   - this message"),
        format!(" {c}{c}   - send the escape character by typing it twice"),
        "(Note that escapes are only recognized immediately after newline.)".to_string(),
    ]
    .join("\r\n")
        + "\r\n"
}

/// Acts on an escape that stays on this side: `~?`, `~#`, `~^Z`, and
/// `~s` with `status`, what the session has to say about itself. `~.`
/// ends the session, and `~R` needs the connection
/// ([`super::command_line::CommandLine::rekey`]): the caller's to do.
pub fn act_locally(escape: Escape, escape_char: u8, status: &str) {
    match escape {
        Escape::Help => super::terminal::print_now(&help(escape_char)),
        Escape::ListForwards => super::terminal::print_now(&crate::forward::listing::render()),
        Escape::Status => super::terminal::print_now(status),
        Escape::Suspend => super::terminal::suspend(),
        Escape::Background => super::terminal::print_now(NO_BACKGROUND),
        Escape::Terminate | Escape::Rekey => {}
    }
}

/// The state of escape recognition across reads.
#[derive(Debug)]
pub struct EscapeFilter {
    escape_char: u8,
    at_line_start: bool,
    /// The escape character was typed at a line start: the next key decides.
    pending: bool,
    /// After `~C`: the command line typed so far.
    command: Option<Vec<u8>>,
}

const CTRL_Z: u8 = 0x1a;

impl EscapeFilter {
    pub fn new(escape_char: u8) -> EscapeFilter {
        EscapeFilter {
            escape_char,
            at_line_start: true,
            pending: false,
            command: None,
        }
    }

    /// Splits `input` into bytes to send and escapes, in order.
    pub fn filter(&mut self, input: &[u8]) -> Vec<Piece> {
        let mut pieces = Vec::new();
        let mut bytes = Vec::with_capacity(input.len());
        for &b in input {
            if let Some(line) = &mut self.command {
                match b {
                    b'\r' | b'\n' => {
                        let line = String::from_utf8_lossy(line).into_owned();
                        pieces.push(Piece::Echo(b"\r\n".to_vec()));
                        pieces.push(Piece::Command(line));
                        self.command = None;
                        self.at_line_start = true;
                    }
                    // Backspace and DEL: one character back.
                    0x08 | 0x7f if line.pop().is_some() => {
                        pieces.push(Piece::Echo(b"\x08 \x08".to_vec()));
                    }
                    // ^C and ^U: the line is given up.
                    0x03 | 0x15 => {
                        pieces.push(Piece::Echo(b"\r\n".to_vec()));
                        pieces.push(Piece::Command(String::new()));
                        self.command = None;
                        self.at_line_start = true;
                    }
                    0x20..=0x7e if line.len() < MAX_COMMAND => {
                        line.push(b);
                        pieces.push(Piece::Echo(vec![b]));
                    }
                    _ => {}
                }
                continue;
            }
            if self.pending {
                self.pending = false;
                let escape = match b {
                    b'.' => Some(Escape::Terminate),
                    CTRL_Z => Some(Escape::Suspend),
                    b'?' => Some(Escape::Help),
                    b'#' => Some(Escape::ListForwards),
                    b's' => Some(Escape::Status),
                    b'R' => Some(Escape::Rekey),
                    b'&' => Some(Escape::Background),
                    b'C' => {
                        if !bytes.is_empty() {
                            pieces.push(Piece::Bytes(std::mem::take(&mut bytes)));
                        }
                        pieces.push(Piece::Prompt);
                        self.command = Some(Vec::new());
                        continue;
                    }
                    _ => None,
                };
                if let Some(escape) = escape {
                    if !bytes.is_empty() {
                        pieces.push(Piece::Bytes(std::mem::take(&mut bytes)));
                    }
                    pieces.push(Piece::Escape(escape));
                    // After an escape the next key is again at a line start.
                    self.at_line_start = true;
                    continue;
                }
                // `~~` sends one; `~` and anything else send both, as ssh.
                if b != self.escape_char {
                    bytes.push(self.escape_char);
                }
                bytes.push(b);
                self.at_line_start = false;
                continue;
            }
            if self.at_line_start && b == self.escape_char {
                self.pending = true;
                continue;
            }
            bytes.push(b);
            self.at_line_start = b == b'\r' || b == b'\n';
        }
        if !bytes.is_empty() {
            pieces.push(Piece::Bytes(bytes));
        }
        pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(b: &[u8]) -> Piece {
        Piece::Bytes(b.to_vec())
    }

    #[test]
    fn escapes_only_at_line_start() {
        let mut f = EscapeFilter::new(b'~');
        assert_eq!(f.filter(b"~."), [Piece::Escape(Escape::Terminate)]);
        let mut f = EscapeFilter::new(b'~');
        assert_eq!(f.filter(b"a~."), [bytes(b"a~.")]);
        assert_eq!(
            f.filter(b"\r~?x"),
            [bytes(b"\r"), Piece::Escape(Escape::Help), bytes(b"x")]
        );
    }

    #[test]
    fn split_reads_and_doubled_escape() {
        let mut f = EscapeFilter::new(b'~');
        assert_eq!(f.filter(b"ls\r~"), [bytes(b"ls\r")]);
        assert_eq!(f.filter(b"~"), [bytes(b"~")]);
        assert_eq!(f.filter(b"\n~x"), [bytes(b"\n~x")]);
        assert_eq!(
            f.filter(b"\r~\x1a"),
            [bytes(b"\r"), Piece::Escape(Escape::Suspend)]
        );
        assert_eq!(f.filter(b"~s"), [Piece::Escape(Escape::Status)]);
        assert_eq!(
            f.filter(b"\r~R"),
            [bytes(b"\r"), Piece::Escape(Escape::Rekey)]
        );
        assert_eq!(
            f.filter(b"\r~&"),
            [bytes(b"\r"), Piece::Escape(Escape::Background)]
        );
    }

    #[test]
    fn command_line_after_tilde_capital_c() {
        let mut f = EscapeFilter::new(b'~');
        let pieces = f.filter(b"x\r~C-L 80x\x7f:h:80\rls");
        assert_eq!(
            pieces,
            [
                bytes(b"x\r"),
                Piece::Prompt,
                Piece::Echo(b"-".to_vec()),
                Piece::Echo(b"L".to_vec()),
                Piece::Echo(b" ".to_vec()),
                Piece::Echo(b"8".to_vec()),
                Piece::Echo(b"0".to_vec()),
                Piece::Echo(b"x".to_vec()),
                Piece::Echo(b"\x08 \x08".to_vec()),
                Piece::Echo(b":".to_vec()),
                Piece::Echo(b"h".to_vec()),
                Piece::Echo(b":".to_vec()),
                Piece::Echo(b"8".to_vec()),
                Piece::Echo(b"0".to_vec()),
                Piece::Echo(b"\r\n".to_vec()),
                Piece::Command("-L 80:h:80".into()),
                bytes(b"ls"),
            ]
        );
        // ^C gives the line up; split reads keep it.
        let mut f = EscapeFilter::new(b'~');
        assert_eq!(
            f.filter(b"~C-K"),
            [
                Piece::Prompt,
                Piece::Echo(b"-".to_vec()),
                Piece::Echo(b"K".to_vec())
            ]
        );
        assert_eq!(
            f.filter(b"\x03"),
            [Piece::Echo(b"\r\n".to_vec()), Piece::Command(String::new())]
        );
    }

    #[test]
    fn another_escape_character() {
        let mut f = EscapeFilter::new(b'%');
        assert_eq!(
            f.filter(b"~.\r%#"),
            [bytes(b"~.\r"), Piece::Escape(Escape::ListForwards)]
        );
    }
}
