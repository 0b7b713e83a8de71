//! Pipeline tests: a sequence of events through all stages against an in-memory alert table.

use std::collections::HashMap;

use chrono::{Duration, TimeZone, Utc};
use serde_json::json;

use super::*;
use crate::alert::{AlertStatus, TimelineEntry, TimelineKind};
use crate::event::Severity;
use crate::trace::Stage;

const CONFIG: &str = r#"
[alerts]
reopen_window_secs = 300

[[rules]]
name = "drop-debug"
when = 'severity == "info" && check == "debug"'
drop = true

[[rules]]
name = "tag-production"
when = 'environment == "production"'
labels = { tier = "prod" }
continue = true

[[rules]]
name = "disk-failure"
when = 'check == "smart" && summary.contains("failed")'
category = "exception"
severity = "critical"
actions = ["page"]

[[rules]]
name = "disk-nearly-full"
when = 'check == "disk_usage" && metrics.used_pct >= 90.0'
category = "warning"
actions = ["page", "clean"]

[[rules]]
name = "per-mount"
when = 'check == "fs" && "mount" in labels'
fingerprint = ["resource", "labels.mount"]

[actions.page]
type = "notify"
channel = "email"

[actions.clean]
type = "exec"
command = ["/usr/local/bin/clean-tmp"]
"#;

pub(crate) fn pipeline(source: &str) -> Result<Pipeline, Vec<ConfigError>> {
    Pipeline::build(&PipelineConfig::from_toml(source).map_err(|e| vec![e])?)
}

/// Runs events through the pipeline, keeping alerts the way a store would.
struct Harness {
    pipeline: Pipeline,
    alerts: HashMap<Fingerprint, Alert>,
    next: u64,
    clock: DateTime<Utc>,
    silences: crate::silence::ActiveSilences,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            pipeline: pipeline(CONFIG).expect("test config compiles"),
            alerts: HashMap::new(),
            next: 0,
            silences: crate::silence::ActiveSilences::default(),
            clock: Utc
                .with_ymd_and_hms(2026, 11, 24, 1, 0, 0)
                .single()
                .expect("time"),
        }
    }

    fn send(&mut self, event: serde_json::Value) -> Correlated {
        self.clock += Duration::seconds(1);
        let input = EventInput::from_json(0, event).expect("valid test event");
        let prepared = self.pipeline.prepare(input, "test", self.clock);
        self.next += 1;
        let event_id = format!("E{:04}", self.next);
        let mut counter = self.next * 100;
        let mut new_id = || {
            counter += 1;
            format!("X{counter}")
        };
        let current = self.alerts.get(&prepared.fingerprint).cloned();
        let outcome = self.pipeline.correlate(
            prepared,
            event_id,
            current.as_ref(),
            &self.silences,
            &mut new_id,
        );
        if let Some(alert) = &outcome.alert {
            self.alerts
                .insert(alert.fingerprint.clone(), Alert::clone(alert));
        }
        outcome
    }
}

fn decisions(outcome: &Correlated) -> Vec<String> {
    outcome
        .record
        .trace
        .iter()
        .map(|t| format!("{}:{}", t.stage.as_str(), t.decision))
        .collect()
}

