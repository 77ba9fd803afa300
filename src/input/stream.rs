//! `-i -` from a pipe (or a terminal): downloads start as their lines arrive,
//! instead of after the producer has finished.
//!
//! Two threads read stdin: one reads lines, the other parses them and hands
//! each download over once its option lines have arrived, or once no line
//! came for [`GRACE`] after its URL (a producer that writes a URL and then
//! waits must not hold it up). Both channels are bounded, so a producer of
//! millions of lines is held up by the pipe, not buffered in memory: at most
//! [`READ_AHEAD`] downloads wait to start. A bad line does not stop the run:
//! it reaches the scheduler as a failed download with its line number.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{LineError, ListParser, Queued};

/// Downloads read ahead of the scheduler, at most.
pub const READ_AHEAD: usize = 256;
/// Lines read ahead of the parser, at most.
const LINES_AHEAD: usize = 1024;
/// How long a URL waits for its option lines once nothing more has arrived.
pub const GRACE: Duration = Duration::from_millis(100);

/// What the stream hands over.
#[derive(Debug)]
pub enum Streamed {
    /// A download, ready to start.
    Download(Queued),
    /// A line that could not be used: a failed download.
    Bad(LineError),
}

/// Downloads arriving on stdin.
#[derive(Debug)]
pub struct Stream {
    rx: mpsc::Receiver<Streamed>,
    /// An item taken by [`Stream::wait_first`].
    first: Option<Streamed>,
}

impl Stream {
    /// Start reading `reader` (named `source` in messages) on two threads of
    /// its own.
    pub fn start(source: &str, reader: impl Read + Send + 'static) -> Stream {
        let (line_tx, line_rx) = std_mpsc::sync_channel::<std::io::Result<Vec<u8>>>(LINES_AHEAD);
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        std::thread::spawn(move || {
            let mut reader = BufReader::with_capacity(1 << 16, reader);
            loop {
                let mut buf = Vec::new();
                let item = match reader.read_until(b'\n', &mut buf) {
                    Ok(0) => return,
                    Ok(_) => Ok(buf),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
                let stop = item.is_err();
                if line_tx.send(item).is_err() || stop {
                    return;
                }
            }
        });
        let source = source.to_string();
        std::thread::spawn(move || parse(&source, &line_rx, &tx));
        Stream { rx, first: None }
    }

    /// Wait (blocking the calling thread, outside the runtime) until the first
    /// item arrives; `false` when the input ended without any.
    pub fn wait_first(&mut self) -> bool {
        if self.first.is_none() {
            self.first = self.rx.blocking_recv();
        }
        self.first.is_some()
    }

    /// The next item; `None` once stdin is at its end.
    pub async fn next(&mut self) -> Option<Streamed> {
        match self.first.take() {
            Some(item) => Some(item),
            None => self.rx.recv().await,
        }
    }
}

/// The parsing thread: lines in, downloads and bad lines out, until either
/// side is gone.
fn parse(
    source: &str,
    lines: &std_mpsc::Receiver<std::io::Result<Vec<u8>>>,
    tx: &mpsc::Sender<Streamed>,
) {
    let mut parser = ListParser::new(source);
    // Whether the scheduler is still listening.
    let mut open = true;
    let mut push = |spec: super::DownloadSpec| {
        if open {
            open = tx.blocking_send(Streamed::Download(spec.into())).is_ok();
        }
    };
    loop {
        let line = if parser.holds_download() {
            match lines.recv_timeout(GRACE) {
                Ok(line) => Some(line),
                Err(std_mpsc::RecvTimeoutError::Timeout) => {
                    parser.hand_over(&mut push);
                    continue;
                }
                Err(std_mpsc::RecvTimeoutError::Disconnected) => None,
            }
        } else {
            lines.recv().ok()
        };
        let mut bad = Vec::new();
        match line {
            None => {
                parser.hand_over(&mut push);
                return;
            }
            Some(Ok(bytes)) => parser.line(&bytes, &mut push, &mut |e| bad.push(e)),
            Some(Err(e)) => {
                parser.hand_over(&mut push);
                bad.push(LineError {
                    source: source.to_string(),
                    line: parser.lines_read() + 1,
                    reason: format!("cannot read further: {e}"),
                });
            }
        }
        for e in bad {
            if tx.blocking_send(Streamed::Bad(e)).is_err() {
                return;
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}

/// Whether stdin is a pipe, a socket or a terminal (read as it arrives)
/// rather than a regular file (read whole and checked first).
pub fn stdin_is_live() -> bool {
    // SAFETY: fstat on fd 0 writes into a zeroed stat buffer we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(0, &mut st) } != 0 {
        return false;
    }
    matches!(
        st.st_mode & libc::S_IFMT,
        libc::S_IFIFO | libc::S_IFSOCK | libc::S_IFCHR
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that yields its pieces one at a time, waiting before each.
    struct Slow(std::vec::IntoIter<(Duration, Vec<u8>)>);

    impl Read for Slow {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let Some((wait, piece)) = self.0.next() else {
                return Ok(0);
            };
            std::thread::sleep(wait);
            buf[..piece.len()].copy_from_slice(&piece);
            Ok(piece.len())
        }
    }

    fn url_of(item: &Streamed) -> String {
        match item {
            Streamed::Download(q) => q.url().to_string(),
            Streamed::Bad(e) => format!("bad {}", e.line),
        }
    }

    #[test]
    fn a_url_is_handed_over_before_the_next_line_arrives() {
        let long = Duration::from_secs(3);
        let reader = Slow(
            vec![
                (Duration::ZERO, b"http://a/1\n  out=x\n".to_vec()),
                (long, b"http://a/2\nnot a url\n".to_vec()),
            ]
            .into_iter(),
        );
        let mut stream = Stream::start("<stdin>", reader);
        let started = std::time::Instant::now();
        assert!(stream.wait_first());
        assert!(started.elapsed() < long, "{:?}", started.elapsed());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let first = rt.block_on(stream.next()).unwrap();
        match &first {
            Streamed::Download(q) => assert_eq!(q.out(), Some("x")),
            Streamed::Bad(e) => panic!("{e}"),
        }
        let rest: Vec<String> = rt.block_on(async {
            let mut rest = Vec::new();
            while let Some(item) = stream.next().await {
                rest.push(url_of(&item));
            }
            rest
        });
        assert_eq!(rest, ["http://a/2", "bad 4"]);
    }
}
