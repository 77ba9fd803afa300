//! Progress display as a person sees it: the `volley` binary runs in a
//! pseudo-terminal of a known size (it is the session leader, the terminal is
//! its controlling terminal, Ctrl-C is typed as `\x03`), and everything it
//! writes goes through a terminal emulator (`vt100`) to get the screens.
//!
//! Checks: bars are drawn and fit the width (no row ever wraps), the final
//! screen holds the summary and nothing else (also after Ctrl-C, whose `^C`
//! echo once left a stale bar row), `NO_COLOR` drops colour, `TERM=dumb` and
//! a stderr that is not a terminal get plain lines without escape codes.

mod common;

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;

const KIB: usize = 1024;

/// Longest wait for anything: the machine running the tests may be slow and busy.
const PATIENCE: Duration = Duration::from_secs(60);

/// A long name, so that it must lose its middle on an 80-column terminal.
const LONG_NAME: &str = "a-rather-long-file-name-that-cannot-fit-in-a-bar-row.bin";

/// Pseudo-terminals are made and handed to a child one at a time, so that no
/// child of a concurrent test inherits another test's terminal.
static SPAWN: Mutex<()> = Mutex::new(());

/// `volley` running in a pseudo-terminal of `rows` × `cols`.
struct Terminal {
    rows: u16,
    cols: u16,
    master: std::fs::File,
    child: std::process::Child,
    /// Everything read from the terminal, in the pieces it came in.
    chunks: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Set when the terminal has no writer left (the child exited).
    closed: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    sandbox: Sandbox,
}

fn cloexec(fd: libc::c_int) {
    // SAFETY: fcntl on a descriptor this process just opened.
    let ok = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == 0;
    assert!(ok, "fcntl: {}", std::io::Error::last_os_error());
}

impl Terminal {
    /// Run `volley ARGS` in a fresh sandbox with `env` (on top of the
    /// sandbox's, which sets `NO_COLOR=1`; `("NO_COLOR", None)` removes it).
    fn run(rows: u16, cols: u16, args: &[String], env: &[(&str, Option<&str>)]) -> Terminal {
        Self::run_with_stdout(rows, cols, args, env, None)
    }

