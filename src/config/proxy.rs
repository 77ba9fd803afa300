//! Which proxy each download goes through, as curl decides it: `--proxy` (or
//! the `proxy` key), else the environment (`http_proxy` for http URLs,
//! `HTTPS_PROXY` or `https_proxy` for https ones, `ALL_PROXY` or `all_proxy`
//! for both); `--noproxy` (or the `noproxy` key, or `NO_PROXY`/`no_proxy`)
//! names the hosts that go direct. A proxy volley cannot use is a usage error
//! naming where it came from, never a silent direct connection.

use reqwest::Url;

use super::ConfigError;

/// The schemes a proxy URL may have.
pub const SCHEMES: [&str; 6] = ["http", "https", "socks4", "socks4a", "socks5", "socks5h"];

/// A proxy, and where it was given (`--proxy`, `HTTPS_PROXY`, ...), for
/// messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// The proxy.
    pub url: Url,
    /// The flag, key or variable it came from.
    pub from: String,
}

/// The proxies of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxies {
    /// For `http://` URLs.
    pub http: Option<ProxyUrl>,
    /// For `https://` URLs.
    pub https: Option<ProxyUrl>,
    /// Hosts, domains (and their subdomains), IP addresses or ranges, or `*`,
    /// that go direct (curl's `NO_PROXY` rules).
    pub no_proxy: Option<String>,
}

impl Proxies {
    /// The proxy a request to `url` goes through, if any (the `--noproxy`
    /// list applied with curl's rules: a name matches itself and its
    /// subdomains, an address or a range its addresses, `*` everything).
    pub fn for_url(&self, url: &Url) -> Option<&ProxyUrl> {
        let proxy = match url.scheme() {
            "https" => self.https.as_ref(),
            _ => self.http.as_ref(),
        }?;
        let host = url
            .host_str()?
            .trim_start_matches('[')
            .trim_end_matches(']');
        let direct = self.no_proxy.as_deref().is_some_and(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .any(|entry| matches_no_proxy(entry, host))
        });
        (!direct).then_some(proxy)
    }
}

/// Whether a `NO_PROXY` entry covers `host`.
fn matches_no_proxy(entry: &str, host: &str) -> bool {
    use std::net::IpAddr;
    if entry == "*" {
        return true;
    }
    let entry = entry.trim_start_matches('[').trim_end_matches(']');
    if let Some((net, bits)) = entry.split_once('/') {
        let (Ok(net), Ok(bits), Ok(ip)) = (
            net.parse::<IpAddr>(),
            bits.parse::<u32>(),
            host.parse::<IpAddr>(),
        ) else {
            return false;
        };
        return match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) if bits <= 32 => {
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) if bits <= 128 => {
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        };
    }
    let entry = entry.trim_start_matches('.').to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    host == entry || host.ends_with(&format!(".{entry}"))
}

