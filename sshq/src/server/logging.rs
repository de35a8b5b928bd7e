//! Where sshqd's logs go, as with sshd: to syslog (facility SyslogFacility,
//! AUTH by default, tagged `sshqd[pid]`), or to standard error with `-e`
//! or `-d`. Either way every line passes through
//! [`log_escape::control_chars`], as OpenSSH passes every message through
//! strnvis(3): no log site can split a line, even one that forgot to escape
//! peer text with [`log_escape::peer_text`].

use std::ffi::CString;
use std::io::Write;

use sshq_core::log_escape;
use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;

use super::config::ServerConfig;
use super::Cli;

/// The syslog facilities sshd accepts for SyslogFacility.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogFacility {
    Daemon,
    User,
    Auth,
    AuthPriv,
    Local(u8),
}

impl SyslogFacility {
    /// sshd's names, any case (log.c's log_facility_number).
    pub fn parse(name: &str) -> Option<Self> {
        let facility = match name.to_ascii_uppercase().as_str() {
            "DAEMON" => SyslogFacility::Daemon,
            "USER" => SyslogFacility::User,
            "AUTH" => SyslogFacility::Auth,
            "AUTHPRIV" => SyslogFacility::AuthPriv,
            local => {
                let n = local.strip_prefix("LOCAL")?.parse::<u8>().ok()?;
                if n > 7 || local.len() != "LOCAL0".len() {
                    return None;
                }
                SyslogFacility::Local(n)
            }
        };
        Some(facility)
    }

    /// The name [`SyslogFacility::parse`] reads back.
    pub fn name(self) -> String {
        match self {
            SyslogFacility::Daemon => "DAEMON".to_string(),
            SyslogFacility::User => "USER".to_string(),
            SyslogFacility::Auth => "AUTH".to_string(),
            SyslogFacility::AuthPriv => "AUTHPRIV".to_string(),
            SyslogFacility::Local(n) => format!("LOCAL{n}"),
        }
    }

    fn code(self) -> libc::c_int {
        match self {
            SyslogFacility::Daemon => libc::LOG_DAEMON,
            SyslogFacility::User => libc::LOG_USER,
            SyslogFacility::Auth => libc::LOG_AUTH,
            SyslogFacility::AuthPriv => libc::LOG_AUTHPRIV,
            SyslogFacility::Local(n) => libc::LOG_LOCAL0 + (libc::c_int::from(n) << 3),
        }
    }
}

/// Where log lines go and which pass: what sshqd starts with, and what it
/// hands a session holder (`reattach::holder`), so that a held session's
/// lines land where sshqd's do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSetup {
    /// A tracing filter, from LogLevel or `-d`.
    pub filter: String,
    /// syslog with this facility; `None`: standard error.
    pub syslog: Option<SyslogFacility>,
}

/// The setup this process logs with, once [`LogSetup::init`] ran.
static CURRENT: std::sync::OnceLock<LogSetup> = std::sync::OnceLock::new();

impl LogSetup {
    /// LogLevel (or debug with -d), to standard error with `-e` or `-d`,
    /// else to syslog, as sshd does.
    pub fn new(cli: &Cli, config: &ServerConfig) -> LogSetup {
        let level = match cli.debug {
            0 => config.log_level.tracing_filter(),
            1 => "debug",
            _ => "trace",
        };
        LogSetup {
            filter: format!("{level},russh=warn"),
            syslog: (!cli.log_stderr && cli.debug == 0).then_some(config.syslog_facility),
        }
    }

    /// The setup this process started logging with (standard error at
    /// info if it never did).
    pub fn current() -> LogSetup {
        CURRENT.get().cloned().unwrap_or(LogSetup {
            filter: "info".to_string(),
            syslog: None,
        })
    }

    /// Starts logging; the first call in a process wins.
    pub fn init(&self) {
        let filter = tracing_subscriber::EnvFilter::try_new(&self.filter)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_target(false);
        let _ = CURRENT.set(self.clone());
        match self.syslog {
            None => {
                let _ = builder.with_writer(EscapedStderr).try_init();
            }
            Some(facility) => {
                open_syslog(facility);
                // syslog stamps time, host and `sshqd[pid]:` itself.
                let _ = builder
                    .without_time()
                    .with_level(false)
                    .with_writer(Syslog)
                    .try_init();
            }
        }
    }
}

/// Starts logging as [`LogSetup::new`] says.
pub fn init_logging(cli: &Cli, config: &ServerConfig) {
    LogSetup::new(cli, config).init();
}

/// The tag before every syslog line, as sshd uses its program name.
const SYSLOG_IDENT: &std::ffi::CStr = c"sshqd";

fn open_syslog(facility: SyslogFacility) {
    // SAFETY: the ident is a static C string, which openlog keeps a
    // pointer to; the flags and facility are plain integers.
    unsafe { libc::openlog(SYSLOG_IDENT.as_ptr(), libc::LOG_PID, facility.code()) };
}

/// Standard error, one escaped line per event.
struct EscapedStderr;

impl<'a> MakeWriter<'a> for EscapedStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            line: Vec::new(),
            sink: Sink::Stderr,
        }
    }
}

/// syslog(3), with the priority of each event's level.
struct Syslog;

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            line: Vec::new(),
            sink: Sink::Syslog(libc::LOG_INFO),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineWriter {
        // OpenSSH's mapping: error() is LOG_ERR, logit() LOG_INFO, debug LOG_DEBUG.
        let priority = match *meta.level() {
            Level::ERROR => libc::LOG_ERR,
            Level::WARN => libc::LOG_WARNING,
            Level::INFO => libc::LOG_INFO,
            Level::DEBUG | Level::TRACE => libc::LOG_DEBUG,
        };
        LineWriter {
            line: Vec::new(),
            sink: Sink::Syslog(priority),
        }
    }
}

enum Sink {
    Stderr,
    Syslog(libc::c_int),
}

/// Collects one formatted event, then writes it escaped, in one piece, when
/// dropped (tracing makes one writer per event).
struct LineWriter {
    line: Vec<u8>,
    sink: Sink,
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        if text.is_empty() {
            return;
        }
        let escaped = log_escape::control_chars(text);
        match self.sink {
            Sink::Stderr => {
                let _ = writeln!(std::io::stderr().lock(), "{escaped}");
            }
            Sink::Syslog(priority) => {
                // No NUL can remain: control_chars escaped it.
                if let Ok(message) = CString::new(escaped.as_bytes()) {
                    // SAFETY: both strings are NUL-terminated and live for
                    // the call; "%s" makes the message data, not a format.
                    unsafe { libc::syslog(priority, c"%s".as_ptr(), message.as_ptr()) };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facilities_are_read_as_sshd_reads_them() {
        assert_eq!(SyslogFacility::parse("auth"), Some(SyslogFacility::Auth));
        assert_eq!(
            SyslogFacility::parse("AUTHPRIV"),
            Some(SyslogFacility::AuthPriv)
        );
        assert_eq!(
            SyslogFacility::parse("Local7"),
            Some(SyslogFacility::Local(7))
        );
        assert_eq!(SyslogFacility::parse("LOCAL8"), None);
        assert_eq!(SyslogFacility::parse("LOCAL07"), None);
        assert_eq!(SyslogFacility::parse("kern"), None);
        assert_eq!(SyslogFacility::Local(3).code(), libc::LOG_LOCAL3);
    }
}