    /// [`Terminal::run`], with stdout to `stdout` instead of the terminal
    /// when given (a pipe, a file).
    fn run_with_stdout(
        rows: u16,
        cols: u16,
        args: &[String],
        env: &[(&str, Option<&str>)],
        stdout: Option<Stdio>,
    ) -> Terminal {
        let sandbox = Sandbox::new();
        let mut cmd = Command::new(volley_bin());
        sandbox.apply(&mut cmd);
        cmd.args(args)
            .env("TERM", "xterm-256color")
            .env("COLUMNS", cols.to_string())
            .env("LINES", rows.to_string());
        for (key, value) in env {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        let guard = SPAWN.lock().unwrap_or_else(|e| e.into_inner());
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty writes two descriptors; the name and termios
        // arguments may be null, the size is a valid winsize.
        let opened = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
        cloexec(master);
        cloexec(slave);
        // SAFETY: both descriptors are open and owned by nobody else.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let stdio = || Stdio::from(slave.try_clone().expect("dup the terminal"));
        cmd.stdin(stdio())
            .stdout(stdout.unwrap_or_else(stdio))
            .stderr(stdio());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // A session of its own, with the terminal as its controlling
                // terminal: Ctrl-C typed there interrupts it.
                if libc::setsid() == -1 || libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn volley in a terminal");
        // Only the child may hold the terminal's other end now, so reading
        // ends when it exits.
        drop(cmd);
        drop(slave);
        drop(guard);
        let master = std::fs::File::from(master);
        let chunks = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(AtomicBool::new(false));
        let reader = {
            let mut master = master.try_clone().expect("dup the terminal");
            let chunks = chunks.clone();
            let closed = closed.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match master.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => chunks.lock().unwrap().push(buf[..n].to_vec()),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        // EIO: the child's end is closed.
                        Err(_) => break,
                    }
                }
                closed.store(true, Ordering::SeqCst);
            })
        };
        Terminal {
            rows,
            cols,
            master,
            child,
            chunks,
            closed,
            reader: Some(reader),
            sandbox,
        }
    }

    /// Everything written to the terminal so far.
    fn output(&self) -> Vec<u8> {
        self.chunks.lock().unwrap().concat()
    }

    fn parser(&self) -> vt100::Parser {
        vt100::Parser::new(
            std::num::NonZeroU16::new(self.rows).unwrap(),
            std::num::NonZeroU16::new(self.cols).unwrap(),
            0,
        )
    }

    /// The screen now.
    fn screen(&self) -> vt100::Parser {
        let mut parser = self.parser();
        parser.process(&self.output());
        parser
    }

    /// Wait until the screen shows `what`; panic with the screen if it never does.
    #[track_caller]
    fn wait_for(&self, what: &str, cond: impl Fn(&str) -> bool) {
        if !wait_until(PATIENCE, || cond(&self.screen().screen().contents())) {
            panic!("the screen never showed {what}:\n{}", self.dump());
        }
    }

    /// Type Ctrl-C.
    fn ctrl_c(&mut self) {
        self.master.write_all(b"\x03").expect("type Ctrl-C");
    }

    /// Wait for the exit, and for everything it wrote.
    #[track_caller]
    fn exit(&mut self) -> ExitStatus {
        let mut status = None;
        wait_until(PATIENCE, || {
            status = self.child.try_wait().expect("wait for volley");
            status.is_some()
        });
        let Some(status) = status else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!("volley did not exit in {PATIENCE:?}:\n{}", self.dump());
        };
        if wait_until(Duration::from_secs(10), || {
            self.closed.load(Ordering::SeqCst)
        }) {
            if let Some(reader) = self.reader.take() {
                let _ = reader.join();
            }
        }
        status
    }

    /// Every screen between two pieces of output, until the summary shows.
    fn screens_before_summary(&self) -> Vec<(String, Vec<String>, Vec<bool>)> {
        let mut parser = self.parser();
        let mut screens = Vec::new();
        for chunk in self.chunks.lock().unwrap().iter() {
            parser.process(chunk);
            let screen = parser.screen();
            let contents = screen.contents();
            if contents.contains("volley:") {
                break;
            }
            let rows: Vec<String> = screen.rows(0, self.cols).collect();
            let wrapped = (0..self.rows).map(|r| screen.row_wrapped(r)).collect();
            screens.push((contents, rows, wrapped));
        }
        screens
    }

    /// Where `-d out` puts files.
    fn out(&self) -> std::path::PathBuf {
        self.sandbox.cwd().join("out")
    }

    /// The screen and the end of the raw output, for a failure message.
    fn dump(&self) -> String {
        const TAIL: usize = 3000;
        let raw = self.output();
        format!(
            "--- screen ({}x{}) ---\n{}\n--- raw output, last {TAIL} of {} bytes ---\n{}",
            self.cols,
            self.rows,
            self.screen().screen().contents(),
            raw.len(),
            String::from_utf8_lossy(&raw[raw.len().saturating_sub(TAIL)..]).escape_debug()
        )
    }

    /// Check the bars as drawn: at least one screen showed a row with
    /// `name_part` in its name (with its bar on a terminal wide enough for
    /// one; on a narrow one the numbers stay and the bar goes first), and no
    /// row of any screen ever wrapped.
    #[track_caller]
    fn assert_bars_fit(&self, name_part: &str) {
        let screens = self.screens_before_summary();
        let wide = self.cols >= 60;
        let drawn = screens.iter().any(|(contents, _, _)| {
            let row = contents.lines().find(|l| l.contains(name_part));
            contents.contains("total [")
                && row.is_some_and(|row| {
                    let bar = row.contains("=>") || row.contains("==");
                    // The speed stays at every width this suite draws.
                    row.contains("/s") && bar == wide
                })
        });
        assert!(
            drawn,
            "no bar for {name_part:?} was drawn:\n{}",
            self.dump()
        );
        for (contents, rows, wrapped) in &screens {
            for (i, row) in rows.iter().enumerate() {
                // The echo of a typed Ctrl-C is the terminal's, not volley's.
                let text = row.trim_end().trim_end_matches("^C");
                assert!(
                    !wrapped[i] && text.chars().count() < usize::from(self.cols),
                    "row {i} is wider than {} columns:\n{contents}\n{}",
                    self.cols,
                    self.dump()
                );
            }
        }
    }

    /// Check the final screen: the summary and nothing else (no bar glyphs,
    /// no file rows, no total row).
    #[track_caller]
    fn assert_only_summary(&self, summary: &str) {
        let screen = self.screen();
        let contents = screen.screen().contents();
        assert!(
            contents.contains(summary),
            "no {summary:?} in the final screen:\n{}",
            self.dump()
        );
        // `contents` joins rows that wrapped: one entry per line written.
        for line in contents.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                line.starts_with("volley: ") && !line.contains("=>") && !line.contains("total ["),
                "a line that is not the summary stayed on the final screen: {line:?}\n{}",
                self.dump()
            );
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Files served slowly enough (about 2 s each) for bars to be drawn.
fn slow_files(server: &TestServer, names: &[&str]) -> Vec<(String, Vec<u8>)> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let body = content(700 + i as u64, 1024 * KIB);
            server.route(
                &format!("/{name}"),
                Route::new(body.clone()).throttle(16 * KIB, Duration::from_millis(30)),
            );
            (server.url(&format!("/{name}")), body)
        })
        .collect()
}

