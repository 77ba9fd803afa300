//! Sharding (issue 7): `--shard K/N` and `--shard auto` split one input over N
//! independent processes with no overlap and no gap, by FNV-1a-64 of the URL.
//!
//! The split itself is checked through the library on a large generated list
//! (10,000 URLs, 7 shards); the hash is pinned with literal values so that any
//! change of it fails; the scheduler variables, the config keys and the usage
//! errors are checked end to end with the binary against the test server.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::*;
use reqwest::Url;
use serde_json::Value;
use volley::input::shard::{fnv1a64, shard_of, Shard};
use volley::input::{parse_list, DownloadSpec};

/// Every variable `--shard auto` reads.
const SCHEDULER_VARS: [&str; 4] = [
    "JOB_COMPLETION_INDEX",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_COUNT",
];

/// Parse a list through the real list parser.
fn specs_of(list: &str) -> Vec<DownloadSpec> {
    let (mut specs, mut errors) = (Vec::new(), Vec::new());
    parse_list("gen", list.as_bytes(), &mut specs, &mut errors).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    specs
}

/// 10,000 distinct URLs of varied shape (hosts, ports, paths, queries).
fn generated_list() -> Vec<String> {
    (0..10_000)
        .map(|i| match i % 4 {
            0 => format!("https://cdn{}.example.org/data/part-{i:05}.bin", i % 13),
            1 => format!("http://127.0.0.1:{}/f/{i}", 8000 + i % 97),
            2 => format!("https://example.com/download?id={i}&fmt=csv"),
            _ => format!("https://mirror.example.net/pub/{}/{i}.tar.gz", i % 31),
        })
        .collect()
}

#[test]
fn seven_shards_of_ten_thousand_urls_are_disjoint_and_cover_the_list() {
    let urls = generated_list();
    let specs = specs_of(&(urls.join("\n") + "\n"));
    assert_eq!(specs.len(), 10_000);
    let n = 7;
    let mut owner: BTreeMap<String, u64> = BTreeMap::new();
    for k in 0..n {
        let shard = Shard::new(k, n).unwrap();
        let kept: Vec<String> = shard
            .select(specs.clone())
            .iter()
            .map(|s| s.url.to_string())
            .collect();
        // Roughly even: each shard within 10% of 10,000 / 7.
        assert!(
            (1286..=1572).contains(&kept.len()),
            "shard {k} has {} URLs",
            kept.len()
        );
        for url in kept {
            if let Some(other) = owner.insert(url.clone(), k) {
                panic!("{url} is in shards {other} and {k}");
            }
        }
    }
    let all: BTreeSet<String> = urls.iter().cloned().collect();
    let covered: BTreeSet<String> = owner.keys().cloned().collect();
    assert_eq!(covered, all, "the union of the shards is not the list");
    // Input order is kept within a shard.
    let shard = Shard::new(3, n).unwrap();
    let kept: Vec<String> = shard
        .select(specs.clone())
        .iter()
        .map(|s| s.url.to_string())
        .collect();
    let expected: Vec<String> = urls.iter().filter(|u| owner[*u] == 3).cloned().collect();
    assert_eq!(kept, expected);
}

#[test]
fn a_duplicate_url_lands_in_the_same_shard() {
    let list = "https://example.org/a.iso\nhttps://example.org/b.iso\n\
                https://example.org/a.iso\n  out=copy.iso\nHTTPS://EXAMPLE.org/a.iso\n";
    let specs = specs_of(list);
    let n = 5;
    let shards: Vec<u64> = (0..n)
        .filter(|&k| {
            Shard::new(k, n)
                .unwrap()
                .select(specs.clone())
                .iter()
                .any(|s| s.url.path() == "/a.iso")
        })
        .collect();
    assert_eq!(shards.len(), 1, "a.iso is in shards {shards:?}");
    let k = shards[0];
    let kept = Shard::new(k, n).unwrap().select(specs);
    assert_eq!(
        kept.iter().filter(|s| s.url.path() == "/a.iso").count(),
        3,
        "every copy of a.iso (the upper-case spelling too) is in shard {k}"
    );
}

