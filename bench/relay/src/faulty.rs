//! An HTTP/1.1 file server that fails on purpose, for the benchmark's `chaos`
//! scenario: how well a download tool recovers, and how long it takes.
//!
//!     faulty --listen 127.0.0.1:18093 --root /dev/shm/dmbench/www [--fraction 0.15] [--seed 1]
//!
//! Serves the files under --root (GET and HEAD; `Range: bytes=a-b`, `a-` and
//! `-n`, honoured unless an `If-Range` does not match; Content-Length, ETag,
//! Last-Modified; keep-alive). A --fraction of the requests gets a fault
//! instead, one of (chosen at random, equally likely):
//!
//!   reset  the head with the full Content-Length, part of the body, then a
//!          TCP reset (SO_LINGER 0 and close)
//!   503    `503 Service Unavailable`, no Retry-After (the connection stays open)
//!   stall  the head, part of the body, --stall-s seconds of silence, the rest
//!   short  the head with the full Content-Length, part of the body, then close
//!
//! (A HEAD request, or an empty body, has no body to break: its body faults
//! become 503s.) The draw is a hash of --seed, the path and how many times that
//! path was asked for before, so a tool that asks for the same files in the
//! same way meets the same faults on every run, whatever the order its
//! connections go in. At SIGINT or SIGTERM it prints the count of each fault
//! (and writes it to --stats FILE) and exits.

mod common;

use common::{die, local_path, parse_range, RangeAnswer};
use std::collections::HashMap;
use std::io::{self, SeekFrom};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const USAGE: &str = "\
faulty --listen ADDR --root DIR [--fraction F] [--seed N] [--stall-s S] [--faults LIST] [--stats FILE]

  --listen ADDR    where to accept, e.g. 127.0.0.1:18093 (port 0: any free port, printed)
  --root DIR       the directory to serve
  --fraction F     share of requests that get a fault: 0.15 (default) or 15%
  --seed N         the draw's seed (default 1): same seed, same faults for the same requests
  --stall-s S      how long a stall lasts, in seconds (default 6)
  --faults LIST    which faults to draw from (default reset,503,stall,short)
  --stats FILE     also write the counts there at exit

Prints one line when listening; at SIGINT or SIGTERM prints the count of each fault and exits.
";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Fault {
    Reset,
    Unavailable,
    Stall,
    Short,
}

const FAULTS: [(Fault, &str); 4] = [
    (Fault::Reset, "reset"),
    (Fault::Unavailable, "503"),
    (Fault::Stall, "stall"),
    (Fault::Short, "short"),
];

struct Server {
    root: PathBuf,
    fraction: f64,
    seed: u64,
    stall: Duration,
    faults: Vec<Fault>,
    /// How many times each path was asked for.
    seen: Mutex<HashMap<String, u64>>,
    requests: AtomicU64,
    counts: [AtomicU64; 4],
}

impl Server {
    fn stats(&self) -> String {
        let c = |i: usize| self.counts[i].load(Relaxed);
        format!(
            "faulty: {} requests, {} faults: reset {}, 503 {}, stall {}, short {}",
            self.requests.load(Relaxed),
            (0..4).map(c).sum::<u64>(),
            c(0),
            c(1),
            c(2),
            c(3)
        )
    }

