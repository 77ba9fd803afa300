//! A shaping TCP relay for the benchmark: what `tc qdisc ... netem delay` plus
//! a per-flow `tbf` would do, on a machine without netem.
//!
//!     relay --listen 127.0.0.1:18090 --upstream 127.0.0.1:18443 --rtt-ms 40 --rate 8M
//!
//! Every accepted connection gets one upstream TCP connection. In each
//! direction a reader task reads what arrived, stamps it with a release time
//! (arrival + one-way latency, half of --rtt-ms) and queues it; a writer task
//! writes each chunk when its time comes. So a round trip costs --rtt-ms while
//! throughput is not throttled by the delay: the queue holds up to --window
//! bytes in flight, like a TCP window (a direction carries at most WINDOW per
//! one-way latency). --rate caps each connection, in each direction, with a
//! token bucket of --burst bytes at the reader: what is not yet allowed stays
//! in the kernel's socket buffers and the sender's TCP backs off, as behind a
//! slow link. Bytes are never looked at: TLS passes through untouched.
//!
//! End of stream and errors travel through the same queue, behind the data:
//! EOF from one side becomes a FIN (shutdown of the write half) on the other
//! side once the data before it is delivered; a reset, or a write that fails,
//! resets both sides (SO_LINGER 0, then close), as TCP would.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::{die, human, parse_size};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::{sleep, sleep_until, Instant};

const USAGE: &str = "\
relay --listen ADDR --upstream ADDR [--rtt-ms MS] [--rate BYTES/S] [--burst BYTES] [--window BYTES] [--threads N]

  --listen ADDR      where to accept, e.g. 127.0.0.1:18090 (port 0: any free port, printed)
  --upstream ADDR    where to connect, one connection per accepted one, e.g. 127.0.0.1:18443
  --rtt-ms MS        round-trip latency to add (each direction delays by half); default 0
  --rate BYTES/S     cap per connection and direction, e.g. 8M (= 8 MiB/s; K, M, G are
                     powers of 1024); 0 or absent: unlimited
  --burst BYTES      the token bucket's size; default 64K
  --window BYTES     most bytes queued per direction (a TCP window); default 4M
  --threads N        runtime worker threads; default: the number of CPUs
  --no-handshake-rtt do not charge a new connection the TCP handshake's round trip (by
                     default the client's first bytes wait one extra --rtt-ms: with
                     netem the SYN and SYN-ACK would have taken it)
  --copy             with no latency and no rate, still queue through user space (by
                     default such a relay moves bytes with splice(2), without copying them)

Prints one line when listening, then runs until killed.
";

/// The most one read takes from a socket.
const CHUNK: usize = 256 << 10;
/// The most one write hands to the kernel (gathered from released chunks).
const MAX_IOV: usize = 64;

#[derive(Clone, Copy)]
struct Shape {
    /// No latency and no rate: bytes go socket -> pipe -> socket (splice).
    splice: bool,
    delay: Duration,
    /// Extra wait of the client's first bytes: the handshake's round trip.
    handshake: Duration,
    rate: u64,
    burst: u64,
    window: usize,
}

enum Item {
    Data(Bytes),
    Eof,
    Reset,
}

struct Queued {
    at: Instant,
    item: Item,
}

