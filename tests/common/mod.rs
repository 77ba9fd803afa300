//! Shared helpers for the integration tests.

#![allow(dead_code)]

pub mod h2server;
pub mod proxy;
pub mod server;

#[allow(unused_imports)]
pub use server::fixture_path;
#[allow(unused_imports)]
pub use server::{Fault, RecordedRequest, Route, TestServer};

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Default time limit for one run of the binary, so a hang fails the test
/// instead of blocking the suite.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// Path of the built `volley` binary.
pub fn volley_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_volley"))
}

/// A fresh, empty environment for one run of the binary: `HOME`,
/// `XDG_CONFIG_HOME` and the working directory all live in a temp dir that
/// lives as long as this value.
pub struct Sandbox {
    root: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let root = tempfile::Builder::new()
            .prefix("volley-home-")
            .tempdir()
            .expect("temp home");
        for d in ["home", "config", "cwd"] {
            std::fs::create_dir_all(root.path().join(d)).expect("mkdir");
        }
        Sandbox { root }
    }

    /// The sandbox's own temp dir (holds `home`, `config`, `cwd`; tests may
    /// put list files and output dirs here too).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    /// `XDG_CONFIG_HOME`; the default config file is
    /// `config_home()/volley/config.toml`.
    pub fn config_home(&self) -> PathBuf {
        self.root.path().join("config")
    }

    /// Working directory of the child process.
    pub fn cwd(&self) -> PathBuf {
        self.root.path().join("cwd")
    }

    /// Apply the environment to a std command.
    pub fn apply(&self, cmd: &mut std::process::Command) {
        cmd.current_dir(self.cwd())
            .env("HOME", self.home())
            .env("XDG_CONFIG_HOME", self.config_home())
            .env("NO_COLOR", "1")
            .env("NO_PROXY", "127.0.0.1,localhost,::1")
            .env("no_proxy", "127.0.0.1,localhost,::1")
            .stdin(Stdio::null());
        for var in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
            "CLICOLOR_FORCE",
            "FORCE_COLOR",
            "RUST_LOG",
        ] {
            cmd.env_remove(var);
        }
        // No option may leak in from the environment of the test runner.
        for (key, _) in std::env::vars_os() {
            if let Some(k) = key.to_str() {
                if k.starts_with("VOLLEY_") {
                    cmd.env_remove(k);
                }
            }
        }
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

/// An `assert_cmd::Command` for `volley`, plus the sandbox it runs in.
/// Derefs to the command, so `volley().args([..]).assert()` works.
pub struct Volley {
    cmd: assert_cmd::Command,
    pub sandbox: Sandbox,
}

impl Deref for Volley {
    type Target = assert_cmd::Command;
    fn deref(&self) -> &Self::Target {
        &self.cmd
    }
}

impl DerefMut for Volley {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.cmd
    }
}

/// `volley` with a fresh empty HOME / XDG_CONFIG_HOME / working directory,
/// `NO_COLOR=1`, no proxy, stdin empty and a [`RUN_TIMEOUT`].
pub fn volley() -> Volley {
    let sandbox = Sandbox::new();
    let mut std_cmd = std::process::Command::new(volley_bin());
    sandbox.apply(&mut std_cmd);
    let mut cmd = assert_cmd::Command::from_std(std_cmd);
    cmd.timeout(RUN_TIMEOUT);
    Volley { cmd, sandbox }
}

/// A `std::process::Command` for `volley` (for spawning and signalling),
/// plus its sandbox.
pub struct VolleyProcess {
    cmd: std::process::Command,
    pub sandbox: Sandbox,
}

impl Deref for VolleyProcess {
    type Target = std::process::Command;
    fn deref(&self) -> &Self::Target {
        &self.cmd
    }
}

impl DerefMut for VolleyProcess {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.cmd
    }
}

pub fn volley_process() -> VolleyProcess {
    let sandbox = Sandbox::new();
    let mut cmd = std::process::Command::new(volley_bin());
    sandbox.apply(&mut cmd);
    VolleyProcess { cmd, sandbox }
}

