//! One attempt of one action: run the command, call the webhook, send the notification or
//! the page, and say how it ended (`Outcome`).

use super::*;

/// How long a phone gateway may take to answer a page.
const PHONE_TIMEOUT: Duration = Duration::from_secs(10);

/// How one attempt ended.
#[derive(Debug)]
pub(super) enum Outcome {
    Succeeded {
        detail: String,
        output: Option<serde_json::Value>,
    },
    Failed {
        detail: String,
        output: Option<serde_json::Value>,
        transient: bool,
    },
    Skipped(String),
}

impl Outcome {
    pub(super) fn transient(detail: String) -> Outcome {
        Outcome::Failed {
            detail,
            output: None,
            transient: true,
        }
    }

    pub(super) fn permanent(detail: String) -> Outcome {
        Outcome::Failed {
            detail,
            output: None,
            transient: false,
        }
    }

    /// The group message's outcome, as each member records it. The receiver's answer (the
    /// attempt's output, up to 4 KiB of its body) is kept by one member, `keeps_output`
    /// (the message's own action where it is covered); the others name the message. Copied
    /// to each of up to 10,000 members, a 4 KiB answer took 40 MB of memory and as much of
    /// the attempts' rows.
    pub(super) fn for_member(&self, message: &str, count: usize, keeps_output: bool) -> Outcome {
        let output = |output: &Option<serde_json::Value>| output.clone().filter(|_| keeps_output);
        match self {
            Outcome::Succeeded { detail, output: o } => Outcome::Succeeded {
                detail: format!("sent in group message {message} with {count} action(s): {detail}"),
                output: output(o),
            },
            Outcome::Failed {
                detail,
                output: o,
                transient,
            } => Outcome::Failed {
                detail: format!("group message {message}: {detail}"),
                output: output(o),
                transient: *transient,
            },
            Outcome::Skipped(why) => Outcome::Skipped(why.clone()),
        }
    }
}

impl From<Delivery> for Outcome {
    fn from(delivery: Delivery) -> Outcome {
        match delivery {
            Delivery::Delivered { detail, output } => Outcome::Succeeded {
                detail,
                output: Some(output),
            },
            Delivery::Transient { detail, output } => Outcome::Failed {
                detail,
                output: Some(output),
                transient: true,
            },
            Delivery::Permanent { detail, output } => Outcome::Failed {
                detail,
                output: Some(output),
                transient: false,
            },
        }
    }
}

/// What running an action reads about its alert, when the caller has it already (a handed
/// action: the alert as its batch left it).
pub(super) struct Loaded {
    pub alert: Alert,
    pub event: Option<vakt_core::pipeline::EventRecord>,
    pub earlier: Vec<ActionRecord>,
}