#[test]
fn stages_run_in_itil_order_and_explain_themselves() {
    let mut h = Harness::new();
    let out = h.send(json!({"resource": "db01", "check": "smart", "summary": "disk sda failed", "severity": "warning", "environment": "production"}));
    assert_eq!(
        decisions(&out),
        [
            "normalise:accepted",
            "filter:kept",
            "categorise:exception",
            "correlate:new_alert",
            "decide:run",
            "record:stored"
        ]
    );
    let categorise = &out.record.trace[2];
    assert_eq!(categorise.stage, Stage::Categorise);
    assert_eq!(&*categorise.rules[0], "tag-production");
    assert_eq!(&*categorise.rules[1], "disk-failure");
    assert!(
        categorise.reason.contains("warning -> critical"),
        "{}",
        categorise.reason
    );
    let alert = out.alert.expect("alert opened");
    assert_eq!(alert.severity, Severity::Critical);
    assert_eq!(alert.labels["tier"], "prod");
    assert_eq!(out.actions.len(), 1);
    assert_eq!(&*out.actions[0].action, "page");
    let kinds: Vec<TimelineKind> = out.timeline.iter().map(|t| t.kind).collect();
    assert_eq!(kinds, [TimelineKind::Opened, TimelineKind::ActionDecided]);
    // The decision's line is what its decided action gives back (stores keep only the
    // action); the other lines are not decisions.
    let line = &out.timeline[1];
    assert!(line.is_decision() && !out.timeline[0].is_decision());
    assert!(out.timeline[0].is_opening() && !line.is_opening());
    assert_eq!(*line, out.actions[0].timeline_line(line.id.clone()));
    assert!(
        line.message.starts_with("action page ("),
        "{}",
        line.message
    );
    let mut held = out.actions[0].clone();
    held.suppressed_by = Some("silence s1".into());
    let suppressed = held.timeline_line("x".into());
    assert_eq!(suppressed.kind, TimelineKind::ActionSuppressed);
    assert!(
        suppressed.message.contains(") suppressed by silence s1: "),
        "{}",
        suppressed.message
    );
    assert!(suppressed.is_decision());
    let finished = TimelineEntry {
        event_id: None,
        ..suppressed
    };
    assert!(
        !finished.is_decision(),
        "a dispatcher's line names no event"
    );
}

#[test]
fn repeats_update_one_alert_and_ok_resolves_it() {
    let mut h = Harness::new();
    let disk = |pct: f64, severity: &str| json!({"resource": "db01", "check": "disk_usage", "summary": format!("/var {pct}%"), "severity": severity, "metrics": {"used_pct": pct}});
    let first = h.send(disk(91.0, "warning"));
    let alert_id = first.alert.as_ref().map(|a| a.id.clone()).expect("opened");
    assert_eq!(first.actions.len(), 2, "page and clean on open");

    let repeat = h.send(disk(92.0, "warning"));
    assert_eq!(
        repeat.transition,
        Transition::Updated {
            previous_severity: Severity::Warning
        }
    );
    assert!(repeat.actions.is_empty(), "a plain repeat runs nothing");
    let alert = repeat.alert.expect("updated");
    assert_eq!((alert.id.as_str(), alert.count), (alert_id.as_str(), 2));

    let worse = h.send(disk(99.0, "critical"));
    assert_eq!(
        worse.actions.len(),
        2,
        "a rise in severity runs the actions again"
    );
    assert_eq!(worse.timeline[0].kind, TimelineKind::SeverityChanged);
    assert_eq!(
        worse.alert.as_ref().map(|a| a.severity_max),
        Some(Severity::Critical)
    );

    let ok = h.send(
        json!({"resource": "db01", "check": "disk_usage", "summary": "fine", "severity": "ok"}),
    );
    assert_eq!(ok.transition, Transition::Resolved);
    let resolved = ok.alert.expect("resolved");
    assert_eq!(resolved.status, AlertStatus::Resolved);
    assert_eq!(resolved.severity_max, Severity::Critical);
    assert_eq!(ok.record.alert_id.as_deref(), Some(alert_id.as_str()));

    let again = h.send(
        json!({"resource": "db01", "check": "disk_usage", "summary": "fine", "severity": "ok"}),
    );
    assert_eq!(again.transition, Transition::NothingToClear);
    assert_eq!(again.record.alert_id, None);
}

