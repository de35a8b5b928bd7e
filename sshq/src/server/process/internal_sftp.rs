//! Starting `internal-sftp`: sshqd's own binary as the session's program
//! (see `server::sftp` for why and how it becomes the user).

use std::ffi::OsString;
use std::path::Path;

use nix::unistd;
use tokio::process::Child;

use super::{
    child, command_for, nologin_applies, open_pty, start_in_pam_session, start_on_pty,
    start_with_pipes, EnvVars, Handles, SpawnError, SpawnRequest,
};
use crate::server::sftp;

/// Starts the helper for the configured command line `line`
/// (`internal-sftp` and its options), chrooted into `chroot` if given.
pub(super) fn start(
    req: &SpawnRequest,
    line: &str,
    chroot: Option<&Path>,
) -> Result<(Child, Handles), SpawnError> {
    let program = sftp::helper_program();
    // What `ps` shows, as sshd's setproctitle("%s@internal-sftp").
    let mut argv = vec![OsString::from(format!(
        "sshqd: {}@{}",
        req.user.name,
        sftp::INTERNAL_SFTP
    ))];
    argv.extend(sftp::helper_args(&req.user.name, chroot, line));
    let is_root = unistd::geteuid().is_root();
    if let Some(path) = chroot {
        if !is_root {
            return Err(SpawnError::Chroot(
                "server lacks privileges to chroot to ChrootDirectory".to_string(),
            ));
        }
        if req.pam_service.is_some() {
            // The PAM session helper becomes the user before it execs
            // anything: refuse rather than serve outside the chroot.
            return Err(SpawnError::Chroot(
                "ChrootDirectory is not supported with UsePAM yes yet".to_string(),
            ));
        }
        sftp::chroot::check(path).map_err(|refused| SpawnError::Chroot(refused.0))?;
    }
    if let Some(service) = &req.pam_service {
        return start_in_pam_session(req, service, program, argv);
    }
    // Root until it switches: an empty environment (see `server::sftp`).
    let mut cmd = command_for(program, &argv);
    cmd.env_clear();
    let nologin = nologin_applies(&req.user);
    let (setup, report) = child::ChildSetup::for_internal_sftp(req.pty.is_none(), nologin)?;
    let started = match &req.pty {
        None => start_with_pipes(cmd, setup),
        Some(request) => {
            let mut unused = EnvVars::default();
            let pty = open_pty(request, &req.user, is_root, &mut unused)?;
            start_on_pty(cmd, setup, pty)
        }
    };
    started.map_err(|source| report.explain(source, program, &req.user.name))
}