impl Dispatcher {
    /// Runs one action once.
    pub(super) async fn attempt(
        &self,
        handling: &HandlingConfig,
        record: &ActionRecord,
        loaded: Option<Loaded>,
    ) -> Outcome {
        let store = &self.deps.store;
        if let Some(page) = &record.decided.target {
            return self.page(handling, record, page).await;
        }
        let Some(config) = handling.actions.get(&*record.decided.action) else {
            return Outcome::Failed {
                detail: format!("action {:?} is no longer configured", record.decided.action),
                output: None,
                transient: false,
            };
        };
        let loaded = match loaded {
            Some(loaded) => loaded,
            None => {
                let alert = match store.alert(&record.decided.alert_id).await {
                    Ok(Some(alert)) => alert,
                    Ok(None) => {
                        return Outcome::Failed {
                            detail: "its alert no longer exists".into(),
                            output: None,
                            transient: false,
                        };
                    }
                    Err(error) => {
                        return Outcome::transient(format!("reading its alert: {error}"));
                    }
                };
                Loaded {
                    event: store.event(&record.decided.event_id).await.ok().flatten(),
                    earlier: store.alert_actions(&alert.id).await.unwrap_or_default(),
                    alert,
                }
            }
        };
        let Loaded {
            alert,
            event,
            earlier,
        } = loaded;
        // Inhibition: an active upstream alert mutes notifications of what depends on it.
        if config.notifies() {
            match inhibitions(&**store, handling, &[&alert]).await {
                Ok(mut found) => {
                    if let Some(why) = found.remove(&alert.id) {
                        return Outcome::Skipped(why);
                    }
                }
                Err(error) => return Outcome::transient(format!("checking inhibition: {error}")),
            }
        }
        let context = Context::new(
            record,
            alert,
            event,
            &earlier,
            &handling.dispatch.console_url,
        );
        match config {
            ActionConfig::Exec {
                command,
                shell,
                env,
                cwd,
                timeout_secs,
                concurrency,
                cooldown_secs,
                dry_run,
                output_max_bytes,
                ..
            } => {
                if *cooldown_secs > 0 {
                    match store
                        .last_success(&record.decided.action, &record.decided.alert_id)
                        .await
                    {
                        Ok(Some(last))
                            if (Utc::now() - last).num_seconds()
                                < i64::try_from(*cooldown_secs).unwrap_or(i64::MAX) =>
                        {
                            return Outcome::Skipped(format!(
                                "cooldown: it last ran for this alert {} s ago (cooldown {cooldown_secs} s)",
                                (Utc::now() - last).num_seconds()
                            ));
                        }
                        Ok(_) => {}
                        Err(error) => {
                            return Outcome::transient(format!("checking the cooldown: {error}"));
                        }
                    }
                }
                let name = &*record.decided.action;
                let mut argv = Vec::with_capacity(command.len());
                for i in 0..command.len() {
                    match render::render(
                        &handling.templates,
                        &render::command_template(name, i, *shell),
                        &context,
                    ) {
                        Ok(arg) => argv.push(arg),
                        Err(e) => return Outcome::permanent(e),
                    }
                }
                if *shell {
                    argv = vec!["/bin/sh".into(), "-c".into(), argv.join(" ")];
                }
                let mut environment = BTreeMap::new();
                let a = &context.alert;
                for (k, v) in [
                    ("VAKT_ACTION_ID", record.decided.id.as_str()),
                    ("VAKT_PURPOSE", record.decided.purpose.as_str()),
                    ("VAKT_ALERT_ID", a.id.as_str()),
                    ("VAKT_ALERT_STATUS", a.status.as_str()),
                    ("VAKT_SEVERITY", a.severity.as_str()),
                    ("VAKT_RESOURCE", a.resource.as_str()),
                    ("VAKT_CHECK", a.check.as_str()),
                    ("VAKT_SUMMARY", a.summary.as_str()),
                ] {
                    environment.insert(k.to_owned(), v.to_owned());
                }
                for key in env.keys() {
                    match render::render(
                        &handling.templates,
                        &format!("actions.{name}.env.{key}"),
                        &context,
                    ) {
                        Ok(value) => {
                            environment.insert(key.clone(), value);
                        }
                        Err(e) => return Outcome::permanent(e),
                    }
                }
                if *dry_run {
                    return Outcome::Succeeded {
                        detail: format!("dry run: would run {argv:?}"),
                        output: Some(serde_json::json!({"argv": argv, "dry_run": true})),
                    };
                }
                let limit = self.action_limit(name, *concurrency);
                let Ok(_permit) = limit.acquire_owned().await else {
                    return Outcome::transient("the action's concurrency limit closed".into());
                };
                match exec::run(
                    &argv,
                    &environment,
                    cwd.as_deref(),
                    Duration::from_secs(*timeout_secs),
                    *output_max_bytes,
                )
                .await
                {
                    Err(detail) => Outcome::permanent(detail),
                    Ok(ran) if ran.succeeded() => Outcome::Succeeded {
                        detail: format!("{}: {}", argv.join(" "), ran.summary()),
                        output: Some(ran.output(&argv)),
                    },
                    Ok(ran) => Outcome::Failed {
                        detail: format!("{}: {}", argv.join(" "), ran.summary()),
                        output: Some(ran.output(&argv)),
                        transient: true,
                    },
                }
            }
            ActionConfig::Webhook {
                url,
                method,
                headers,
                body,
                hmac_secret,
                timeout_secs,
                ..
            } => {
                let body = match body {
                    Some(_) => match render::render(
                        &handling.templates,
                        &render::json_template(&format!("actions.{}.body", record.decided.action)),
                        &context,
                    )
                    .and_then(|text| valid_json(&text))
                    {
                        Ok(body) => body,
                        Err(e) => return Outcome::permanent(e),
                    },
                    None => match context.document() {
                        Ok(body) => body,
                        Err(e) => return Outcome::permanent(e),
                    },
                };
                let headers: Vec<(String, String)> = headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Outcome::from(
                    transport::http(
                        &self.client,
                        transport::HttpCall {
                            method,
                            url,
                            headers: &headers,
                            body,
                            timeout: Duration::from_secs(*timeout_secs),
                            idempotency_key: &record.decided.id,
                            hmac_secret: hmac_secret.as_deref(),
                        },
                    )
                    .await,
                )
            }
            ActionConfig::Notify { channel, to, .. } => {
                let Some(channel_config) = handling.channels.get(channel) else {
                    return Outcome::permanent(format!(
                        "channel {channel:?} is no longer configured"
                    ));
                };
                if let Some(held) = self.throttled(channel, to, channel_config, &context) {
                    return Outcome::Skipped(held);
                }
                self.notify(
                    handling,
                    channel,
                    channel_config,
                    to,
                    &context,
                    &record.decided.id,
                )
                .await
            }
        }
    }

