//! The command line surface: clap definitions only, no validation beyond parsing.
//!
//! Every option is an `Option` so that [`crate::config`] can tell a flag that was
//! given from one that was not, and let flags override the config file. The
//! same struct is the config file's schema (serde): an option's key is its
//! field's name, and an option without a key is `#[serde(skip)]`, so a flag
//! and its key are spelled once.
//!
//! Help text conventions: the first paragraph of a doc comment is the one-line
//! help of `-h`; the whole comment is the long help of `--help` (and the man
//! page), whose last paragraph gives the default and the config key, as
//! `[default: VALUE] [config: KEY]` (each only where there is one). Every option
//! sits under one of [`HEADINGS`]. README.md's "Options" section is the
//! `--help` output (see tests/cli.rs).

use std::path::PathBuf;

use clap::{ArgAction, Parser};
use serde::Deserialize;

use crate::options::{ByteSize, FileAllocation, OnExists, ProgressMode, ShardArg};

pub mod generate;

/// The help headings, in the order `--help` shows them; every option is under one.
pub const HEADINGS: [&str; 6] = [
    "Input",
    "Output",
    "Concurrency",
    "Resilience",
    "HTTP",
    "Reporting",
];

/// Width help is wrapped to, whatever the terminal: the help (and README's
/// copy of it) is the same everywhere.
pub const HELP_WIDTH: usize = 100;

/// Text shown after the options in `--help`.
const AFTER_HELP: &str = "\
Exit codes:
  0    every download succeeded or was already complete
  1    at least one download failed (the others still ran)
  2    usage, input or config error (nothing was downloaded)
  130  interrupted by SIGINT/SIGTERM (partial data kept in NAME.part; rerun to resume)

List format (-i): one URL per line; '#' comments and blank lines are ignored;
indented 'key=value' lines after a URL set its options: out=NAME, dir=DIR, header=K: V,
connections=N, limit_rate=RATE, checksum=ALGO=HEX";

/// volley: download a batch of URLs concurrently, safely and resumably.
#[derive(Debug, Default, Parser, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[command(
    name = "volley",
    version,
    about,
    after_help = AFTER_HELP,
    term_width = HELP_WIDTH,
    max_term_width = HELP_WIDTH,
    disable_help_flag = true,
    disable_version_flag = true,
    next_display_order = 1
)]
pub struct Cli {
    /// URLs to download.
    #[serde(skip)]
    #[arg(value_name = "URL", display_order = 0, help_heading = "Input", value_hint = clap::ValueHint::Url)]
    pub urls: Vec<String>,

