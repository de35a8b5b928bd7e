//! The client's host-key decision, for every transport: known_hosts and
//! StrictHostKeyChecking, through the core's OpenSSH-compatible check.

use std::path::PathBuf;

use sshq_core::auth::ServerKeyVerifier;
use sshq_core::host_key_check::{
    check_host_key, HostKeyCheck, HostKeyVerdict, TtyPrompt, Verbosity,
};
use sshq_core::ssh_key::PublicKey;

use super::config::{ClientOptions, StrictHostKeyChecking};
use super::Plan;

/// Checks a server's host key as ssh would, writing OpenSSH's messages to stderr.
pub struct Verifier {
    host: String,
    port: u16,
    policy: StrictHostKeyChecking,
    user_files: Vec<PathBuf>,
    global_files: Vec<PathBuf>,
    batch_mode: bool,
    verbosity: Verbosity,
}

impl Verifier {
    pub(super) fn new(plan: &Plan) -> Self {
        let options = &plan.options;
        Verifier {
            host: plan.hostname.clone(),
            port: plan.port,
            policy: options.strict_host_key_checking.unwrap_or_default(),
            user_files: user_known_hosts_files(options),
            global_files: options.global_known_hosts_files.clone().unwrap_or_else(|| {
                vec![
                    PathBuf::from("/etc/ssh/ssh_known_hosts"),
                    PathBuf::from("/etc/ssh/ssh_known_hosts2"),
                ]
            }),
            batch_mode: options.batch_mode.unwrap_or(false),
            verbosity: if plan.quiet {
                Verbosity::Quiet
            } else {
                options
                    .log_level
                    .and_then(|level| Verbosity::from_log_level(level.as_str()))
                    .unwrap_or_default()
            },
        }
    }
}

impl Verifier {
    /// The host key types known_hosts already records for this host, in
    /// file order (unreadable files count as empty here; the check itself
    /// reports them).
    pub fn known_key_types(&self) -> Vec<String> {
        let files: Vec<&PathBuf> = self.user_files.iter().chain(&self.global_files).collect();
        sshq_core::known_hosts::KnownHosts::read_files(&files)
            .map(|known| known.known_key_types(&self.host, self.port))
            .unwrap_or_default()
    }
}

impl ServerKeyVerifier for Verifier {
    fn verify(&self, key: &PublicKey) -> bool {
        let mut check = HostKeyCheck::new(&self.host, self.port, &self.user_files);
        check.policy = self.policy;
        check.global_known_hosts = &self.global_files;
        check.batch_mode = self.batch_mode;
        check.verbosity = self.verbosity;
        let mut prompt = TtyPrompt::new();
        let mut stderr = std::io::stderr();
        match check_host_key(&check, key, &mut prompt, &mut stderr) {
            // Untrusted: StrictHostKeyChecking=no let a changed key through.
            // sshq offers no password authentication and no forwarding yet,
            // which is what OpenSSH turns off in that case.
            Ok(HostKeyVerdict::Untrusted) => true,
            Ok(_) => true,
            Err(e) => {
                if !e.already_reported() {
                    eprintln!("{e}");
                }
                false
            }
        }
    }
}

/// UserKnownHostsFile, or OpenSSH's default pair.
fn user_known_hosts_files(options: &ClientOptions) -> Vec<PathBuf> {
    options.user_known_hosts_files.clone().unwrap_or_else(|| {
        vec![
            super::config::expand_tilde("~/.ssh/known_hosts"),
            super::config::expand_tilde("~/.ssh/known_hosts2"),
        ]
    })
}
