//! The terminal on stderr: whether progress bars can be drawn there, whether
//! colour is wanted, how wide a progress line may be, and [`Screen`], the draw
//! target that keeps indicatif's cursor out of the last column.
//!
//! Why the last column matters: indicatif ends every line it draws by padding
//! it with spaces up to the terminal's width and lets the terminal's automatic
//! wrap move the cursor to the next row. After the last line the cursor then
//! rests in the last column, waiting to wrap. When the user presses Ctrl-C the
//! terminal echoes `^C` right there, the echo wraps onto a new row, and the next
//! redraw (the final clear) starts one row too low: the top bar line stays on
//! the screen above the summary. [`Screen`] ends each line by clearing the rest
//! of the row instead, and starts the next one with a newline, so the cursor
//! stays after the text; every progress line leaves [`RESERVE`] columns free,
//! so an echoed `^C` fits on the row and the redraw wipes it.

use std::ffi::OsStr;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use indicatif::TermLike;

/// Columns every progress line leaves free at the right edge, so that the
/// `^C` a terminal echoes after the last line never wraps.
pub const RESERVE: usize = 2;

/// Size assumed when the terminal does not say (rows, columns).
pub const FALLBACK_SIZE: (u16, u16) = (24, 80);

/// Whether `TERM` names a terminal that can move the cursor: set, and not `dumb`.
pub fn can_move_cursor(term: Option<&OsStr>) -> bool {
    term.is_some_and(|t| !t.is_empty() && t != "dumb")
}

/// Whether colour is wanted, given the value of `NO_COLOR`
/// (<https://no-color.org>: any non-empty value turns colour off).
pub fn colour_wanted(no_color: Option<&OsStr>) -> bool {
    no_color.is_none_or(OsStr::is_empty)
}

/// Whether progress bars can be drawn on this process's stderr: it is a
/// terminal, and `TERM` says the terminal can move the cursor.
pub fn stderr_can_draw() -> bool {
    std::io::stderr().is_terminal() && can_move_cursor(std::env::var_os("TERM").as_deref())
}

/// Whether this process should colour its progress lines (see [`colour_wanted`]).
pub fn stderr_colour() -> bool {
    colour_wanted(std::env::var_os("NO_COLOR").as_deref())
}

/// The size of the terminal on stderr (rows, columns), or [`FALLBACK_SIZE`].
pub fn stderr_size() -> (u16, u16) {
    match console::Term::stderr().size_checked() {
        Some((rows, cols)) if rows > 0 && cols > 0 => (rows, cols),
        _ => FALLBACK_SIZE,
    }
}

/// Display width of a text in terminal columns (ANSI escapes count for nothing).
pub fn text_width(text: &str) -> usize {
    console::measure_text_width(text)
}

/// Where a line stands in [`Screen`]'s rewriting of indicatif's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// The cursor was just moved (or nothing was written yet): the next text
    /// starts where the cursor is.
    Fresh,
    /// A line's text was written; indicatif's next write is its padding.
    Text,
    /// A line ended: a newline is due before the next text.
    Ended,
}

struct Output {
    sink: Box<dyn Write + Send>,
    buf: Vec<u8>,
    line: Line,
}

/// The size a [`Screen`] reports (rows, columns), asked at every draw.
pub type SizeFn = Arc<dyn Fn() -> (u16, u16) + Send + Sync>;

/// indicatif's draw target for a terminal: writes what indicatif draws, but
/// ends each line by clearing the rest of the row and moving to the next row
/// itself, instead of padding to the last column and relying on the terminal
/// to wrap (see the module docs for why). Writes are collected and sent to
/// the sink in one piece on every flush, i.e. once per redraw. Clones share
/// the sink.
#[derive(Clone)]
pub struct Screen {
    out: Arc<Mutex<Output>>,
    size: SizeFn,
}

impl fmt::Debug for Screen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Screen")
            .field("size", &(self.size)())
            .finish_non_exhaustive()
    }
}

impl Screen {
    /// A screen on this process's stderr.
    pub fn stderr() -> Screen {
        Screen::new(Box::new(std::io::stderr()), Arc::new(stderr_size))
    }

    /// A screen writing to `sink`, whose size `size` tells (rows, columns).
    pub fn new(sink: Box<dyn Write + Send>, size: SizeFn) -> Screen {
        Screen {
            out: Arc::new(Mutex::new(Output {
                sink,
                buf: Vec::new(),
                line: Line::Fresh,
            })),
            size,
        }
    }

    /// The widest a progress line may be: the width less [`RESERVE`], at least 1.
    pub fn line_width(&self) -> usize {
        usize::from(self.width()).saturating_sub(RESERVE).max(1)
    }

    fn out(&self) -> MutexGuard<'_, Output> {
        self.out.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A cursor movement: the cursor leaves the row it was on, so a pending
    /// newline is void (the terminal would have dropped its pending wrap too).
    fn control(&self, seq: &str) {
        let mut out = self.out();
        out.line = Line::Fresh;
        out.buf.extend_from_slice(seq.as_bytes());
    }
}

impl TermLike for Screen {
    fn width(&self) -> u16 {
        (self.size)().1
    }

