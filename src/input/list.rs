//! aria2c's list format: a URL line (several URLs are mirrors of one file),
//! then indented `key=value` option lines for it; read a line at a time
//! ([`ListParser`]) so that a list on a pipe can start as it arrives, and
//! written back ([`format_entry`]) for `--save-failed`.

use std::io::BufRead;
use std::path::PathBuf;

use reqwest::Url;

use super::{DownloadSpec, LineError};
use crate::config::{self, parse_header};
use crate::options::ByteSize;

/// Option keys a list may set for a download.
pub const LIST_KEYS: &[&str] = &[
    "out",
    "dir",
    "header",
    "connections",
    "limit_rate",
    "checksum",
];

/// Parse a list in aria2c's format, appending specs and errors.
pub fn parse_list(
    source: &str,
    reader: impl BufRead,
    specs: &mut Vec<DownloadSpec>,
    errors: &mut Vec<LineError>,
) -> std::io::Result<()> {
    parse_list_into(source, reader, &mut |s| specs.push(s), errors)
}

/// Parse a list in aria2c's format, handing each download to `push` once its
/// option lines are read, and appending errors.
pub fn parse_list_into(
    source: &str,
    mut reader: impl BufRead,
    push: &mut dyn FnMut(DownloadSpec),
    errors: &mut Vec<LineError>,
) -> std::io::Result<()> {
    let mut parser = ListParser::new(source);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            parser.hand_over(push);
            return Ok(());
        }
        parser.line(&buf, push, &mut |e| errors.push(e));
    }
}

/// aria2c's list format, a line at a time: a download is handed over once
/// the line after its option lines arrives (or, from a pipe, once no line
/// came for a while: [`ListParser::hand_over`]).
#[derive(Debug)]
pub struct ListParser {
    /// The list as named in messages.
    source: String,
    /// Lines read so far.
    line_no: usize,
    /// The download whose option lines may follow.
    current: Option<DownloadSpec>,
    /// The last URL line was bad: its option lines are not blamed on the
    /// download before it.
    after_bad_url: bool,
    /// The last URL's download was handed over before another line came.
    handed_early: bool,
}

impl ListParser {
    /// A parser for the list named `source` in messages.
    pub fn new(source: &str) -> Self {
        ListParser {
            source: source.to_string(),
            line_no: 0,
            current: None,
            after_bad_url: false,
            handed_early: false,
        }
    }

    /// Lines read so far.
    pub fn lines_read(&self) -> usize {
        self.line_no
    }

    /// Whether a download waits for its option lines.
    pub fn holds_download(&self) -> bool {
        self.current.is_some()
    }

    /// Hand over the download whose option lines may still follow.
    pub fn hand_over(&mut self, push: &mut dyn FnMut(DownloadSpec)) {
        if let Some(spec) = self.current.take() {
            self.handed_early = true;
            push(spec);
        }
    }

    /// One line, with or without its line end.
    pub fn line(
        &mut self,
        bytes: &[u8],
        push: &mut dyn FnMut(DownloadSpec),
        errors: &mut dyn FnMut(LineError),
    ) {
        self.line_no += 1;
        let line = self.line_no;
        // A UTF-8 byte-order mark (some editors write one) is not part of the URL.
        let bytes = match bytes.strip_prefix(b"\xEF\xBB\xBF") {
            Some(rest) if line == 1 => rest,
            _ => bytes,
        };
        let source = &self.source;
        let mut err = |reason: String| {
            errors(LineError {
                source: source.clone(),
                line,
                reason,
            })
        };
        let Ok(text) = std::str::from_utf8(bytes) else {
            err("not valid UTF-8".into());
            return;
        };
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() || text.starts_with('#') {
            return;
        }
        if text.starts_with([' ', '\t']) {
            match self.current.as_mut() {
                Some(spec) => {
                    if let Err(reason) = apply_option(spec, text.trim()) {
                        err(reason);
                    }
                }
                None if self.after_bad_url => {}
                None if self.handed_early => err(format!(
                    "option line '{}' came after its URL's download had started; \
                     write a URL's option lines right after it",
                    text.trim()
                )),
                None => err(format!(
                    "option line '{}' has no URL line before it",
                    text.trim()
                )),
            }
            return;
        }
        if let Some(spec) = self.current.take() {
            push(spec);
        }
        self.handed_early = false;
        // Several URLs on one line are mirrors of one file, as in aria2c.
        let urls: Result<Vec<Url>, String> = text.split_whitespace().map(parse_url).collect();
        match urls {
            Ok(mut urls) => {
                let mut spec = DownloadSpec::new(urls.remove(0));
                urls.dedup();
                if !urls.is_empty() {
                    spec.extra_mut().mirrors = urls;
                }
                self.current = Some(spec);
                self.after_bad_url = false;
            }
            Err(reason) => {
                err(reason);
                self.after_bad_url = true;
            }
        }
    }
}

