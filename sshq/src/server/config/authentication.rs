//! The keywords that choose how users prove who they are beyond keys:
//! `UsePAM`, sshq's `PAMServiceName`, `PermitEmptyPasswords` and
//! `AuthenticationMethods`, with sshd's values and sshd's messages
//! (servconf.c, auth2-methods.c, sshd.c).
//!
//! sshqd checks passwords only through PAM: without `UsePAM yes` it offers
//! neither `password` nor `keyboard-interactive`, whatever
//! PasswordAuthentication and KbdInteractiveAuthentication say. With
//! `UsePAM yes` both default to `yes`, as in sshd.

use sshq_core::auth_methods::AuthMethod;

use super::{ServerConfig, ServerConfigError};

/// `AuthenticationMethods`: `any` (one enabled method suffices), or lists
/// of methods that must all succeed, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AuthenticationMethods {
    #[default]
    Any,
    Lists(Vec<MethodList>),
}

/// One comma-separated list of `AuthenticationMethods`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodList {
    /// As written, for log lines.
    pub text: String,
    pub steps: Vec<MethodStep>,
}

/// One method of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MethodStep {
    /// A method sshq speaks (`keyboard-interactive:pam` is keyboard-interactive:
    /// PAM is sshqd's only keyboard-interactive device).
    Method(AuthMethod),
    /// A method sshd knows that sshqd never offers (`hostbased`,
    /// `gssapi-with-mic`, `none`, another keyboard-interactive device):
    /// valid in the file, but a list naming it is skipped, as sshd skips
    /// lists naming a disabled method.
    Unavailable(String),
}

/// What these keywords set (UsePAM and PAMServiceName are
/// [`ServerConfig::use_pam`] and [`ServerConfig::pam_service_name`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthenticationSettings {
    /// `PermitEmptyPasswords` (default no): an empty password is refused
    /// without asking PAM.
    pub permit_empty_passwords: bool,
    pub authentication_methods: AuthenticationMethods,
}

/// Why a line of these keywords is refused, in sshd's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthenticationKeywordError {
    #[error("\"any\" must appear alone in {0}")]
    AnyNotAlone(String),
    #[error("invalid {keyword} method list: Unknown authentication method \"{method}\" in list \"{list}\"")]
    UnknownMethod {
        keyword: String,
        method: String,
        list: String,
    },
    #[error("invalid {0} method list: empty authentication method list")]
    EmptyList(String),
    #[error(
        "PAMServiceName \"{0}\": a PAM service is a file name in /etc/pam.d (no \"/\", not empty)"
    )]
    BadServiceName(String),
    #[error("{0}: not an authentication keyword")]
    NotAuthenticationKeyword(String),
}

/// The keywords [`AuthenticationSettings::apply`] takes.
pub const KEYWORDS: &[&str] = &["authenticationmethods", "permitemptypasswords"];

impl AuthenticationSettings {
    /// Applies one of [`KEYWORDS`] (`kw` lower case, `keyword` as written,
    /// `flag` the yes/no value when the keyword takes one); `fresh` is
    /// false when the keyword was set before (the first value wins, as in
    /// sshd).
    pub fn apply(
        &mut self,
        kw: &str,
        keyword: &str,
        args: &[String],
        flag: Option<bool>,
        fresh: bool,
    ) -> Result<(), AuthenticationKeywordError> {
        match (kw, flag) {
            ("permitemptypasswords", Some(value)) => {
                if fresh {
                    self.permit_empty_passwords = value;
                }
            }
            ("authenticationmethods", _) => {
                let methods = parse_methods(keyword, args)?;
                if fresh {
                    self.authentication_methods = methods;
                }
            }
            _ => {
                let keyword = keyword.to_string();
                return Err(AuthenticationKeywordError::NotAuthenticationKeyword(
                    keyword,
                ));
            }
        }
        Ok(())
    }
}

/// Checks a PAMServiceName value.
pub fn pam_service_name(value: &str) -> Result<String, AuthenticationKeywordError> {
    if value.is_empty() || value.contains('/') {
        return Err(AuthenticationKeywordError::BadServiceName(
            value.to_string(),
        ));
    }
    Ok(value.to_string())
}

/// `AuthenticationMethods any` or lists, as servconf.c reads them.
fn parse_methods(
    keyword: &str,
    args: &[String],
) -> Result<AuthenticationMethods, AuthenticationKeywordError> {
    if args.iter().any(|arg| arg == "any") {
        if args.len() != 1 {
            return Err(AuthenticationKeywordError::AnyNotAlone(keyword.to_string()));
        }
        return Ok(AuthenticationMethods::Any);
    }
    let lists = args
        .iter()
        .map(|list| parse_list(keyword, list))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AuthenticationMethods::Lists(lists))
}