    fn height(&self) -> u16 {
        (self.size)().0
    }

    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.control(&format!("\x1b[{n}A"));
        } else {
            self.control("");
        }
        Ok(())
    }

    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.control(&format!("\x1b[{n}B"));
        } else {
            self.control("");
        }
        Ok(())
    }

    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.control(&format!("\x1b[{n}C"));
        }
        Ok(())
    }

    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        if n > 0 {
            self.control(&format!("\x1b[{n}D"));
        }
        Ok(())
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        let mut out = self.out();
        if out.line == Line::Ended {
            out.buf.extend_from_slice(b"\r\n");
        }
        out.buf.extend_from_slice(s.as_bytes());
        out.buf.extend_from_slice(b"\n");
        out.line = Line::Fresh;
        Ok(())
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        let mut out = self.out();
        match out.line {
            // indicatif pads each line right after writing it. A line that
            // filled its last row exactly gets no padding; the terminal already
            // waits to wrap there and the newline before the next line moves on.
            Line::Text if s.bytes().all(|b| b == b' ') => {
                if !s.is_empty() {
                    out.buf.extend_from_slice(b"\x1b[K");
                }
                out.line = Line::Ended;
            }
            Line::Text => out.buf.extend_from_slice(s.as_bytes()),
            Line::Ended => {
                out.buf.extend_from_slice(b"\r\n");
                out.buf.extend_from_slice(s.as_bytes());
                out.line = Line::Text;
            }
            Line::Fresh => {
                out.buf.extend_from_slice(s.as_bytes());
                out.line = Line::Text;
            }
        }
        Ok(())
    }

    fn clear_line(&self) -> std::io::Result<()> {
        self.control("\r\x1b[2K");
        Ok(())
    }

    fn flush(&self) -> std::io::Result<()> {
        let mut out = self.out();
        let Output { sink, buf, .. } = &mut *out;
        if !buf.is_empty() {
            let result = sink.write_all(buf).and_then(|()| sink.flush());
            buf.clear();
            result?;
        }
        Ok(())
    }
}

/// A terminal for tests: what it receives, shared with the test.
#[cfg(test)]
pub(crate) mod testing {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// What a terminal receives; clones share it.
    #[derive(Clone, Default)]
    pub(crate) struct Tty(Arc<Mutex<Vec<u8>>>);

    impl Write for Tty {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Tty {
        /// Everything written so far.
        pub(crate) fn bytes(&self) -> Vec<u8> {
            self.0.lock().unwrap().clone()
        }

        /// The screen of a 24-row, `cols`-wide terminal after everything written.
        pub(crate) fn screen(&self, cols: u16) -> vt100::Parser {
            let mut parser = vt100::Parser::new(
                std::num::NonZeroU16::new(24).unwrap(),
                std::num::NonZeroU16::new(cols).unwrap(),
                0,
            );
            parser.process(&self.bytes());
            parser
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Tty;
    use super::*;

    #[test]
    fn term_dumb_or_unset_cannot_move_the_cursor() {
        assert!(can_move_cursor(Some(OsStr::new("xterm-256color"))));
        assert!(!can_move_cursor(Some(OsStr::new("dumb"))));
        assert!(!can_move_cursor(Some(OsStr::new(""))));
        assert!(!can_move_cursor(None));
    }

    #[test]
    fn no_color_with_a_value_turns_colour_off() {
        assert!(colour_wanted(None));
        assert!(colour_wanted(Some(OsStr::new(""))));
        assert!(!colour_wanted(Some(OsStr::new("1"))));
        assert!(!colour_wanted(Some(OsStr::new("false"))));
    }

    #[test]
    fn lines_end_with_a_clear_not_with_padding() {
        let sink = Tty::default();
        let screen = Screen::new(Box::new(sink.clone()), Arc::new(|| (24, 20)));
        // What indicatif writes for two lines, then a redraw.
        screen.write_str("first").unwrap();
        screen.write_str(&" ".repeat(15)).unwrap();
        screen.write_str("second").unwrap();
        screen.write_str(&" ".repeat(14)).unwrap();
        screen.flush().unwrap();
        screen.move_cursor_up(1).unwrap();
        screen.clear_line().unwrap();
        screen.write_str("").unwrap();
        screen.write_str(&" ".repeat(20)).unwrap();
        screen.flush().unwrap();
        let out = String::from_utf8(sink.bytes()).unwrap();
        assert_eq!(
            out, "first\x1b[K\r\nsecond\x1b[K\x1b[1A\r\x1b[2K\x1b[K",
            "{out:?}"
        );
    }

    #[test]
    fn a_line_filling_its_row_gets_no_clear() {
        let sink = Tty::default();
        let screen = Screen::new(Box::new(sink.clone()), Arc::new(|| (24, 5)));
        screen.write_str("12345").unwrap();
        screen.write_str("").unwrap();
        screen.write_str("ab").unwrap();
        screen.write_str("   ").unwrap();
        screen.flush().unwrap();
        let out = String::from_utf8(sink.bytes()).unwrap();
        assert_eq!(out, "12345\r\nab\x1b[K");
        assert_eq!(screen.line_width(), 3);
    }
}
