//! Why the run's HTTP clients could not be built (a `--ca-cert`, `--cert` or
//! `--key` file, a proxy): kept apart so that the TLS setup and the client
//! builder both use it without depending on each other.

/// Why the client could not be built: always a usage error (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `--ca-cert`, `--cert` or `--key` could not be read or used.
    #[error("{flag} {path}: {reason}")]
    Tls {
        /// The flag.
        flag: &'static str,
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A proxy was refused.
    #[error("{url}: {reason}")]
    Proxy {
        /// The proxy URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// Anything else the TLS or HTTP stack refused.
    #[error("cannot set up the HTTP client: {0}")]
    Build(String),
}
