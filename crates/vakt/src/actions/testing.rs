//! Test helpers for the handling stage's unit tests: a compiled configuration from TOML,
//! alerts and action records.

use super::*;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Sections {
    dispatch: DispatchConfig,
    actions: BTreeMap<String, Spanned<ActionConfig>>,
    channels: BTreeMap<String, Spanned<ChannelConfig>>,
    inhibit_rules: Vec<InhibitRuleConfig>,
}

/// The handling stage compiled from `[dispatch]`, `[actions.*]`, `[channels.*]` and
/// `[[inhibit_rules]]` in `toml`.
pub(crate) fn handling(toml: &str) -> HandlingConfig {
    let sections: Sections = toml::from_str(toml).unwrap_or_else(|e| panic!("test TOML: {e}"));
    HandlingConfig::build(
        &sections.dispatch,
        &sections.actions,
        &sections.channels,
        &sections.inhibit_rules,
    )
    .unwrap_or_else(|e| panic!("compiles: {e:?}"))
}

/// An open alert of `check` on `resource` with `labels`.
pub(super) fn alert(id: &str, check: &str, resource: &str, labels: &[(&str, &str)]) -> Alert {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    serde_json::from_value(serde_json::json!({
        "id": id, "fingerprint": format!("fp-{id}"), "status": "open", "category": "exception",
        "severity": "critical", "severity_max": "critical", "source": "test",
        "resource": resource, "check": check, "service": null, "environment": null,
        "summary": "s", "labels": labels, "count": 1,
        "first_seen": "2026-12-01T00:00:00Z", "last_seen": "2026-12-01T00:00:00Z",
        "last_event_id": "e1", "acknowledged_by": null, "acknowledged_at": null,
        "assignee": null, "resolved_by": null, "resolved_at": null, "incident_id": null,
        "expires_at": null
    }))
    .unwrap_or_else(|e| panic!("test alert: {e}"))
}

/// A running action `action` of `kind`, on its `attempts`-th attempt.
pub(super) fn record(action: &str, kind: &'static str, attempts: i64) -> ActionRecord {
    ActionRecord {
        decided: vakt_core::pipeline::DecidedAction {
            id: "A1".into(),
            action: Arc::from(action),
            kind,
            alert_id: "alert-1".into(),
            event_id: "e1".into(),
            purpose: vakt_core::pipeline::Purpose::Trigger,
            reason: "test".into(),
            suppressed_by: None,
            group_key: None,
            decided_at: Utc::now(),
            target: None,
        },
        status: ActionStatus::Running,
        attempts,
        next_at: None,
        lease_until: None,
        finished_at: None,
        outcome: None,
    }
}
