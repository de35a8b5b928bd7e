//! What the spawner hands the PAM session helper: whose session, what to
//! run, with which environment. Both ends are the same binary, but the
//! bytes are still parsed whole and checked.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use super::super::logging::{LogSetup, SyslogFacility};
use super::super::process::SessionUser;
use crate::reattach::wire::{put_string, Reader, WireError};

/// Changes whenever the encoding does.
const VERSION: u32 = 1;

/// The largest plan the helper reads: far beyond any environment a
/// session carries (sshqd bounds the client's), far below memory trouble.
pub(super) const MAX_PLAN: usize = 4 * 1024 * 1024;

/// A session for the helper to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPlan {
    /// PAMServiceName.
    pub service: String,
    pub user: SessionUser,
    /// `"client_ip client_port server_ip server_port"`.
    pub ssh_connection: String,
    /// The pty slave's path, when the session has one.
    pub tty: Option<PathBuf>,
    /// The executable (the user's shell).
    pub program: PathBuf,
    /// Its arguments, argv[0] first.
    pub argv: Vec<OsString>,
    /// sshd's environment for the session, which PAM's may change.
    pub env: Vec<(OsString, OsString)>,
    /// What sshd sets after PAM's environment, so that it wins.
    pub env_after_pam: Vec<(OsString, OsString)>,
    /// A shell session: PAM's messages are shown (unless ~/.hushlogin).
    pub login_messages: bool,
    /// Where sshqd logs, so the helper logs there too.
    pub log: LogSetup,
}

/// A plan that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("plan version {0}, expected {VERSION}")]
    Version(u32),
    #[error("the {0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("the {0} is not 0 or 1")]
    BadFlag(&'static str),
    #[error("unknown syslog facility {0}")]
    Facility(String),
    #[error("the program or an argument contains a NUL byte")]
    Nul,
}

/// PAM variables sshd never copies into the session (session.c's
/// PAM_ENV_DENYLIST): PAM's own copies of the connection and of the
/// authentication details.
const PAM_ENV_DENIED_PREFIXES: &[&[u8]] = &[b"SSH_AUTH_INFO", b"SSH_CONNECTION"];

