//! The command line surface: clap definitions only, no validation beyond parsing.
//!
//! Every option is an `Option` so that [`crate::config`] can tell a flag that was
//! given from one that was not, and let flags override the config file.

use std::path::PathBuf;

use clap::Parser;

use crate::config::{ByteSize, FileAllocation, OnExists, ProgressMode};
use crate::input::shard::ShardArg;

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
#[derive(Debug, Parser)]
#[command(name = "volley", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// URLs to download.
    #[arg(value_name = "URL")]
    pub urls: Vec<String>,

    /// Read URLs from FILE ('-' reads stdin); may be combined with URL arguments.
    #[arg(
        short = 'i',
        long = "input-file",
        value_name = "FILE",
        help_heading = "Input"
    )]
    pub input_file: Option<PathBuf>,

    /// Read downloads from a Metalink file (RFC 5854 or v3): names, sizes, mirrors, hashes. A -i file ending in .meta4 or .metalink is read the same way.
    #[arg(long, value_name = "FILE", help_heading = "Input")]
    pub metalink: Option<PathBuf>,

    /// TOML config file [default: $XDG_CONFIG_HOME/volley/config.toml when present].
    #[arg(long, value_name = "FILE", help_heading = "Input")]
    pub config: Option<PathBuf>,

    /// Download only shard K of N of the input (0 <= K < N; a URL belongs to shard FNV-1a-64(URL) mod N), or 'auto' from a Kubernetes Indexed Job (JOB_COMPLETION_INDEX) or a Slurm job array (SLURM_ARRAY_TASK_ID minus SLURM_ARRAY_TASK_MIN) [config: shard].
    #[arg(long, value_name = "K/N|auto", help_heading = "Input")]
    pub shard: Option<ShardArg>,

    /// Number of shards for --shard auto (a Kubernetes Job's completions; overrides SLURM_ARRAY_TASK_COUNT) [config: shard_count].
    #[arg(long, value_name = "N", help_heading = "Input")]
    pub shard_count: Option<u64>,

    /// Directory to save into, created if missing [default: .] [config: dir].
    #[arg(short = 'd', long, value_name = "DIR", help_heading = "Output")]
    pub dir: Option<PathBuf>,

    /// File name; only with exactly one URL. '-' writes the body to stdout.
    #[arg(short = 'o', long, value_name = "NAME", help_heading = "Output")]
    pub output: Option<String>,

    /// When the final file already exists: skip | overwrite | rename | fail [default: skip] [config: on_exists].
    #[arg(long, value_name = "POLICY", help_heading = "Output")]
    pub on_exists: Option<OnExists>,

    /// Verify the download with ALGO=HEX (sha-256, sha-512, sha-1, md5, blake2b, blake3); only with one URL (use checksum= in a list for several).
    #[arg(long, value_name = "ALGO=HEX", help_heading = "Output")]
    pub checksum: Option<String>,

    /// Verify every download named in a sha256sum/sha512sum/b2sum-style FILE (GNU or BSD lines).
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub checksum_file: Option<PathBuf>,

    /// Set each file's mtime from Last-Modified; on a rerun, skip a file whose local copy is as new and as large [config: timestamping].
    #[arg(short = 'N', long, help_heading = "Output")]
    pub timestamping: bool,

    /// Reserve disk space for files of known size: none | prealloc | falloc [default: falloc] [config: file_allocation].
    #[arg(long, value_name = "MODE", help_heading = "Output")]
    pub file_allocation: Option<FileAllocation>,

    /// Downloads at once [default: 8] [config: jobs].
    #[arg(short = 'j', long, value_name = "N", help_heading = "Concurrency")]
    pub jobs: Option<usize>,

    /// Connections open to one host at once, across all downloads [default: 8] [config: max_per_host].
    #[arg(long, value_name = "N", help_heading = "Concurrency")]
    pub max_per_host: Option<usize>,

    /// Most connections one download may use: a large file is split into ranges fetched in parallel [default: 1] [config: connections].
    #[arg(short = 'x', long, value_name = "N", help_heading = "Concurrency")]
    pub connections: Option<usize>,

    /// Split a file only into pieces at least this large (K, M, G = KiB, MiB, GiB) [default: 4M] [config: min_split_size].
    #[arg(long, value_name = "SIZE", help_heading = "Concurrency")]
    pub min_split_size: Option<ByteSize>,

    /// Cap the whole run at RATE bytes per second (e.g. 500K, 10M) [config: limit_rate].
    #[arg(long, value_name = "RATE", help_heading = "Concurrency")]
    pub limit_rate: Option<ByteSize>,

    /// Cap each download at RATE bytes per second [config: limit_rate_per_download].
    #[arg(long, value_name = "RATE", help_heading = "Concurrency")]
    pub limit_rate_per_download: Option<ByteSize>,

    /// Retries of a failed download after the first try [default: 5] [config: retries].
    #[arg(long, value_name = "N", help_heading = "Resilience")]
    pub retries: Option<u32>,

    /// Base of the exponential backoff between retries, seconds [default: 1] [config: retry_wait].
    #[arg(long, value_name = "S", help_heading = "Resilience")]
    pub retry_wait: Option<f64>,

    /// Longest wait between retries, seconds; also caps Retry-After [default: 60] [config: max_retry_wait].
    #[arg(long, value_name = "S", help_heading = "Resilience")]
    pub max_retry_wait: Option<f64>,

    /// Seconds to establish a connection [default: 10] [config: connect_timeout].
    #[arg(long, value_name = "S", help_heading = "Resilience")]
    pub connect_timeout: Option<f64>,

    /// Idle timeout: seconds without a byte before a try is abandoned [default: 30] [config: timeout].
    #[arg(long, value_name = "S", help_heading = "Resilience")]
    pub timeout: Option<f64>,

    /// Extra request header 'K: V', repeatable [config: headers].
    #[arg(
        short = 'H',
        long = "header",
        value_name = "K: V",
        help_heading = "HTTP"
    )]
    pub headers: Vec<String>,

    /// User-Agent header [default: volley/VERSION] [config: user_agent].
    #[arg(short = 'U', long, value_name = "UA", help_heading = "HTTP")]
    pub user_agent: Option<String>,

    /// Proxy for all requests; HTTP_PROXY, HTTPS_PROXY and NO_PROXY are honoured too [config: proxy].
    #[arg(long, value_name = "URL", help_heading = "HTTP")]
    pub proxy: Option<String>,

    /// Accept invalid TLS certificates [config: insecure].
    #[arg(long, help_heading = "HTTP")]
    pub insecure: bool,

    /// Add a PEM root certificate to the trusted set [config: ca_cert].
    #[arg(long, value_name = "FILE", help_heading = "HTTP")]
    pub ca_cert: Option<PathBuf>,

    /// Follow redirects from https to http (refused by default) [config: allow_insecure_redirect].
    #[arg(long, help_heading = "HTTP")]
    pub allow_insecure_redirect: bool,

    /// Most redirects followed per download [default: 10] [config: max_redirects].
    #[arg(long, value_name = "N", help_heading = "HTTP")]
    pub max_redirects: Option<usize>,

    /// HTTP Basic user for every download (see --netrc for per-host credentials) [config: http_user].
    #[arg(long, value_name = "USER", help_heading = "HTTP")]
    pub http_user: Option<String>,

    /// HTTP Basic password for --http-user [config: http_password].
    #[arg(long, value_name = "PASS", help_heading = "HTTP")]
    pub http_password: Option<String>,

    /// Take HTTP Basic credentials per host from ~/.netrc [config: netrc].
    #[arg(long, help_heading = "HTTP")]
    pub netrc: bool,

    /// Take HTTP Basic credentials per host from FILE (implies --netrc) [config: netrc_file].
    #[arg(long, value_name = "FILE", help_heading = "HTTP")]
    pub netrc_file: Option<PathBuf>,

    /// Send cookies from a Netscape cookies.txt FILE [config: load_cookies].
    #[arg(long, value_name = "FILE", help_heading = "HTTP")]
    pub load_cookies: Option<PathBuf>,

    /// Write the cookie jar to FILE (Netscape format) at the end [config: save_cookies].
    #[arg(long, value_name = "FILE", help_heading = "HTTP")]
    pub save_cookies: Option<PathBuf>,

    /// Resolve every download (final URL, status, size, name, resume or skip) without downloading or writing anything.
    #[arg(long, help_heading = "Reporting")]
    pub dry_run: bool,

    /// Print the path of each completed file on stdout, one per line.
    #[arg(long, help_heading = "Reporting")]
    pub print_paths: bool,

    /// Like --print-paths, NUL-separated (for xargs -0).
    #[arg(short = '0', long = "print0", help_heading = "Reporting")]
    pub print0: bool,

    /// Write the downloads that did not complete to FILE, as a list for -i.
    #[arg(long, value_name = "FILE", help_heading = "Reporting")]
    pub save_failed: Option<PathBuf>,

    /// Errors and the final failures only [config: quiet].
    #[arg(short = 'q', long, help_heading = "Reporting")]
    pub quiet: bool,

    /// Progress display: auto (bars on a terminal, plain lines otherwise) | bars | plain | none [default: auto] [config: progress].
    #[arg(long, value_name = "MODE", help_heading = "Reporting")]
    pub progress: Option<ProgressMode>,

    /// JSON Lines events on stdout (schema in README) [config: json].
    #[arg(long, help_heading = "Reporting")]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
