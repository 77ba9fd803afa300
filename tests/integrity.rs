//! Integrity tests (issue 5, checksums): `--checksum ALGO=HEX`, the list
//! option `checksum=`, `--checksum-file` (GNU and BSD formats, the algorithm
//! told by the digest length and the file's name), the server's
//! `Repr-Digest` (RFC 9530) and legacy `Digest` headers, a mismatch retried
//! once from scratch and then failed, verification of split and resumed
//! downloads (including bytes corrupted on disk), the usage errors, and the
//! `checksum` field of the JSON `done` event.
//!
//! Reference digests come from the coreutils tools (`sha256sum`,
//! `sha512sum`, `sha1sum`, `md5sum`, `b2sum`) run on the body; BLAKE3 uses a
//! fixed published vector. Every test owns its server and sandbox, so they
//! run in parallel, and every file is checked byte for byte.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// BLAKE3 of the three bytes `abc` (the official test vector).
const BLAKE3_ABC: &str = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Output dir inside the sandbox (not created: volley must create it).
fn out_dir(sandbox: &Sandbox) -> PathBuf {
    sandbox.root().join("out")
}

/// The coreutils tool that computes `algo` (aria2c's spelling).
fn tool_for(algo: &str) -> &'static str {
    match algo {
        "sha-256" => "sha256sum",
        "sha-512" => "sha512sum",
        "sha-1" => "sha1sum",
        "md5" => "md5sum",
        "blake2b" => "b2sum",
        other => panic!("no reference tool for {other}"),
    }
}

/// The hex digest of `bytes` with `algo` (`sha-256`, `sha-512`, `sha-1`,
/// `md5`, `blake2b`), computed by the coreutils tool on a temp file.
fn digest(algo: &str, bytes: &[u8]) -> String {
    let tool = tool_for(algo);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("body");
    std::fs::write(&file, bytes).expect("write body");
    let out = Command::new(tool)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("tool output is UTF-8");
    let hex = text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{tool} printed {text:?}"
    );
    hex
}

fn sha256(bytes: &[u8]) -> String {
    digest("sha-256", bytes)
}

/// Write `files` into `dir` and run `tool args... NAMES` there (relative
/// names, as a release's checksum file is made); returns its stdout.
fn sums_of(dir: &Path, tool: &str, args: &[&str], files: &[(&str, &[u8])]) -> String {
    std::fs::create_dir_all(dir).expect("mkdir staging");
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).expect("write staged file");
    }
    let out = Command::new(tool)
        .args(args)
        .args(files.iter().map(|(n, _)| *n))
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("tool output is UTF-8")
}

fn hex_to_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The base64 of the digest whose hex is `hex` (for digest headers).
fn b64_of_hex(hex: &str) -> String {
    base64(&hex_to_bytes(hex))
}

/// `body` with one byte flipped in the middle (same length).
fn corrupted(body: &[u8]) -> Vec<u8> {
    let mut b = body.to_vec();
    let mid = b.len() / 2;
    b[mid] ^= 0x5a;
    b
}

/// GET requests on `path`, in arrival order.
fn gets(server: &TestServer, path: &str) -> Vec<RecordedRequest> {
    server
        .requests(path)
        .into_iter()
        .filter(|r| r.method.eq_ignore_ascii_case("GET"))
        .collect()
}

/// One line per request: Range, If-Range, body bytes sent.
fn describe(reqs: &[RecordedRequest]) -> String {
    reqs.iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                "#{i} {} range {:?} if-range {:?} sent {}",
                r.target,
                r.header("range"),
                r.header("if-range"),
                r.body_bytes_sent()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn events<'a>(evs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["event"] == kind).collect()
}

/// The one event of `kind` for `url`.
#[track_caller]
fn event_for<'a>(evs: &'a [Value], kind: &str, url: &str) -> &'a Value {
    let found: Vec<_> = events(evs, kind)
        .into_iter()
        .filter(|e| e["url"] == url)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {kind} event for {url}, got {found:?}; all events:\n{}",
        evs.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    found[0]
}

/// Assert the `done` event of `url` carries `checksum: want` (`None` →
/// the key is present and `null`).
#[track_caller]
fn assert_done_checksum(evs: &[Value], url: &str, want: Option<&str>) {
    let done = event_for(evs, "done", url);
    let got = done
        .get("checksum")
        .unwrap_or_else(|| panic!("done event without a checksum key: {done}"));
    match want {
        Some(w) => assert_eq!(got.as_str(), Some(w), "done.checksum of {url}: {done}"),
        None => assert!(
            got.is_null(),
            "done.checksum of {url} should be null: {done}"
        ),
    }
}

/// Assert the `failed` event of `url` has a reason naming every `needle`.
#[track_caller]
fn assert_failed_reason(evs: &[Value], url: &str, needles: &[&str]) {
    let failed = event_for(evs, "failed", url);
    let reason = failed["reason"]
        .as_str()
        .unwrap_or_else(|| panic!("failed event without a reason: {failed}"));
    for n in needles {
        assert!(
            reason.contains(n),
            "the reason of {url} does not name {n:?}: {reason:?}"
        );
    }
}

/// Assert the download left neither `NAME.part` nor its state file.
#[track_caller]
fn assert_no_leftovers(final_path: &Path) {
    let dir = final_path.parent().unwrap();
    assert!(
        !part_path(final_path).exists() && !state_path(final_path).exists(),
        "leftovers next to {}: {:?}",
        final_path.display(),
        list_tree(dir)
    );
}

/// Assert a failed download left nothing at all: no final file, no `.part`,
/// no state file.
#[track_caller]
fn assert_nothing_left(final_path: &Path) {
    let dir = final_path.parent().unwrap();
    assert!(
        !final_path.exists(),
        "a file that failed verification is under its final name: {:?}",
        list_tree(dir)
    );
    assert_no_leftovers(final_path);
}

/// Assert exactly two GETs, neither with `Range`: the first try and one
/// retry from scratch.
#[track_caller]
fn assert_retried_once_from_scratch(server: &TestServer, path: &str, len: usize) {
    let reqs = gets(server, path);
    assert_eq!(
        reqs.len(),
        2,
        "expected the first try and one retry from scratch:\n{}",
        describe(&reqs)
    );
    for r in &reqs {
        assert!(
            !r.has_header("range"),
            "a try after a mismatch must start over (no Range):\n{}",
            describe(&reqs)
        );
    }
    assert_eq!(
        server.body_bytes_sent(path),
        2 * len as u64,
        "two full bodies expected:\n{}",
        describe(&reqs)
    );
}

/// Common arguments: no backoff, into `dir`.
fn base_args(dir: &Path) -> Vec<String> {
    vec![
        "--retry-wait".into(),
        "0".into(),
        "-d".into(),
        path_arg(dir),
    ]
}

// ---------------------------------------------------------------------------
// 0. The reference helpers themselves
// ---------------------------------------------------------------------------

