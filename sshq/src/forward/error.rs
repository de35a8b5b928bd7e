//! Why a forward could not be set up, in ssh's words (the client prints
//! them as they are, and ExitOnForwardFailure turns them into exit 255).

use sshq_core::error::TransportError;

use super::socks::BadDynamicForward;
use super::spec::BadForward;
use crate::client::config::io_reason;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// A -L or -D port could not be listened on: ssh's two lines.
    #[error(
        "bind [{address}]:{port}: {}\nchannel_setup_fwd_listener_tcpip: cannot listen to port: {port}",
        io_reason(source)
    )]
    BindPort {
        address: String,
        port: u16,
        source: std::io::Error,
    },
    /// A -L socket path could not be bound.
    #[error("unix_listener: cannot bind to path {path}: {}", io_reason(source))]
    BindPath {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    BadForward(#[from] BadForward),
    #[error("{0}")]
    BadDynamicForward(#[from] BadDynamicForward),
    /// The connection failed while a remote forward was being asked for.
    #[error("remote port forwarding: {0}")]
    Remote(TransportError),
    /// A forward failed with ExitOnForwardFailure set; ssh's lines are
    /// already printed, so this one says nothing more.
    #[error("")]
    ExitOnForwardFailure,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_failure_reads_as_ssh_prints_it() {
        let e = ForwardError::BindPort {
            address: "127.0.0.1".to_string(),
            port: 22,
            source: std::io::Error::from_raw_os_error(13),
        };
        assert_eq!(
            e.to_string(),
            "bind [127.0.0.1]:22: Permission denied\n\
             channel_setup_fwd_listener_tcpip: cannot listen to port: 22"
        );
        assert_eq!(ForwardError::ExitOnForwardFailure.to_string(), "");
    }
}
