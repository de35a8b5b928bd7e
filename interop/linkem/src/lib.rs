//! sshq-linkem: a link emulator for sshq's experiments.
//!
//! Two network namespaces (`NAME-c`, the client, and `NAME-s`, the server)
//! are joined by a TUN device in each; this process moves IP packets between
//! the two devices and impairs them on the way (this kernel has no netem).
//!
//! The impairments are pure state machines driven by the caller's clock
//! ([`link`], [`rebind`]), unit-tested in virtual time; [`emulator`] and
//! [`netns`] are the thin IO shell around them.

pub mod control;
pub mod emulator;
pub mod link;
pub mod netns;
pub mod options;
pub mod rebind;

/// Everything that stops the emulator, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "needs root: creating network namespaces takes CAP_SYS_ADMIN, and TUN devices and \
         addresses take CAP_NET_ADMIN; run it as root (e.g. `sudo sshq-linkem --name lab ...`)"
    )]
    NeedsPrivilege,
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Setup(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl Error {
    /// 2 for what the caller must change (privileges, arguments), as for
    /// usage errors; 1 for failures while running.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NeedsPrivilege | Error::Usage(_) => 2,
            Error::Setup(_) | Error::Io { .. } => 1,
        }
    }
}