#[test]
fn reference_digests_and_base64_are_right() {
    assert_eq!(
        sha256(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(digest("md5", b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    assert_eq!(
        b64_of_hex(&sha256(b"abc")),
        "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
    );
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foob"), "Zm9vYg==");
}

// ---------------------------------------------------------------------------
// 1. --checksum matches with every algorithm (spelling is case-insensitive,
//    the hyphen optional)
// ---------------------------------------------------------------------------

#[test]
fn checksum_flag_matches_with_every_algorithm() {
    // (spelling on the command line, aria2c's name, body)
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("sha-256", "sha-256", content(501, 100 * KIB + 1)),
        ("SHA256", "sha-256", content(502, 64 * KIB)),
        ("SHA-512", "sha-512", content(503, 100 * KIB + 3)),
        ("sha1", "sha-1", content(504, 70 * KIB + 5)),
        ("Sha-1", "sha-1", content(505, 10)),
        ("MD5", "md5", content(506, 90 * KIB + 7)),
        ("blake2b", "blake2b", content(507, 80 * KIB + 9)),
        ("BLAKE3", "blake3", b"abc".to_vec()),
    ];
    for (spelling, name, body) in cases {
        let hex = if name == "blake3" {
            BLAKE3_ABC.to_string()
        } else {
            digest(name, &body)
        };
        let server = TestServer::start();
        server.file("/f.bin", body.clone());
        let url = server.url("/f.bin");
        let mut v = volley();
        let dir = out_dir(&v.sandbox);
        let r = run(v.args(base_args(&dir)).args([
            "--json",
            "--checksum",
            // Hex digits in upper case are accepted too (certutil prints them).
            &format!(
                "{spelling}={}",
                if spelling == "SHA256" {
                    hex.to_ascii_uppercase()
                } else {
                    hex.clone()
                }
            ),
            &url,
        ]));
        if r.code != Some(0) {
            panic!(
                "--checksum {spelling}=...: exit {:?}\n--- stderr ---\n{}",
                r.code, r.stderr
            );
        }
        let fin = dir.join("f.bin");
        assert_file_eq(&fin, &body);
        assert_no_leftovers(&fin);
        assert_eq!(gets(&server, "/f.bin").len(), 1, "{spelling}: one GET");
        let evs = parse_json_lines(&r.stdout);
        assert_done_checksum(&evs, &url, Some(&format!("{name}={hex}")));
    }
}

#[test]
fn checksum_flag_mismatch_is_detected_with_every_algorithm() {
    for name in ["sha-512", "sha-1", "md5", "blake2b", "blake3"] {
        // Served: `body`; expected: the digest of other bytes.
        let (body, expected, actual) = if name == "blake3" {
            (b"abd".to_vec(), BLAKE3_ABC.to_string(), None)
        } else {
            let body = content(510, 50 * KIB);
            let expected = digest(name, &content(511, 50 * KIB));
            let actual = digest(name, &body);
            (body, expected, Some(actual))
        };
        let server = TestServer::start();
        server.file("/m.bin", body.clone());
        let url = server.url("/m.bin");
        let mut v = volley();
        let dir = out_dir(&v.sandbox);
        let r =
            run(v
                .args(base_args(&dir))
                .args(["--checksum", &format!("{name}={expected}"), &url]));
        if r.code != Some(1) {
            panic!(
                "{name} mismatch: exit {:?} (expected 1)\n--- stderr ---\n{}",
                r.code, r.stderr
            );
        }
        r.expect_stderr_contains(&format!("{name}={expected}"));
        if let Some(actual) = actual {
            r.expect_stderr_contains(&format!("{name}={actual}"));
        }
        assert_nothing_left(&dir.join("m.bin"));
        assert_retried_once_from_scratch(&server, "/m.bin", body.len());
    }
}

#[test]
fn list_option_checksum_verifies_only_its_download() {
    let server = TestServer::start();
    let a = content(520, 120 * KIB);
    let b = content(521, 130 * KIB);
    let c = content(522, 140 * KIB);
    server.file("/a.bin", a.clone());
    server.file("/b.bin", b.clone());
    server.file("/c.bin", c.clone());
    let (ua, ub, uc) = (
        server.url("/a.bin"),
        server.url("/b.bin"),
        server.url("/c.bin"),
    );
    let a_hex = digest("blake2b", &a);
    let b_wrong = sha256(&c);
    let b_actual = sha256(&b);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let list = v.sandbox.root().join("list.txt");
    write_list(
        &list,
        &[
            ua.clone(),
            format!("  checksum=BLAKE2B={a_hex}"),
            ub.clone(),
            format!("  checksum=sha256={b_wrong}"),
            uc.clone(),
        ],
    );
    let r = run(v
        .args(base_args(&dir))
        .args(["--json", "-i", &path_arg(&list)]));
    r.expect_code(1);
    let evs = parse_json_lines(&r.stdout);

    assert_file_eq(dir.join("a.bin"), &a);
    assert_no_leftovers(&dir.join("a.bin"));
    assert_done_checksum(&evs, &ua, Some(&format!("blake2b={a_hex}")));

    assert_nothing_left(&dir.join("b.bin"));
    assert_failed_reason(
        &evs,
        &ub,
        &[
            &format!("sha-256={b_wrong}"),
            &format!("sha-256={b_actual}"),
        ],
    );
    assert_retried_once_from_scratch(&server, "/b.bin", b.len());

    assert_file_eq(dir.join("c.bin"), &c);
    assert_no_leftovers(&dir.join("c.bin"));
    assert_done_checksum(&evs, &uc, None);
}

// ---------------------------------------------------------------------------
// 2. A mismatch is retried once from scratch, then fails with both digests
// ---------------------------------------------------------------------------

#[test]
fn mismatch_is_retried_once_from_scratch_then_fails() {
    let server = TestServer::start();
    let len = 300 * KIB + 11;
    let body = content(530, len);
    // An ETag, so a resume would be possible: the retry must not use it.
    server.route("/bad.bin", Route::new(body.clone()).etag("\"bad-1\""));
    let expected = sha256(&content(531, len));
    let actual = sha256(&body);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args(base_args(&dir)).args([
        "--checksum",
        &format!("sha-256={expected}"),
        &server.url("/bad.bin"),
    ]));
    r.expect_code(1).expect_empty_stdout();
    r.expect_stderr_contains(&format!("sha-256={expected}"));
    r.expect_stderr_contains(&format!("sha-256={actual}"));
    assert_nothing_left(&dir.join("bad.bin"));
    assert_eq!(
        list_tree(&dir),
        Vec::<String>::new(),
        "files left after a failed verification"
    );
    assert_retried_once_from_scratch(&server, "/bad.bin", len);
}

// ---------------------------------------------------------------------------
// 3. A mismatch, then the right body on the retry: success
// ---------------------------------------------------------------------------

#[test]
fn mismatch_then_match_on_the_retry_succeeds() {
    let server = TestServer::start();
    let len = 256 * KIB + 3;
    let good = content(540, len);
    let bad = corrupted(&good);
    server.route(
        "/flip.bin",
        Route::new(bad)
            .etag("\"flip\"")
            .then(Route::new(good.clone()).etag("\"flip\"")),
    );
    let hex = sha256(&good);
    let url = server.url("/flip.bin");
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args(base_args(&dir)).args([
        "--json",
        "--checksum",
        &format!("sha-256={hex}"),
        &url,
    ]));
    r.expect_code(0);
    let fin = dir.join("flip.bin");
    assert_file_eq(&fin, &good);
    assert_no_leftovers(&fin);
    assert_eq!(list_tree(&dir), vec!["flip.bin".to_string()]);
    assert_retried_once_from_scratch(&server, "/flip.bin", len);
    let evs = parse_json_lines(&r.stdout);
    assert_done_checksum(&evs, &url, Some(&format!("sha-256={hex}")));
    assert!(events(&evs, "failed").is_empty(), "a failed event: {evs:?}");
}

// ---------------------------------------------------------------------------
// 4. --checksum-file
// ---------------------------------------------------------------------------

#[test]
fn checksum_file_verifies_the_listed_downloads_only() {
    let server = TestServer::start();
    let a = content(550, 100 * KIB);
    let b = content(551, 110 * KIB + 1);
    let c = content(552, 120 * KIB + 2);
    let d = content(553, 130 * KIB + 3);
    let e = content(555, 10 * KIB);
    for (p, body) in [
        ("/a.bin", &a),
        ("/b.bin", &b),
        ("/c.bin", &c),
        ("/d.bin", &d),
        ("/my%20file.bin", &e),
    ] {
        server.file(p, body.clone());
    }
    let urls: Vec<String> = ["/a.bin", "/b.bin", "/c.bin", "/d.bin", "/my%20file.bin"]
        .iter()
        .map(|p| server.url(p))
        .collect();
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    // The line for b.bin is the digest of other bytes; b.bin uses binary
    // mode (`*NAME`), c.bin is listed with a directory; d.bin is not listed;
    // a listed name that is not in the batch is ignored; a name may hold a
    // space.
    let b_wrong = sha256(&content(554, 110 * KIB + 1));
    let sums = v.sandbox.root().join("SHA256SUMS");
    let text = format!(
        "# release checksums\n{}  a.bin\n\n{} *b.bin\n{}  dist/c.bin\n{}  other.bin\n{}  my file.bin\n",
        sha256(&a),
        b_wrong,
        sha256(&c),
        sha256(&d),
        sha256(&e),
    );
    std::fs::write(&sums, text).unwrap();
    let r = run(v
        .args(base_args(&dir))
        .args(["--json", "--checksum-file", &path_arg(&sums)])
        .args(&urls));
    r.expect_code(1);
    let evs = parse_json_lines(&r.stdout);

    for (name, body, url) in [("a.bin", &a, &urls[0]), ("c.bin", &c, &urls[2])] {
        assert_file_eq(dir.join(name), body);
        assert_no_leftovers(&dir.join(name));
        assert_done_checksum(&evs, url, Some(&format!("sha-256={}", sha256(body))));
    }
    assert_nothing_left(&dir.join("b.bin"));
    assert_failed_reason(
        &evs,
        &urls[1],
        &[
            &format!("sha-256={b_wrong}"),
            &format!("sha-256={}", sha256(&b)),
        ],
    );
    r.expect_stderr_contains(&format!("sha-256={b_wrong}"));
    assert_retried_once_from_scratch(&server, "/b.bin", b.len());
    assert_file_eq(dir.join("d.bin"), &d);
    assert_no_leftovers(&dir.join("d.bin"));
    assert_done_checksum(&evs, &urls[3], None);
    assert_file_eq(dir.join("my file.bin"), &e);
    assert_done_checksum(&evs, &urls[4], Some(&format!("sha-256={}", sha256(&e))));
    for p in ["/a.bin", "/c.bin", "/d.bin", "/my%20file.bin"] {
        assert_eq!(gets(&server, p).len(), 1, "{p}: one GET");
    }
}

#[test]
fn bsd_checksum_file_from_the_tools_tag_output() {
    let server = TestServer::start();
    let a = content(560, 100 * KIB);
    let b = content(561, 110 * KIB);
    let c = content(562, 120 * KIB);
    let c_other = content(563, 120 * KIB);
    let d = content(564, 130 * KIB);
    let e = content(565, 140 * KIB);
    for (p, body) in [
        ("/a.bin", &a),
        ("/b.bin", &b),
        ("/c.bin", &c),
        ("/d.bin", &d),
        ("/e.bin", &e),
    ] {
        server.file(p, body.clone());
    }
    let urls: Vec<String> = ["/a.bin", "/b.bin", "/c.bin", "/d.bin", "/e.bin"]
        .iter()
        .map(|p| server.url(p))
        .collect();
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let staging = v.sandbox.root().join("staging");
    // `SHA256 (a.bin) = ...`, `SHA512 (b.bin) = ...`, `MD5 (c.bin) = ...`
    // (of other bytes), `BLAKE2b (d.bin) = ...`, `SHA1 (e.bin) = ...`.
    let text = [
        sums_of(&staging, "sha256sum", &["--tag"], &[("a.bin", &a)]),
        sums_of(&staging, "sha512sum", &["--tag"], &[("b.bin", &b)]),
        sums_of(&staging, "md5sum", &["--tag"], &[("c.bin", &c_other)]),
        sums_of(&staging, "b2sum", &["--tag"], &[("d.bin", &d)]),
        sums_of(&staging, "sha1sum", &["--tag"], &[("e.bin", &e)]),
    ]
    .concat();
    assert!(text.contains("BLAKE2b (d.bin) = "), "{text}");
    assert!(text.starts_with("SHA256 (a.bin) = "), "{text}");
    let sums = v.sandbox.root().join("CHECKSUMS");
    std::fs::write(&sums, &text).unwrap();
    let r = run(v
        .args(base_args(&dir))
        .args(["--json", "--checksum-file", &path_arg(&sums)])
        .args(&urls));
    r.expect_code(1);
    let evs = parse_json_lines(&r.stdout);
    assert_file_eq(dir.join("a.bin"), &a);
    assert_done_checksum(&evs, &urls[0], Some(&format!("sha-256={}", sha256(&a))));
    assert_file_eq(dir.join("b.bin"), &b);
    assert_done_checksum(
        &evs,
        &urls[1],
        Some(&format!("sha-512={}", digest("sha-512", &b))),
    );
    assert_nothing_left(&dir.join("c.bin"));
    assert_failed_reason(
        &evs,
        &urls[2],
        &[
            &format!("md5={}", digest("md5", &c_other)),
            &format!("md5={}", digest("md5", &c)),
        ],
    );
    assert_retried_once_from_scratch(&server, "/c.bin", c.len());
    assert_file_eq(dir.join("d.bin"), &d);
    assert_done_checksum(
        &evs,
        &urls[3],
        Some(&format!("blake2b={}", digest("blake2b", &d))),
    );
    assert_file_eq(dir.join("e.bin"), &e);
    assert_done_checksum(
        &evs,
        &urls[4],
        Some(&format!("sha-1={}", digest("sha-1", &e))),
    );
}

#[test]
fn checksum_file_algorithm_follows_digest_length_and_file_name() {
    // (checksum file name, tool, aria2c's name)
    let cases = [
        ("MD5SUMS", "md5sum", "md5"),
        ("SHA1SUMS", "sha1sum", "sha-1"),
        ("SHA512SUMS", "sha512sum", "sha-512"),
        ("B2SUMS", "b2sum", "blake2b"),
        ("release.blake2", "b2sum", "blake2b"),
    ];
    for (i, (file, tool, name)) in cases.into_iter().enumerate() {
        let server = TestServer::start();
        let body = content(570 + i as u64, 90 * KIB + i);
        server.file("/x.bin", body.clone());
        let url = server.url("/x.bin");
        let mut v = volley();
        let dir = out_dir(&v.sandbox);
        let staging = v.sandbox.root().join("staging");
        let text = sums_of(&staging, tool, &[], &[("x.bin", &body)]);
        let sums = v.sandbox.root().join(file);
        std::fs::write(&sums, &text).unwrap();
        let r = run(v.args(base_args(&dir)).args([
            "--json",
            "--checksum-file",
            &path_arg(&sums),
            &url,
        ]));
        if r.code != Some(0) {
            panic!(
                "{file} ({text:?}): exit {:?}\n--- stderr ---\n{}",
                r.code, r.stderr
            );
        }
        assert_file_eq(dir.join("x.bin"), &body);
        assert_no_leftovers(&dir.join("x.bin"));
        let evs = parse_json_lines(&r.stdout);
        assert_done_checksum(&evs, &url, Some(&format!("{name}={}", digest(name, &body))));
        assert_eq!(gets(&server, "/x.bin").len(), 1, "{file}: one GET");
    }
}

#[test]
fn checksum_file_matches_the_final_name_not_the_url() {
    let server = TestServer::start();
    let one = content(580, 100 * KIB);
    let two = content(581, 100 * KIB + 1);
    let three = content(582, 100 * KIB + 2);
    let four = content(583, 100 * KIB + 3);
    // Names from Content-Disposition.
    server.route(
        "/dl1",
        Route::new(one.clone()).content_disposition("attachment; filename=\"one.bin\""),
    );
    server.route(
        "/dl2",
        Route::new(two.clone()).content_disposition("attachment; filename=\"two.bin\""),
    );
    // Names from `out=`.
    server.file("/orig3.bin", three.clone());
    server.file("/orig4.bin", four.clone());
    let (u1, u2, u3, u4) = (
        server.url("/dl1"),
        server.url("/dl2"),
        server.url("/orig3.bin"),
        server.url("/orig4.bin"),
    );
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let list = v.sandbox.root().join("list.txt");
    write_list(
        &list,
        &[
            u1.clone(),
            u2.clone(),
            u3.clone(),
            "  out=renamed3.bin".into(),
            u4.clone(),
            "  out=renamed4.bin".into(),
        ],
    );
    let wrong = sha256(b"something else");
    let sums = v.sandbox.root().join("SHA256SUMS");
    std::fs::write(
        &sums,
        format!(
            "{}  one.bin\n{wrong}  two.bin\n{wrong}  renamed3.bin\n{wrong}  orig4.bin\n",
            sha256(&one)
        ),
    )
    .unwrap();
    let r = run(v.args(base_args(&dir)).args([
        "--json",
        "--checksum-file",
        &path_arg(&sums),
        "-i",
        &path_arg(&list),
    ]));
    r.expect_code(1);
    let evs = parse_json_lines(&r.stdout);
    // one.bin: verified by the name the server gave.
    assert_file_eq(dir.join("one.bin"), &one);
    assert_done_checksum(&evs, &u1, Some(&format!("sha-256={}", sha256(&one))));
    // two.bin: the wrong line for the server's name applies.
    assert_nothing_left(&dir.join("two.bin"));
    assert_failed_reason(&evs, &u2, &[&format!("sha-256={wrong}")]);
    // renamed3.bin: the wrong line for the out= name applies.
    assert_nothing_left(&dir.join("renamed3.bin"));
    assert!(!dir.join("orig3.bin").exists(), "{:?}", list_tree(&dir));
    assert_failed_reason(&evs, &u3, &[&format!("sha-256={wrong}")]);
    // renamed4.bin: not listed; the line for the URL's name does not apply.
    assert_file_eq(dir.join("renamed4.bin"), &four);
    assert_done_checksum(&evs, &u4, None);
}

// ---------------------------------------------------------------------------
// 5. Usage errors: exit 2, nothing requested, nothing written
// ---------------------------------------------------------------------------

#[test]
fn malformed_checksum_file_line_is_a_usage_error_naming_file_and_line() {
    let body = content(590, 1000);
    let good = sha256(&body);
    let cases = [
        // (file text, bad line)
        (format!("{good}  a.bin\n# fine\nnot a checksum line\n"), 3),
        (format!("\n{good}  a.bin\nabc123  b.bin\n"), 3),
        (format!("{good}\n"), 1),
        (format!("{good}  a.bin\n\nSHA256 (b.bin) = abcd\n"), 3),
        (format!("CRC32 (a.bin) = {good}\n"), 1),
    ];
    for (text, line) in cases {
        let server = TestServer::start();
        server.file("/a.bin", body.clone());
        let mut v = volley();
        let dir = out_dir(&v.sandbox);
        let sums = v.sandbox.root().join("SHA256SUMS");
        std::fs::write(&sums, &text).unwrap();
        let r = run(v.args(base_args(&dir)).args([
            "--checksum-file",
            &path_arg(&sums),
            &server.url("/a.bin"),
        ]));
        if r.code != Some(2) {
            panic!(
                "{text:?}: exit {:?} (expected 2)\n--- stderr ---\n{}",
                r.code, r.stderr
            );
        }
        r.expect_empty_stdout();
        r.expect_stderr_contains(&format!("{}:{line}", path_arg(&sums)));
        assert_eq!(server.total_hits(), 0, "{text:?}: requests were made");
        assert_eq!(list_tree(&dir), Vec::<String>::new(), "{text:?}");
    }
}

#[test]
fn missing_checksum_file_is_a_usage_error() {
    let server = TestServer::start();
    server.file("/a.bin", content(595, 1000));
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let sums = v.sandbox.root().join("NO-SUCH-SUMS");
    let r = run(v.args(base_args(&dir)).args([
        "--checksum-file",
        &path_arg(&sums),
        &server.url("/a.bin"),
    ]));
    r.expect_code(2).expect_empty_stdout();
    r.expect_stderr_contains("NO-SUCH-SUMS");
    assert_eq!(server.total_hits(), 0, "requests were made");
    assert_eq!(list_tree(&dir), Vec::<String>::new());
}

#[test]
fn checksum_flag_with_several_downloads_is_a_usage_error() {
    let server = TestServer::start();
    server.file("/a.bin", content(600, 1000));
    server.file("/b.bin", content(601, 1000));
    let hex = sha256(&content(600, 1000));
    let (ua, ub) = (server.url("/a.bin"), server.url("/b.bin"));

    // Two URL arguments.
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v
        .args(base_args(&dir))
        .args(["--checksum", &format!("sha-256={hex}"), &ua, &ub]));
    r.expect_code(2).expect_empty_stdout();
    r.expect_stderr_contains("--checksum");
    r.expect_stderr_contains("checksum=");
    assert_eq!(list_tree(&dir), Vec::<String>::new());

    // A list with two URLs.
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let list = v.sandbox.root().join("list.txt");
    write_list(&list, &[ua.clone(), ub.clone()]);
    let r = run(v.args(base_args(&dir)).args([
        "--checksum",
        &format!("sha-256={hex}"),
        "-i",
        &path_arg(&list),
    ]));
    r.expect_code(2).expect_empty_stdout();
    r.expect_stderr_contains("--checksum");
    assert_eq!(list_tree(&dir), Vec::<String>::new());

    assert_eq!(server.total_hits(), 0, "requests were made");
}

