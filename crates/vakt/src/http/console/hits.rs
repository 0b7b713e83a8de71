//! How many events each rule matched lately, for the rules page: counted per minute from
//! every committed batch's traces on this node, a day kept per rule.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use vakt_core::Correlated;

/// Minutes kept per rule (a day).
const MINUTES_KEPT: usize = 24 * 60;
/// Rule names remembered at most (names of rules removed by a reload linger until then).
const RULES_MAX: usize = 10_000;

/// (minute since the epoch, events) for the minutes a rule matched, oldest first.
type Minutes = VecDeque<(i64, u64)>;

/// Per rule, the minutes it matched.
#[derive(Default)]
pub struct RuleHits(Mutex<HashMap<Arc<str>, Minutes>>);

impl RuleHits {
    /// Counts each event once for every rule its trace names.
    pub fn observe(&self, outcomes: &[Correlated], now: DateTime<Utc>) {
        let minute = now.timestamp().div_euclid(60);
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for outcome in outcomes {
            let rules: BTreeSet<&Arc<str>> = outcome
                .record
                .trace
                .iter()
                .flat_map(|entry| &entry.rules)
                .collect();
            for rule in rules {
                if !map.contains_key(rule) && map.len() >= RULES_MAX {
                    map.clear();
                }
                let minutes = map.entry(Arc::clone(rule)).or_default();
                match minutes.back_mut() {
                    Some((m, n)) if *m == minute => *n += 1,
                    _ => {
                        minutes.push_back((minute, 1));
                        if minutes.len() > MINUTES_KEPT {
                            minutes.pop_front();
                        }
                    }
                }
            }
        }
    }

    /// Events `rule` matched in the last hour and the last day.
    pub fn counts(&self, rule: &str, now: DateTime<Utc>) -> (u64, u64) {
        let minute = now.timestamp().div_euclid(60);
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(minutes) = map.get(rule) else {
            return (0, 0);
        };
        let within = |span: i64| {
            minutes
                .iter()
                .filter(|(m, _)| minute - m < span)
                .map(|(_, n)| n)
                .sum()
        };
        (within(60), within(MINUTES_KEPT as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vakt_core::{EventInput, Pipeline, PipelineConfig};

    #[test]
    fn each_event_counts_once_per_rule_within_the_hour_and_the_day() {
        let config = PipelineConfig::from_toml(
            r#"
[[rules]]
name = "disks"
when = 'check == "disk"'
severity = "critical"
category = "exception"
"#,
        )
        .unwrap_or_else(|e| panic!("{}", e.message));
        let pipeline = Pipeline::build(&config).unwrap_or_else(|e| panic!("{e:?}"));
        let now = Utc::now();
        let outcome = |check: &str| {
            let input = EventInput {
                resource: "r".into(),
                check: check.into(),
                summary: "s".into(),
                ..EventInput::default()
            };
            let prepared = pipeline.prepare(input, "test", now);
            let mut n = 0;
            pipeline.correlate(
                prepared,
                "e".into(),
                None,
                &vakt_core::silence::ActiveSilences::default(),
                &mut || {
                    n += 1;
                    format!("id{n}")
                },
            )
        };
        let hits = RuleHits::default();
        hits.observe(&[outcome("disk"), outcome("disk"), outcome("cpu")], now);
        hits.observe(&[outcome("disk")], now - chrono::Duration::hours(3));
        assert_eq!(hits.counts("disks", now), (2, 3));
        assert_eq!(hits.counts("other", now), (0, 0));
    }
}