/// `-d out` (in the sandbox's working directory, so rows show `out/NAME`) and the URLs.
fn out_args(urls: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut args = vec!["-d".to_string(), "out".to_string()];
    args.extend(urls);
    args
}

#[test]
fn bars_fit_the_terminal_and_leave_only_the_summary() {
    let server = TestServer::start();
    let files = slow_files(&server, &[LONG_NAME, "b.bin"]);
    for cols in [80, 40] {
        let mut term = Terminal::run(24, cols, &out_args(files.iter().map(|f| f.0.clone())), &[]);
        let status = term.exit();
        assert_eq!(status.code(), Some(0), "{}", term.dump());
        // The long name lost its middle; both bars were drawn in the width.
        term.assert_bars_fit("…");
        term.assert_bars_fit("out/b.bin");
        term.assert_only_summary("volley: 2 succeeded, 0 skipped, 0 failed; 2.00 MiB in ");
        for (url, body) in &files {
            let name = url.rsplit('/').next().unwrap();
            assert_file_eq(term.out().join(name), body);
        }
    }
}

#[test]
fn bars_show_human_sizes_and_speeds() {
    let server = TestServer::start();
    let files = slow_files(&server, &["h.bin"]);
    let mut term = Terminal::run(24, 80, &out_args([files[0].0.clone()]), &[]);
    // `/1.00 MiB` after the bytes so far, a speed in KiB/s or MiB/s.
    term.wait_for("a bar with sizes and a speed", |s| {
        s.lines().any(|l| {
            l.contains("h.bin")
                && l.contains("/1.00 MiB")
                && (l.contains("KiB/s") || l.contains("MiB/s"))
        })
    });
    assert_eq!(term.exit().code(), Some(0), "{}", term.dump());
}

#[test]
fn ctrl_c_exits_130_and_leaves_no_stale_bar_row() {
    let server = TestServer::start();
    const HALF: usize = 256 * KIB;
    for (i, name) in [LONG_NAME, "b.bin"].iter().enumerate() {
        server.route(
            &format!("/{name}"),
            Route::new(content(800 + i as u64, 2 * HALF))
                .always(Fault::StallAfter(HALF, Duration::from_secs(120))),
        );
    }
    for cols in [80, 40] {
        let urls = [server.url(&format!("/{LONG_NAME}")), server.url("/b.bin")];
        let mut args = vec!["--timeout".to_string(), "120".to_string()];
        args.extend(out_args(urls));
        let mut term = Terminal::run(24, cols, &args, &[]);
        // Both bars are up and half full (the server stalls there).
        // At 40 columns the size column goes (before the time left and the
        // speed), so only the bytes so far show.
        let half = if cols >= 60 {
            "256 KiB/512 KiB"
        } else {
            "256 KiB"
        };
        term.wait_for("two half-full bars", |s| {
            s.contains("out/b.bin")
                && s.contains("…")
                && s.contains("total [0/2 files]")
                && s.matches(half).count() == 2
        });
        term.ctrl_c();
        let status = term.exit();
        assert_eq!(status.code(), Some(130), "{}", term.dump());
        term.assert_only_summary("volley: interrupted: 2 download(s) stopped");
        term.assert_bars_fit("out/b.bin");
    }
}