    /// Sends an escalation page: through a channel to the person's address (or the
    /// channel's own recipients), or to the person's phone gateway webhook.
    pub(super) async fn page(
        &self,
        handling: &HandlingConfig,
        record: &ActionRecord,
        page: &vakt_core::escalation::Page,
    ) -> Outcome {
        let store = &self.deps.store;
        let alert = match store.alert(&record.decided.alert_id).await {
            Ok(Some(alert)) => alert,
            Ok(None) => return Outcome::permanent("its alert no longer exists".into()),
            Err(error) => return Outcome::transient(format!("reading its alert: {error}")),
        };
        // Acknowledged or resolved since the step fired: the page would only be noise.
        if !matches!(alert.status, AlertStatus::Open) {
            return Outcome::Skipped(format!(
                "not paged: the alert is {} since the step fired",
                alert.status
            ));
        }
        let event = store.event(&record.decided.event_id).await.ok().flatten();
        let context = Context::new(record, alert, event, &[], &handling.dispatch.console_url);
        match &page.via {
            vakt_core::escalation::Via::Channel { channel, to, .. } => {
                let Some(config) = handling.channels.get(channel) else {
                    return Outcome::permanent(format!(
                        "channel {channel:?} is no longer configured"
                    ));
                };
                self.notify(handling, channel, config, to, &context, &record.decided.id)
                    .await
            }
            vakt_core::escalation::Via::Phone { url } => {
                let body = match context.document() {
                    Ok(body) => body,
                    Err(e) => return Outcome::permanent(e),
                };
                self.post(url, &[], body, PHONE_TIMEOUT, &record.decided.id)
                    .await
            }
        }
    }

    pub(super) fn action_limit(&self, name: &str, concurrency: u32) -> Arc<Semaphore> {
        let mut limits = self
            .per_action
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(limits.entry(name.to_owned()).or_insert_with(|| {
            Arc::new(Semaphore::new(
                usize::try_from(concurrency.max(1)).unwrap_or(1),
            ))
        }))
    }

    pub(super) async fn notify(
        &self,
        handling: &HandlingConfig,
        channel: &str,
        config: &ChannelConfig,
        to: &[String],
        context: &Context,
        key: &str,
    ) -> Outcome {
        match config {
            ChannelConfig::Email { subject, body, .. } => {
                let subject = match subject {
                    Some(_) => match render::render(
                        &handling.templates,
                        &format!("channels.{channel}.subject"),
                        context,
                    ) {
                        Ok(s) => s,
                        Err(e) => return Outcome::permanent(e),
                    },
                    None => context.title(),
                };
                let body = match body {
                    Some(_) => match render::render(
                        &handling.templates,
                        &format!("channels.{channel}.body"),
                        context,
                    ) {
                        Ok(s) => s,
                        Err(e) => return Outcome::permanent(e),
                    },
                    None => context.text(),
                };
                self.send_mail(config, to, subject, body, key, context.thread())
                    .await
            }
            ChannelConfig::Slack(chat)
            | ChannelConfig::Mattermost(chat)
            | ChannelConfig::Teams(chat)
            | ChannelConfig::Webhook(chat) => {
                let body = match &chat.template {
                    Some(_) => match render::render(
                        &handling.templates,
                        &render::json_template(&format!("channels.{channel}.template")),
                        context,
                    )
                    .and_then(|t| valid_json(&t))
                    {
                        Ok(body) => body,
                        Err(e) => return Outcome::permanent(e),
                    },
                    None => match config {
                        ChannelConfig::Slack(_) => context.slack().to_string(),
                        ChannelConfig::Mattermost(_) => context.mattermost().to_string(),
                        ChannelConfig::Teams(_) => context.teams().to_string(),
                        _ => match context.document() {
                            Ok(body) => body,
                            Err(e) => return Outcome::permanent(e),
                        },
                    },
                };
                self.post_chat(chat, body, key).await
            }
        }
    }

