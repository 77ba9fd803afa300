//! How values read to people, one way for the core's messages and the
//! reporters: sizes (`--json` keeps raw byte counts) and URLs (a password in
//! one never shows).

/// Binary prefixes after bytes, in order.
const PREFIXES: [&str; 8] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"];

/// A size in binary units: `512 B`, `16.00 KiB`, `1.50 MiB`.
pub fn human_bytes(n: u64) -> String {
    let mut value = n as f64;
    if value < 1024.0 {
        return format!("{value:.0} B");
    }
    let mut prefix = 0;
    value /= 1024.0;
    while value >= 1024.0 && prefix < PREFIXES.len() - 1 {
        value /= 1024.0;
        prefix += 1;
    }
    format!("{value:.2} {}B", PREFIXES[prefix])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.00 KiB");
        assert_eq!(human_bytes(256 * 1024), "256.00 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 / 2), "1.50 MiB");
        assert_eq!(human_bytes(5 << 40), "5.00 TiB");
        // The same text as indicatif's, which the bars use for their columns.
        for n in [
            1,
            1000,
            1024,
            1536,
            1_048_575,
            1 << 20,
            123_456_789,
            u64::MAX,
        ] {
            assert_eq!(human_bytes(n), indicatif::HumanBytes(n).to_string(), "{n}");
        }
    }
}
