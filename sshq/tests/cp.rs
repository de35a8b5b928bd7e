//! `sshq cp` against real servers: OpenSSH's sshd (TCP, its sftp-server)
//! and sshqd over QUIC and TCP (with OpenSSH's sftp-server as its `sftp`
//! subsystem). Files and trees both ways byte for byte, -p, remote to
//! remote, an interrupted copy and its --resume, scp's messages and exit
//! codes, no progress meter without a terminal, and OpenSSH's
//! `sftp -S sshq` in batch mode over QUIC.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{random_bytes, show, start_sshqd_both, text, Lab, SSHQ};

/// Where a test's files go on "the remote host" (the same machine).
fn remote_dir(lab: &Lab, name: &str) -> PathBuf {
    let dir = lab.path(name);
    std::fs::create_dir_all(&dir).expect("remote dir");
    dir
}

/// `sshq cp` with the lab's key and known_hosts, `-P port`, Transport.
fn cp_args(lab: &Lab, port: u16, transport: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec!["cp".to_string()];
    all.extend(lab.client_opts("user"));
    all.extend([
        "-P".into(),
        port.to_string(),
        "-o".into(),
        format!("Transport={transport}"),
    ]);
    all.extend(args.iter().map(|a| a.to_string()));
    all
}

fn sshq_cp(lab: &Lab, port: u16, transport: &str, args: &[&str]) -> Output {
    lab.run(SSHQ, &cp_args(lab, port, transport, args), b"")
}

fn remote(lab: &Lab, path: &Path) -> String {
    format!("{}:{}", lab.target(), path.display())
}

/// Nothing on stdout, and on stderr nothing but ssh's first-contact
/// notice about known_hosts: no progress meter without a terminal.
fn quiet(out: &Output) -> bool {
    out.stdout.is_empty() && lines(&out.stderr).is_empty()
}

/// stderr's lines, without carriage returns (OpenSSH ends its messages with
/// CR LF) and without the known_hosts notice.
fn lines(stderr: &[u8]) -> Vec<String> {
    text(stderr)
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .filter(|l| !l.starts_with("Warning: Permanently added"))
        .collect()
}

/// No file named like our partial files anywhere under `dir`.
fn no_partial_files(dir: &Path) -> bool {
    walk(dir)
        .iter()
        .all(|p| !p.to_string_lossy().ends_with(".sshq-part"))
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            found.push(path);
        }
    }
    found
}

fn same_trees(a: &Path, b: &Path) -> Result<(), String> {
    let out = Command::new("diff")
        .arg("-r")
        .arg(a)
        .arg(b)
        .output()
        .map_err(|e| e.to_string())?;
    match out.status.success() {
        true => Ok(()),
        false => Err(text(&out.stdout)),
    }
}

#[test]
fn a_24_mib_file_up_and_down_on_every_server() {
    let lab = Lab::new();
    let data = random_bytes(24 << 20);
    let local = lab.path("blob");
    std::fs::write(&local, &data).expect("blob");
    let dir = remote_dir(&lab, "remote");
    let sshqd = start_sshqd_both(&lab, "");
    let sshd = lab.start_sshd();
    for (port, transport, name) in [
        (sshd.port, "tcp", "OpenSSH sshd"),
        (sshqd.port, "quic", "sshqd over QUIC"),
        (sshqd.port, "tcp", "sshqd over TCP"),
    ] {
        let up = dir.join(format!("up.{name}"));
        let back = lab.path(&format!("back.{name}"));
        let started = Instant::now();
        let out = sshq_cp(
            &lab,
            port,
            transport,
            &[local.to_str().unwrap(), &remote(&lab, &up)],
        );
        let up_time = started.elapsed();
        assert!(out.status.success(), "{name}: upload: {}", show(&out));
        // No terminal: no progress meter, and nothing else either.
        assert!(quiet(&out), "{name}: {}", show(&out));
        assert!(
            std::fs::read(&up).expect("uploaded") == data,
            "{name}: upload differs"
        );
        let started = Instant::now();
        let out = sshq_cp(
            &lab,
            port,
            transport,
            &[&remote(&lab, &up), back.to_str().unwrap()],
        );
        let down_time = started.elapsed();
        assert!(out.status.success(), "{name}: download: {}", show(&out));
        assert!(
            std::fs::read(&back).expect("downloaded") == data,
            "{name}: download differs"
        );
        eprintln!("{name}: 24 MiB up {up_time:?}, down {down_time:?}");
    }
    assert!(no_partial_files(&dir) && no_partial_files(lab.dir.path()));
}