#[test]
fn bad_checksum_values_are_usage_errors() {
    let sha = sha256(b"abc");
    let cases = [
        format!("crc32={}", &sha[..8]),
        format!("sha-3={sha}"),
        "sha-256=abcd".to_string(),
        format!("sha-256={sha}00"),
        format!("sha-256={}", "z".repeat(64)),
        format!("md5={sha}"),
        format!("sha-512={sha}"),
        format!("blake3={}", &sha[..40]),
        sha.clone(),
        "sha-256=".to_string(),
    ];
    for value in cases {
        let server = TestServer::start();
        server.file("/a.bin", b"abc".to_vec());
        let mut v = volley();
        let dir = out_dir(&v.sandbox);
        let r = run(v
            .args(base_args(&dir))
            .args(["--checksum", &value, &server.url("/a.bin")]));
        if r.code != Some(2) {
            panic!(
                "--checksum {value}: exit {:?} (expected 2)\n--- stderr ---\n{}",
                r.code, r.stderr
            );
        }
        r.expect_empty_stdout();
        r.expect_stderr_contains("--checksum");
        assert_eq!(server.total_hits(), 0, "--checksum {value}: requests made");
        assert_eq!(list_tree(&dir), Vec::<String>::new(), "{value}");
    }
    // Control: the flag itself exists and a good value passes.
    let server = TestServer::start();
    server.file("/a.bin", b"abc".to_vec());
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args(base_args(&dir)).args([
        "--checksum",
        &format!("sha-256={sha}"),
        &server.url("/a.bin"),
    ]));
    r.expect_code(0);
    assert_file_eq(dir.join("a.bin"), b"abc");
}

