//! The configuration-file syntax ssh_config and sshd_config share, as
//! OpenSSH reads it (line splitting, quoting, times, ports, `Include`
//! globs, LogLevel), and the wording of I/O errors in its messages. Both
//! the client's and the server's configuration build on it; neither
//! depends on the other.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sshq_core::pattern::matches;

/// One line per error, for the `Terminating` summaries.
pub fn lines_of<E: std::fmt::Display>(errors: &[E]) -> String {
    errors.iter().map(|e| format!("{e}\n")).collect()
}

/// Logging verbosity, as in OpenSSH's `LogLevel` (`DEBUG` is `DEBUG1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Quiet,
    Fatal,
    Error,
    Info,
    Verbose,
    Debug1,
    Debug2,
    Debug3,
}

#[rustfmt::skip]
const LEVELS: &[(&str, LogLevel)] = &[
    ("QUIET", LogLevel::Quiet), ("FATAL", LogLevel::Fatal), ("ERROR", LogLevel::Error),
    ("INFO", LogLevel::Info), ("VERBOSE", LogLevel::Verbose), ("DEBUG", LogLevel::Debug1),
    ("DEBUG1", LogLevel::Debug1), ("DEBUG2", LogLevel::Debug2), ("DEBUG3", LogLevel::Debug3),
];

impl LogLevel {
    /// Parses a level name, ignoring case as OpenSSH does.
    pub fn parse(s: &str) -> Option<Self> {
        LEVELS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(_, l)| *l)
    }

    /// The name OpenSSH prints for the level (the first spelling in its table).
    pub fn as_str(self) -> &'static str {
        LEVELS
            .iter()
            .find(|(_, l)| *l == self)
            .map_or("INFO", |(n, _)| n)
    }

    /// The `tracing` filter directive that shows what this level shows.
    pub fn tracing_filter(self) -> &'static str {
        match self {
            Self::Quiet => "off",
            Self::Fatal | Self::Error => "error",
            Self::Info | Self::Verbose => "info",
            Self::Debug1 | Self::Debug2 => "debug",
            Self::Debug3 => "trace",
        }
    }
}

impl std::fmt::Display for LogLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `StreamLocalBindMask`: an octal umask from 0 to 0777 (client and server).
pub fn parse_bind_mask(v: &str) -> Option<u32> {
    if v.is_empty() || !v.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(v, 8).ok().filter(|mask| *mask <= 0o777)
}

/// For a keyword of a table of unsupported keywords and their defaults: whether
/// `args` depart from the default (honouring them would need the missing feature);
/// `None` if the keyword is not in the table.
pub fn departs_from_default(table: &[(&str, &str)], kw: &str, args: &[String]) -> Option<bool> {
    let (_, default) = table.iter().find(|(name, _)| *name == kw)?;
    Some(!matches!(args, [v] if !default.is_empty() && v.eq_ignore_ascii_case(default)))
}

/// Splits a configuration line into its keyword and arguments as OpenSSH 9.2 does:
/// the keyword ends at whitespace or `=` (so `K v`, `K=v` and `K = v` are alike),
/// arguments are whitespace-separated with `"`/`'` quoting and `\` escapes, and an
/// unquoted `#` starting an argument ends the line. `None` for blank and comment lines.
pub fn split_line(line: &str) -> Result<Option<(String, Vec<String>)>, &'static str> {
    fn skip_space(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
    }
    let mut chars = line.chars().peekable();
    skip_space(&mut chars);
    let mut keyword = String::new();
    if chars.next_if_eq(&'"').is_some() {
        keyword = chars.by_ref().take_while(|c| *c != '"').collect();
    } else {
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            keyword.push(c);
        }
    }
    if keyword.is_empty() || keyword.starts_with('#') {
        return Ok(None);
    }
    skip_space(&mut chars);
    chars.next_if_eq(&'=');
    if keyword.eq_ignore_ascii_case("proxycommand") {
        // A shell command: ssh takes the rest of the line as it stands.
        let command: String = chars.collect();
        let command = command.trim();
        let args = if command.is_empty() {
            vec![]
        } else {
            vec![command.to_string()]
        };
        return Ok(Some((keyword, args)));
    }
    let mut args = Vec::new();
    loop {
        skip_space(&mut chars);
        if chars.peek().is_none_or(|c| *c == '#') {
            return Ok(Some((keyword, args)));
        }
        let mut arg = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, c) if c.is_whitespace() => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (_, '\\') => {
                    let escapable =
                        |n: &char| matches!(n, '"' | '\'' | '\\') || (quote.is_none() && *n == ' ');
                    arg.push(chars.next_if(escapable).unwrap_or('\\'));
                }
                (_, c) => arg.push(c),
            }
        }
        if quote.is_some() {
            return Err("invalid quotes");
        }
        args.push(arg);
    }
}

