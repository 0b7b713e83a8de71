//! Rule tests as files, as `promtool test rules` has them: events in, expected outcomes
//! out, checked against a configuration without a server (`vakt rules test --suite DIR`).
//!
//! ```toml
//! [[test]]
//! name = "a full disk is an exception and pages"
//!
//! [[test.step]]
//! event = { resource = "db01", check = "disk", summary = "/var 97%", severity = "warning", metrics = { used_pct = 97 } }
//! expect = { transition = "new_alert", category = "exception", severity = "critical", actions = ["page"] }
//!
//! [[test.step]]
//! after = "5m"
//! event = { resource = "db01", check = "disk", summary = "/var 40%", severity = "ok" }
//! expect = { transition = "resolved", status = "resolved", same_alert_as = 1 }
//! ```
//!
//! Each test starts with no alert, at `start` (default Monday 2026-01-05 10:00 UTC, so a
//! test's outcome does not depend on the day it runs), each step `after` the previous one
//! (default 1 s). Only the expectations given are checked.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use toml::Spanned;

use crate::config::{ConfigError, line_col};
use crate::pipeline::{Correlated, Pipeline};
use crate::replay::Run;
use crate::trace::TraceEntry;
use crate::{AlertStatus, Category, EventInput, Severity};

/// The transition names a step may expect (`Transition::as_str`).
const TRANSITIONS: [&str; 7] = [
    "dropped",
    "nothing_to_clear",
    "new_alert",
    "reopened",
    "updated",
    "resolved",
    "duplicate",
];

/// The status expected of an event that touches no alert (dropped, nothing to clear).
const NO_ALERT: &str = "no alert";

/// Where a test starts unless it says: a Monday morning, in UTC.
const DEFAULT_START: &str = "2026-01-05T10:00:00Z";

/// A parsed suite file.
#[derive(Debug)]
pub struct Suite {
    pub tests: Vec<Test>,
}

#[derive(Debug)]
pub struct Test {
    pub name: String,
    pub line: usize,
    pub start: DateTime<Utc>,
    pub channel: String,
    pub steps: Vec<Step>,
}

#[derive(Debug)]
pub struct Step {
    pub line: usize,
    pub after_secs: u64,
    pub input: EventInput,
    pub expect: Expect,
}

/// What a step expects; `None` is not checked.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `new_alert`, `updated`, `resolved`, `reopened`, `dropped`, `nothing_to_clear`.
    pub transition: Option<String>,
    pub dropped: Option<bool>,
    pub category: Option<String>,
    /// The event's severity after categorisation.
    pub severity: Option<String>,
    /// The alert's status after the event.
    pub status: Option<String>,
    /// Exactly the rules that matched, in rule order.
    pub rules: Option<Vec<String>>,
    /// Exactly the actions decided to run (any order), suppressed ones apart.
    pub actions: Option<Vec<String>>,
    /// Exactly the actions decided but held back (silence, window, flapping).
    pub suppressed: Option<Vec<String>>,
    /// Labels the event has after categorisation (these at least).
    pub labels: Option<BTreeMap<String, String>>,
    /// The escalation policy the alert starts climbing; `""` for none.
    pub escalation: Option<String>,
    /// Whether the event opens or joins an incident.
    pub incident: Option<bool>,
    /// The event lands on the same alert as the event of step N (1-based).
    pub same_alert_as: Option<usize>,
    /// The event lands on a different alert than the event of step N.
    pub new_alert_from: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDef {
    #[serde(default)]
    test: Vec<Spanned<TestDef>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestDef {
    name: String,
    #[serde(default)]
    start: Option<Spanned<String>>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    step: Vec<Spanned<StepDef>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepDef {
    #[serde(default)]
    after: Option<Spanned<String>>,
    event: Spanned<toml::Value>,
    #[serde(default)]
    expect: Option<Spanned<Expect>>,
}

/// `90`, `90s`, `30m`, `2h`, `1d` as seconds.
pub fn duration_secs(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number with s, m, h or d, like 2h"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?}; use s, m, h or d"
            ));
        }
    };
    Ok(n.saturating_mul(factor))
}

