//! The alert board's logic, pure: the filter language (Prometheus matchers and free text),
//! sorting, grouping in several levels, and the counts per value the chips show.

use std::collections::BTreeMap;

use serde::Serialize;
use vakt_core::Alert;
use vakt_core::matcher::Matcher;

/// Alerts a group lists before it says "N more" (the rest is one click away, filtered).
pub const GROUP_ROWS_MAX: usize = 50;
/// Rows a table page shows.
pub const TABLE_ROWS_MAX: usize = 200;
/// Values a chip row shows per field, most frequent first.
const FACET_VALUES_MAX: usize = 12;

/// What the filter bar says: matchers on the alert's labels and fields, and words.
#[derive(Debug, Default)]
pub struct Filter {
    pub matchers: Vec<Matcher>,
    /// Lowercased; each must occur in the resource, check, summary or a label value.
    pub words: Vec<String>,
}

impl Filter {
    /// Parses `service="billing" severity=~"crit|major" disk`: a token with a matcher
    /// operator before any quote is a matcher (an error if it does not parse), anything
    /// else is a word. Quotes keep spaces inside a token.
    pub fn parse(text: &str) -> Result<Filter, String> {
        let mut filter = Filter::default();
        for token in tokens(text)? {
            let head = token.split('"').next().unwrap_or_default();
            if head.contains('=') || head.contains("!~") {
                let matcher = Matcher::parse(&token).map_err(|e| format!("in {token:?}: {e}"))?;
                filter.matchers.push(matcher);
            } else {
                filter.words.push(token.trim_matches('"').to_lowercase());
            }
        }
        Ok(filter)
    }

    /// Whether an alert passes; `labels` is [`labels_of`] the alert.
    pub fn matches(&self, alert: &Alert, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
            && self.words.iter().all(|word| {
                contains(&alert.resource, word)
                    || contains(&alert.check, word)
                    || contains(&alert.summary, word)
                    || alert.labels.values().any(|v| contains(v, word))
            })
    }
}

fn contains(haystack: &str, lowercase_word: &str) -> bool {
    haystack.to_lowercase().contains(lowercase_word)
}

