//! The StrictHostKeyChecking policy and its messages. Expected texts are
//! OpenSSH 9.2's output, byte for byte (its log ends lines with "\r\n"); the
//! last test compares with a live `ssh` talking to `sshd -i` when possible.

mod common;

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use common::{key_text, keygen, keygen_find};
use sshq_core::host_key_check::{
    check_host_key, HostKeyCheck, HostKeyError, HostKeyPrompt, HostKeyVerdict, ServerKey,
    StrictHostKeyChecking, TtyPrompt, Verbosity,
};
use sshq_core::known_hosts::fingerprint_sha256;
use sshq_core::ssh_key::PublicKey;

/// Scripted answers; records every question asked.
#[derive(Default)]
struct Script {
    answers: Vec<&'static str>,
    asked: Vec<String>,
}

impl HostKeyPrompt for Script {
    fn ask(&mut self, prompt: &str) -> io::Result<Option<String>> {
        self.asked.push(prompt.to_string());
        Ok((!self.answers.is_empty()).then(|| self.answers.remove(0).to_string()))
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    server: PublicKey,
    server_pub: PathBuf,
    other_pub: PathBuf,
    files: Vec<PathBuf>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, server_pub) = keygen(dir.path(), "server", "ed25519", &[]);
    let (_, other_pub) = keygen(dir.path(), "other", "ed25519", &[]);
    let files = vec![dir.path().join("known_hosts")];
    Fixture {
        dir,
        server,
        server_pub,
        other_pub,
        files,
    }
}

