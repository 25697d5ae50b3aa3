//! Why no verdict came back from the upstream. A plain type (a leaf): the
//! RT client and the lookup produce it, the policy turns it into a
//! fallback, the decision log stores its reason.

/// Why no verdict came back. Never a clean verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream disabled (no key configured)")]
    Disabled,
    #[error("upstream timed out")]
    Timeout,
    #[error("upstream answered HTTP {0}")]
    Http(u16),
    #[error("upstream connection failed")]
    Connect,
    #[error("upstream body is not an RT verdict: {0}")]
    BadBody(BadBody),
    #[error("time budget ran out before the upstream answered")]
    Deadline,
    #[error("internal error while scoring")]
    Internal,
    #[error("upstream circuit breaker is open")]
    BreakerOpen,
    #[error("too many upstream calls in flight")]
    Busy,
}

impl UpstreamError {
    /// Outcome label of `fraudgate_upstream_requests_total` (closed set).
    pub const fn outcome(self) -> &'static str {
        match self {
            UpstreamError::Disabled => "disabled",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Http(401 | 403) => "key_refused",
            UpstreamError::Http(500..=599) => "http_5xx",
            UpstreamError::Http(_) => "http_status",
            UpstreamError::Connect => "connect_error",
            UpstreamError::BadBody(_) => "bad_body",
            UpstreamError::Deadline => "deadline",
            UpstreamError::Internal => "internal",
            UpstreamError::BreakerOpen => "breaker_open",
            UpstreamError::Busy => "busy",
        }
    }

    /// Reason a fallback decision gives (closed set).
    pub const fn reason(self) -> &'static str {
        match self {
            UpstreamError::Disabled => "upstream_disabled",
            UpstreamError::Timeout => "upstream_timeout",
            UpstreamError::Http(_) => "upstream_http_error",
            UpstreamError::Connect => "upstream_connect_error",
            UpstreamError::BadBody(_) => "upstream_bad_body",
            UpstreamError::Deadline => "deadline",
            UpstreamError::Internal => "internal_error",
            UpstreamError::BreakerOpen => "upstream_breaker_open",
            UpstreamError::Busy => "upstream_busy",
        }
    }
}

/// Why an RT answer's body is not a verdict. A byte rather than a
/// `&'static str`, so an [`UpstreamError`] is 4 bytes and a remembered
/// failure fits the verdict cache's compact slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadBody {
    ContentType,
    TooLarge,
    NotUtf8,
    NotTags,
}

impl BadBody {
    /// The words the status page and the log give.
    pub const fn as_str(self) -> &'static str {
        match self {
            BadBody::ContentType => "content type is not text",
            BadBody::TooLarge => "body too large",
            BadBody::NotUtf8 => "body is not UTF-8",
            BadBody::NotTags => "not a tag list",
        }
    }
}

impl std::fmt::Display for BadBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_body_reads_as_before_in_four_bytes() {
        assert_eq!(
            UpstreamError::BadBody(BadBody::NotUtf8).to_string(),
            "upstream body is not an RT verdict: body is not UTF-8"
        );
        assert_eq!(std::mem::size_of::<UpstreamError>(), 4);
    }
}
