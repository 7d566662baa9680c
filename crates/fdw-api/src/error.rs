/// What kind of failure, which decides the SQLSTATE the core reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// HV00D: an option name the wrapper does not know.
    InvalidOptionName,
    /// HV024: an option value that does not parse.
    InvalidOptionValue,
    /// HV00J: a required option is missing.
    MissingOption,
    /// HV002: the query lacks a qual the remote side needs (a time range, say).
    MissingQual,
    /// HV004: a remote value does not fit the column's declared type.
    InvalidDataType,
    /// 22003: a number does not fit the column's type.
    OutOfRange,
    /// HV00N: the remote side cannot be reached (DNS, refused, TLS, timeout connecting).
    Connection,
    /// 28000: the remote side refused our credentials.
    Authorization,
    /// HV00M: the remote side answered with something that is not a valid reply.
    BadReply,
    /// HV000: the remote side reported an error, or gave up (rate limits, timeouts).
    Remote,
    /// 0A000: the query asks for something the wrapper cannot do.
    NotSupported,
    /// XX000: a bug: a panic inside the wrapper, caught.
    Internal,
}

/// An error a wrapper reports. The core turns it into a Postgres ERROR in one place, with the
/// SQLSTATE of its kind and every secret option value masked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FdwError {
    pub kind: ErrorKind,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl FdwError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        FdwError {
            kind,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Replace every occurrence of each secret with `********`.
    pub fn masked(mut self, secrets: &[&str]) -> Self {
        self.message = mask(&self.message, secrets);
        self.detail = self.detail.map(|d| mask(&d, secrets));
        self.hint = self.hint.map(|h| mask(&h, secrets));
        self
    }
}

/// `text` with every occurrence of each secret replaced by `********`: the one masking rule
/// for errors, EXPLAIN and logs. A short secret masks its letters wherever they stand: a
/// garbled message rather than a leaked password (an empty secret masks nothing).
pub fn mask(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if out.contains(secret) {
            out = out.replace(secret, "********");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_secrets_everywhere() {
        let e = FdwError::new(ErrorKind::Remote, "GET https://x?key=sk_test_123 failed")
            .with_detail("sent Bearer sk_test_123")
            .with_hint("check sk_test_123")
            .masked(&["sk_test_123"]);
        assert_eq!(e.message, "GET https://x?key=******** failed");
        assert_eq!(e.detail.as_deref(), Some("sent Bearer ********"));
        assert_eq!(e.hint.as_deref(), Some("check ********"));
    }

    #[test]
    fn a_short_secret_is_masked_too_and_an_empty_one_masks_nothing() {
        assert_eq!(
            mask("password pw rejected", &["pw"]),
            "password ******** rejected"
        );
        assert_eq!(mask("nothing to hide", &[""]), "nothing to hide");
    }
}