/// One list: every name must be a method sshd knows (auth2-methods.c
/// `auth2_methods_valid`); a `:device` suffix is allowed on any of them.
fn parse_list(keyword: &str, list: &str) -> Result<MethodList, AuthenticationKeywordError> {
    if list.is_empty() {
        return Err(AuthenticationKeywordError::EmptyList(keyword.to_string()));
    }
    let mut steps = Vec::new();
    for entry in list.split(',') {
        let (name, device) = match entry.split_once(':') {
            Some((name, device)) => (name, Some(device)),
            None => (entry, None),
        };
        let step = match (name, device) {
            ("keyboard-interactive", None | Some("pam")) => {
                MethodStep::Method(AuthMethod::KeyboardInteractive)
            }
            ("publickey", None) => MethodStep::Method(AuthMethod::PublicKey),
            ("password", None) => MethodStep::Method(AuthMethod::Password),
            ("publickey" | "password" | "keyboard-interactive", Some(_))
            | ("none" | "hostbased" | "gssapi-with-mic", _) => {
                MethodStep::Unavailable(entry.to_string())
            }
            _ => {
                return Err(AuthenticationKeywordError::UnknownMethod {
                    keyword: keyword.to_string(),
                    method: name.to_string(),
                    list: list.to_string(),
                })
            }
        };
        steps.push(step);
    }
    Ok(MethodList {
        text: list.to_string(),
        steps,
    })
}

impl MethodList {
    /// The list as methods, if every one is in `enabled`; otherwise the
    /// first that is not (sshd's "Disabled method" in the list).
    pub fn enabled_steps(&self, enabled: &[AuthMethod]) -> Result<Vec<AuthMethod>, String> {
        self.steps
            .iter()
            .map(|step| match step {
                MethodStep::Method(method) if enabled.contains(method) => Ok(*method),
                MethodStep::Method(method) => Err(method.name().to_string()),
                MethodStep::Unavailable(name) => Err(name.clone()),
            })
            .collect()
    }

    /// sshd's log line for a list it skips.
    pub fn disabled_line(&self, method: &str) -> String {
        format!(
            "Disabled method \"{method}\" in AuthenticationMethods list \"{}\"",
            self.text
        )
    }
}

impl ServerConfig {
    /// The methods these settings enable: publickey with
    /// PubkeyAuthentication; keyboard-interactive and password only
    /// through PAM (`UsePAM yes`).
    pub fn enabled_methods(&self) -> Vec<AuthMethod> {
        let mut enabled = Vec::new();
        if self.pubkey_authentication {
            enabled.push(AuthMethod::PublicKey);
        }
        if self.use_pam && self.kbd_interactive_authentication {
            enabled.push(AuthMethod::KeyboardInteractive);
        }
        if self.use_pam && self.password_authentication {
            enabled.push(AuthMethod::Password);
        }
        enabled
    }

    /// sshd.c's check after reading the configuration (before `-t`
    /// exits): with AuthenticationMethods lists, at least one must name
    /// only enabled methods, or no one could ever log in. (Match blocks
    /// may change this per connection; sshd cannot check those either.)
    pub fn check_authentication_methods(&self) -> Result<(), ServerConfigError> {
        let AuthenticationMethods::Lists(lists) = &self.authentication.authentication_methods
        else {
            return Ok(());
        };
        let enabled = self.enabled_methods();
        let mut disabled = Vec::new();
        for list in lists {
            match list.enabled_steps(&enabled) {
                Ok(_) => return Ok(()),
                Err(method) => disabled.push(list.disabled_line(&method)),
            }
        }
        let mut message =
            "AuthenticationMethods cannot be satisfied by enabled authentication methods"
                .to_string();
        message.push_str(&format!(" ({})", disabled.join("; ")));
        if !self.use_pam && (self.password_authentication || self.kbd_interactive_authentication) {
            message.push_str(
                "; sshqd checks passwords and keyboard-interactive only through PAM: set UsePAM yes",
            );
        }
        Err(ServerConfigError::Unsatisfiable(message))
    }

