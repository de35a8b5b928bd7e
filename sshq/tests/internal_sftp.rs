//! sshqd's internal-sftp against OpenSSH's own clients: sftp in batch mode
//! and scp (SFTP mode, OpenSSH 9's default) over TCP, sftp with sshq as
//! its transport over QUIC, `ForceCommand internal-sftp`, and
//! ChrootDirectory with sshd's ownership rules for a real non-root user
//! (made with useradd and removed after; these need root, as CI has).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use common::{random_bytes, show, text, Lab, Listeners, Server, SSHQ};

/// sshqd serving `Subsystem sftp internal-sftp` (or `subsystem`), on
/// both transports, with `extra` lines.
fn start(lab: &Lab, subsystem: &str, extra: &str) -> Server {
    let host = lab.path("host_ed25519");
    let keys = lab.path("authorized_keys");
    let (subsystem, extra) = (subsystem.to_string(), extra.to_string());
    lab.start_sshqd_config(
        move |port| {
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PidFile none\nSubsystem sftp {subsystem}\n{extra}\n",
                host.display(),
                keys.display()
            )
        },
        Listeners::Both,
    )
}

/// `sftp -b batch` as `target` with the lab's key; extra options first.
fn sftp(lab: &Lab, server: &Server, target: &str, extra: &[&str], batch: &str) -> Output {
    let file = lab.path("batch");
    std::fs::write(&file, batch).expect("batch file");
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    args.extend(lab.client_opts("user"));
    args.extend([
        "-b".into(),
        file.display().to_string(),
        "-P".into(),
        server.port.to_string(),
        target.to_string(),
    ]);
    lab.run("sftp", &args, b"")
}

fn scp(lab: &Lab, server: &Server, args: &[&str]) -> Output {
    let mut all = lab.client_opts("user");
    all.extend(["-P".into(), server.port.to_string()]);
    all.extend(args.iter().map(|s| s.to_string()));
    lab.run("scp", &all, b"")
}

fn assert_ok(out: &Output, server: &Server) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\nsshqd log:\n{}",
        show(out),
        server.log_text()
    );
}

fn same_file(a: &Path, b: &Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert!(
        x == y,
        "{} ({} bytes) and {} ({} bytes) differ",
        a.display(),
        x.len(),
        b.display(),
        y.len()
    );
}

#[test]
fn sftp_batch_operations_over_tcp() {
    let lab = Lab::new();
    let server = start(&lab, "internal-sftp", "");
    let blob = lab.path("blob");
    std::fs::write(&blob, random_bytes(3 << 20)).unwrap();
    // put -p carries the times and mode over.
    std::fs::set_permissions(&blob, PermissionsExt::from_mode(0o640)).unwrap();
    let old = filetime(&blob, 1_000_000_000);
    let r = lab.path("remote");
    std::fs::create_dir(&r).unwrap();
    let (r, b) = (r.display().to_string(), blob.display().to_string());
    let back = lab.path("back").display().to_string();
    let batch = format!(
        "put -p {b} {r}/a\nget {r}/a {back}\nrename {r}/a {r}/b\nsymlink {r}/b {r}/link\n\
         mkdir {r}/dir\nmkdir {r}/gone\nrmdir {r}/gone\nchmod 600 {r}/b\nls -la {r}\n\
         put {b} {r}/dir/removed\nrm {r}/dir/removed\ndf {r}\n"
    );
    let out = sftp(&lab, &server, &lab.target(), &[], &batch);
    assert_ok(&out, &server);
    let listing = text(&out.stdout);
    same_file(&blob, Path::new(&back));
    let moved = Path::new(&r).join("b");
    same_file(&blob, &moved);
    assert!(
        !Path::new(&r).join("a").exists(),
        "rename left the old name"
    );
    assert_eq!(
        std::fs::read_link(Path::new(&r).join("link")).unwrap(),
        moved,
        "symlink"
    );
    let meta = std::fs::metadata(&moved).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "chmod");
    assert_eq!(meta.mtime(), old, "put -p kept the modification time");
    assert!(Path::new(&r).join("dir").is_dir() && !Path::new(&r).join("gone").exists());
    assert!(!Path::new(&r).join("dir/removed").exists(), "rm");
    for name in ["link", "dir", " b\n", "drwx", "-rw-------"] {
        assert!(listing.contains(name), "ls -la lacks {name:?}:\n{listing}");
    }
    assert!(listing.contains("Avail"), "df printed nothing:\n{listing}");

    // A missing file: sftp's own message, a failed batch.
    let out = sftp(
        &lab,
        &server,
        &lab.target(),
        &[],
        &format!("get {r}/missing\n"),
    );
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    let said = text(&out.stderr);
    assert!(
        said.contains(&format!("File \"{r}/missing\" not found.")),
        "{said}"
    );
}