#[test]
fn no_color_drops_colour_but_keeps_bars() {
    let server = TestServer::start();
    let files = slow_files(&server, &["c.bin"]);
    for (no_color, coloured) in [(Some("1"), false), (None, true)] {
        let mut term = Terminal::run(
            24,
            80,
            &out_args([files[0].0.clone()]),
            &[("NO_COLOR", no_color)],
        );
        assert_eq!(term.exit().code(), Some(0), "{}", term.dump());
        term.assert_bars_fit("out/c.bin");
        let raw = String::from_utf8_lossy(&term.output()).into_owned();
        let colour_codes = raw.contains("\x1b[3") || raw.contains("\x1b[9");
        assert_eq!(
            colour_codes,
            coloured,
            "NO_COLOR={no_color:?}: colour codes {}:\n{}",
            if colour_codes { "present" } else { "missing" },
            term.dump()
        );
    }
}

#[test]
fn term_dumb_gets_plain_lines() {
    let server = TestServer::start();
    let files = slow_files(&server, &["d.bin"]);
    for mode in ["auto", "bars"] {
        let mut args = vec!["-v".to_string(), "--progress".to_string(), mode.to_string()];
        args.extend(out_args([files[0].0.clone()]));
        let mut term = Terminal::run(24, 80, &args, &[("TERM", Some("dumb")), ("NO_COLOR", None)]);
        assert_eq!(term.exit().code(), Some(0), "{}", term.dump());
        let raw = String::from_utf8_lossy(&term.output()).into_owned();
        assert!(
            !raw.contains('\x1b'),
            "--progress {mode}: escape codes on a dumb terminal:\n{}",
            term.dump()
        );
        let screen = term.screen().screen().contents();
        // Start lines only with -v (run above): done lines and the summary.
        for line in ["start    ", "done     ", "volley: 1 succeeded"] {
            assert!(
                screen.lines().any(|l| l.starts_with(line)),
                "--progress {mode}: no {line:?} line:\n{}",
                term.dump()
            );
        }
        assert!(screen.contains("(1.00 MiB)"), "{}", term.dump());
    }
}

#[test]
fn stderr_not_a_terminal_gets_plain_lines_only() {
    let server = TestServer::start();
    let files = slow_files(&server, &["p.bin"]);
    for (mode, verbose) in [("auto", true), ("bars", true), ("auto", false)] {
        let mut v = volley();
        let dir = path_arg(&v.sandbox.root().join("out"));
        // Colour and bars would be allowed on a terminal: stderr is a pipe.
        v.env("TERM", "xterm-256color").env_remove("NO_COLOR");
        if verbose {
            v.arg("-v");
        }
        let r = run(v.args(["--progress", mode, "-d", &dir, &files[0].0]));
        r.expect_code(0).expect_empty_stdout();
        assert!(
            !r.stderr.contains('\x1b'),
            "--progress {mode}: escape codes in plain output:\n{:?}",
            r.stderr
        );
        let mut lines: Vec<&str> = r.stderr.lines().collect();
        // A start line only with -v: done lines, failures and the summary
        // otherwise.
        if verbose {
            assert!(
                lines[0].starts_with("start    ") && lines[0].contains("p.bin (1.00 MiB)"),
                "{lines:?}"
            );
            lines.remove(0);
        }
        assert!(lines[0].starts_with("done     "), "{lines:?}");
        assert!(
            lines[1].starts_with("volley: 1 succeeded, 0 skipped, 0 failed; 1.00 MiB in "),
            "{lines:?}"
        );
        assert!(lines[1].ends_with("/s)"), "{lines:?}");
        assert_eq!(lines.len(), 2, "{lines:?}");
    }
}