    /// What sshqd says once at startup about these settings: password
    /// methods that are asked for but cannot work without PAM.
    pub fn authentication_notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.use_pam {
            return notes;
        }
        for (asked, keyword) in [
            (self.password_authentication, "PasswordAuthentication"),
            (
                self.kbd_interactive_authentication,
                "KbdInteractiveAuthentication",
            ),
        ] {
            if asked {
                notes.push(format!(
                    "{keyword} yes needs UsePAM yes: sshqd checks passwords only through PAM, \
                     so it offers no such method"
                ));
            }
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    fn methods(line: &str) -> Result<AuthenticationMethods, AuthenticationKeywordError> {
        let mut settings = AuthenticationSettings::default();
        settings.apply(
            "authenticationmethods",
            "AuthenticationMethods",
            &args(line),
            None,
            true,
        )?;
        Ok(settings.authentication_methods)
    }

    fn lists(line: &str) -> Vec<Vec<MethodStep>> {
        match methods(line).unwrap() {
            AuthenticationMethods::Lists(lists) => lists.into_iter().map(|l| l.steps).collect(),
            AuthenticationMethods::Any => panic!("{line}: any"),
        }
    }

    use AuthMethod::{KeyboardInteractive as Kbd, Password, PublicKey};
    use MethodStep::{Method, Unavailable};

    #[test]
    fn lists_as_sshd_reads_them() {
        assert_eq!(methods("any").unwrap(), AuthenticationMethods::Any);
        assert_eq!(
            lists("publickey,password publickey,keyboard-interactive:pam"),
            [
                vec![Method(PublicKey), Method(Password)],
                vec![Method(PublicKey), Method(Kbd)]
            ]
        );
        // The same method twice is a real requirement (two keys).
        assert_eq!(
            lists("publickey,publickey"),
            [vec![Method(PublicKey), Method(PublicKey)]]
        );
        // Known to sshd, never offered by sshqd.
        assert_eq!(
            lists("hostbased,password keyboard-interactive:bsdauth"),
            [
                vec![Unavailable("hostbased".into()), Method(Password)],
                vec![Unavailable("keyboard-interactive:bsdauth".into())]
            ]
        );
    }

    #[test]
    fn bad_lists_in_sshds_words() {
        assert_eq!(
            methods("publickey any").unwrap_err().to_string(),
            "\"any\" must appear alone in AuthenticationMethods"
        );
        assert_eq!(
            methods("any publickey").unwrap_err().to_string(),
            "\"any\" must appear alone in AuthenticationMethods"
        );
        assert_eq!(
            methods("publickey,passwd").unwrap_err().to_string(),
            "invalid AuthenticationMethods method list: \
             Unknown authentication method \"passwd\" in list \"publickey,passwd\""
        );
        assert!(matches!(
            methods("publickey,"),
            Err(AuthenticationKeywordError::UnknownMethod { .. })
        ));
        let empty = vec![String::new()];
        let mut settings = AuthenticationSettings::default();
        let got = settings.apply(
            "authenticationmethods",
            "AuthenticationMethods",
            &empty,
            None,
            true,
        );
        assert!(matches!(got, Err(AuthenticationKeywordError::EmptyList(_))));
    }

    #[test]
    fn first_value_wins() {
        let mut settings = AuthenticationSettings::default();
        let kw = "authenticationmethods";
        let keyword = "AuthenticationMethods";
        settings
            .apply(kw, keyword, &args("publickey,password"), None, true)
            .unwrap();
        settings
            .apply(kw, keyword, &args("any"), None, false)
            .unwrap();
        assert!(matches!(
            settings.authentication_methods,
            AuthenticationMethods::Lists(_)
        ));
        settings
            .apply(
                "permitemptypasswords",
                "PermitEmptyPasswords",
                &args("yes"),
                Some(true),
                true,
            )
            .unwrap();
        assert!(settings.permit_empty_passwords);
    }

    #[test]
    fn enabled_steps_name_the_disabled_method() {
        let AuthenticationMethods::Lists(lists) = methods("publickey,password").unwrap() else {
            panic!("any");
        };
        let list = &lists[0];
        assert_eq!(
            list.enabled_steps(&[PublicKey, Password]),
            Ok(vec![PublicKey, Password])
        );
        assert_eq!(list.enabled_steps(&[PublicKey]), Err("password".into()));
        assert_eq!(
            list.disabled_line("password"),
            "Disabled method \"password\" in AuthenticationMethods list \"publickey,password\""
        );
    }

    #[test]
    fn service_names() {
        assert_eq!(pam_service_name("sshd").unwrap(), "sshd");
        assert!(pam_service_name("../etc/x").is_err());
        assert!(pam_service_name("").is_err());
    }
}