    /// The fault for this request, if any, and where in the body it strikes (0..1).
    fn draw(&self, path: &str) -> Option<(Fault, f64)> {
        let n = {
            let mut seen = self.seen.lock().unwrap();
            let n = seen.entry(path.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        let mut h = self.seed ^ 0x9e37_79b9_7f4a_7c15;
        for b in path.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        let mut rng = SplitMix(h ^ n.wrapping_mul(0xd1b5_4a32_d192_ed03));
        let hit = rng.unit() < self.fraction;
        let which = *self
            .faults
            .get((rng.next() % self.faults.len().max(1) as u64) as usize)?;
        let at = rng.unit();
        hit.then_some((which, at))
    }

    fn count(&self, f: Fault) {
        self.counts[f as usize].fetch_add(1, Relaxed);
    }
}

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn main() {
    let mut listen = None;
    let mut root = None;
    let mut fraction = 0.15;
    let mut seed = 1u64;
    let mut stall = 6.0f64;
    let mut faults: Vec<Fault> = FAULTS.iter().map(|f| f.0).collect();
    let mut stats_file = None;
    for (name, v) in common::args(USAGE, &[]) {
        let bad = || -> ! { die(USAGE, &format!("bad value for --{name}: {v:?}")) };
        match name.as_str() {
            "listen" => listen = Some(v.parse::<SocketAddr>().unwrap_or_else(|_| bad())),
            "root" => root = Some(PathBuf::from(&v)),
            "fraction" => {
                fraction = match v.strip_suffix('%') {
                    Some(p) => p.parse::<f64>().map(|p| p / 100.0),
                    None => v.parse::<f64>(),
                }
                .ok()
                .filter(|f| (0.0..=1.0).contains(f))
                .unwrap_or_else(|| bad())
            }
            "seed" => seed = v.parse().unwrap_or_else(|_| bad()),
            "stall-s" => {
                stall = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s >= 0.0)
                    .unwrap_or_else(|| bad())
            }
            "faults" => {
                faults = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        FAULTS
                            .iter()
                            .find(|f| f.1 == s)
                            .map(|f| f.0)
                            .unwrap_or_else(|| bad())
                    })
                    .collect()
            }
            "stats" => stats_file = Some(PathBuf::from(&v)),
            _ => die(USAGE, &format!("unknown option --{name}")),
        }
    }
    let listen = listen.unwrap_or_else(|| die(USAGE, "--listen is required"));
    let root = root.unwrap_or_else(|| die(USAGE, "--root is required"));
    let server = Arc::new(Server {
        root,
        fraction,
        seed,
        stall: Duration::from_secs_f64(stall),
        faults,
        seen: Mutex::new(HashMap::new()),
        requests: AtomicU64::new(0),
        counts: Default::default(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(listen).await.unwrap_or_else(|e| {
            eprintln!("faulty: cannot listen on {listen}: {e}");
            std::process::exit(1)
        });
        let names: Vec<&str> = FAULTS.iter().filter(|f| server.faults.contains(&f.0)).map(|f| f.1).collect();
        println!(
            "faulty: listening on {}, root {}, {}% of requests get a fault ({}), seed {}, stall {:?}",
            listener.local_addr().unwrap(),
            server.root.display(),
            server.fraction * 100.0,
            names.join(", "),
            server.seed,
            server.stall
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let s = server.clone();
        tokio::spawn(async move {
            loop {
                let c = common::accept(&listener, "faulty").await;
                tokio::spawn(connection(c, s.clone()));
            }
        });
        common::terminated().await;
        let line = server.stats();
        println!("{line}");
        let _ = std::io::stdout().flush();
        if let Some(f) = stats_file {
            if let Err(e) = std::fs::write(&f, format!("{line}\n")) {
                eprintln!("faulty: cannot write {}: {e}", f.display());
            }
        }
        std::process::exit(0);
    });
}

struct Request {
    head_only: bool,
    path: String,
    range: Option<String>,
    if_range: Option<String>,
    keep_alive: bool,
}

/// Parses one request head (without the blank line); None if it is not HTTP.
fn parse(head: &str) -> Option<(String, Request)> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target, version) = (first.next()?, first.next()?, first.next()?);
    let mut req = Request {
        head_only: method == "HEAD",
        path: target.split(['?', '#']).next().unwrap_or("/").to_string(),
        range: None,
        if_range: None,
        keep_alive: version == "HTTP/1.1",
    };
    for l in lines {
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "range" => req.range = Some(value.to_string()),
            "if-range" => req.if_range = Some(value.to_string()),
            "connection" => {
                let v = value.to_ascii_lowercase();
                if v.contains("close") {
                    req.keep_alive = false;
                } else if v.contains("keep-alive") {
                    req.keep_alive = true;
                }
            }
            _ => {}
        }
    }
    Some((method.to_string(), req))
}

async fn connection(mut c: TcpStream, server: Arc<Server>) {
    let _ = c.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        // One request head.
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            if buf.len() > 64 << 10 {
                return;
            }
            let mut chunk = [0u8; 4096];
            match c.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        server.requests.fetch_add(1, Relaxed);
        let Some((method, req)) = parse(&head) else {
            let _ = c
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            return;
        };
        match respond(&mut c, &server, &method, &req).await {
            Ok(true) if req.keep_alive => continue,
            _ => return,
        }
    }
}

fn simple(status: &str, body: &str, keep_alive: bool, head_only: bool) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nServer: faulty\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    )
    .into_bytes();
    if !head_only {
        r.extend_from_slice(body.as_bytes());
    }
    r
}

