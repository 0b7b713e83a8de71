//! Throttling: at most `throttle_max` messages per window to one channel and recipients; the
//! rest are held and listed in one summary when the window has room. Windows are stored as they
//! change and restored at start.

use super::*;

/// Messages sent per (channel, recipients), for throttling; held-back lines for the summary.
/// Stored as they change (`Store::put_throttle`) and loaded at start, so a restart in the
/// middle of a storm does not open a fresh window.
#[derive(Default)]
pub(super) struct Throttles {
    pub(super) windows: HashMap<ThrottleKey, Window>,
    /// Windows changed since they were last stored.
    pub(super) dirty: std::collections::HashSet<ThrottleKey>,
}

/// A channel and the recipients a message goes to.
pub(super) type ThrottleKey = (String, Vec<String>);

/// Lines held back for one summary, at most.
pub(super) const THROTTLE_HELD_MAX: usize = 1000;

#[derive(Default, serde::Serialize, Deserialize)]
pub(super) struct Window {
    pub(super) sent: VecDeque<chrono::DateTime<Utc>>,
    pub(super) held: Vec<String>,
}

impl Window {
    /// Forgets messages older than the window; whether another may go out now.
    pub(super) fn has_room(
        &mut self,
        throttle: ThrottleConfig,
        now: chrono::DateTime<Utc>,
    ) -> bool {
        let window = chrono::Duration::seconds(
            i64::try_from(throttle.throttle_window_secs).unwrap_or(i64::MAX / 1000),
        );
        while self.sent.front().is_some_and(|&t| now - t >= window) {
            self.sent.pop_front();
        }
        self.sent.len() < usize::try_from(throttle.throttle_max).unwrap_or(usize::MAX)
    }
}

impl Throttles {
    /// What to store for the changed windows: (key, state, or `None` once empty).
    pub(super) fn take_dirty(&mut self) -> Vec<(String, Option<String>)> {
        let dirty: Vec<ThrottleKey> = self.dirty.drain().collect();
        dirty
            .into_iter()
            .map(|key| {
                let state = self
                    .windows
                    .get(&key)
                    .filter(|w| !w.sent.is_empty() || !w.held.is_empty())
                    .and_then(|w| serde_json::to_string(w).ok());
                (serde_json::to_string(&key).unwrap_or_default(), state)
            })
            .collect()
    }

    /// Takes stored windows back (at start); entries that do not parse are skipped.
    pub(super) fn restore(&mut self, stored: Vec<(String, String)>) -> usize {
        let mut restored = 0;
        for (key, state) in stored {
            match (
                serde_json::from_str::<ThrottleKey>(&key),
                serde_json::from_str::<Window>(&state),
            ) {
                (Ok(key), Ok(window)) => {
                    self.windows.insert(key, window);
                    restored += 1;
                }
                _ => tracing::warn!(%key, "a stored throttle window does not parse; skipped"),
            }
        }
        restored
    }
}

impl Dispatcher {
    /// Stores the throttle windows that changed; a failed write is tried again later.
    pub(super) async fn store_throttles(&self) {
        let changed = self
            .throttles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take_dirty();
        for (key, state) in changed {
            if let Err(error) = self.deps.store.put_throttle(&key, state.as_deref()).await {
                tracing::warn!(%error, %key, "cannot store a throttle window; trying again later");
                if let Ok(key) = serde_json::from_str::<ThrottleKey>(&key) {
                    self.throttles
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .dirty
                        .insert(key);
                }
            }
        }
    }

    /// Counts a message against its channel's throttle; `Some(reason)` when it must wait.
    pub(super) fn throttled(
        &self,
        channel: &str,
        to: &[String],
        config: &ChannelConfig,
        context: &Context,
    ) -> Option<String> {
        let throttle = config.throttle();
        if throttle.throttle_max == 0 {
            return None;
        }
        let mut throttles = self
            .throttles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (channel.to_owned(), to.to_vec());
        throttles.dirty.insert(key.clone());
        let state = throttles.windows.entry(key).or_default();
        let now = Utc::now();
        if state.has_room(throttle, now) {
            state.sent.push_back(now);
            None
        } else {
            if state.held.len() < THROTTLE_HELD_MAX {
                state.held.push(context.title());
            }
            Some(format!(
                "throttled: channel {channel} already sent {} message(s) in the last {} s; summarised later",
                state.sent.len(),
                throttle.throttle_window_secs
            ))
        }
    }