#[test]
fn bad_list_checksum_is_a_usage_error_naming_the_line() {
    let server = TestServer::start();
    server.file("/a.bin", content(610, 1000));
    server.file("/b.bin", content(611, 1000));
    server.file("/c.bin", content(612, 1000));
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let list = v.sandbox.root().join("list.txt");
    write_list(
        &list,
        &[
            server.url("/a.bin"),                                          // 1
            "  checksum=crc32=abcdef01".into(),                            // 2
            server.url("/b.bin"),                                          // 3
            format!("  checksum=sha-256={}", &sha256(b"x")[..60]),         // 4
            server.url("/c.bin"),                                          // 5
            format!("  checksum=sha-256={}", sha256(&content(612, 1000))), // 6
        ],
    );
    let r = run(v.args(base_args(&dir)).args(["-i", &path_arg(&list)]));
    r.expect_code(2).expect_empty_stdout();
    r.expect_stderr_contains(&format!("{}:2", path_arg(&list)));
    r.expect_stderr_contains(&format!("{}:4", path_arg(&list)));
    assert!(
        !r.stderr.contains(&format!("{}:6", path_arg(&list))),
        "a good line reported:\n{}",
        r.stderr
    );
    assert_eq!(server.total_hits(), 0, "requests were made");
    assert_eq!(list_tree(&dir), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// 6. The server's digest headers
// ---------------------------------------------------------------------------

/// Serve `body` on `/s.bin` with the header `name: value`, run volley with
/// `extra` arguments and `--json`; returns the run, the URL and the dir.
fn with_server_digest(
    server: &TestServer,
    body: &[u8],
    name: &str,
    value: &str,
    extra: &[String],
) -> (Run, String, PathBuf, Volley) {
    server.route(
        "/s.bin",
        Route::new(body.to_vec())
            .etag("\"s-1\"")
            .header(name, value),
    );
    let url = server.url("/s.bin");
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args(base_args(&dir)).arg("--json").args(extra).arg(&url));
    (r, url, dir, v)
}

#[test]
fn right_repr_digest_is_verified() {
    let server = TestServer::start();
    let body = content(620, 200 * KIB + 1);
    let hex = sha256(&body);
    let value = format!("sha-256=:{}:", b64_of_hex(&hex));
    let (r, url, dir, _v) = with_server_digest(&server, &body, "Repr-Digest", &value, &[]);
    r.expect_code(0);
    assert_file_eq(dir.join("s.bin"), &body);
    assert_no_leftovers(&dir.join("s.bin"));
    assert_done_checksum(
        &parse_json_lines(&r.stdout),
        &url,
        Some(&format!("sha-256={hex}")),
    );
    assert_eq!(gets(&server, "/s.bin").len(), 1);
}

#[test]
fn wrong_repr_digest_fails_after_one_retry_from_scratch() {
    let server = TestServer::start();
    let len = 200 * KIB + 2;
    let body = content(621, len);
    let wrong = sha256(&content(622, len));
    let value = format!("sha-256=:{}:", b64_of_hex(&wrong));
    let (r, url, dir, _v) = with_server_digest(&server, &body, "Repr-Digest", &value, &[]);
    r.expect_code(1);
    r.expect_stderr_contains(&format!("sha-256={wrong}"));
    r.expect_stderr_contains(&format!("sha-256={}", sha256(&body)));
    assert_failed_reason(
        &parse_json_lines(&r.stdout),
        &url,
        &[
            &format!("sha-256={wrong}"),
            &format!("sha-256={}", sha256(&body)),
        ],
    );
    assert_nothing_left(&dir.join("s.bin"));
    assert_retried_once_from_scratch(&server, "/s.bin", len);
}

#[test]
fn legacy_digest_header_is_verified() {
    // Right: success, and the done event names the verified digest.
    let server = TestServer::start();
    let body = content(630, 150 * KIB + 3);
    let hex = sha256(&body);
    let value = format!("SHA-256={}", b64_of_hex(&hex));
    let (r, url, dir, _v) = with_server_digest(&server, &body, "Digest", &value, &[]);
    r.expect_code(0);
    assert_file_eq(dir.join("s.bin"), &body);
    assert_done_checksum(
        &parse_json_lines(&r.stdout),
        &url,
        Some(&format!("sha-256={hex}")),
    );

    // Wrong: a mismatch like any other.
    let server = TestServer::start();
    let wrong = sha256(&content(631, 10));
    let value = format!("SHA-256={}", b64_of_hex(&wrong));
    let (r, _url, dir, _v) = with_server_digest(&server, &body, "Digest", &value, &[]);
    r.expect_code(1);
    r.expect_stderr_contains(&format!("sha-256={wrong}"));
    r.expect_stderr_contains(&format!("sha-256={hex}"));
    assert_nothing_left(&dir.join("s.bin"));
    assert_retried_once_from_scratch(&server, "/s.bin", body.len());
}

#[test]
fn strongest_server_digest_is_the_one_verified() {
    let server = TestServer::start();
    let body = content(640, 120 * KIB);
    let md5 = digest("md5", &body);
    let sha512 = digest("sha-512", &body);
    let value = format!(
        "md5=:{}:, unknown-algo=:AAAA:, sha-512=:{}:",
        b64_of_hex(&md5),
        b64_of_hex(&sha512)
    );
    let (r, url, dir, _v) = with_server_digest(&server, &body, "Repr-Digest", &value, &[]);
    r.expect_code(0);
    assert_file_eq(dir.join("s.bin"), &body);
    assert_done_checksum(
        &parse_json_lines(&r.stdout),
        &url,
        Some(&format!("sha-512={sha512}")),
    );
}

#[test]
fn server_digest_is_verified_besides_the_users_checksum() {
    let server = TestServer::start();
    let body = content(650, 100 * KIB + 7);
    let wrong = sha256(&content(651, 5));
    let value = format!("sha-256=:{}:", b64_of_hex(&wrong));
    let extra = [
        "--checksum".to_string(),
        format!("sha-256={}", sha256(&body)),
    ];
    let (r, _url, dir, _v) = with_server_digest(&server, &body, "Repr-Digest", &value, &extra);
    r.expect_code(1);
    r.expect_stderr_contains(&format!("sha-256={wrong}"));
    assert_nothing_left(&dir.join("s.bin"));
    assert_retried_once_from_scratch(&server, "/s.bin", body.len());
}

// ---------------------------------------------------------------------------
// 7. Split downloads: ranges arrive out of order, the digest still covers
//    the file
// ---------------------------------------------------------------------------

fn split_args(dir: &Path) -> Vec<String> {
    let mut a = vec![
        "-x".to_string(),
        "4".into(),
        "--min-split-size".into(),
        "1M".into(),
    ];
    a.extend(base_args(dir));
    a
}

/// Assert the download was split: several distinct range starts.
#[track_caller]
fn assert_split(reqs: &[RecordedRequest]) {
    let mut starts: Vec<u64> = reqs.iter().filter_map(|r| r.range().map(|x| x.0)).collect();
    starts.sort_unstable();
    starts.dedup();
    assert!(
        starts.len() >= 3 && starts[0] == 0,
        "the download was not split (range starts {starts:?}):\n{}",
        describe(reqs)
    );
}

/// A split-download route whose first piece (`bytes=0-`) is slow, so the
/// other pieces land on disk before it: the bytes arrive out of order.
fn first_piece_slow(route: Route) -> Route {
    route.throttle_range_start(0, 64 * KIB, Duration::from_millis(10))
}

/// Requests that start at byte 0 (`bytes=0-` or no Range): one per try.
fn tries_from_zero(reqs: &[RecordedRequest]) -> usize {
    reqs.iter()
        .filter(|r| r.range().is_none_or(|(s, _)| s == 0))
        .count()
}

#[test]
fn split_download_with_the_right_checksum_succeeds() {
    let server = TestServer::start();
    let len = 8 * MIB;
    let body = content(660, len);
    server.route(
        "/big.bin",
        first_piece_slow(Route::new(body.clone()).etag("\"big\"")),
    );
    let hex = sha256(&body);
    let url = server.url("/big.bin");
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args(split_args(&dir)).args([
        "--json",
        "--checksum",
        &format!("sha-256={hex}"),
        &url,
    ]));
    r.expect_code(0);
    let fin = dir.join("big.bin");
    assert_file_eq(&fin, &body);
    assert_no_leftovers(&fin);
    let reqs = gets(&server, "/big.bin");
    assert_split(&reqs);
    assert_no_mismatch(&r.stderr, "sha-256", &hex);
    assert_eq!(
        tries_from_zero(&reqs),
        1,
        "started over:\n{}",
        describe(&reqs)
    );
    assert_done_checksum(
        &parse_json_lines(&r.stdout),
        &url,
        Some(&format!("sha-256={hex}")),
    );
}