/// Pinned values: the same shard across runs, versions and platforms. If one
/// of these fails, the hash changed and every existing split moves: don't.
#[test]
fn fixed_vectors_pin_the_hash_and_the_shards() {
    // (as given, as serialised by the url crate, FNV-1a-64, shard of 7, shard of 1000)
    let vectors: [(&str, &str, u64, u64, u64); 6] = [
        (
            "https://example.org/releases/tool-1.2.tar.gz",
            "https://example.org/releases/tool-1.2.tar.gz",
            0xf971_d283_aa6f_b3f8,
            0,
            216,
        ),
        (
            "http://example.org/download?id=42",
            "http://example.org/download?id=42",
            0x8938_5580_19bc_25d5,
            4,
            669,
        ),
        (
            "HTTPS://Mirror.Example.NET:443/pub/ISO/debian-12.iso",
            "https://mirror.example.net/pub/ISO/debian-12.iso",
            0x6127_b788_90a6_0999,
            0,
            177,
        ),
        (
            "http://127.0.0.1:8080/a b",
            "http://127.0.0.1:8080/a%20b",
            0xa61e_2a05_78f8_7217,
            3,
            183,
        ),
        (
            "https://example.org",
            "https://example.org/",
            0x03e0_e6ad_14aa_088d,
            3,
            69,
        ),
        (
            "https://bücher.example/ä?q=ö",
            "https://xn--bcher-kva.example/%C3%A4?q=%C3%B6",
            0xc619_e170_bcba_7eb6,
            0,
            222,
        ),
    ];
    let mut failures = Vec::new();
    for (given, serialised, hash, of7, of1000) in vectors {
        let url = Url::parse(given).unwrap();
        let got = (
            url.as_str().to_string(),
            fnv1a64(url.as_str().as_bytes()),
            shard_of(&url, 7),
            shard_of(&url, 1000),
        );
        if got != (serialised.to_string(), hash, of7, of1000) {
            failures.push(format!(
                "{given}: got ({:?}, {:#018x}, {}, {}), pinned ({serialised:?}, {hash:#018x}, {of7}, {of1000})",
                got.0, got.1, got.2, got.3
            ));
        }
        assert!(Shard::new(of7, 7).unwrap().contains(&url));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// End to end
// ---------------------------------------------------------------------------

/// A server with `count` small files and a list of their URLs in the sandbox.
struct Batch {
    server: TestServer,
    urls: Vec<String>,
    bodies: BTreeMap<String, Vec<u8>>,
}

impl Batch {
    fn new(count: usize) -> Batch {
        let server = TestServer::start();
        let mut urls = Vec::new();
        let mut bodies = BTreeMap::new();
        for i in 0..count {
            let path = format!("/f/{i}.bin");
            let body = content(i as u64 + 100, 1000 + i * 37);
            server.file(&path, body.clone());
            let url = server.url(&path);
            bodies.insert(url.clone(), body);
            urls.push(url);
        }
        Batch {
            server,
            urls,
            bodies,
        }
    }

    /// The URLs of shard `k` of `n`, by the library.
    fn shard(&self, k: u64, n: u64) -> BTreeSet<String> {
        let shard = Shard::new(k, n).unwrap();
        self.urls
            .iter()
            .filter(|u| shard.contains(&Url::parse(u).unwrap()))
            .cloned()
            .collect()
    }

    fn write_list(&self, dir: &Path) -> PathBuf {
        let path = dir.join("urls.txt");
        write_list(&path, &self.urls);
        path
    }
}

/// `volley` with none of the scheduler's variables from the test runner, and
/// `vars` set.
fn sharded(vars: &[(&str, &str)]) -> Volley {
    let mut v = volley();
    for var in SCHEDULER_VARS {
        v.env_remove(var);
    }
    for (k, val) in vars {
        v.env(k, val);
    }
    v
}

/// URLs of the JSON events of one kind.
fn urls_of(stdout: &[u8], kind: &str) -> BTreeSet<String> {
    parse_json_lines(stdout)
        .iter()
        .filter(|e| e["event"] == kind)
        .map(|e| e["url"].as_str().unwrap().to_string())
        .collect()
}

/// Run every shard (`vars_for(k)` gives shard k's variables and arguments)
/// into one directory and check: each run downloads exactly its shard's files,
/// the runs together download every file once, byte for byte.
fn run_all_shards(
    batch: &Batch,
    n: u64,
    vars_for: impl Fn(u64) -> (Vec<(String, String)>, Vec<String>),
) {
    let out = tempfile::tempdir().unwrap();
    let mut covered = BTreeSet::new();
    for k in 0..n {
        let (vars, args) = vars_for(k);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let mut v = sharded(&vars);
        let list = batch.write_list(v.sandbox.root());
        let r = run(v
            .args(["--json", "--shard", "auto", "-i", &path_arg(&list)])
            .args(["-d", &path_arg(out.path())])
            .args(&args));
        r.expect_code(0);
        let done = urls_of(&r.stdout, "done");
        assert_eq!(done, batch.shard(k, n), "shard {k} of {n}: {}", r.stderr);
        covered.extend(done);
    }
    let all: BTreeSet<String> = batch.urls.iter().cloned().collect();
    assert_eq!(covered, all);
    for (url, body) in &batch.bodies {
        let path = Url::parse(url).unwrap().path().to_string();
        assert_eq!(batch.server.hits_with_method(&path, "GET"), 1, "{url}");
        let name = path.rsplit('/').next().unwrap();
        assert_file_eq(out.path().join(name), body);
    }
}

#[test]
fn auto_in_a_kubernetes_indexed_job() {
    let batch = Batch::new(24);
    run_all_shards(&batch, 3, |k| {
        (
            vec![("JOB_COMPLETION_INDEX".into(), k.to_string())],
            vec!["--shard-count".into(), "3".into()],
        )
    });
}

#[test]
fn auto_in_a_slurm_array() {
    // sbatch --array=1-4: task ids 1..=4 are shards 0..=3.
    let batch = Batch::new(24);
    run_all_shards(&batch, 4, |k| {
        (
            vec![
                ("SLURM_ARRAY_TASK_ID".into(), (k + 1).to_string()),
                ("SLURM_ARRAY_TASK_MIN".into(), "1".into()),
                ("SLURM_ARRAY_TASK_COUNT".into(), "4".into()),
            ],
            vec![],
        )
    });
}

#[test]
fn auto_in_a_slurm_array_with_shard_count_and_dry_run() {
    // --shard-count overrides SLURM_ARRAY_TASK_COUNT; a dry run plans only the shard.
    let batch = Batch::new(20);
    for k in 0..2u64 {
        let id = k.to_string();
        let mut v = sharded(&[
            ("SLURM_ARRAY_TASK_ID", &id),
            ("SLURM_ARRAY_TASK_COUNT", "9"),
        ]);
        let r = run(v
            .args([
                "--dry-run",
                "--json",
                "--shard",
                "auto",
                "--shard-count",
                "2",
            ])
            .args(&batch.urls));
        r.expect_code(0);
        assert_eq!(
            urls_of(&r.stdout, "plan"),
            batch.shard(k, 2),
            "{}",
            r.stderr
        );
    }
    for url in &batch.urls {
        let path = Url::parse(url).unwrap().path().to_string();
        assert_eq!(batch.server.hits_with_method(&path, "HEAD"), 1, "{url}");
        assert_eq!(batch.server.hits_with_method(&path, "GET"), 0, "{url}");
    }
}

#[test]
fn fixed_shard_and_the_config_keys() {
    let batch = Batch::new(12);
    // --shard K/N on the command line.
    let r = run(sharded(&[])
        .args(["--dry-run", "--json", "--shard", "1/3"])
        .args(&batch.urls));
    r.expect_code(0);
    assert_eq!(urls_of(&r.stdout, "plan"), batch.shard(1, 3));
    // shard and shard_count in the config file, the index from Kubernetes.
    let mut v = sharded(&[("JOB_COMPLETION_INDEX", "2")]);
    let conf = v.sandbox.root().join("volley.toml");
    std::fs::write(&conf, "shard = \"auto\"\nshard_count = 3\n").unwrap();
    let r = run(v
        .args(["--dry-run", "--json", "--config", &path_arg(&conf)])
        .args(&batch.urls));
    r.expect_code(0);
    assert_eq!(urls_of(&r.stdout, "plan"), batch.shard(2, 3));
    // A flag overrides the key.
    let mut v = sharded(&[]);
    std::fs::write(&conf, "shard = \"0/3\"\n").unwrap();
    let r = run(v
        .args(["--dry-run", "--json", "--config", &path_arg(&conf)])
        .args(["--shard", "2/3"])
        .args(&batch.urls));
    r.expect_code(0);
    assert_eq!(urls_of(&r.stdout, "plan"), batch.shard(2, 3));
}

#[test]
fn duplicates_stay_together_and_an_empty_shard_succeeds() {
    let batch = Batch::new(1);
    let url = &batch.urls[0];
    let n = 4;
    let owner = (0..n).find(|&k| batch.shard(k, n).contains(url)).unwrap();
    let other = (owner + 1) % n;
    let twice = [url.as_str(), url.as_str()];
    let shard = format!("{owner}/{n}");
    let mut v = sharded(&[]);
    let dir = v.sandbox.root().join("out");
    let r = run(v
        .args(["--json", "--shard", &shard, "-d", &path_arg(&dir)])
        .args(twice));
    r.expect_code(0);
    assert_eq!(urls_of(&r.stdout, "done").len(), 1, "{}", r.stderr);
    assert_eq!(urls_of(&r.stdout, "duplicate").len(), 1, "{}", r.stderr);
    // The other shards have nothing to do: exit 0, no request, no directory.
    let shard = format!("{other}/{n}");
    let mut v = sharded(&[]);
    let dir = v.sandbox.root().join("out");
    let r = run(v
        .args(["--json", "--shard", &shard, "-d", &path_arg(&dir)])
        .args(twice));
    r.expect_code(0);
    let evs = parse_json_lines(&r.stdout);
    let summary: Vec<&Value> = evs.iter().filter(|e| e["event"] == "summary").collect();
    assert_eq!(summary.len(), 1, "{evs:?}");
    assert_eq!(summary[0]["succeeded"], 0);
    assert_eq!(summary[0]["failed"], 0);
    assert_eq!(batch.server.total_hits(), 1);
}

#[test]
fn a_rerun_of_a_shard_downloads_nothing_again() {
    let batch = Batch::new(10);
    let out = tempfile::tempdir().unwrap();
    let shard = "0/2";
    for round in 0..2 {
        let r = run(sharded(&[])
            .args(["--json", "--shard", shard, "-d", &path_arg(out.path())])
            .args(&batch.urls));
        r.expect_code(0);
        let (done, skipped) = (urls_of(&r.stdout, "done"), urls_of(&r.stdout, "skipped"));
        if round == 0 {
            assert_eq!(done, batch.shard(0, 2));
        } else {
            assert!(done.is_empty(), "{done:?}");
            assert_eq!(skipped, batch.shard(0, 2));
        }
    }
    let gets: usize = batch
        .urls
        .iter()
        .map(|u| {
            let path = Url::parse(u).unwrap().path().to_string();
            batch.server.hits_with_method(&path, "GET")
        })
        .sum();
    assert_eq!(gets, batch.shard(0, 2).len());
}

/// A usage error: what it is, the variables, the arguments, and what the
/// message must name.
type Case = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    Vec<&'static str>,
    &'static str,
);

#[test]
fn shard_usage_errors_exit_2_before_any_download() {
    let batch = Batch::new(3);
    let cases: Vec<Case> = vec![
        ("K not below N", vec![], vec!["--shard", "3/3"], "--shard"),
        ("N = 0", vec![], vec!["--shard", "0/0"], "--shard"),
        ("malformed", vec![], vec!["--shard", "half"], "--shard"),
        ("negative", vec![], vec!["--shard=-1/3"], "--shard"),
        (
            "auto outside a scheduler",
            vec![],
            vec!["--shard", "auto", "--shard-count", "3"],
            "JOB_COMPLETION_INDEX",
        ),
        (
            "Kubernetes without a count",
            vec![("JOB_COMPLETION_INDEX", "1")],
            vec!["--shard", "auto"],
            "--shard-count",
        ),
        (
            "Kubernetes index not a number",
            vec![("JOB_COMPLETION_INDEX", "one")],
            vec!["--shard", "auto", "--shard-count", "3"],
            "JOB_COMPLETION_INDEX='one'",
        ),
        (
            "Kubernetes index too large",
            vec![("JOB_COMPLETION_INDEX", "3")],
            vec!["--shard", "auto", "--shard-count", "3"],
            "JOB_COMPLETION_INDEX=3",
        ),
        (
            "zero count",
            vec![("JOB_COMPLETION_INDEX", "0")],
            vec!["--shard", "auto", "--shard-count", "0"],
            "--shard-count",
        ),
        (
            "Slurm without a count",
            vec![("SLURM_ARRAY_TASK_ID", "1")],
            vec!["--shard", "auto"],
            "--shard-count",
        ),
        (
            "Slurm id past the count",
            vec![
                ("SLURM_ARRAY_TASK_ID", "4"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ],
            vec!["--shard", "auto"],
            "SLURM_ARRAY_TASK_COUNT",
        ),
        (
            "Slurm id below the minimum",
            vec![
                ("SLURM_ARRAY_TASK_ID", "0"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
            ],
            vec!["--shard", "auto"],
            "SLURM_ARRAY_TASK_MIN=1",
        ),
        (
            "Slurm count empty",
            vec![("SLURM_ARRAY_TASK_ID", "0"), ("SLURM_ARRAY_TASK_COUNT", "")],
            vec!["--shard", "auto"],
            "--shard-count",
        ),
        (
            "count that disagrees",
            vec![],
            vec!["--shard", "1/3", "--shard-count", "4"],
            "--shard-count",
        ),
        (
            "count without a shard",
            vec![],
            vec!["--shard-count", "4"],
            "--shard-count",
        ),
    ];
    for (what, vars, args, named) in cases {
        let mut v = sharded(&vars);
        let dir = v.sandbox.root().join("out");
        let r = run(v
            .args(&args)
            .args(["-d", &path_arg(&dir)])
            .args(&batch.urls));
        if r.code != Some(2) || !r.stderr.contains(named) {
            panic!(
                "{what}: expected exit 2 naming {named:?}, got {:?}:\n{}",
                r.code, r.stderr
            );
        }
        assert!(!dir.exists(), "{what}: created {dir:?}");
    }
    // A bad key in the config file names the key and the line.
    let mut v = sharded(&[]);
    let conf = v.sandbox.root().join("volley.toml");
    std::fs::write(&conf, "jobs = 2\nshard = \"4/4\"\n").unwrap();
    let r = run(v.args(["--config", &path_arg(&conf)]).args(&batch.urls));
    r.expect_code(2)
        .expect_stderr_contains("line 2")
        .expect_stderr_contains("shard");
    assert_eq!(batch.server.total_hits(), 0, "a usage error sent a request");
}