fn main() {
    let mut listen = None;
    let mut upstream = None;
    let mut rtt_ms = 0.0f64;
    let mut rate = 0u64;
    let mut burst = 64u64 << 10;
    let mut window = 4u64 << 20;
    let mut threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut copy = false;
    let mut handshake = true;
    for (name, v) in common::args(USAGE, &["copy", "no-handshake-rtt"]) {
        let bad = || -> ! { die(USAGE, &format!("bad value for --{name}: {v:?}")) };
        match name.as_str() {
            "listen" => listen = Some(v.parse::<SocketAddr>().unwrap_or_else(|_| bad())),
            "upstream" => upstream = Some(v.clone()),
            "rtt-ms" => {
                rtt_ms = v
                    .parse()
                    .ok()
                    .filter(|x: &f64| *x >= 0.0)
                    .unwrap_or_else(|| bad())
            }
            "rate" => rate = parse_size(&v).unwrap_or_else(|| bad()),
            "burst" => burst = parse_size(&v).filter(|&b| b > 0).unwrap_or_else(|| bad()),
            "window" => window = parse_size(&v).filter(|&b| b > 0).unwrap_or_else(|| bad()),
            "copy" => copy = true,
            "no-handshake-rtt" => handshake = false,
            "threads" => threads = v.parse().ok().filter(|&n| n > 0).unwrap_or_else(|| bad()),
            _ => die(USAGE, &format!("unknown option --{name}")),
        }
    }
    let listen = listen.unwrap_or_else(|| die(USAGE, "--listen is required"));
    let upstream = upstream.unwrap_or_else(|| die(USAGE, "--upstream is required"));
    let shape = Shape {
        splice: !copy && rtt_ms == 0.0 && rate == 0,
        delay: Duration::from_secs_f64(rtt_ms / 2000.0),
        handshake: if handshake {
            Duration::from_secs_f64(rtt_ms / 1000.0)
        } else {
            Duration::ZERO
        },
        rate,
        burst,
        window: window.min(u32::MAX as u64 / 2) as usize,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(serve(listen, upstream, shape));
}

async fn serve(listen: SocketAddr, upstream: String, shape: Shape) {
    let listener = TcpListener::bind(listen).await.unwrap_or_else(|e| {
        eprintln!("relay: cannot listen on {listen}: {e}");
        std::process::exit(1)
    });
    let up: SocketAddr = match tokio::net::lookup_host(&upstream)
        .await
        .ok()
        .and_then(|mut a| a.next())
    {
        Some(a) => a,
        None => {
            eprintln!("relay: cannot resolve upstream {upstream}");
            std::process::exit(1)
        }
    };
    let rate = if shape.splice {
        "unlimited (splice)".to_string()
    } else if shape.rate == 0 {
        "unlimited".to_string()
    } else {
        format!(
            "{}/s per connection and direction (burst {})",
            human(shape.rate),
            human(shape.burst)
        )
    };
    println!(
        "relay: listening on {} -> {up}, rtt {} ms ({:?} each way{}), rate {rate}, window {}",
        listener.local_addr().unwrap(),
        shape.delay.as_secs_f64() * 2000.0,
        shape.delay,
        if shape.handshake.is_zero() {
            ""
        } else {
            ", one more for a new connection's handshake"
        },
        human(shape.window as u64)
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    loop {
        let client = common::accept(&listener, "relay").await;
        tokio::spawn(connection(client, up, shape));
    }
}

async fn connection(client: TcpStream, up: SocketAddr, shape: Shape) {
    let accepted = Instant::now();
    let server = match TcpStream::connect(up).await {
        Ok(s) => s,
        Err(_) => {
            // The client sees what it would have seen from the server: a reset.
            let _ = client.set_zero_linger();
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client, server) = (Arc::new(client), Arc::new(server));
    // Each writer reports here when its direction is over: true after a FIN
    // was passed on, false after a reset or a failed write.
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    // The client's bytes go no earlier than a handshake's round trip after
    // the accept; the server's answers follow them.
    let d1 = direction(
        client.clone(),
        server.clone(),
        shape,
        Some(accepted + shape.handshake),
        done_tx.clone(),
    );
    let d2 = direction(server.clone(), client.clone(), shape, None, done_tx);
    let mut failed = false;
    for _ in 0..2 {
        if done_rx.recv().await != Some(true) {
            failed = true;
            break;
        }
    }
    if failed {
        // Reset both sides: SO_LINGER 0, then the last Arc's drop closes.
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
    for t in [d1.0, d1.1, d2.0, d2.1] {
        t.abort();
        let _ = t.await;
    }
}

type Task = tokio::task::JoinHandle<()>;

/// Spawns the reader (from `src`) and writer (to `dst`) tasks of one direction.
fn direction(
    src: Arc<TcpStream>,
    dst: Arc<TcpStream>,
    shape: Shape,
    not_before: Option<Instant>,
    done: mpsc::UnboundedSender<bool>,
) -> (Task, Task) {
    if shape.splice {
        let w = tokio::spawn(async move {
            let r = splice_pipe(src, &dst).await;
            let _ = done.send(r.is_ok());
        });
        return (tokio::spawn(async {}), w);
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let window = Arc::new(Semaphore::new(shape.window));
    let r = tokio::spawn(reader(
        src,
        tx,
        window.clone(),
        shape,
        not_before.unwrap_or_else(Instant::now),
    ));
    let w = tokio::spawn(async move {
        let r = writer(dst, rx, window).await;
        let _ = done.send(r.is_ok());
    });
    (r, w)
}

/// A token bucket: `rate` bytes per second, at most `burst` saved up.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// Waits until a useful amount may be read, and returns how much (at most `want`).
    async fn allowance(&mut self, want: usize) -> usize {
        // Wait for half a bucket at a time, not a byte at a time: fewer, larger
        // reads (at 8 MiB/s and 64 KiB, one read every 4 ms or so).
        let min = (want as f64).min(self.burst / 2.0);
        loop {
            let now = Instant::now();
            self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate)
                .min(self.burst);
            self.last = now;
            if self.tokens >= min {
                return (self.tokens as usize).min(want);
            }
            sleep(Duration::from_secs_f64((min - self.tokens) / self.rate)).await;
        }
    }
}

async fn reader(
    src: Arc<TcpStream>,
    tx: mpsc::UnboundedSender<Queued>,
    window: Arc<Semaphore>,
    shape: Shape,
    not_before: Instant,
) {
    // When what was read now may go out.
    let release = || Instant::now().max(not_before) + shape.delay;
    let mut bucket = (shape.rate > 0).then(|| Bucket {
        rate: shape.rate as f64,
        burst: shape.burst as f64,
        tokens: shape.burst as f64,
        last: Instant::now(),
    });
    let chunk = CHUNK.min(shape.window);
    let mut buf = BytesMut::with_capacity(chunk);
    loop {
        let mut want = chunk;
        if let Some(b) = bucket.as_mut() {
            want = b.allowance(want).await;
        }
        // Room in the window for this read; what is not read is given back below.
        window
            .acquire_many(want as u32)
            .await
            .expect("never closed")
            .forget();
        if buf.capacity() < want {
            // Reuses the allocation once the writer has dropped every chunk of it.
            buf.reserve(chunk.max(want));
        }
        let got = loop {
            if let Err(e) = src.readable().await {
                break Err(e);
            }
            let mut lim = (&mut buf).limit(want);
            match src.try_read_buf(&mut lim) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => break r,
            }
        };
        match got {
            Ok(0) => {
                window.add_permits(want);
                let _ = tx.send(Queued {
                    at: release(),
                    item: Item::Eof,
                });
                return;
            }
            Ok(n) => {
                window.add_permits(want - n);
                if let Some(b) = bucket.as_mut() {
                    b.tokens -= n as f64;
                }
                let data = buf.split_to(n).freeze();
                if tx
                    .send(Queued {
                        at: release(),
                        item: Item::Data(data),
                    })
                    .is_err()
                {
                    return; // the writer failed; the connection is being reset
                }
            }
            Err(_) => {
                window.add_permits(want);
                let _ = tx.send(Queued {
                    at: release(),
                    item: Item::Reset,
                });
                return;
            }
        }
    }
}

async fn writer(
    dst: Arc<TcpStream>,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    window: Arc<Semaphore>,
) -> io::Result<()> {
    let mut q: VecDeque<Queued> = VecDeque::new();
    // Bytes of the front chunk already written.
    let mut off = 0usize;
    loop {
        if q.is_empty() {
            match rx.recv().await {
                Some(x) => q.push_back(x),
                None => return Err(io::ErrorKind::BrokenPipe.into()), // the reader is gone
            }
        }
        while let Ok(x) = rx.try_recv() {
            q.push_back(x);
        }
        let now = Instant::now();
        let front = q.front().unwrap();
        if front.at > now {
            sleep_until(front.at).await;
            continue;
        }
        match &front.item {
            Item::Eof => {
                // FIN to the other side; its other direction goes on (half-close).
                unsafe { libc::shutdown(dst.as_raw_fd(), libc::SHUT_WR) };
                return Ok(());
            }
            Item::Reset => return Err(io::ErrorKind::ConnectionReset.into()),
            Item::Data(_) => {}
        }
        // Every released data chunk at the front, in one write.
        let mut iov: Vec<IoSlice> = Vec::with_capacity(MAX_IOV);
        for (i, x) in q.iter().enumerate() {
            if x.at > now || iov.len() == MAX_IOV {
                break;
            }
            match &x.item {
                Item::Data(d) => iov.push(IoSlice::new(if i == 0 { &d[off..] } else { &d[..] })),
                _ => break,
            }
        }
        dst.writable().await?;
        let mut n = match dst.try_write_vectored(&iov) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        drop(iov);
        while n > 0 {
            let Item::Data(d) = &q.front().unwrap().item else {
                unreachable!()
            };
            let left = d.len() - off;
            if n >= left {
                n -= left;
                window.add_permits(d.len());
                q.pop_front();
                off = 0;
            } else {
                off += n;
                n = 0;
            }
        }
    }
}

/// A pipe of 1 MiB (or the system's default size), both ends non-blocking.
struct Pipe {
    fds: [i32; 2],
    size: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0; 2];
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let size = match unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 1 << 20) } {
            n if n > 0 => n as usize,
            _ => 64 << 10,
        };
        Ok(Pipe { fds, size })
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        unsafe {
            libc::close(self.fds[0]);
            libc::close(self.fds[1]);
        }
    }
}