#[test]
fn split_download_with_the_wrong_checksum_fails() {
    let server = TestServer::start();
    let len = 8 * MIB;
    let body = content(661, len);
    server.route(
        "/big.bin",
        first_piece_slow(Route::new(body.clone()).etag("\"big\"")),
    );
    let wrong = sha256(&corrupted(&body));
    let actual = sha256(&body);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args(split_args(&dir)).args([
        "--checksum",
        &format!("sha-256={wrong}"),
        &server.url("/big.bin"),
    ]));
    r.expect_code(1).expect_empty_stdout();
    r.expect_stderr_contains(&format!("sha-256={wrong}"));
    r.expect_stderr_contains(&format!("sha-256={actual}"));
    let fin = dir.join("big.bin");
    assert_nothing_left(&fin);
    let reqs = gets(&server, "/big.bin");
    assert_split(&reqs);
    // Two tries, each from byte 0 (`bytes=0-` or no Range).
    assert_eq!(
        tries_from_zero(&reqs),
        2,
        "expected the first try and one retry from scratch:\n{}",
        describe(&reqs)
    );
    let sent = server.body_bytes_sent("/big.bin");
    assert!(
        sent >= 2 * len as u64,
        "a retry from scratch fetches the whole file again; sent {sent}:\n{}",
        describe(&reqs)
    );
}

