//! Retries: what an attempt's outcome means for the action (done, or again after a backoff),
//! and how long a claim's lease must last.

use super::*;

/// The longest a notification's delivery takes (channels time out sooner).
const NOTIFY_TIMEOUT_SECS: u64 = 30;
/// What a lease adds to the longest attempt.
const LEASE_MARGIN_SECS: u64 = 60;
/// Backoff doubles at most this many times.
const BACKOFF_DOUBLINGS_MAX: u32 = 30;

/// Backoff before retry number `attempt` (1-based): base * 2^(attempt-1), capped.
pub(super) fn backoff(config: &vakt_core::config::RetryConfig, attempt: i64) -> Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(0)
        .min(BACKOFF_DOUBLINGS_MAX);
    Duration::from_secs(
        config
            .backoff_secs
            .saturating_mul(1u64 << exponent)
            .min(config.backoff_max_secs),
    )
}

/// The lease for a claim: longer than any configured attempt can take.
pub(super) fn lease_secs(handling: &HandlingConfig) -> i64 {
    let longest = handling
        .actions
        .values()
        .map(|a| match a {
            ActionConfig::Exec { timeout_secs, .. }
            | ActionConfig::Webhook { timeout_secs, .. } => *timeout_secs,
            ActionConfig::Notify { .. } => NOTIFY_TIMEOUT_SECS,
        })
        .max()
        .unwrap_or(NOTIFY_TIMEOUT_SECS);
    i64::try_from(longest.saturating_add(LEASE_MARGIN_SECS)).unwrap_or(i64::MAX)
}

/// The attempt's record, the action's next state and its timeline line.
pub(super) fn finish(
    handling: &HandlingConfig,
    record: &ActionRecord,
    result: Outcome,
    started: chrono::DateTime<Utc>,
    finished: chrono::DateTime<Utc>,
) -> Finish {
    let retry = handling
        .actions
        .get(&*record.decided.action)
        .map(ActionConfig::retry)
        .unwrap_or_default();
    let (outcome, next, detail, output) = match result {
        Outcome::Succeeded { detail, output } => (
            "succeeded",
            Next::Done(ActionStatus::Succeeded),
            detail,
            output,
        ),
        Outcome::Skipped(detail) => ("skipped", Next::Done(ActionStatus::Skipped), detail, None),
        Outcome::Failed {
            detail,
            output,
            transient,
        } => {
            if transient && record.attempts < i64::from(retry.attempts) {
                let wait = backoff(&retry, record.attempts);
                (
                    "failed",
                    Next::Retry(
                        finished
                            + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::zero()),
                    ),
                    format!("{detail}; retry in {} s", wait.as_secs()),
                    output,
                )
            } else {
                let why = if transient {
                    format!("{detail}; gave up after {} attempt(s)", record.attempts)
                } else {
                    format!("{detail}; not retried (a permanent error)")
                };
                ("failed", Next::Done(ActionStatus::Failed), why, output)
            }
        }
    };
    let mut timeline = record
        .decided
        .attempt_line(record.attempts, outcome, &detail);
    // A command's first lines of output belong on the alert's timeline too.
    if record.decided.kind == "exec"
        && let Some(excerpt) = output.as_ref().and_then(exec::Ran::excerpt)
    {
        timeline.push('\n');
        timeline.push_str(&excerpt);
    }
    Finish {
        attempt: Attempt {
            id: vakt_store::new_id(),
            action_id: record.decided.id.clone(),
            attempt: record.attempts,
            started_at: started,
            finished_at: finished,
            outcome: outcome.to_owned(),
            detail,
            output,
        },
        next,
        timeline,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{handling, record};
    use super::*;

    const ACTIONS: &str = r#"
[actions.hook]
type = "webhook"
url = "http://127.0.0.1:9/hook"
retry = { attempts = 3, backoff_secs = 2, backoff_max_secs = 5 }

[actions.cmd]
type = "exec"
command = ["true"]
"#;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let config = vakt_core::config::RetryConfig {
            attempts: 5,
            backoff_secs: 2,
            backoff_max_secs: 10,
        };
        let waits: Vec<u64> = (1..=5).map(|n| backoff(&config, n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 10, 10]);
    }

    #[test]
    fn transient_failures_are_retried_until_the_limit_and_permanent_ones_never() {
        let h = handling(ACTIONS);
        let now = Utc::now();
        let failed = |transient| Outcome::Failed {
            detail: "503".into(),
            output: None,
            transient,
        };
        let first = finish(&h, &record("hook", "webhook", 1), failed(true), now, now);
        assert_eq!(first.next, Next::Retry(now + chrono::Duration::seconds(2)));
        assert!(
            first.attempt.detail.ends_with("retry in 2 s"),
            "{}",
            first.attempt.detail
        );
        let last = finish(&h, &record("hook", "webhook", 3), failed(true), now, now);
        assert_eq!(last.next, Next::Done(ActionStatus::Failed));
        assert!(
            last.attempt.detail.contains("gave up after 3"),
            "{}",
            last.attempt.detail
        );
        let permanent = finish(&h, &record("hook", "webhook", 1), failed(false), now, now);
        assert_eq!(permanent.next, Next::Done(ActionStatus::Failed));
        assert!(permanent.attempt.detail.contains("not retried"));
        let ok = Outcome::Succeeded {
            detail: "200".into(),
            output: None,
        };
        let done = finish(&h, &record("hook", "webhook", 1), ok, now, now);
        assert_eq!(done.next, Next::Done(ActionStatus::Succeeded));
        assert!(
            done.timeline
                .starts_with("action hook (webhook, trigger) attempt 1: succeeded")
        );
    }

    #[test]
    fn a_command_s_first_lines_go_on_the_timeline() {
        let h = handling(ACTIONS);
        let now = Utc::now();
        let ran = Outcome::Succeeded {
            detail: "exited with status 0".into(),
            output: Some(
                serde_json::json!({"stdout": "cleaned 3 files\n", "stdout_bytes": 16, "stderr": ""}),
            ),
        };
        let done = finish(&h, &record("cmd", "exec", 1), ran, now, now);
        assert!(
            done.timeline.ends_with("stdout:\ncleaned 3 files"),
            "{}",
            done.timeline
        );
    }

    #[test]
    fn a_lease_outlasts_the_longest_attempt() {
        let h = handling(ACTIONS);
        assert!(lease_secs(&h) >= 60 + 10);
    }
}