#[test]
fn reopens_within_the_window_and_opens_anew_after_it() {
    let mut h = Harness::new();
    let problem =
        json!({"resource": "web1", "check": "http", "summary": "down", "severity": "major"});
    let ok = json!({"resource": "web1", "check": "http", "summary": "up", "severity": "ok"});
    let first_id = h
        .send(problem.clone())
        .alert
        .map(|a| a.id.clone())
        .expect("opened");
    h.send(ok.clone());
    let reopened = h.send(problem.clone());
    assert_eq!(reopened.transition, Transition::Reopened);
    assert_eq!(
        reopened.alert.as_ref().map(|a| a.id.as_str()),
        Some(first_id.as_str())
    );
    h.send(ok);
    h.clock += Duration::seconds(301);
    let fresh = h.send(problem);
    assert_eq!(fresh.transition, Transition::Opened);
    assert_ne!(fresh.alert.map(|a| a.id.clone()), Some(first_id));
}

#[test]
fn acknowledged_alerts_stay_acknowledged_through_repeats() {
    let mut h = Harness::new();
    let problem = json!({"resource": "r", "check": "c", "summary": "s", "severity": "major"});
    let mut alert = Alert::clone(&h.send(problem.clone()).alert.expect("opened"));
    alert.status = AlertStatus::Acknowledged;
    alert.acknowledged_by = Some("alice".into());
    h.alerts.insert(alert.fingerprint.clone(), alert);
    let repeat = h.send(problem).alert.expect("updated");
    assert_eq!(repeat.status, AlertStatus::Acknowledged);
    assert_eq!(repeat.acknowledged_by.as_deref(), Some("alice"));
    assert_eq!(repeat.count, 2);
}

#[test]
fn dropped_events_are_recorded_with_their_reason_and_touch_nothing() {
    let mut h = Harness::new();
    let out = h.send(json!({"resource": "r", "check": "debug", "summary": "chatter"}));
    assert!(out.record.dropped);
    assert_eq!(out.transition, Transition::Dropped);
    assert!(out.alert.is_none() && out.timeline.is_empty() && out.actions.is_empty());
    assert!(out.record.trace[1].reason.contains("drop-debug"));
}

#[test]
fn fingerprints_follow_sender_then_rule_then_defaults() {
    let mut h = Harness::new();
    let a = h.send(json!({"resource": "r", "check": "fs", "summary": "x", "severity": "warning", "labels": {"mount": "/a"}, "service": "one"}));
    let b = h.send(json!({"resource": "r", "check": "fs", "summary": "x", "severity": "warning", "labels": {"mount": "/a"}, "service": "two"}));
    assert_eq!(
        a.record.fingerprint, b.record.fingerprint,
        "rule fields ignore service"
    );
    let c = h.send(json!({"resource": "r", "check": "fs", "summary": "x", "severity": "warning", "labels": {"mount": "/b"}}));
    assert_ne!(a.record.fingerprint, c.record.fingerprint);
    let sent =
        h.send(json!({"resource": "r", "check": "x", "summary": "x", "fingerprint": "mine"}));
    assert_eq!(sent.record.fingerprint.as_str(), "mine");
}

#[test]
fn default_categories_follow_severity() {
    let mut h = Harness::new();
    for (severity, category) in [
        ("critical", Category::Exception),
        ("major", Category::Exception),
        ("minor", Category::Warning),
        ("warning", Category::Warning),
        ("info", Category::Informational),
    ] {
        let out = h.send(
            json!({"resource": "r", "check": severity, "summary": "s", "severity": severity}),
        );
        assert_eq!(out.record.category, category, "{severity}");
    }
}

#[test]
fn a_condition_that_fails_counts_as_no_match_and_says_so() {
    let source = r#"
[[rules]]
name = "needs-metric"
when = 'metrics.load > 4.0'
category = "exception"
"#;
    let pipeline = pipeline(source).expect("compiles");
    let input = EventInput::from_json(0, json!({"resource": "r", "check": "c", "summary": "s"}))
        .expect("valid");
    let prepared = pipeline.prepare(input, "test", Utc::now());
    assert_eq!(prepared.category, Category::Informational);
    assert!(
        prepared.trace[1].reason.contains("needs-metric"),
        "{}",
        prepared.trace[1].reason
    );
}