/// Splits at whitespace outside double quotes (a backslash escapes inside them).
fn tokens(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in text.chars() {
        match c {
            _ if escaped => {
                current.push(c);
                escaped = false;
            }
            '\\' if quoted => {
                current.push(c);
                escaped = true;
            }
            '"' => {
                current.push(c);
                quoted = !quoted;
            }
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if quoted {
        return Err(format!("a quote is not closed in {current:?}"));
    }
    if !current.is_empty() {
        out.push(current);
    }
    Ok(out)
}

/// The names the board filters and groups on: the alert's match labels (its labels, its
/// fields, `alertname` and `instance`), and `status`, `summary` and `assignee`.
pub fn labels_of(alert: &Alert) -> BTreeMap<String, String> {
    let mut labels = alert.match_labels();
    labels.insert("status".into(), alert.status.as_str().into());
    labels.insert("summary".into(), alert.summary.clone());
    if let Some(assignee) = &alert.assignee {
        labels.insert("assignee".into(), assignee.clone());
    }
    labels
}

/// How rows are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Worst first, then most recent.
    Severity,
    LastSeen,
    FirstSeen,
    Count,
    Resource,
}

impl Sort {
    pub fn parse(text: &str) -> Sort {
        match text {
            "last_seen" => Sort::LastSeen,
            "first_seen" => Sort::FirstSeen,
            "count" => Sort::Count,
            "resource" => Sort::Resource,
            _ => Sort::Severity,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Severity => "severity",
            Sort::LastSeen => "last_seen",
            Sort::FirstSeen => "first_seen",
            Sort::Count => "count",
            Sort::Resource => "resource",
        }
    }

    pub fn apply(self, alerts: &mut [Labelled<'_>]) {
        match self {
            Sort::Severity => alerts.sort_by(|(a, _), (b, _)| {
                b.severity
                    .cmp(&a.severity)
                    .then(b.last_seen.cmp(&a.last_seen))
            }),
            Sort::LastSeen => alerts.sort_by_key(|(a, _)| std::cmp::Reverse(a.last_seen)),
            Sort::FirstSeen => alerts.sort_by_key(|(a, _)| std::cmp::Reverse(a.first_seen)),
            Sort::Count => alerts.sort_by_key(|(a, _)| std::cmp::Reverse(a.count)),
            Sort::Resource => alerts
                .sort_by(|(a, _), (b, _)| a.resource.cmp(&b.resource).then(a.check.cmp(&b.check))),
        }
    }
}

/// An alert with the names it is filtered and grouped on ([`labels_of`]).
pub type Labelled<'a> = (&'a Alert, &'a BTreeMap<String, String>);

/// An alert with its names, as the console's snapshot keeps them (computed once per read).
pub type Entry = (Alert, BTreeMap<String, String>);

/// A facet: its field, whether its values are translated, and (value, count) pairs.
pub type FacetCounts = (&'static str, bool, Vec<(String, usize)>);

/// One group of the board, and its subgroups or (at the last level) its alerts.
#[derive(Debug, Serialize)]
pub struct Group<'a> {
    pub key: String,
    /// The value, or `—` for alerts without it.
    pub value: String,
    pub count: usize,
    /// The worst severity inside, for the group's colour.
    pub severity: &'static str,
    pub children: Vec<Group<'a>>,
    #[serde(skip)]
    pub members: Vec<&'a Alert>,
    /// Alerts beyond [`GROUP_ROWS_MAX`] at the last level.
    pub more: usize,
    /// The board filtered to this group (filled in by the page).
    pub href: String,
}

/// Groups already sorted alerts by `keys`, one level per key; groups with the worst
/// severity come first, then the larger ones.
pub fn group<'a>(alerts: &[Labelled<'a>], keys: &[String]) -> Vec<Group<'a>> {
    let Some((key, rest)) = keys.split_first() else {
        return Vec::new();
    };
    let mut buckets: BTreeMap<String, Vec<Labelled<'a>>> = BTreeMap::new();
    for (alert, labels) in alerts {
        let value = labels.get(key).cloned().unwrap_or_else(|| "—".to_owned());
        buckets.entry(value).or_default().push((*alert, *labels));
    }
    let mut groups: Vec<Group<'a>> = buckets
        .into_iter()
        .map(|(value, members)| {
            let worst = members
                .iter()
                .map(|(a, _)| a.severity)
                .max()
                .map_or("info", |s| s.as_str());
            let count = members.len();
            let children = group(&members, rest);
            let more = if rest.is_empty() {
                count.saturating_sub(GROUP_ROWS_MAX)
            } else {
                0
            };
            let shown = if rest.is_empty() {
                members
                    .iter()
                    .take(GROUP_ROWS_MAX)
                    .map(|(a, _)| *a)
                    .collect()
            } else {
                Vec::new()
            };
            Group {
                key: key.clone(),
                value,
                count,
                severity: worst,
                children,
                members: shown,
                more,
                href: String::new(),
            }
        })
        .collect();
    groups.sort_by(|a, b| {
        severity_rank(b.severity)
            .cmp(&severity_rank(a.severity))
            .then(b.count.cmp(&a.count))
            .then(a.value.cmp(&b.value))
    });
    groups
}

fn severity_rank(name: &str) -> u8 {
    match name {
        "critical" => 5,
        "major" => 4,
        "minor" => 3,
        "warning" => 2,
        "info" => 1,
        _ => 0,
    }
}

/// The fields the chip rows count, and whether their values are translated.
pub const FACETS: &[(&str, bool)] = &[
    ("severity", true),
    ("category", true),
    ("status", true),
    ("source", false),
    ("assignee", false),
    ("service", false),
];

