//! Idempotent ingest (issue 13): a client that sends again after a lost answer is answered
//! with the ids of the events it already delivered, and nothing is stored twice, whether it
//! names each event's key (`idempotency_key`) or the request's (`Idempotency-Key`).

use serde_json::{Value, json};

use crate::harness::{TestServer, decode};

async fn post_with_key(server: &TestServer, key: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = server.client.post(server.url("/api/v1/events")).json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    decode(request.send().await.expect("POST")).await
}

async fn stored(server: &TestServer, check: &str) -> Vec<Value> {
    let (_, page) = server
        .get(&format!("/api/v1/events?check={check}&limit=100"))
        .await;
    page["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_request_sent_again_with_its_key_is_stored_once() {
    let server = TestServer::start().await;
    let batch = json!([
        {"resource": "web1", "check": "idem", "summary": "one", "severity": "warning"},
        {"resource": "web2", "check": "idem", "summary": "two", "severity": "warning"},
    ]);
    let (status, first) = post_with_key(&server, Some("req-7"), &batch).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["accepted"], 2);
    assert!(first.get("duplicates").is_none(), "{first}");
    let (status, again) = post_with_key(&server, Some("req-7"), &batch).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["ids"], first["ids"], "the same events' ids");
    assert_eq!(again["duplicates"], 2, "{again}");
    assert_eq!(stored(&server, "idem").await.len(), 2, "stored once");
    // The alert counted each event once.
    let (_, alerts) = server.get("/api/v1/alerts?resource=web1").await;
    assert_eq!(alerts["items"][0]["count"], 1, "{alerts}");
    // Another key is another request.
    let (_, other) = post_with_key(&server, Some("req-8"), &batch).await;
    assert_ne!(other["ids"], first["ids"]);
    assert_eq!(stored(&server, "idem").await.len(), 4);
    // A key that cannot be one is refused, naming the header.
    let (status, bad) = post_with_key(&server, Some(" "), &batch).await;
    assert_eq!(status, 400, "{bad}");
    assert!(
        bad["error"]
            .as_str()
            .unwrap_or("")
            .contains("Idempotency-Key"),
        "{bad}"
    );
    let (_, metrics) = server.get("/metrics").await;
    let text = metrics.as_str().unwrap_or_default();
    assert!(text.contains("vakt_events_duplicate_total 2"), "{text}");
}

#[tokio::test]
async fn events_with_their_own_keys_are_stored_once_even_within_one_batch() {
    let server = TestServer::start().await;
    let event = |n: u32, key: &str| {
        json!({"resource": "db1", "check": "own-key", "summary": format!("n{n}"),
               "severity": "minor", "idempotency_key": key})
    };
    let (status, first) =
        post_with_key(&server, None, &json!([event(1, "a"), event(2, "b")])).await;
    assert_eq!(status, 202, "{first}");
    // "a" again, "c" new, and "c" twice within the batch.
    let (status, second) = post_with_key(
        &server,
        None,
        &json!([event(1, "a"), event(3, "c"), event(4, "c")]),
    )
    .await;
    assert_eq!(status, 202, "{second}");
    assert_eq!(second["ids"][0], first["ids"][0]);
    assert_eq!(
        second["ids"][1], second["ids"][2],
        "a repeat within the batch"
    );
    assert_eq!(second["duplicates"], 2);
    let events = stored(&server, "own-key").await;
    assert_eq!(events.len(), 3, "a, b, c");
    let keys: Vec<&str> = events
        .iter()
        .filter_map(|e| e["idempotency_key"].as_str())
        .collect();
    assert_eq!(keys.len(), 3, "the key is kept on the event: {events:?}");
    // A key longer than the limit names the field.
    let long = "k".repeat(300);
    let (status, bad) = post_with_key(&server, None, &event(5, &long)).await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(bad["details"][0]["field"], "idempotency_key", "{bad}");
}