impl SessionPlan {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&VERSION.to_be_bytes());
        put_string(out, self.service.as_bytes());
        put_string(out, self.user.name.as_bytes());
        out.extend_from_slice(&self.user.uid.to_be_bytes());
        out.extend_from_slice(&self.user.gid.to_be_bytes());
        put_os(out, self.user.home.as_os_str());
        put_os(out, self.user.shell.as_os_str());
        put_string(out, self.ssh_connection.as_bytes());
        match &self.tty {
            None => out.push(0),
            Some(tty) => {
                out.push(1);
                put_os(out, tty.as_os_str());
            }
        }
        put_os(out, self.program.as_os_str());
        put_count(out, self.argv.len());
        for arg in &self.argv {
            put_os(out, arg);
        }
        for env in [&self.env, &self.env_after_pam] {
            put_count(out, env.len());
            for (name, value) in env {
                put_os(out, name);
                put_os(out, value);
            }
        }
        out.push(u8::from(self.login_messages));
        put_string(out, self.log.filter.as_bytes());
        match &self.log.syslog {
            None => out.push(0),
            Some(facility) => {
                out.push(1);
                put_string(out, facility.name().as_bytes());
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<SessionPlan, PlanError> {
        let mut r = Reader::new(bytes, "PAM session plan");
        let version = r.u32()?;
        if version != VERSION {
            return Err(PlanError::Version(version));
        }
        let service = text(&mut r, "PAM service")?;
        let user = SessionUser {
            name: text(&mut r, "user name")?,
            uid: r.u32()?,
            gid: r.u32()?,
            home: PathBuf::from(os(&mut r)?),
            shell: PathBuf::from(os(&mut r)?),
        };
        let ssh_connection = text(&mut r, "SSH_CONNECTION")?;
        let tty = match flag(&mut r, "pty flag")? {
            false => None,
            true => Some(PathBuf::from(os(&mut r)?)),
        };
        let program = PathBuf::from(os(&mut r)?);
        // Pushed one by one: a count is not trusted for a capacity.
        let mut argv = Vec::new();
        for _ in 0..r.u32()? {
            argv.push(os(&mut r)?);
        }
        let mut envs = [Vec::new(), Vec::new()];
        for env in &mut envs {
            for _ in 0..r.u32()? {
                env.push((os(&mut r)?, os(&mut r)?));
            }
        }
        let [env, env_after_pam] = envs;
        let login_messages = flag(&mut r, "login message flag")?;
        let filter = text(&mut r, "log filter")?;
        let syslog = match flag(&mut r, "syslog flag")? {
            false => None,
            true => {
                let name = text(&mut r, "syslog facility")?;
                Some(SyslogFacility::parse(&name).ok_or(PlanError::Facility(name))?)
            }
        };
        r.finish()?;
        Ok(SessionPlan {
            service,
            user,
            ssh_connection,
            tty,
            program,
            argv,
            env,
            env_after_pam,
            login_messages,
            log: LogSetup { filter, syslog },
        })
    }

    /// The client's address, for PAM_RHOST; `None` if unknown.
    pub(super) fn remote_host(&self) -> Option<&str> {
        self.ssh_connection
            .split_whitespace()
            .next()
            .filter(|host| *host != "UNKNOWN")
    }

    /// The program's environment as `NAME=value` strings, merged as sshd's
    /// `do_setup_env` does: ours, then PAM's (which replace ours, save the
    /// denied ones), then those sshd sets last.
    pub(super) fn program_env<'a>(
        &self,
        pam: impl IntoIterator<Item = (&'a OsStr, &'a OsStr)>,
    ) -> Vec<CString> {
        let mut merged: Vec<(OsString, OsString)> = self.env.clone();
        let mut set = |name: &OsStr, value: &OsStr| match merged.iter_mut().find(|(n, _)| n == name)
        {
            Some(entry) => entry.1 = value.to_owned(),
            None => merged.push((name.to_owned(), value.to_owned())),
        };
        for (name, value) in pam {
            let bytes = name.as_bytes();
            if PAM_ENV_DENIED_PREFIXES.iter().any(|p| bytes.starts_with(p)) {
                continue;
            }
            set(name, value);
        }
        for (name, value) in &self.env_after_pam {
            set(name, value);
        }
        merged
            .into_iter()
            .filter_map(|(name, value)| {
                let mut entry = name.into_vec();
                // exec cannot carry these (PAM should never produce them).
                if entry.is_empty() || entry.contains(&b'=') {
                    return None;
                }
                entry.push(b'=');
                entry.extend_from_slice(value.as_bytes());
                CString::new(entry).ok()
            })
            .collect()
    }

    /// The program and its argv for execve.
    pub(super) fn exec_args(&self) -> Result<(CString, Vec<CString>), PlanError> {
        let program =
            CString::new(self.program.as_os_str().as_bytes()).map_err(|_| PlanError::Nul)?;
        let argv = self
            .argv
            .iter()
            .map(|arg| CString::new(arg.as_bytes()).map_err(|_| PlanError::Nul))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((program, argv))
    }
}

fn put_os(out: &mut Vec<u8>, value: &OsStr) {
    put_string(out, value.as_bytes());
}

fn put_count(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

fn os(r: &mut Reader<'_>) -> Result<OsString, WireError> {
    Ok(OsStr::from_bytes(r.string()?).to_owned())
}

fn text(r: &mut Reader<'_>, what: &'static str) -> Result<String, PlanError> {
    String::from_utf8(r.string()?.to_vec()).map_err(|_| PlanError::NotUtf8(what))
}

fn flag(r: &mut Reader<'_>, what: &'static str) -> Result<bool, PlanError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(PlanError::BadFlag(what)),
    }
}