/// Run and capture; never panics on a non-zero exit.
pub fn run(cmd: &mut assert_cmd::Command) -> Run {
    let out = cmd.output().expect("run volley");
    Run {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The result of one run.
pub struct Run {
    /// `None` if killed by a signal (or by the run timeout).
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panic with stderr (and a stdout excerpt) unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        if self.code != Some(code) {
            panic!(
                "expected exit code {code}, got {:?}\n--- stderr ---\n{}\n--- stdout ({} bytes) ---\n{}",
                self.code,
                self.stderr,
                self.stdout.len(),
                excerpt(&self.stdout)
            );
        }
        self
    }

    /// Panic unless stdout is empty.
    #[track_caller]
    pub fn expect_empty_stdout(&self) -> &Self {
        if !self.stdout.is_empty() {
            panic!(
                "expected nothing on stdout, got {} bytes:\n{}\n--- stderr ---\n{}",
                self.stdout.len(),
                excerpt(&self.stdout),
                self.stderr
            );
        }
        self
    }

    /// Panic unless stderr contains `needle`.
    #[track_caller]
    pub fn expect_stderr_contains(&self, needle: &str) -> &Self {
        if !self.stderr.contains(needle) {
            panic!(
                "expected stderr to contain {needle:?}\n--- stderr ---\n{}",
                self.stderr
            );
        }
        self
    }
}

/// First 2000 bytes of a buffer, lossily as text.
pub fn excerpt(bytes: &[u8]) -> String {
    let n = bytes.len().min(2000);
    let mut s = String::from_utf8_lossy(&bytes[..n]).into_owned();
    if bytes.len() > n {
        s.push_str(&format!("\n... ({} more bytes)", bytes.len() - n));
    }
    s
}

/// Deterministic pseudo-random bytes (xorshift64*), distinct per seed.
pub fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0xD1B5_4A32_D192_ED03);
    if x == 0 {
        x = 0x2545_F491_4F6C_DD1D;
    }
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Compare two byte strings; `Err` describes lengths and the first
/// differing offset.
pub fn bytes_diff(actual: &[u8], expected: &[u8]) -> Result<(), String> {
    if actual == expected {
        return Ok(());
    }
    let first = actual
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(actual.len().min(expected.len()));
    let show = |b: &[u8]| {
        let end = (first + 8).min(b.len());
        b[first.min(b.len())..end]
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    Err(format!(
        "length {} (expected {}), first difference at offset {} (actual [{}] vs expected [{}])",
        actual.len(),
        expected.len(),
        first,
        show(actual),
        show(expected)
    ))
}

/// Assert a file exists and holds exactly `expected`.
#[track_caller]
pub fn assert_file_eq(path: impl AsRef<Path>, expected: &[u8]) {
    let path = path.as_ref();
    let actual = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => panic!(
            "{}: cannot read ({e}); directory holds: {:?}",
            path.display(),
            path.parent().map(list_tree).unwrap_or_default()
        ),
    };
    if let Err(msg) = bytes_diff(&actual, expected) {
        panic!("{}: content differs: {msg}", path.display());
    }
}

/// Assert bytes (e.g. stdout) equal `expected`.
#[track_caller]
pub fn assert_bytes_eq(what: &str, actual: &[u8], expected: &[u8]) {
    if let Err(msg) = bytes_diff(actual, expected) {
        panic!("{what}: content differs: {msg}");
    }
}

/// All files under `dir` (recursively) as paths relative to `dir`, sorted,
/// with `/` separators. Missing dir → empty.
pub fn list_tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap_or(&p);
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Assert no `*.part` file is left under `dir`.
#[track_caller]
pub fn assert_no_part_files(dir: &Path) {
    let parts: Vec<_> = list_tree(dir)
        .into_iter()
        .filter(|f| f.ends_with(".part"))
        .collect();
    assert!(parts.is_empty(), "leftover .part files: {parts:?}");
}

/// Write a list file (lines joined with '\n', trailing newline).
pub fn write_list(path: &Path, lines: &[String]) {
    let mut s = lines.join("\n");
    s.push('\n');
    std::fs::write(path, s).expect("write list file");
}