fn loopback() -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Runs the check for 127.0.0.1:2222; returns result, transcript, questions.
fn check(
    f: &Fixture,
    policy: StrictHostKeyChecking,
    tweak: impl FnOnce(&mut HostKeyCheck<'_>),
    answers: Vec<&'static str>,
) -> (Result<HostKeyVerdict, HostKeyError>, String, Vec<String>) {
    let mut params = HostKeyCheck::new("127.0.0.1", 2222, &f.files);
    params.policy = policy;
    params.ip = loopback();
    tweak(&mut params);
    let mut prompt = Script {
        answers,
        asked: Vec::new(),
    };
    let mut out = Vec::new();
    let result = check_host_key(&params, &f.server, &mut prompt, &mut out);
    (
        result,
        String::from_utf8(out).expect("utf-8 transcript"),
        prompt.asked,
    )
}

fn changed_block(fp: &str, file: &Path, line: usize, offending: &str) -> String {
    let f = file.display();
    format!(
        "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n\
         @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n\
         @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n\
         IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\r\n\
         Someone could be eavesdropping on you right now (man-in-the-middle attack)!\r\n\
         It is also possible that a host key has just been changed.\r\n\
         The fingerprint for the ED25519 key sent by the remote host is\n{fp}.\r\n\
         Please contact your system administrator.\r\n\
         Add correct host key in {f} to get rid of this message.\r\n\
         Offending {offending} key in {f}:{line}\r\n  remove with:\r\n\
         \x20 ssh-keygen -f \"{f}\" -R \"[127.0.0.1]:2222\"\r\n"
    )
}

const STRICT_CHANGED: &str = "Host key for [127.0.0.1]:2222 has changed and you have requested strict checking.\r\nHost key verification failed.\r\n";

#[test]
fn unknown_host_with_strict_checking_is_refused() {
    let f = fixture();
    let (result, out, asked) = check(&f, StrictHostKeyChecking::Yes, |_| {}, vec![]);
    let expected = ServerKey {
        host: "[127.0.0.1]:2222".to_string(),
        key_type: "ED25519",
        fingerprint: fingerprint_sha256(&f.server),
    };
    let err = result.expect_err("strict checking refuses");
    assert!(matches!(&err, HostKeyError::UnknownHost(server) if *server == expected));
    assert!(
        err.to_string().starts_with(&format!(
            "the ED25519 host key {} of [127.0.0.1]:2222 is not known",
            expected.fingerprint
        )),
        "{err}"
    );
    assert_eq!(
        out,
        "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\r\n\
         Host key verification failed.\r\n"
    );
    assert!(asked.is_empty());
    assert!(!f.files[0].exists(), "nothing may be written");
}

#[test]
fn accept_new_and_no_add_the_key_then_it_is_known() {
    for policy in [StrictHostKeyChecking::AcceptNew, StrictHostKeyChecking::No] {
        let f = fixture();
        let (result, out, asked) = check(&f, policy, |_| {}, vec![]);
        assert_eq!(result.ok(), Some(HostKeyVerdict::AddedNew));
        assert_eq!(
            out,
            "Warning: Permanently added '[127.0.0.1]:2222' (ED25519) to the list of known hosts.\r\n"
        );
        assert!(asked.is_empty());
        assert_eq!(keygen_find("[127.0.0.1]:2222", &f.files[0]), [1]);
        assert_eq!(
            fs::read_to_string(&f.files[0]).expect("read"),
            format!("[127.0.0.1]:2222 {}\n", key_text(&f.server_pub))
        );
        // Next time: known, silent, even with strict checking.
        let (result, out, _) = check(&f, StrictHostKeyChecking::Yes, |_| {}, vec![]);
        assert_eq!(result.ok(), Some(HostKeyVerdict::Known));
        assert_eq!(out, "");
    }
}

#[test]
fn hashed_names_are_written_when_asked_and_quiet_is_silent() {
    let f = fixture();
    let (result, out, _) = check(
        &f,
        StrictHostKeyChecking::AcceptNew,
        |p| {
            p.hash_known_hosts = true;
            p.verbosity = Verbosity::Quiet;
        },
        vec![],
    );
    assert_eq!(result.ok(), Some(HostKeyVerdict::AddedNew));
    assert_eq!(out, "");
    let text = fs::read_to_string(&f.files[0]).expect("read");
    assert!(
        text.starts_with("|1|") && !text.contains("127.0.0.1"),
        "{text}"
    );
    assert_eq!(keygen_find("[127.0.0.1]:2222", &f.files[0]), [1]);
}

#[test]
fn ask_shows_openssh_question_and_accepts_yes_or_fingerprint() {
    let f = fixture();
    let fp = fingerprint_sha256(&f.server);
    let question = format!(
        "The authenticity of host '[127.0.0.1]:2222 ([127.0.0.1]:2222)' can't be established.\n\
         ED25519 key fingerprint is {fp}.\n\
         This key is not known by any other names.\n\
         Are you sure you want to continue connecting (yes/no/[fingerprint])? "
    );
    let again = "Please type 'yes', 'no' or the fingerprint: ";
    let fp_answer: &'static str = Box::leak(format!("  {fp} trailing").into_boxed_str());
    let (result, out, asked) = check(
        &f,
        StrictHostKeyChecking::Ask,
        |_| {},
        vec!["maybe", "sha256:wrong", fp_answer],
    );
    assert_eq!(result.ok(), Some(HostKeyVerdict::Confirmed));
    assert_eq!(asked, [question.as_str(), again, again]);
    assert_eq!(
        out,
        "Warning: Permanently added '[127.0.0.1]:2222' (ED25519) to the list of known hosts.\r\n"
    );
    assert_eq!(keygen_find("[127.0.0.1]:2222", &f.files[0]), [1]);
}

#[test]
fn ask_refuses_on_no_on_end_of_input_and_in_batch_mode() {
    let f = fixture();
    for answers in [vec!["No"], vec![""], vec![]] {
        let (result, out, asked) = check(&f, StrictHostKeyChecking::Ask, |_| {}, answers);
        assert!(matches!(
            result,
            Err(HostKeyError::NotConfirmed {
                batch_mode: false,
                ..
            })
        ));
        assert_eq!(out, "Host key verification failed.\r\n");
        assert_eq!(asked.len(), 1);
    }
    let (result, out, asked) = check(
        &f,
        StrictHostKeyChecking::Ask,
        |p| p.batch_mode = true,
        vec!["yes"],
    );
    let err = result.expect_err("batch mode cannot ask");
    assert!(err.to_string().contains("BatchMode"), "{err}");
    assert!(err.already_reported());
    assert_eq!(out, "Host key verification failed.\r\n");
    assert!(asked.is_empty(), "BatchMode must not ask");
    assert!(!f.files[0].exists());
}

#[test]
fn ask_lists_other_names_of_the_same_key() {
    let f = fixture();
    let key = key_text(&f.server_pub);
    fs::write(&f.files[0], format!("alias.example,10.9.9.9 {key}\n")).expect("write");
    let (_, _, asked) = check(&f, StrictHostKeyChecking::Ask, |_| {}, vec!["no"]);
    let expected = format!(
        "This host key is known by the following other names/addresses:\n    {}:1: alias.example,10.9.9.9\n",
        f.files[0].display()
    );
    assert!(asked[0].contains(&expected), "{}", asked[0]);
}

#[test]
fn changed_key_is_refused_with_the_full_warning() {
    let f = fixture();
    let fp = fingerprint_sha256(&f.server);
    fs::write(
        &f.files[0],
        format!("# old\n[127.0.0.1]:2222 {}\n", key_text(&f.other_pub)),
    )
    .expect("write");
    let before = fs::read(&f.files[0]).expect("read");
    for policy in [
        StrictHostKeyChecking::Yes,
        StrictHostKeyChecking::Ask,
        StrictHostKeyChecking::AcceptNew,
    ] {
        let (result, out, asked) = check(&f, policy, |_| {}, vec!["yes"]);
        let err = result.expect_err("changed key must be refused");
        assert!(matches!(&err, HostKeyError::Changed { offending, .. } if offending.line == 2));
        assert!(err.to_string().contains("ssh-keygen -f"), "{err}");
        assert_eq!(
            out,
            changed_block(&fp, &f.files[0], 2, "ED25519") + STRICT_CHANGED
        );
        assert!(asked.is_empty());
    }
    // StrictHostKeyChecking=no: same warning, then go on untrusted (the caller
    // disables password/keyboard-interactive auth and forwarding, as ssh).
    let (result, out, _) = check(&f, StrictHostKeyChecking::No, |_| {}, vec![]);
    assert_eq!(result.ok(), Some(HostKeyVerdict::Untrusted));
    assert_eq!(out, changed_block(&fp, &f.files[0], 2, "ED25519"));
    assert_eq!(
        fs::read(&f.files[0]).expect("read"),
        before,
        "file untouched"
    );
}

#[test]
fn key_of_another_type_counts_as_changed_like_openssh() {
    let f = fixture();
    let (_, rsa_pub) = keygen(f.dir.path(), "rsa", "rsa", &["-b", "2048"]);
    fs::write(
        &f.files[0],
        format!("[127.0.0.1]:2222 {}\n", key_text(&rsa_pub)),
    )
    .expect("write");
    let fp = fingerprint_sha256(&f.server);
    let (result, out, _) = check(&f, StrictHostKeyChecking::AcceptNew, |_| {}, vec![]);
    assert!(matches!(
        result,
        Err(HostKeyError::Changed {
            offending_type: "RSA",
            ..
        })
    ));
    assert_eq!(
        out,
        changed_block(&fp, &f.files[0], 1, "RSA") + STRICT_CHANGED
    );
}

#[test]
fn revoked_key_is_refused_in_every_mode() {
    let f = fixture();
    let key = key_text(&f.server_pub);
    fs::write(
        &f.files[0],
        format!("[127.0.0.1]:2222 {key}\n@revoked * {key}\n"),
    )
    .expect("write");
    let block = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n\
                 @       WARNING: REVOKED HOST KEY DETECTED!               @\r\n\
                 @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n\
                 The ED25519 host key for [127.0.0.1]:2222 is marked as revoked.\r\n\
                 This could mean that a stolen key is being used to\r\n\
                 impersonate this host.\r\n";
    let strict = "ED25519 host key for [127.0.0.1]:2222 was revoked and you have requested strict checking.\r\n";
    for policy in [
        StrictHostKeyChecking::Yes,
        StrictHostKeyChecking::Ask,
        StrictHostKeyChecking::AcceptNew,
    ] {
        let (result, out, _) = check(&f, policy, |_| {}, vec!["yes"]);
        assert!(
            matches!(result, Err(HostKeyError::Revoked { ref revoked, .. }) if revoked.line == 2)
        );
        assert_eq!(
            out,
            format!("{block}{strict}Host key verification failed.\r\n")
        );
    }
    let (result, out, _) = check(&f, StrictHostKeyChecking::No, |_| {}, vec![]);
    assert!(matches!(result, Err(HostKeyError::Revoked { .. })));
    assert_eq!(out, format!("{block}Host key verification failed.\r\n"));
}

#[test]
fn alias_globals_and_unwritable_files() {
    let f = fixture();
    // HostKeyAlias: looked up and stored under the alias, port not appended.
    let (result, out, _) = check(
        &f,
        StrictHostKeyChecking::AcceptNew,
        |p| p.host_key_alias = Some("MyBox"),
        vec![],
    );
    assert_eq!(result.ok(), Some(HostKeyVerdict::AddedNew));
    assert_eq!(
        out,
        "Warning: Permanently added 'mybox' (ED25519) to the list of known hosts.\r\n"
    );
    assert_eq!(keygen_find("mybox", &f.files[0]), [1]);

    // A key known only from a global file is accepted; nothing is written.
    let global = vec![f.files[0].clone()];
    let user = vec![f.dir.path().join("user_kh")];
    let mut params = HostKeyCheck::new("ignored", 22, &user);
    params.host_key_alias = Some("mybox");
    params.global_known_hosts = &global;
    params.policy = StrictHostKeyChecking::Yes;
    let mut out = Vec::new();
    let verdict = check_host_key(&params, &f.server, &mut Script::default(), &mut out);
    assert_eq!(verdict.ok(), Some(HostKeyVerdict::Known));
    assert!(!user[0].exists());

    // No user file at all: nothing can be added, so even accept-new fails.
    let mut params = HostKeyCheck::new("new.example", 22, &[]);
    params.policy = StrictHostKeyChecking::AcceptNew;
    let mut out = Vec::new();
    let err = check_host_key(&params, &f.server, &mut Script::default(), &mut out);
    assert!(matches!(err, Err(HostKeyError::NoWritableFile { .. })));
    assert_eq!(out, b"Host key verification failed.\r\n");

    // Cannot write the file: ssh says so and still connects.
    let blocker = f.dir.path().join("plainfile");
    fs::write(&blocker, "").expect("write");
    let bad = vec![blocker.join("known_hosts")];
    let mut params = HostKeyCheck::new("new.example", 22, &bad);
    params.policy = StrictHostKeyChecking::AcceptNew;
    let mut out = Vec::new();
    let verdict = check_host_key(&params, &f.server, &mut Script::default(), &mut out);
    assert_eq!(verdict.ok(), Some(HostKeyVerdict::AddedNew));
    let expected = format!(
        "Failed to add the host to the list of known hosts ({}).\r\n",
        bad[0].display()
    );
    assert_eq!(String::from_utf8_lossy(&out), expected);

    // An unreadable known_hosts file (here: a directory) is an error naming it.
    let dirs = vec![f.dir.path().to_path_buf()];
    let params = HostKeyCheck::new("new.example", 22, &dirs);
    let mut out = Vec::new();
    let err = check_host_key(&params, &f.server, &mut Script::default(), &mut out)
        .expect_err("unreadable");
    assert!(!err.already_reported());
    assert!(
        err.to_string()
            .contains(&f.dir.path().display().to_string()),
        "{err}"
    );
    assert!(out.is_empty());
}

#[test]
fn tty_prompt_reads_an_answer_from_a_terminal() {
    use std::io::{Read, Write};
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave_path = nix::unistd::ttyname(&pty.slave).expect("ttyname");
    let mut master = fs::File::from(pty.master);
    let asker = std::thread::spawn(move || TtyPrompt::with_device(slave_path).ask("Continue? "));
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("Continue? ") {
        let n = master.read(&mut buf).expect("read pty");
        assert!(n > 0, "pty closed");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(seen.starts_with(b"\r"), "prompt starts at the margin");
    master.write_all(b"yes please\n").expect("answer");
    let answer = asker.join().expect("thread").expect("ask");
    assert_eq!(answer.as_deref(), Some("yes please"));
    drop(pty.slave);

    let missing = TtyPrompt::with_device("/nonexistent/tty")
        .ask("? ")
        .expect("no error");
    assert_eq!(missing, None);
}

/// Byte-for-byte comparison with the real `ssh` client, which reaches a real
/// `sshd -i` through ProxyCommand. Needs root (sshd privilege separation);
/// fails elsewhere unless SSHQ_TEST_SKIP_ROOT is set.
#[test]
fn transcripts_match_real_openssh() {
    let sshd = Path::new("/usr/sbin/sshd");
    if !common::needs_root("sshd's privilege separation") {
        return;
    }
    assert!(
        sshd.exists(),
        "/usr/sbin/sshd is missing (install openssh-server)"
    );
    fs::create_dir_all("/run/sshd")
        .expect("create /run/sshd (sshd's privilege separation directory)");
    let f = fixture();
    let dir = f.dir.path();
    let host_key = dir.join("server");
    let config = dir.join("sshd_config");
    fs::write(
        &config,
        format!(
            "HostKey {}\nStrictModes no\nUsePAM no\nAuthorizedKeysFile none\n",
            host_key.display()
        ),
    )
    .expect("write sshd_config");
    let file = f.files[0].to_str().expect("utf-8").to_string();
    let real_ssh = |policy: &str| -> String {
        let output = std::process::Command::new("ssh")
            .args(["-F", "/dev/null", "-p", "2222", "-o", "BatchMode=yes"])
            .args([
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
            ])
            .arg(format!(
                "-oProxyCommand={} -i -f {}",
                sshd.display(),
                config.display()
            ))
            .arg(format!("-oUserKnownHostsFile={file}"))
            .arg(format!("-oStrictHostKeyChecking={policy}"))
            .args(["127.0.0.1", "true"])
            .output()
            .expect("run ssh");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let ours = |policy: StrictHostKeyChecking| -> String {
        let mut params = HostKeyCheck::new("127.0.0.1", 2222, &f.files);
        params.policy = policy;
        params.batch_mode = true;
        let mut out = Vec::new();
        let _ = check_host_key(&params, &f.server, &mut Script::default(), &mut out);
        String::from_utf8(out).expect("utf-8")
    };

    // Unknown host.
    assert_eq!(ours(StrictHostKeyChecking::Yes), real_ssh("yes"));
    assert_eq!(ours(StrictHostKeyChecking::Ask), real_ssh("ask"));
    // Changed (same type), then another type, then revoked.
    let (_, rsa_pub) = keygen(dir, "rsa", "rsa", &["-b", "2048"]);
    for known in [
        format!("[127.0.0.1]:2222 {}\n", key_text(&f.other_pub)),
        format!("[127.0.0.1]:2222 {}\n", key_text(&rsa_pub)),
        format!("@revoked * {}\n", key_text(&f.server_pub)),
    ] {
        fs::write(&f.files[0], &known).expect("write known_hosts");
        for (policy, name) in [
            (StrictHostKeyChecking::Yes, "yes"),
            (StrictHostKeyChecking::AcceptNew, "accept-new"),
        ] {
            assert_eq!(ours(policy), real_ssh(name), "{name} with {known}");
        }
    }
    // accept-new: ssh then fails to log in; the host key part must be a prefix.
    fs::remove_file(&f.files[0]).expect("rm");
    let real = real_ssh("accept-new");
    fs::remove_file(&f.files[0]).expect("rm");
    let mine = ours(StrictHostKeyChecking::AcceptNew);
    assert!(
        !mine.is_empty() && real.starts_with(&mine),
        "ours {mine:?}\nssh  {real:?}"
    );
}

#[test]
fn policy_values_are_parsed_like_openssh() {
    use StrictHostKeyChecking::*;
    let cases = [
        ("yes", Yes),
        ("YES", Yes),
        ("true", Yes),
        ("no", No),
        ("off", No),
        ("False", No),
        ("accept-new", AcceptNew),
        ("Accept-New", AcceptNew),
        ("ask", Ask),
    ];
    for (text, policy) in cases {
        assert_eq!(
            text.parse::<StrictHostKeyChecking>().ok(),
            Some(policy),
            "{text}"
        );
    }
    assert_eq!(StrictHostKeyChecking::default(), Ask);
    assert_eq!(AcceptNew.to_string(), "accept-new");
    let err = "maybe"
        .parse::<StrictHostKeyChecking>()
        .expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "unsupported StrictHostKeyChecking value \"maybe\": \
         expected yes, no, off, ask or accept-new (or true/false)"
    );
    assert!(!err.already_reported());
}

#[test]
fn answers_are_read_like_openssh_confirm() {
    let f = fixture();
    let fp = fingerprint_sha256(&f.server);
    let with_tab: &'static str = Box::leak(format!("\t{fp} extra words").into_boxed_str());
    let lower: &'static str = Box::leak(fp.to_lowercase().into_boxed_str());
    for (answers, accepted, questions) in [
        (vec!["  YeS  trailing"], true, 1),
        (vec![with_tab], true, 1),
        (vec!["y", "yes"], true, 2),
        (vec![lower, "nO"], false, 2),
        (vec!["", "yes"], false, 1),
    ] {
        let _ = fs::remove_file(&f.files[0]);
        let (result, _, asked) = check(&f, StrictHostKeyChecking::Ask, |_| {}, answers.clone());
        assert_eq!(result.is_ok(), accepted, "{answers:?}");
        assert_eq!(asked.len(), questions, "{answers:?}");
        assert_eq!(f.files[0].exists(), accepted);
    }
}

#[test]
fn log_levels_filter_the_transcript() {
    assert_eq!(Verbosity::from_log_level("quiet"), Some(Verbosity::Quiet));
    assert_eq!(Verbosity::from_log_level("Fatal"), Some(Verbosity::Fatal));
    assert_eq!(Verbosity::from_log_level("DEBUG3"), Some(Verbosity::Info));
    assert_eq!(Verbosity::from_log_level("loud"), None);

    let f = fixture();
    let fatal_only = |p: &mut HostKeyCheck<'_>| p.verbosity = Verbosity::Fatal;
    let (_, out, _) = check(&f, StrictHostKeyChecking::Yes, fatal_only, vec![]);
    assert_eq!(out, "Host key verification failed.\r\n");
    let errors = |p: &mut HostKeyCheck<'_>| p.verbosity = Verbosity::Error;
    let (result, out, _) = check(&f, StrictHostKeyChecking::AcceptNew, errors, vec![]);
    assert_eq!(result.ok(), Some(HostKeyVerdict::AddedNew));
    assert_eq!(out, "", "the 'Permanently added' line is info level");
    fs::write(
        &f.files[0],
        format!("[127.0.0.1]:2222 {}\n", key_text(&f.other_pub)),
    )
    .expect("write");
    let quiet = |p: &mut HostKeyCheck<'_>| p.verbosity = Verbosity::Quiet;
    let (result, out, _) = check(&f, StrictHostKeyChecking::Yes, quiet, vec![]);
    assert!(matches!(result, Err(HostKeyError::Changed { .. })));
    assert_eq!(out, "");
}
