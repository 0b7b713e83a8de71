//! Silences and alerts that expire by themselves, as stored.

use super::*;

async fn silences_and_expiring_alerts_are_kept(backend: &Backend) {
    use vakt_core::matcher::MatcherSpec;
    use vakt_core::silence::{Silence, SilenceState};
    let p = pipeline();
    let store = backend.open().await;
    // Stored times keep milliseconds.
    let now = chrono::TimeZone::timestamp_millis_opt(&Utc, Utc::now().timestamp_millis())
        .single()
        .expect("now");
    let mut silence = Silence {
        id: "7c2e5e4a-0000-4000-8000-000000000001".into(),
        matchers: vec![MatcherSpec {
            name: "alertname".into(),
            value: "Disk.*".into(),
            is_regex: true,
            is_equal: true,
        }],
        starts_at: now - Duration::minutes(1),
        ends_at: now + Duration::hours(1),
        created_by: "alice".into(),
        comment: "disk swap".into(),
        updated_at: now,
    };
    store.put_silence(&silence).await.expect("create");
    assert_eq!(
        store.silence(&silence.id).await.expect("read").as_ref(),
        Some(&silence)
    );
    silence.expire(now);
    store.put_silence(&silence).await.expect("update");
    let list = |set, changed_since| vakt_store::SilenceQuery {
        set,
        now: now + Duration::seconds(1),
        changed_since,
    };
    let all = store
        .silences(&list(vakt_store::SilenceSet::All, None))
        .await
        .expect("list");
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0].state(now + Duration::seconds(1)),
        SilenceState::Expired
    );
    let in_force = store
        .silences(&list(vakt_store::SilenceSet::InForce, None))
        .await
        .expect("list");
    assert!(in_force.is_empty(), "an expired silence is not in force");
    let expired = store
        .silences(&list(vakt_store::SilenceSet::Expired, None))
        .await
        .expect("list");
    assert_eq!(expired.len(), 1);
    let changed = async |since| {
        let query = list(vakt_store::SilenceSet::All, Some(since));
        store.silences(&query).await.expect("list")
    };
    assert_eq!(changed(now).await.len(), 1, "written at now");
    assert!(
        changed(now + Duration::milliseconds(1)).await.is_empty(),
        "nothing written since"
    );
    assert_eq!(store.silence("nope").await.expect("read"), None);

    // An event that says when its alert ends: due once that time passes, not before.
    let mut input =
        event(json!({"resource": "r", "check": "c", "summary": "firing", "severity": "major"}));
    input.expires_at = Some(now + Duration::seconds(30));
    let prepared = p.prepare(input, "test", now);
    let id = store
        .ingest(&p, &Default::default(), vec![prepared])
        .await
        .expect("ingest")[0]
        .record
        .alert_id
        .clone()
        .expect("alert");
    assert!(store.expired_alerts(now, 10).await.expect("due").is_empty());
    let due = store
        .expired_alerts(now + Duration::seconds(31), 10)
        .await
        .expect("due");
    assert_eq!(
        due.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        [id.as_str()]
    );
    assert_eq!(
        due[0].expires_at.map(|t| t.timestamp()),
        Some((now + Duration::seconds(30)).timestamp())
    );
    store.close().await;
}
story!(
    story_silences_and_expiring_alerts_are_kept,
    silences_and_expiring_alerts_are_kept
);
