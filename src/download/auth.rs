//! Credentials: `--http-user`/`--http-password` for every download, and per-host
//! HTTP Basic credentials from a `.netrc` (`--netrc`, `--netrc-file`). They are
//! attached per request to the URL's own host; reqwest drops `Authorization` when
//! a redirect leaves that host, so credentials never follow to another host.
//!
//! Precedence, as curl: user info in the URL itself, then `--http-user`, then
//! the netrc entry for the URL's exact host (compared case-insensitively, ports
//! ignored), then the netrc `default` entry. A host with no entry gets nothing
//! unless `default` or `--http-user` exists.

use std::fmt;
use std::path::Path;

use reqwest::Url;

/// Why the credentials could not be read: a usage error (exit 2).
pub type AuthError = crate::fs::FileError;

/// All credentials of the run.
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    /// `--http-user` and `--http-password`, for every host.
    pub everywhere: Option<(String, Option<String>)>,
    /// Per-host entries of the netrc file (empty without one).
    netrc: Netrc,
}

impl Credentials {
    /// Read the netrc file, if given.
    ///
    /// A missing `$HOME/.netrc` (what plain `--netrc` points at) means no
    /// credentials, as with curl; any other missing or unreadable file is an
    /// error.
    /// A missing file is an error when it was named (`--netrc-file`), and no
    /// credentials at all for the default `~/.netrc` (`--netrc`), as in curl.
    pub fn load(
        everywhere: Option<(String, Option<String>)>,
        netrc: Option<&Path>,
        required: bool,
    ) -> Result<Self, AuthError> {
        let netrc = match netrc {
            None => Netrc::default(),
            Some(path) => match std::fs::read(path) {
                Ok(bytes) => Netrc::parse(&String::from_utf8_lossy(&bytes), path)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Netrc::default(),
                Err(source) => {
                    return Err(AuthError::Io {
                        what: "cannot read netrc file",
                        path: path.to_path_buf(),
                        source,
                    })
                }
            },
        };
        Ok(Credentials { everywhere, netrc })
    }

    /// The user and password to send to `url`'s host, if any.
    pub fn for_url(&self, url: &Url) -> Option<(String, Option<String>)> {
        // reqwest sends the URL's own user info; a second Authorization
        // header would be ambiguous.
        if !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        if let Some(everywhere) = &self.everywhere {
            return Some(everywhere.clone());
        }
        let host = bare_host(url)?;
        self.netrc.lookup(host)
    }

    /// Credentials for a mirror (a host the user did not give as the download's
    /// URL): only a netrc entry naming that very host; never `--http-user` or
    /// the netrc `default`, which were meant for the URL's own host.
    pub fn for_mirror(&self, url: &Url) -> Option<(String, Option<String>)> {
        if !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let host = bare_host(url)?;
        self.netrc.lookup_exact(host)
    }
}

/// The URL's host as a netrc names it: an IPv6 address without brackets.
fn bare_host(url: &Url) -> Option<&str> {
    let host = url.host_str()?;
    Some(
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host),
    )
}

/// One `machine` (or `default`) entry.
#[derive(Clone, Default, PartialEq, Eq)]
struct Entry {
    /// The host name; `None` for `default`.
    host: Option<String>,
    /// `login`.
    login: Option<String>,
    /// `password`.
    password: Option<String>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("host", &self.host)
            .field("login", &self.login)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A parsed netrc file.
#[derive(Debug, Default, Clone)]
struct Netrc {
    /// Entries in file order.
    entries: Vec<Entry>,
}

/// A keyword waiting for its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    Machine,
    Login,
    Password,
    Account,
    Macdef,
}

impl Keyword {
    fn name(self) -> &'static str {
        match self {
            Keyword::Machine => "machine",
            Keyword::Login => "login",
            Keyword::Password => "password",
            Keyword::Account => "account",
            Keyword::Macdef => "macdef",
        }
    }
}