/// 200 small files and a 3 MiB one, in subdirectories.
fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("a/b")).expect("tree");
    for i in 1..=200usize {
        std::fs::write(root.join(format!("a/f{i}")), random_bytes(i * 37)).expect("file");
    }
    std::fs::write(root.join("a/b/big"), random_bytes(3 << 20)).expect("big");
    std::fs::write(root.join("empty"), b"").expect("empty");
}

#[test]
fn a_tree_with_r_both_ways_on_every_server() {
    let lab = Lab::new();
    let tree = lab.path("tree");
    make_tree(&tree);
    let dir = remote_dir(&lab, "remote");
    let sshqd = start_sshqd_both(&lab, "");
    let sshd = lab.start_sshd();
    for (port, transport, name) in [
        (sshd.port, "tcp", "sshd"),
        (sshqd.port, "quic", "sshqd-quic"),
        (sshqd.port, "tcp", "sshqd-tcp"),
    ] {
        // A new target name: the tree's contents go there (scp -r's rule).
        let up = dir.join(format!("tree.{name}"));
        let out = sshq_cp(
            &lab,
            port,
            transport,
            &["-r", tree.to_str().unwrap(), &remote(&lab, &up)],
        );
        assert!(out.status.success(), "{name}: upload: {}", show(&out));
        same_trees(&tree, &up).unwrap_or_else(|d| panic!("{name}: upload differs: {d}"));
        // An existing directory as target: the tree goes inside it.
        let into = lab.path(&format!("into.{name}"));
        std::fs::create_dir_all(&into).expect("into");
        let out = sshq_cp(
            &lab,
            port,
            transport,
            &["-r", &remote(&lab, &up), into.to_str().unwrap()],
        );
        assert!(out.status.success(), "{name}: download: {}", show(&out));
        let back = into.join(format!("tree.{name}"));
        same_trees(&tree, &back).unwrap_or_else(|d| panic!("{name}: download differs: {d}"));
    }
    assert!(no_partial_files(lab.dir.path()));
}

