//! Per-host concurrency windows: additive increase, multiplicative decrease.
//!
//! Each host (`scheme://host:port`) gets a window of connections, starting at
//! `--max-per-host`. A 429, a 503 or a network error halves it (never below 1); a
//! success grows it by `1/window`, so by about one connection per window's worth of
//! successes, back up to `--max-per-host`. A `Retry-After` pauses new requests to
//! the whole host, not just the download that got it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::events::{Event, EventSender};

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
}

impl Window {
    fn limit(&self, max: usize) -> usize {
        (self.size.floor() as usize).clamp(1, max)
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
                            return HostPermit { host: self.clone() };
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

    /// A try succeeded: grow the window a little.
    pub fn success(&self) {
        let change = {
            let mut w = self.lock();
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

    /// The host pushed back (429, 503, a reset): halve the window, and pause the
    /// host for `retry_after` when it said so.
    pub fn congestion(&self, retry_after: Option<Duration>) {
        let window = {
            let mut w = self.lock();
            w.size = (w.size / 2.0).max(1.0);
            if let Some(wait) = retry_after {
                let until = Instant::now() + wait;
                w.paused_until = Some(w.paused_until.map_or(until, |p| p.max(until)));
            }
            w.limit(self.max)
        };
        self.report(window, retry_after);
    }

    /// The current number of connections allowed.
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

    fn congestion(&self, retry_after: Option<Duration>) {
        Host::congestion(self, retry_after);
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
        Hosts::new(max, tx).get(&reqwest::Url::parse("http://h:1/x").unwrap())
    }

    #[tokio::test]
    async fn window_halves_on_congestion_and_grows_back_slowly() {
        let h = host(8);
        assert_eq!(h.window(), 8);
        h.congestion(None);
        assert_eq!(h.window(), 4);
        h.congestion(None);
        h.congestion(None);
        h.congestion(None);
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
        h.congestion(Some(Duration::from_secs(2)));
        let start = Instant::now();
        let _p = h.acquire().await;
        assert!(start.elapsed() >= Duration::from_secs(2));
    }
}
