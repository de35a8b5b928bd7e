//! Copying one file: read blocks from the source and write them to a
//! temporary name beside the target, many requests in flight, then rename.
//!
//! A file big enough is striped block by block over every SFTP session
//! the remote side has (over QUIC: separate streams); smaller files each
//! take one session, in turn, so many files move at once.
//!
//! The temporary file is `.NAME.sshq-part` in the target's directory: an
//! interrupted copy leaves that, never a truncated file under the final
//! name. `--resume` continues from it once its bytes have been compared
//! with the source's, block by block; the copy goes on from the first block
//! that differs (blocks in flight when a copy is killed may have landed out
//! of order, so the partial file may hold holes, which this finds).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::args::SftpTuning;
use super::fs::{CpError, Handle, Side, Stat};

/// Files at least this big are spread over all sessions.
const STRIPE_THRESHOLD: u64 = 8 * 1024 * 1024;

/// What every file's copy shares.
pub struct Shared {
    pub src: Side,
    pub dst: Side,
    pub preserve: bool,
    pub resume: bool,
    pub tuning: SftpTuning,
    pub limiter: Option<Arc<Limiter>>,
    pub progress: Progress,
    /// Which session the next small file takes.
    pub next_lane: AtomicUsize,
}

/// One file to copy.
#[derive(Debug, Clone)]
pub struct FileJob {
    pub src: String,
    pub dst: String,
    pub stat: Stat,
}

/// The temporary name a file is written under until it is complete.
pub fn temp_name(target: &str) -> String {
    let (dir, name) = match target.rsplit_once('/') {
        Some((dir, name)) => (format!("{dir}/"), name),
        None => (String::new(), target),
    };
    format!("{dir}.{name}.sshq-part")
}

/// Copies one file to its temporary name and renames it into place.
pub async fn copy_file(shared: Arc<Shared>, job: FileJob) -> Result<(), CpError> {
    let temp = temp_name(&job.dst);
    let size = job.stat.size;
    let sessions = shared.src.sessions().max(shared.dst.sessions());
    let lanes: Vec<usize> = if size >= STRIPE_THRESHOLD && sessions > 1 {
        (0..sessions).collect()
    } else {
        vec![shared.next_lane.fetch_add(1, Ordering::Relaxed) % sessions]
    };
    let partial = match shared.resume {
        true => match shared.dst.stat(&temp).await? {
            Some(st) if st.is_file && st.size <= size => Some(st.size),
            Some(st) if st.is_file => {
                tracing::debug!("{temp}: longer than the source; starting again");
                None
            }
            _ => None,
        },
        false => None,
    };
    let source = Arc::new(shared.src.open_read(&job.src, &lanes).await?);
    let target = shared
        .dst
        .open_write(&temp, &lanes, job.stat.mode, partial.is_none())
        .await;
    let target = match target {
        Ok(target) => Arc::new(target),
        Err(e) => {
            close(source).await;
            return Err(e);
        }
    };
    shared.progress.start_file(&job.src);
    let result = async {
        let block = u64::from(shared.tuning.block);
        let (from, mut redo) = match partial {
            Some(length) if length > 0 => {
                let differing = differing_blocks(&shared, &source, &target, &job, length).await?;
                tracing::debug!(
                    "{}: resuming at byte {length} of {size}; {} block(s) of the partial file differ",
                    job.dst,
                    differing.len()
                );
                shared
                    .progress
                    .skip(length.saturating_sub(differing.len() as u64 * block));
                (length, differing)
            }
            _ => (0, Vec::new()),
        };
        redo.extend((from..size).step_by(block as usize));
        copy_blocks(&shared, &source, &target, &job, redo).await
    }
    .await;
    close(source).await;
    close(target).await;
    result?;
    let mode = shared.preserve.then_some(job.stat.mode);
    let times = shared.preserve.then_some((job.stat.atime, job.stat.mtime));
    if mode.is_some() {
        shared.dst.set_attrs(&temp, None, mode, times).await?;
    }
    shared.dst.rename_over(&temp, &job.dst).await
}

async fn close(handle: Arc<Handle>) {
    if let Ok(handle) = Arc::try_unwrap(handle) {
        handle.close().await;
    }
}