/// Sets `path`'s times to `seconds`; returns them.
fn filetime(path: &Path, seconds: i64) -> i64 {
    let status = Command::new("touch")
        .arg("-d")
        .arg(format!("@{seconds}"))
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
    seconds
}

#[test]
fn scp_in_sftp_mode_both_ways_with_a_large_file_and_a_tree() {
    let lab = Lab::new();
    let server = start(&lab, "internal-sftp", "");
    let tree = lab.path("tree");
    std::fs::create_dir_all(tree.join("a/b")).unwrap();
    for i in 1..40 {
        std::fs::write(tree.join(format!("a/f{i}")), random_bytes(i * 97)).unwrap();
    }
    std::fs::write(tree.join("a/b/big"), random_bytes(64 << 20)).unwrap();
    let up = lab.path("up");
    let out = scp(
        &lab,
        &server,
        &["-r", "-p", &tree.display().to_string(), &remote(&lab, &up)],
    );
    assert_ok(&out, &server);
    let down = lab.path("down");
    let out = scp(
        &lab,
        &server,
        &["-r", &remote(&lab, &up), &down.display().to_string()],
    );
    assert_ok(&out, &server);
    let diff = Command::new("diff")
        .arg("-r")
        .arg(&tree)
        .arg(&down)
        .output()
        .unwrap();
    assert!(diff.status.success(), "trees differ: {}", show(&diff));
    same_file(&tree.join("a/b/big"), &up.join("a/b/big"));
}

fn remote(lab: &Lab, path: &Path) -> String {
    format!("{}:{}", lab.target(), path.display())
}

/// OpenSSH's sftp with sshq as its ssh (`-S`), over QUIC.
#[test]
fn sftp_through_sshq_over_quic() {
    let lab = Lab::new();
    let server = start(&lab, "internal-sftp", "");
    let blob = lab.path("blob");
    std::fs::write(&blob, random_bytes(8 << 20)).unwrap();
    let (put, back) = (lab.path("put"), lab.path("back"));
    let batch = format!(
        "put {} {}\nget {} {}\n",
        blob.display(),
        put.display(),
        put.display(),
        back.display()
    );
    let out = sftp(
        &lab,
        &server,
        &lab.target(),
        &["-S", SSHQ, "-o", "Transport=quic"],
        &batch,
    );
    assert_ok(&out, &server);
    same_file(&blob, &put);
    same_file(&blob, &back);
    assert!(
        server.log_text().contains("over quic"),
        "{}",
        server.log_text()
    );
}

/// `ForceCommand internal-sftp`: a subsystem request gets the SFTP server
/// whatever the Subsystem line says; a command gets sshd's refusal and does
/// not run.
#[test]
fn force_command_internal_sftp() {
    let lab = Lab::new();
    let server = start(
        &lab,
        "/nonexistent/sftp-server",
        "ForceCommand internal-sftp -R",
    );
    let file = lab.path("file");
    std::fs::write(&file, b"hello").unwrap();
    let back = lab.path("back");
    let out = sftp(
        &lab,
        &server,
        &lab.target(),
        &[],
        &format!("get {} {}\n", file.display(), back.display()),
    );
    assert_ok(&out, &server);
    same_file(&file, &back);
    // -R: read-only.
    let out = sftp(
        &lab,
        &server,
        &lab.target(),
        &[],
        &format!("put {} {}.copy\n", file.display(), file.display()),
    );
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        show(&out)
    );

    let marker = lab.path("ran");
    let command = format!("touch {}", marker.display());
    let out = lab.ssh(server.port, &[], &[&command], b"");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(
        text(&out.stdout),
        "This service allows sftp connections only.\n"
    );
    assert!(!marker.exists(), "the command ran");
    assert!(server.log_text().contains("refusing non-sftp session"));
}

/// Users and the chroot base are the machine's: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// A user made with useradd for one test (key in ~/.ssh), removed with its
/// home and processes when dropped.
struct TestUser {
    name: String,
    uid: u32,
}

