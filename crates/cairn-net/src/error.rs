//! The crate's one error type, at the transport boundary.

use std::path::PathBuf;
use std::time::Duration;

use crate::frame::FrameError;

/// Why a transport operation failed.
///
/// The variants sort failures by what a caller does next: [`NetError::Refused`] and
/// [`NetError::Handshake`] are configuration problems (wrong CA, wrong kind of certificate)
/// that retrying will not fix; [`NetError::Connect`], [`NetError::ConnectionLost`],
/// [`NetError::Timeout`] and [`NetError::Backoff`] are about reachability and may clear up;
/// [`NetError::Remote`] is the remote handler's own answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// An I/O error; `context` says what was being done (and names the file, if any).
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. `reading /etc/cairn/ca.pem`.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Building the TLS configuration failed (for example a key that does not match its
    /// certificate).
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// A PEM input could not be parsed or held the wrong kind of item.
    #[error("bad PEM{}: {reason}", file_suffix(.file))]
    Pem {
        /// The file it came from, if it came from one.
        file: Option<PathBuf>,
        /// What was wrong.
        reason: String,
    },
    /// A [`NetConfig`](crate::NetConfig) value is out of range.
    #[error("bad transport configuration: {0}")]
    Config(String),
    /// A connection could not be started or did not complete in time.
    #[error("connecting failed: {0}")]
    Connect(String),
    /// The TLS handshake failed on our side: the remote's certificate is not one we trust,
    /// or the two sides share no protocol.
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
    /// The remote refused us: it does not trust our certificate (another CA, or a client
    /// certificate on the peer ALPN).
    #[error("refused by the remote: {0}")]
    Refused(String),
    /// Recent attempts to connect to this address failed; no new attempt is made until the
    /// backoff ends, this long from now.
    #[error("not connecting: backing off for another {0:?} after failed attempts")]
    Backoff(Duration),
    /// The operation did not complete within its timeout.
    #[error("timed out")]
    Timeout,
    /// This endpoint has been closed.
    #[error("endpoint closed")]
    Closed,
    /// An established connection or stream broke (remote restarted, shut down, idle timeout).
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// A frame's length is above the limit; nothing larger is read or allocated.
    #[error("frame of {len} bytes is larger than the limit of {max} bytes")]
    FrameTooLarge {
        /// The length the frame declared (or would have).
        len: u64,
        /// The limit in force.
        max: usize,
    },
    /// A frame that breaks the framing rules (version, kind, truncation).
    #[error("bad frame: {0}")]
    BadFrame(String),
    /// The remote answered with an error frame: its handler's `Err`, or its complaint
    /// about our frame.
    #[error("remote error: {0}")]
    Remote(String),
}

fn file_suffix(file: &Option<PathBuf>) -> String {
    match file {
        Some(path) => format!(" in {}", path.display()),
        None => String::new(),
    }
}

impl NetError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> NetError {
        NetError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn pem(reason: impl Into<String>) -> NetError {
        NetError::Pem {
            file: None,
            reason: reason.into(),
        }
    }

    /// Attaches a file name to a PEM error that has none.
    pub(crate) fn in_file(self, path: &std::path::Path) -> NetError {
        match self {
            NetError::Pem { file: None, reason } => NetError::Pem {
                file: Some(path.to_path_buf()),
                reason,
            },
            other => other,
        }
    }
}

impl From<FrameError> for NetError {
    fn from(error: FrameError) -> NetError {
        match error {
            FrameError::TooLarge { len, max } => NetError::FrameTooLarge { len, max },
            other => NetError::BadFrame(other.to_string()),
        }
    }
}

impl From<rustls::Error> for NetError {
    fn from(error: rustls::Error) -> NetError {
        NetError::Tls(error.to_string())
    }
}