#[test]
fn config_errors_point_at_the_rule() {
    let source = r#"
[[rules]]
name = "bad"
when = 'chek == "x"'

[[rules]]
name = "bad-action"
actions = ["nope"]

[[rules]]
name = "bad-fp"
fingerprint = ["severity"]
"#;
    let errors = pipeline(source).err().expect("errors");
    let rendered: Vec<String> = errors
        .iter()
        .map(|e| e.render("vakt.toml", source))
        .collect();
    assert_eq!(rendered.len(), 3, "{rendered:?}");
    assert!(
        rendered[0].starts_with("vakt.toml:4:8: rule \"bad\": when: unknown event attribute chek"),
        "{}",
        rendered[0]
    );
    assert!(
        rendered[1].starts_with("vakt.toml:8:12: rule \"bad-action\": unknown action \"nope\""),
        "{}",
        rendered[1]
    );
    assert!(
        rendered[2].starts_with("vakt.toml:12:15: rule \"bad-fp\": fingerprint: severity"),
        "{}",
        rendered[2]
    );
}

#[test]
fn the_index_never_changes_what_matches() {
    // Same rules with and without an index-friendly equality: identical outcomes.
    let indexed = pipeline(
        r#"
[[rules]]
name = "a"
when = 'check == "cpu" && metrics.load > 4.0'
category = "exception"
continue = true
[[rules]]
name = "b"
when = 'resource == "h1"'
labels = { b = "1" }
"#,
    )
    .expect("compiles");
    let plain = pipeline(
        r#"
[[rules]]
name = "a"
when = '(check == "cpu" || false) && metrics.load > 4.0'
category = "exception"
continue = true
[[rules]]
name = "b"
when = '(resource == "h1" || false)'
labels = { b = "1" }
"#,
    )
    .expect("compiles");
    for (check, resource, load) in [
        ("cpu", "h1", 5.0),
        ("cpu", "h2", 5.0),
        ("cpu", "h1", 1.0),
        ("mem", "h1", 9.0),
    ] {
        let event = json!({"resource": resource, "check": check, "summary": "s", "metrics": {"load": load}});
        let run = |p: &Pipeline| {
            let input = EventInput::from_json(0, event.clone()).expect("valid");
            let prepared = p.prepare(input, "t", Utc::now());
            (
                prepared.category,
                prepared.event.labels,
                prepared.matched_rules,
            )
        };
        assert_eq!(run(&indexed), run(&plain), "{event}");
    }
}

#[test]
fn without_a_reopen_window_a_problem_after_ok_opens_a_new_alert_even_in_the_same_millisecond() {
    let pipeline = pipeline("").expect("empty config compiles");
    let at = Utc::now();
    let mut ids = 0;
    let mut new_id = || {
        ids += 1;
        format!("A{ids}")
    };
    let mut run = |value: serde_json::Value, current: Option<&Alert>, id: &str| {
        let input = EventInput::from_json(0, value).expect("valid");
        pipeline.correlate(
            pipeline.prepare(input, "t", at),
            id.into(),
            current,
            &crate::silence::ActiveSilences::default(),
            &mut new_id,
        )
    };
    let opened = run(
        json!({"resource": "r", "check": "c", "summary": "s", "severity": "major"}),
        None,
        "E1",
    );
    let alert = opened.alert.expect("opened");
    let resolved = run(
        json!({"resource": "r", "check": "c", "summary": "s", "severity": "ok"}),
        Some(&alert),
        "E2",
    );
    let alert = resolved.alert.expect("resolved");
    let again = run(
        json!({"resource": "r", "check": "c", "summary": "s", "severity": "major"}),
        Some(&alert),
        "E3",
    );
    assert_eq!(again.transition, Transition::Opened);
}