/// Poll `cond` every 10 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Parse JSON Lines; panics naming the first line that does not parse.
#[track_caller]
pub fn parse_json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    let text = std::str::from_utf8(stdout).expect("stdout is not UTF-8");
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("stdout line {} is not JSON ({e}): {line:?}", i + 1))
        })
        .collect()
}

/// A path as a command-line argument.
pub fn path_arg(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

/// `NAME.part` for `NAME`.
pub fn part_path(final_path: &Path) -> PathBuf {
    let mut p = final_path.as_os_str().to_owned();
    p.push(".part");
    PathBuf::from(p)
}

/// `NAME.part.volley` for `NAME`.
pub fn state_path(final_path: &Path) -> PathBuf {
    let mut p = final_path.as_os_str().to_owned();
    p.push(".part.volley");
    PathBuf::from(p)
}

/// The state file of `NAME` as JSON, if it exists and parses.
pub fn read_state(final_path: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read(state_path(final_path)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Kill a child that outlived its test and panic with its stderr (in `errlog`).
pub fn abort_child(child: &mut std::process::Child, errlog: &Path, what: &str) -> ! {
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "{what}; stderr:\n{}",
        std::fs::read_to_string(errlog).unwrap_or_default()
    );
}

/// Wait until the server has finished answering every request (a killed
/// client's connection is noticed on the next write), so counters read
/// afterwards belong to the next run only.
pub fn settle(server: &TestServer) {
    wait_until(Duration::from_secs(5), || server.in_flight() == 0);
}

/// `--ca-cert` for the TLS test servers: `tests/fixtures/ca.pem`, the root
/// that signed their default certificate.
pub fn ca_pem() -> String {
    path_arg(&fixture_path("ca.pem"))
}

/// Write `text` as a config file in the sandbox and return its path.
pub fn write_config(sandbox: &Sandbox, text: &str) -> PathBuf {
    let cfg = sandbox.root().join("volley.toml");
    std::fs::write(&cfg, text).expect("write config");
    cfg
}

/// A TOML basic string for `s` (quotes and backslashes escaped).
pub fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Retry fast: a failure that is retried still ends quickly.
pub const FAST_RETRY: [&str; 4] = ["--retry-wait", "0.01", "--max-retry-wait", "0.05"];

/// Stderr must not dump an error chain (reqwest's, hyper's, a proxy's).
#[track_caller]
pub fn assert_no_chain_dump(stderr: &str) {
    for dump in [
        "client error (",
        "error sending request",
        "Custom {",
        "kind:",
        "SOCKS error",
        "tunnel error",
    ] {
        assert!(
            !stderr.contains(dump),
            "stderr dumps an error chain ({dump:?}):\n{stderr}"
        );
    }
}

/// Run volley for one URL with `args` (and [`FAST_RETRY`]) into the
/// sandbox's `out`, and expect it to fail (exit 1) with a one-line message
/// that names the URL and contains every one of `needles`, without an
/// error-chain dump; no file left. Returns the line and the run.
#[track_caller]
pub fn one_line_failure(
    v: &mut Volley,
    url: &str,
    args: &[&str],
    needles: &[&str],
) -> (String, Run) {
    let dir = v.sandbox.root().join("out");
    let mut all: Vec<String> = vec!["-d".into(), path_arg(&dir)];
    all.extend(args.iter().chain(&FAST_RETRY).map(|s| s.to_string()));
    all.push(url.to_string());
    let r = run(v.args(&all));
    r.expect_code(1).expect_empty_stdout();
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains(url) && needles.iter().all(|n| l.contains(n)))
        .unwrap_or_else(|| {
            panic!(
                "no line of stderr names {url} and contains all of {needles:?}\n--- stderr ---\n{}",
                r.stderr
            )
        })
        .to_string();
    assert_no_chain_dump(&r.stderr);
    assert!(
        list_tree(&dir).is_empty(),
        "files left: {:?}",
        list_tree(&dir)
    );
    (line, r)
}
