//! The keywords that make sshqd look beyond the user's files, with sshd's
//! values and messages (servconf.c, sshd.c): `AuthorizedKeysCommand`,
//! `AuthorizedPrincipalsCommand` and the users they run as,
//! `PermitUserEnvironment` (`~/.ssh/environment` and `environment=`), and
//! `UseDNS` (whether `Match Host` sees the client's name or its address).

use crate::server::auth::keys_command::{self, CommandKind};

/// `PermitUserEnvironment`: may users set session variables through
/// `~/.ssh/environment` and `environment=` key options?
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PermitUserEnvironment {
    #[default]
    No,
    Yes,
    /// A pattern list: only the variable names it matches.
    Only(String),
}

impl PermitUserEnvironment {
    /// Whether a user may set `name` (sshd's match_pattern_list on the
    /// allowlist: some entry matches and no `!` entry does).
    pub fn allows(&self, name: &str) -> bool {
        match self {
            PermitUserEnvironment::No => false,
            PermitUserEnvironment::Yes => true,
            PermitUserEnvironment::Only(list) => {
                let mut matched = false;
                for entry in list.split(',') {
                    match entry.strip_prefix('!') {
                        Some(negated) if sshq_core::pattern::matches(negated, name) => {
                            return false
                        }
                        Some(_) => {}
                        None => matched |= sshq_core::pattern::matches(entry, name),
                    }
                }
                matched
            }
        }
    }
}

/// What these keywords set; every default is sshd's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginSources {
    /// `AuthorizedKeysCommand` as written (`None` for `none`).
    pub authorized_keys_command: Option<String>,
    pub authorized_keys_command_user: Option<String>,
    /// `AuthorizedPrincipalsCommand` as written (`None` for `none`).
    pub authorized_principals_command: Option<String>,
    pub authorized_principals_command_user: Option<String>,
    pub permit_user_environment: PermitUserEnvironment,
    /// `UseDNS` (default no): `Match Host` then sees the client's address.
    pub use_dns: bool,
}

/// Why a line of these keywords is refused, in sshd's words where sshd has
/// them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginSourceError {
    #[error("{0} must be an absolute path")]
    NotAbsolute(String),
    #[error("missing {0} argument.")]
    MissingArgument(String),
    #[error("{0}")]
    Command(#[from] keys_command::CommandLineError),
    #[error("{0}: not a keyword of these settings")]
    NotOurs(String),
}

/// The keywords [`LoginSources::apply`] takes.
pub const KEYWORDS: &[&str] = &[
    "authorizedkeyscommand",
    "authorizedkeyscommanduser",
    "authorizedprincipalscommand",
    "authorizedprincipalscommanduser",
    "permituserenvironment",
    "usedns",
];

impl LoginSources {
    /// Applies one of [`KEYWORDS`] (`kw` lower case, `keyword` as written,
    /// `rest` the line after the keyword as written, `args` its words,
    /// `flag` the yes/no value of UseDNS); `fresh` is false when the
    /// keyword was set before (the first value wins, as in sshd).
    pub fn apply(
        &mut self,
        kw: &str,
        keyword: &str,
        rest: &str,
        args: &[String],
        flag: Option<bool>,
        fresh: bool,
    ) -> Result<(), LoginSourceError> {
        match kw {
            "authorizedkeyscommand" | "authorizedprincipalscommand" => {
                // The rest of the line, quotes and all: it is split into
                // arguments when it runs, as sshd does.
                let command = rest.trim();
                let none = command.eq_ignore_ascii_case("none");
                if !command.starts_with('/') && !none {
                    return Err(LoginSourceError::NotAbsolute(keyword.to_string()));
                }
                let kind = if kw == "authorizedkeyscommand" {
                    CommandKind::Keys
                } else {
                    CommandKind::Principals
                };
                if !none {
                    keys_command::check_command_line(kind, command)?;
                }
                let slot = match kind {
                    CommandKind::Keys => &mut self.authorized_keys_command,
                    CommandKind::Principals => &mut self.authorized_principals_command,
                };
                if fresh {
                    *slot = (!none).then(|| command.to_string());
                }
            }
            "authorizedkeyscommanduser" | "authorizedprincipalscommanduser" => {
                let Some(user) = args.first().filter(|user| !user.is_empty()) else {
                    return Err(LoginSourceError::MissingArgument(keyword.to_string()));
                };
                let slot = if kw == "authorizedkeyscommanduser" {
                    &mut self.authorized_keys_command_user
                } else {
                    &mut self.authorized_principals_command_user
                };
                if fresh {
                    *slot = Some(user.clone());
                }
            }
            "permituserenvironment" => {
                let Some(value) = args.first().filter(|value| !value.is_empty()) else {
                    return Err(LoginSourceError::MissingArgument(keyword.to_string()));
                };
                // Case matters, as in sshd: `Yes` is a pattern.
                let permit = match value.as_str() {
                    "yes" => PermitUserEnvironment::Yes,
                    "no" => PermitUserEnvironment::No,
                    list => PermitUserEnvironment::Only(list.to_string()),
                };
                if fresh {
                    self.permit_user_environment = permit;
                }
            }
            "usedns" => match flag {
                Some(value) if fresh => self.use_dns = value,
                Some(_) => {}
                None => return Err(LoginSourceError::NotOurs(keyword.to_string())),
            },
            _ => return Err(LoginSourceError::NotOurs(keyword.to_string())),
        }
        Ok(())
    }

