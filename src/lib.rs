//! volley: a concurrent download manager.
//!
//! Layers, each in its own module: [`cli`] (clap definitions) → [`config`] (one
//! validated [`config::Settings`]) → [`input`] (URL lists into specs) →
//! [`scheduler`] (concurrency, per-host limits, retries) → [`download`] (one
//! download: request, name, `.part`, resume state, rename) → [`events`] (what the
//! core emits) → [`report`] (bars, plain lines, JSON Lines, summary). Beneath
//! them: [`naming`] (every output path), [`checksum`], [`fs`] (filesystem
//! primitives), [`options`] (option values), [`display`] (sizes and URLs as
//! people read them). README.md's Layout section has the whole tree.

pub mod checksum;
pub mod cli;
pub mod config;
pub mod display;
pub mod download;
pub mod events;
pub mod exit;
pub mod fs;
pub mod input;
pub mod naming;
pub mod options;
pub mod report;
pub mod scheduler;

use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::events::{EventSender, RunSummary};
use crate::input::Input;

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The HTTP client could not be built from the settings.
    #[error(transparent)]
    Client(#[from] download::http::ClientError),
    /// The `.netrc` or the cookie file could not be read.
    #[error(transparent)]
    File(#[from] fs::FileError),
    /// The output directory cannot be made: no download could be saved.
    #[error("--dir {}: cannot create it ({source}); choose another directory with -d", dir.display())]
    Dir {
        /// The directory.
        dir: std::path::PathBuf,
        /// The OS reason.
        source: std::io::Error,
    },
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// Download every spec with the given settings; reports go to stderr (and stdout
/// with `--json`). Returns what happened; a failed download is data, not an error.
pub fn run(settings: Settings, input: Input) -> Result<RunSummary, RunError> {
    // Checked once, before anything starts: a directory that cannot be made
    // would fail every download the same way. (A dry run writes nothing.)
    let to_file = !settings
        .output
        .as_ref()
        .is_some_and(options::OutputName::is_unnamed);
    if to_file && !settings.dry_run {
        std::fs::create_dir_all(&settings.dir).map_err(|source| RunError::Dir {
            dir: settings.dir.clone(),
            source,
        })?;
    }
    let credentials = download::auth::Credentials::load(
        settings.http_auth.clone(),
        settings.netrc.as_deref(),
        settings.netrc_required,
    )?;
    let jar = if settings.load_cookies.is_some() || settings.save_cookies.is_some() {
        Some(std::sync::Arc::new(download::cookies::Jar::load(
            settings.load_cookies.as_deref(),
        )?))
    } else {
        None
    };
    // A failure on the way through a proxy is told as the proxy's.
    download::error::use_proxies(&settings.proxies);
    let clients = download::http::build_clients(&settings, jar.clone())?;
    // One thread for the network: downloads wait on sockets, not on the CPU,
    // and a second worker would cost a wakeup per task handoff. Files are
    // written on the blocking pool and by the committer thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    let (events, rx) = EventSender::channel();
    let reporter_thread = report::spawn(report::for_settings(&settings, input.specs.len()), rx);
    let unfinished = settings
        .save_failed
        .as_ref()
        .filter(|_| !settings.dry_run)
        .map(|_| std::sync::Arc::new(scheduler::Unfinished::default()));
    let ran = runtime.block_on(async {
        let cancel = CancellationToken::new();
        let save = settings.save_failed.clone().zip(unfinished.clone());
        tokio::spawn(watch_signals(cancel.clone(), save));
        scheduler::run(
            &settings,
            input,
            clients,
            credentials,
            events,
            cancel,
            unfinished,
        )
        .await
    });
    let summary = ran.summary;
    // Every sender is gone: wake the reporter for its last look.
    reporter_thread.thread().unpark();
    let mut reporters = reporter_thread.join().unwrap_or_default();
    for r in &mut reporters {
        r.finish(&summary);
    }
    runtime.shutdown_background();
    // A dry run writes nothing: no list of failures, no cookie jar.
    if settings.dry_run {
        return Ok(summary);
    }
    if let Some(path) = &settings.save_failed {
        save_failed(path, ran.unfinished);
    }
    if let (Some(jar), Some(path)) = (&jar, &settings.save_cookies) {
        if let Err(e) = jar.save(path) {
            eprintln!("volley: {e}");
        }
    }
    Ok(summary)
}

/// Write the list of downloads that did not complete (`--save-failed`), for
/// `volley -i FILE`. It may hold passwords (in URLs, `header=` lines): only
/// its owner may read it.
fn save_failed(path: &std::path::Path, unfinished: Vec<input::Queued>) {
    let list: String = unfinished
        .into_iter()
        .map(|q| input::format_entry(&q.into_spec()))
        .collect();
    if let Err(e) = fs::write_private(path, list.as_bytes()) {
        eprintln!("volley: --save-failed {}: {e}", path.display());
    }
}

/// The first SIGINT, SIGTERM or SIGHUP cancels the run (in-flight data is
/// flushed and kept); a second one exits at once, since the state on disk is
/// already safe, after writing the `--save-failed` list of what did not
/// complete.
async fn watch_signals(
    cancel: CancellationToken,
    save: Option<(std::path::PathBuf, std::sync::Arc<scheduler::Unfinished>)>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
    cancel.cancel();
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
    if let Some((path, unfinished)) = save {
        save_failed(&path, unfinished.list());
    }
    std::process::exit(i32::from(exit::ExitStatus::Interrupted.code()));
}
