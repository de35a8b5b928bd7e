//! The keywords behind certificates and revocation: `TrustedUserCAKeys`,
//! `AuthorizedPrincipalsFile`, `RevokedKeys` and `HostCertificate`, with
//! sshd's values and sshd's messages.

use std::path::{Path, PathBuf};

/// What these keywords set; every default is sshd's (`none`, no
/// certificates).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentitySettings {
    /// `TrustedUserCAKeys`: a file of CA keys whose user certificates are
    /// trusted for every user (with the principal rules below).
    pub trusted_user_ca_keys: Option<PathBuf>,
    /// `AuthorizedPrincipalsFile`, a template (`%h`, `%u`, `%%`;
    /// relative to the home directory), see
    /// [`IdentitySettings::principals_file`].
    pub authorized_principals_file: Option<String>,
    /// `RevokedKeys`: a KRL or a list of public keys never accepted.
    pub revoked_keys: Option<PathBuf>,
    /// `HostCertificate`s, presented with the host keys they certify.
    pub host_certificates: Vec<PathBuf>,
}

/// Why a line of these keywords is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityKeywordError {
    #[error("{0}: expected one argument")]
    OneArgument(String),
    #[error("AuthorizedPrincipalsFile: unknown token {token} in \"{value}\"")]
    UnknownToken { token: String, value: String },
    #[error("{0}: not an identity keyword")]
    NotIdentityKeyword(String),
}

/// The keywords [`IdentitySettings::apply`] takes.
pub const KEYWORDS: &[&str] = &[
    "trustedusercakeys",
    "authorizedprincipalsfile",
    "revokedkeys",
    "hostcertificate",
];

impl IdentitySettings {
    /// Applies one of [`KEYWORDS`] (`kw` lower case, `keyword` as written);
    /// `fresh` is false when the keyword was set before (the first value
    /// wins, as in sshd). The error is sshd's message for the line.
    pub fn apply(
        &mut self,
        kw: &str,
        keyword: &str,
        args: &[String],
        fresh: bool,
    ) -> Result<(), IdentityKeywordError> {
        let [value] = args else {
            return Err(IdentityKeywordError::OneArgument(keyword.to_string()));
        };
        let none = value == "none";
        match kw {
            "trustedusercakeys" => {
                if fresh {
                    self.trusted_user_ca_keys = (!none).then(|| PathBuf::from(value));
                }
            }
            "revokedkeys" => {
                if fresh {
                    self.revoked_keys = (!none).then(|| PathBuf::from(value));
                }
            }
            "authorizedprincipalsfile" => {
                if let Err(token) = super::expand_tokens(value, "u", "/h") {
                    return Err(IdentityKeywordError::UnknownToken {
                        token: token.to_string(),
                        value: value.clone(),
                    });
                }
                if fresh {
                    self.authorized_principals_file = (!none).then(|| value.clone());
                }
            }
            "hostcertificate" => {
                let path = PathBuf::from(value);
                if !self.host_certificates.contains(&path) {
                    self.host_certificates.push(path);
                }
            }
            _ => {
                let keyword = keyword.to_string();
                return Err(IdentityKeywordError::NotIdentityKeyword(keyword));
            }
        }
        Ok(())
    }

    /// The AuthorizedPrincipalsFile of `user`, whose home is `home`:
    /// tokens expanded, a relative path taken from the home directory.
    pub fn principals_file(&self, user: &str, home: &Path) -> Option<PathBuf> {
        let template = self.authorized_principals_file.as_ref()?;
        let home_text = home.to_string_lossy();
        let expanded = super::expand_tokens(template, user, &home_text).ok()?;
        // `join` keeps an absolute path as it is.
        Some(home.join(expanded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(value: &str) -> Vec<String> {
        vec![value.to_string()]
    }

    #[test]
    fn first_value_wins_and_none_means_unset() {
        let mut settings = IdentitySettings::default();
        let kw = "trustedusercakeys";
        settings
            .apply(kw, "TrustedUserCAKeys", &args("/etc/ca.pub"), true)
            .unwrap();
        settings
            .apply(kw, "TrustedUserCAKeys", &args("/other"), false)
            .unwrap();
        assert_eq!(
            settings.trusted_user_ca_keys,
            Some(PathBuf::from("/etc/ca.pub"))
        );
        let mut settings = IdentitySettings::default();
        settings
            .apply("revokedkeys", "RevokedKeys", &args("none"), true)
            .unwrap();
        assert_eq!(settings.revoked_keys, None);
    }

    #[test]
    fn principals_file_tokens_and_relative_paths() {
        let mut settings = IdentitySettings::default();
        let kw = "authorizedprincipalsfile";
        settings
            .apply(
                kw,
                "AuthorizedPrincipalsFile",
                &args(".ssh/principals_%u"),
                true,
            )
            .unwrap();
        assert_eq!(
            settings.principals_file("alice", Path::new("/home/alice")),
            Some(PathBuf::from("/home/alice/.ssh/principals_alice"))
        );
        let err = settings.apply(kw, "AuthorizedPrincipalsFile", &args("/p/%q"), true);
        assert!(matches!(
            err,
            Err(IdentityKeywordError::UnknownToken { .. })
        ));
    }

    #[test]
    fn host_certificates_accumulate() {
        let mut settings = IdentitySettings::default();
        let kw = "hostcertificate";
        settings
            .apply(kw, "HostCertificate", &args("/a-cert.pub"), true)
            .unwrap();
        settings
            .apply(kw, "HostCertificate", &args("/b-cert.pub"), false)
            .unwrap();
        assert_eq!(settings.host_certificates.len(), 2);
    }
}
