//! `sshq cp`: scp's command line over SFTP, on QUIC or TCP.
//!
//! Each remote host is reached with sshq's own connection (ssh_config,
//! known_hosts, keys, agent, -J and Transport as for `sshq host`), and
//! files move over SFTP sessions on it (`session` channels running the
//! `sftp` subsystem). Copies between two remote hosts go through this host
//! (scp 9's default, -3); -R runs scp on the origin host instead, as scp does.
//!
//! Every file is written under a temporary name and renamed when complete
//! (see `transfer`), and many files move at once; over QUIC on several
//! sessions, one stream each.

mod args;
mod fs;
mod remote;
mod transfer;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;

use tokio::task::JoinSet;

use args::{CpCli, Location, RemoteSpec, SftpTuning};
use fs::{CpError, Side, Stat};
use remote::Remote;
use transfer::{FileJob, Limiter, Progress, Shared};

/// scp's status for a copy that failed in part or whole.
const EXIT_FAILED: i32 = 1;
/// scp's status when it gives up at once (fatal()).
const EXIT_FATAL: i32 = 255;

/// How many files are copied at once.
const FILES_AT_ONCE: usize = 8;

/// Runs `sshq cp` with `args` (`sshq`, `cp`, ...); returns the exit status.
pub async fn main(args: Vec<String>) -> i32 {
    let cli = match <CpCli as clap::Parser>::try_parse_from(args.iter().skip(1)) {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            eprintln!("{}", args::USAGE);
            return EXIT_FAILED;
        }
        Err(e) => {
            let _ = e.print();
            return 0;
        }
    };
    match run(cli).await {
        Ok(code) => code,
        Err((code, message)) => {
            if !message.is_empty() {
                eprintln!("{message}");
            }
            code
        }
    }
}

/// Complains as scp does: "sshq cp: " and the message.
fn complain(progress: Option<&Progress>, message: &str) {
    let line = format!("sshq cp: {message}");
    match progress {
        Some(progress) => progress.println(&line),
        None => eprintln!("{line}"),
    }
}

