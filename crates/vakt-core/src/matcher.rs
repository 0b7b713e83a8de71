//! Label matchers as Prometheus writes them (`name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`), used by silences and filters.
//!
//! A missing label matches as the empty string, as in Alertmanager. Regular expressions are
//! anchored at both ends.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// A matcher as the Alertmanager API carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatcherSpec {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl fmt::Display for MatcherSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match (self.is_equal, self.is_regex) {
            (true, false) => "=",
            (false, false) => "!=",
            (true, true) => "=~",
            (false, true) => "!~",
        };
        write!(f, "{}{op}{:?}", self.name, self.value)
    }
}

/// A checked, compiled matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub spec: MatcherSpec,
    regex: Option<Regex>,
}

/// Why a matcher is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("{0:?} is not a valid label name")]
    LabelName(String),
    #[error("invalid regular expression {value:?}: {reason}")]
    Regex { value: String, reason: String },
    #[error("{0:?} is not a matcher like name=\"value\"")]
    NotAMatcher(String),
    #[error("{0:?}: expected =, !=, =~ or !~ after the label name")]
    Operator(String),
    #[error("{0:?}: unterminated or badly escaped value")]
    Value(String),
}

impl Matcher {
    /// Checks a spec: a valid label name and, for regex matchers, a valid expression.
    pub fn new(spec: MatcherSpec) -> Result<Matcher, MatcherError> {
        if !valid_label_name(&spec.name) {
            return Err(MatcherError::LabelName(spec.name));
        }
        let regex = if spec.is_regex {
            Some(
                Regex::new(&format!("^(?:{})$", spec.value)).map_err(|e| MatcherError::Regex {
                    value: spec.value.clone(),
                    reason: e.to_string(),
                })?,
            )
        } else {
            None
        };
        Ok(Matcher { spec, regex })
    }

    /// Parses one matcher in Prometheus' syntax; the value may be quoted or bare.
    pub fn parse(text: &str) -> Result<Matcher, MatcherError> {
        let text = text.trim();
        let at = text
            .find(['=', '!'])
            .ok_or_else(|| MatcherError::NotAMatcher(text.to_owned()))?;
        let name = text[..at].trim();
        let rest = &text[at..];
        let (is_equal, is_regex, value) = if let Some(v) = rest.strip_prefix("=~") {
            (true, true, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (false, true, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (false, false, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (true, false, v)
        } else {
            return Err(MatcherError::Operator(text.to_owned()));
        };
        let value = unquote(value.trim()).ok_or_else(|| MatcherError::Value(text.to_owned()))?;
        Matcher::new(MatcherSpec {
            name: name.to_owned(),
            value,
            is_regex,
            is_equal,
        })
    }

    /// Parses `{a="b", c=~"d"}` or `a="b",c=~"d"` into matchers.
    pub fn parse_list(text: &str) -> Result<Vec<Matcher>, MatcherError> {
        let inner = text.trim();
        let inner = inner
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .unwrap_or(inner);
        split_outside_quotes(inner)
            .into_iter()
            .filter(|part| !part.trim().is_empty())
            .map(Matcher::parse)
            .collect()
    }

    /// Whether `labels` satisfy this matcher (a missing label is the empty string).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.spec.name).map_or("", String::as_str);
        let hit = match &self.regex {
            Some(regex) => regex.is_match(value),
            None => value == self.spec.value,
        };
        hit == self.spec.is_equal
    }

    /// Whether this matcher matches a missing label.
    pub fn matches_empty(&self) -> bool {
        self.matches(&BTreeMap::new())
    }
}

/// Prometheus label names: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn valid_label_name(name: &str) -> bool {
    // Bytes, not chars: every allowed character is ASCII, and a byte of any other character
    // is refused as its char would be (a peer's every label is checked).
    match name.as_bytes() {
        [first, rest @ ..] => {
            (first.is_ascii_alphabetic() || *first == b'_')
                && rest.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        }
        [] => false,
    }
}

fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else {
        return Some(value.to_owned());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                other => out.push(other),
            },
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

fn split_outside_quotes(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_are_prometheus_names() {
        for name in ["a", "_", "alertname", "A_1", "__name__", "z9"] {
            assert!(valid_label_name(name), "{name}");
        }
        for name in [
            "", "1a", "a-b", "a b", "a.b", "\u{e9}", "a\u{e9}", "\u{212a}", "a\0",
        ] {
            assert!(!valid_label_name(name), "{name:?}");
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_and_matches_every_operator() {
        let l = labels(&[("alertname", "DiskFull"), ("instance", "db01:9100")]);
        for (text, expected) in [
            ("alertname=\"DiskFull\"", true),
            ("alertname=DiskFull", true),
            ("alertname!=\"DiskFull\"", false),
            ("instance=~\"db0.*\"", true),
            ("instance=~\"db0\"", false),
            ("instance!~\"web.*\"", true),
            ("team=\"\"", true),
            ("team!=\"\"", false),
        ] {
            let m = Matcher::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(m.matches(&l), expected, "{text}");
        }
        assert!(Matcher::parse("1abc=\"x\"").is_err());
        assert!(Matcher::parse("a=~\"(\"").is_err());
        assert!(Matcher::parse("a").is_err());
        assert!(Matcher::parse("a=\"unterminated").is_err());
    }

    #[test]
    fn parses_lists_with_commas_in_values() {
        let list = Matcher::parse_list("{alertname=\"A\", summary=~\"x, y\"}").expect("parses");
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].spec.value, "x, y");
        assert_eq!(list[1].spec.to_string(), "summary=~\"x, y\"");
    }
}
