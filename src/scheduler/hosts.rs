//! Per-host concurrency windows: additive increase, multiplicative decrease,
//! with a host's faults told apart from its congestion.
//!
//! Each host (`scheme://host:port`) gets a window of connections, starting at
//! `--max-per-host`. A host that says it is busy (a 429, or a 503 or other
//! retryable status with a `Retry-After`) halves it (never below 1), but at
//! most once per window's worth of requests: only a request started after the
//! last cut can cut again, as TCP cuts its window once per round trip however
//! many packets of it were lost. A reset, a stall, a short body or a bare 503
//! (no `Retry-After`) is the request's problem, not the host's: it is retried
//! without shrinking the window, unless faults come in a burst (half of the
//! host's last requests), which says the host is in trouble. Each success grows
//! the window by `1/window`, about one connection per window's worth of
//! successes, back up to `--max-per-host`. A `Retry-After` pauses new
//! requests to the whole host, not just the download that got it.
//!
//! A host's first request goes alone: until its answer arrives, the host's
//! window is one. Once volley knows the host speaks HTTP/2, the requests
//! that follow share the connection that answered instead of each opening
//! (and shaking hands on) a connection of its own; an HTTP/1.1 host waits
//! one round trip for its other connections.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::events::{Event, EventSender};

/// How many of a host's last outcomes are weighed for a burst of faults, at
/// least (more when `--max-per-host` is larger).
const RECENT_MIN: usize = 8;

/// All hosts of the run.
#[derive(Debug)]
pub struct Hosts {
    max: usize,
    events: EventSender,
    map: Mutex<HashMap<String, Arc<Host>>>,
}

impl Hosts {
    /// Windows that start at, and never grow past, `max`.
    pub fn new(max: usize, events: EventSender) -> Self {
        Hosts {
            max,
            events,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The host of a URL.
    pub fn get(&self, url: &reqwest::Url) -> Arc<Host> {
        let key = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let key = format!("{}://{key}", url.scheme());
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Host {
                    name: key,
                    max: self.max,
                    events: self.events.clone(),
                    state: Mutex::new(Window {
                        size: self.max as f64,
                        in_flight: 0,
                        paused_until: None,
                        cuts: 0,
                        recent: VecDeque::new(),
                        answered: false,
                    }),
                    freed: Notify::new(),
                })
            })
            .clone()
    }
}

#[derive(Debug)]
struct Window {
    /// Allowed connections, fractional so that increases can be gradual.
    size: f64,
    in_flight: usize,
    paused_until: Option<Instant>,
    /// How many times the window was cut: the generation of the requests
    /// started since.
    cuts: u64,
    /// The last outcomes, `true` for a fault.
    recent: VecDeque<bool>,
    /// The host's first request was answered (or failed): the window opens.
    answered: bool,
}

impl Window {
    fn limit(&self, max: usize) -> usize {
        if !self.answered {
            return 1;
        }
        (self.size.floor() as usize).clamp(1, max)
    }

    fn remember(&mut self, fault: bool, max: usize) {
        let keep = max.max(RECENT_MIN);
        if self.recent.len() == keep {
            self.recent.pop_front();
        }
        self.recent.push_back(fault);
    }

    /// Whether half of the last outcomes (a full memory of them) were faults.
    fn faults_in_a_burst(&self, max: usize) -> bool {
        let faults = self.recent.iter().filter(|&&f| f).count();
        self.recent.len() >= max.max(RECENT_MIN) && faults * 2 >= self.recent.len()
    }
}

/// One host's window.
#[derive(Debug)]
pub struct Host {
    name: String,
    max: usize,
    events: EventSender,
    state: Mutex<Window>,
    freed: Notify,
}

/// A connection slot of a host; dropping it frees the slot.
#[derive(Debug)]
pub struct HostPermit {
    host: Arc<Host>,
    generation: u64,
}

impl HostPermit {
    /// The window's generation when this slot was taken (see [`Host::busy`]).
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl Drop for HostPermit {
    fn drop(&mut self) {
        self.host.lock().in_flight -= 1;
        // One slot freed: wake one waiter (a dropped waiter passes it on).
        self.host.freed.notify_one();
    }
}

impl Host {
    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for a slot in the window and for any pause to end.
    pub async fn acquire(self: &Arc<Self>) -> HostPermit {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let pause = {
                let mut w = self.lock();
                match w.paused_until {
                    Some(until) if until > Instant::now() => Some(until),
                    _ => {
                        w.paused_until = None;
                        if w.in_flight < w.limit(self.max) {
                            w.in_flight += 1;
                            return HostPermit {
                                host: self.clone(),
                                generation: w.cuts,
                            };
                        }
                        None
                    }
                }
            };
            match pause {
                Some(until) => tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = &mut freed => {}
                },
                None => freed.await,
            }
        }
    }

    /// The host answered a request (or the request ended without an answer):
    /// its window opens, if it was still waiting for its first answer.
    pub fn answered(&self) {
        let opened = {
            let mut w = self.lock();
            !std::mem::replace(&mut w.answered, true)
        };
        if opened {
            self.freed.notify_waiters();
        }
    }

    /// A try succeeded: grow the window a little.
    pub fn success(&self) {
        let change = {
            let mut w = self.lock();
            w.remember(false, self.max);
            let before = w.limit(self.max);
            w.size = (w.size + 1.0 / w.size).min(self.max as f64);
            let after = w.limit(self.max);
            (after != before).then_some(after)
        };
        if let Some(window) = change {
            self.report(window, None);
            self.freed.notify_waiters();
        }
    }

    /// The host said it is busy (429, or a Retry-After) to a request started in window
    /// generation `since`: halve the window, unless it was cut after that
    /// request started; pause the host for `retry_after` when it said so.
    pub fn busy(&self, since: u64, retry_after: Option<Duration>) {
        let report = {
            let mut w = self.lock();
            w.remember(false, self.max);
            let cut = Self::cut(&mut w, since);
            if let Some(wait) = retry_after {
                let until = Instant::now() + wait;
                w.paused_until = Some(w.paused_until.map_or(until, |p| p.max(until)));
            }
            (cut || retry_after.is_some()).then(|| w.limit(self.max))
        };
        if let Some(window) = report {
            self.report(window, retry_after);
        }
    }

    /// A connection of a request started in generation `since` failed (a
    /// reset, a stall, a short body, a refused connection): the host's
    /// window shrinks only when faults come in a burst.
    pub fn fault(&self, since: u64) {
        let report = {
            let mut w = self.lock();
            w.remember(true, self.max);
            (w.faults_in_a_burst(self.max) && Self::cut(&mut w, since)).then(|| w.limit(self.max))
        };
        if let Some(window) = report {
            self.report(window, None);
        }
    }

    /// Halve the window, once per generation; `true` when it was cut.
    fn cut(w: &mut Window, since: u64) -> bool {
        if since < w.cuts {
            return false;
        }
        w.size = (w.size / 2.0).max(1.0);
        w.cuts += 1;
        true
    }

    /// The current number of connections allowed.
    #[cfg(test)]
    pub fn window(&self) -> usize {
        self.lock().limit(self.max)
    }

    fn report(&self, window: usize, paused: Option<Duration>) {
        self.events.send(Event::HostWindow {
            host: self.name.clone(),
            window,
            paused,
        });
    }
}