/// Resolve the proxies from the flag or key (`given`, with the name it came
/// from; an empty value means no proxy at all), `--noproxy` or its key, and
/// the environment through `env`.
pub fn resolve(
    given: Option<(String, String)>,
    noproxy: Option<String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Proxies, ConfigError> {
    let var = |names: &[&'static str]| {
        names.iter().find_map(|&name| {
            env(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (v, name.to_string()))
        })
    };
    let no_proxy = noproxy
        .or_else(|| var(&["NO_PROXY", "no_proxy"]).map(|(v, _)| v))
        .filter(|v| !v.trim().is_empty());
    let (http, https) = match given {
        // `--proxy ""`: no proxy, whatever the environment says.
        Some((value, _)) if value.trim().is_empty() => (None, None),
        Some((value, from)) => {
            let proxy = parse(&value, &from)?;
            (Some(proxy.clone()), Some(proxy))
        }
        None => {
            let all = var(&["ALL_PROXY", "all_proxy"]);
            // Only the lower-case http_proxy, as curl: a CGI program gets
            // HTTP_PROXY from a request's `Proxy:` header.
            let http = var(&["http_proxy"]).or_else(|| all.clone());
            let https = var(&["HTTPS_PROXY", "https_proxy"]).or(all);
            (
                http.map(|(v, from)| parse(&v, &from)).transpose()?,
                https.map(|(v, from)| parse(&v, &from)).transpose()?,
            )
        }
    };
    Ok(Proxies {
        http,
        https,
        no_proxy,
    })
}

/// Parse and check one proxy URL; without a scheme it is `http://`, as curl
/// takes it.
pub fn parse(value: &str, from: &str) -> Result<ProxyUrl, ConfigError> {
    let text = value.trim();
    let text = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    let shown = crate::display::redact_text(&text);
    let bad = |reason: String| ConfigError::Invalid {
        what: from.to_string(),
        message: format!("'{shown}' {reason}"),
    };
    let url = Url::parse(&text).map_err(|e| {
        bad(format!(
            "is not a proxy URL ({e}); e.g. http://proxy:3128 or socks5h://127.0.0.1:1080"
        ))
    })?;
    if !SCHEMES.contains(&url.scheme()) {
        return Err(bad(format!(
            "has the scheme {}, which volley cannot use; a proxy is {}",
            url.scheme(),
            SCHEMES.join(", ")
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("names no host".into()));
    }
    Ok(ProxyUrl {
        url,
        from: from.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_env as env;

    fn url_of(p: &Option<ProxyUrl>) -> Option<String> {
        p.as_ref().map(|p| p.url.to_string())
    }

    #[test]
    fn the_flag_wins_over_the_environment() {
        let p = resolve(
            Some(("socks5h://127.0.0.1:1080".into(), "--proxy".into())),
            None,
            env(&[("ALL_PROXY", "http://other:1")]),
        )
        .unwrap();
        assert_eq!(url_of(&p.http).as_deref(), Some("socks5h://127.0.0.1:1080"));
        assert_eq!(p.http, p.https);
        let none = resolve(
            Some((String::new(), "--proxy".into())),
            None,
            env(&[("ALL_PROXY", "http://other:1")]),
        )
        .unwrap();
        assert_eq!(none.http, None);
        assert_eq!(none.https, None);
    }

    #[test]
    fn the_environment_as_curl_reads_it() {
        let p = resolve(
            None,
            None,
            env(&[
                ("HTTP_PROXY", "http://ignored:1"),
                ("https_proxy", "http://secure:2"),
                ("all_proxy", "socks5://all:3"),
                ("no_proxy", "localhost,.internal"),
            ]),
        )
        .unwrap();
        // HTTP_PROXY (upper case) is not read; all_proxy serves http.
        assert_eq!(url_of(&p.http).as_deref(), Some("socks5://all:3"));
        assert_eq!(url_of(&p.https).as_deref(), Some("http://secure:2/"));
        assert_eq!(p.https.unwrap().from, "https_proxy");
        assert_eq!(p.no_proxy.as_deref(), Some("localhost,.internal"));
        // --noproxy wins over NO_PROXY.
        let p = resolve(None, Some("*".into()), env(&[("NO_PROXY", "a")])).unwrap();
        assert_eq!(p.no_proxy.as_deref(), Some("*"));
    }

    #[test]
    fn an_unusable_proxy_is_an_error_naming_its_source() {
        for (value, says) in [
            ("gopher://127.0.0.1:1", "gopher"),
            ("http://", "host"),
            ("http://h:99999", "not a proxy URL"),
            ("socks5://user:s3cret@h:notaport", "not a proxy URL"),
        ] {
            let e = resolve(Some((value.into(), "--proxy".into())), None, env(&[]))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("--proxy"), "{e}");
            assert!(e.contains(says), "{value}: {e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
        let e = resolve(None, None, env(&[("ALL_PROXY", "ftp://h:21")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("ALL_PROXY"), "{e}");
        // host:port without a scheme is http, as curl takes it.
        let p = parse("proxy.example:3128", "--proxy").unwrap();
        assert_eq!(p.url.as_str(), "http://proxy.example:3128/");
    }

    #[test]
    fn no_proxy_follows_curls_rules() {
        let p = resolve(
            Some(("http://proxy:3128".into(), "--proxy".into())),
            Some("example.org, .internal, 10.0.0.0/8, ::1, 127.0.0.1".into()),
            env(&[]),
        )
        .unwrap();
        let via = |u: &str| p.for_url(&Url::parse(u).unwrap()).is_some();
        assert!(!via("http://example.org/a"));
        assert!(!via("https://www.example.org/a"));
        assert!(via("http://notexample.org/a"));
        assert!(!via("http://a.internal/x"));
        assert!(!via("http://10.2.3.4/x"));
        assert!(via("http://11.2.3.4/x"));
        assert!(!via("http://[::1]:8080/x"));
        assert!(!via("http://127.0.0.1:8080/x"));
        let all = resolve(
            Some(("http://proxy:3128".into(), "--proxy".into())),
            Some("*".into()),
            env(&[]),
        )
        .unwrap();
        assert!(all.for_url(&Url::parse("http://h/").unwrap()).is_none());
    }
}