async fn run(cli: CpCli) -> Result<i32, (i32, String)> {
    let refuse = |what: &str| Err((EXIT_FAILED, format!("sshq cp: {what}")));
    if cli.legacy {
        return refuse("-O: the legacy SCP protocol is not supported; sshq cp speaks SFTP");
    }
    if cli.program.is_some() {
        return refuse(
            "-S: sshq cp makes its own connections (use `scp -S sshq` for another program)",
        );
    }
    if cli.sftp_direct.is_some() {
        return refuse("-D: copying through a local sftp-server program is not supported");
    }
    let limiter = match &cli.limit {
        Some(text) => match args::limit_bytes_per_second(text) {
            Some(rate) => Some(Arc::new(Limiter::new(rate))),
            None => return refuse(&format!("Invalid -l limit: {text}")),
        },
        None => None,
    };
    let tuning = SftpTuning::from_options(&cli.sftp_options)
        .map_err(|e| (EXIT_FAILED, format!("sshq cp: {e}")))?;
    let mut locations = Vec::with_capacity(cli.paths.len());
    for path in &cli.paths {
        locations.push(Location::parse(path).map_err(|e| (EXIT_FAILED, format!("sshq cp: {e}")))?);
    }
    let Some(target) = locations.pop() else {
        return Err((EXIT_FAILED, args::USAGE.to_string()));
    };
    if cli.remote_to_remote {
        if let Location::Remote(target_spec) = &target {
            return remote_to_remote_on_origin(&cli, &locations, target_spec).await;
        }
    }
    // As scp: a missing local source ends it before any connection.
    for source in &locations {
        if let Location::Local(path) = source {
            if let Ok(None) = Side::Local.stat(path).await {
                complain(
                    None,
                    &format!("stat local \"{path}\": No such file or directory"),
                );
                return Ok(EXIT_FATAL);
            }
        }
    }
    let mut hosts = Hosts::default();
    let target_side = match &target {
        Location::Local(_) => Side::Local,
        Location::Remote(spec) => match hosts.get(&cli, spec).await {
            Ok(remote) => Side::Remote(remote),
            Err(e) => {
                return Err((
                    EXIT_FATAL,
                    connect_failed(e, "Unable to open sftp connection"),
                ))
            }
        },
    };
    let target_path = match &target {
        Location::Local(path) => path.clone(),
        Location::Remote(spec) => remote_path(&spec.path),
    };
    let mut target_is_dir = matches!(target_side.stat(&target_path).await, Ok(Some(s)) if s.is_dir);
    let mut failed = false;
    if locations.len() > 1 && !target_is_dir {
        // scp makes the directory for several uploads; a local one must exist.
        let made = match &target_side {
            Side::Remote(_) => target_side.mkdir(&target_path, 0o777).await,
            Side::Local => Err(CpError::Message(format!("{target_path}: Not a directory"))),
        };
        if let Err(e) = made {
            complain(None, &e.to_string());
            return Ok(EXIT_FAILED);
        }
        target_is_dir = true;
    }
    let quiet = cli.quiet;
    let show_progress = !quiet && std::io::stderr().is_terminal();
    for source in &locations {
        let (source_side, source_path) = match source {
            Location::Local(path) => (Side::Local, path.clone()),
            Location::Remote(spec) => match hosts.get(&cli, spec).await {
                Ok(remote) => (Side::Remote(remote), remote_path(&spec.path)),
                Err(e) => {
                    complain(None, &connect_failed(e, "sftp connection failed"));
                    failed = true;
                    continue;
                }
            },
        };
        let given = match source {
            Location::Local(path) => path.as_str(),
            Location::Remote(spec) => spec.path.as_str(),
        };
        let destination = match target_is_dir {
            true => join(&target_path, &base_name(&source_path)),
            false => target_path.clone(),
        };
        let request = Request {
            src: source_side,
            dst: target_side.clone(),
            given: given.to_string(),
            source: source_path,
            destination,
            target_given: target_path.clone(),
        };
        let shared_settings = Settings {
            preserve: cli.preserve,
            resume: cli.resume,
            recursive: cli.recursive,
            tuning,
            show_progress,
        };
        if !copy_one_source(request, shared_settings, limiter.as_ref()).await {
            failed = true;
        }
    }
    hosts.disconnect().await;
    Ok(if failed { EXIT_FAILED } else { 0 })
}

fn connect_failed(e: CpError, then: &str) -> String {
    match e {
        CpError::Connect(why) if !why.is_empty() => format!("{why}\nsshq cp: {then}"),
        other => format!("sshq cp: {other}"),
    }
}

/// One connection per `user@host:port`, shared by every argument naming it.
#[derive(Default)]
struct Hosts {
    open: HashMap<(Option<String>, String, Option<u16>), Arc<Remote>>,
}

impl Hosts {
    async fn disconnect(&self) {
        for remote in self.open.values() {
            remote.disconnect().await;
        }
    }

    async fn get(&mut self, cli: &CpCli, spec: &RemoteSpec) -> Result<Arc<Remote>, CpError> {
        let key = (spec.user.clone(), spec.host.clone(), spec.port);
        if let Some(remote) = self.open.get(&key) {
            return Ok(remote.clone());
        }
        let remote = Arc::new(Remote::connect(cli, spec).await?);
        self.open.insert(key, remote.clone());
        Ok(remote)
    }
}

/// scp's reading of a remote path: empty or `~` is the login directory, `~/x` is `x` there.
fn remote_path(path: &str) -> String {
    if path.is_empty() || path == "~" {
        return ".".into();
    }
    match path.strip_prefix("~/") {
        Some(rest) if rest.trim_start_matches('/').is_empty() => ".".into(),
        Some(rest) => rest.trim_start_matches('/').to_string(),
        None => path.to_string(),
    }
}