impl crate::download::Slots for Arc<Host> {
    type Permit = HostPermit;

    fn acquire(&self) -> impl std::future::Future<Output = HostPermit> + Send {
        Host::acquire(self)
    }

    fn generation(permit: &HostPermit) -> u64 {
        permit.generation()
    }

    fn busy(&self, since: u64, retry_after: Option<Duration>) {
        Host::busy(self, since, retry_after);
    }

    fn fault(&self, since: u64) {
        Host::fault(self, since);
    }

    fn answered(&self) {
        Host::answered(self);
    }

    fn success(&self) {
        Host::success(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(max: usize) -> Arc<Host> {
        let (tx, _rx) = EventSender::channel();
        let h = Hosts::new(max, tx).get(&reqwest::Url::parse("http://h:1/x").unwrap());
        h.answered();
        h
    }

    /// The generation a request started now would have.
    fn now(h: &Arc<Host>) -> u64 {
        h.lock().cuts
    }

    #[tokio::test]
    async fn window_halves_on_congestion_and_grows_back_slowly() {
        let h = host(8);
        assert_eq!(h.window(), 8);
        h.busy(now(&h), None);
        assert_eq!(h.window(), 4);
        h.busy(now(&h), None);
        h.busy(now(&h), None);
        h.busy(now(&h), None);
        assert_eq!(h.window(), 1, "never below one");
        h.success();
        assert_eq!(h.window(), 2);
        h.success();
        assert_eq!(h.window(), 2, "additive: about one per window of successes");
        for _ in 0..100 {
            h.success();
        }
        assert_eq!(h.window(), 8, "never above the maximum");
    }

    #[tokio::test]
    async fn permits_respect_the_window() {
        let h = host(2);
        let a = h.acquire().await;
        let _b = h.acquire().await;
        let third = tokio::time::timeout(Duration::from_millis(50), h.acquire()).await;
        assert!(third.is_err(), "a third connection must wait");
        drop(a);
        let third = tokio::time::timeout(Duration::from_millis(500), h.acquire()).await;
        assert!(third.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_pauses_the_whole_host() {
        let h = host(4);
        h.busy(now(&h), Some(Duration::from_secs(2)));
        let start = Instant::now();
        let _p = h.acquire().await;
        assert!(start.elapsed() >= Duration::from_secs(2));
    }

    #[tokio::test]
    async fn busy_answers_to_one_window_of_requests_cut_it_once() {
        let h = host(16);
        // Sixteen requests in flight, all answered 429: one cut.
        let permits: Vec<_> = futures_util::future::join_all((0..16).map(|_| h.acquire())).await;
        for p in &permits {
            h.busy(p.generation(), None);
        }
        assert_eq!(h.window(), 8);
        drop(permits);
        // A request started after the cut may cut again.
        let p = h.acquire().await;
        h.busy(p.generation(), None);
        assert_eq!(h.window(), 4);
    }

    #[tokio::test]
    async fn scattered_faults_leave_the_window_and_a_burst_cuts_it() {
        let h = host(16);
        // One request in seven fails (a reset, a stall): the window stays.
        for i in 0..700 {
            if i % 7 == 0 {
                h.fault(now(&h));
            } else {
                h.success();
            }
        }
        assert_eq!(h.window(), 16);
        // Most requests fail: the host is in trouble.
        for _ in 0..16 {
            h.fault(now(&h));
        }
        assert!(
            h.window() < 16,
            "a burst of faults did not shrink the window"
        );
    }

    #[tokio::test]
    async fn a_new_host_takes_one_request_until_it_answers() {
        let (tx, _rx) = EventSender::channel();
        let h = Hosts::new(8, tx).get(&reqwest::Url::parse("https://h/x").unwrap());
        let first = h.acquire().await;
        let second = tokio::time::timeout(Duration::from_millis(50), h.acquire()).await;
        assert!(
            second.is_err(),
            "a second request went before the first answer"
        );
        h.answered();
        let more = futures_util::future::join_all((0..7).map(|_| h.acquire()));
        let more = tokio::time::timeout(Duration::from_millis(500), more).await;
        assert_eq!(more.expect("the window opened").len(), 7);
        drop(first);
    }
}
