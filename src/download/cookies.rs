//! The cookie jar: Netscape `cookies.txt` in (`--load-cookies`) and out
//! (`--save-cookies`), and the cookies servers set during the run.
//!
//! Matching follows RFC 6265: a cookie goes to its own host (host-only) or also
//! to its subdomains (a `Domain` attribute, or `TRUE` / a leading dot in the
//! file), to request paths under its path, over https only when `Secure`, and
//! only until it expires.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderValue;
use reqwest::Url;

/// First line of a Netscape cookie file, as curl and wget write it.
const NETSCAPE_HEADER: &str = "# Netscape HTTP Cookie File";
/// Prefix of the domain field that marks an HttpOnly cookie (curl's extension).
const HTTP_ONLY_PREFIX: &str = "#HttpOnly_";
/// Fields of one Netscape cookie line.
const NETSCAPE_FIELDS: usize = 7;

/// Why a cookie file could not be used: a usage error (exit 2) when loading.
#[derive(Debug, thiserror::Error)]
pub enum CookieError {
    /// The file could not be read or written.
    #[error("cookie file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS reason.
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("{path}:{line}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// One stored cookie.
#[derive(Clone, PartialEq, Eq)]
struct Cookie {
    /// Lowercase host or domain, without a leading dot.
    domain: String,
    /// Sent to `domain` only, not to its subdomains.
    host_only: bool,
    /// Sent to request paths under this one.
    path: String,
    /// Sent over https only.
    secure: bool,
    /// Not for scripts; kept only to be written back with `#HttpOnly_`.
    http_only: bool,
    /// Unix seconds after which it is gone; `None` for a session cookie.
    expires: Option<u64>,
    /// Name.
    name: String,
    /// Value.
    value: String,
}

impl fmt::Debug for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cookie")
            .field("domain", &self.domain)
            .field("host_only", &self.host_only)
            .field("path", &self.path)
            .field("secure", &self.secure)
            .field("expires", &self.expires)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Cookie {
    fn expired(&self, now: u64) -> bool {
        self.expires.is_some_and(|t| t <= now)
    }

    /// Whether it goes with a request to `host` (lowercase, no brackets) and
    /// `path` over https (`secure`) or not, at `now`.
    fn matches(&self, host: &str, path: &str, secure: bool, now: u64) -> bool {
        (secure || !self.secure)
            && !self.expired(now)
            && if self.host_only {
                host == self.domain
            } else {
                domain_match(host, &self.domain)
            }
            && path_match(path, &self.path)
    }

    /// The Netscape line (without newline).
    fn netscape_line(&self) -> String {
        let flag = |b: bool| if b { "TRUE" } else { "FALSE" };
        format!(
            "{}{}{}\t{}\t{}\t{}\t{}\t{}\t{}",
            if self.http_only { HTTP_ONLY_PREFIX } else { "" },
            if self.host_only { "" } else { "." },
            self.domain,
            flag(!self.host_only),
            self.path,
            flag(self.secure),
            self.expires.unwrap_or(0),
            self.name,
            self.value
        )
    }
}

/// The run's cookies, shared with the HTTP client.
#[derive(Default)]
pub struct Jar {
    /// Every live cookie, oldest first (the order ties are sent in).
    cookies: Mutex<Vec<Cookie>>,
}

impl fmt::Debug for Jar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jar")
            .field("cookies", &self.lock().len())
            .finish()
    }
}