    /// Read URLs from FILE ('-' reads stdin).
    ///
    /// The list format is aria2c's (see below); may be combined with URL arguments. A FILE ending
    /// in .meta4 or .metalink is read as a Metalink file.
    #[serde(skip)]
    #[arg(
        short = 'i',
        long = "input-file",
        value_name = "FILE",
        help_heading = "Input",
        value_hint = clap::ValueHint::FilePath
    )]
    pub input_file: Option<PathBuf>,

    /// Read downloads from a Metalink file (RFC 5854 or v3).
    ///
    /// Every <file> becomes a download with its name, size, mirrors (in priority order) and its
    /// strongest whole-file hash. A -i file ending in .meta4 or .metalink is read the same way.
    #[serde(skip)]
    #[arg(long, value_name = "FILE", help_heading = "Input", value_hint = clap::ValueHint::FilePath)]
    pub metalink: Option<PathBuf>,

    /// TOML config file.
    ///
    /// Flags override the file; volley --print-config prints every key.
    ///
    /// [default: $XDG_CONFIG_HOME/volley/config.toml or ~/.config/volley/config.toml, when present]
    #[serde(skip)]
    #[arg(long, value_name = "FILE", help_heading = "Input", value_hint = clap::ValueHint::FilePath)]
    pub config: Option<PathBuf>,

    /// Download only shard K of N of the input (0 <= K < N), or 'auto'.
    ///
    /// N processes given the same input and N split it with no overlap and no gap. A download
    /// belongs to shard FNV-1a-64(URL) mod N: the 64-bit FNV-1a hash of the bytes of its URL as
    /// serialised after parsing (lower-case scheme and host, '/' for an empty path), so a URL is
    /// in the same shard on every run and platform, and a URL given twice is in one shard.
    ///
    /// 'auto' takes K from a Kubernetes Indexed Job (JOB_COMPLETION_INDEX; N from --shard-count)
    /// or a Slurm job array (SLURM_ARRAY_TASK_ID minus SLURM_ARRAY_TASK_MIN; N from
    /// SLURM_ARRAY_TASK_COUNT or --shard-count).
    ///
    /// [config: shard]
    #[arg(long, value_name = "K/N|auto", help_heading = "Input")]
    pub shard: Option<ShardArg>,

    /// Number of shards for --shard auto.
    ///
    /// Needed in a Kubernetes Indexed Job (its completions); in a Slurm array it overrides
    /// SLURM_ARRAY_TASK_COUNT. With --shard K/N it must equal N.
    ///
    /// [config: shard_count]
    #[arg(long, value_name = "N", help_heading = "Input")]
    pub shard_count: Option<u64>,

    /// Directory to save into, created if missing.
    ///
    /// [default: .] [config: dir]
    #[arg(short = 'd', long, value_name = "DIR", help_heading = "Output", value_hint = clap::ValueHint::DirPath)]
    pub dir: Option<PathBuf>,

    /// File to save to; only with exactly one URL.
    ///
    /// A name (saved in -d), or a path (relative to -d unless absolute); '-' writes the body to
    /// stdout, and an existing file that is not a regular one (/dev/null, a FIFO) is written into
    /// as it is. Name several downloads with out= in a list (-i).
    #[serde(skip)]
    #[arg(short = 'o', long, value_name = "PATH", help_heading = "Output", value_hint = clap::ValueHint::FilePath)]
    pub output: Option<String>,

    /// Name files after the last URL of a redirect.
    ///
    /// By default a file is named after the URL given (or the server's Content-Disposition), never
    /// after where a redirect led, so a server cannot pick the name by redirecting. With this
    /// option, a redirected download is named after its last URL (links like .../download that
    /// redirect to a mirror).
    ///
    /// [default: off] [config: trust_server_names]
    #[arg(long, help_heading = "Output")]
    pub trust_server_names: bool,

    /// When the final file already exists: skip | overwrite | rename | fail.
    ///
    /// skip reports "already complete" and sends no request; overwrite replaces it; rename saves
    /// as NAME.1.EXT (NAME.2.EXT, ...); fail fails that download.
    ///
    /// [default: skip] [config: on_exists]
    #[arg(
        long,
        value_name = "POLICY",
        help_heading = "Output",
        hide_possible_values = true
    )]
    pub on_exists: Option<OnExists>,

    /// Verify the download with ALGO=HEX; only with one URL.
    ///
    /// ALGO is sha-256, sha-512, sha-1, md5, blake2b or blake3. Give each download of a list its
    /// own checksum= option, or use --checksum-file.
    #[serde(skip)]
    #[arg(long, value_name = "ALGO=HEX", help_heading = "Output")]
    pub checksum: Option<String>,

    /// Verify every download named in a sha256sum-style FILE.
    ///
    /// Files as sha256sum, sha512sum or b2sum print them: GNU lines (HEX  NAME, HEX *NAME) or BSD lines (SHA256 (NAME) = HEX); a download is checked
    /// when its final file name is a NAME in the file.
    #[serde(skip)]
    #[arg(long, value_name = "FILE", help_heading = "Output", value_hint = clap::ValueHint::FilePath)]
    pub checksum_file: Option<PathBuf>,

    /// Set mtimes from Last-Modified; skip unchanged files on a rerun.
    ///
    /// A rerun sends If-Modified-Since and skips a file on 304, or when the server's copy is not
    /// newer and has the same size.
    ///
    /// [default: off] [config: timestamping]
    #[arg(short = 'N', long, help_heading = "Output")]
    pub timestamping: bool,

    /// Reserve disk space for files of known size: none | prealloc | falloc.
    ///
    /// none reserves nothing; prealloc sizes the file up front (sparse); falloc reserves the
    /// blocks with posix_fallocate (sparse where the filesystem does not support it).
    ///
    /// [default: falloc] [config: file_allocation]
    #[arg(
        long,
        value_name = "MODE",
        help_heading = "Output",
        hide_possible_values = true
    )]
    pub file_allocation: Option<FileAllocation>,

    /// Downloads at once.
    ///
    /// [default: 8] [config: jobs]
    #[arg(short = 'j', long, value_name = "N", help_heading = "Concurrency")]
    pub jobs: Option<usize>,

    /// TCP connections to one host at once (all downloads).
    ///
    /// Counted the same whatever the protocol: each connection of a split download and each large
    /// body has a TCP connection of its own. Over HTTP/2 small files share a connection, and each
    /// request in flight still counts, so no more than N requests go to one host at once either.
    /// A busy host (a 429, or a Retry-After) gets fewer, for a while.
    ///
    /// [default: 8] [config: max_per_host]
    #[arg(long, value_name = "N", help_heading = "Concurrency")]
    pub max_per_host: Option<usize>,

    /// Most connections one download may use.
    ///
    /// A large file is split into ranges fetched in parallel when the server supports ranges.
    /// List option: connections=N.
    ///
    /// [default: 1] [config: connections]
    #[arg(short = 'x', long, value_name = "N", help_heading = "Concurrency")]
    pub connections: Option<usize>,

    /// Split a file only into pieces at least this large.
    ///
    /// A size is bytes with an optional K, M or G (KiB, MiB, GiB); KB, MB, GB are powers of 1000.
    ///
    /// [default: 4M] [config: min_split_size]
    #[arg(long, value_name = "SIZE", help_heading = "Concurrency")]
    pub min_split_size: Option<ByteSize>,

    /// Cap the whole run at RATE bytes per second (e.g. 500K, 10M).
    ///
    /// No cap by default; 0 is no cap too.
    ///
    /// [config: limit_rate]
    #[arg(long, value_name = "RATE", help_heading = "Concurrency")]
    pub limit_rate: Option<ByteSize>,

    /// Cap each download at RATE bytes per second.
    ///
    /// No cap by default; 0 is no cap. List option: limit_rate=RATE (0: none for that download).
    ///
    /// [config: limit_rate_per_download]
    #[arg(long, value_name = "RATE", help_heading = "Concurrency")]
    pub limit_rate_per_download: Option<ByteSize>,

    /// Retries of a failed download after the first try.
    ///
    /// [default: 5] [config: retries]
    #[arg(long, value_name = "N", help_heading = "Resilience")]
    pub retries: Option<u32>,

    /// Base of the exponential backoff between retries, seconds.
    ///
    /// [default: 1] [config: retry_wait]
    #[arg(long, value_name = "S", help_heading = "Resilience")]
    pub retry_wait: Option<f64>,

    /// Longest wait between retries, seconds; also caps Retry-After.
    ///
    /// [default: 60] [config: max_retry_wait]
    #[arg(long, value_name = "S", help_heading = "Resilience")]
    pub max_retry_wait: Option<f64>,

    /// Seconds to establish a connection.
    ///
    /// [default: 10] [config: connect_timeout]
    #[arg(long, value_name = "S", help_heading = "Resilience")]
    pub connect_timeout: Option<f64>,

    /// Idle timeout: seconds without a byte before a try is abandoned.
    ///
    /// [default: 30] [config: timeout]
    #[arg(long, value_name = "S", help_heading = "Resilience")]
    pub timeout: Option<f64>,

    /// Stall timeout: seconds silent while the host's others flow (0: off).
    ///
    /// A download whose connection sends nothing that long while other downloads from the same host
    /// receive data is dropped and resumed by range on another request. Only downloads that can be
    /// resumed are dropped; one alone on its host, or a host gone quiet as a whole, waits for
    /// --timeout. The new try starts at once and, when the dropped one took the file further than
    /// any before it, is not counted against --retries.
    ///
    /// [default: 3] [config: stall_timeout]
    #[arg(long, value_name = "S", help_heading = "Resilience")]
    pub stall_timeout: Option<f64>,

    /// Extra request header 'K: V', repeatable.
    ///
    /// Added to the headers of the config file. Sent only to the origin (scheme, host and port) of
    /// the URL it is given for: a redirect to another origin drops it.
    ///
    /// [config: headers]
    #[arg(
        short = 'H',
        long = "header",
        value_name = "K: V",
        help_heading = "HTTP"
    )]
    pub headers: Vec<String>,

    /// User-Agent header.
    ///
    /// [default: volley/VERSION] [config: user_agent]
    #[arg(short = 'U', long, value_name = "UA", help_heading = "HTTP")]
    pub user_agent: Option<String>,

    /// Referer header to send.
    ///
    /// None is sent by default, not even after a redirect. Like -H, sent only to the origin of the
    /// URL it is given for.
    ///
    /// [config: referer]
    #[arg(long, value_name = "URL", help_heading = "HTTP")]
    pub referer: Option<String>,

    /// Proxy for all requests (http, https, socks4, socks5, socks5h).
    ///
    /// The schemes http, https, socks4, socks4a, socks5 and socks5h are understood. A user and password may be in the URL (percent-encoded). socks5h asks the proxy to resolve
    /// host names, so no DNS request leaves this machine. Without it, the environment's
    /// http_proxy, HTTPS_PROXY, ALL_PROXY (and their lower-case forms; HTTP_PROXY is not read)
    /// apply, as in curl; '' uses no proxy whatever the environment says. A proxy volley cannot
    /// use stops the run: it never goes direct instead.
    ///
    /// [config: proxy]
    #[arg(long, value_name = "URL", help_heading = "HTTP")]
    pub proxy: Option<String>,

    /// Hosts that go direct, not through the proxy: comma-separated.
    ///
    /// A name matches itself and its subdomains (a leading dot is allowed); IP addresses and ranges
    /// (10.0.0.0/8) match as such; '*' sends everything direct. Overrides NO_PROXY.
    ///
    /// [config: noproxy]
    #[arg(long, value_name = "LIST", help_heading = "HTTP")]
    pub noproxy: Option<String>,

    /// Accept invalid TLS certificates.
    ///
    /// [default: off] [config: insecure]
    #[arg(long, help_heading = "HTTP")]
    pub insecure: bool,

    /// Trust the PEM certificates in FILE, beside the system's.
    ///
    /// A CA's certificate, or a server's own self-signed certificate (as curl --cacert takes it):
    /// the host name and dates are still checked.
    ///
    /// [config: ca_cert]
    #[arg(long, value_name = "FILE", help_heading = "HTTP", value_hint = clap::ValueHint::FilePath)]
    pub ca_cert: Option<PathBuf>,

    /// Client certificate (PEM) for servers that ask for one (mutual TLS).
    ///
    /// The file may hold the private key too; else give it with --key.
    ///
    /// [config: cert]
    #[arg(long, value_name = "FILE", help_heading = "HTTP", value_hint = clap::ValueHint::FilePath)]
    pub cert: Option<PathBuf>,

    /// Private key (PEM) of the --cert certificate.
    ///
    /// [config: key]
    #[arg(long, value_name = "FILE", help_heading = "HTTP", value_hint = clap::ValueHint::FilePath)]
    pub key: Option<PathBuf>,

    /// Speak HTTP/1.1 only, never HTTP/2.
    ///
    /// By default HTTP/2 is used where the server offers it, for small files (they share a
    /// connection); split downloads and large files always use HTTP/1.1 connections of their own.
    ///
    /// [default: off] [config: http1_1]
    #[arg(long = "http1.1", help_heading = "HTTP")]
    pub http1_1: bool,

    /// Follow redirects from https to http (refused by default).
    ///
    /// [default: off] [config: allow_insecure_redirect]
    #[arg(long, help_heading = "HTTP")]
    pub allow_insecure_redirect: bool,

    /// Most redirects followed per download.
    ///
    /// A redirect loop fails that download.
    ///
    /// [default: 10] [config: max_redirects]
    #[arg(long, value_name = "N", help_heading = "HTTP")]
    pub max_redirects: Option<usize>,

    /// HTTP Basic user for every download.
    ///
    /// Sent only to each download's own host; see --netrc for per-host credentials.
    ///
    /// [config: http_user]
    #[arg(long, value_name = "USER", help_heading = "HTTP")]
    pub http_user: Option<String>,

    /// HTTP Basic password for --http-user.
    ///
    /// [config: http_password]
    #[arg(long, value_name = "PASS", help_heading = "HTTP")]
    pub http_password: Option<String>,

    /// Take HTTP Basic credentials per host from ~/.netrc.
    ///
    /// [default: off] [config: netrc]
    #[arg(long, help_heading = "HTTP")]
    pub netrc: bool,

    /// Take HTTP Basic credentials per host from FILE (implies --netrc).
    ///
    /// [config: netrc_file]
    #[arg(long, value_name = "FILE", help_heading = "HTTP", value_hint = clap::ValueHint::FilePath)]
    pub netrc_file: Option<PathBuf>,

    /// Send cookies from a Netscape cookies.txt FILE.
    ///
    /// [config: load_cookies]
    #[arg(long, value_name = "FILE", help_heading = "HTTP", value_hint = clap::ValueHint::FilePath)]
    pub load_cookies: Option<PathBuf>,

    /// Write the cookie jar to FILE (Netscape format) at the end.
    ///
    /// [config: save_cookies]
    #[arg(long, value_name = "FILE", help_heading = "HTTP", value_hint = clap::ValueHint::FilePath)]
    pub save_cookies: Option<PathBuf>,

    /// Resolve every download without downloading or writing anything.
    ///
    /// Shows the final URL, status, size, name and whether it would download, resume or skip
    /// (HEAD requests; a one-byte GET where HEAD is refused). Exit 1 when any would fail.
    ///
    /// [default: off]
    #[serde(skip)]
    #[arg(long, help_heading = "Reporting")]
    pub dry_run: bool,

    /// Print the path of each completed file on stdout, one per line.
    ///
    /// Files already complete included. Not with --json or -o -.
    ///
    /// [default: off]
    #[serde(skip)]
    #[arg(long, help_heading = "Reporting")]
    pub print_paths: bool,

    /// Like --print-paths, NUL-separated (for xargs -0).
    ///
    /// [default: off]
    #[serde(skip)]
    #[arg(short = '0', long = "print0", help_heading = "Reporting")]
    pub print0: bool,

    /// Write the downloads that did not complete to FILE, as a list for -i.
    ///
    /// Failed, interrupted and never started downloads, with their options.
    #[serde(skip)]
    #[arg(long, value_name = "FILE", help_heading = "Reporting", value_hint = clap::ValueHint::FilePath)]
    pub save_failed: Option<PathBuf>,

    /// Errors and the final failures only.
    ///
    /// [default: off] [config: quiet]
    #[arg(short = 'q', long, help_heading = "Reporting")]
    pub quiet: bool,

    /// Plain lines: a line when each download starts, too.
    ///
    /// Without it, plain lines (when stderr is not a terminal) say when a download is done, retried,
    /// skipped or failed, and the summary.
    ///
    /// [default: off] [config: verbose]
    #[arg(short = 'v', long, help_heading = "Reporting")]
    pub verbose: bool,

    /// Progress display: auto | bars | plain | none.
    ///
    /// auto shows bars on a terminal and plain lines otherwise; bars falls back to plain lines
    /// when stderr is not a terminal or TERM is dumb; none shows only the summary. NO_COLOR
    /// turns colour off.
    ///
    /// [default: auto] [config: progress]
    #[arg(
        long,
        value_name = "MODE",
        help_heading = "Reporting",
        hide_possible_values = true
    )]
    pub progress: Option<ProgressMode>,

    /// JSON Lines events on stdout.
    ///
    /// One object per line, each with event and ts (Unix seconds); id is the download's index in
    /// input order. Events and their fields: start (id url path size resumed_from), progress (id
    /// url path bytes size speed connections; at most twice a second), retry (id url attempt
    /// max_attempts reason delay_secs), done (id url path bytes transferred elapsed checksum),
    /// skipped (id url path reason), failed (id url path reason), interrupted (id url path),
    /// duplicate (id url path of), plan (--dry-run: id url final_url status size path action),
    /// host (host window paused_secs), and summary, always last (succeeded skipped failed
    /// interrupted not_started bytes elapsed dry_run planned).
    ///
    /// [default: off] [config: json]
    #[arg(long, help_heading = "Reporting")]
    pub json: bool,

    /// Print a completion script for SHELL and exit.
    ///
    /// SHELL is bash, zsh, fish, powershell or elvish; e.g. volley --completions bash >
    /// ~/.local/share/bash-completion/completions/volley
    #[serde(skip)]
    #[arg(
        long,
        value_name = "SHELL",
        exclusive = true,
        hide_possible_values = true,
        help_heading = "Reporting"
    )]
    pub completions: Option<clap_complete::Shell>,

    /// Print the man page (roff) and exit.
    ///
    /// e.g. volley --man > ~/.local/share/man/man1/volley.1
    #[serde(skip)]
    #[arg(long, exclusive = true, help_heading = "Reporting")]
    pub man: bool,

    /// Print an example config file and exit.
    ///
    /// Every key, commented out, with its default or an example value; e.g. volley
    /// --print-config > ~/.config/volley/config.toml
    #[serde(skip)]
    #[arg(long, exclusive = true, help_heading = "Reporting")]
    pub print_config: bool,

    /// Print help (-h: one line per option; --help: all of it).
    #[serde(skip)]
    #[arg(short = 'h', long, action = ArgAction::Help, help_heading = "Reporting")]
    pub help: Option<bool>,

    /// Print the version.
    #[serde(skip)]
    #[arg(short = 'V', long, action = ArgAction::Version, help_heading = "Reporting")]
    pub version: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_option_has_one_of_the_headings() {
        for arg in Cli::command().get_arguments() {
            let heading = arg.get_help_heading();
            assert!(
                heading.is_some_and(|h| HEADINGS.contains(&h)),
                "{} is under {heading:?}",
                arg.get_id()
            );
        }
    }
}
