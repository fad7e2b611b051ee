//! [`Secret`]: a value that must never appear in logs or `Debug` output.
//! A leaf: configuration, the Twitch clients and the stores all hold
//! secrets, and none of them should depend on another for the type.

use std::fmt;

/// A credential or key. `Debug` prints `Secret(***)`; [`Secret::expose`]
/// is the one way to the value, so each use is visible in the code.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_its_value() {
        let s = Secret::new("hunter2-hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "hunter2-hunter2");
    }
}