impl TestUser {
    fn create(lab: &Lab) -> TestUser {
        let name = format!("sqsftp{}", std::process::id() % 100_000);
        let _ = Command::new("userdel").args(["-r", "-f", &name]).output();
        let made = (0..20).any(|_| {
            // useradd fails while another holds /etc/passwd's lock.
            let ok = Command::new("useradd")
                .args(["-m", "-s", "/bin/sh", &name])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                std::thread::sleep(Duration::from_millis(200));
            }
            ok
        });
        assert!(made, "useradd {name} failed");
        run(&["usermod", "-p", "*", &name]);
        let user = nix::unistd::User::from_name(&name).unwrap().unwrap();
        let ssh = user.dir.join(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        std::fs::copy(lab.path("user.pub"), ssh.join("authorized_keys")).unwrap();
        run(&[
            "chown",
            "-R",
            &format!("{name}:"),
            &user.dir.display().to_string(),
        ]);
        std::fs::set_permissions(&user.dir, PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&ssh, PermissionsExt::from_mode(0o700)).unwrap();
        TestUser {
            name,
            uid: user.uid.as_raw(),
        }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("pgrep").args(["-u", &self.name]).output() {
            for pid in text(&out.stdout)
                .lines()
                .filter_map(|l| l.trim().parse().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = Command::new("userdel")
            .args(["-r", "-f", &self.name])
            .output();
    }
}

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", show(&out));
}

/// A root-owned 0755 directory whose every component is root's and not
/// group- or world-writable, as a chroot needs: under /run (root's, 0755),
/// not under the target directory, which a checkout under /tmp (1777)
/// would make unusable.
fn chroot_base() -> tempfile::TempDir {
    let base = tempfile::Builder::new()
        .prefix("sshq-test-chroot.")
        .tempdir_in("/run")
        .unwrap();
    std::fs::set_permissions(base.path(), PermissionsExt::from_mode(0o755)).unwrap();
    base
}

fn need_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (CI runs as root): it creates a user and a chroot"
    );
}

/// A session as a non-root user: the server runs with the user's rights
/// (what it creates is the user's; root's directory refuses a write), then
/// the same under ChrootDirectory (with %u), where nothing outside is
/// visible, and a group-writable chroot is refused with sshd's message.
#[test]
fn runs_as_the_user_and_chroots_as_sshd_does() {
    need_root();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new();
    let user = TestUser::create(&lab);
    let base = chroot_base();
    let jail = base.path().join(&user.name);
    let upload = jail.join("upload");
    std::fs::create_dir_all(&upload).unwrap();
    std::fs::set_permissions(&jail, PermissionsExt::from_mode(0o755)).unwrap();
    run(&[
        "chown",
        &format!("{}:", user.name),
        &upload.display().to_string(),
    ]);
    let root_only = base.path().join("root-only");
    std::fs::create_dir(&root_only).unwrap();
    let target = format!("{}@127.0.0.1", user.name);
    let file = lab.path("file");
    std::fs::write(&file, random_bytes(100_000)).unwrap();
    let f = file.display().to_string();

    // Without a chroot: the user's rights.
    let host = lab.path("host_ed25519");
    let plain = lab.start_sshqd_config(
        |port| {
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile none\n\
                 Subsystem sftp internal-sftp -u 027\n",
                host.display()
            )
        },
        Listeners::Tcp,
    );
    let out = sftp(
        &lab,
        &plain,
        &target,
        &[],
        &format!("put {f} {}/mine\n", upload.display()),
    );
    assert_ok(&out, &plain);
    let mine = std::fs::metadata(upload.join("mine")).unwrap();
    assert_eq!(mine.uid(), user.uid, "the file is not the user's");
    assert_eq!(mine.mode() & 0o777, 0o640, "-u 027 applies");
    let out = sftp(
        &lab,
        &plain,
        &target,
        &[],
        &format!("put {f} {}/x\n", root_only.display()),
    );
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        show(&out)
    );
    drop(plain);

    // ChrootDirectory with %u.
    let chrooted = lab.start_sshqd_config(
        |port| {
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile none\n\
                 Subsystem sftp internal-sftp\nChrootDirectory {}/%u\n",
                host.display(),
                base.path().display()
            )
        },
        Listeners::Tcp,
    );
    let out = sftp(
        &lab,
        &chrooted,
        &target,
        &[],
        &format!("put {f} /upload/inside\nls -1 /\ncd ..\nls -1\n"),
    );
    assert_ok(&out, &chrooted);
    let inside = std::fs::metadata(upload.join("inside")).unwrap();
    assert_eq!(inside.uid(), user.uid);
    let listing = text(&out.stdout);
    assert!(listing.contains("upload"), "{listing}");
    assert!(
        !listing.contains("root-only") && !listing.contains("etc"),
        "{listing}"
    );
    let out = sftp(&lab, &chrooted, &target, &[], "get /etc/passwd\n");
    assert!(text(&out.stderr).contains("not found"), "{}", show(&out));
    // A shell is not served in the chroot.
    let mut ssh = lab.client_opts("user");
    ssh.extend([
        "-p".into(),
        chrooted.port.to_string(),
        target.clone(),
        "true".into(),
    ]);
    let out = lab.run("ssh", &ssh, b"");
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));

    // A group-writable chroot: refused, with sshd's message in the log.
    std::fs::set_permissions(&jail, PermissionsExt::from_mode(0o775)).unwrap();
    let out = sftp(&lab, &chrooted, &target, &[], "ls /\n");
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    let expected = format!(
        "bad ownership or modes for chroot directory \"{}\"",
        jail.display()
    );
    assert!(
        chrooted.log_text().contains(&expected),
        "log lacks {expected}:\n{}",
        chrooted.log_text()
    );
}
