//! The variables a user sets for their own sessions under
//! PermitUserEnvironment, as sshd's do_setup_env: the `environment=`
//! options of the authorized_keys line they logged in with, then
//! `~/.ssh/environment` (read with the user's rights), each name checked
//! against PermitUserEnvironment's pattern list. They replace sshd's
//! basic variables (USER, PATH, ...), but not SSH_CLIENT, SSH_CONNECTION,
//! SSH_TTY or SSH_ORIGINAL_COMMAND, which sshd sets after them; PAM's
//! variables come after them too.

use std::path::Path;

use crate::fs_identity::{as_identity_within, Identity};
use crate::server::auth::LOOKUP_LIMIT;
use crate::server::config::PermitUserEnvironment;
use crate::server::context::SessionContext;

/// sshd's limit on the lines of ~/.ssh/environment: more is fatal to the
/// session.
const MAX_LINES: usize = 1000;

/// Why the user's environment stops the session.
#[derive(Debug, thiserror::Error)]
#[error("Too many lines in environment file {0}")]
pub struct TooManyLines(pub String);

/// The user's variables for a session of `ctx`, in the order sshd sets
/// them (a later one for a name replaces an earlier one).
pub async fn user_environment(ctx: &SessionContext) -> Result<Vec<(String, String)>, TooManyLines> {
    let permit = &ctx.permit_user_environment;
    if *permit == PermitUserEnvironment::No {
        return Ok(Vec::new());
    }
    let mut vars: Vec<(String, String)> = ctx
        .key_options
        .environment
        .iter()
        .filter_map(|entry| entry.split_once('='))
        .filter(|(name, _)| permit.allows(name))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    let path = ctx.user.home.join(".ssh/environment");
    let identity = Identity::User {
        name: ctx.user.name.clone(),
        uid: ctx.user.uid,
        gid: ctx.user.gid,
    };
    let file = path.clone();
    let read = as_identity_within(&identity, None, LOOKUP_LIMIT, move || {
        crate::server::auth::read_limited(&file)
    })
    .await;
    let text = match read {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vars),
        Err(e) => {
            tracing::info!("{}: cannot read {}: {e}", ctx.peer, path.display());
            return Ok(vars);
        }
    };
    vars.extend(environment_file(&text, &path, permit)?);
    Ok(vars)
}

/// The variables of an environment file's text: `NAME=value` lines,
/// blank lines and `#` comments skipped, a line without `=` reported.
fn environment_file(
    text: &str,
    path: &Path,
    permit: &PermitUserEnvironment,
) -> Result<Vec<(String, String)>, TooManyLines> {
    let mut vars = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if number >= MAX_LINES {
            return Err(TooManyLines(path.display().to_string()));
        }
        let line = line.trim_start_matches([' ', '\t']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            tracing::info!("Bad line {} in {}", number + 1, path.display());
            continue;
        };
        if permit.allows(name) {
            vars.push((name.to_string(), value.to_string()));
        }
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_file_lines() {
        let text = "# comment\n\n  A=1\nB=two=2\nnot a line\nLD_PRELOAD=x\nC=\n";
        let path = Path::new("env");
        let all = environment_file(text, path, &PermitUserEnvironment::Yes).unwrap();
        let names: Vec<(&str, &str)> = all.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(
            names,
            [("A", "1"), ("B", "two=2"), ("LD_PRELOAD", "x"), ("C", "")]
        );
        let some = PermitUserEnvironment::Only("*,!LD_*".into());
        let kept = environment_file(text, path, &some).unwrap();
        assert!(kept.iter().all(|(name, _)| name != "LD_PRELOAD"));
        assert_eq!(kept.len(), 3);
        let long = "A=1\n".repeat(MAX_LINES + 1);
        assert!(environment_file(&long, path, &PermitUserEnvironment::Yes).is_err());
        assert!(environment_file(
            &"A=1\n".repeat(MAX_LINES),
            path,
            &PermitUserEnvironment::Yes
        )
        .is_ok());
    }
}
