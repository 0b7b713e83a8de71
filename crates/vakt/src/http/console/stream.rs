//! Live pages: a counter of alert changes (bumped by the ingest writer after each commit and
//! by every operator request) and the server-sent event stream boards listen to.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::watch;

use crate::http::AppState;

/// How long a stream waits after a change for more before it tells the page (many commits
/// a second become one refresh at most every this long).
const COALESCE: Duration = Duration::from_millis(250);
/// Boards hear about changes at least this often even when this node saw none (another
/// PostgreSQL node's commits), as a `tick` the page treats like a change.
const TICK: Duration = Duration::from_secs(10);

/// The change counter: cheap to bump, many listeners.
pub struct Changes(watch::Sender<u64>);

impl Default for Changes {
    fn default() -> Self {
        Changes(watch::channel(0).0)
    }
}

impl Changes {
    /// Something about alerts changed (a commit, an ack, a silence).
    pub fn bump(&self) {
        self.0
            .send_modify(|version| *version = version.wrapping_add(1));
    }

    pub fn version(&self) -> u64 {
        *self.0.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// `GET /console/stream`: `change` events carrying the change counter, within
/// [`COALESCE`] of a commit; a comment every 15 s keeps proxies from closing it.
pub async fn stream(
    State(state): State<Arc<AppState>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = state.console.changes.subscribe();
    let stop = state.console.stop.clone();
    let events =
        futures_util::stream::unfold((receiver, stop), |(mut receiver, mut stop)| async move {
            if *stop.borrow() {
                return None;
            }
            let changed = tokio::select! {
                // The server is stopping: end the stream so the graceful shutdown can finish.
                _ = stop.changed() => return None,
                changed = tokio::time::timeout(TICK, receiver.changed()) => changed,
            };
            let (name, version) = match changed {
                Ok(Err(_)) => return None,
                Ok(Ok(())) => {
                    tokio::time::sleep(COALESCE).await;
                    ("change", *receiver.borrow_and_update())
                }
                Err(_) => ("tick", *receiver.borrow()),
            };
            let event = Event::default().event(name).data(version.to_string());
            Some((Ok(event), (receiver, stop)))
        });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
