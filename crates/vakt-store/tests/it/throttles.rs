//! Throttle windows the dispatcher stores to survive a restart.

use super::*;

async fn throttle_windows_are_kept_and_forgotten(backend: &Backend) {
    let store = backend.open().await;
    store
        .put_throttle("[\"chat\",[]]", Some("{\"sent\":[],\"held\":[\"a\"]}"))
        .await
        .expect("put");
    store
        .put_throttle(
            "[\"chat\",[]]",
            Some("{\"sent\":[],\"held\":[\"a\",\"b\"]}"),
        )
        .await
        .expect("replace");
    store
        .put_throttle("[\"mail\",[\"x\"]]", Some("{}"))
        .await
        .expect("put another");
    store.close().await;
    let store = backend.open().await;
    let kept = store.throttles().await.expect("read");
    assert_eq!(
        kept,
        [
            (
                "[\"chat\",[]]".to_owned(),
                "{\"sent\":[],\"held\":[\"a\",\"b\"]}".to_owned()
            ),
            ("[\"mail\",[\"x\"]]".to_owned(), "{}".to_owned()),
        ]
    );
    store
        .put_throttle("[\"mail\",[\"x\"]]", None)
        .await
        .expect("forget");
    assert_eq!(store.throttles().await.expect("read").len(), 1);
    store.close().await;
}
story!(
    story_throttle_windows_are_kept_and_forgotten,
    throttle_windows_are_kept_and_forgotten
);
