//! `--print-paths` and `-0`: the path of each completed file on stdout, as it
//! completes, for `volley ... --print-paths | xargs ...`. Files that were
//! already complete (skipped) count: they are there for the next command too.

use std::io::Write;

use super::Reporter;
use crate::events::Event;
use crate::options::PrintPaths;

/// Writes completed paths to stdout.
pub struct PathsReporter {
    out: std::io::Stdout,
    separator: u8,
}

impl PathsReporter {
    /// Paths separated by newlines or NULs.
    pub fn new(mode: PrintPaths) -> Self {
        PathsReporter {
            out: std::io::stdout(),
            separator: match mode {
                PrintPaths::Lines => b'\n',
                PrintPaths::Nul => 0,
            },
        }
    }
}

impl Reporter for PathsReporter {
    fn event(&mut self, event: &Event) {
        let path = match event {
            Event::Finished { path, .. } => path,
            Event::Skipped { path, .. } => path,
            _ => return,
        };
        let mut out = self.out.lock();
        // A closed pipe is not an error of the run.
        let _ = out.write_all(path.as_os_str().as_encoded_bytes());
        let _ = out.write_all(&[self.separator]);
        let _ = out.flush();
    }
}
