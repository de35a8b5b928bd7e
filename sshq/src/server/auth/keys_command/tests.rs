use super::*;
use std::os::unix::fs::PermissionsExt;

#[test]
fn argv_split_as_sshd() {
    let split = |s: &str| argv_split(s).unwrap();
    assert_eq!(split("/bin/k  %u\t%f"), ["/bin/k", "%u", "%f"]);
    assert_eq!(
        split(r#"/bin/k "a b" 'c "d"'"#),
        ["/bin/k", "a b", r#"c "d""#]
    );
    assert_eq!(split(r"/bin/k a\ b \x"), ["/bin/k", "a b", r"\x"]);
    assert_eq!(split(""), Vec::<String>::new());
    assert_eq!(argv_split(r#"/bin/k "open"#), None);
}

#[test]
fn tokens_by_kind() {
    assert!(check_command_line(CommandKind::Keys, "/bin/k %u %U %h %f %k %t %%").is_ok());
    assert!(matches!(
        check_command_line(CommandKind::Keys, "/bin/k %s"),
        Err(CommandLineError::UnknownToken { .. })
    ));
    assert!(matches!(
        check_command_line(CommandKind::Keys, "/bin/k %C"),
        Err(CommandLineError::Unsupported { token: 'C', .. })
    ));
    assert!(matches!(
        check_command_line(CommandKind::Principals, "/bin/k %D"),
        Err(CommandLineError::Unsupported { token: 'D', .. })
    ));
    assert!(check_command_line(CommandKind::Principals, "/bin/k %i %s %F %K %T %k").is_ok());
    // The program itself is not expanded (as in sshd).
    assert!(check_command_line(CommandKind::Keys, "/bin/%x").is_ok());
    assert_eq!(
        expand("a%%b%uc", &[('u', "x".into())]),
        Ok("a%bxc".to_string())
    );
    assert_eq!(expand("a%", &[]), Err(None));
}

/// A script in a fresh directory, with `mode`.
fn script(dir: &Path, body: &str, mode: u32) -> String {
    let path = dir.join("cmd");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.to_string_lossy().into_owned()
}

fn me() -> (String, Owner) {
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap();
    let owner = Owner {
        name: user.name.clone(),
        uid: user.uid.as_raw(),
        home: user.dir,
    };
    (user.name, owner)
}

fn spec(command: String, run_as: &str) -> CommandSpec {
    CommandSpec {
        kind: CommandKind::Keys,
        command,
        run_as: Some(run_as.to_string()),
    }
}

#[tokio::test]
async fn output_status_and_limits() {
    if !nix::unistd::geteuid().is_root() {
        // The program must be owned by root: only root can make one here.
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (name, owner) = me();
    let values = vec![('u', owner.name.clone())];
    // Arguments expanded; the user name alone when there are none.
    let echo = script(dir.path(), "echo \"$# $1 $HOME\"; echo oops >&2", 0o755);
    let out = spec(format!("{echo} %u"), &name)
        .output(&owner, &values)
        .await;
    assert_eq!(
        out.as_deref(),
        Some(format!("1 {name} {}\n", owner.home.display()).as_str())
    );
    let out = spec(echo.clone(), &name).output(&owner, &values).await;
    assert_eq!(
        out.as_deref(),
        Some(format!("1 {name} {}\n", owner.home.display()).as_str())
    );
    // Non-zero exit: nothing.
    let fails = script(dir.path(), "echo key; exit 3", 0o755);
    assert_eq!(spec(fails, &name).output(&owner, &values).await, None);
    // Writable by others: refused before it runs.
    let unsafe_one = script(dir.path(), "echo key", 0o757);
    assert_eq!(spec(unsafe_one, &name).output(&owner, &values).await, None);
    // Too slow: killed within the limit.
    let slow = script(dir.path(), "sleep 30", 0o755);
    let started = std::time::Instant::now();
    let out = spec(slow, &name)
        .output_within(&owner, &values, Duration::from_millis(500))
        .await;
    assert_eq!(out, None);
    assert!(started.elapsed() < Duration::from_secs(10));
    // Too much output: refused.
    let flood = script(dir.path(), "yes key", 0o755);
    assert_eq!(spec(flood, &name).output(&owner, &values).await, None);
    // No such user to run as; no user at all.
    let echo_spec = spec(echo.clone(), "no-such-user-sshq");
    assert_eq!(echo_spec.output(&owner, &values).await, None);
    let no_user = CommandSpec {
        run_as: None,
        ..spec(echo, &name)
    };
    assert_eq!(no_user.output(&owner, &values).await, None);
}