impl Jar {
    /// A jar with the cookies of a Netscape cookies.txt, or empty.
    pub fn load(path: Option<&Path>) -> Result<Self, CookieError> {
        let Some(path) = path else {
            return Ok(Jar::default());
        };
        let bytes = std::fs::read(path).map_err(|source| CookieError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let cookies = parse_netscape(&String::from_utf8_lossy(&bytes), path, unix_now())?;
        Ok(Jar {
            cookies: Mutex::new(cookies),
        })
    }

    /// Write every unexpired cookie to `path` in Netscape format.
    ///
    /// The file is written beside `path` and renamed over it, so a reader
    /// never sees half a file; it is readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), CookieError> {
        let text = self.to_netscape(unix_now());
        write_atomically(path, text.as_bytes()).map_err(|source| CookieError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Cookie>> {
        self.cookies.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn to_netscape(&self, now: u64) -> String {
        let mut text = format!("{NETSCAPE_HEADER}\n# Written by volley.\n\n");
        for cookie in self.lock().iter().filter(|c| !c.expired(now)) {
            text.push_str(&cookie.netscape_line());
            text.push('\n');
        }
        text
    }

    /// The `Cookie` header value for `url` at `now`.
    fn header_for(&self, url: &Url, now: u64) -> Option<String> {
        let secure = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        let host = normalized_host(url)?;
        let cookies = self.lock();
        let mut matching: Vec<&Cookie> = cookies
            .iter()
            .filter(|c| c.matches(&host, url.path(), secure, now))
            .collect();
        if matching.is_empty() {
            return None;
        }
        // Longer paths first (RFC 6265 5.4); the sort is stable, so older
        // cookies stay ahead among equals.
        matching.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        let pairs: Vec<String> = matching
            .iter()
            .map(|c| {
                if c.name.is_empty() {
                    c.value.clone()
                } else {
                    format!("{}={}", c.name, c.value)
                }
            })
            .collect();
        Some(pairs.join("; "))
    }

    /// Store the cookie of one `Set-Cookie` value received from `url` at `now`;
    /// a cookie that is invalid or not allowed for `url` is ignored.
    fn set_cookie(&self, header: &str, url: &Url, now: u64) {
        let Some(cookie) = parse_set_cookie(header, url, now) else {
            return;
        };
        let mut cookies = self.lock();
        let same = |c: &Cookie| {
            c.domain == cookie.domain && c.path == cookie.path && c.name == cookie.name
        };
        match cookies.iter().position(same) {
            // Replaced in place, so it keeps its age among equals.
            Some(i) if !cookie.expired(now) => cookies[i] = cookie,
            Some(i) => {
                cookies.remove(i);
            }
            None if !cookie.expired(now) => cookies.push(cookie),
            None => {}
        }
        cookies.retain(|c| !c.expired(now));
    }
}

impl reqwest::cookie::CookieStore for Jar {
    fn set_cookies(&self, cookie_headers: &mut dyn Iterator<Item = &HeaderValue>, url: &Url) {
        let now = unix_now();
        for value in cookie_headers {
            self.set_cookie(&String::from_utf8_lossy(value.as_bytes()), url, now);
        }
    }

    fn cookies(&self, url: &Url) -> Option<HeaderValue> {
        let header = self.header_for(url, unix_now())?;
        let mut value = HeaderValue::from_bytes(header.as_bytes()).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The URL's host, lowercase, without IPv6 brackets.
fn normalized_host(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some(host.to_ascii_lowercase())
}

/// RFC 6265 5.1.3: `host` is `domain` or a subdomain of it (never for an IP).
fn domain_match(host: &str, domain: &str) -> bool {
    host == domain
        || (host.len() > domain.len()
            && host.ends_with(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
            && host.parse::<std::net::IpAddr>().is_err())
}

/// RFC 6265 5.1.4: `request` is `cookie` or below it.
fn path_match(request: &str, cookie: &str) -> bool {
    request == cookie
        || (request.starts_with(cookie)
            && (cookie.ends_with('/') || request.as_bytes().get(cookie.len()) == Some(&b'/')))
}

/// RFC 6265 5.1.4: the directory of the request path, the path of a cookie
/// set without `Path`.
fn default_path(url: &Url) -> String {
    let path = url.path();
    match path.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => path[..i].to_string(),
    }
}

/// Whether a name or value holds a character that cannot be sent back or
/// written to a cookie file (controls, including TAB).
fn has_controls(s: &str) -> bool {
    s.chars().any(|c| c.is_control())
}

/// One `Set-Cookie` value from `url` (RFC 6265 5.2 and 5.3), or `None` when
/// it must be ignored. An already expired result means "delete".
fn parse_set_cookie(header: &str, url: &Url, now: u64) -> Option<Cookie> {
    let host = normalized_host(url)?;
    let mut parts = header.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let (name, value) = (name.trim(), value.trim());
    if (name.is_empty() && value.is_empty()) || has_controls(name) || has_controls(value) {
        return None;
    }
    let mut max_age: Option<i64> = None;
    let mut expires: Option<u64> = None;
    let mut domain: Option<String> = None;
    let mut path: Option<String> = None;
    let mut secure = false;
    let mut http_only = false;
    for attribute in parts {
        let (key, val) = match attribute.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (attribute.trim(), ""),
        };
        match key.to_ascii_lowercase().as_str() {
            "max-age" => {
                let digits = val.strip_prefix('-').unwrap_or(val);
                if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                    // Too many digits: as good as forever (or the past).
                    max_age = Some(val.parse().unwrap_or(if val.starts_with('-') {
                        i64::MIN
                    } else {
                        i64::MAX
                    }));
                }
            }
            "expires" => {
                if let Some(t) = parse_cookie_date(val) {
                    expires = Some(t);
                }
            }
            "domain" if !val.is_empty() => {
                domain = Some(val.trim_start_matches('.').to_ascii_lowercase());
            }
            "path" if val.starts_with('/') => path = Some(val.to_string()),
            "secure" => secure = true,
            "httponly" => http_only = true,
            _ => {}
        }
    }
    // Max-Age wins over Expires; a non-positive one deletes at once.
    let expires = match max_age {
        Some(secs) if secs <= 0 => Some(0),
        Some(secs) => Some(now.saturating_add(secs.unsigned_abs())),
        None => expires,
    };
    let (domain, host_only) = match domain {
        Some(d) if d == host => (d, true),
        Some(d) => {
            // Another host's domain, a bare top-level name (`com`) or any
            // public suffix (`co.uk`, `github.io`, from the Public Suffix
            // List) is refused: a server may only set cookies for itself and
            // the registrable domain above it.
            if !domain_match(&host, &d)
                || !d.contains('.')
                || psl::suffix_str(&d) == Some(d.as_str())
            {
                return None;
            }
            (d, false)
        }
        None => (host, true),
    };
    // A secure cookie may only be set over https.
    if secure && url.scheme() != "https" {
        return None;
    }
    Some(Cookie {
        domain,
        host_only,
        path: path.unwrap_or_else(|| default_path(url)),
        secure,
        http_only,
        expires,
        name: name.to_string(),
        value: value.to_string(),
    })
}

/// An `Expires` date: the HTTP date formats, also with dashes
/// (`Wed, 21-Oct-2015 07:28:00 GMT`), as Unix seconds.
fn parse_cookie_date(s: &str) -> Option<u64> {
    let parsed = httpdate::parse_http_date(s)
        .or_else(|_| httpdate::parse_http_date(&s.replace('-', " ")))
        .ok()?;
    Some(
        parsed
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
}

/// Parse a Netscape cookies.txt; expired cookies are dropped. `path` only
/// names the file in errors.
fn parse_netscape(text: &str, path: &Path, now: u64) -> Result<Vec<Cookie>, CookieError> {
    let mut cookies: Vec<Cookie> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let err = |reason: String| CookieError::Parse {
            path: path.to_path_buf(),
            line: index + 1,
            reason,
        };
        let line = raw.trim_end_matches('\r');
        let (line, http_only) = match line.strip_prefix(HTTP_ONLY_PREFIX) {
            Some(rest) => (rest, true),
            None => (line, false),
        };
        if line.trim().is_empty() || (!http_only && line.starts_with('#')) {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != NETSCAPE_FIELDS {
            return Err(err(format!(
                "expected {NETSCAPE_FIELDS} TAB-separated fields (domain, include subdomains, \
                 path, secure, expiry, name, value), found {}",
                fields.len()
            )));
        }
        let flag = |what: &str, s: &str| match s.to_ascii_uppercase().as_str() {
            "TRUE" => Ok(true),
            "FALSE" => Ok(false),
            _ => Err(err(format!("{what} must be TRUE or FALSE, not '{s}'"))),
        };
        let domain_field = fields[0].trim();
        let include_subdomains = flag("the include-subdomains field", fields[1])?;
        let secure = flag("the secure field", fields[3])?;
        let expiry: u64 = fields[4].trim().parse().map_err(|_| {
            err(format!(
                "the expiry must be Unix seconds (0 for a session cookie), not '{}'",
                fields[4]
            ))
        })?;
        let domain = domain_field.trim_start_matches('.').to_ascii_lowercase();
        if domain.is_empty() {
            return Err(err("the domain field is empty".to_string()));
        }
        let cookie_path = match fields[2] {
            "" => "/".to_string(),
            p => p.to_string(),
        };
        let cookie = Cookie {
            host_only: !include_subdomains && !domain_field.starts_with('.'),
            domain,
            path: cookie_path,
            secure,
            http_only,
            expires: (expiry != 0).then_some(expiry),
            name: fields[5].to_string(),
            value: fields[6].to_string(),
        };
        if cookie.expired(now) {
            continue;
        }
        // A later line for the same cookie replaces the earlier one.
        let same = |c: &Cookie| {
            c.domain == cookie.domain && c.path == cookie.path && c.name == cookie.name
        };
        match cookies.iter().position(same) {
            Some(i) => cookies[i] = cookie,
            None => cookies.push(cookie),
        }
    }
    Ok(cookies)
}

/// Write `bytes` to a temp file beside `path` (owner-only permissions), flush
/// it and rename it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = crate::fs::parent_dir(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cookies".to_string());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn jar(text: &str) -> Jar {
        Jar {
            cookies: Mutex::new(parse_netscape(text, Path::new("/c.txt"), NOW).unwrap()),
        }
    }

    fn header(jar: &Jar, u: &str) -> Option<String> {
        jar.header_for(&url(u), NOW)
    }

    #[test]
    fn netscape_lines_are_parsed() {
        let j = jar("# Netscape HTTP Cookie File\n\
             \n\
             example.org\tFALSE\t/\tFALSE\t0\tsid\tabc\n\
             .example.com\tTRUE\t/docs\tTRUE\t1800000000\tpref\tx=y\n\
             #HttpOnly_h.test\tFALSE\t/\tFALSE\t0\ttok\t\r\n\
             # example.net\tFALSE\t/\tFALSE\t0\tcommented\tout\n");
        let cookies = j.lock().clone();
        assert_eq!(cookies.len(), 3, "{cookies:?}");
        assert_eq!(
            cookies[0],
            Cookie {
                domain: "example.org".into(),
                host_only: true,
                path: "/".into(),
                secure: false,
                http_only: false,
                expires: None,
                name: "sid".into(),
                value: "abc".into(),
            }
        );
        assert!(!cookies[1].host_only && cookies[1].secure);
        assert_eq!(cookies[1].domain, "example.com");
        assert_eq!(cookies[1].expires, Some(1_800_000_000));
        assert_eq!(cookies[1].value, "x=y");
        assert!(cookies[2].http_only);
        assert_eq!(cookies[2].value, "");
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let err = |text: &str| {
            parse_netscape(text, Path::new("/c.txt"), NOW)
                .unwrap_err()
                .to_string()
        };
        assert!(err("# x\nexample.org FALSE / FALSE 0 a b\n")
            .starts_with("/c.txt:2: expected 7 TAB-separated fields"));
        assert!(err("h\tYES\t/\tFALSE\t0\ta\tb\n")
            .starts_with("/c.txt:1: the include-subdomains field must be TRUE or FALSE"));
        assert!(err("\n\nh\tFALSE\t/\tFALSE\tsoon\ta\tb\n")
            .starts_with("/c.txt:3: the expiry must be Unix seconds"));
        assert!(err("\tFALSE\t/\tFALSE\t0\ta\tb\n").starts_with("/c.txt:1: the domain field"));
    }

    #[test]
    fn domain_matching() {
        let j = jar("host.test\tFALSE\t/\tFALSE\t0\thostonly\t1\n\
             .wide.test\tTRUE\t/\tFALSE\t0\twide\t2\n\
             flag.test\tTRUE\t/\tFALSE\t0\tflag\t3\n");
        assert_eq!(header(&j, "http://host.test/"), Some("hostonly=1".into()));
        assert_eq!(
            header(&j, "http://HOST.test:81/x"),
            Some("hostonly=1".into())
        );
        assert_eq!(header(&j, "http://a.host.test/"), None);
        assert_eq!(header(&j, "http://wide.test/"), Some("wide=2".into()));
        assert_eq!(header(&j, "http://a.b.wide.test/"), Some("wide=2".into()));
        assert_eq!(header(&j, "http://notwide.test/"), None);
        assert_eq!(header(&j, "http://x.flag.test/"), Some("flag=3".into()));
        assert_eq!(header(&j, "http://other.test/"), None);
    }

    #[test]
    fn path_secure_and_expiry_matching() {
        let j = jar("h\tFALSE\t/docs\tFALSE\t0\tdocs\t1\n\
             h\tFALSE\t/\tTRUE\t0\tsecure\t2\n\
             h\tFALSE\t/\tFALSE\t1000\told\t3\n\
             h\tFALSE\t/\tFALSE\t1900000000\tlater\t4\n");
        assert_eq!(header(&j, "http://h/"), Some("later=4".into()));
        assert_eq!(
            header(&j, "http://h/docs/a"),
            Some("docs=1; later=4".into())
        );
        assert_eq!(header(&j, "http://h/docs"), Some("docs=1; later=4".into()));
        assert_eq!(header(&j, "http://h/docsx"), Some("later=4".into()));
        assert_eq!(header(&j, "https://h/"), Some("secure=2; later=4".into()));
        assert_eq!(header(&j, "ftp://h/"), None);
    }

    #[test]
    fn public_suffixes_cannot_be_cookie_domains() {
        let j = Jar::default();
        j.set_cookie("wide=1; Domain=co.uk", &url("http://evil.co.uk/"), NOW);
        j.set_cookie(
            "pages=1; Domain=github.io",
            &url("http://me.github.io/"),
            NOW,
        );
        assert_eq!(j.header_for(&url("http://bank.co.uk/"), NOW), None);
        assert_eq!(j.header_for(&url("http://you.github.io/"), NOW), None);
        // The registrable domain itself is fine.
        j.set_cookie(
            "ok=1; Domain=evil.co.uk",
            &url("http://www.evil.co.uk/"),
            NOW,
        );
        assert_eq!(
            j.header_for(&url("http://evil.co.uk/"), NOW).as_deref(),
            Some("ok=1")
        );
    }

    #[test]
    fn set_cookie_host_only_and_domain() {
        let j = Jar::default();
        j.set_cookie(
            "sid=abc; Path=/; Max-Age=3600",
            &url("http://a.example.org/x/y"),
            NOW,
        );
        j.set_cookie(
            "wide=1; Domain=.Example.org",
            &url("http://a.example.org/x/y"),
            NOW,
        );
        j.set_cookie(
            "evil=1; Domain=other.org",
            &url("http://a.example.org/"),
            NOW,
        );
        j.set_cookie("tld=1; Domain=org", &url("http://a.example.org/"), NOW);
        j.set_cookie(
            "sub=1; Domain=b.a.example.org",
            &url("http://a.example.org/"),
            NOW,
        );
        j.set_cookie("noequals", &url("http://a.example.org/"), NOW);
        let cookies = j.lock().clone();
        assert_eq!(cookies.len(), 2, "{cookies:?}");
        assert_eq!(cookies[0].domain, "a.example.org");
        assert!(cookies[0].host_only);
        assert_eq!(cookies[0].expires, Some(NOW + 3600));
        assert_eq!(cookies[1].domain, "example.org");
        assert!(!cookies[1].host_only);
        // No Path: the directory of the request path.
        assert_eq!(cookies[1].path, "/x");
        assert_eq!(
            header(&j, "http://a.example.org/x/z"),
            Some("wide=1; sid=abc".into())
        );
        assert_eq!(header(&j, "http://example.org/x"), Some("wide=1".into()));
        assert_eq!(header(&j, "http://b.example.org/"), None);
    }

    #[test]
    fn set_cookie_on_an_ip_host() {
        let j = Jar::default();
        j.set_cookie("a=1; Domain=127.0.0.1", &url("http://127.0.0.1:8080/"), NOW);
        j.set_cookie("b=2; Domain=0.0.1", &url("http://127.0.0.1:8080/"), NOW);
        assert_eq!(header(&j, "http://127.0.0.1:9/"), Some("a=1".into()));
        assert!(j.lock()[0].host_only);
    }

    #[test]
    fn set_cookie_replaces_and_deletes() {
        let j = Jar::default();
        let u = url("https://h.test/");
        j.set_cookie("a=1; Path=/", &u, NOW);
        j.set_cookie("b=2; Path=/", &u, NOW);
        j.set_cookie("a=3; Path=/", &u, NOW);
        assert_eq!(header(&j, "https://h.test/"), Some("a=3; b=2".into()));
        j.set_cookie("a=; Path=/; Max-Age=0", &u, NOW);
        assert_eq!(header(&j, "https://h.test/"), Some("b=2".into()));
        j.set_cookie(
            "b=x; Path=/; Expires=Wed, 21 Oct 2015 07:28:00 GMT",
            &u,
            NOW,
        );
        assert_eq!(header(&j, "https://h.test/"), None);
        assert!(j.lock().is_empty());
    }

    #[test]
    fn max_age_wins_over_expires() {
        let j = Jar::default();
        let u = url("https://h.test/");
        j.set_cookie(
            "a=1; Expires=Wed, 21-Oct-2015 07:28:00 GMT; Max-Age=60",
            &u,
            NOW,
        );
        assert_eq!(j.lock()[0].expires, Some(NOW + 60));
        j.set_cookie(
            "a=1; Max-Age=-1; Expires=Wed, 21 Oct 2099 07:28:00 GMT",
            &u,
            NOW,
        );
        assert!(j.lock().is_empty());
        j.set_cookie("b=1; Expires=Wed, 21-Oct-2099 07:28:00 GMT", &u, NOW);
        assert_eq!(j.lock()[0].expires, Some(4_096_250_880));
        j.set_cookie("c=1; Max-Age=99999999999999999999999", &u, NOW);
        assert!(j.lock()[1].expires > Some(u64::MAX / 2));
    }

    #[test]
    fn secure_cookies_need_https_to_be_set() {
        let j = Jar::default();
        j.set_cookie("s=1; Secure", &url("http://h.test/"), NOW);
        assert!(j.lock().is_empty());
        j.set_cookie("s=1; Secure; HttpOnly", &url("https://h.test/"), NOW);
        let c = j.lock()[0].clone();
        assert!(c.secure && c.http_only);
        assert_eq!(header(&j, "http://h.test/"), None);
    }

    #[test]
    fn control_characters_are_refused() {
        let j = Jar::default();
        j.set_cookie("a=x\ty", &url("http://h.test/"), NOW);
        assert!(j.lock().is_empty());
    }

    #[test]
    fn saved_file_round_trips() {
        let text = "# Netscape HTTP Cookie File\n\
             .example.com\tTRUE\t/docs\tTRUE\t1800000000\tpref\tx=y\n\
             #HttpOnly_h.test\tFALSE\t/\tFALSE\t0\ttok\tv\n\
             h.test\tFALSE\t/\tFALSE\t1000\texpired\tv\n";
        let j = jar(text);
        j.set_cookie(
            "sid=abc; Path=/; Max-Age=3600",
            &url("http://127.0.0.1:80/"),
            NOW,
        );
        j.set_cookie("gone=1; Max-Age=10", &url("http://127.0.0.1:80/"), NOW);
        let saved = j.to_netscape(NOW + 100);
        let lines: Vec<&str> = saved
            .lines()
            .filter(|l| !l.is_empty() && (!l.starts_with('#') || l.starts_with("#HttpOnly_")))
            .collect();
        assert!(saved.starts_with("# Netscape HTTP Cookie File\n"));
        assert_eq!(
            lines,
            vec![
                ".example.com\tTRUE\t/docs\tTRUE\t1800000000\tpref\tx=y",
                "#HttpOnly_h.test\tFALSE\t/\tFALSE\t0\ttok\tv",
                &format!("127.0.0.1\tFALSE\t/\tFALSE\t{}\tsid\tabc", NOW + 3600),
            ]
        );
        let again = parse_netscape(&saved, Path::new("/s"), NOW).unwrap();
        assert_eq!(again.len(), 3);
        assert_eq!(again[..2], j.lock()[..2]);
    }

    #[test]
    fn save_replaces_the_file_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cookies.txt");
        std::fs::write(&path, "old").unwrap();
        let j = jar("h\tFALSE\t/\tFALSE\t0\ta\tb\n");
        j.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("h\tFALSE\t/\tFALSE\t0\ta\tb\n"), "{text}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("cookies.txt")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let missing_dir = dir.path().join("no/such/dir/c.txt");
        assert!(matches!(j.save(&missing_dir), Err(CookieError::Io { .. })));
    }
}
