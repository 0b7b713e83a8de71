//! The configuration file as a TOML document with spans, read a section (and a list item,
//! and a named table) at a time, so that one mistake does not hide the next: every problem
//! of a file is reported in one run, each at its `file:line:column`.
//!
//! Errors made after reading (validation of names, references, limits) say which setting
//! they are about by a path at the start of their message (`probes.root-disk: ...`,
//! `escalation_policies.p.steps[0]: ...`); `locate` finds that setting in the document, so
//! those errors point at a line too.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use vakt_core::config::ConfigError;

/// A parsed document and the sections that failed to read.
pub struct Document<'i> {
    root: DeTable<'i>,
    /// Sections with an error: what depends on them is not validated further (it would
    /// only repeat the error in other words).
    pub failed: BTreeSet<String>,
}

impl<'i> Document<'i> {
    /// Parses the TOML syntax; every syntax error is returned, not just the first.
    pub fn parse(source: &'i str) -> Result<Document<'i>, Vec<ConfigError>> {
        let (root, errors) = DeTable::parse_recoverable(source);
        if !errors.is_empty() {
            return Err(errors.iter().map(from_toml).collect());
        }
        Ok(Document {
            root: root.into_inner(),
            failed: BTreeSet::new(),
        })
    }

    /// Errors for top-level keys that are not sections of the file.
    pub fn unknown_sections(&self, known: &[&str]) -> Vec<ConfigError> {
        self.root
            .iter()
            .filter(|(key, _)| !known.contains(&key.get_ref().as_ref()))
            .map(|(key, _)| {
                ConfigError::at(
                    key.span(),
                    format!(
                        "unknown section `{}`, expected one of {}",
                        key.get_ref(),
                        known
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
            .collect()
    }

    fn value(&self, name: &str) -> Option<&Spanned<DeValue<'i>>> {
        self.root.get(name)
    }

    fn fail(&mut self, name: &str) {
        self.failed.insert(name.to_owned());
    }

    /// Whether every one of `sections` was read without an error.
    pub fn all_ok(&self, sections: &[&str]) -> bool {
        sections.iter().all(|s| !self.failed.contains(*s))
    }

    /// A whole section (`[server]`); its default when absent or broken.
    pub fn section<T: DeserializeOwned + Default>(
        &mut self,
        name: &str,
        errors: &mut Vec<ConfigError>,
    ) -> T {
        let Some(value) = self.value(name).cloned() else {
            return T::default();
        };
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(section) => section,
            Err(error) => {
                errors.push(from_toml(&error));
                self.fail(name);
                T::default()
            }
        }
    }

    /// An optional section (`[itsm]`).
    pub fn optional<T: DeserializeOwned>(
        &mut self,
        name: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Option<T> {
        let value = self.value(name).cloned()?;
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(section) => Some(section),
            Err(error) => {
                errors.push(from_toml(&error));
                self.fail(name);
                None
            }
        }
    }

    /// An array of tables (`[[rules]]`), each item read on its own, with its span.
    pub fn list<T: DeserializeOwned>(
        &mut self,
        name: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Vec<(T, Range<usize>)> {
        let Some(value) = self.value(name).cloned() else {
            return Vec::new();
        };
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            errors.push(ConfigError::at(
                span,
                format!("{name}: expected an array of tables ([[{name}]])"),
            ));
            self.fail(name);
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let item_span = item.span();
            match T::deserialize(ValueDeserializer::from(item)) {
                Ok(parsed) => out.push((parsed, item_span)),
                Err(error) => {
                    errors.push(from_toml(&error));
                    self.fail(name);
                }
            }
        }
        out
    }

    /// `list` without the spans.
    pub fn values<T: DeserializeOwned>(
        &mut self,
        name: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Vec<T> {
        self.list(name, errors)
            .into_iter()
            .map(|(v, _)| v)
            .collect()
    }

    /// A table of named tables (`[actions.NAME]`), each read on its own.
    pub fn named<T: DeserializeOwned>(
        &mut self,
        name: &str,
        errors: &mut Vec<ConfigError>,
    ) -> BTreeMap<String, Spanned<T>> {
        let Some(value) = self.value(name).cloned() else {
            return BTreeMap::new();
        };
        let span = value.span();
        let DeValue::Table(entries) = value.into_inner() else {
            errors.push(ConfigError::at(
                span,
                format!("{name}: expected a table of named tables ([{name}.NAME])"),
            ));
            self.fail(name);
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        for (key, item) in entries {
            match Spanned::<T>::deserialize(ValueDeserializer::from(item)) {
                Ok(parsed) => {
                    out.insert(key.into_inner().into_owned(), parsed);
                }
                Err(error) => {
                    errors.push(from_toml(&error));
                    self.fail(name);
                }
            }
        }
        out
    }

    /// Moves `found` (errors of the checks after reading) into `errors`, giving each that
    /// has no place the place its leading path names.
    pub fn place(&self, found: Vec<ConfigError>, errors: &mut Vec<ConfigError>) {
        for mut error in found {
            if error.span.is_none() {
                error.span = self.locate(&error.message);
            }
            errors.push(error);
        }
    }

    /// Where the setting a message's leading path names is: `ingest.queue_events_max`,
    /// `probes.root-disk` (an array item by its `name` or `id`), `escalation_policies.p.
    /// steps[0]`. The deepest part found wins; `None` when not even the section is there.
    pub fn locate(&self, message: &str) -> Option<Range<usize>> {
        let path = message.split([':', ' ']).next().filter(|p| !p.is_empty())?;
        let mut node: Option<&Spanned<DeValue<'i>>> = None;
        let mut found = None;
        for segment in split_path(path) {
            let (name, index) = segment;
            let next = match node.map(Spanned::get_ref) {
                None => self.root.get_key_value(name).map(|(k, v)| (k.span(), v)),
                Some(DeValue::Table(table)) => {
                    table.get_key_value(name).map(|(k, v)| (k.span(), v))
                }
                Some(DeValue::Array(items)) => items
                    .iter()
                    .find(|item| item_named(item, name))
                    .map(|item| (item.span(), item)),
                Some(_) => None,
            };
            let Some((span, mut value)) = next else {
                break;
            };
            found = Some(span);
            if let Some(i) = index {
                match value.get_ref() {
                    DeValue::Array(items) if i < items.len() => {
                        value = &items[i];
                        found = Some(value.span());
                    }
                    _ => break,
                }
            }
            node = Some(value);
        }
        found
    }
}

/// Every error as `file:line:column: message`, in the order of the file (what has no
/// place last).
pub fn render(mut errors: Vec<ConfigError>, file: &str, source: &str) -> Vec<String> {
    errors.sort_by_key(|e| e.span.as_ref().map_or(usize::MAX, |s| s.start));
    errors.iter().map(|e| e.render(file, source)).collect()
}

/// `a.b[2].c` as `[("a", None), ("b", Some(2)), ("c", None)]`; quotes around a name go.
fn split_path(path: &str) -> Vec<(&str, Option<usize>)> {
    path.split('.')
        .map(|segment| {
            let segment = segment.trim_matches('"');
            match segment.split_once('[') {
                Some((name, rest)) => (name, rest.strip_suffix(']').and_then(|i| i.parse().ok())),
                None => (segment, None),
            }
        })
        .collect()
}

/// Whether an array item is the table whose `name` (or `id`) is `name`.
fn item_named(item: &Spanned<DeValue<'_>>, name: &str) -> bool {
    let DeValue::Table(table) = item.get_ref() else {
        return false;
    };
    ["name", "id"].iter().any(|key| {
        table
            .get(*key)
            .is_some_and(|v| matches!(v.get_ref(), DeValue::String(s) if s == name))
    })
}

fn from_toml(error: &toml::de::Error) -> ConfigError {
    ConfigError {
        span: error.span(),
        message: error.message().trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_found_down_to_the_item() {
        let source = "[ingest]\nqueue_events_max = 0\n\n[[probes]]\nname = \"a\"\ntype = \"disk\"\n\n[[probes]]\nname = \"b\"\ntype = \"disk\"\n\n[[escalation_policies]]\nname = \"p\"\n[[escalation_policies.steps]]\nnotify = [\"user:x\"]\n[[escalation_policies.steps]]\nnotify = [\"user:ghost\"]\n";
        let doc = Document::parse(source).expect("parses");
        let line = |message: &str| {
            doc.locate(message)
                .map(|span| vakt_core::config::line_col(source, span.start).0)
        };
        assert_eq!(line("ingest.queue_events_max must be at least 1"), Some(2));
        assert_eq!(line("probes.b: type \"disk\" needs path"), Some(8));
        assert_eq!(
            line("escalation_policies.p.steps[1]: unknown user ghost"),
            Some(16)
        );
        assert_eq!(line("nowhere: x"), None);
        assert_eq!(line("probes.zzz: x"), Some(4), "the section at least");
    }

    #[test]
    fn every_syntax_error_is_reported() {
        let errors = match Document::parse("a = \nb = = 1\n[x\n") {
            Ok(_) => panic!("bad syntax parsed"),
            Err(errors) => errors,
        };
        assert!(errors.len() >= 2, "{errors:?}");
        assert!(errors.iter().all(|e| e.span.is_some()), "{errors:?}");
    }
}
