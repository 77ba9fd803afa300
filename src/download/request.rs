//! Building and sending a download's requests: what each hop of a redirect
//! chain carries (headers and credentials only to the origin they were given
//! for), following redirects, and the range and conditional headers of a try.

use reqwest::header::{ACCEPT_ENCODING, IF_RANGE, RANGE};
use reqwest::Response;

use super::state::ResumeState;
use super::{segmented, DownloadError, Downloader, Job, Tries};

/// Which of the run's clients a request goes through (see
/// [`super::http::Clients`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Small bodies and first requests: HTTP/2 where offered.
    Shared,
    /// A transfer that wants a TCP connection of its own: a split download's
    /// connection, a large body.
    Bulk,
}

impl Downloader {
    /// One hop of a request of `job` for `given` (its URL or a mirror), at
    /// `hop` (`given` itself, or where a redirect led). What the user gave goes
    /// only to the origin (scheme, host, port) it was given for: `-H` headers,
    /// `header=` options and the user info of `given` only to `given`'s
    /// origin; secrets (`Authorization`, `Cookie`, `--http-user`, the netrc
    /// `default`) only to the download's own URL's. Any other origin gets
    /// only a netrc entry naming its very host.
    pub fn request(
        &self,
        job: &Job,
        method: reqwest::Method,
        hop: &reqwest::Url,
        given: &reqwest::Url,
        lane: Lane,
    ) -> reqwest::RequestBuilder {
        let client = match lane {
            Lane::Shared => &self.clients.shared,
            Lane::Bulk => &self.clients.bulk,
        };
        let mut request = client.request(method, hop.clone());
        if !same_origin(hop, given) {
            if let Some((user, password)) = self.credentials.for_mirror(hop) {
                request = request.basic_auth(user, password);
            }
            return request;
        }
        let home = same_origin(hop, &job.spec.url);
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &self.headers {
            if home || !is_secret(k) {
                headers.append(k.clone(), v.clone());
            }
        }
        // A download's own header= replaces a -H header of the same name.
        let mut replaced = Vec::new();
        for (k, v) in job.spec.headers() {
            if home || !is_secret(k) {
                if !replaced.contains(&k) {
                    headers.remove(k);
                    replaced.push(k);
                }
                headers.append(k.clone(), v.clone());
            }
        }
        let own = headers.contains_key(reqwest::header::AUTHORIZATION);
        request = request.headers(headers);
        let credentials = if own || has_userinfo(hop) {
            // reqwest sends a URL's own user info.
            None
        } else if has_userinfo(given) {
            userinfo(given)
        } else if home {
            self.credentials.for_url(hop)
        } else {
            self.credentials.for_mirror(hop)
        };
        if let Some((user, password)) = credentials {
            request = request.basic_auth(user, password);
        }
        request
    }

    /// Send a request for `given` and follow its redirects (see
    /// [`http::Redirects`]), each hop built afresh by [`Downloader::request`]
    /// and then `extra` (range and conditional headers, the same on every hop).
    pub async fn send_following(
        &self,
        job: &Job,
        method: reqwest::Method,
        given: &reqwest::Url,
        lane: Lane,
        extra: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Response, DownloadError> {
        let mut chain: Vec<reqwest::Url> = Vec::new();
        let mut hop = given.clone();
        loop {
            let request = extra(self.request(job, method.clone(), &hop, given, lane));
            let response = request
                .send()
                .await
                .map_err(|e| DownloadError::from_reqwest(e, self.idle_timeout))?;
            chain.push(response.url().clone());
            match self.redirects.next(&chain, &response) {
                None => return Ok(response),
                Some(Err(reason)) => return Err(DownloadError::Redirect(reason)),
                Some(Ok(next)) => {
                    // Read a short body to the end, so its connection is reused.
                    if response.content_length().is_some_and(|n| n <= 16 * 1024) {
                        let _ = response.bytes().await;
                    }
                    hop = next;
                }
            }
        }
    }

    /// The range the next request asks for: `(start, end)`, `end` exclusive and
    /// `None` for "to the end of the file".
    pub(super) fn wanted_range(
        &self,
        job: &Job,
        tries: &Tries,
        connections: usize,
    ) -> Option<(u64, Option<u64>)> {
        if job.name.is_none() {
            return (tries.stdout.written > 0).then_some((tries.stdout.written, None));
        }
        match tries.resume.as_ref() {
            // The size is known from an earlier run: ask for exactly the first
            // piece of what is missing, so only missing bytes travel.
            Some(
                state @ ResumeState {
                    size: Some(size), ..
                },
            ) if state.covered() > 0 && (state.has_holes() || connections > 1) => {
                let gaps = state.gaps(*size);
                match segmented::plan(&gaps, connections, self.min_split_size).first() {
                    Some(&(s, e)) => Some((s, Some(e))),
                    // All on disk: the server's 416 confirms the size.
                    None => Some((*size, None)),
                }
            }
            Some(state) if state.contiguous() > 0 => Some((state.contiguous(), None)),
            // A ranged GET tells the size and range support without a HEAD.
            _ if connections > 1 => Some((0, None)),
            _ => None,
        }
    }

    /// The request of a try: from the current source, for `range`, with the
    /// validators and `-N`'s date that apply, through `lane`.
    pub(super) async fn send(
        &self,
        job: &Job,
        tries: &Tries,
        range: Option<(u64, Option<u64>)>,
        lane: Lane,
    ) -> Result<Response, DownloadError> {
        let url = job.source(tries.sources.current);
        // Validators are only comparable on the server that issued them.
        let if_range = tries
            .resume
            .as_ref()
            .filter(|s| s.is_from(url))
            .and_then(ResumeState::if_range);
        let since = match (tries.local, range) {
            (Some((mtime, _)), None | Some((0, _))) => Some(httpdate::fmt_http_date(mtime)),
            _ => None,
        };
        let extra = |mut request: reqwest::RequestBuilder| {
            if let Some(since) = &since {
                request = request.header(reqwest::header::IF_MODIFIED_SINCE, since);
            }
            if let Some((start, end)) = range {
                let end = end.map(|e| (e - 1).to_string()).unwrap_or_default();
                request = request
                    .header(RANGE, format!("bytes={start}-{end}"))
                    .header(ACCEPT_ENCODING, "identity");
                if let Some(v) = if_range {
                    request = request.header(IF_RANGE, v);
                }
            }
            request
        };
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(DownloadError::Interrupted),
            r = self.send_following(job, reqwest::Method::GET, url, lane, extra) => r,
        }
    }
}

/// Headers that carry secrets, sent only to the download's own origin.
pub fn is_secret(name: &reqwest::header::HeaderName) -> bool {
    use reqwest::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION};
    name == AUTHORIZATION || name == COOKIE || name == PROXY_AUTHORIZATION
}

/// Whether a URL carries a user or password.
fn has_userinfo(url: &reqwest::Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// A URL's user and password, percent-decoded (as reqwest sends them).
fn userinfo(url: &reqwest::Url) -> Option<(String, Option<String>)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    has_userinfo(url).then(|| (decode(url.username()), url.password().map(decode)))
}

/// Same scheme, host and port.
fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}