    /// Sends mail through an email channel, to `to` or else the channel's own recipients.
    pub(super) async fn send_mail(
        &self,
        config: &ChannelConfig,
        to: &[String],
        subject: String,
        body: String,
        key: &str,
        thread: Option<(String, Option<String>)>,
    ) -> Outcome {
        let (Some(email), ChannelConfig::Email { to: default_to, .. }) = (config.email(), config)
        else {
            return Outcome::permanent("not an email channel".into());
        };
        let recipients = if to.is_empty() { default_to } else { to };
        Outcome::from(
            transport::email(
                &email,
                transport::Mail {
                    to: recipients,
                    subject,
                    body,
                    idempotency_key: key,
                    thread,
                },
            )
            .await,
        )
    }

    /// POSTs a JSON body to a chat service's (or a generic) incoming webhook.
    pub(super) async fn post_chat(&self, chat: &ChatConfig, body: String, key: &str) -> Outcome {
        let headers: Vec<(String, String)> = chat
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_owned()))
            .collect();
        let timeout = Duration::from_secs(chat.timeout_secs);
        self.post(chat.url.expose(), &headers, body, timeout, key)
            .await
    }

    /// POSTs a document (a chat message, a phone page) with its idempotency key.
    pub(super) async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: String,
        timeout: Duration,
        key: &str,
    ) -> Outcome {
        Outcome::from(
            transport::http(
                &self.client,
                transport::HttpCall {
                    method: "POST",
                    url,
                    headers,
                    body,
                    timeout,
                    idempotency_key: key,
                    hmac_secret: None,
                },
            )
            .await,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_message_s_outcome_is_every_member_s() {
        let answer = serde_json::json!({"status": 200, "body": "ok"});
        let sent = Outcome::Succeeded {
            detail: "200".into(),
            output: Some(answer.clone()),
        };
        match sent.for_member("G1", 12, true) {
            Outcome::Succeeded { detail, output } => {
                assert_eq!(detail, "sent in group message G1 with 12 action(s): 200");
                assert_eq!(
                    output,
                    Some(answer.clone()),
                    "the member that keeps the answer"
                );
            }
            other => panic!("{other:?}"),
        }
        match sent.for_member("G1", 12, false) {
            Outcome::Succeeded { detail, output } => {
                assert_eq!(detail, "sent in group message G1 with 12 action(s): 200");
                assert_eq!(output, None, "the other members name the message instead");
            }
            other => panic!("{other:?}"),
        }
        let failed = Outcome::Failed {
            detail: "timeout".into(),
            output: Some(answer.clone()),
            transient: true,
        };
        for keeps in [true, false] {
            match failed.for_member("G1", 12, keeps) {
                Outcome::Failed {
                    detail,
                    transient,
                    output,
                } => assert_eq!(
                    (detail.as_str(), transient, output),
                    (
                        "group message G1: timeout",
                        true,
                        keeps.then(|| answer.clone())
                    )
                ),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn deliveries_map_to_outcomes() {
        let permanent = Outcome::from(Delivery::Permanent {
            detail: "404".into(),
            output: serde_json::Value::Null,
        });
        assert!(matches!(
            permanent,
            Outcome::Failed {
                transient: false,
                ..
            }
        ));
        let transient = Outcome::from(Delivery::Transient {
            detail: "503".into(),
            output: serde_json::Value::Null,
        });
        assert!(matches!(
            transient,
            Outcome::Failed {
                transient: true,
                ..
            }
        ));
    }
}