    /// sshd.c's check after reading the configuration: a command without
    /// the user to run it as is a fatal error.
    pub fn check(&self) -> Result<(), String> {
        if self.authorized_keys_command.is_some() && self.authorized_keys_command_user.is_none() {
            return Err("AuthorizedKeysCommand set without AuthorizedKeysCommandUser".into());
        }
        if self.authorized_principals_command.is_some()
            && self.authorized_principals_command_user.is_none()
        {
            return Err(
                "AuthorizedPrincipalsCommand set without AuthorizedPrincipalsCommandUser".into(),
            );
        }
        Ok(())
    }
}

/// The text of a configuration line after its keyword and the `=` or
/// blanks that follow it: what sshd gives the command keywords.
pub fn rest_of_line(raw: &str) -> &str {
    let line = raw.trim_start();
    let after_keyword = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .map_or("", |end| &line[end..]);
    let after_keyword = after_keyword.trim_start();
    after_keyword
        .strip_prefix('=')
        .unwrap_or(after_keyword)
        .trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(line: &str) -> Result<LoginSources, LoginSourceError> {
        let mut sources = LoginSources::default();
        let (keyword, args) = crate::config_syntax::split_line(line).unwrap().unwrap();
        let kw = keyword.to_ascii_lowercase();
        let flag = (kw == "usedns").then(|| args[0] == "yes");
        sources.apply(&kw, &keyword, rest_of_line(line), &args, flag, true)?;
        Ok(sources)
    }

    #[test]
    fn commands_as_sshd_reads_them() {
        let set = apply(r#"AuthorizedKeysCommand /usr/bin/keys "%u" -f %f"#).unwrap();
        assert_eq!(
            set.authorized_keys_command.as_deref(),
            Some(r#"/usr/bin/keys "%u" -f %f"#)
        );
        let set = apply("AuthorizedKeysCommand=none").unwrap();
        assert_eq!(set.authorized_keys_command, None);
        assert_eq!(
            apply("AuthorizedKeysCommand keys %u")
                .unwrap_err()
                .to_string(),
            "AuthorizedKeysCommand must be an absolute path"
        );
        // A token the principals command has is unknown to the keys one.
        assert!(apply("AuthorizedKeysCommand /bin/k %i").is_err());
        assert!(apply("AuthorizedPrincipalsCommand /bin/k %i %s %F %K %T").is_ok());
        assert!(keys_command::check_command_line(CommandKind::Keys, r#"/bin/k "open"#).is_err());
        let set = apply("AuthorizedKeysCommandUser nobody").unwrap();
        assert_eq!(set.authorized_keys_command_user.as_deref(), Some("nobody"));
    }

    #[test]
    fn a_command_needs_its_user() {
        let mut sources = apply("AuthorizedKeysCommand /bin/k").unwrap();
        assert_eq!(
            sources.check().unwrap_err(),
            "AuthorizedKeysCommand set without AuthorizedKeysCommandUser"
        );
        sources.authorized_keys_command_user = Some("nobody".into());
        assert!(sources.check().is_ok());
    }

    #[test]
    fn permit_user_environment_values() {
        let allowed =
            |line: &str, name: &str| apply(line).unwrap().permit_user_environment.allows(name);
        assert!(!allowed("PermitUserEnvironment no", "LANG"));
        assert!(allowed("PermitUserEnvironment yes", "LANG"));
        assert!(allowed("PermitUserEnvironment LANG,LC_*", "LC_ALL"));
        assert!(!allowed("PermitUserEnvironment LANG,LC_*", "PATH"));
        assert!(!allowed("PermitUserEnvironment *,!LD_*", "LD_PRELOAD"));
        assert!(allowed("PermitUserEnvironment *,!LD_*", "TZ"));
    }

    #[test]
    fn rest_of_line_keeps_quotes() {
        assert_eq!(rest_of_line("  Key = /a 'b c'  "), "/a 'b c'");
        assert_eq!(rest_of_line("Key\t/a"), "/a");
        assert_eq!(rest_of_line("Key"), "");
    }
}
