//! Documents printed instead of a run: `--completions SHELL` (a shell
//! completion script, `clap_complete`) and `--man` (a roff man page,
//! `clap_mangen`), generated from the clap definition, and `--print-config`
//! (the example config file, built in). None reads the config file or the
//! input.

use std::io::{self, Write};

use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;
use crate::exit::ExitStatus;

/// A document volley can print about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    /// A completion script for this shell.
    Completions(Shell),
    /// The man page.
    Man,
    /// The example config file, every key with its default or an example.
    Config,
}

/// config.example.toml, built into the binary for `--print-config`.
pub const EXAMPLE_CONFIG: &str = include_str!("../../config.example.toml");

impl Cli {
    /// The document asked for with `--completions` or `--man`, if any: then it is
    /// printed and nothing else happens.
    pub fn document(&self) -> Option<Document> {
        if self.man {
            Some(Document::Man)
        } else if self.print_config {
            Some(Document::Config)
        } else {
            self.completions.map(Document::Completions)
        }
    }
}

/// Write `document` to `out`.
pub fn write(document: Document, out: &mut dyn Write) -> io::Result<()> {
    let mut cmd = Cli::command();
    match document {
        Document::Completions(shell) => {
            let name = cmd.get_name().to_string();
            clap_complete::generate(shell, &mut cmd, name, out);
            Ok(())
        }
        Document::Man => clap_mangen::Man::new(cmd).render(out),
        Document::Config => out.write_all(EXAMPLE_CONFIG.as_bytes()),
    }
}

/// Print `document` on stdout. A closed pipe (`volley --man | head`) is success.
pub fn print(document: Document) -> ExitStatus {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match write(document, &mut out).and_then(|()| out.flush()) {
        Ok(()) => ExitStatus::Success,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitStatus::Success,
        Err(e) => {
            eprintln!("volley: cannot write to stdout: {e}");
            ExitStatus::Failure
        }
    }
}
