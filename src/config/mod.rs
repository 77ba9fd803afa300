//! Settings: the TOML config file and the command line merged into one validated [`Settings`].
//!
//! Flags override the file; the file overrides the built-in defaults named below. Nothing
//! after this module sees clap or TOML types.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};

use crate::cli::Cli;
use crate::options::{
    ByteSize, FileAllocation, OnExists, OutputName, PrintPaths, ProgressMode, Shard,
};

pub mod proxy;
pub mod shard;

/// The environment of this process, for what reads it (proxies, shards); a
/// value that is not UTF-8 is read lossily (and then refused where it must
/// be a URL or a number, never skipped).
pub(crate) fn process_env(var: &str) -> Option<String> {
    std::env::var_os(var).map(|v| v.to_string_lossy().into_owned())
}

/// A process environment of `vars` only, for tests of what reads it.
#[cfg(test)]
pub(crate) fn test_env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}
use shard::ShardError;

/// Downloads at once unless `--jobs` says otherwise.
pub const DEFAULT_JOBS: usize = 8;
/// Connections to one host at once unless `--max-per-host` says otherwise.
pub const DEFAULT_MAX_PER_HOST: usize = 8;
/// Retries after the first try.
pub const DEFAULT_RETRIES: u32 = 5;
/// Base of the exponential backoff, seconds.
pub const DEFAULT_RETRY_WAIT: f64 = 1.0;
/// Cap of the backoff and of `Retry-After`, seconds.
pub const DEFAULT_MAX_RETRY_WAIT: f64 = 60.0;
/// Seconds to establish a connection.
pub const DEFAULT_CONNECT_TIMEOUT: f64 = 10.0;
/// Idle seconds without a byte before a try is abandoned.
pub const DEFAULT_TIMEOUT: f64 = 30.0;
/// Seconds a download may go without a byte while others from its host receive data.
pub const DEFAULT_STALL_TIMEOUT: f64 = 3.0;
/// Redirects followed per download.
pub const DEFAULT_MAX_REDIRECTS: usize = 10;
/// Connections one download may use unless `--connections` says otherwise.
pub const DEFAULT_CONNECTIONS: usize = 1;
/// Most connections one download may use.
pub const MAX_CONNECTIONS: usize = 64;
/// Smallest piece a file is split into unless `--min-split-size` says otherwise.
pub const DEFAULT_MIN_SPLIT_SIZE: u64 = 4 * 1024 * 1024;