#[test]
fn json_keeps_raw_numbers() {
    let server = TestServer::start();
    let files = slow_files(&server, &["j.bin"]);
    let mut v = volley();
    let dir = path_arg(&v.sandbox.root().join("out"));
    let r = run(v.args(["--json", "-d", &dir, &files[0].0]));
    r.expect_code(0);
    let events = parse_json_lines(&r.stdout);
    let of = |kind: &'static str| events.iter().filter(move |e| e["event"] == kind);
    let done = of("done").next().expect("a done event");
    assert_eq!(done["bytes"].as_u64(), Some(1024 * KIB as u64), "{done}");
    let summary = of("summary").next().expect("a summary event");
    assert_eq!(
        summary["bytes"].as_u64(),
        Some(1024 * KIB as u64),
        "{summary}"
    );
    for p in of("progress") {
        assert!(
            p["bytes"].is_u64() && p["speed"].is_u64(),
            "progress numbers should be raw: {p}"
        );
    }
    assert!(!r.stderr.contains('\x1b'), "{:?}", r.stderr);
}

#[test]
fn json_on_stdout_keeps_the_bars_on_a_terminal() {
    let server = TestServer::start();
    let files = slow_files(&server, &["js.bin"]);
    let dir = tempfile::tempdir().unwrap();
    let json_path = dir.path().join("events.json");
    let json = std::fs::File::create(&json_path).unwrap();
    let mut args = vec!["--json".to_string()];
    args.extend(out_args([files[0].0.clone()]));
    let mut term = Terminal::run_with_stdout(24, 80, &args, &[], Some(Stdio::from(json)));
    assert_eq!(term.exit().code(), Some(0), "{}", term.dump());
    term.assert_bars_fit("out/js.bin");
    let events = parse_json_lines(&std::fs::read(&json_path).unwrap());
    let done = events
        .iter()
        .find(|e| e["event"] == "done")
        .expect("a done event");
    // One form of a path, in JSON as on the screen: no leading ./
    assert_eq!(done["path"], "out/js.bin", "{done}");
}

#[test]
fn a_download_waiting_to_retry_says_so_in_its_row() {
    let server = TestServer::start();
    let body = content(900, 256 * KIB);
    server.route(
        "/w.bin",
        Route::new(body.clone()).fault(Fault::StatusWithHeaders(503, vec![("Retry-After", "4")])),
    );
    let mut args = vec!["--retry-wait".to_string(), "0.01".to_string()];
    args.extend(out_args([server.url("/w.bin")]));
    let mut term = Terminal::run(24, 80, &args, &[]);
    // It failed before its first answer: the row is named after its URL
    // until it starts, and counts down the wait in its speed column.
    term.wait_for("a row waiting to retry", |s| {
        s.contains("w.bin ") && (s.contains("retry 4s") || s.contains("retry 3s"))
    });
    assert_eq!(term.exit().code(), Some(0), "{}", term.dump());
    assert_file_eq(term.out().join("w.bin"), &body);
}

#[test]
fn the_total_row_shows_the_speed_now_and_the_size_and_time_left() {
    let server = TestServer::start();
    let files = slow_files(&server, &["t1.bin", "t2.bin"]);
    let mut term = Terminal::run(24, 100, &out_args(files.iter().map(|f| f.0.clone())), &[]);
    // Both sizes are known once both started: the run's size and the time left.
    term.wait_for("the total row with its size and time left", |s| {
        s.lines().any(|l| {
            l.starts_with("total [0/2 files]")
                && l.contains(" of 2.00 MiB at ")
                && l.contains("/s, ")
                && l.ends_with(" left")
        })
    });
    assert_eq!(term.exit().code(), Some(0), "{}", term.dump());
}