#[test]
fn p_preserves_mode_and_times_both_ways() {
    let lab = Lab::new();
    let file = lab.path("kept");
    std::fs::write(&file, b"preserved\n").expect("file");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let touch = Command::new("touch")
        .args(["-m", "-d", "2001-02-03 04:05:06"])
        .arg(&file)
        .status()
        .expect("touch");
    assert!(touch.success());
    let mtime = std::fs::metadata(&file).unwrap().mtime();
    let dir = remote_dir(&lab, "remote");
    let sshqd = start_sshqd_both(&lab, "");
    for transport in ["quic", "tcp"] {
        let up = dir.join(format!("kept.{transport}"));
        let back = lab.path(&format!("kept.back.{transport}"));
        let out = sshq_cp(
            &lab,
            sshqd.port,
            transport,
            &["-p", file.to_str().unwrap(), &remote(&lab, &up)],
        );
        assert!(out.status.success(), "{}", show(&out));
        let out = sshq_cp(
            &lab,
            sshqd.port,
            transport,
            &["-p", &remote(&lab, &up), back.to_str().unwrap()],
        );
        assert!(out.status.success(), "{}", show(&out));
        for copy in [&up, &back] {
            let meta = std::fs::metadata(copy).expect("copy");
            assert_eq!(
                meta.mode() & 0o7777,
                0o640,
                "{transport}: mode of {}",
                copy.display()
            );
            assert_eq!(
                meta.mtime(),
                mtime,
                "{transport}: mtime of {}",
                copy.display()
            );
        }
    }
    // Without -p the copy's time is now, as with scp.
    let plain = dir.join("plain");
    let out = sshq_cp(
        &lab,
        sshqd.port,
        "quic",
        &[file.to_str().unwrap(), &remote(&lab, &plain)],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert_ne!(std::fs::metadata(&plain).unwrap().mtime(), mtime);
}

#[test]
fn remote_to_remote_goes_through_the_local_host() {
    let lab = Lab::new();
    let data = random_bytes(5 << 20);
    let from_dir = remote_dir(&lab, "from");
    let to_dir = remote_dir(&lab, "to");
    std::fs::write(from_dir.join("f"), &data).expect("source");
    let sshd = lab.start_sshd();
    let sshqd = start_sshqd_both(&lab, "");
    // The port of each host travels in an scp:// URI; -P would name both.
    let from = format!(
        "scp://{}:{}/{}",
        lab.target(),
        sshd.port,
        from_dir.join("f").display()
    );
    let to = format!(
        "scp://{}:{}/{}",
        lab.target(),
        sshqd.port,
        to_dir.join("g").display()
    );
    let mut args = vec!["cp".to_string()];
    args.extend(lab.client_opts("user"));
    args.extend([
        "-o".into(),
        "Transport=auto".into(),
        from.clone(),
        to.clone(),
    ]);
    let out = lab.run(SSHQ, &args, b"");
    assert!(out.status.success(), "{}", show(&out));
    assert!(std::fs::read(to_dir.join("g")).expect("copied") == data);
    // A tree too.
    make_tree(&from_dir.join("t"));
    let from = format!(
        "scp://{}:{}/{}",
        lab.target(),
        sshd.port,
        from_dir.join("t").display()
    );
    let to = format!(
        "scp://{}:{}/{}",
        lab.target(),
        sshqd.port,
        to_dir.join("t").display()
    );
    args.truncate(args.len() - 2);
    args.extend(["-r".into(), from, to]);
    let out = lab.run(SSHQ, &args, b"");
    assert!(out.status.success(), "{}", show(&out));
    same_trees(&from_dir.join("t"), &to_dir.join("t")).unwrap();
}

/// Starts `sshq cp -l` on a big file, kills it mid-way, checks no file
/// has the final name, then resumes and checks the result.
fn interrupted_then_resumed(lab: &Lab, port: u16, transport: &str, upload: bool) {
    let data = random_bytes(12 << 20);
    let local = lab.path(&format!("big.{transport}.{upload}"));
    let dir = remote_dir(lab, "remote");
    let far = dir.join(format!("big.{transport}.{upload}"));
    let (source, target, final_path, partial) = if upload {
        std::fs::write(&local, &data).expect("big");
        let partial = dir.join(format!(".big.{transport}.{upload}.sshq-part"));
        (
            local.display().to_string(),
            remote(lab, &far),
            far.clone(),
            partial,
        )
    } else {
        std::fs::write(&far, &data).expect("big");
        let partial = lab.path(&format!(".big.{transport}.{upload}.sshq-part"));
        (
            remote(lab, &far),
            local.display().to_string(),
            local.clone(),
            partial,
        )
    };
    // 16000 Kbit/s: 2 MB/s, so 12 MiB takes about 6 s.
    let args = cp_args(lab, port, transport, &["-l", "16000", &source, &target]);
    let mut child = Command::new(SSHQ)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sshq cp");
    // Kill it once part of the file has arrived.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < (3 << 20) {
        assert!(
            Instant::now() < deadline,
            "no partial file {}",
            partial.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("kill");
    let _ = child.wait();
    let partial_len = std::fs::metadata(&partial).expect("partial kept").len();
    assert!(
        partial_len < data.len() as u64,
        "{transport}: copy finished before the kill"
    );
    assert!(
        !final_path.exists(),
        "{transport}: a file under the final name after the kill"
    );
    // --resume completes it, going on from the partial file.
    let out = lab.run(
        SSHQ,
        &cp_args(lab, port, transport, &["-v", "--resume", &source, &target]),
        b"",
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        std::fs::read(&final_path).expect("resumed") == data,
        "{transport}: resumed copy differs"
    );
    assert!(!partial.exists(), "partial file left behind");
    let log = text(&out.stderr);
    let resumed_at: u64 = log
        .lines()
        .find_map(|l| {
            l.split("resuming at byte ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{transport}: no resume in the log:\n{log}"));
    assert!(
        resumed_at > 0,
        "{transport}: resumed from the start:\n{log}"
    );
}

#[test]
fn an_interrupted_copy_leaves_no_file_and_resume_completes_it() {
    let lab = Lab::new();
    let sshqd = start_sshqd_both(&lab, "");
    let sshd = lab.start_sshd();
    interrupted_then_resumed(&lab, sshqd.port, "quic", true);
    interrupted_then_resumed(&lab, sshqd.port, "quic", false);
    interrupted_then_resumed(&lab, sshd.port, "tcp", true);
}

#[test]
fn resume_rewrites_a_partial_file_that_differs() {
    let lab = Lab::new();
    let sshqd = start_sshqd_both(&lab, "");
    let data = random_bytes(2 << 20);
    let local = lab.path("src");
    std::fs::write(&local, &data).expect("src");
    let dir = remote_dir(&lab, "remote");
    // A partial file whose first half is wrong.
    let mut wrong = data[..1 << 20].to_vec();
    wrong[1000] ^= 0xff;
    std::fs::write(dir.join(".dst.sshq-part"), &wrong).expect("partial");
    let out = sshq_cp(
        &lab,
        sshqd.port,
        "quic",
        &[
            "--resume",
            local.to_str().unwrap(),
            &remote(&lab, &dir.join("dst")),
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(std::fs::read(dir.join("dst")).unwrap() == data);
}

#[test]
fn errors_as_scp_words_them() {
    let lab = Lab::new();
    let sshd = lab.start_sshd();
    let dir = remote_dir(&lab, "remote");
    let missing = dir.join("missing");
    let target = lab.path("nothing");
    // A remote source that is not there: scp's words and status.
    let mut scp_args: Vec<String> = lab.client_opts("user");
    scp_args.extend([
        "-P".into(),
        sshd.port.to_string(),
        remote(&lab, &missing),
        target.display().to_string(),
    ]);
    let scp = lab.run("scp", &scp_args, b"");
    let ours = sshq_cp(
        &lab,
        sshd.port,
        "tcp",
        &[&remote(&lab, &missing), target.to_str().unwrap()],
    );
    assert_eq!(
        ours.status.code(),
        scp.status.code(),
        "scp: {}\nours: {}",
        show(&scp),
        show(&ours)
    );
    assert_eq!(ours.status.code(), Some(1));
    let ours_scp_style: Vec<String> = lines(&ours.stderr)
        .iter()
        .map(|l| l.replace("sshq cp:", "scp:"))
        .collect();
    assert_eq!(ours_scp_style, lines(&scp.stderr), "{}", show(&ours));
    // A local source that is not there.
    let mut scp_args: Vec<String> = lab.client_opts("user");
    scp_args.extend([
        "-P".into(),
        sshd.port.to_string(),
        missing.display().to_string(),
        remote(&lab, &target),
    ]);
    let scp = lab.run("scp", &scp_args, b"");
    let ours = sshq_cp(
        &lab,
        sshd.port,
        "tcp",
        &[missing.to_str().unwrap(), &remote(&lab, &target)],
    );
    assert_eq!(
        ours.status.code(),
        scp.status.code(),
        "scp: {}\nours: {}",
        show(&scp),
        show(&ours)
    );
    let ours_scp_style: Vec<String> = lines(&ours.stderr)
        .iter()
        .map(|l| l.replace("sshq cp:", "scp:"))
        .collect();
    assert_eq!(ours_scp_style, lines(&scp.stderr), "{}", show(&ours));
    // A directory without -r fails, with status 1.
    let ours = sshq_cp(
        &lab,
        sshd.port,
        "tcp",
        &[&remote(&lab, &dir), target.to_str().unwrap()],
    );
    assert_eq!(ours.status.code(), Some(1), "{}", show(&ours));
    assert!(
        text(&ours.stderr).contains("not a regular file"),
        "{}",
        show(&ours)
    );
    // No source and target: usage, status 1.
    let ours = lab.run(SSHQ, &["cp".into(), "only-one".into()], b"");
    assert_eq!(ours.status.code(), Some(1));
    assert!(
        text(&ours.stderr).contains("usage: sshq cp"),
        "{}",
        show(&ours)
    );
}

#[test]
fn sftp_dash_s_sshq_works_in_batch_mode_over_quic() {
    let lab = Lab::new();
    let sshqd = start_sshqd_both(&lab, "");
    let data = random_bytes(3 << 20);
    let local = lab.path("put-me");
    std::fs::write(&local, &data).expect("file");
    let dir = remote_dir(&lab, "remote");
    let batch = lab.path("batch");
    std::fs::write(
        &batch,
        format!(
            "put {local} {dir}/put\nget {dir}/put {back}\nrename {dir}/put {dir}/renamed\nls {dir}\n",
            local = local.display(),
            dir = dir.display(),
            back = lab.path("got").display()
        ),
    )
    .expect("batch");
    let mut args = vec![
        "-q".to_string(),
        "-S".into(),
        SSHQ.into(),
        "-b".into(),
        batch.display().to_string(),
    ];
    args.extend(lab.client_opts("user"));
    args.extend([
        "-o".into(),
        "Transport=quic".into(),
        "-P".into(),
        sshqd.port.to_string(),
        lab.target(),
    ]);
    let out = lab.run("sftp", &args, b"");
    assert!(out.status.success(), "{}", show(&out));
    assert!(std::fs::read(lab.path("got")).unwrap() == data);
    assert!(std::fs::read(dir.join("renamed")).unwrap() == data);
    assert!(text(&out.stdout).contains("renamed"), "{}", show(&out));
    // It really was QUIC: sshqd logs the transport of each login.
    let log = sshqd.log_text();
    assert!(log.to_lowercase().contains("quic"), "{log}");
}
