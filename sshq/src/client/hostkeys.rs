//! The client's host-key decision, for every transport: known_hosts and
//! StrictHostKeyChecking, through the core's OpenSSH-compatible check.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sshq_core::auth::ServerKeyVerifier;
use sshq_core::host_certificate::{
    check_host_certificate, trusts_host_certificates, wants_certificate,
};
use sshq_core::host_key_check::{
    check_host_key, turn_off_untrusted, HostKeyCheck, HostKeyError, HostKeyVerdict, TtyPrompt,
    UntrustedFeature, Verbosity,
};
use sshq_core::ssh_key::{Certificate, PublicKey};

use super::config::{ClientOptions, StrictHostKeyChecking};
use super::Plan;

/// What a connection would hand to whoever holds the server's end, which
/// OpenSSH turns off when a changed host key is let through
/// (StrictHostKeyChecking=no). sshq has no password, keyboard-interactive,
/// X11 or tunnel forwarding, so only these two apply.
#[derive(Debug, Clone, Copy, Default)]
pub struct Exposure {
    /// ForwardAgent (-A) is on.
    pub agent_forwarding: bool,
    /// Some -L, -R or -D forward (command line or ssh_config) is asked for.
    pub port_forwarding: bool,
    /// ExitOnForwardFailure: turning forwarding off ends the connection.
    pub exit_on_forward_failure: bool,
}

impl Exposure {
    // draft §12.11: after a host key mismatch the client MUST NOT forward its agent or ports
    fn features(&self) -> Vec<UntrustedFeature> {
        let mut features = Vec::new();
        if self.agent_forwarding {
            features.push(UntrustedFeature::Agent);
        }
        if self.port_forwarding {
            features.push(UntrustedFeature::PortForwarding);
        }
        features
    }
}

/// Whether a host key was let through untrusted; shared between the
/// verifier, which runs inside a transport's handshake, and the code that
/// sets up forwarding once connected, which must then set up none.
#[derive(Debug, Default)]
pub struct HostKeyTrust {
    untrusted: AtomicBool,
}

impl HostKeyTrust {
    /// Whether agent and port forwarding must stay off on this connection.
    pub fn is_untrusted(&self) -> bool {
        self.untrusted.load(Ordering::SeqCst)
    }

    fn mark_untrusted(&self) {
        self.untrusted.store(true, Ordering::SeqCst);
    }
}

/// Checks a server's host key as ssh would, writing OpenSSH's messages to stderr.
pub struct Verifier {
    host: String,
    port: u16,
    policy: StrictHostKeyChecking,
    user_files: Vec<PathBuf>,
    global_files: Vec<PathBuf>,
    batch_mode: bool,
    verbosity: Verbosity,
    exposure: Exposure,
    trust: Arc<HostKeyTrust>,
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
            exposure: plan.exposure,
            trust: plan.host_key_trust.clone(),
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

impl Verifier {
    /// The core check's parameters for this connection.
    fn check(&self) -> HostKeyCheck<'_> {
        let mut check = HostKeyCheck::new(&self.host, self.port, &self.user_files);
        check.policy = self.policy;
        check.global_known_hosts = &self.global_files;
        check.batch_mode = self.batch_mode;
        check.verbosity = self.verbosity;
        check
    }

    /// Acts on the verdict on a host key or certificate: whether the
    /// connection may go on.
    fn conclude(&self, verdict: Result<HostKeyVerdict, HostKeyError>) -> bool {
        let mut stderr = std::io::stderr();
        match verdict {
            // StrictHostKeyChecking=no let a changed key through: go on, but
            // with nothing a man in the middle could use (OpenSSH's
            // continue_unsafe). The flag is set before the handshake ends, so
            // no forward is ever set up on this connection.
            Ok(HostKeyVerdict::Untrusted) => {
                self.trust.mark_untrusted();
                let features = self.exposure.features();
                let exit = self.exposure.exit_on_forward_failure;
                turn_off_untrusted(&features, exit, self.verbosity, &mut stderr).is_ok()
            }
            Ok(HostKeyVerdict::Known | HostKeyVerdict::Confirmed | HostKeyVerdict::AddedNew) => {
                true
            }
            Err(e) => {
                if !e.already_reported() {
                    eprintln!("{e}");
                }
                false
            }
        }
    }
}

impl ServerKeyVerifier for Verifier {
    fn verify(&self, key: &PublicKey) -> bool {
        let mut prompt = TtyPrompt::new();
        let verdict = check_host_key(&self.check(), key, &mut prompt, &mut std::io::stderr());
        self.conclude(verdict)
    }

    fn trusts_host_certificates(&self) -> bool {
        trusts_host_certificates(&self.check())
    }

    fn wants_certificate(&self, key: &PublicKey) -> bool {
        wants_certificate(&self.check(), key)
    }

    fn verify_certificate(&self, certificate: &Certificate) -> bool {
        let mut prompt = TtyPrompt::new();
        let mut stderr = std::io::stderr();
        let verdict = check_host_certificate(&self.check(), certificate, &mut prompt, &mut stderr);
        self.conclude(verdict)
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