/// Copies the blocks starting at `offsets` (the last one may be short),
/// with up to the tuning's number of requests per session in flight.
async fn copy_blocks(
    shared: &Arc<Shared>,
    source: &Arc<Handle>,
    target: &Arc<Handle>,
    job: &FileJob,
    offsets: Vec<u64>,
) -> Result<(), CpError> {
    let block = u64::from(shared.tuning.block);
    let lanes = source.lanes().max(target.lanes());
    let window = shared.tuning.requests * lanes;
    let mut in_flight = JoinSet::new();
    for offset in offsets {
        while in_flight.len() >= window {
            joined(in_flight.join_next().await)?;
        }
        let len = block.min(job.stat.size - offset) as u32;
        if let Some(limiter) = &shared.limiter {
            limiter.take(u64::from(len)).await;
        }
        let (shared, source, target) = (shared.clone(), source.clone(), target.clone());
        let (src, dst) = (job.src.clone(), temp_name(&job.dst));
        // Blocks take the sessions in turn: a big file is striped over all.
        let lane = (offset / block) as usize;
        in_flight.spawn(async move {
            let data = source.read_at(lane, offset, len, &src).await?;
            if data.len() != len as usize {
                return Err(CpError::Message(format!(
                    "{src}: file changed size while being copied"
                )));
            }
            target.write_at(lane, offset, data, &dst).await?;
            shared.progress.add(u64::from(len));
            Ok(())
        });
    }
    while let Some(done) = in_flight.join_next().await {
        joined(Some(done))?;
    }
    Ok(())
}

/// The offsets of the blocks of the partial file (`length` bytes) that
/// differ from the source's: holes left by blocks in flight at the
/// interruption, or a source that changed since.
async fn differing_blocks(
    shared: &Arc<Shared>,
    source: &Arc<Handle>,
    target: &Arc<Handle>,
    job: &FileJob,
    length: u64,
) -> Result<Vec<u64>, CpError> {
    let block = u64::from(shared.tuning.block);
    let window = shared.tuning.requests * source.lanes().max(target.lanes());
    let mut in_flight = JoinSet::new();
    let mut differing = Vec::new();
    for offset in (0..length).step_by(block as usize) {
        while in_flight.len() >= window {
            differing.extend(joined(in_flight.join_next().await)?);
        }
        let len = block.min(length - offset) as u32;
        let (source, target) = (source.clone(), target.clone());
        let (src, dst) = (job.src.clone(), temp_name(&job.dst));
        let lane = (offset / block) as usize;
        in_flight.spawn(async move {
            let ours = source.read_at(lane, offset, len, &src).await?;
            let theirs = target.read_at(lane, offset, len, &dst).await?;
            Ok((ours != theirs).then_some(offset))
        });
    }
    while let Some(done) = in_flight.join_next().await {
        differing.extend(joined(Some(done))?);
    }
    differing.sort_unstable();
    Ok(differing)
}

fn joined<T>(
    result: Option<Result<Result<T, CpError>, tokio::task::JoinError>>,
) -> Result<T, CpError> {
    match result {
        Some(Ok(outcome)) => outcome,
        Some(Err(e)) => Err(CpError::Message(format!("copy task failed: {e}"))),
        None => Err(CpError::Message("copy task missing".into())),
    }
}

/// scp's -l: every byte copied, whichever file, shares one rate.
pub struct Limiter {
    bytes_per_second: f64,
    start: Instant,
    granted: std::sync::Mutex<u64>,
}

impl Limiter {
    pub fn new(bytes_per_second: f64) -> Limiter {
        Limiter {
            bytes_per_second,
            start: Instant::now(),
            granted: std::sync::Mutex::new(0),
        }
    }

    /// Waits until `bytes` more are within the rate.
    pub async fn take(&self, bytes: u64) {
        let due = {
            let mut granted = match self.granted.lock() {
                Ok(granted) => granted,
                Err(poisoned) => poisoned.into_inner(),
            };
            let before = *granted;
            *granted += bytes;
            // The first block goes at once; each later one when the bytes
            // before it have had their time.
            self.start + Duration::from_secs_f64(before as f64 / self.bytes_per_second)
        };
        tokio::time::sleep_until(due.into()).await;
    }
}

/// The progress meter: one bar for everything, on a terminal only.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// A bar over `total` bytes when `show`, else nothing.
    pub fn new(show: bool, total: u64) -> Progress {
        let bar = show.then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total),
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{wide_msg} {percent:>3}% {bytes:>10} {binary_bytes_per_sec:>12} {eta:>4}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Progress { bar }
    }

    fn start_file(&self, name: &str) {
        if let Some(bar) = &self.bar {
            let short = name.rsplit('/').next().unwrap_or(name);
            bar.set_message(short.to_string());
        }
    }

    fn add(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    /// Bytes a resumed copy did not need to send.
    fn skip(&self, bytes: u64) {
        self.add(bytes);
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }

    /// Prints a line without tearing the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_sit_beside_the_target() {
        assert_eq!(temp_name("/a/b/file"), "/a/b/.file.sshq-part");
        assert_eq!(temp_name("file"), ".file.sshq-part");
        assert_eq!(temp_name("/file"), "/.file.sshq-part");
    }

    #[tokio::test]
    async fn the_limiter_holds_the_rate() {
        let limiter = Limiter::new(100_000.0);
        let start = Instant::now();
        for _ in 0..4 {
            limiter.take(10_000).await;
        }
        // Three blocks' worth of time has passed before the fourth goes.
        assert!(start.elapsed() >= Duration::from_millis(290));
    }
}