impl Netrc {
    /// Parse netrc text; `path` only names the file in errors.
    fn parse(text: &str, path: &Path) -> Result<Netrc, AuthError> {
        let err = |line: usize, reason: String| AuthError::Parse {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let mut entries: Vec<Entry> = Vec::new();
        // A keyword whose value has not been seen yet, and its line.
        let mut pending: Option<(Keyword, usize)> = None;
        let mut in_macdef = false;
        for (index, line) in text.lines().enumerate() {
            let lineno = index + 1;
            if in_macdef {
                // A macro body runs to the first empty line.
                if line.trim().is_empty() {
                    in_macdef = false;
                }
                continue;
            }
            let tokens = split_tokens(line).map_err(|reason| err(lineno, reason))?;
            for (token, quoted) in tokens {
                if let Some((keyword, _)) = pending.take() {
                    match keyword {
                        Keyword::Machine => entries.push(Entry {
                            host: Some(token.to_ascii_lowercase()),
                            ..Entry::default()
                        }),
                        Keyword::Login | Keyword::Password => {
                            // Checked when the keyword was read.
                            let entry = entries.last_mut().expect("an entry is open");
                            let slot = if keyword == Keyword::Login {
                                &mut entry.login
                            } else {
                                &mut entry.password
                            };
                            *slot = Some(token);
                        }
                        Keyword::Account => {}
                        Keyword::Macdef => {
                            in_macdef = true;
                            break;
                        }
                    }
                    continue;
                }
                if !quoted && token.starts_with('#') {
                    break;
                }
                let keyword = match token.as_str() {
                    "machine" => Keyword::Machine,
                    "default" => {
                        entries.push(Entry::default());
                        continue;
                    }
                    "login" => Keyword::Login,
                    "password" => Keyword::Password,
                    "account" => Keyword::Account,
                    "macdef" => Keyword::Macdef,
                    other => {
                        return Err(err(
                            lineno,
                            format!(
                                "unexpected '{other}' (expected machine, default, login, \
                                 password, account or macdef)"
                            ),
                        ))
                    }
                };
                if matches!(
                    keyword,
                    Keyword::Login | Keyword::Password | Keyword::Account
                ) && entries.is_empty()
                {
                    return Err(err(
                        lineno,
                        format!(
                            "'{}' before any 'machine' or 'default' entry",
                            keyword.name()
                        ),
                    ));
                }
                pending = Some((keyword, lineno));
            }
        }
        if let Some((keyword, line)) = pending {
            return Err(err(line, format!("'{}' without a value", keyword.name())));
        }
        Ok(Netrc { entries })
    }

    /// The first entry for `host` (case-insensitive), else `default`. An
    /// entry without `login` gives nothing.
    fn lookup_exact(&self, host: &str) -> Option<(String, Option<String>)> {
        let entry = self.entries.iter().find(|e| {
            e.host
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(host))
        })?;
        Some((entry.login.clone()?, entry.password.clone()))
    }

    fn lookup(&self, host: &str) -> Option<(String, Option<String>)> {
        let exact = self.entries.iter().find(|e| {
            e.host
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(host))
        });
        let entry = exact.or_else(|| self.entries.iter().find(|e| e.host.is_none()))?;
        Some((entry.login.clone()?, entry.password.clone()))
    }
}