/// One download in the list format, with the options it was given: what
/// `--save-failed` writes, so that `volley -i FILE` retries exactly it.
pub fn format_entry(spec: &DownloadSpec) -> String {
    let mut text = spec.url.to_string();
    for m in spec.mirrors() {
        text.push('\t');
        text.push_str(m.as_str());
    }
    text.push('\n');
    if let Some(out) = &spec.out {
        text.push_str(&format!("  out={out}\n"));
    }
    if let Some(dir) = &spec.dir {
        text.push_str(&format!("  dir={}\n", dir.display()));
    }
    for (k, v) in spec.headers() {
        text.push_str(&format!(
            "  header={k}: {}\n",
            String::from_utf8_lossy(v.as_bytes())
        ));
    }
    if let Some(n) = spec.connections() {
        text.push_str(&format!("  connections={n}\n"));
    }
    if let Some(rate) = spec.limit_rate() {
        text.push_str(&format!("  limit_rate={rate}\n"));
    }
    if let Some(sum) = spec.checksum() {
        text.push_str(&format!("  checksum={sum}\n"));
    }
    text
}

/// Parse and check one URL: http or https with a host.
pub fn parse_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| {
        // `example.org/f.iso`: no scheme (url's RelativeUrlWithoutBase).
        if e.to_string() == "relative URL without a base" {
            format!("'{text}' has no scheme: write it as https://{text} (or http://{text})")
        } else {
            format!("invalid URL '{text}': {e}")
        }
    })?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(format!(
                "unsupported scheme '{other}' in '{text}': volley downloads http and https URLs"
            ))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("URL '{text}' has no host"));
    }
    Ok(url)
}

