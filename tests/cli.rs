//! The command line surface (issue 7): `-h` and `--help` grouped under six
//! headings and complete (defaults and config keys), README's copy of
//! `--help`, `--completions SHELL` and `--man`.
//!
//! README.md's "Options" section holds the exact `volley --help` output
//! between `<!-- help:start -->` and `<!-- help:end -->`; when the clap
//! definitions change, regenerate it with
//!
//! ```sh
//! UPDATE_README=1 cargo test --test cli
//! ```

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use clap::CommandFactory;
use common::*;
use volley::cli::{Cli, HEADINGS};

const README_START: &str = "<!-- help:start -->";
const README_END: &str = "<!-- help:end -->";
const REGENERATE: &str = "UPDATE_README=1 cargo test --test cli";

/// stdout of a successful `volley ARGS`.
#[track_caller]
fn stdout_of(args: &[&str]) -> String {
    let r = run(volley().args(args));
    r.expect_code(0);
    assert!(r.stderr.is_empty(), "stderr of {args:?}: {}", r.stderr);
    r.stdout_str()
}

/// The long names of every option the clap definition has (`help`, `version`
/// and the URL argument included, the URL as `URL`).
fn defined_options() -> BTreeSet<String> {
    Cli::command()
        .get_arguments()
        .map(|a| match a.get_long() {
            Some(long) => format!("--{long}"),
            None => a.get_id().to_string().to_uppercase().replace("URLS", "URL"),
        })
        .collect()
}

/// One option in a help text: its long name (`--jobs`, or `URL` for the
/// argument), the heading it is under and its help text (the lines after the
/// option's own line too, for `--help`).
#[derive(Debug)]
struct Entry {
    heading: String,
    line: String,
    text: String,
}

/// The options of a help text by long name. Headings are lines like `Input:`;
/// option lines start with `  -`, `      --` or `  [URL]`.
fn entries(help: &str) -> BTreeMap<String, Entry> {
    let mut out: BTreeMap<String, Entry> = BTreeMap::new();
    let mut heading = String::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        if let Some(h) = line.strip_suffix(':').filter(|h| {
            !h.starts_with(' ')
                && !h.is_empty()
                && h.chars().all(|c| c.is_alphanumeric() || c == ' ')
        }) {
            heading = h.to_string();
            current = None;
            continue;
        }
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let is_option = (indent == 2 && (trimmed.starts_with('-') || trimmed.starts_with("[URL]")))
            || (indent == 6 && trimmed.starts_with("--"));
        if is_option && !heading.starts_with("Exit codes") {
            let name = trimmed
                .split([',', ' '])
                .map(str::trim)
                .find(|w| w.starts_with("--") || w.starts_with("[URL]"))
                .unwrap_or(trimmed)
                .replace("[URL]...", "URL");
            let old = out.insert(
                name.clone(),
                Entry {
                    heading: heading.clone(),
                    line: line.to_string(),
                    text: line.to_string(),
                },
            );
            assert!(old.is_none(), "{name} appears twice in the help");
            current = Some(name);
        } else if let Some(name) = &current {
            let e = out.get_mut(name).unwrap();
            e.text.push('\n');
            e.text.push_str(line);
        }
    }
    out
}

/// The keys of config.example.toml (every one is listed there, commented out;
/// src/config.rs's tests check that the file lists every key it accepts).
fn config_keys() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.contains(' '))
        .collect()
}

/// `[config: KEY]` values in a help text.
fn config_mentions(text: &str) -> Vec<String> {
    text.split("[config: ")
        .skip(1)
        .filter_map(|rest| rest.split(']').next())
        .map(str::to_string)
        .collect()
}

/// The value of `[default: VALUE]` in an option's help, if any.
fn default_of(entry: &Entry) -> Option<String> {
    let text = entry.text.split_whitespace().collect::<Vec<_>>().join(" ");
    let rest = text.split("[default: ").nth(1)?;
    Some(rest.split(']').next()?.to_string())
}

#[test]
fn every_option_is_under_one_of_the_six_headings() {
    let defined = defined_options();
    for flag in ["-h", "--help"] {
        let help = stdout_of(&[flag]);
        let found = entries(&help);
        for (name, e) in &found {
            assert!(
                HEADINGS.contains(&e.heading.as_str()),
                "{flag}: {name} is under '{}', not one of {HEADINGS:?}:\n{}",
                e.heading,
                e.line
            );
        }
        let shown: BTreeSet<String> = found.keys().cloned().collect();
        assert_eq!(shown, defined, "{flag}: options shown vs defined");
        for gone in ["Options:", "Arguments:"] {
            assert!(
                !help.lines().any(|l| l == gone),
                "{flag} has a '{gone}' heading"
            );
        }
        // The headings appear once each, in the documented order.
        let order: Vec<&str> = help
            .lines()
            .filter_map(|l| l.strip_suffix(':'))
            .filter(|h| HEADINGS.contains(h))
            .collect();
        assert_eq!(order, HEADINGS, "{flag}: heading order");
    }
}