/// A harness over a given configuration, starting at a fixed time.
fn harness_with(config: &str) -> Harness {
    let mut h = Harness::new();
    h.pipeline = pipeline(config).unwrap_or_else(|e| panic!("config: {e:?}"));
    h
}

fn decide_entry(out: &Correlated) -> &crate::trace::TraceEntry {
    out.record
        .trace
        .iter()
        .find(|t| t.stage == Stage::Decide)
        .expect("a decide entry")
}

#[test]
fn a_silence_suppresses_the_actions_of_what_it_covers_and_says_so() {
    let mut h = Harness::new();
    let silence = crate::silence::Silence {
        id: "s-1".into(),
        matchers: vec![
            crate::matcher::Matcher::parse("environment=\"production\"")
                .expect("matcher")
                .spec,
        ],
        starts_at: h.clock,
        ends_at: h.clock + Duration::hours(1),
        created_by: "alice".into(),
        comment: "upgrade".into(),
        updated_at: h.clock,
    };
    h.silences = crate::silence::ActiveSilences::new(&[silence], h.clock);
    let covered = h.send(json!({"resource": "db01", "check": "smart", "summary": "disk sda failed", "severity": "warning", "environment": "production"}));
    assert_eq!(covered.actions.len(), 1);
    assert_eq!(
        covered.actions[0].suppressed_by.as_deref(),
        Some("silence s-1")
    );
    assert_eq!(decide_entry(&covered).decision, "suppressed");
    assert!(decide_entry(&covered).reason.contains("silence s-1"));
    assert_eq!(
        covered.record.category,
        Category::Exception,
        "still categorised"
    );
    assert!(
        covered
            .timeline
            .iter()
            .any(|t| t.kind == TimelineKind::ActionSuppressed)
    );
    // Nothing that ran is remembered, so its resolution announces nothing either.
    assert!(
        covered
            .alert
            .as_ref()
            .is_some_and(|a| a.handling.actions.is_empty())
    );
    let other = h.send(json!({"resource": "db02", "check": "smart", "summary": "disk sda failed", "severity": "warning", "environment": "staging"}));
    assert_eq!(other.actions[0].suppressed_by, None);
    // After the silence ends, the same alert's escalation runs.
    h.clock += Duration::hours(2);
    let later = h.send(json!({"resource": "db01", "check": "disk_usage", "summary": "full", "severity": "warning", "environment": "production", "metrics": {"used_pct": 99.0}}));
    assert!(later.actions.iter().all(|a| a.suppressed_by.is_none()));
}

#[test]
fn a_maintenance_window_suppresses_only_inside_its_hours() {
    let config = format!(
        "{CONFIG}\n[[maintenance]]\nname = \"nightly\"\nschedule = \"0 1 * * *\"\nduration_secs = 3600\nmatchers = ['resource=~\"db.*\"']\n"
    );
    let mut h = harness_with(&config);
    // The harness clock starts at 01:00 UTC: inside the window.
    let inside = h.send(json!({"resource": "db01", "check": "smart", "summary": "disk sda failed", "severity": "warning"}));
    assert_eq!(
        inside.actions[0].suppressed_by.as_deref(),
        Some("maintenance window \"nightly\"")
    );
    let not_matched = h.send(json!({"resource": "web01", "check": "smart", "summary": "disk sda failed", "severity": "warning"}));
    assert_eq!(not_matched.actions[0].suppressed_by, None);
    h.clock += Duration::hours(2);
    let outside = h.send(json!({"resource": "db02", "check": "smart", "summary": "disk sda failed", "severity": "warning"}));
    assert_eq!(outside.actions[0].suppressed_by, None);
}