#[test]
fn split_download_with_the_servers_repr_digest_succeeds() {
    // Every ranged answer carries the digest of the whole representation.
    let server = TestServer::start();
    let len = 8 * MIB;
    let body = content(662, len);
    let hex = sha256(&body);
    server.route(
        "/big.bin",
        first_piece_slow(
            Route::new(body.clone())
                .etag("\"big\"")
                .header("Repr-Digest", format!("sha-256=:{}:", b64_of_hex(&hex))),
        ),
    );
    let url = server.url("/big.bin");
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args(split_args(&dir)).args(["--json", &url]));
    r.expect_code(0);
    assert_file_eq(dir.join("big.bin"), &body);
    let reqs = gets(&server, "/big.bin");
    assert_split(&reqs);
    assert_no_mismatch(&r.stderr, "sha-256", &hex);
    assert_eq!(
        tries_from_zero(&reqs),
        1,
        "started over:\n{}",
        describe(&reqs)
    );
    assert_done_checksum(
        &parse_json_lines(&r.stdout),
        &url,
        Some(&format!("sha-256={hex}")),
    );
}

// ---------------------------------------------------------------------------
// 8. Resumed downloads: the bytes already on disk are hashed too
// ---------------------------------------------------------------------------

const SLOW_LEN: usize = 4 * MIB;
const SLOW_ETAG: &str = "\"slow-1\"";

/// End of the `[0, n)` prefix the state file records.
fn state_prefix_end(state: &Value) -> Option<u64> {
    let first = state["done"].get(0)?;
    (first[0].as_u64()? == 0).then(|| first[1].as_u64())?
}

/// Start a throttled download of `/r.bin` with `args`, SIGKILL it once its
/// state file records some bytes, and return the recorded prefix length.
/// On return `/r.bin` is served fast (same ETag) and the stats are reset.
fn kill_mid_download(server: &TestServer, body: &[u8], args: &[String]) -> (u64, PathBuf) {
    server.route(
        "/r.bin",
        Route::new(body.to_vec())
            .etag(SLOW_ETAG)
            .throttle(16 * KIB, Duration::from_millis(25)),
    );
    let url = server.url("/r.bin");
    let mut p = volley_process();
    let errlog = p.sandbox.root().join("stderr.txt");
    p.args(args)
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errlog).unwrap());
    let mut child = p.spawn().expect("spawn volley");
    let fin = PathBuf::from(&args[args.iter().position(|a| a == "-d").unwrap() + 1]).join("r.bin");
    let recorded = wait_until(Duration::from_secs(10), || {
        read_state(&fin)
            .and_then(|s| state_prefix_end(&s))
            .is_some_and(|n| n > 0)
    });
    if !recorded {
        abort_child(
            &mut child,
            &errlog,
            "no state file with progress within 10 s",
        );
    }
    if child.try_wait().unwrap().is_some() {
        abort_child(
            &mut child,
            &errlog,
            "volley ended before it could be killed",
        );
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), None, "not killed by a signal: {status:?}");

    assert!(!fin.exists(), "final file exists after the kill");
    let state = read_state(&fin).expect("state file after the kill");
    let n = state_prefix_end(&state).expect("recorded prefix");
    assert!(n > 0 && n < body.len() as u64, "state records {n} bytes");
    let part = std::fs::read(part_path(&fin)).expect(".part after the kill");
    assert!(part.len() as u64 >= n, ".part shorter than recorded");
    assert_bytes_eq(".part prefix", &part[..n as usize], &body[..n as usize]);

    server.route("/r.bin", Route::new(body.to_vec()).etag(SLOW_ETAG));
    settle(server);
    server.reset_stats();
    (n, fin)
}

#[test]
fn resumed_download_is_verified_including_the_bytes_on_disk() {
    let server = TestServer::start();
    let body = content(670, SLOW_LEN);
    let hex = sha256(&body);
    // One output dir shared by both runs.
    let keep = tempfile::tempdir().unwrap();
    let dir = keep.path().join("out");
    let mut args = base_args(&dir);
    args.extend(["--checksum".to_string(), format!("sha-256={hex}")]);
    let (n, fin) = kill_mid_download(&server, &body, &args);

    let url = server.url("/r.bin");
    let mut v = volley();
    let r = run(v.args(&args).arg("--json").arg(&url));
    r.expect_code(0);
    assert_file_eq(&fin, &body);
    assert_no_leftovers(&fin);
    let reqs = gets(&server, "/r.bin");
    // Resumed, and the digest over the bytes on disk plus the rest matched
    // at once: no second try.
    assert_eq!(reqs.len(), 1, "{}", describe(&reqs));
    assert_eq!(
        reqs[0].header("range"),
        Some(format!("bytes={n}-").as_str()),
        "the rerun should resume from the recorded offset:\n{}",
        describe(&reqs)
    );
    assert_eq!(server.body_bytes_sent("/r.bin"), body.len() as u64 - n);
    assert_done_checksum(
        &parse_json_lines(&r.stdout),
        &url,
        Some(&format!("sha-256={hex}")),
    );
}

#[test]
fn resumed_download_with_corrupted_bytes_on_disk_starts_over() {
    let server = TestServer::start();
    let body = content(671, SLOW_LEN);
    let hex = sha256(&body);
    let keep = tempfile::tempdir().unwrap();
    let dir = keep.path().join("out");
    let mut args = base_args(&dir);
    args.extend(["--checksum".to_string(), format!("sha-256={hex}")]);
    let (n, fin) = kill_mid_download(&server, &body, &args);

    // Flip one byte inside the recorded range.
    let mut part = std::fs::read(part_path(&fin)).unwrap();
    let at = (n / 2) as usize;
    part[at] ^= 0xff;
    std::fs::write(part_path(&fin), &part).unwrap();

    let url = server.url("/r.bin");
    let mut v = volley();
    let r = run(v.args(&args).arg("--json").arg(&url));
    r.expect_code(0);
    assert_file_eq(&fin, &body);
    assert_no_leftovers(&fin);
    let reqs = gets(&server, "/r.bin");
    assert_eq!(
        reqs.len(),
        2,
        "expected the resumed try and one retry from scratch:\n{}",
        describe(&reqs)
    );
    assert_eq!(
        reqs[0].header("range"),
        Some(format!("bytes={n}-").as_str()),
        "the rerun should first resume from the recorded offset:\n{}",
        describe(&reqs)
    );
    assert!(
        !reqs[1].has_header("range"),
        "after the mismatch the download must start over:\n{}",
        describe(&reqs)
    );
    assert_eq!(
        server.body_bytes_sent("/r.bin"),
        2 * body.len() as u64 - n,
        "{}",
        describe(&reqs)
    );
    assert_done_checksum(
        &parse_json_lines(&r.stdout),
        &url,
        Some(&format!("sha-256={hex}")),
    );
}

// ---------------------------------------------------------------------------
// 9. JSON: `done.checksum` and the reason of `failed`
// ---------------------------------------------------------------------------