/// A byte count: a number with an optional K, M or G suffix (powers of
/// 1024, any case), as OpenSSH writes sizes (`RekeyLimit 1G`).
pub fn parse_size(s: &str) -> Option<usize> {
    let (digits, unit) = match s.char_indices().last()? {
        (at, c) if c.is_ascii_alphabetic() => (s.get(..at)?, c.to_ascii_uppercase()),
        _ => (s, ' '),
    };
    let multiplier: usize = match unit {
        ' ' => 1,
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        _ => return None,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<usize>().ok()?.checked_mul(multiplier)
}

/// A time that may be switched off, as QuicIdleTimeout and QuicKeepAlive
/// are: `none` or `0` give `Some(None)`; anything else as [`parse_duration`].
pub fn parse_duration_or_none(s: &str) -> Option<Option<Duration>> {
    if s.eq_ignore_ascii_case("none") {
        return Some(None);
    }
    parse_duration(s).map(|d| (!d.is_zero()).then_some(d))
}

/// Parses OpenSSH's time format: a plain number of seconds, or a sequence of
/// number+unit with units s, m, h, d, w (any case), e.g. `1h30m`; sshq also
/// accepts `ms` because QUIC fallback wants sub-second values.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    let mut total_ms: u64 = 0;
    let mut num: Option<u64> = None;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if let Some(d) = c.to_digit(10) {
            num = Some(
                num.unwrap_or(0)
                    .checked_mul(10)?
                    .checked_add(u64::from(d))?,
            );
            continue;
        }
        let unit_ms: u64 = match c.to_ascii_lowercase() {
            's' => 1_000,
            'm' if chars.next_if(|c| c.eq_ignore_ascii_case(&'s')).is_some() => 1,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            'w' => 604_800_000,
            _ => return None,
        };
        total_ms = total_ms.checked_add(num.take()?.checked_mul(unit_ms)?)?;
    }
    if let Some(n) = num {
        total_ms = total_ms.checked_add(n.checked_mul(1_000)?)?;
    }
    Some(Duration::from_millis(total_ms))
}

/// Parses a TCP/UDP port: decimal digits only, 1 to 65535 (0 is refused as by OpenSSH).
pub fn parse_port(s: &str) -> Option<u16> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    s.parse::<u16>().ok().filter(|p| digits && *p != 0)
}

/// Expands `*` and `?` in any component of a path, like glob(3) for `Include`:
/// only existing paths, sorted, hidden entries only for patterns starting with `.`.
pub fn glob_paths(pattern: &Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::new()];
    for comp in pattern.components() {
        let text = comp.as_os_str().to_string_lossy();
        if !text.contains(['*', '?']) {
            found.iter_mut().for_each(|p| p.push(comp));
            continue;
        }
        let wanted =
            |n: &String| (text.starts_with('.') || !n.starts_with('.')) && matches(&text, n);
        let mut next = Vec::new();
        for dir in &found {
            let entries = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .filter_map(Result::ok);
            let mut names: Vec<String> = entries
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(wanted)
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| dir.join(n)));
        }
        found = next;
    }
    found.retain(|p| p.exists());
    found
}

/// An I/O error as C's strerror words it (what OpenSSH prints), without Rust's "(os error N)".
pub fn io_reason(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}
