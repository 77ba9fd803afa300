//! The Netscape `cookies.txt` format, which `cookie_store` lacks: seven
//! TAB-separated fields per cookie (domain, include subdomains, path, secure,
//! expiry, name, value), `#HttpOnly_` before the domain of an HttpOnly cookie,
//! as curl, wget and browsers' exports write it.

use std::net::Ipv6Addr;
use std::path::Path;

use cookie_store::{Cookie, CookieDomain, CookieExpiration, CookiePath, RawCookie};
use reqwest::Url;

use super::{at, CookieError};

/// First line of a Netscape cookie file, as curl and wget write it.
pub(super) const NETSCAPE_HEADER: &str = "# Netscape HTTP Cookie File";
/// Prefix of the domain field that marks an HttpOnly cookie (curl's extension).
const HTTP_ONLY_PREFIX: &str = "#HttpOnly_";
/// Fields of one Netscape cookie line.
const NETSCAPE_FIELDS: usize = 7;
/// The Netscape line of a stored cookie (without newline).
pub(super) fn netscape_line(c: &Cookie<'_>) -> String {
    let flag = |b: bool| if b { "TRUE" } else { "FALSE" };
    let http_only = match c.http_only() {
        Some(true) => HTTP_ONLY_PREFIX,
        _ => "",
    };
    let wide = matches!(c.domain, CookieDomain::Suffix(_));
    let dot = if wide { "." } else { "" };
    let domain = String::from(&c.domain);
    let host = domain.trim_start_matches('[').trim_end_matches(']');
    let expires = match c.expires {
        CookieExpiration::AtUtc(t) => t.unix_timestamp().max(1),
        CookieExpiration::SessionEnd => 0,
    };
    let (path, secure) = (&*c.path, flag(c.secure() == Some(true)));
    let (name, value) = c.name_value();
    format!(
        "{http_only}{dot}{host}\t{}\t{path}\t{secure}\t{expires}\t{name}\t{value}",
        flag(wide)
    )
}

/// Parse a Netscape cookies.txt; expired cookies are dropped. `path` only
/// names the file in errors.
pub(super) fn parse_netscape(
    text: &str,
    path: &Path,
    now: u64,
) -> Result<Vec<Cookie<'static>>, CookieError> {
    let any = Url::parse("http://localhost/").expect("a valid URL");
    let mut cookies = Vec::new();
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
        let mut domain = domain_field.trim_start_matches('.').to_ascii_lowercase();
        if domain.is_empty() {
            return Err(err("the domain field is empty".to_string()));
        }
        if expiry != 0 && expiry <= now {
            continue;
        }
        // `cookie_store` makes a cookie from a response to some URL; its
        // domain, path and expiry are then the line's. A path that does not
        // start with `/` becomes `/`, as in curl.
        let raw = RawCookie::build((fields[5].to_string(), fields[6].to_string()))
            .secure(secure)
            .http_only(http_only)
            .build();
        let mut cookie = Cookie::try_from_raw_cookie(&raw, &any).expect("a plain cookie");
        if domain.parse::<Ipv6Addr>().is_ok() {
            domain = format!("[{domain}]");
        }
        cookie.domain = match include_subdomains || domain_field.starts_with('.') {
            true => CookieDomain::Suffix(domain),
            false => CookieDomain::HostOnly(domain),
        };
        cookie.path = CookiePath::new(fields[2], &any);
        cookie.expires = match expiry {
            0 => CookieExpiration::SessionEnd,
            t => CookieExpiration::from(at(t)),
        };
        cookies.push(cookie);
    }
    Ok(cookies)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{jar, NOW};
    use super::*;

    #[test]
    fn netscape_lines_are_parsed() {
        let j = jar("# Netscape HTTP Cookie File\n\
             \n\
             example.org\tFALSE\t/\tFALSE\t0\tsid\tabc\n\
             .example.com\tTRUE\t/docs\tTRUE\t4000000000\tpref\tx=y\n\
             #HttpOnly_h.test\tFALSE\t/\tFALSE\t0\ttok\t\r\n\
             # example.net\tFALSE\t/\tFALSE\t0\tcommented\tout\n");
        // Each stored cookie, field by field, as its Netscape line.
        assert_eq!(
            j.lines(*NOW),
            [
                "example.org\tFALSE\t/\tFALSE\t0\tsid\tabc",
                ".example.com\tTRUE\t/docs\tTRUE\t4000000000\tpref\tx=y",
                "#HttpOnly_h.test\tFALSE\t/\tFALSE\t0\ttok\t",
            ]
        );
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let err = |text: &str| {
            parse_netscape(text, Path::new("/c.txt"), *NOW)
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
}
