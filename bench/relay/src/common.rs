//! Helpers shared by `relay`, `faulty` and `h2serve` (no argument library:
//! the dependency tree stays tokio, bytes and libc).

#![allow(dead_code)] // each binary uses part of it

use std::path::{Component, Path, PathBuf};
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

/// Waits for SIGINT or SIGTERM.
pub async fn terminated() {
    use std::future::Future;
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let (mut a, mut b) = (std::pin::pin!(term.recv()), std::pin::pin!(int.recv()));
    std::future::poll_fn(move |cx| {
        if a.as_mut().poll(cx).is_ready() || b.as_mut().poll(cx).is_ready() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

/// The next connection on `listener`; an error (EMFILE and the like) is
/// logged as `who`'s and waited out instead of spun on.
pub async fn accept(listener: &tokio::net::TcpListener, who: &str) -> tokio::net::TcpStream {
    loop {
        match listener.accept().await {
            Ok((c, _)) => return c,
            Err(e) => {
                eprintln!("{who}: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
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

pub enum RangeAnswer {
    Ignore,
    Unsatisfiable,
    Part(u64, u64),
}

/// One `bytes=` range against a body of `size` bytes (several ranges, or
/// anything else: ignored, the whole body is sent).
pub fn parse_range(v: &str, size: u64) -> RangeAnswer {
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Ignore;
    };
    if spec.contains(',') {
        return RangeAnswer::Ignore;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAnswer::Ignore;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return match b.parse::<u64>() {
            Ok(0) => RangeAnswer::Unsatisfiable,
            Ok(_) if size == 0 => RangeAnswer::Unsatisfiable,
            Ok(n) => RangeAnswer::Part(size.saturating_sub(n), size - 1),
            Err(_) => RangeAnswer::Ignore,
        };
    }
    let Ok(a) = a.parse::<u64>() else {
        return RangeAnswer::Ignore;
    };
    let b = if b.is_empty() {
        u64::MAX
    } else {
        match b.parse::<u64>() {
            Ok(b) if b >= a => b,
            _ => return RangeAnswer::Ignore,
        }
    };
    if a >= size {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Part(a, b.min(size - 1))
}

/// The file under `root` that a URL path names; None for `..` and the like.
pub fn local_path(root: &Path, path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(path)?;
    let rel = Path::new(decoded.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(root.join(rel))
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