#[test]
fn short_help_is_one_line_per_option_and_long_help_is_longer() {
    let short = stdout_of(&["-h"]);
    let long = stdout_of(&["--help"]);
    assert_ne!(short, long);
    assert!(short.lines().count() * 2 < long.lines().count());
    // Under each heading every line is an option: nothing wraps.
    let mut heading = "";
    for line in short.lines() {
        if let Some(h) = line.strip_suffix(':') {
            heading = h;
            continue;
        }
        if HEADINGS.contains(&heading) && !line.is_empty() {
            let t = line.trim_start();
            assert!(
                t.starts_with('-') || t.starts_with("[URL]"),
                "-h wraps under {heading}: {line:?}\n{short}"
            );
        }
    }
    for (name, e) in entries(&short) {
        assert!(!e.text.contains("[config:"), "-h {name}: {}", e.text);
    }
    assert!(long.contains("[config: jobs]"), "{long}");
}

#[test]
fn long_help_names_each_config_key_on_its_option() {
    let keys = config_keys();
    assert!(
        keys.contains("jobs") && keys.contains("shard_count"),
        "{keys:?}"
    );
    let help = stdout_of(&["--help"]);
    let found = entries(&help);
    let mut mentioned = BTreeSet::new();
    for (name, e) in &found {
        let named = config_mentions(&e.text);
        assert!(named.len() <= 1, "{name} names several keys: {named:?}");
        for key in &named {
            assert!(
                keys.contains(key),
                "{name} says [config: {key}], which config.example.toml does not list"
            );
            mentioned.insert(key.clone());
        }
        // An option whose own name is a key names that key.
        let own = name.trim_start_matches("--").replace('-', "_");
        if keys.contains(&own) {
            assert_eq!(named, vec![own.clone()], "{name}:\n{}", e.text);
        }
    }
    // Every key is named by some option (`headers` by --header).
    for key in &keys {
        assert!(
            mentioned.contains(key),
            "no option says [config: {key}] in --help"
        );
    }
    assert_eq!(
        config_mentions(&found["--header"].text),
        vec!["headers".to_string()]
    );
    for name in ["--config", "--output", "--dry-run", "--save-failed"] {
        assert!(
            config_mentions(&found[name].text).is_empty(),
            "{name} has no config key but --help names one"
        );
    }
}

#[test]
fn long_help_defaults_are_the_real_defaults() {
    use volley::config;
    use volley::options::{ByteSize, FileAllocation, OnExists, ProgressMode};
    let help = stdout_of(&["--help"]);
    let found = entries(&help);
    let default =
        |name: &str| default_of(&found[name]).unwrap_or_else(|| panic!("{name} shows no default"));
    let numbers: [(&str, f64); 9] = [
        ("--jobs", config::DEFAULT_JOBS as f64),
        ("--max-per-host", config::DEFAULT_MAX_PER_HOST as f64),
        ("--connections", config::DEFAULT_CONNECTIONS as f64),
        ("--retries", f64::from(config::DEFAULT_RETRIES)),
        ("--retry-wait", config::DEFAULT_RETRY_WAIT),
        ("--max-retry-wait", config::DEFAULT_MAX_RETRY_WAIT),
        ("--connect-timeout", config::DEFAULT_CONNECT_TIMEOUT),
        ("--timeout", config::DEFAULT_TIMEOUT),
        ("--max-redirects", config::DEFAULT_MAX_REDIRECTS as f64),
    ];
    for (name, value) in numbers {
        let shown: f64 = default(name).parse().unwrap();
        assert_eq!(shown, value, "{name}");
    }
    let size: ByteSize = default("--min-split-size").parse().unwrap();
    assert_eq!(size.0, config::DEFAULT_MIN_SPLIT_SIZE);
    assert_eq!(
        default("--on-exists").parse::<OnExists>(),
        Ok(OnExists::default())
    );
    assert_eq!(
        default("--progress").parse::<ProgressMode>(),
        Ok(ProgressMode::default())
    );
    assert_eq!(
        default("--file-allocation").parse::<FileAllocation>(),
        Ok(FileAllocation::default())
    );
    assert_eq!(default("--dir"), ".");
    assert_eq!(default("--user-agent"), "volley/VERSION");
    // Switches are off unless given (--man and --print-config are actions,
    // not settings).
    let cmd = Cli::command();
    for arg in cmd.get_arguments() {
        if matches!(arg.get_action(), clap::ArgAction::SetTrue)
            && !matches!(arg.get_long(), Some("man" | "print-config"))
        {
            let name = format!("--{}", arg.get_long().unwrap());
            assert_eq!(default(&name), "off", "{name}");
        }
    }
}

#[test]
fn help_does_not_depend_on_the_terminal_width() {
    let plain = stdout_of(&["--help"]);
    for columns in ["40", "250"] {
        let r = run(volley().env("COLUMNS", columns).arg("--help"));
        r.expect_code(0);
        assert_eq!(r.stdout_str(), plain, "COLUMNS={columns}");
    }
    assert!(plain
        .lines()
        .all(|l| l.chars().count() <= volley::cli::HELP_WIDTH));
}