/// An error in the configuration: the file, a flag, or a key. Always exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS reason.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has an unknown key or a wrong type.
    #[error("config file {path}: {message}\n  (volley --print-config prints every key)")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line and key.
        message: String,
    },
    /// A flag or config key has a value volley cannot use.
    #[error("{what}: {message}")]
    Invalid {
        /// The flag (`--jobs`) or key (`jobs in FILE`) at fault.
        what: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// `--shard`, `--shard-count` or the scheduler's variables for `--shard auto`.
    #[error(transparent)]
    Shard(#[from] ShardError),
}

/// The TOML config file, as written: the command line's own definition, whose
/// options without a config key are not accepted in the file (see [`Cli`]).
pub type FileConfig = Cli;

/// Everything the core needs, validated. Built by [`Settings::resolve`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// URLs given as arguments.
    pub urls: Vec<String>,
    /// `-i FILE` (`-` is stdin).
    pub input_file: Option<PathBuf>,
    /// Directory to save into.
    pub dir: PathBuf,
    /// `-o`: the name of the single download, or stdout.
    pub output: Option<OutputName>,
    /// `--checksum`: the digest of the single download.
    pub checksum: Option<crate::checksum::Checksum>,
    /// `--checksum-file`.
    pub checksum_file: Option<PathBuf>,
    /// `--metalink`.
    pub metalink: Option<PathBuf>,
    /// Policy for final files that existed before the run.
    pub on_exists: OnExists,
    /// Downloads at once.
    pub jobs: usize,
    /// Connections to one host at once.
    pub max_per_host: usize,
    /// Most connections one download may use.
    pub connections: usize,
    /// Smallest piece a file is split into, bytes.
    pub min_split_size: u64,
    /// Cap of the whole run, bytes per second.
    pub limit_rate: Option<u64>,
    /// Cap of each download, bytes per second.
    pub limit_rate_per_download: Option<u64>,
    /// Retries after the first try.
    pub retries: u32,
    /// Backoff base.
    pub retry_wait: Duration,
    /// Backoff and Retry-After cap.
    pub max_retry_wait: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Idle timeout.
    pub timeout: Duration,
    /// Stall timeout (`None`: off).
    pub stall_timeout: Option<Duration>,
    /// Extra headers for every request (config file first, then flags).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// User-Agent.
    pub user_agent: String,
    /// Name redirected downloads after their last URL.
    pub trust_server_names: bool,
    /// Proxy URL.
    pub proxies: proxy::Proxies,
    /// Accept invalid certificates.
    pub insecure: bool,
    /// Extra PEM roots (or a self-signed server certificate).
    pub ca_cert: Option<PathBuf>,
    /// Client certificate for mutual TLS.
    pub cert: Option<PathBuf>,
    /// Its private key, when not in `cert`.
    pub key: Option<PathBuf>,
    /// `--http1.1`: never HTTP/2.
    pub http1_only: bool,
    /// Redirects followed per download.
    pub max_redirects: usize,
    /// Follow `https` → `http` redirects.
    pub allow_insecure_redirect: bool,
    /// Errors and final failures only.
    pub quiet: bool,
    /// Plain lines for starts too.
    pub verbose: bool,
    /// Progress display.
    pub progress: ProgressMode,
    /// JSON Lines on stdout.
    pub json: bool,
    /// Set mtimes from Last-Modified; skip unchanged files on a rerun.
    pub timestamping: bool,
    /// How space is reserved for files of known size.
    pub file_allocation: FileAllocation,
    /// `--http-user` and `--http-password`.
    pub http_auth: Option<(String, Option<String>)>,
    /// The `.netrc` to take per-host credentials from.
    pub netrc: Option<PathBuf>,
    /// The `.netrc` was named (`--netrc-file`): it must exist.
    pub netrc_required: bool,
    /// `--load-cookies`.
    pub load_cookies: Option<PathBuf>,
    /// `--save-cookies`.
    pub save_cookies: Option<PathBuf>,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--print-paths` or `-0`.
    pub print_paths: Option<PrintPaths>,
    /// `--save-failed`.
    pub save_failed: Option<PathBuf>,
    /// `--shard`: only the downloads of this shard run.
    pub shard: Option<Shard>,
}

impl Settings {
    /// Merge the config file (given or default) with the flags and validate the result.
    pub fn resolve(cli: Cli) -> Result<Settings, ConfigError> {
        let path = cli
            .config
            .clone()
            .or_else(|| default_config_path().filter(|p| p.is_file()));
        let file = match &path {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        Self::merge_from(cli, file, path.as_deref())
    }

    /// Merge already-loaded parts; flags win over the file.
    #[cfg(test)]
    pub fn merge(cli: Cli, file: FileConfig) -> Result<Settings, ConfigError> {
        Self::merge_from(cli, file, None)
    }

    /// Merge already-loaded parts (flags win over the file), with the config
    /// file's path for messages: a bad
    /// value is named as the flag it came from (`--jobs`) or as the key and
    /// the file (`jobs in ~/.config/volley/config.toml`).
    fn merge_from(
        cli: Cli,
        file: FileConfig,
        path: Option<&Path>,
    ) -> Result<Settings, ConfigError> {
        // Where a value came from: the flag, else the key in the file.
        let from = |by_flag: bool, flag: &str| -> String {
            match path {
                Some(p) if !by_flag => {
                    format!(
                        "{} in {}",
                        flag.trim_start_matches('-').replace('-', "_"),
                        p.display()
                    )
                }
                _ => flag.to_string(),
            }
        };
        let mut headers = Vec::new();
        for (lines, by_flag) in [(&file.headers, false), (&cli.headers, true)] {
            for h in lines {
                headers.push(parse_header(h).map_err(|m| invalid(from(by_flag, "--header"), m))?);
            }
        }
        if let Some(referer) = cli.referer.clone().or(file.referer.clone()) {
            let value = HeaderValue::from_str(&referer).map_err(|_| {
                invalid(
                    from(cli.referer.is_some(), "--referer"),
                    "has characters not allowed in a header".into(),
                )
            })?;
            headers.push((reqwest::header::REFERER, value));
        }
        let output = cli.output.clone().map(|o| output_name(&o)).transpose()?;
        let settings = Settings {
            urls: cli.urls,
            input_file: cli.input_file,
            dir: cli.dir.or(file.dir).unwrap_or_else(|| PathBuf::from(".")),
            output,
            checksum: cli
                .checksum
                .map(|c| c.parse().map_err(|m| invalid("--checksum", m)))
                .transpose()?,
            checksum_file: cli.checksum_file,
            metalink: cli.metalink,
            on_exists: cli.on_exists.or(file.on_exists).unwrap_or_default(),
            jobs: at_least_one(
                &from(cli.jobs.is_some(), "--jobs"),
                cli.jobs.or(file.jobs).unwrap_or(DEFAULT_JOBS),
            )?,
            max_per_host: at_least_one(
                &from(cli.max_per_host.is_some(), "--max-per-host"),
                cli.max_per_host
                    .or(file.max_per_host)
                    .unwrap_or(DEFAULT_MAX_PER_HOST),
            )?,
            connections: connections(
                &from(cli.connections.is_some(), "--connections"),
                cli.connections
                    .or(file.connections)
                    .unwrap_or(DEFAULT_CONNECTIONS),
            )?,
            min_split_size: positive_size(
                &from(cli.min_split_size.is_some(), "--min-split-size"),
                cli.min_split_size
                    .or(file.min_split_size)
                    .unwrap_or(ByteSize(DEFAULT_MIN_SPLIT_SIZE)),
            )?,
            // A rate of 0 is no cap, as in wget, curl and aria2c.
            limit_rate: cli.limit_rate.or(file.limit_rate).and_then(rate_cap),
            limit_rate_per_download: cli
                .limit_rate_per_download
                .or(file.limit_rate_per_download)
                .and_then(rate_cap),
            retries: cli.retries.or(file.retries).unwrap_or(DEFAULT_RETRIES),
            retry_wait: seconds(
                &from(cli.retry_wait.is_some(), "--retry-wait"),
                cli.retry_wait.or(file.retry_wait),
                DEFAULT_RETRY_WAIT,
            )?,
            max_retry_wait: seconds(
                &from(cli.max_retry_wait.is_some(), "--max-retry-wait"),
                cli.max_retry_wait.or(file.max_retry_wait),
                DEFAULT_MAX_RETRY_WAIT,
            )?,
            connect_timeout: positive_seconds(
                &from(cli.connect_timeout.is_some(), "--connect-timeout"),
                cli.connect_timeout.or(file.connect_timeout),
                DEFAULT_CONNECT_TIMEOUT,
            )?,
            timeout: positive_seconds(
                &from(cli.timeout.is_some(), "--timeout"),
                cli.timeout.or(file.timeout),
                DEFAULT_TIMEOUT,
            )?,
            stall_timeout: Some(seconds(
                &from(cli.stall_timeout.is_some(), "--stall-timeout"),
                cli.stall_timeout.or(file.stall_timeout),
                DEFAULT_STALL_TIMEOUT,
            )?)
            .filter(|d| !d.is_zero()),
            headers,
            user_agent: cli
                .user_agent
                .or(file.user_agent)
                .unwrap_or_else(|| concat!("volley/", env!("CARGO_PKG_VERSION")).to_string()),
            trust_server_names: cli.trust_server_names || file.trust_server_names,
            proxies: proxy::resolve(
                match (cli.proxy, file.proxy) {
                    (Some(p), _) => Some((p, "--proxy".to_string())),
                    (None, Some(p)) => Some((p, from(false, "--proxy"))),
                    (None, None) => None,
                },
                cli.noproxy.or(file.noproxy),
                process_env,
            )?,
            insecure: cli.insecure || file.insecure,
            ca_cert: cli.ca_cert.or(file.ca_cert),
            cert: cli.cert.or(file.cert),
            key: cli.key.or(file.key),
            http1_only: cli.http1_1 || file.http1_1,
            max_redirects: cli
                .max_redirects
                .or(file.max_redirects)
                .unwrap_or(DEFAULT_MAX_REDIRECTS),
            allow_insecure_redirect: cli.allow_insecure_redirect || file.allow_insecure_redirect,
            quiet: cli.quiet || file.quiet,
            verbose: cli.verbose || file.verbose,
            progress: cli.progress.or(file.progress).unwrap_or_default(),
            json: cli.json || file.json,
            timestamping: cli.timestamping || file.timestamping,
            file_allocation: cli
                .file_allocation
                .or(file.file_allocation)
                .unwrap_or_default(),
            http_auth: match (
                cli.http_user.or(file.http_user),
                cli.http_password.or(file.http_password),
            ) {
                (Some(user), password) => Some((user, password)),
                (None, Some(_)) => {
                    return Err(invalid(
                        "--http-password",
                        "needs --http-user (the user name to send it with)".into(),
                    ))
                }
                (None, None) => None,
            },
            netrc_required: cli.netrc_file.is_some() || file.netrc_file.is_some(),
            netrc: match cli.netrc_file.or(file.netrc_file) {
                Some(path) => Some(path),
                None if cli.netrc || file.netrc => {
                    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".netrc"))
                }
                None => None,
            },
            load_cookies: cli.load_cookies.or(file.load_cookies),
            save_cookies: cli.save_cookies.or(file.save_cookies),
            dry_run: cli.dry_run,
            print_paths: if cli.print0 {
                Some(PrintPaths::Nul)
            } else if cli.print_paths {
                Some(PrintPaths::Lines)
            } else {
                None
            },
            save_failed: cli.save_failed,
            shard: shard::resolve(
                cli.shard.or(file.shard),
                cli.shard_count.or(file.shard_count),
                process_env,
            )?,
        };
        if settings.print_paths.is_some() && settings.json {
            return Err(invalid(
                "--print-paths",
                "cannot be combined with --json (both write to stdout; done events carry the path)"
                    .into(),
            ));
        }
        if settings.print_paths.is_some() && settings.output == Some(OutputName::Stdout) {
            return Err(invalid(
                "--print-paths",
                "cannot be combined with -o - (the body goes to stdout)".into(),
            ));
        }
        if settings.json && settings.output == Some(OutputName::Stdout) {
            return Err(invalid(
                "--json",
                "cannot be combined with -o - (both write to stdout)".into(),
            ));
        }
        if settings.key.is_some() && settings.cert.is_none() {
            return Err(invalid(
                "--key",
                "needs --cert (the client certificate the key goes with)".into(),
            ));
        }
        if HeaderValue::from_str(&settings.user_agent).is_err() {
            return Err(invalid(
                "--user-agent",
                "contains characters not allowed in a header".into(),
            ));
        }
        Ok(settings)
    }
}

/// `$XDG_CONFIG_HOME/volley/config.toml`, else `~/.config/volley/config.toml`.
pub fn default_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("volley").join("config.toml"))
}

/// Read and parse one config file.
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_file(path, &text)
}

/// Parse config text; errors name the file, the line and the key.
pub fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let key = e.span().and_then(|s| {
            let line_start = text[..s.start.min(text.len())]
                .rfind('\n')
                .map_or(0, |i| i + 1);
            let rest = &text[line_start..];
            let key = rest.split('=').next()?.trim();
            (!key.is_empty() && !key.contains('\n')).then(|| key.to_string())
        });
        let mut message = String::new();
        if let Some(line) = line {
            message.push_str(&format!("line {line}: "));
        }
        if let Some(key) = key {
            message.push_str(&format!("key '{key}': "));
        }
        message.push_str(&in_words(e.message().trim()));
        ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        }
    })
}

/// serde's names of Rust types, said in words: `expected usize` reads
/// `expected a whole number (0 or more)`.
fn in_words(message: &str) -> String {
    let mut text = message.to_string();
    for (rust, words) in [
        ("usize", "a whole number (0 or more)"),
        ("u64", "a whole number (0 or more)"),
        ("u32", "a whole number (0 or more)"),
        ("u16", "a whole number (0 or more)"),
        ("u8", "a whole number (0 or more)"),
        ("f64", "a number (e.g. 1.5)"),
        ("f32", "a number (e.g. 1.5)"),
        ("a boolean", "true or false"),
    ] {
        text = text.replace(&format!("expected {rust}"), &format!("expected {words}"));
    }
    text
}

/// Parse a `K: V` header line.
pub fn parse_header(line: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| format!("'{line}' is not of the form 'Name: value'"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("'{}' is not a valid header name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of '{name}' has characters not allowed in a header"))?;
    Ok((name, value))
}

fn invalid(what: impl fmt::Display, message: String) -> ConfigError {
    ConfigError::Invalid {
        what: what.to_string(),
        message,
    }
}

fn at_least_one(flag: &str, n: usize) -> Result<usize, ConfigError> {
    if n == 0 {
        Err(invalid(flag, "must be at least 1".into()))
    } else {
        Ok(n)
    }
}

/// Check a `connections` value (flag, key or list option).
pub fn connections(what: &str, n: usize) -> Result<usize, ConfigError> {
    if (1..=MAX_CONNECTIONS).contains(&n) {
        Ok(n)
    } else {
        Err(invalid(
            what,
            format!("{n} is not between 1 and {MAX_CONNECTIONS}"),
        ))
    }
}

/// A rate cap: 0 is none (as in wget, curl and aria2c).
fn rate_cap(rate: ByteSize) -> Option<u64> {
    (rate.0 > 0).then_some(rate.0)
}

/// `-o`: `-` (stdout), a name (saved in `--dir`), or a path (a name with a
/// directory, relative to `--dir` unless absolute; an existing file that is
/// not a regular file, such as `/dev/null`, is written into as it is).
fn output_name(o: &str) -> Result<OutputName, ConfigError> {
    if o == "-" {
        return Ok(OutputName::Stdout);
    }
    let path = PathBuf::from(o);
    if path.metadata().is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        return Ok(OutputName::Device(path));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| invalid("--output", format!("'{o}' names no file")))?;
    crate::naming::check_given_name(&name).map_err(|m| invalid("--output", m))?;
    Ok(match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        None => OutputName::File(name),
        Some(dir) => OutputName::Path(dir.to_path_buf(), name),
    })
}

/// Check a size or rate that must be more than zero (flag or key).
fn positive_size(what: &str, size: ByteSize) -> Result<u64, ConfigError> {
    if size.0 == 0 {
        Err(invalid(what, "must be more than 0".into()))
    } else {
        Ok(size.0)
    }
}

fn seconds(flag: &str, value: Option<f64>, default: f64) -> Result<Duration, ConfigError> {
    let v = value.unwrap_or(default);
    Duration::try_from_secs_f64(v)
        .map_err(|_| invalid(flag, format!("{v} is not a number of seconds (0 or more)")))
}

fn positive_seconds(flag: &str, value: Option<f64>, default: f64) -> Result<Duration, ConfigError> {
    let d = seconds(flag, value, default)?;
    if d.is_zero() {
        Err(invalid(flag, "must be more than 0 seconds".into()))
    } else {
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("volley").chain(args.iter().copied())).unwrap()
    }

    /// Every key `FileConfig` accepts, as serde lists them for an unknown key.
    fn known_keys() -> Vec<String> {
        let msg = parse_file(Path::new("c.toml"), "no_such_key = 1\n")
            .unwrap_err()
            .to_string();
        let list = msg
            .split("expected one of")
            .nth(1)
            .expect("serde lists the keys");
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn example_config_parses_and_lists_every_key() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"));
        let text = std::fs::read_to_string(path).unwrap();
        // Every key is commented out in the example; uncommented, it must parse.
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# ").filter(|l| l.contains(" = ")))
            .map(|l| format!("{l}\n"))
            .collect();
        let parsed = parse_file(path, &uncommented).unwrap();
        Settings::merge(cli(&[]), parsed).unwrap();
        let listed: Vec<&str> = uncommented
            .lines()
            .filter_map(|l| l.split(" = ").next())
            .collect();
        let keys = known_keys();
        assert!(keys.len() > 10, "{keys:?}");
        for key in &keys {
            assert!(
                listed.contains(&key.as_str()),
                "config.example.toml does not list '{key}'"
            );
        }
    }

    #[test]
    fn flags_override_file() {
        let file = parse_file(Path::new("c.toml"), "jobs = 3\nuser_agent = \"a\"\n").unwrap();
        let s = Settings::merge(cli(&["-j", "5"]), file).unwrap();
        assert_eq!(s.jobs, 5);
        assert_eq!(s.user_agent, "a");
    }

    #[test]
    fn unknown_key_names_key_file_and_line() {
        let err = parse_file(Path::new("/x/c.toml"), "jobs = 2\njbs = 3\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/x/c.toml"), "{msg}");
        assert!(msg.contains("jbs"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn wrong_type_names_key() {
        let msg = parse_file(Path::new("c.toml"), "jobs = \"many\"\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("jobs"), "{msg}");
    }

    #[test]
    fn sizes_and_rates_come_from_the_file_and_flags() {
        // How sizes parse is options::ByteSize's (tested there); here, that the
        // file's and the flags' reach the settings, validated.
        let file = parse_file(
            Path::new("c.toml"),
            "limit_rate = \"1M\"\nmin_split_size = 65536\n",
        )
        .unwrap();
        let s = Settings::merge(cli(&["-x", "4"]), file).unwrap();
        assert_eq!(s.limit_rate, Some(1 << 20));
        assert_eq!(s.min_split_size, 65536);
        assert_eq!(s.connections, 4);
        let e = Settings::merge(cli(&["-x", "0"]), FileConfig::default()).unwrap_err();
        assert!(e.to_string().contains("--connections"), "{e}");
        // A rate of 0 is no cap, as in wget, curl and aria2c (issue 16).
        let s = Settings::merge(cli(&["--limit-rate", "0"]), FileConfig::default()).unwrap();
        assert_eq!(s.limit_rate, None);
    }

    #[test]
    fn zero_jobs_and_bad_headers_are_rejected() {
        let e = Settings::merge(cli(&["-j", "0"]), FileConfig::default()).unwrap_err();
        assert!(e.to_string().contains("--jobs"));
        let e = Settings::merge(cli(&["-H", "nocolon"]), FileConfig::default()).unwrap_err();
        assert!(e.to_string().contains("--header"));
    }
}