/// Reads a suite; every problem is listed with where it is.
pub fn parse(source: &str) -> Result<Suite, Vec<ConfigError>> {
    let file: FileDef = toml::from_str(source).map_err(|error| {
        vec![ConfigError {
            span: error.span(),
            message: error.message().to_owned(),
        }]
    })?;
    let mut errors = Vec::new();
    let mut tests = Vec::new();
    if file.test.is_empty() {
        errors.push(ConfigError {
            span: None,
            message: "no [[test]] in the file".into(),
        });
    }
    for test in file.test {
        let span = test.span();
        let test = test.into_inner();
        let start = match &test.start {
            None => DateTime::parse_from_rfc3339(DEFAULT_START).map(|t| t.with_timezone(&Utc)),
            Some(start) => {
                DateTime::parse_from_rfc3339(start.get_ref().trim()).map(|t| t.with_timezone(&Utc))
            }
        };
        let start = match (start, &test.start) {
            (Ok(start), _) => start,
            (Err(error), Some(text)) => {
                errors.push(ConfigError::at(
                    text.span(),
                    format!("start: expected an RFC 3339 time like {DEFAULT_START}: {error}"),
                ));
                continue;
            }
            (Err(error), None) => {
                errors.push(ConfigError::at(span, format!("start: {error}")));
                continue;
            }
        };
        if test.step.is_empty() {
            errors.push(ConfigError::at(
                span.clone(),
                format!("test {:?} has no [[test.step]]", test.name),
            ));
        }
        let mut steps = Vec::new();
        let count = test.step.len();
        for (index, step) in test.step.into_iter().enumerate() {
            let step_span = step.span();
            let step = step.into_inner();
            let after_secs = match &step.after {
                None => u64::from(index > 0),
                Some(after) => match duration_secs(after.get_ref()) {
                    Ok(secs) => secs,
                    Err(error) => {
                        errors.push(ConfigError::at(after.span(), format!("after: {error}")));
                        continue;
                    }
                },
            };
            let (expect, expect_span) = match step.expect {
                Some(expect) => {
                    let span = expect.span();
                    (expect.into_inner(), span)
                }
                None => (Expect::default(), step_span.clone()),
            };
            for problem in check_expect(&expect, index, count) {
                errors.push(ConfigError::at(expect_span.clone(), problem));
            }
            let event_span = step.event.span();
            let input = serde_json::to_value(step.event.get_ref())
                .map_err(|e| vec![e.to_string()])
                .and_then(|value| {
                    EventInput::from_json(index, value).map_err(|errors| {
                        errors
                            .iter()
                            .map(|e| format!("{}: {}", e.field, e.message))
                            .collect()
                    })
                });
            let input = match input {
                Ok(input) => input,
                Err(problems) => {
                    for problem in problems {
                        errors.push(ConfigError::at(
                            event_span.clone(),
                            format!("event: {problem}"),
                        ));
                    }
                    continue;
                }
            };
            steps.push(Step {
                line: line_col(source, step_span.start).0,
                after_secs,
                input,
                expect,
            });
        }
        tests.push(Test {
            name: test.name,
            line: line_col(source, span.start).0,
            start,
            channel: test.channel.unwrap_or_else(|| "test".to_owned()),
            steps,
        });
    }
    if errors.is_empty() {
        Ok(Suite { tests })
    } else {
        Err(errors)
    }
}

/// What is wrong with an expectation on its own (unknown names, steps that do not exist).
fn check_expect(expect: &Expect, index: usize, count: usize) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(t) = &expect.transition
        && !TRANSITIONS.contains(&t.as_str())
    {
        problems.push(format!(
            "expect.transition: unknown transition {t:?}, expected one of {}",
            TRANSITIONS.join(", ")
        ));
    }
    if let Some(c) = &expect.category
        && let Err(e) = Category::parse(c)
    {
        problems.push(format!("expect.category: {e}"));
    }
    if let Some(s) = &expect.severity
        && let Err(e) = Severity::parse(s)
    {
        problems.push(format!("expect.severity: {e}"));
    }
    if let Some(s) = &expect.status
        && s != NO_ALERT
        && let Err(e) = AlertStatus::parse(s)
    {
        problems.push(format!("expect.status: {e}"));
    }
    for (field, step) in [
        ("same_alert_as", expect.same_alert_as),
        ("new_alert_from", expect.new_alert_from),
    ] {
        if let Some(step) = step
            && (step == 0 || step > index)
        {
            problems.push(format!(
                "expect.{field}: step {step} is not an earlier step of this test (this is step {} of {count})",
                index + 1
            ));
        }
    }
    problems
}

/// One expectation that did not hold.
#[derive(Debug)]
pub struct Mismatch {
    /// 1-based step.
    pub step: usize,
    pub line: usize,
    pub field: &'static str,
    pub expected: String,
    pub got: String,
    /// The step's event trace, stage by stage.
    pub trace: Vec<TraceEntry>,
}

