//! Metalink input (issue 5): `--metalink FILE` and `-i FILE.meta4` /
//! `.metalink` become downloads with their names (sanitised, inside `-d`),
//! sizes, mirrors in priority order and hashes.

mod common;

use common::*;
use sha2::Digest;

fn sha256(data: &[u8]) -> String {
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn meta4(name: &str, size: usize, hash: &str, urls: &[(u32, String)]) -> String {
    let urls: String = urls
        .iter()
        .map(|(p, u)| format!("    <url priority=\"{p}\">{u}</url>\n"))
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <metalink xmlns=\"urn:ietf:params:xml:ns:metalink\">\n\
         \x20 <file name=\"{name}\">\n\
         \x20   <size>{size}</size>\n\
         \x20   <hash type=\"sha-256\">{hash}</hash>\n\
         {urls}\
         \x20 </file>\n\
         </metalink>\n"
    )
}

/// Two mirrors by priority: the first (priority 1) is missing, the file comes
/// from the second, lands under its Metalink name (with its directory) and is
/// verified against the Metalink hash.
#[test]
fn metalink_mirrors_by_priority_with_hash_and_directory() {
    let server = TestServer::start();
    let body = content(601, 300_000);
    server.route("/b/file.bin", Route::new(body.clone()));
    let v = volley();
    let dir = v.sandbox.root().join("out");
    let ml = v.sandbox.root().join("release.meta4");
    // Listed out of order: priority decides.
    let doc = meta4(
        "pkg/file.bin",
        body.len(),
        &sha256(&body),
        &[
            (2, server.url("/b/file.bin")),
            (1, server.url("/a/missing.bin")),
        ],
    );
    std::fs::write(&ml, doc).unwrap();
    let mut v = v;
    let r = run(v.args([
        "--retries",
        "0",
        "--json",
        "-d",
        &path_arg(&dir),
        "-i",
        &path_arg(&ml),
    ]));
    r.expect_code(0);
    assert_file_eq(dir.join("pkg/file.bin"), &body);
    assert_eq!(
        server.hits("/a/missing.bin"),
        1,
        "priority 1 is asked first"
    );
    let done: Vec<_> = parse_json_lines(&r.stdout)
        .into_iter()
        .filter(|e| e["event"] == "done")
        .collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["checksum"], format!("sha-256={}", sha256(&body)));
}

/// `--metalink FILE` reads the same format; a hash that does not match fails
/// the download (exit 1, no final file).
#[test]
fn metalink_flag_and_hash_mismatch() {
    let server = TestServer::start();
    let body = content(602, 50_000);
    server.route("/f.bin", Route::new(body.clone()));
    let mut v = volley();
    let dir = v.sandbox.root().join("out");
    let ml = v.sandbox.root().join("list.xml");
    std::fs::write(
        &ml,
        meta4(
            "f.bin",
            body.len(),
            &sha256(b"other"),
            &[(1, server.url("/f.bin"))],
        ),
    )
    .unwrap();
    let r = run(v.args([
        "--retry-wait",
        "0",
        "-d",
        &path_arg(&dir),
        "--metalink",
        &path_arg(&ml),
    ]));
    r.expect_code(1);
    assert!(r.stderr.contains("checksum mismatch"), "{}", r.stderr);
    assert!(!dir.join("f.bin").exists());
}

/// A server whose file has another size than the Metalink says is a bad
/// mirror: the next one is used.
#[test]
fn metalink_size_disagreement_moves_to_the_next_mirror() {
    let server = TestServer::start();
    let body = content(603, 40_000);
    server.route("/short.bin", Route::new(body[..1000].to_vec()));
    server.route("/good.bin", Route::new(body.clone()));
    let mut v = volley();
    let dir = v.sandbox.root().join("out");
    let ml = v.sandbox.root().join("s.metalink");
    std::fs::write(
        &ml,
        meta4(
            "s.bin",
            body.len(),
            &sha256(&body),
            &[(1, server.url("/short.bin")), (2, server.url("/good.bin"))],
        ),
    )
    .unwrap();
    let r = run(v.args([
        "--retries",
        "0",
        "-d",
        &path_arg(&dir),
        "-i",
        &path_arg(&ml),
    ]));
    r.expect_code(0);
    assert_file_eq(dir.join("s.bin"), &body);
}

/// Bad Metalink files stop the run before any request (exit 2), naming the
/// file and line: malformed XML, a name that would leave the output directory.
#[test]
fn bad_metalink_files_are_usage_errors() {
    let server = TestServer::start();
    server.route("/x.bin", Route::new(b"x".to_vec()));
    for (doc, what) in [
        (
            meta4(
                "../escape.bin",
                1,
                &sha256(b"x"),
                &[(1, server.url("/x.bin"))],
            ),
            "unsafe",
        ),
        (
            "<metalink><file name='a'>".to_string(),
            "not a valid Metalink",
        ),
        (
            meta4("ftp-only.bin", 1, &sha256(b"x"), &[(1, "ftp://h/x".into())]),
            "no http",
        ),
    ] {
        let mut v = volley();
        let dir = v.sandbox.root().join("out");
        let ml = v.sandbox.root().join("bad.meta4");
        std::fs::write(&ml, &doc).unwrap();
        let r = run(v.args(["-d", &path_arg(&dir), "-i", &path_arg(&ml)]));
        r.expect_code(2);
        assert!(r.stderr.contains("bad.meta4:"), "{}", r.stderr);
        assert!(r.stderr.contains(what), "{what}: {}", r.stderr);
        assert!(!dir.exists());
    }
    assert_eq!(server.total_hits(), 0);
}
