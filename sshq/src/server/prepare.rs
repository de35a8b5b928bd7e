//! sshqd before it serves: the command line, the configuration and the host
//! keys, and why any of them stops it, with the exit status sshd gives.

use std::path::PathBuf;

use clap::Parser;
use sshq_core::ssh_key::certificate::CertType;
use sshq_core::ssh_key::{Algorithm, Certificate, PrivateKey};

use super::config::{ServerConfig, ServerConfigError};
use super::{Cli, DEFAULT_CONFIG};

/// sshd's exit status after `usage()` and after a configuration file it
/// cannot open (`load_server_config`: `perror`, `exit(1)`).
const EXIT_USAGE: i32 = 1;
/// sshd's exit status after `fatal()`: a bad configuration, no host keys.
const EXIT_FATAL: i32 = 255;

/// Why sshqd stops before serving.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The command line: clap's text (the usage, or what `--help` and
    /// `--version` print).
    #[error("{}", .0.render())]
    CommandLine(clap::Error),
    /// The configuration file or a `-o` option, in sshd's words.
    #[error("{0}")]
    Config(#[from] ServerConfigError),
    /// The host keys.
    #[error("{0}")]
    HostKeys(#[from] HostKeyError),
}

impl PrepareError {
    /// The exit status sshd uses for the same failure: 0 after `--help`
    /// and `--version`, 1 for a usage error or a configuration file that
    /// cannot be opened, 255 (`fatal()`) for the rest.
    pub fn exit_code(&self) -> i32 {
        use clap::error::ErrorKind;
        match self {
            PrepareError::CommandLine(e)
                if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) =>
            {
                0
            }
            PrepareError::CommandLine(_) => EXIT_USAGE,
            PrepareError::Config(ServerConfigError::Open { .. }) => EXIT_USAGE,
            PrepareError::Config(_) | PrepareError::HostKeys(_) => EXIT_FATAL,
        }
    }
}

/// Parses the command line and configuration, loads host keys, and returns
/// everything the server needs.
pub fn prepare(args: Vec<String>) -> Result<(Cli, ServerConfig, Vec<PrivateKey>), PrepareError> {
    let cli = Cli::try_parse_from(args).map_err(PrepareError::CommandLine)?;
    let default_config = PathBuf::from(DEFAULT_CONFIG);
    let config_path = match &cli.config_file {
        Some(path) => Some(path.as_path()),
        // A missing default file just means defaults, as with sshd's.
        None => default_config.exists().then_some(default_config.as_path()),
    };
    let config = ServerConfig::load(config_path, &cli.options, &cli.ports, &cli.host_keys)?;
    let keys = load_host_keys(&config.host_keys)?;
    Ok((cli, config, keys))
}

/// Reads every HostKey; unreadable ones are reported and skipped, as sshd
/// does, but at least one Ed25519 key is required: it is the identity the
/// QUIC transport presents, so that one known_hosts line serves both.
fn load_host_keys(paths: &[PathBuf]) -> Result<Vec<PrivateKey>, HostKeyError> {
    let mut keys = Vec::new();
    for path in paths {
        let loaded = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| PrivateKey::from_openssh(&text).map_err(|e| e.to_string()));
        match loaded {
            Ok(key) if key.is_encrypted() => {
                eprintln!(
                    "sshqd: host key {} is passphrase-protected; skipped",
                    path.display()
                )
            }
            Ok(key) => keys.push(key),
            Err(e) => eprintln!("sshqd: Unable to load host key \"{}\": {e}", path.display()),
        }
    }
    if keys.is_empty() {
        return Err(HostKeyError::NoHostKeys);
    }
    // Ed25519 first: it is what clients are offered first and what QUIC uses.
    keys.sort_by_key(|k| !matches!(k.algorithm(), Algorithm::Ed25519));
    if !matches!(
        keys.first().map(|k| k.algorithm()),
        Some(Algorithm::Ed25519)
    ) {
        return Err(HostKeyError::NoEd25519);
    }
    Ok(keys)
}

/// Reads every HostCertificate, keeping those that certify one of the
/// host keys; the others are reported and skipped, as sshd does.
pub fn load_host_certificates(paths: &[PathBuf], keys: &[PrivateKey]) -> Vec<Certificate> {
    let mut certificates = Vec::new();
    for path in paths {
        let loaded = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| Certificate::from_openssh(text.trim()).map_err(|e| e.to_string()));
        match loaded {
            Ok(certificate) if certificate.cert_type() != CertType::Host => tracing::error!(
                "HostCertificate {} is a user certificate, not a host certificate; skipped",
                path.display()
            ),
            Ok(certificate)
                if keys
                    .iter()
                    .any(|key| key.public_key().key_data() == certificate.public_key()) =>
            {
                tracing::debug!("host certificate: {}", path.display());
                certificates.push(certificate);
            }
            Ok(_) => tracing::error!(
                "No matching private key for certificate: {}",
                path.display()
            ),
            Err(e) => tracing::error!(
                "Could not load host certificate \"{}\": {e}",
                path.display()
            ),
        }
    }
    certificates
}

/// Why sshqd cannot use its host keys.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    #[error("sshqd: no hostkeys available -- exiting.")]
    NoHostKeys,
    #[error(
        "sshqd: no Ed25519 host key -- exiting. sshqd needs one (it is also its QUIC identity); \
         create it with: ssh-keygen -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key"
    )]
    NoEd25519,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(args: &[&str]) -> PrepareError {
        match prepare(args.iter().map(|a| a.to_string()).collect()) {
            Ok(_) => panic!("{args:?} was accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn exit_codes_are_sshds() {
        assert_eq!(error_of(&["sshqd", "--help"]).exit_code(), 0);
        assert_eq!(error_of(&["sshqd", "-Z"]).exit_code(), EXIT_USAGE);
        let missing = error_of(&["sshqd", "-f", "/nonexistent/sshqd_config"]);
        assert!(matches!(
            missing,
            PrepareError::Config(ServerConfigError::Open { .. })
        ));
        assert_eq!(missing.exit_code(), EXIT_USAGE);
        let bad = error_of(&["sshqd", "-f", "/dev/null", "-o", "NoSuchOption yes"]);
        assert!(matches!(bad, PrepareError::Config(_)), "{bad}");
        assert_eq!(bad.exit_code(), EXIT_FATAL);
        // sshd's fatal() after reading: no AuthenticationMethods list can
        // be satisfied (here: password without UsePAM), also under -t.
        let unsatisfiable = [
            "sshqd",
            "-t",
            "-f",
            "/dev/null",
            "-o",
            "AuthenticationMethods password",
        ];
        let unsatisfiable = error_of(&unsatisfiable);
        assert!(
            matches!(
                unsatisfiable,
                PrepareError::Config(ServerConfigError::Unsatisfiable(_))
            ),
            "{unsatisfiable}"
        );
        assert_eq!(unsatisfiable.exit_code(), EXIT_FATAL);
        let no_keys = error_of(&["sshqd", "-f", "/dev/null", "-h", "/nonexistent/key"]);
        assert!(matches!(
            no_keys,
            PrepareError::HostKeys(HostKeyError::NoHostKeys)
        ));
        assert_eq!(no_keys.exit_code(), EXIT_FATAL);
    }
}
