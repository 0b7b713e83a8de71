//! Grouping: one message per group (the values of a notify action's `group_by` labels),
//! after `group_wait_secs` and then at most every `group_interval_secs`.

use super::*;

/// Groups looked at per round, at most.
const GROUPS_PER_ROUND: u32 = 1000;
/// Members one group message covers, at most (the rest go in the next message).
const GROUP_MEMBERS_MAX: u32 = 10_000;
/// Groups claimed together (one transaction), sent together and recorded together.
const GROUPS_PER_CLAIM: usize = 16;
/// Members a claim stops adding groups at (with `GROUP_MEMBERS_MAX`, what one claim holds in
/// memory until its messages are sent and recorded), where a claim writes its members
/// (PostgreSQL: each `running`, in a transaction ingest's group notes wait for): 20,000
/// members a claim cost the bulk rows of the compare a quarter of their throughput,
/// measured when SQLite's ingest still wrote its tables itself (BENCHMARKS.md).
const CLAIM_MEMBERS_BUDGET: usize = 4_096;
/// `CLAIM_MEMBERS_BUDGET` where claims are held in memory (SQLite, one dispatching
/// process): the claim reads the members and writes only the groups' marks, and the
/// writer it waits for is the journal's applier's, not ingest's. Behind a burst's backlog
/// each claim and each finishing transaction waits for one of the applier's transactions:
/// with 4,096 the last of a 2 s burst's 20 groups had its first message 5.7-6.3 s after
/// the burst's start, with 16,384 3.0-3.5 s (BENCHMARKS.md, issue 18: "A burst's group
/// messages on time").
const CLAIM_MEMBERS_BUDGET_HELD: usize = 16_384;

impl Dispatcher {
    /// Sends every group whose wait (first member) and interval (last message) have passed:
    /// one message for all its pending members. Returns when the next group not yet due
    /// will be, so the dispatcher can wake then.
    ///
    /// Due groups are claimed several at a time in one transaction, their messages sent
    /// concurrently, and all their members' attempts recorded in one: the members of
    /// different groups lie interleaved in the store, so a claim or a record per group would
    /// rewrite the same pages once per group.
    pub(super) async fn send_groups(
        &self,
        handling: &HandlingConfig,
    ) -> Result<Option<chrono::DateTime<Utc>>, StoreError> {
        let store = &self.deps.store;
        let heads = store.group_heads(GROUPS_PER_ROUND).await?;
        let now = Utc::now();
        let mut next: Option<chrono::DateTime<Utc>> = None;
        let mut due = Vec::new();
        for head in heads {
            let Some(ActionConfig::Notify {
                channel,
                to,
                group_by,
                group_wait_secs,
                group_interval_secs,
                ..
            }) = handling.actions.get(&head.action)
            else {
                continue;
            };
            let due_at = due_at(
                head.first_decided_at,
                head.last_sent_at,
                *group_wait_secs,
                *group_interval_secs,
            );
            if due_at > now {
                next = Some(next.map_or(due_at, |n| n.min(due_at)));
            } else {
                due.push(DueGroup {
                    head,
                    channel,
                    to,
                    group_by,
                });
            }
        }
        // In key order: ingest notes a batch's groups in key order too, so on PostgreSQL a
        // claim and an ingest transaction take the groups' row locks in the same order and
        // cannot deadlock on them.
        due.sort_unstable_by(|a, b| a.head.group_key.cmp(&b.head.group_key));
        let mut rest = &due[..];
        let budget = if store.capabilities().single_process {
            CLAIM_MEMBERS_BUDGET_HELD
        } else {
            CLAIM_MEMBERS_BUDGET
        };
        while !rest.is_empty() {
            let now = Utc::now();
            // Every message of a claim is sent at once, so one lease covers them all.
            let lease_until = now + chrono::Duration::seconds(lease_secs(handling));
            let keys: Vec<&str> = rest
                .iter()
                .take(GROUPS_PER_CLAIM)
                .map(|d| d.head.group_key.as_str())
                .collect();
            let claimed = store
                .claim_groups(&keys, now, lease_until, GROUP_MEMBERS_MAX, budget)
                .await?;
            // A store that claimed no group would loop forever: stop the round instead.
            if claimed.is_empty() {
                break;
            }
            let (groups, later) = rest.split_at(claimed.len().min(rest.len()));
            rest = later;
            let mut finished = Vec::with_capacity(claimed.iter().map(Vec::len).sum());
            let sent = futures_util::future::join_all(
                groups
                    .iter()
                    .zip(claimed)
                    .map(|(group, members)| self.send_group(handling, group, members)),
            )
            .await;
            // What was sent is recorded even when another group's read failed.
            let mut failed = None;
            for result in sent {
                match result {
                    Ok(members) => finished.extend(members),
                    Err(error) => failed = Some(error),
                }
            }
            self.record(finished).await;
            if let Some(error) = failed {
                return Err(error);
            }
        }
        Ok(next)
    }

