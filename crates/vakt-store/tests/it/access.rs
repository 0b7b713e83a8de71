//! API tokens (kept only as hashes) and the audit log.

use super::*;
use vakt_store::{AuditEntry, AuditQuery, TokenRecord};

fn token(id: &str, name: &str, hash: &str, expires_in: Option<Duration>) -> TokenRecord {
    let now = Utc::now();
    TokenRecord {
        id: id.into(),
        name: name.into(),
        owner: "alice".into(),
        scopes: vec!["read:alerts".into(), "write:alerts".into()],
        hash: hash.into(),
        created_at: now,
        created_by: "admin".into(),
        expires_at: expires_in.map(|d| now + d),
        last_used_at: None,
        revoked_at: None,
    }
}

async fn tokens_are_found_by_hash_revoked_and_counted(backend: &Backend) {
    let store = backend.open().await;
    let now = Utc::now();
    assert_eq!(store.live_tokens(now).await.expect("count"), 0);
    store
        .put_token(&token("01JTOKEN0000000000000000A1", "ci", "aa", None))
        .await
        .expect("put");
    store
        .put_token(&token(
            "01JTOKEN0000000000000000A2",
            "old",
            "bb",
            Some(Duration::seconds(-5)),
        ))
        .await
        .expect("put expired");
    assert_eq!(
        store.live_tokens(now).await.expect("count"),
        1,
        "expired ones do not count"
    );
    let found = store
        .token_by_hash("aa")
        .await
        .expect("read")
        .expect("found");
    assert_eq!(found.name, "ci");
    assert_eq!(found.scopes, ["read:alerts", "write:alerts"]);
    assert!(store.token_by_hash("zz").await.expect("read").is_none());
    store.touch_token(&found.id, now).await.expect("touch");
    let touched = store
        .token_by_hash("aa")
        .await
        .expect("read")
        .expect("found");
    assert_eq!(
        touched.last_used_at.map(|t| t.timestamp_millis()),
        Some(now.timestamp_millis())
    );
    let revoked = store
        .revoke_token("ci", now)
        .await
        .expect("revoke")
        .expect("was live");
    assert_eq!(revoked.id, found.id);
    assert!(revoked.revoked_at.is_some());
    assert!(
        store
            .revoke_token("ci", now)
            .await
            .expect("again")
            .is_none(),
        "only live ones"
    );
    assert_eq!(store.live_tokens(now).await.expect("count"), 0);
    assert_eq!(store.tokens().await.expect("list").len(), 2);
    store.close().await;
}
story!(
    story_tokens_are_found_by_hash_revoked_and_counted,
    tokens_are_found_by_hash_revoked_and_counted
);

async fn the_audit_log_pages_newest_first(backend: &Backend) {
    let store = backend.open().await;
    for (n, actor) in ["alice", "bob", "alice"].iter().enumerate() {
        store
            .audit(&AuditEntry {
                id: format!("01JAUDIT00000000000000000{n}"),
                at: Utc::now(),
                actor: (*actor).into(),
                method: "POST".into(),
                path: "/api/v1/alerts/{id}/ack".into(),
                status: 200,
                remote: Some("127.0.0.1".into()),
                detail: None,
            })
            .await
            .expect("audit");
    }
    let page = store
        .audit_log(&AuditQuery {
            actor: None,
            cursor: None,
            limit: 2,
        })
        .await
        .expect("page");
    let ids: Vec<&str> = page.items.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        ["01JAUDIT000000000000000002", "01JAUDIT000000000000000001"]
    );
    let next = store
        .audit_log(&AuditQuery {
            actor: None,
            cursor: page.next_cursor,
            limit: 2,
        })
        .await
        .expect("next");
    assert_eq!(next.items.len(), 1);
    let alice = store
        .audit_log(&AuditQuery {
            actor: Some("alice".into()),
            cursor: None,
            limit: 10,
        })
        .await
        .expect("alice");
    assert_eq!(alice.items.len(), 2);
    store.close().await;
}
story!(
    story_the_audit_log_pages_newest_first,
    the_audit_log_pages_newest_first
);

async fn sessions_are_found_touched_ended_and_expire(backend: &Backend) {
    use vakt_store::SessionRecord;
    let store = backend.open().await;
    let now = Utc::now();
    let session = |hash: &str, ends: Duration| SessionRecord {
        hash: hash.into(),
        user: "alice".into(),
        csrf: "c".into(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + ends,
        remote: Some("127.0.0.1".into()),
    };
    store
        .put_session(
            &session("old", Duration::seconds(-1)),
            now - Duration::hours(1),
        )
        .await
        .expect("put");
    store
        .put_session(&session("s1", Duration::hours(8)), now)
        .await
        .expect("put");
    assert!(
        store.session("old").await.expect("read").is_none(),
        "an ended session is dropped"
    );
    let found = store.session("s1").await.expect("read").expect("found");
    assert_eq!(found.user, "alice");
    let later = now + Duration::minutes(5);
    store.touch_session("s1", later).await.expect("touch");
    let touched = store.session("s1").await.expect("read").expect("found");
    assert_eq!(
        touched.last_seen_at.timestamp_millis(),
        later.timestamp_millis()
    );
    assert!(store.end_session("s1").await.expect("end"));
    assert!(!store.end_session("s1").await.expect("again"));
    assert!(store.session("s1").await.expect("read").is_none());
    store.close().await;
}
story!(
    story_sessions_are_found_touched_ended_and_expire,
    sessions_are_found_touched_ended_and_expire
);

async fn passwords_are_set_replaced_and_listed(backend: &Backend) {
    let store = backend.open().await;
    assert!(store.password("alice").await.expect("read").is_none());
    store
        .put_password("alice", "$argon2id$one", Utc::now())
        .await
        .expect("set");
    store
        .put_password("alice", "$argon2id$two", Utc::now())
        .await
        .expect("replace");
    assert_eq!(
        store.password("alice").await.expect("read").as_deref(),
        Some("$argon2id$two")
    );
    assert_eq!(store.password_users().await.expect("list"), ["alice"]);
    store.close().await;
}
story!(
    story_passwords_are_set_replaced_and_listed,
    passwords_are_set_replaced_and_listed
);