#[test]
fn resolution_is_announced_through_the_notifications_that_ran() {
    let mut h = Harness::new();
    let opened = h.send(json!({"resource": "db01", "check": "disk_usage", "summary": "full", "severity": "warning", "metrics": {"used_pct": 95.0}}));
    let names: Vec<&str> = opened.actions.iter().map(|a| &*a.action).collect();
    assert_eq!(names, ["page", "clean"]);
    let resolved = h.send(
        json!({"resource": "db01", "check": "disk_usage", "summary": "fine", "severity": "ok"}),
    );
    // The notification announces it; the command does not run again.
    assert_eq!(resolved.actions.len(), 1);
    assert_eq!(&*resolved.actions[0].action, "page");
    assert_eq!(resolved.actions[0].purpose, Purpose::Resolved);
}

#[test]
fn flapping_notifies_once_then_waits_until_it_settles() {
    let config = CONFIG.replace(
        "reopen_window_secs = 300",
        "reopen_window_secs = 600\nflap_threshold = 3\nflap_window_secs = 600",
    );
    let mut h = harness_with(&config);
    let problem = json!({"resource": "db01", "check": "smart", "summary": "disk sda failed", "severity": "warning"});
    let ok = json!({"resource": "db01", "check": "smart", "summary": "fine", "severity": "ok"});
    let mut purposes = Vec::new();
    for event in [&problem, &ok, &problem, &ok, &problem, &ok, &problem] {
        let out = h.send(event.clone());
        for action in &out.actions {
            purposes.push(format!(
                "{}{}",
                action.purpose.as_str(),
                if action.suppressed_by.is_some() {
                    " (suppressed)"
                } else {
                    ""
                }
            ));
        }
    }
    assert_eq!(
        purposes,
        [
            "trigger",
            "resolved",
            "trigger",
            "flapping",
            "trigger (suppressed)",
            "resolved (suppressed)",
            "trigger (suppressed)"
        ]
    );
    // Quiet for the whole window, then the next event (a repeat: it is still open) finds it
    // settled.
    h.clock += Duration::seconds(601);
    let settled = h.send(problem.clone());
    assert_eq!(settled.actions.len(), 1);
    assert_eq!(settled.actions[0].purpose, Purpose::Settled);
    assert!(
        settled
            .timeline
            .iter()
            .any(|t| t.kind == TimelineKind::Settled)
    );
}

#[test]
fn a_flapping_alert_that_reopens_after_a_quiet_window_notifies_again() {
    let config = CONFIG.replace(
        "reopen_window_secs = 300",
        "reopen_window_secs = 1200\nflap_threshold = 2\nflap_window_secs = 600",
    );
    let mut h = harness_with(&config);
    let problem = json!({"resource": "db01", "check": "smart", "summary": "disk sda failed", "severity": "warning"});
    let ok = json!({"resource": "db01", "check": "smart", "summary": "fine", "severity": "ok"});
    for event in [&problem, &ok, &problem, &ok] {
        h.send(event.clone());
    }
    let alert = h.alerts.values().next().cloned().expect("the alert");
    assert!(
        alert.handling.flapping,
        "three changes in the window: flapping"
    );
    // Resolved and quiet for longer than the flap window, then it reopens (within the
    // reopen window): it settled, and this is news again.
    h.clock += Duration::seconds(700);
    let reopened = h.send(problem.clone());
    assert_eq!(reopened.transition, Transition::Reopened);
    let purposes: Vec<(Purpose, bool)> = reopened
        .actions
        .iter()
        .map(|a| (a.purpose, a.suppressed_by.is_some()))
        .collect();
    assert_eq!(purposes, [(Purpose::Settled, false)]);
    assert!(
        reopened
            .alert
            .as_ref()
            .is_some_and(|a| !a.handling.flapping)
    );
}

#[test]
fn flap_detection_needs_a_reopen_window_as_long_as_its_own() {
    let config = CONFIG.replace(
        "reopen_window_secs = 300",
        "reopen_window_secs = 60\nflap_threshold = 3\nflap_window_secs = 600",
    );
    let errors = pipeline(&config).err().unwrap_or_default();
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("reopen_window_secs")),
        "{errors:?}"
    );
}

