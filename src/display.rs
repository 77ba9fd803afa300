//! How values read to people, one way for the core's messages and the
//! reporters: sizes (`--json` keeps raw byte counts) and URLs (a password in
//! one never shows).

/// Binary units after bytes, in order.
const UNITS: [&str; 8] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

/// A size in binary units with at most three significant digits, one format
/// everywhere (rows, the total, rates, messages): `512 B`, `1.50 MiB`,
/// `37.9 MiB`, `116 MiB`, `0.99 GiB`... the next unit takes over at 1000.
pub fn human_bytes(n: u64) -> String {
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 999.5 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{} {}", three_digits(value), UNITS[unit])
}

/// A number with at most three significant digits: `1.50`, `37.9`, `116`.
fn three_digits(value: f64) -> String {
    if value < 9.995 {
        format!("{value:.2}")
    } else if value < 99.95 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

/// A rate: `1.02 MiB/s`.
pub fn human_rate(bytes_per_second: f64) -> String {
    format!("{}/s", human_bytes(bytes_per_second.max(0.0) as u64))
}

/// A duration as a done line or a summary says it: `0.42 s`, `12.3 s`,
/// `2m14s`, `1h02m07s`.
pub fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        return format!("{s:.2} s");
    }
    if s < 60.0 {
        return format!("{s:.1} s");
    }
    let whole = d.as_secs();
    let (h, m, sec) = (whole / 3600, whole / 60 % 60, whole % 60);
    if h > 0 {
        format!("{h}h{m:02}m{sec:02}s")
    } else {
        format!("{m}m{sec:02}s")
    }
}

/// A URL as volley shows it (events, messages, the summary) and records it
/// (state files): a password in it reads `***`.
pub fn redact(url: &reqwest::Url) -> String {
    if url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    let _ = shown.set_password(Some("***"));
    shown.to_string()
}

/// [`redact`] for a URL given as text, also one that does not parse: the
/// password between `:` and `@` after `://` reads `***`.
pub fn redact_text(text: &str) -> String {
    if let Ok(url) = reqwest::Url::parse(text) {
        return redact(&url);
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
            None => text.to_string(),
        },
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_have_at_most_three_significant_digits() {
        for (n, shown) in [
            (0, "0 B"),
            (999, "999 B"),
            (1000, "0.98 KiB"),
            (1024, "1.00 KiB"),
            (256 * 1024, "256 KiB"),
            (3 * 1024 * 1024 / 2, "1.50 MiB"),
            (38_800_000, "37.0 MiB"),
            (121_634_816, "116 MiB"),
            (486_539_264, "464 MiB"),
            (1_044_357, "1.00 MiB"),
            (5 << 40, "5.00 TiB"),
            (u64::MAX, "16.0 EiB"),
        ] {
            assert_eq!(human_bytes(n), shown, "{n}");
        }
        assert_eq!(human_rate(1_044_357.0), "1.00 MiB/s");
    }

    #[test]
    fn durations_read_to_the_second() {
        use std::time::Duration;
        assert_eq!(human_duration(Duration::from_millis(420)), "0.42 s");
        assert_eq!(human_duration(Duration::from_millis(12_340)), "12.3 s");
        assert_eq!(human_duration(Duration::from_secs(134)), "2m14s");
        assert_eq!(human_duration(Duration::from_secs(3727)), "1h02m07s");
    }
}