/// Split one line into tokens separated by whitespace. A token in double
/// quotes may hold spaces, `\"` and `\\` (curl's extension); the flag says
/// whether it was quoted.
fn split_tokens(line: &str) -> Result<Vec<(String, bool)>, String> {
    let mut tokens = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            return Ok(tokens);
        };
        let mut token = String::new();
        if first == '"' {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted string".to_string()),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => token.push('\n'),
                        Some('r') => token.push('\r'),
                        Some('t') => token.push('\t'),
                        Some(c) => token.push(c),
                        None => return Err("unterminated quoted string".to_string()),
                    },
                    Some(c) => token.push(c),
                }
            }
            tokens.push((token, true));
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                token.push(c);
            }
            tokens.push((token, false));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Netrc, AuthError> {
        Netrc::parse(text, Path::new("/x/netrc"))
    }

    fn creds(text: &str) -> Credentials {
        Credentials {
            everywhere: None,
            netrc: parse(text).unwrap(),
        }
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn pair(user: &str, pass: &str) -> Option<(String, Option<String>)> {
        Some((user.to_string(), Some(pass.to_string())))
    }

    #[test]
    fn machine_entries_match_their_exact_host_only() {
        let c = creds(
            "machine example.org login alice password s3cret\n\
             machine other.example.org\n  login bob\n  password hunter2\n",
        );
        assert_eq!(
            c.for_url(&url("https://example.org/a")),
            pair("alice", "s3cret")
        );
        assert_eq!(
            c.for_url(&url("http://EXAMPLE.org:8080/a")),
            pair("alice", "s3cret")
        );
        assert_eq!(
            c.for_url(&url("https://other.example.org/")),
            pair("bob", "hunter2")
        );
        assert_eq!(c.for_url(&url("https://sub.example.org/")), None);
        assert_eq!(c.for_url(&url("https://example.com/")), None);
    }

    #[test]
    fn default_applies_only_when_no_machine_matches() {
        let c = creds("default login anon password guest\nmachine h login u password p\n");
        assert_eq!(c.for_url(&url("http://h/")), pair("u", "p"));
        assert_eq!(c.for_url(&url("http://else/")), pair("anon", "guest"));
    }

    #[test]
    fn first_entry_for_a_host_wins_and_login_is_required() {
        let c = creds("machine h login one password 1\nmachine h login two password 2\n");
        assert_eq!(c.for_url(&url("http://h/")), pair("one", "1"));
        let c = creds("machine h password only\n");
        assert_eq!(c.for_url(&url("http://h/")), None);
        let c = creds("machine h login nopass\n");
        assert_eq!(
            c.for_url(&url("http://h/")),
            Some(("nopass".to_string(), None))
        );
    }

    #[test]
    fn http_user_wins_over_netrc_and_url_userinfo_wins_over_both() {
        let mut c = creds("machine h login u password p\n");
        c.everywhere = Some(("cli".to_string(), Some("pw".to_string())));
        assert_eq!(c.for_url(&url("http://h/")), pair("cli", "pw"));
        assert_eq!(c.for_url(&url("http://other/")), pair("cli", "pw"));
        assert_eq!(c.for_url(&url("http://x:y@h/")), None);
    }

    #[test]
    fn ipv6_hosts_match_without_brackets() {
        let c = creds("machine ::1 login u password p\n");
        assert_eq!(c.for_url(&url("http://[::1]:99/")), pair("u", "p"));
    }

    #[test]
    fn comments_account_and_macdef_are_skipped() {
        let c = creds(
            "# a comment\n\
             machine h login u # trailing comment\n\
             password \"pa ss\\\"word\" account acct\n\
             macdef init\n\
             cd /pub\n\
             machine evil login x password y\n\
             \n\
             machine k login v password w\n",
        );
        assert_eq!(c.for_url(&url("http://h/")), pair("u", "pa ss\"word"));
        assert_eq!(c.for_url(&url("http://evil/")), None);
        assert_eq!(c.for_url(&url("http://k/")), pair("v", "w"));
    }

    #[test]
    fn a_password_may_start_with_a_hash() {
        let c = creds("machine h login u password #notacomment\n");
        assert_eq!(c.for_url(&url("http://h/")), pair("u", "#notacomment"));
    }

    #[test]
    fn malformed_files_name_the_line() {
        let e = parse("machine h\nlogin u\npassword").unwrap_err();
        assert_eq!(e.to_string(), "/x/netrc:3: 'password' without a value");
        let e = parse("login u password p\n").unwrap_err();
        assert!(
            e.to_string().starts_with("/x/netrc:1: 'login' before any"),
            "{e}"
        );
        let e = parse("machine h\n\nlgoin u\n").unwrap_err();
        assert!(
            e.to_string().starts_with("/x/netrc:3: unexpected 'lgoin'"),
            "{e}"
        );
        let e = parse("machine h login \"open\n").unwrap_err();
        assert_eq!(e.to_string(), "/x/netrc:1: unterminated quoted string");
    }

    #[test]
    fn missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("netrc");
        let e = Credentials::load(None, Some(&missing), true).unwrap_err();
        assert!(matches!(e, AuthError::Io { .. }), "{e}");
        // The default ~/.netrc may be missing.
        let c = Credentials::load(None, Some(&missing), false).unwrap();
        assert_eq!(c.for_url(&url("http://h/")), None);
        let c = Credentials::load(None, None, false).unwrap();
        assert_eq!(c.for_url(&url("http://h/")), None);
    }

    #[test]
    fn passwords_are_not_in_debug_output() {
        let c = creds("machine h login u password topsecret\n");
        assert!(!format!("{c:?}").contains("topsecret"));
    }
}