#[test]
fn json_done_checksum_is_the_verified_digest_or_null() {
    let server = TestServer::start();
    let body = content(680, 50 * KIB);
    server.file("/j.bin", body.clone());
    let url = server.url("/j.bin");
    let hex = sha256(&body);

    // Verified.
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args(base_args(&dir)).args([
        "--json",
        "--checksum",
        &format!("sha-256={hex}"),
        &url,
    ]));
    r.expect_code(0);
    assert_file_eq(dir.join("j.bin"), &body);
    assert_done_checksum(
        &parse_json_lines(&r.stdout),
        &url,
        Some(&format!("sha-256={hex}")),
    );

    // Not verified: the key is there, null.
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args(base_args(&dir)).args(["--json", &url]));
    r.expect_code(0);
    assert_file_eq(dir.join("j.bin"), &body);
    assert_done_checksum(&parse_json_lines(&r.stdout), &url, None);

    // A mismatch: the failed event names both digests.
    let wrong = sha256(&content(681, 50 * KIB));
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args(base_args(&dir)).args([
        "--json",
        "--checksum",
        &format!("sha-256={wrong}"),
        &url,
    ]));
    r.expect_code(1);
    let evs = parse_json_lines(&r.stdout);
    assert_failed_reason(
        &evs,
        &url,
        &[&format!("sha-256={wrong}"), &format!("sha-256={hex}")],
    );
    assert!(
        events(&evs, "done").is_empty(),
        "a done event for a failed verification: {evs:?}"
    );
    assert_eq!(evs.last().unwrap()["event"], "summary");
    assert_eq!(evs.last().unwrap()["failed"], 1);
    assert_nothing_left(&dir.join("j.bin"));
}

// ---------------------------------------------------------------------------
// 10. The hash stays right across everything else a download goes through:
//     in-run retries, a file that changed, a complete `.part`, stdout,
//     split resumes
// ---------------------------------------------------------------------------

/// Assert no mismatch was reported: every `ALGO=HEX` digest of `algo` that
/// stderr names is `expected` (a mismatch names the actual digest too).
#[track_caller]
fn assert_no_mismatch(stderr: &str, algo: &str, expected: &str) {
    let needle = format!("{algo}=");
    let mut rest = stderr;
    while let Some(i) = rest.find(&needle) {
        rest = &rest[i + needle.len()..];
        let hex: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
        assert!(
            hex.is_empty() || hex == expected,
            "a digest other than the expected one was reported ({algo}={hex}), \
             i.e. a mismatch:\n{stderr}"
        );
    }
}

#[test]
fn reset_mid_body_then_resume_is_still_verified() {
    let server = TestServer::start();
    let len = MIB + 17;
    let body = content(700, len);
    server.route(
        "/reset.bin",
        Route::new(body.clone())
            .etag("\"r\"")
            .fault(Fault::ResetAfter(len * 4 / 10)),
    );
    let hex = sha256(&body);
    let url = server.url("/reset.bin");
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args(base_args(&dir)).args([
        "--json",
        "--checksum",
        &format!("sha-256={hex}"),
        &url,
    ]));
    r.expect_code(0);
    assert_no_mismatch(&r.stderr, "sha-256", &hex);
    let fin = dir.join("reset.bin");
    assert_file_eq(&fin, &body);
    assert_no_leftovers(&fin);
    let reqs = gets(&server, "/reset.bin");
    // The reset, then a resume whose digest (prefix read back + the rest)
    // matched at once.
    assert_eq!(reqs.len(), 2, "{}", describe(&reqs));
    assert!(
        reqs[1].range().is_some_and(|(s, _)| s > 0),
        "the second try should resume:\n{}",
        describe(&reqs)
    );
    assert_done_checksum(
        &parse_json_lines(&r.stdout),
        &url,
        Some(&format!("sha-256={hex}")),
    );
}

#[test]
fn file_changed_between_tries_is_hashed_from_its_new_start() {
    let server = TestServer::start();
    let len = 512 * KIB + 5;
    let old = content(701, len);
    let new = content(702, len);
    // Version A is cut after 30 %; the resume's If-Range no longer matches,
    // so the second try gets version B in full and starts over.
    server.route(
        "/chg.bin",
        Route::new(old)
            .etag("\"A\"")
            .fault(Fault::ResetAfter(len * 3 / 10))
            .then(Route::new(new.clone()).etag("\"B\"")),
    );
    let hex = sha256(&new);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args(base_args(&dir)).args([
        "--checksum",
        &format!("sha-256={hex}"),
        &server.url("/chg.bin"),
    ]));
    r.expect_code(0);
    assert_no_mismatch(&r.stderr, "sha-256", &hex);
    assert_file_eq(dir.join("chg.bin"), &new);
    assert_no_leftovers(&dir.join("chg.bin"));
    let reqs = gets(&server, "/chg.bin");
    assert_eq!(
        reqs.len(),
        2,
        "no retry for a mismatch expected:\n{}",
        describe(&reqs)
    );
}

#[test]
fn segment_reset_in_a_split_download_is_still_verified() {
    let server = TestServer::start();
    let len = 8 * MIB;
    let body = content(703, len);
    server.route(
        "/seg.bin",
        Route::new(body.clone())
            .etag("\"seg\"")
            .segment_fault(Fault::ResetAfter(64 * KIB)),
    );
    let hex = sha256(&body);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args(split_args(&dir)).args([
        "--checksum",
        &format!("sha-256={hex}"),
        &server.url("/seg.bin"),
    ]));
    r.expect_code(0);
    assert_no_mismatch(&r.stderr, "sha-256", &hex);
    assert_file_eq(dir.join("seg.bin"), &body);
    assert_no_leftovers(&dir.join("seg.bin"));
    let reqs = gets(&server, "/seg.bin");
    assert_split(&reqs);
    assert!(
        reqs.iter().any(|r| r.fault.is_some()),
        "the fault was not used:\n{}",
        describe(&reqs)
    );
    assert_eq!(
        tries_from_zero(&reqs),
        1,
        "started over:\n{}",
        describe(&reqs)
    );
}

#[test]
fn split_download_of_a_file_that_changed_is_hashed_from_its_new_start() {
    let server = TestServer::start();
    let len = 8 * MIB;
    let new = content(705, len);
    server.route(
        "/chg.bin",
        Route::new(content(704, len))
            .etag("\"A\"")
            .then(Route::new(new.clone()).etag("\"B\"")),
    );
    let hex = sha256(&new);
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args(split_args(&dir)).args([
        "--checksum",
        &format!("sha-256={hex}"),
        &server.url("/chg.bin"),
    ]));
    let reqs = gets(&server, "/chg.bin");
    if r.code != Some(0) {
        panic!(
            "exit {:?}\n--- stderr ---\n{}\n--- requests ---\n{}",
            r.code,
            r.stderr,
            describe(&reqs)
        );
    }
    assert_no_mismatch(&r.stderr, "sha-256", &hex);
    assert_file_eq(dir.join("chg.bin"), &new);
    assert_no_leftovers(&dir.join("chg.bin"));
}

/// Put `part` in `DIR/f.bin.part` and a state file recording `[0, done)` of
/// a `size`-byte file with ETag `"e1"` from `url`.
fn prepare_partial(dir: &Path, url: &str, part: &[u8], size: usize, done: usize) {
    std::fs::create_dir_all(dir).expect("mkdir out");
    let fin = dir.join("f.bin");
    std::fs::write(part_path(&fin), part).expect("write .part");
    let state = serde_json::json!({
        "version": 1,
        "url": url,
        "size": size,
        "etag": "\"e1\"",
        "last_modified": null,
        "done": [[0, done]],
    });
    std::fs::write(state_path(&fin), state.to_string()).expect("write state");
}