fn splice(from: i32, to: i32, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// The unshaped relay: socket -> pipe -> socket with splice(2), no copy into
/// user space. Two pipes per direction: one is filled from `src` while the
/// other drains into `dst`. A pipe is filled only when empty, so EAGAIN while
/// filling is the socket's (nothing to read) and while draining the other
/// socket's (no room to write).
async fn splice_pipe(src: Arc<TcpStream>, dst: &TcpStream) -> io::Result<()> {
    use tokio::io::Interest;
    // Empty pipes go to the filler, filled ones (with their byte count; 0 at
    // EOF, an error at a reset) to the drainer, here.
    let (empty_tx, mut empty_rx) = mpsc::unbounded_channel::<Pipe>();
    let (full_tx, mut full_rx) = mpsc::unbounded_channel::<io::Result<(Pipe, usize)>>();
    for _ in 0..2 {
        let _ = empty_tx.send(Pipe::new()?);
    }
    // Aborted when this future ends or is dropped (the connection is reset).
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _filler = AbortOnDrop(tokio::spawn(async move {
        let sfd = src.as_raw_fd();
        while let Some(pipe) = empty_rx.recv().await {
            let got = loop {
                if let Err(e) = src.readable().await {
                    break Err(e);
                }
                match src.try_io(Interest::READABLE, || splice(sfd, pipe.fds[1], pipe.size)) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => break r,
                }
            };
            let end = !matches!(got, Ok(n) if n > 0);
            if full_tx.send(got.map(|n| (pipe, n))).is_err() || end {
                return;
            }
        }
    }));
    let dfd = dst.as_raw_fd();
    let result = loop {
        let (pipe, n) = match full_rx.recv().await {
            Some(Ok(x)) => x,
            Some(Err(e)) => break Err(e),
            None => break Err(io::ErrorKind::BrokenPipe.into()),
        };
        if n == 0 {
            unsafe { libc::shutdown(dfd, libc::SHUT_WR) };
            break Ok(());
        }
        let mut left = n;
        let drained = loop {
            if left == 0 {
                break Ok(());
            }
            if let Err(e) = dst.writable().await {
                break Err(e);
            }
            match dst.try_io(Interest::WRITABLE, || splice(pipe.fds[0], dfd, left)) {
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = drained {
            break Err(e);
        }
        let _ = empty_tx.send(pipe);
    };
    result
}
