//! What the client sets up on a connection for -L, -D and -R (and
//! LocalForward, DynamicForward, RemoteForward), reported as ssh reports
//! it. A forward that cannot be set up is a warning and the session carries
//! on, unless ExitOnForwardFailure is set: then sshq exits with status 255,
//! as ssh does.

use std::sync::Arc;

use sshq_core::transport::Connection;
use tokio::task::JoinSet;

use super::remote::{OnRefusal, RemoteForwards};
use super::socks::{self, DynamicForward};
use super::spec::Forward;
use super::unix_socket::{BindOptions, SocketFile};
use super::ForwardError;
use crate::client::config::ClientOptions;

/// Every forward asked for, and how to set them up.
#[derive(Debug, Clone, Default)]
pub struct ClientForwards {
    pub local: Vec<Forward>,
    pub dynamic: Vec<DynamicForward>,
    pub remote: Vec<Forward>,
    /// ExitOnForwardFailure.
    pub exit_on_failure: bool,
    /// StreamLocalBindUnlink and StreamLocalBindMask, for -L sockets.
    pub bind: BindOptions,
    /// -q / LogLevel QUIET: no warnings.
    pub quiet: bool,
}

/// The running -L and -D listeners; dropping this stops them and removes
/// their socket files.
pub struct Listeners {
    _tasks: JoinSet<()>,
    _files: Vec<SocketFile>,
}

impl ClientForwards {
    /// Reads the command line's arguments, then the configuration's (the
    /// order ssh sets them up in).
    pub fn parse(
        local: &[String],
        remote: &[String],
        dynamic: &[String],
        options: &ClientOptions,
        quiet: bool,
    ) -> Result<ClientForwards, ForwardError> {
        let local = local
            .iter()
            .chain(&options.local_forwards)
            .map(|s| Forward::parse_local(s))
            .collect::<Result<_, _>>()?;
        let remote = remote
            .iter()
            .chain(&options.remote_forwards)
            .map(|s| Forward::parse_remote(s))
            .collect::<Result<_, _>>()?;
        let dynamic = dynamic
            .iter()
            .chain(&options.dynamic_forwards)
            .map(|s| DynamicForward::parse(s))
            .collect::<Result<_, _>>()?;
        let defaults = BindOptions::default();
        Ok(ClientForwards {
            local,
            dynamic,
            remote,
            exit_on_failure: options.exit_on_forward_failure.unwrap_or(false),
            bind: BindOptions {
                unlink_first: options
                    .stream_local_bind_unlink
                    .unwrap_or(defaults.unlink_first),
                mask: options.stream_local_bind_mask.unwrap_or(defaults.mask),
            },
            quiet,
        })
    }

    /// Binds every -L and -D listener now, so failures are reported before
    /// the session starts (as ssh does), and starts serving them.
    pub async fn start_listeners<C: Connection>(
        &self,
        conn: Arc<C>,
    ) -> Result<Listeners, ForwardError> {
        let mut listeners = Listeners {
            _tasks: JoinSet::new(),
            _files: Vec::new(),
        };
        for forward in &self.local {
            match super::local::bind(forward, self.bind).await {
                Ok((listener, file)) => {
                    listeners._tasks.spawn(super::local::serve(
                        conn.clone(),
                        listener,
                        forward.target.clone(),
                    ));
                    listeners._files.extend(file);
                }
                Err(failure) => self.listener_failed(&failure)?,
            }
        }
        for forward in &self.dynamic {
            match socks::bind(forward).await {
                Ok(listener) => {
                    listeners._tasks.spawn(socks::serve(conn.clone(), listener));
                }
                Err(failure) => self.listener_failed(&failure)?,
            }
        }
        Ok(listeners)
    }

    /// ssh's report of a listener it could not set up; an error (already
    /// reported) with ExitOnForwardFailure.
    fn listener_failed(&self, failure: &ForwardError) -> Result<(), ForwardError> {
        // As with ssh, -q silences even the fatal form.
        if !self.quiet {
            eprintln!("{failure}");
            eprintln!("Could not request local forwarding.");
        }
        if self.exit_on_failure {
            Err(ForwardError::ExitOnForwardFailure)
        } else {
            Ok(())
        }
    }

    /// Asks the server for every -R (see [`RemoteForwards::request_all`]).
    pub async fn request_remote<C: Connection>(
        &self,
        conn: &C,
        remote: &RemoteForwards,
    ) -> Result<(), ForwardError> {
        let on_refusal = OnRefusal {
            exit: self.exit_on_failure,
            quiet: self.quiet,
        };
        remote.request_all(conn, &self.remote, on_refusal).await
    }
}