#[test]
fn grouped_notifications_carry_their_group_key() {
    let config = CONFIG.replace(
        "[actions.page]\ntype = \"notify\"\nchannel = \"email\"",
        "[actions.page]\ntype = \"notify\"\nchannel = \"email\"\ngroup_by = [\"service\", \"labels_missing\"]",
    );
    let mut h = harness_with(&config);
    let out = h.send(json!({"resource": "db01", "check": "smart", "summary": "disk sda failed", "severity": "warning", "service": "billing"}));
    assert_eq!(
        out.actions[0].group_key.as_deref(),
        Some("page|service=billing|labels_missing=")
    );
}

#[test]
fn an_operator_resolve_announces_the_resolution_like_an_ok_event() {
    let mut h = Harness::new();
    let opened = h.send(json!({"resource": "db01", "check": "disk_usage", "summary": "full", "severity": "warning", "metrics": {"used_pct": 95.0}}));
    let alert = opened.alert.expect("alert");
    let mut n = 0;
    let mut new_id = || {
        n += 1;
        format!("O{n}")
    };
    let request = crate::alert::OperatorRequest {
        action: crate::alert::OperatorAction::Resolve,
        by: "alice".into(),
        comment: None,
    };
    let done = h
        .pipeline
        .operate(&alert, &request, h.clock, &h.silences, &mut new_id)
        .expect("resolves");
    assert_eq!(done.alert.status, AlertStatus::Resolved);
    let names: Vec<(&str, Purpose)> = done
        .actions
        .iter()
        .map(|a| (&*a.action, a.purpose))
        .collect();
    assert_eq!(
        names,
        [("page", Purpose::Resolved)],
        "the notification, not the command"
    );
    assert_eq!(done.actions[0].reason, "alice resolved the alert");
    assert_eq!(done.actions[0].event_id, alert.last_event_id);
    let kinds: Vec<TimelineKind> = done.timeline.iter().map(|t| t.kind).collect();
    assert_eq!(kinds, [TimelineKind::Resolved, TimelineKind::ActionDecided]);
    // An ack decides nothing.
    let ack = crate::alert::OperatorRequest {
        action: crate::alert::OperatorAction::Ack,
        by: "alice".into(),
        comment: None,
    };
    let acked = h
        .pipeline
        .operate(&alert, &ack, h.clock, &h.silences, &mut new_id)
        .expect("acks");
    assert!(acked.actions.is_empty());
}

/// Issue 13: a flapping alert that ends resolved gets no event to notice the quiet; the
/// pipeline settles it when asked (the expiry task asks), once, and not before the window.
#[test]
fn a_quiet_flapping_alert_settles_without_an_event() {
    let config = CONFIG.replace(
        "reopen_window_secs = 300",
        "reopen_window_secs = 1200\nflap_threshold = 2\nflap_window_secs = 600",
    );
    let mut h = harness_with(&config);
    let problem = json!({"resource": "db01", "check": "smart", "summary": "disk sda failed", "severity": "warning"});
    let ok = json!({"resource": "db01", "check": "smart", "summary": "fine", "severity": "ok"});
    for event in [&problem, &ok, &problem, &ok] {
        h.send(event.clone());
    }
    let alert = h.alerts.values().next().cloned().expect("the alert");
    assert!(alert.handling.flapping);
    assert_eq!(alert.status, AlertStatus::Resolved);
    let settle = crate::alert::OperatorRequest {
        action: crate::alert::OperatorAction::Settle,
        by: "vakt".into(),
        comment: None,
    };
    let mut n = 0;
    let mut new_id = || {
        n += 1;
        format!("S{n}")
    };
    // Not yet quiet for a whole window.
    let early = h.clock + Duration::seconds(100);
    assert!(!h.pipeline.settles(&alert, early));
    assert!(
        h.pipeline
            .operate(&alert, &settle, early, &h.silences, &mut new_id)
            .is_err()
    );
    let later = h.clock + Duration::seconds(601);
    assert!(h.pipeline.settles(&alert, later));
    let done = h
        .pipeline
        .operate(&alert, &settle, later, &h.silences, &mut new_id)
        .expect("settles");
    assert!(!done.alert.handling.flapping);
    assert_eq!(done.alert.status, AlertStatus::Resolved, "the state stays");
    let purposes: Vec<(&str, Purpose)> = done
        .actions
        .iter()
        .map(|a| (&*a.action, a.purpose))
        .collect();
    assert_eq!(purposes, [("page", Purpose::Settled)]);
    assert_eq!(done.timeline[0].kind, TimelineKind::Settled);
    // Settled once.
    assert!(!h.pipeline.settles(&done.alert, later));
}

