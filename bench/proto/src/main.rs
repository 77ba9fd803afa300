//! How fast the `large` scenario could go if volley owned the socket for a
//! plain-HTTP body, instead of reading it through hyper.
//!
//!     cargo build --release --manifest-path bench/proto/Cargo.toml
//!     bench/proto/target/release/body-path-proto splice|rw OUTDIR
//!
//! Fetches /large/L0.bin..L3.bin from the benchmark nginx (127.0.0.1:18080),
//! one thread each, like wget2. `rw` reads into a 256 KiB buffer and writes it
//! (two copies per byte, no HTTP library); `splice` moves the body socket ->
//! pipe -> file (one copy). No retries, no resume, no checks beyond
//! Content-Length: a floor to compare with, not a download manager.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

fn fetch(path: &str, out: &str, splice: bool) {
    let mut s = TcpStream::connect("127.0.0.1:18080").expect("connect");
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut head = vec![0u8; 16384];
    let mut n = 0;
    let end = loop {
        let r = s.read(&mut head[n..]).expect("read head");
        assert!(r > 0, "closed in the head");
        n += r;
        if let Some(p) = head[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let text = std::str::from_utf8(&head[..end]).expect("head is text");
    let len: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .trim()
        .parse()
        .expect("a length");
    let f = std::fs::File::create(out).expect("create");
    f.write_all_at(&head[end..n], 0).unwrap();
    let mut off = (n - end) as i64;
    if splice {
        let mut p = [0i32; 2];
        // SAFETY: pipe2 writes two fds into the array.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: a valid pipe fd; a bigger pipe means fewer splices.
        unsafe { libc::fcntl(p[1], libc::F_SETPIPE_SZ, 1 << 20) };
        while (off as usize) < len {
            // SAFETY: valid fds, no offsets for the socket and the pipe.
            let got = unsafe {
                libc::splice(s.as_raw_fd(), std::ptr::null_mut(), p[1], std::ptr::null_mut(), 1 << 20, libc::SPLICE_F_MOVE)
            };
            assert!(got > 0, "splice from the socket: {got}");
            let mut left = got;
            while left > 0 {
                // SAFETY: valid fds; `off` is the file offset to write at.
                let put = unsafe {
                    libc::splice(p[0], std::ptr::null_mut(), f.as_raw_fd(), &mut off, left as usize, libc::SPLICE_F_MOVE)
                };
                assert!(put > 0, "splice to the file: {put}");
                left -= put;
            }
        }
    } else {
        let mut buf = vec![0u8; 256 << 10];
        while (off as usize) < len {
            let r = s.read(&mut buf).expect("read body");
            assert!(r > 0, "closed in the body");
            f.write_all_at(&buf[..r], off as u64).unwrap();
            off += r as i64;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, dir) = match args.as_slice() {
        [_, m, d] if m == "splice" || m == "rw" => (m.clone(), d.clone()),
        _ => {
            eprintln!("usage: body-path-proto splice|rw OUTDIR");
            std::process::exit(2);
        }
    };
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (splice, out) = (mode == "splice", format!("{dir}/L{i}.bin"));
            std::thread::spawn(move || fetch(&format!("/large/L{i}.bin"), &out, splice))
        })
        .collect();
    for t in threads {
        t.join().expect("a fetch failed");
    }
}