/// The help as README shows it: in a fenced block, trailing spaces dropped
/// (clap indents blank lines inside a long help; editors strip that).
fn readme_block(help: &str) -> String {
    let mut block = String::from("```text\n");
    for line in help.lines() {
        block.push_str(line.trim_end());
        block.push('\n');
    }
    block.push_str("```\n");
    block
}

#[test]
fn readme_options_block_is_the_help_output() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme
        .find(README_START)
        .unwrap_or_else(|| panic!("README.md has no {README_START} marker"))
        + README_START.len()
        + 1;
    let end = readme
        .find(README_END)
        .unwrap_or_else(|| panic!("README.md has no {README_END} marker"));
    assert!(
        start <= end,
        "README.md: {README_END} before {README_START}"
    );
    let expected = readme_block(&stdout_of(&["--help"]));
    let actual = &readme[start..end];
    if actual == expected {
        return;
    }
    if std::env::var_os("UPDATE_README").is_some() {
        let updated = format!("{}{expected}{}", &readme[..start], &readme[end..]);
        std::fs::write(&path, updated).unwrap();
        eprintln!("README.md: the --help block was regenerated");
        return;
    }
    panic!(
        "README.md's --help block (between {README_START} and {README_END}) differs from \
         `volley --help`; regenerate it with\n\n    {REGENERATE}\n\n{}",
        line_diff(actual, &expected)
    );
}

/// A minimal line diff (`-` README, `+` --help) with line numbers of the block.
fn line_diff(old: &str, new: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    // Longest common subsequence, then walk it.
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::from("--- README.md\n+++ volley --help\n"));
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str(&format!("-{:>4} {}\n", i + 1, a[i]));
            i += 1;
        } else {
            out.push_str(&format!("+{:>4} {}\n", j + 1, b[j]));
            j += 1;
        }
    }
    out
}

#[test]
fn line_diff_shows_changed_lines() {
    let d = line_diff("a\nb\nc\n", "a\nB\nc\nd\n");
    assert!(d.contains("-   2 b\n"), "{d}");
    assert!(d.contains("+   2 B\n"), "{d}");
    assert!(d.contains("+   4 d\n"), "{d}");
    assert!(!d.contains(" a\n"), "{d}");
}

const SHELLS: [&str; 5] = ["bash", "zsh", "fish", "powershell", "elvish"];

#[test]
fn completions_for_every_shell() {
    for shell in SHELLS {
        let script = stdout_of(&["--completions", shell]);
        assert!(script.len() > 500, "{shell}: {script}");
        assert!(script.contains("volley"), "{shell}: no 'volley'");
        // fish spells a long option `-l NAME`.
        let long = |name: &str| {
            script.contains(&format!("--{name}")) || script.contains(&format!("-l {name} "))
        };
        assert!(long("connections"), "{shell}: no --connections");
        assert!(long("shard"), "{shell}: no --shard");
    }
}

#[test]
fn bash_completion_is_valid_bash() {
    let script = stdout_of(&["--completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("volley.bash");
    std::fs::write(&file, &script).unwrap();
    let out = std::process::Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Sourcing it registers the completion function for volley.
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p volley", file.display()))
        .output()
        .expect("bash");
    let registered = String::from_utf8_lossy(&out.stdout);
    assert!(registered.contains("volley"), "{registered}");
}

#[test]
fn man_page_is_roff_with_sections_and_options() {
    let man = stdout_of(&["--man"]);
    // clap_mangen opens with groff's apostrophe setup (.ie/.el), then the title.
    let first = man
        .lines()
        .find(|l| !l.starts_with(".ie ") && !l.starts_with(".el "))
        .unwrap();
    assert!(first.starts_with(".TH volley 1"), "{first}");
    let sections: Vec<&str> = man.lines().filter(|l| l.starts_with(".SH ")).collect();
    for s in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH DESCRIPTION",
        ".SH INPUT",
        ".SH HTTP",
    ] {
        assert!(sections.contains(&s), "no {s} in {sections:?}");
    }
    assert!(man.contains(r"\-\-connections"), "no --connections");
    assert!(man.contains("[config: jobs]"), "no config key");
}

#[test]
fn generated_documents_do_nothing_else() {
    let server = TestServer::start();
    server.file("/a.bin", content(1, 1000));
    for args in [&["--man"][..], &["--completions", "bash"]] {
        // A broken config file is not read.
        let mut v = volley();
        let conf = v.sandbox.config_home().join("volley");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("config.toml"), "no_such_key = 1\n").unwrap();
        let before = list_tree(v.sandbox.root());
        let r = run(v.args(args));
        r.expect_code(0);
        assert!(!r.stdout.is_empty());
        assert_eq!(list_tree(v.sandbox.root()), before, "{args:?} wrote files");
        // With a URL it is a usage error, and nothing is fetched.
        let mut v = volley();
        let r = run(v.args(args).arg(server.url("/a.bin")));
        r.expect_code(2).expect_empty_stdout();
    }
    assert_eq!(server.total_hits(), 0);
    let r = run(volley().args(["--completions", "tcsh"]));
    r.expect_code(2).expect_stderr_contains("tcsh");
}
