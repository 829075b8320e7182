//! Secrets that must never reach a log line or an error message.

use std::fmt;

/// A secret string (GitHub token, API key). `Debug` and `Display` print `[redacted]`; there is no
/// `Serialize`, so it cannot slip into a JSON response by accident. Read it with [`Secret::expose`]
/// at the one place that needs the value.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("ghp_abc123");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{s:?}"), "[redacted]");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            token: Secret,
        }
        let dbg = format!("{:?}", Holder { token: s.clone() });
        assert!(!dbg.contains("ghp_abc123"), "{dbg}");
        assert_eq!(s.expose(), "ghp_abc123");
    }
}