/// Counts per value of each facet field over the alerts shown, most frequent first.
pub fn facets(labels: &[&BTreeMap<String, String>]) -> Vec<FacetCounts> {
    FACETS
        .iter()
        .map(|(name, translate)| {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for l in labels {
                if let Some(v) = l.get(*name) {
                    *counts.entry(v.as_str()).or_default() += 1;
                }
            }
            let mut values: Vec<(String, usize)> =
                counts.into_iter().map(|(v, n)| (v.to_owned(), n)).collect();
            values.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            values.truncate(FACET_VALUES_MAX);
            (*name, *translate, values)
        })
        .filter(|(_, _, values)| !values.is_empty())
        .collect()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use chrono::Utc;
    use vakt_core::{AlertStatus, Severity};

    /// An open alert of `resource`'s disk in `service` (its id is `id-RESOURCE`).
    pub(in crate::http::console) fn alert(
        resource: &str,
        service: &str,
        severity: Severity,
    ) -> Alert {
        let now = Utc::now();
        let mut labels = BTreeMap::new();
        labels.insert("team".to_owned(), "core".to_owned());
        Alert {
            id: format!("id-{resource}"),
            fingerprint: vakt_core::Fingerprint::sent(resource),
            status: AlertStatus::Open,
            category: vakt_core::Category::Exception,
            severity,
            severity_max: severity,
            source: "test".into(),
            resource: resource.into(),
            check: "disk".into(),
            service: Some(service.into()),
            environment: None,
            summary: format!("{resource} disk full"),
            labels,
            count: 1,
            first_seen: now,
            last_seen: now,
            last_event_id: "e".into(),
            acknowledged_by: None,
            acknowledged_at: None,
            assignee: None,
            resolved_by: None,
            resolved_at: None,
            incident_id: None,
            expires_at: None,
            handling: Default::default(),
        }
    }

    #[test]
    fn the_filter_reads_matchers_and_words() {
        let filter = Filter::parse(r#"service="billing" severity=~"critical|major" DB01"#)
            .unwrap_or_default();
        assert_eq!(filter.matchers.len(), 2);
        assert_eq!(filter.words, ["db01"]);
        let hit = alert("db01", "billing", Severity::Critical);
        let miss = alert("db01", "billing", Severity::Warning);
        let other = alert("web1", "billing", Severity::Critical);
        assert!(filter.matches(&hit, &labels_of(&hit)));
        assert!(!filter.matches(&miss, &labels_of(&miss)));
        assert!(!filter.matches(&other, &labels_of(&other)));
        let spaced = Filter::parse(r#"summary="db01 disk full""#).unwrap_or_default();
        assert_eq!(spaced.matchers.len(), 1);
        assert!(spaced.matches(&hit, &labels_of(&hit)));
    }

    #[test]
    fn a_bad_filter_says_what_is_wrong() {
        let error = Filter::parse(r#"service=~"(" x"#).err().unwrap_or_default();
        assert!(error.contains("service=~"), "{error}");
        let error = Filter::parse(r#"service="open"#).err().unwrap_or_default();
        assert!(error.contains("quote"), "{error}");
    }

    #[test]
    fn groups_nest_and_put_the_worst_first() {
        let alerts = [
            alert("a", "billing", Severity::Warning),
            alert("b", "billing", Severity::Critical),
            alert("c", "web", Severity::Minor),
            alert("d", "web", Severity::Minor),
        ];
        let labels: Vec<_> = alerts.iter().map(labels_of).collect();
        let with: Vec<_> = alerts.iter().zip(&labels).collect();
        let groups = group(&with, &["service".into(), "severity".into()]);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].value, "billing");
        assert_eq!(groups[0].severity, "critical");
        assert_eq!(groups[0].children.len(), 2);
        assert_eq!(groups[0].children[0].value, "critical");
        assert_eq!(groups[0].children[0].members.len(), 1);
        assert_eq!(groups[1].count, 2);
        let missing = group(&with, &["rack".into()]);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].value, "—");
        assert_eq!(missing[0].count, 4);
    }

    #[test]
    fn facets_count_values_most_frequent_first() {
        let alerts = [
            alert("a", "billing", Severity::Warning),
            alert("b", "web", Severity::Warning),
            alert("c", "web", Severity::Critical),
        ];
        let labels: Vec<_> = alerts.iter().map(labels_of).collect();
        let refs: Vec<_> = labels.iter().collect();
        let found = facets(&refs);
        let severity = found.iter().find(|f| f.0 == "severity").map(|f| &f.2);
        assert_eq!(
            severity,
            Some(&vec![("warning".to_owned(), 2), ("critical".to_owned(), 1)])
        );
        assert!(found.iter().all(|f| f.0 != "assignee"), "no empty facet");
    }
}
