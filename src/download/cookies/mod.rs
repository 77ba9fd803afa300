//! The cookie jar: Netscape `cookies.txt` in (`--load-cookies`) and out
//! (`--save-cookies`), and the cookies servers set during the run.
//!
//! The jar is [`cookie_store`] (reqwest's own), which follows RFC 6265: a
//! cookie goes to its own host (host-only) or also to its subdomains (a
//! `Domain` attribute, or `TRUE` / a leading dot in the file), to request paths
//! under its path, and only until it expires. On top of it volley refuses
//! cookies for a public suffix (`co.uk`), sets and sends `Secure` cookies over
//! https only, and sends cookies in RFC 6265 order (longer paths first, then
//! older first). `cookie_store` has no Netscape format: the reader and writer
//! are here.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use cookie::time::OffsetDateTime;
use cookie_store::{Cookie, CookieDomain, CookieExpiration, CookieStore, RawCookie};
use reqwest::header::HeaderValue;
use reqwest::Url;

mod netscape;

use netscape::{netscape_line, parse_netscape, NETSCAPE_HEADER};

/// The latest expiry `cookie_store` keeps (9999-12-31T23:59:59Z), in Unix
/// seconds: a later one, or a huge `Max-Age`, becomes this (RFC 6265 5.2.1).
const LATEST: u64 = 253_402_300_799;

/// Why a cookie file could not be used: a usage error (exit 2) when loading.
pub type CookieError = crate::fs::FileError;

/// A cookie's place in the store: domain, path and name.
type Key = (String, String, String);

fn key(c: &Cookie<'_>) -> Key {
    (
        String::from(&c.domain),
        String::from(&c.path),
        c.name().into(),
    )
}

/// The store, and the order its cookies were created in: `cookie_store` keeps
/// hash maps, but RFC 6265 5.4 sends older cookies first among equal paths, and
/// the saved file keeps that order.
#[derive(Default)]
struct Cookies {
    store: CookieStore,
    born: HashMap<Key, u64>,
    next: u64,
}

impl Cookies {
    /// Note `key` as created now, unless it is already there: a replaced
    /// cookie keeps its age (RFC 6265 5.3 step 11).
    fn stamp(&mut self, key: Key) {
        self.next += 1;
        self.born.entry(key).or_insert(self.next);
    }

    fn remove(&mut self, key: &Key) {
        self.store.remove(&key.0, &key.1, &key.2);
        self.born.remove(key);
    }

    /// Drop every cookie expired at `now`.
    fn purge(&mut self, now: u64) {
        let gone: Vec<Key> = (self.store.iter_any())
            .filter(|c| c.expires_by(&at(now)))
            .map(key)
            .collect();
        gone.iter().for_each(|k| self.remove(k));
    }

    /// The cookies alive at `now`, oldest first.
    fn live(&self, now: u64) -> Vec<&Cookie<'static>> {
        let mut live: Vec<_> = (self.store.iter_any())
            .filter(|c| !c.expires_by(&at(now)))
            .collect();
        live.sort_by_cached_key(|c| self.born.get(&key(c)).copied());
        live
    }
}

/// The run's cookies, shared with the HTTP client.
#[derive(Default)]
pub struct Jar {
    cookies: Mutex<Cookies>,
}

impl fmt::Debug for Jar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.lock().born.len();
        f.debug_struct("Jar").field("cookies", &count).finish()
    }
}

impl Jar {
    /// A jar with the cookies of a Netscape cookies.txt, or empty.
    pub fn load(path: Option<&Path>) -> Result<Self, CookieError> {
        let Some(path) = path else {
            return Ok(Jar::default());
        };
        let bytes = std::fs::read(path).map_err(|source| CookieError::Io {
            what: "cookie file",
            path: path.to_path_buf(),
            source,
        })?;
        let text = String::from_utf8_lossy(&bytes);
        Ok(Jar::from_cookies(parse_netscape(&text, path, unix_now())?))
    }