fn apply_option(spec: &mut DownloadSpec, option: &str) -> Result<(), String> {
    let Some((key, value)) = option.split_once('=') else {
        return Err(format!(
            "option '{option}' is not of the form key=value (known keys: {})",
            LIST_KEYS.join(", ")
        ));
    };
    let (key, value) = (key.trim(), value.trim());
    match key {
        "out" => {
            crate::naming::check_given_name(value).map_err(|m| format!("out={value}: {m}"))?;
            spec.out = Some(value.to_string());
        }
        "dir" => {
            if value.is_empty() {
                return Err("dir= needs a directory".into());
            }
            spec.dir = Some(PathBuf::from(value));
        }
        "header" => spec.extra_mut().headers.push(parse_header(value)?),
        "connections" => {
            let n = value
                .parse()
                .map_err(|_| format!("connections={value}: not a whole number"))?;
            let n = config::connections("connections", n).map_err(|e| e.to_string())?;
            spec.extra_mut().connections = Some(n);
        }
        "checksum" => {
            let sum = value
                .parse()
                .map_err(|m| format!("checksum={value}: {m}"))?;
            spec.extra_mut().checksum = Some(sum);
        }
        "limit_rate" => {
            let rate: ByteSize = value
                .parse()
                .map_err(|m| format!("limit_rate={value}: {m}"))?;
            // 0: no cap for this download, whatever --limit-rate-per-download says.
            spec.extra_mut().limit_rate = Some(rate.0);
        }
        _ => {
            return Err(format!(
                "unknown option '{key}' (known keys: {})",
                LIST_KEYS.join(", ")
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> (Vec<DownloadSpec>, Vec<LineError>) {
        let (mut specs, mut errors) = (Vec::new(), Vec::new());
        parse_list("l.txt", text.as_bytes(), &mut specs, &mut errors).unwrap();
        (specs, errors)
    }

    #[test]
    fn options_attach_to_the_url_above() {
        let (specs, errors) =
            parse("# c\n\nhttp://a/x\n  out=y.bin\n\tdir=sub\n header=X-A: 1\nhttps://b/z\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].out.as_deref(), Some("y.bin"));
        assert_eq!(specs[0].dir.as_deref(), Some(Path::new("sub")));
        assert_eq!(specs[0].headers().len(), 1);
        assert!(specs[1].out.is_none());
    }

    #[test]
    fn every_bad_line_is_reported_with_its_line() {
        let (_, errors) =
            parse("http://ok/a\nnot a url\nftp://x/y\nhttp://ok/b\n  bogus=1\n  out=a/b\n");
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 5, 6], "{errors:?}");
        assert!(errors[1].reason.contains("ftp"));
        assert!(errors[2].reason.contains("bogus"));
        assert!(errors[0].to_string().starts_with("l.txt:2: "));
    }

    #[test]
    fn options_after_a_bad_url_are_not_blamed_twice() {
        let (specs, errors) = parse("http://a/1\nhttp//bad\n  out=x\n");
        assert_eq!(errors.len(), 1);
        assert!(specs[0].out.is_none());
    }

    #[test]
    fn connections_and_limit_rate_options() {
        let (specs, errors) =
            parse("http://a/1\n  connections=4\n  limit_rate=512K\nhttp://a/2\n  connections=0\n  limit_rate=fast\n");
        assert_eq!(specs[0].connections(), Some(4));
        assert_eq!(specs[0].limit_rate(), Some(512 * 1024));
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![5, 6], "{errors:?}");
        assert!(errors[0].reason.contains("connections"), "{errors:?}");
    }

    #[test]
    fn saved_entries_parse_back_to_the_same_options() {
        let text = "http://a/1\n  out=x.bin\n  dir=sub\n  header=X-A: 1\n  connections=4\n  limit_rate=512K\n  checksum=md5=900150983cd24fb0d6963f7d28e17f72\n";
        let (specs, errors) = parse(text);
        assert!(errors.is_empty(), "{errors:?}");
        let saved = format_entry(&specs[0]);
        let (again, errors) = parse(&saved);
        assert!(errors.is_empty(), "{saved}: {errors:?}");
        let a = &again[0];
        assert_eq!(a.url, specs[0].url);
        assert_eq!(a.out, specs[0].out);
        assert_eq!(a.dir, specs[0].dir);
        assert_eq!(a.headers(), specs[0].headers());
        assert_eq!(a.connections(), Some(4));
        assert_eq!(a.limit_rate(), Some(512 * 1024));
        assert_eq!(a.checksum(), specs[0].checksum());
    }

    #[test]
    fn several_urls_on_a_line_are_mirrors() {
        let (specs, errors) = parse(
            "http://a/f.iso\thttp://b/f.iso http://c/f.iso\n  out=x.iso\nhttp://a/1 nota-url\n",
        );
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].mirrors().len(), 2);
        assert_eq!(specs[0].mirrors()[1].as_str(), "http://c/f.iso");
        assert_eq!(specs[0].out.as_deref(), Some("x.iso"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 3);
        let saved = format_entry(&specs[0]);
        let (again, _) = parse(&saved);
        assert_eq!(again[0].mirrors(), specs[0].mirrors());
    }

    #[test]
    fn crlf_lists_parse() {
        let (specs, errors) = parse("http://a/1\r\n  out=x\r\n");
        assert!(errors.is_empty());
        assert_eq!(specs[0].out.as_deref(), Some("x"));
    }
}