/// A test's result: no mismatch is a pass.
#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    pub line: usize,
    pub steps: usize,
    pub mismatches: Vec<Mismatch>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// Runs a test from no alert and checks every step.
pub fn run(pipeline: &Pipeline, test: &Test) -> Outcome {
    let mut run = Run::new(pipeline, "test");
    let mut at = test.start;
    let mut alert_ids: Vec<Option<String>> = Vec::new();
    let mut mismatches = Vec::new();
    for (index, step) in test.steps.iter().enumerate() {
        at += chrono::Duration::seconds(i64::try_from(step.after_secs).unwrap_or(i64::MAX / 2));
        let prepared = run.prepare(step.input.clone(), &test.channel, at);
        let rules: Vec<String> = prepared
            .matched_rules
            .iter()
            .map(|r| r.to_string())
            .collect();
        let outcome = run.correlate(prepared, format!("step-{}", index + 1));
        let mut found = Vec::new();
        compare(&step.expect, &outcome, &rules, &alert_ids, &mut found);
        for (field, expected, got) in found {
            mismatches.push(Mismatch {
                step: index + 1,
                line: step.line,
                field,
                expected,
                got,
                trace: outcome.record.trace.clone(),
            });
        }
        alert_ids.push(outcome.alert.as_ref().map(|a| a.id.clone()));
    }
    Outcome {
        name: test.name.clone(),
        line: test.line,
        steps: test.steps.len(),
        mismatches,
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

fn compare(
    expect: &Expect,
    outcome: &Correlated,
    rules: &[String],
    alert_ids: &[Option<String>],
    found: &mut Vec<(&'static str, String, String)>,
) {
    let mut check = |field: &'static str, expected: Option<String>, got: String| {
        if let Some(expected) = expected
            && expected != got
        {
            found.push((field, expected, got));
        }
    };
    let record = &outcome.record;
    check(
        "transition",
        expect.transition.clone(),
        outcome.transition.as_str().to_owned(),
    );
    check(
        "dropped",
        expect.dropped.map(|d| d.to_string()),
        record.dropped.to_string(),
    );
    check(
        "category",
        expect.category.clone(),
        record.category.as_str().to_owned(),
    );
    check(
        "severity",
        expect.severity.clone(),
        record.event.severity.as_str().to_owned(),
    );
    check(
        "status",
        expect.status.clone(),
        outcome
            .alert
            .as_ref()
            .map_or_else(|| NO_ALERT.to_owned(), |a| a.status.as_str().to_owned()),
    );
    check("rules", expect.rules.as_deref().map(list), list(rules));
    let sorted = |mut names: Vec<String>| {
        names.sort();
        list(&names)
    };
    let decided = |suppressed: bool| {
        sorted(
            outcome
                .actions
                .iter()
                .filter(|a| a.suppressed_by.is_some() == suppressed)
                .map(|a| a.action.to_string())
                .collect(),
        )
    };
    check(
        "actions",
        expect.actions.clone().map(sorted),
        decided(false),
    );
    check(
        "suppressed",
        expect.suppressed.clone().map(sorted),
        decided(true),
    );
    if let Some(labels) = &expect.labels {
        for (key, value) in labels {
            let got = record.event.labels.get(key);
            check(
                "labels",
                Some(format!("{key}={value}")),
                got.map_or_else(|| format!("no label {key}"), |g| format!("{key}={g}")),
            );
        }
    }
    check(
        "escalation",
        expect.escalation.clone(),
        outcome
            .escalation
            .as_ref()
            .map(|s| s.policy.clone())
            .unwrap_or_default(),
    );
    check(
        "incident",
        expect.incident.map(|i| i.to_string()),
        outcome.incident.is_some().to_string(),
    );
    let this = outcome.alert.as_ref().map(|a| a.id.as_str());
    let earlier = |step: usize| alert_ids.get(step - 1).and_then(|id| id.as_deref());
    if let Some(step) = expect.same_alert_as
        && (this.is_none() || earlier(step) != this)
    {
        found.push((
            "same_alert_as",
            format!("the alert of step {step}"),
            "another alert".to_owned(),
        ));
    }
    if let Some(step) = expect.new_alert_from
        && (this.is_none() || earlier(step) == this)
    {
        found.push((
            "new_alert_from",
            format!("another alert than step {step}'s"),
            "the same alert".to_owned(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PipelineConfig;

    const CONFIG: &str = r#"
[[rules]]
name = "disk-full"
when = 'check == "disk" && "used_pct" in metrics && metrics.used_pct > 95.0'
severity = "critical"
category = "exception"
actions = ["page"]

[[rules]]
name = "drop-debug"
when = 'severity == "info" && summary.startsWith("DEBUG")'
drop = true

[actions.page]
type = "webhook"
url = "http://127.0.0.1:9/page"
"#;

    fn pipeline() -> Pipeline {
        Pipeline::build(&PipelineConfig::from_toml(CONFIG).expect("parses")).expect("compiles")
    }

    const SUITE: &str = r#"
[[test]]
name = "a full disk pages once and clears"

[[test.step]]
event = { resource = "db01", check = "disk", summary = "/var 97%", severity = "warning", metrics = { used_pct = 97 } }
expect = { transition = "new_alert", category = "exception", severity = "critical", actions = ["page"], rules = ["disk-full"] }

[[test.step]]
after = "1m"
event = { resource = "db01", check = "disk", summary = "/var 98%", severity = "warning", metrics = { used_pct = 98 } }
expect = { transition = "updated", actions = [], same_alert_as = 1 }

[[test.step]]
after = "5m"
event = { resource = "db01", check = "disk", summary = "/var 40%", severity = "ok" }
expect = { transition = "resolved", status = "resolved", same_alert_as = 1 }

[[test]]
name = "debug is dropped"

[[test.step]]
event = { resource = "db01", check = "x", summary = "DEBUG s", severity = "info" }
expect = { dropped = true, transition = "dropped", status = "no alert" }
"#;

    #[test]
    fn a_suite_that_matches_the_rules_passes() {
        let suite = parse(SUITE).expect("parses");
        assert_eq!(suite.tests.len(), 2);
        for test in &suite.tests {
            let outcome = run(&pipeline(), test);
            assert!(outcome.passed(), "{}: {:?}", test.name, outcome.mismatches);
        }
    }

    #[test]
    fn a_wrong_expectation_names_step_field_expected_and_got() {
        let suite = parse(&SUITE.replace(
            r#"actions = ["page"], rules"#,
            r#"actions = ["mail"], rules"#,
        ))
        .expect("parses");
        let outcome = run(&pipeline(), &suite.tests[0]);
        assert_eq!(outcome.mismatches.len(), 1, "{:?}", outcome.mismatches);
        let m = &outcome.mismatches[0];
        assert_eq!((m.step, m.field), (1, "actions"));
        assert_eq!((m.expected.as_str(), m.got.as_str()), ("mail", "page"));
        assert_eq!(m.line, 5, "the step's [[test.step]] line");
        assert_eq!(m.trace.len(), 6, "the trace comes along");
        // The same suite against a configuration without the rule: four expectations fail.
        let bare = Pipeline::build(&PipelineConfig::from_toml("").expect("parses")).expect("ok");
        let outcome = run(&bare, &parse(SUITE).expect("parses").tests[0]);
        let fields: Vec<&str> = outcome.mismatches.iter().map(|m| m.field).collect();
        assert_eq!(
            fields,
            ["category", "severity", "rules", "actions"],
            "{:?}",
            outcome.mismatches
        );
    }

    #[test]
    fn bad_files_say_what_is_wrong_and_where() {
        let render = |source: &str| -> Vec<String> {
            match parse(source) {
                Ok(_) => panic!("expected errors"),
                Err(errors) => errors.iter().map(|e| e.render("t.toml", source)).collect(),
            }
        };
        let errors = render(
            "[[test]]\nname = \"x\"\n[[test.step]]\nevent = { resource = \"a\", severity = \"loud\" }\nexpect = { transition = \"opened\", same_alert_as = 3 }\n",
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("t.toml:4:") && e.contains("severity")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("t.toml:5:") && e.contains("unknown transition \"opened\"")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("same_alert_as: step 3 is not an earlier step")),
            "{errors:?}"
        );
        let errors = render("[[test]]\nname = \"x\"\n[[test.step]]\nafter = \"2w\"\nevent = {}\n");
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("t.toml:4:") && e.contains("unknown unit")),
            "{errors:?}"
        );
        let errors = render("[[test]]\nnmae = \"x\"\n");
        assert!(
            errors[0].starts_with("t.toml:2:") && errors[0].contains("nmae"),
            "{errors:?}"
        );
        assert_eq!(render("")[0], "t.toml: no [[test]] in the file");
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(duration_secs("90"), Ok(90));
        assert_eq!(duration_secs("30m"), Ok(1800));
        assert_eq!(duration_secs("2h"), Ok(7200));
        assert_eq!(duration_secs("1d"), Ok(86_400));
        assert!(duration_secs("2w").is_err());
        assert!(duration_secs("h").is_err());
    }
}