#[test]
fn complete_part_file_on_disk_is_verified_too() {
    let len = 200 * KIB + 5;
    let body = content(710, len);
    let hex = sha256(&body);

    // The whole file is on disk and right: a 416, no body, verified.
    let server = TestServer::start();
    server.route("/f.bin", Route::new(body.clone()).etag("\"e1\""));
    let url = server.url("/f.bin");
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    prepare_partial(&dir, &url, &body, len, len);
    let r = run(v.args(base_args(&dir)).args([
        "--json",
        "--checksum",
        &format!("sha-256={hex}"),
        &url,
    ]));
    r.expect_code(0);
    assert_file_eq(dir.join("f.bin"), &body);
    assert_no_leftovers(&dir.join("f.bin"));
    assert_eq!(gets(&server, "/f.bin").len(), 1);
    assert_eq!(server.body_bytes_sent("/f.bin"), 0);
    assert_done_checksum(
        &parse_json_lines(&r.stdout),
        &url,
        Some(&format!("sha-256={hex}")),
    );

    // The whole file is on disk but one byte is wrong: detected, fetched
    // again from scratch.
    let server = TestServer::start();
    server.route("/f.bin", Route::new(body.clone()).etag("\"e1\""));
    let url = server.url("/f.bin");
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    prepare_partial(&dir, &url, &corrupted(&body), len, len);
    let r = run(v
        .args(base_args(&dir))
        .args(["--checksum", &format!("sha-256={hex}"), &url]));
    r.expect_code(0);
    r.expect_stderr_contains(&format!("sha-256={}", sha256(&corrupted(&body))));
    assert_file_eq(dir.join("f.bin"), &body);
    assert_no_leftovers(&dir.join("f.bin"));
    let reqs = gets(&server, "/f.bin");
    assert_eq!(reqs.len(), 2, "{}", describe(&reqs));
    assert!(!reqs[1].has_header("range"), "{}", describe(&reqs));
    assert_eq!(server.body_bytes_sent("/f.bin"), len as u64);
}

#[test]
fn mismatch_retry_does_not_need_the_retry_budget() {
    let server = TestServer::start();
    let len = 100 * KIB;
    let good = content(720, len);
    server.route(
        "/b.bin",
        Route::new(corrupted(&good)).then(Route::new(good.clone())),
    );
    let mut v = volley();
    let dir = out_dir(&v.sandbox);
    let r = run(v.args(base_args(&dir)).args([
        "--retries",
        "0",
        "--checksum",
        &format!("sha-256={}", sha256(&good)),
        &server.url("/b.bin"),
    ]));
    r.expect_code(0);
    assert_file_eq(dir.join("b.bin"), &good);
    assert_retried_once_from_scratch(&server, "/b.bin", len);
}

#[test]
fn stdout_output_is_verified() {
    let len = 300 * KIB + 1;
    let body = content(730, len);
    let hex = sha256(&body);

    // Right, with a reset in the middle: the resumed bytes are hashed once.
    let server = TestServer::start();
    server.route(
        "/o.bin",
        Route::new(body.clone())
            .etag("\"o\"")
            .fault(Fault::ResetAfter(len / 3)),
    );
    let mut v = volley();
    let r = run(v.args([
        "--retry-wait",
        "0",
        "-o",
        "-",
        "--checksum",
        &format!("sha-256={hex}"),
        &server.url("/o.bin"),
    ]));
    r.expect_code(0);
    assert_bytes_eq("stdout", &r.stdout, &body);
    assert_no_mismatch(&r.stderr, "sha-256", &hex);

    // Wrong: the bytes are out already, but the run fails and says why.
    let server = TestServer::start();
    server.file("/o.bin", body.clone());
    let wrong = sha256(&corrupted(&body));
    let mut v = volley();
    let r = run(v.args([
        "--retry-wait",
        "0",
        "-o",
        "-",
        "--checksum",
        &format!("sha-256={wrong}"),
        &server.url("/o.bin"),
    ]));
    r.expect_code(1);
    r.expect_stderr_contains(&format!("sha-256={wrong}"));
    r.expect_stderr_contains(&format!("sha-256={hex}"));
}

/// Start a split download (`-x 4 --min-split-size 1M`, throttled) of
/// `/k.bin` into `dir` with `args`, SIGKILL it once its state records more
/// than 1 MiB, serve the file fast from then on and reset the stats.
/// Returns the `done` ranges recorded.
fn kill_split_download(
    server: &TestServer,
    body: &[u8],
    args: &[String],
    fin: &Path,
) -> Vec<(u64, u64)> {
    let done_of = |s: &Value| -> Vec<(u64, u64)> {
        s["done"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| Some((r[0].as_u64()?, r[1].as_u64()?)))
                    .collect()
            })
            .unwrap_or_default()
    };
    server.route(
        "/k.bin",
        Route::new(body.to_vec())
            .etag("\"k\"")
            .throttle(16 * KIB, Duration::from_millis(25)),
    );
    let mut p = volley_process();
    let errlog = p.sandbox.root().join("stderr.txt");
    p.args(args)
        .arg(server.url("/k.bin"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errlog).unwrap());
    let mut child = p.spawn().expect("spawn volley");
    let ready = wait_until(Duration::from_secs(10), || {
        read_state(fin).is_some_and(|s| {
            let d = done_of(&s);
            d.len() >= 2 && d.iter().map(|(a, b)| b - a).sum::<u64>() > MIB as u64
        })
    });
    if !ready {
        abort_child(&mut child, &errlog, "no state with 2 ranges within 10 s");
    }
    if child.try_wait().unwrap().is_some() {
        abort_child(
            &mut child,
            &errlog,
            "volley ended before it could be killed",
        );
    }
    child.kill().expect("SIGKILL");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), None, "not killed by a signal: {status:?}");
    let done = done_of(&read_state(fin).expect("state after the kill"));
    let part = std::fs::read(part_path(fin)).expect(".part after the kill");
    for &(a, b) in &done {
        assert_bytes_eq(
            "recorded range",
            &part[a as usize..b as usize],
            &body[a as usize..b as usize],
        );
    }
    server.route("/k.bin", Route::new(body.to_vec()).etag("\"k\""));
    settle(server);
    server.reset_stats();
    done
}

#[test]
fn resumed_split_download_is_verified_including_the_ranges_on_disk() {
    let server = TestServer::start();
    let len = 8 * MIB;
    let body = content(740, len);
    let hex = sha256(&body);
    let keep = tempfile::tempdir().unwrap();
    let dir = keep.path().join("out");
    let fin = dir.join("k.bin");
    let mut args = split_args(&dir);
    args.extend(["--checksum".to_string(), format!("sha-256={hex}")]);
    let done = kill_split_download(&server, &body, &args, &fin);
    let on_disk: u64 = done.iter().map(|(a, b)| b - a).sum();

    let url = server.url("/k.bin");
    let mut v = volley();
    let r = run(v.args(&args).arg("--json").arg(&url));
    r.expect_code(0);
    assert_no_mismatch(&r.stderr, "sha-256", &hex);
    assert_file_eq(&fin, &body);
    assert_no_leftovers(&fin);
    let reqs = gets(&server, "/k.bin");
    let sent = server.body_bytes_sent("/k.bin");
    assert!(
        sent < len as u64,
        "the rerun fetched {sent} bytes with {on_disk} of {len} on disk \
         (recorded {done:?}): started over?\n{}",
        describe(&reqs)
    );
    assert_done_checksum(
        &parse_json_lines(&r.stdout),
        &url,
        Some(&format!("sha-256={hex}")),
    );
}

#[test]
fn resumed_split_download_with_a_corrupted_range_starts_over() {
    let server = TestServer::start();
    let len = 8 * MIB;
    let body = content(741, len);
    let hex = sha256(&body);
    let keep = tempfile::tempdir().unwrap();
    let dir = keep.path().join("out");
    let fin = dir.join("k.bin");
    let mut args = split_args(&dir);
    args.extend(["--checksum".to_string(), format!("sha-256={hex}")]);
    let done = kill_split_download(&server, &body, &args, &fin);

    // Flip a byte in the middle of the last recorded range (not the first
    // piece: out-of-order bytes are read back too).
    let (a, b) = *done.last().unwrap();
    let at = ((a + b) / 2) as usize;
    let mut part = std::fs::read(part_path(&fin)).unwrap();
    part[at] ^= 0xff;
    std::fs::write(part_path(&fin), &part).unwrap();

    let r = run(volley().args(&args).arg(server.url("/k.bin")));
    r.expect_code(0);
    assert_file_eq(&fin, &body);
    assert_no_leftovers(&fin);
    let reqs = gets(&server, "/k.bin");
    assert!(
        reqs.iter().any(|r| r.range().is_none_or(|(s, _)| s == 0)),
        "the rerun never started over:\n{}",
        describe(&reqs)
    );
    let sent = server.body_bytes_sent("/k.bin");
    assert!(
        sent >= len as u64,
        "a restart fetches the whole file; sent {sent}:\n{}",
        describe(&reqs)
    );
}