    /// Write every unexpired cookie to `path` in Netscape format.
    ///
    /// The file is written beside `path` and renamed over it, so a reader
    /// never sees half a file; it is readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), CookieError> {
        let text = self.to_netscape(unix_now());
        crate::fs::write_private(path, text.as_bytes()).map_err(|source| CookieError::Io {
            what: "cookie file",
            path: path.to_path_buf(),
            source,
        })
    }

    /// A jar of these cookies; a later one with the same domain, path and
    /// name replaces the earlier one in its place.
    fn from_cookies(all: Vec<Cookie<'static>>) -> Jar {
        let mut cookies = Cookies::default();
        all.iter().for_each(|c| cookies.stamp(key(c)));
        let all = all.into_iter().map(Ok::<_, std::convert::Infallible>);
        let Ok(store) = CookieStore::from_cookies(all, true);
        cookies.store = store;
        Jar {
            cookies: Mutex::new(cookies),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Cookies> {
        self.cookies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The Netscape lines of the cookies alive at `now`, oldest first.
    fn lines(&self, now: u64) -> Vec<String> {
        self.lock()
            .live(now)
            .into_iter()
            .map(netscape_line)
            .collect()
    }

    fn to_netscape(&self, now: u64) -> String {
        let lines: String = self.lines(now).into_iter().map(|l| l + "\n").collect();
        format!("{NETSCAPE_HEADER}\n# Written by volley.\n\n{lines}")
    }

    /// The `Cookie` header value for `url` at `now`.
    fn header_for(&self, url: &Url, now: u64) -> Option<String> {
        let secure = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        let cookies = self.lock();
        let mut matching = cookies.live(now);
        // `cookie_store` would send Secure cookies to http://localhost too.
        matching.retain(|c| {
            (secure || c.secure() != Some(true)) && c.domain.matches(url) && c.path.matches(url)
        });
        // Longer paths first (RFC 6265 5.4); the sort is stable, so older
        // cookies stay ahead among equals.
        matching.sort_by_key(|c| Reverse(c.path.len()));
        let pairs: Vec<String> = (matching.iter())
            .map(|c| match c.name() {
                "" => c.value().to_string(),
                name => format!("{name}={}", c.value()),
            })
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    /// Store the cookie of one `Set-Cookie` value received from `url` at `now`;
    /// a cookie that is invalid or not allowed for `url` is ignored, an
    /// expired one deletes its namesake.
    fn set_cookie(&self, header: &str, url: &Url, now: u64) {
        let Some(cookie) = accept(header, url, now) else {
            return;
        };
        let key = key(&cookie);
        let mut cookies = self.lock();
        cookies.purge(now);
        if cookie.expires_by(&at(now)) {
            cookies.remove(&key);
        } else if cookies.store.insert(cookie, url).is_ok() {
            cookies.stamp(key);
        }
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

/// The cookie of one `Set-Cookie` value from `url`, or `None` when it must be
/// ignored. `cookie_store` parses it (RFC 6265 5.2 and 5.3) and refuses
/// another site's `Domain`; volley's own rules are here. `Max-Age` counts from
/// `now`, the clock the jar matches with.
fn accept(header: &str, url: &Url, now: u64) -> Option<Cookie<'static>> {
    let raw = RawCookie::parse(header.to_string()).ok()?;
    // Controls (TAB too) could be neither sent back nor written to the file;
    // a Secure cookie is set over https only (`cookie_store` would take it
    // from http://localhost).
    if has_controls(raw.name())
        || has_controls(raw.value())
        || (raw.secure() == Some(true) && url.scheme() != "https")
    {
        return None;
    }
    let mut cookie = Cookie::try_from_raw_cookie(&raw, url).ok()?;
    if let CookieDomain::Suffix(domain) = &cookie.domain {
        // A bare top-level name (`com`) or a public suffix (`co.uk`,
        // `github.io`, from the Public Suffix List; `cookie_store` would need
        // the list as a file) is refused, unless it is the host itself: then
        // the cookie is host-only (RFC 6265 5.3 step 5), as for an IP address.
        let public = !domain.contains('.') || psl::suffix_str(domain) == Some(domain.as_str());
        if public || domain.parse::<IpAddr>().is_ok() {
            if url.host_str() != Some(domain.as_str()) {
                return None;
            }
            cookie.domain = CookieDomain::HostOnly(domain.clone());
        }
    }
    if let Some(age) = raw.max_age() {
        cookie.expires = match age.is_positive() {
            true => CookieExpiration::from(at(now).saturating_add(age)),
            false => CookieExpiration::from(0u64),
        };
    }
    Some(cookie)
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Unix seconds as a time `cookie_store` compares with.
pub(super) fn at(secs: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs.min(LATEST) as i64)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Whether a name or value holds a character that cannot be sent back or
/// written to a cookie file (controls, including TAB).
fn has_controls(s: &str) -> bool {
    s.chars().any(|c| c.is_control())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The tests' clock; `cookie_store` refuses to store a cookie that the
    /// real clock says has expired, so it is the real one.
    pub(super) static NOW: std::sync::LazyLock<u64> = std::sync::LazyLock::new(unix_now);

    pub(super) fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    pub(super) fn jar(text: &str) -> Jar {
        Jar::from_cookies(parse_netscape(text, Path::new("/c.txt"), *NOW).unwrap())
    }

    pub(super) fn header(jar: &Jar, u: &str) -> Option<String> {
        jar.header_for(&url(u), *NOW)
    }

    /// Every cookie in the store, expired or not.
    pub(super) fn stored(jar: &Jar) -> usize {
        jar.lock().store.iter_any().count()
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
             h\tFALSE\t/\tFALSE\t4100000000\tlater\t4\n");
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
        j.set_cookie("wide=1; Domain=co.uk", &url("http://evil.co.uk/"), *NOW);
        j.set_cookie(
            "pages=1; Domain=github.io",
            &url("http://me.github.io/"),
            *NOW,
        );
        assert_eq!(header(&j, "http://bank.co.uk/"), None);
        assert_eq!(header(&j, "http://you.github.io/"), None);
        // The registrable domain itself is fine.
        j.set_cookie(
            "ok=1; Domain=evil.co.uk",
            &url("http://www.evil.co.uk/"),
            *NOW,
        );
        assert_eq!(header(&j, "http://evil.co.uk/").as_deref(), Some("ok=1"));
    }

    #[test]
    fn set_cookie_host_only_and_domain() {
        let j = Jar::default();
        j.set_cookie(
            "sid=abc; Path=/; Max-Age=3600",
            &url("http://a.example.org/x/y"),
            *NOW,
        );
        j.set_cookie(
            "wide=1; Domain=.Example.org",
            &url("http://a.example.org/x/y"),
            *NOW,
        );
        j.set_cookie(
            "evil=1; Domain=other.org",
            &url("http://a.example.org/"),
            *NOW,
        );
        j.set_cookie("tld=1; Domain=org", &url("http://a.example.org/"), *NOW);
        j.set_cookie(
            "sub=1; Domain=b.a.example.org",
            &url("http://a.example.org/"),
            *NOW,
        );
        j.set_cookie("noequals", &url("http://a.example.org/"), *NOW);
        // Host-only, then a domain cookie whose path (none given) is the
        // directory of the request path.
        assert_eq!(
            j.lines(*NOW),
            [
                format!("a.example.org\tFALSE\t/\tFALSE\t{}\tsid\tabc", *NOW + 3600),
                ".example.org\tTRUE\t/x\tFALSE\t0\twide\t1".into(),
            ]
        );
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
        j.set_cookie(
            "a=1; Domain=127.0.0.1",
            &url("http://127.0.0.1:8080/"),
            *NOW,
        );
        j.set_cookie("b=2; Domain=0.0.1", &url("http://127.0.0.1:8080/"), *NOW);
        assert_eq!(header(&j, "http://127.0.0.1:9/"), Some("a=1".into()));
        assert_eq!(j.lines(*NOW), ["127.0.0.1\tFALSE\t/\tFALSE\t0\ta\t1"]);
    }

    #[test]
    fn a_domain_that_is_the_host_covers_its_subdomains() {
        // RFC 6265 5.3 step 6 (the jar before cookie_store made it host-only).
        let j = Jar::default();
        j.set_cookie("d=1; Domain=example.org", &url("http://example.org/"), *NOW);
        assert_eq!(header(&j, "http://www.example.org/"), Some("d=1".into()));
        // A public suffix that is the host itself: host-only (step 5).
        j.set_cookie("p=1; Domain=github.io", &url("http://github.io/"), *NOW);
        assert_eq!(header(&j, "http://github.io/"), Some("p=1".into()));
        assert_eq!(header(&j, "http://me.github.io/"), None);
    }

    #[test]
    fn set_cookie_replaces_and_deletes() {
        let j = Jar::default();
        let u = url("https://h.test/");
        j.set_cookie("a=1; Path=/", &u, *NOW);
        j.set_cookie("b=2; Path=/", &u, *NOW);
        j.set_cookie("a=3; Path=/", &u, *NOW);
        assert_eq!(header(&j, "https://h.test/"), Some("a=3; b=2".into()));
        j.set_cookie("a=; Path=/; Max-Age=0", &u, *NOW);
        assert_eq!(header(&j, "https://h.test/"), Some("b=2".into()));
        j.set_cookie(
            "b=x; Path=/; Expires=Wed, 21 Oct 2015 07:28:00 GMT",
            &u,
            *NOW,
        );
        assert_eq!(header(&j, "https://h.test/"), None);
        assert_eq!(stored(&j), 0);
    }

    #[test]
    fn max_age_wins_over_expires() {
        let j = Jar::default();
        let u = url("https://h.test/");
        j.set_cookie(
            "a=1; Expires=Wed, 21-Oct-2015 07:28:00 GMT; Max-Age=60",
            &u,
            *NOW,
        );
        let line = format!("h.test\tFALSE\t/\tFALSE\t{}\ta\t1", *NOW + 60);
        assert_eq!(j.lines(*NOW), [line]);
        j.set_cookie(
            "a=1; Max-Age=-1; Expires=Wed, 21 Oct 2099 07:28:00 GMT",
            &u,
            *NOW,
        );
        assert_eq!(stored(&j), 0);
        j.set_cookie("b=1; Expires=Wed, 21-Oct-2099 07:28:00 GMT", &u, *NOW);
        j.set_cookie("c=1; Max-Age=99999999999999999999999", &u, *NOW);
        // As good as forever: the latest time `cookie_store` keeps.
        assert_eq!(
            j.lines(*NOW),
            [
                "h.test\tFALSE\t/\tFALSE\t4096250880\tb\t1",
                &format!("h.test\tFALSE\t/\tFALSE\t{LATEST}\tc\t1"),
            ]
        );
    }

    #[test]
    fn secure_cookies_need_https_to_be_set() {
        let j = Jar::default();
        j.set_cookie("s=1; Secure", &url("http://h.test/"), *NOW);
        assert_eq!(stored(&j), 0);
        j.set_cookie("s=1; Secure; HttpOnly", &url("https://h.test/"), *NOW);
        let line = "#HttpOnly_h.test\tFALSE\t/\tTRUE\t0\ts\t1";
        assert_eq!(j.lines(*NOW), [line]);
        assert_eq!(header(&j, "http://h.test/"), None);
    }

    #[test]
    fn control_characters_are_refused() {
        let j = Jar::default();
        j.set_cookie("a=x\ty", &url("http://h.test/"), *NOW);
        assert_eq!(stored(&j), 0);
    }

    #[test]
    fn saved_file_round_trips() {
        let text = "# Netscape HTTP Cookie File\n\
             .example.com\tTRUE\t/docs\tTRUE\t4000000000\tpref\tx=y\n\
             #HttpOnly_h.test\tFALSE\t/\tFALSE\t0\ttok\tv\n\
             h.test\tFALSE\t/\tFALSE\t1000\texpired\tv\n";
        let j = jar(text);
        j.set_cookie(
            "sid=abc; Path=/; Max-Age=3600",
            &url("http://127.0.0.1:80/"),
            *NOW,
        );
        j.set_cookie("gone=1; Max-Age=10", &url("http://127.0.0.1:80/"), *NOW);
        let saved = j.to_netscape(*NOW + 100);
        let lines: Vec<&str> = saved
            .lines()
            .filter(|l| !l.is_empty() && (!l.starts_with('#') || l.starts_with("#HttpOnly_")))
            .collect();
        assert!(saved.starts_with("# Netscape HTTP Cookie File\n"));
        assert_eq!(
            lines,
            vec![
                ".example.com\tTRUE\t/docs\tTRUE\t4000000000\tpref\tx=y",
                "#HttpOnly_h.test\tFALSE\t/\tFALSE\t0\ttok\tv",
                &format!("127.0.0.1\tFALSE\t/\tFALSE\t{}\tsid\tabc", *NOW + 3600),
            ]
        );
        let again = parse_netscape(&saved, Path::new("/s"), *NOW).unwrap();
        assert_eq!(again.len(), 3);
        assert_eq!(Jar::from_cookies(again).lines(*NOW), lines);
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
