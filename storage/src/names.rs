//! Validated names: every user-chosen name that becomes a path segment goes through here.
//!
//! A name is 1 to 128 characters of ASCII letters, digits, `_`, `-` and `.`, starting with a
//! letter or digit. That rules out `..`, `.`, separators, hidden files, whitespace and anything
//! that a shell, a URL or an object store would treat specially, on every backend alike.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest accepted name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// What a name is used for; only changes the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    FeatureGroup,
    Model,
    Alias,
    Dataset,
    Snapshot,
    RunId,
    Pipeline,
    File,
}

impl NameKind {
    fn as_str(self) -> &'static str {
        match self {
            NameKind::FeatureGroup => "feature group",
            NameKind::Model => "model",
            NameKind::Alias => "alias",
            NameKind::Dataset => "dataset",
            NameKind::Snapshot => "snapshot",
            NameKind::RunId => "run id",
            NameKind::Pipeline => "pipeline",
            NameKind::File => "file",
        }
    }
}

/// A name that is safe to use as one path segment on every backend.
///
/// ```
/// use storage::{Name, NameKind};
/// assert!(Name::new(NameKind::FeatureGroup, "origin_7d").is_ok());
/// assert!(Name::new(NameKind::FeatureGroup, "../etc").is_err());
/// assert!(Name::new(NameKind::Model, "a/b").is_err());
/// assert!(Name::new(NameKind::Alias, "").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    /// Validates `name` for use as a `kind` name.
    pub fn new(kind: NameKind, name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        match check(&name) {
            Ok(()) => Ok(Name(name)),
            Err(rule) => Err(Error::InvalidName {
                kind: kind.as_str(),
                name,
                rule,
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("must not be empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("must be at most 128 characters");
    }
    if name.contains("..") {
        return Err("must not contain '..'");
    }
    if name.contains(['/', '\\']) {
        return Err("must not contain a path separator");
    }
    let first = name.as_bytes()[0];
    if !first.is_ascii_alphanumeric() {
        return Err("must start with an ASCII letter or digit");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err("may only contain ASCII letters, digits, '_', '-' and '.'");
    }
    Ok(())
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Name::new(NameKind::File, value)
    }
}

impl From<Name> for String {
    fn from(value: Name) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_name(name: &str, ok: bool) {
        let result = Name::new(NameKind::FeatureGroup, name);
        assert_eq!(result.is_ok(), ok, "{name:?}: {result:?}");
    }

    #[test]
    fn accepts_ordinary_names() {
        for name in [
            "a",
            "origin_7d",
            "flight-delay",
            "v1.2",
            "A9",
            &"x".repeat(128),
        ] {
            check_name(name, true);
        }
    }

    #[test]
    fn rejects_names_that_escape_or_confuse_paths() {
        for name in [
            "",
            ".",
            "..",
            "../x",
            "a/..",
            "a/b",
            "a\\b",
            "/abs",
            ".hidden",
            "-flag",
            "_x",
            "a b",
            "a\nb",
            "é",
            "a..b",
            "a:b",
            "a*b",
            &"x".repeat(129),
        ] {
            check_name(name, false);
        }
    }

    #[test]
    fn error_names_kind_and_rule() {
        let err = Name::new(NameKind::Model, "a/b").unwrap_err().to_string();
        assert_eq!(
            err,
            r#"invalid model name "a/b": must not contain a path separator"#
        );
    }
}