/// Answers one request; Ok(true) if the connection may carry another.
async fn respond(
    c: &mut TcpStream,
    server: &Server,
    method: &str,
    req: &Request,
) -> io::Result<bool> {
    if method != "GET" && method != "HEAD" {
        c.write_all(&simple(
            "405 Method Not Allowed",
            "GET or HEAD\n",
            req.keep_alive,
            false,
        ))
        .await?;
        return Ok(true);
    }
    let found = match local_path(&server.root, &req.path) {
        Some(f) => tokio::fs::metadata(&f)
            .await
            .ok()
            .filter(|m| m.is_file())
            .map(|m| (f, m)),
        None => None,
    };
    let Some((file, meta)) = found else {
        c.write_all(&simple(
            "404 Not Found",
            "not found\n",
            req.keep_alive,
            req.head_only,
        ))
        .await?;
        return Ok(true);
    };
    let size = meta.len();
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let etag = format!("\"{mtime:x}-{size:x}\"");
    let last_modified = http_date(mtime);
    let range = match (&req.range, &req.if_range) {
        (Some(_), Some(v)) if *v != etag && *v != last_modified => None,
        (Some(r), _) => Some(parse_range(r, size)),
        (None, _) => None,
    };
    let (status, start, len, content_range) = match range {
        None | Some(RangeAnswer::Ignore) => ("200 OK", 0, size, None),
        Some(RangeAnswer::Unsatisfiable) => {
            let r = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nServer: faulty\r\nContent-Range: bytes */{size}\r\nContent-Length: 0\r\nConnection: {}\r\n\r\n",
                if req.keep_alive { "keep-alive" } else { "close" }
            );
            c.write_all(r.as_bytes()).await?;
            return Ok(true);
        }
        Some(RangeAnswer::Part(a, b)) => (
            "206 Partial Content",
            a,
            b - a + 1,
            Some(format!("bytes {a}-{b}/{size}")),
        ),
    };
    let mut fault = server.draw(&req.path);
    if let Some((f, _)) = &mut fault {
        if (req.head_only || len == 0) && *f != Fault::Unavailable {
            *f = Fault::Unavailable;
        }
    }
    if let Some((Fault::Unavailable, _)) = fault {
        server.count(Fault::Unavailable);
        c.write_all(&simple(
            "503 Service Unavailable",
            "try again\n",
            req.keep_alive,
            req.head_only,
        ))
        .await?;
        return Ok(true);
    }
    let mut head = format!(
        "HTTP/1.1 {status}\r\nServer: faulty\r\nDate: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nAccept-Ranges: bytes\r\nETag: {etag}\r\nLast-Modified: {last_modified}\r\n",
        http_date(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
    );
    if let Some(cr) = content_range {
        head.push_str(&format!("Content-Range: {cr}\r\n"));
    }
    head.push_str(if req.keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    if req.head_only {
        c.write_all(head.as_bytes()).await?;
        return Ok(true);
    }
    // Where the fault strikes: after `cut` bytes of the body (always short of the end).
    let cut = fault.map(|(_, at)| ((len as f64 * at) as u64).min(len - 1));
    if let Some((f, _)) = fault {
        server.count(f);
    }
    let mut f = tokio::fs::File::open(&file).await?;
    f.seek(SeekFrom::Start(start)).await?;
    // What is ready to go out: the head, then pieces of the body.
    let mut out = head.into_bytes();
    let mut sent = 0u64;
    loop {
        if cut == Some(sent) {
            c.write_all(&out).await?;
            out.clear();
            match fault.unwrap().0 {
                Fault::Reset => {
                    let _ = c.set_zero_linger();
                    return Ok(false);
                }
                Fault::Short => {
                    let _ = c.shutdown().await;
                    return Ok(false);
                }
                _ => tokio::time::sleep(server.stall).await,
            }
        }
        if sent == len {
            break;
        }
        // Up to 256 KiB at a time, never across the cut.
        let mut want = (len - sent).min(256 << 10);
        if let Some(cut) = cut.filter(|&c| c > sent) {
            want = want.min(cut - sent);
        }
        let at = out.len();
        out.resize(at + want as usize, 0);
        f.read_exact(&mut out[at..]).await?;
        c.write_all(&out).await?;
        out.clear();
        sent += want;
    }
    if !out.is_empty() {
        c.write_all(&out).await?;
    }
    Ok(true)
}

/// IMF-fixdate (RFC 9110), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil from days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WD[(days.rem_euclid(7)) as usize],
        d,
        MON[(m - 1) as usize],
        y,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}
