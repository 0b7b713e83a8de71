//! Issue 17's attack list, replayed: each attack is now refused or harmless. Where a whole
//! story proves one, that test is the replay and is named here; this file replays the rest.
//!
//! | attack | replayed by |
//! |---|---|
//! | `$(touch /tmp/x)` in a resource with `shell = true` | `actions::event_text_cannot_become_shell_code` |
//! | chat webhook URLs and query tokens in outcomes, attempts, timelines; `phone_webhook` in `/api/v1/users` | `actions::webhook_credentials_stay_out_of_answers`, `retention::secrets_come_from_the_environment_and_files_and_stay_hidden` |
//! | exec children inherit `AWS_SECRET_ACCESS_KEY` | `actions::commands_do_not_inherit_vakts_environment` |
//! | `<!channel>`, `@all`, `<url\|label>`, markdown links reach chat | `actions::event_text_cannot_mention_everyone_in_chat` |
//! | `x", "admin": true, "y": "` adds keys to a webhook body | `actions::event_text_cannot_add_keys_to_a_webhook_body` |
//! | silence `duration_secs` 10^13 panics | `bad_input::an_enormous_silence_duration_is_refused_not_a_panic` |
//! | trickling, idle and 1,100 connections | `slow_clients::idle_trickling_and_surplus_connections_are_closed_and_health_answers`, the `soak` test binary |
//! | 8 × `GET /api/v1/events?limit=1000` of 72 MB | `retention::large_pages_are_cut_by_bytes_and_the_cursor_continues` |
//! | `cursor=garbage` | `bad_input::a_garbage_cursor_is_refused` |
//! | 20,000 alerts in one AM batch, 1 MB incident title, `grace_secs` 9.2e18, webhook `status:"bogus"` | `bad_input::limits_hold_on_every_channel` |
//! | NUL, ESC, CR/LF stored; year 0 and 9999 timestamps | here |
//! | expired silences re-read forever, nothing pruned | `retention::*`, the store's retention stories |

use serde_json::json;

use crate::harness::TestServer;

/// NUL, ESC and CR/LF in every text field of an event are refused naming the field and the
/// byte (they were stored and reached terminals, mail headers and chat); nothing is stored.
#[tokio::test]
async fn control_characters_in_any_event_field_are_refused() {
    let server = TestServer::start().await;
    let nasty = ["nul\u{0}x", "esc\u{1b}[2Jx", "crlf\r\nInjected: yes"];
    for field in [
        "source",
        "resource",
        "check",
        "service",
        "environment",
        "summary",
    ] {
        for text in nasty {
            let mut event = json!({"resource": "r", "check": "c", "summary": "s"});
            event[field] = json!(text);
            let (status, answer) = server.post("/api/v1/events", &event).await;
            assert_eq!(status, 400, "{field}={text:?}: {answer}");
            assert_eq!(answer["details"][0]["field"], field, "{answer}");
            assert!(
                answer["details"][0]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("control character at byte")),
                "{answer}"
            );
        }
    }
    for text in nasty {
        let event = json!({"resource": "r", "check": "c", "summary": "s", "labels": {"k": text}});
        let (status, answer) = server.post("/api/v1/events", &event).await;
        assert_eq!(status, 400, "label {text:?}: {answer}");
        assert_eq!(answer["details"][0]["field"], "labels.k", "{answer}");
    }
    let (_, events) = server.get("/api/v1/events").await;
    assert_eq!(events["items"], json!([]), "nothing was stored");
}

/// A time before 1970 is refused naming `occurred_at`; year 9999 (on the events API and from
/// an Alertmanager peer) becomes the receive time, with the reason in the trace, so it cannot
/// sort first forever or escape retention.
#[tokio::test]
async fn timestamps_out_of_range_are_refused_or_replaced() {
    let server = TestServer::start().await;
    let (status, answer) = server
        .post(
            "/api/v1/events",
            &json!({"resource": "r", "check": "c", "summary": "s",
                    "occurred_at": "0000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["details"][0]["field"], "occurred_at", "{answer}");

    let before = chrono::Utc::now();
    let (status, answer) = server
        .post(
            "/api/v1/events",
            &json!({"resource": "r", "check": "c", "summary": "s",
                    "occurred_at": "9999-12-31T23:59:59Z"}),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["ids"][0].as_str().expect("id").to_owned();
    let (status, answer) = server
        .post(
            "/api/v2/alerts",
            &json!([{"labels": {"alertname": "Future", "instance": "h"},
                     "startsAt": "9999-01-01T00:00:00Z"}]),
        )
        .await;
    assert_eq!(status, 200, "{answer}");

    let (_, events) = server.get("/api/v1/events?limit=10").await;
    let items = events["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{events}");
    let after = chrono::Utc::now();
    for item in items {
        let occurred: chrono::DateTime<chrono::Utc> = item["occurred_at"]
            .as_str()
            .and_then(|t| t.parse().ok())
            .expect("occurred_at");
        assert!(
            occurred >= before - chrono::Duration::seconds(1)
                && occurred <= after + chrono::Duration::seconds(1),
            "{item}"
        );
    }
    let (_, event) = server.get(&format!("/api/v1/events/{id}")).await;
    let reasons: Vec<&str> = event["trace"]
        .as_array()
        .expect("trace")
        .iter()
        .filter_map(|entry| entry["reason"].as_str())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("after the receive time, used the receive time")),
        "{event}"
    );
}
