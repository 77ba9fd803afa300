//! Command-line helpers shared by `relay` and `faulty` (no argument library:

#![allow(dead_code)] // each binary uses part of it
//! the dependency tree stays tokio, bytes and libc).

use std::process::exit;

/// The arguments after the program name, as `--name value` pairs (also
/// `--name=value`; the names in `flags` take no value and get "1");
/// `--help` prints `usage` and exits.
pub fn args(usage: &str, flags: &[&str]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "-h" || a == "--help" {
            print!("{usage}");
            exit(0);
        }
        let Some(name) = a.strip_prefix("--") else {
            die(usage, &format!("unexpected argument {a:?}"));
        };
        let (name, value) = match name.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None if flags.contains(&name) => (name.to_string(), "1".to_string()),
            None => match it.next() {
                Some(v) => (name.to_string(), v),
                None => die(usage, &format!("--{name} needs a value")),
            },
        };
        out.push((name, value));
    }
    out
}

pub fn die(usage: &str, msg: &str) -> ! {
    eprintln!("error: {msg}\n\n{usage}");
    exit(2)
}

/// A byte count or rate: `8M` is 8 MiB (K, M, G are powers of 1024; `B`,
/// `/s` and `iB` are allowed and ignored: `8MiB/s`), a plain number is bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim().trim_end_matches("/s");
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, mult) = match t.char_indices().last()? {
        (i, 'k' | 'K') => (&t[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&t[..i], 1 << 20),
        (i, 'g' | 'G') => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    let v: f64 = num.parse().ok()?;
    (v >= 0.0 && v.is_finite()).then(|| (v * mult as f64).round() as u64)
}

pub fn human(n: u64) -> String {
    let (v, unit) = match n {
        n if n >= 1 << 30 => (n as f64 / (1u64 << 30) as f64, "GiB"),
        n if n >= 1 << 20 => (n as f64 / (1u64 << 20) as f64, "MiB"),
        n if n >= 1 << 10 => (n as f64 / 1024.0, "KiB"),
        n => return format!("{n} B"),
    };
    let s = format!("{v:.2}");
    format!("{} {unit}", s.trim_end_matches('0').trim_end_matches('.'))
}