    /// Sends one group's message for its claimed members; returns each member's attempt.
    async fn send_group(
        &self,
        handling: &HandlingConfig,
        group: &DueGroup<'_>,
        members: Vec<ActionRecord>,
    ) -> Result<Vec<(ActionRecord, Finish)>, StoreError> {
        let store = &self.deps.store;
        let (head, channel, to, group_by) = (&group.head, group.channel, group.to, group.group_by);
        let Some(first) = members.first() else {
            return Ok(Vec::new());
        };
        let started = Utc::now();
        // The members' alerts, each once, in one query (not one per member).
        let mut seen = std::collections::HashSet::with_capacity(members.len());
        let ids: Vec<&str> = members
            .iter()
            .map(|m| m.decided.alert_id.as_str())
            .filter(|id| seen.insert(*id))
            .collect();
        // Without inhibit rules no member is left out, and the message lists only the
        // first few: only their alerts are read, not all of a large group's.
        let listed = render::GROUP_LISTED_MAX * 5;
        let whole = !handling.inhibit.is_empty();
        let read = if whole {
            &ids[..]
        } else {
            &ids[..ids.len().min(listed)]
        };
        // A failed read ends the round: the members stay leased and are taken back
        // when the lease runs out, then sent again; nothing is marked as sent.
        // Without hurrying the journal's applier: the claim waited for it the same way.
        let mut alerts = store.alerts_by_id_unhurried(read).await?;
        // Inhibited members are left out of the message and recorded as skipped.
        let targets: Vec<&Alert> = alerts.iter().collect();
        let skipped = inhibitions(&**store, handling, &targets).await?;
        alerts.retain(|a| !skipped.contains_key(&a.id));
        let count = if whole { alerts.len() } else { ids.len() };
        let result = match alerts.first() {
            None => Outcome::Skipped("every alert of the group is inhibited".into()),
            Some(lead) => {
                let labels = lead.match_labels();
                let mut context = Context::new(
                    first,
                    lead.clone(),
                    None,
                    &[],
                    &handling.dispatch.console_url,
                );
                context.group = Some(render::Group {
                    key: head.group_key.clone(),
                    labels: group_by
                        .iter()
                        .map(|k| (k.clone(), labels.get(k).cloned().unwrap_or_default()))
                        .collect(),
                    count,
                    alerts: alerts.iter().take(listed).cloned().collect(),
                });
                match handling.channels.get(channel) {
                    None => {
                        Outcome::permanent(format!("channel {channel:?} is no longer configured"))
                    }
                    Some(config) => match self.throttled(channel, to, config, &context) {
                        Some(held) => Outcome::Skipped(held),
                        None => {
                            self.notify(handling, channel, config, to, &context, &first.decided.id)
                                .await
                        }
                    },
                }
            }
        };
        let finished = Utc::now();
        let message_id = first.decided.id.clone();
        let count = members.len();
        let mut finished_members = Vec::with_capacity(members.len());
        // The receiver's answer goes on the first member the message covered: the message's
        // own action unless its alert was inhibited.
        let mut output_kept = false;
        for member in members {
            let member_result = match skipped.get(&member.decided.alert_id) {
                Some(why) => Outcome::Skipped(why.clone()),
                None => {
                    let keeps_output = !std::mem::replace(&mut output_kept, true);
                    result.for_member(&message_id, count, keeps_output)
                }
            };
            let finish = retry::finish(handling, &member, member_result, started, finished);
            finished_members.push((member, finish));
        }
        Ok(finished_members)
    }
}

/// A group whose message is due, with its notify action's settings.
struct DueGroup<'a> {
    head: GroupHead,
    channel: &'a str,
    to: &'a [String],
    group_by: &'a [String],
}

/// When a group goes out: once its first member waited `wait_secs` (more may join
/// meanwhile) and its last message is `interval_secs` old (or there was none).
fn due_at(
    first_decided_at: chrono::DateTime<Utc>,
    last_sent_at: Option<chrono::DateTime<Utc>>,
    wait_secs: u64,
    interval_secs: u64,
) -> chrono::DateTime<Utc> {
    let after = |at: chrono::DateTime<Utc>, n: u64| {
        chrono::Duration::try_seconds(i64::try_from(n).unwrap_or(i64::MAX))
            .and_then(|d| at.checked_add_signed(d))
            .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC)
    };
    let wait_over = after(first_decided_at, wait_secs);
    match last_sent_at {
        Some(last) => wait_over.max(after(last, interval_secs)),
        None => wait_over,
    }
}

/// Whether a group goes out at `now`.
#[cfg(test)]
fn due(
    first_decided_at: chrono::DateTime<Utc>,
    last_sent_at: Option<chrono::DateTime<Utc>>,
    wait_secs: u64,
    interval_secs: u64,
    now: chrono::DateTime<Utc>,
) -> bool {
    due_at(first_decided_at, last_sent_at, wait_secs, interval_secs) <= now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_waits_for_its_members_then_for_its_interval() {
        let t0 = chrono::DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(20_000);
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        // First member at t0; wait 30 s, interval 300 s.
        assert!(!due(t0, None, 30, 300, at(29)), "still collecting members");
        assert!(due(t0, None, 30, 300, at(30)), "the first message");
        assert!(
            !due(t0, Some(at(30)), 30, 300, at(200)),
            "within the interval"
        );
        assert!(due(t0, Some(at(30)), 30, 300, at(330)), "the next message");
        assert!(due(t0, None, 0, 0, t0), "no wait at all");
    }
}