#[test]
fn reasons_and_lines_read_word_for_word() {
    // The texts an operator reads in a trace and on the timeline, pinned: they are joined
    // from parts, not formatted, and must read as they always have.
    let mut h = Harness::new();
    let disk = |pct: f64| json!({"resource": "db01", "check": "disk_usage", "summary": format!("/var {pct}%"), "severity": "warning", "metrics": {"used_pct": pct}});
    let first = h.send(disk(91.0));
    let repeat = h.send(disk(92.0));
    let reasons = |out: &Correlated| -> Vec<String> {
        let trace = out.record.trace.iter();
        trace.skip(3).map(|t| t.reason.to_string()).collect()
    };
    let lines = |out: &Correlated| -> Vec<String> {
        out.timeline.iter().map(|t| t.message.clone()).collect()
    };
    let fp = "(fingerprint of default fields environment, resource, check, service)";
    assert_eq!(
        reasons(&first),
        [
            format!("no open alert: opened a new one {fp}").as_str(),
            "the alert opened: run page (trigger), clean (trigger)",
            "event stored; alert created; 3 timeline entries; 2 actions decided",
        ]
    );
    assert_eq!(
        lines(&first),
        [
            "opened: warning warning from test: /var 91%",
            "action page (notify, trigger) decided: the alert opened; requested by rule disk-nearly-full",
            "action clean (exec, trigger) decided: the alert opened; requested by rule disk-nearly-full",
        ]
    );
    let whys: Vec<&str> = first.actions.iter().map(|a| a.reason.as_str()).collect();
    assert_eq!(
        whys,
        ["the alert opened; requested by rule disk-nearly-full"; 2]
    );
    assert_eq!(
        reasons(&repeat),
        [
            format!("repeat of the open alert {fp}").as_str(),
            "page, clean requested, none run: a repeat that does not raise the severity",
            "event stored; alert updated",
        ]
    );
    assert!(repeat.timeline.is_empty());
    // The filter's reason counts the rules; record's counts entries and actions, one and
    // more of each.
    let reason_of = |out: &Correlated, stage: Stage| -> String {
        let entry = out.record.trace.iter().find(|t| t.stage == stage);
        entry.map(|t| t.reason.to_string()).unwrap_or_default()
    };
    assert_eq!(
        reason_of(&first, Stage::Filter),
        "no matching rule drops it (1 of 5 rules evaluated, 1 matched)"
    );
    let mount = h.send(json!({"resource": "db01", "check": "fs", "summary": "/srv full", "severity": "major", "labels": {"mount": "/srv"}}));
    assert_eq!(
        reason_of(&mount, Stage::Record),
        "event stored; alert created; 1 timeline entry; 0 actions decided"
    );
    let smart = h.send(
        json!({"resource": "db02", "check": "smart", "summary": "sda failed", "severity": "minor"}),
    );
    assert_eq!(
        reason_of(&smart, Stage::Record),
        "event stored; alert created; 2 timeline entries; 1 action decided"
    );
}