/// basename(3): the last component, trailing slashes ignored; `..` copies into the target itself.
fn base_name(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".into();
    }
    match trimmed.rsplit('/').next().unwrap_or(trimmed) {
        ".." => ".".into(),
        name => name.to_string(),
    }
}

fn join(dir: &str, name: &str) -> String {
    if name == "." {
        return dir.to_string();
    }
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// One source argument's copy.
struct Request {
    src: Side,
    dst: Side,
    /// The source as the user wrote it, for messages.
    given: String,
    source: String,
    destination: String,
    target_given: String,
}

#[derive(Clone, Copy)]
struct Settings {
    preserve: bool,
    resume: bool,
    recursive: bool,
    tuning: SftpTuning,
    show_progress: bool,
}

/// What a source expands to: directories to make (parents first, with the
/// source's stat) and files to copy.
#[derive(Default)]
struct Work {
    dirs: Vec<(String, Stat)>,
    files: Vec<FileJob>,
    skipped: bool,
}

/// Copies one source argument; whether everything went well.
async fn copy_one_source(
    request: Request,
    settings: Settings,
    limiter: Option<&Arc<Limiter>>,
) -> bool {
    let stat = match request.src.stat(&request.source).await {
        Ok(Some(stat)) => stat,
        Ok(None) => {
            complain(
                None,
                &format!("{}: No such file or directory", request.given),
            );
            return false;
        }
        Err(e) => {
            complain(None, &e.to_string());
            return false;
        }
    };
    let remote_source = matches!(request.src, Side::Remote(_));
    let mut work = Work::default();
    if stat.is_dir && settings.recursive {
        work.dirs.push((request.destination.clone(), stat));
        if let Err(e) = walk(
            &request.src,
            &request.source,
            &request.destination,
            &mut work,
        )
        .await
        {
            complain(None, &e.to_string());
            return false;
        }
    } else if stat.is_file {
        work.files.push(FileJob {
            src: request.source.clone(),
            dst: request.destination.clone(),
            stat,
        });
    } else {
        if remote_source {
            complain(
                None,
                &format!("download {}: not a regular file", request.source),
            );
        } else {
            complain(
                None,
                &format!("local \"{}\" is not a regular file", request.source),
            );
            complain(
                None,
                &format!(
                    "failed to upload file {} to {}",
                    request.given, request.target_given
                ),
            );
        }
        return false;
    }
    let mut ok = !work.skipped;
    for (dir, stat) in &work.dirs {
        // Writable by us while we fill it; -p sets the real mode after.
        if let Err(e) = request.dst.mkdir(dir, stat.mode | 0o700).await {
            complain(None, &e.to_string());
            return false;
        }
    }
    let total = work.files.iter().map(|f| f.stat.size).sum();
    let shared = Arc::new(Shared {
        src: request.src.clone(),
        dst: request.dst.clone(),
        preserve: settings.preserve,
        resume: settings.resume,
        tuning: settings.tuning,
        limiter: limiter.cloned(),
        progress: Progress::new(settings.show_progress, total),
        next_lane: Default::default(),
    });
    let mut in_flight = JoinSet::new();
    let mut jobs = work.files.into_iter();
    loop {
        while in_flight.len() < FILES_AT_ONCE {
            let Some(job) = jobs.next() else { break };
            let shared = shared.clone();
            in_flight.spawn(async move {
                let name = job.src.clone();
                (name, transfer::copy_file(shared, job).await)
            });
        }
        let Some(done) = in_flight.join_next().await else {
            break;
        };
        match done {
            Ok((_, Ok(()))) => {}
            Ok((_, Err(e))) => {
                complain(Some(&shared.progress), &e.to_string());
                ok = false;
            }
            Err(e) => {
                complain(Some(&shared.progress), &format!("copy task failed: {e}"));
                ok = false;
            }
        }
    }
    shared.progress.finish();
    if settings.preserve {
        // Deepest first, so setting a parent's times is not undone by a child.
        for (dir, stat) in work.dirs.iter().rev() {
            let set =
                request
                    .dst
                    .set_attrs(dir, None, Some(stat.mode), Some((stat.atime, stat.mtime)));
            if let Err(e) = set.await {
                complain(None, &e.to_string());
                ok = false;
            }
        }
    } else if ok {
        // Without -p a new directory keeps the source's mode (as mkdir would give it).
        for (dir, stat) in work.dirs.iter().rev() {
            if stat.mode & 0o700 != 0o700 {
                let _ = request
                    .dst
                    .set_attrs(dir, None, Some(stat.mode), None)
                    .await;
            }
        }
    }
    ok
}

/// Lists `src_dir` recursively into `work`, following symlinks as scp does.
async fn walk(side: &Side, src_dir: &str, dst_dir: &str, work: &mut Work) -> Result<(), CpError> {
    let mut pending = vec![(src_dir.to_string(), dst_dir.to_string())];
    while let Some((src, dst)) = pending.pop() {
        let mut entries = side.list_dir(&src).await?;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, stat) in entries {
            let (src_path, dst_path) = (join(&src, &name), join(&dst, &name));
            match stat {
                Some(stat) if stat.is_dir => {
                    work.dirs.push((dst_path.clone(), stat));
                    pending.push((src_path, dst_path));
                }
                Some(stat) if stat.is_file => work.files.push(FileJob {
                    src: src_path,
                    dst: dst_path,
                    stat,
                }),
                _ => {
                    complain(None, &format!("{src_path}: not a regular file"));
                    work.skipped = true;
                }
            }
        }
    }
    Ok(())
}