    /// Sends one summary per throttled channel whose window has room again.
    pub(super) async fn send_summaries(&self, handling: &HandlingConfig) {
        let due: Vec<(ThrottleKey, Vec<String>)> = {
            let mut throttles = self
                .throttles
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Utc::now();
            let mut due = Vec::new();
            for (key, state) in throttles.windows.iter_mut() {
                let Some(config) = handling.channels.get(&key.0) else {
                    continue;
                };
                if !state.held.is_empty() && state.has_room(config.throttle(), now) {
                    state.sent.push_back(now);
                    due.push((key.clone(), std::mem::take(&mut state.held)));
                }
            }
            for (key, _) in &due {
                throttles.dirty.insert(key.clone());
            }
            due
        };
        for ((channel, to), held) in due {
            let Some(config) = handling.channels.get(&channel) else {
                continue;
            };
            let title = format!(
                "[vakt] {} notification(s) held back by throttling",
                held.len()
            );
            let mut text = String::new();
            for line in held.iter().take(render::GROUP_LISTED_MAX) {
                text.push_str("- ");
                text.push_str(line);
                text.push('\n');
            }
            if held.len() > render::GROUP_LISTED_MAX {
                text.push_str(&format!(
                    "... and {} more\n",
                    held.len() - render::GROUP_LISTED_MAX
                ));
            }
            let outcome = self.send_plain(config, &to, &title, &text).await;
            tracing::info!(
                %channel,
                held = held.len(),
                ?outcome,
                "sent a throttling summary"
            );
        }
    }

    /// A message that belongs to no alert (throttling summaries).
    pub(super) async fn send_plain(
        &self,
        config: &ChannelConfig,
        to: &[String],
        title: &str,
        text: &str,
    ) -> Outcome {
        let key = ulid::Ulid::new().to_string();
        match config {
            ChannelConfig::Email { .. } => {
                self.send_mail(config, to, title.to_owned(), text.to_owned(), &key, None)
                    .await
            }
            ChannelConfig::Slack(chat)
            | ChannelConfig::Mattermost(chat)
            | ChannelConfig::Teams(chat)
            | ChannelConfig::Webhook(chat) => {
                let body = match config {
                    ChannelConfig::Teams(_) => {
                        serde_json::json!({"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": null, "content": {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard", "version": "1.4", "body": [{"type": "TextBlock", "weight": "Bolder", "text": title, "wrap": true}, {"type": "TextBlock", "text": text, "wrap": true}]}}]})
                    }
                    ChannelConfig::Webhook(_) => {
                        serde_json::json!({"version": "1", "purpose": "throttle_summary", "title": title, "text": text})
                    }
                    _ => serde_json::json!({"text": format!("{title}\n{text}")}),
                };
                self.post_chat(chat, body.to_string(), &key).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(max: u32, window_secs: u64) -> ThrottleConfig {
        ThrottleConfig {
            throttle_max: max,
            throttle_window_secs: window_secs,
        }
    }

    #[test]
    fn a_window_takes_its_maximum_then_frees_up_as_it_slides() {
        let t0 = Utc::now();
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        let mut window = Window::default();
        let config = throttle(2, 60);
        for s in [0, 10] {
            assert!(window.has_room(config, at(s)));
            window.sent.push_back(at(s));
        }
        assert!(!window.has_room(config, at(30)), "two in the last minute");
        assert!(window.has_room(config, at(60)), "the first slid out");
        assert_eq!(window.sent.len(), 1);
    }

    #[test]
    fn changed_windows_are_stored_and_come_back_and_empty_ones_are_forgotten() {
        let mut throttles = Throttles::default();
        let key: ThrottleKey = ("chat".into(), vec!["ops@example.com".into()]);
        let mut window = Window::default();
        window.sent.push_back(Utc::now());
        window.held.push("[CRITICAL] http on web1".into());
        throttles.windows.insert(key.clone(), window);
        throttles.dirty.insert(key.clone());
        let empty: ThrottleKey = ("mail".into(), Vec::new());
        throttles.windows.insert(empty.clone(), Window::default());
        throttles.dirty.insert(empty);
        let mut stored = throttles.take_dirty();
        stored.sort();
        assert!(throttles.take_dirty().is_empty(), "taken once");
        assert_eq!(
            stored[1].1, None,
            "an empty window is forgotten: {stored:?}"
        );
        let kept: Vec<(String, String)> = stored
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        let mut restarted = Throttles::default();
        assert_eq!(restarted.restore(kept), 1);
        let back = restarted.windows.get(&key).expect("restored");
        assert_eq!(back.held, ["[CRITICAL] http on web1"]);
        assert_eq!(back.sent.len(), 1);
        assert_eq!(
            restarted.restore(vec![("not json".into(), "{}".into())]),
            0,
            "a broken row is skipped"
        );
    }
}