/// -R: scp runs on the origin host and copies from there, as scp -R does.
async fn remote_to_remote_on_origin(
    cli: &CpCli,
    sources: &[Location],
    target: &RemoteSpec,
) -> Result<i32, (i32, String)> {
    let mut failed = false;
    let mut hosts = Hosts::default();
    for source in sources {
        let Location::Remote(spec) = source else {
            complain(None, "-R: every source must be remote");
            failed = true;
            continue;
        };
        let remote = match hosts.get(cli, spec).await {
            Ok(remote) => remote,
            Err(e) => {
                complain(None, &connect_failed(e, "sftp connection failed"));
                failed = true;
                continue;
            }
        };
        let mut command = vec!["scp".to_string()];
        for (set, flag) in [
            (cli.recursive, "-r"),
            (cli.preserve, "-p"),
            (cli.quiet, "-q"),
        ] {
            if set {
                command.push(flag.into());
            }
        }
        if let Some(port) = target.port {
            command.push("-P".into());
            command.push(port.to_string());
        }
        command.push("--".into());
        command.push(spec.path.clone());
        let user = target
            .user
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        command.push(format!("{user}{}:{}", target.host, target.path));
        match remote.exec(&command).await {
            Ok(0) => {}
            Ok(_) => failed = true,
            Err(e) => {
                complain(None, &e.to_string());
                failed = true;
            }
        }
    }
    Ok(if failed { EXIT_FAILED } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_as_scp_names_them() {
        assert_eq!(remote_path(""), ".");
        assert_eq!(remote_path("~"), ".");
        assert_eq!(remote_path("~/"), ".");
        assert_eq!(remote_path("~/a/b"), "a/b");
        assert_eq!(remote_path("/abs"), "/abs");
        assert_eq!(base_name("/a/tree/"), "tree");
        assert_eq!(base_name("file"), "file");
        assert_eq!(base_name(".."), ".");
        assert_eq!(join("/r", "x"), "/r/x");
        assert_eq!(join("/r/", "x"), "/r/x");
        assert_eq!(join("/r", "."), "/r");
    }
}
