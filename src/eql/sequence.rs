//! The sequence state machine (ES `SequenceMatcher` semantics), fed events in (timestamp, tiebreaker) order:
//! at most one pending partial sequence per stage and join key, a newer one replacing an older one; one event
//! may advance a pending sequence and also start a new one; `until` and missing-event (`![…]`) stages discard
//! pending sequences of their key.

use std::collections::HashMap;

use super::node::Node;

use super::plan::{JoinKey, KeyPart, SequencePlan, StagePlan};

/// A finished sequence: one entry per stage (None for a missing-event stage), and its join key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Completed<Id> {
    pub events: Vec<Option<Id>>,
    pub key: JoinKey,
    /// Input position of the last positive event, for ordering results.
    pub ordinal: u64,
}

#[derive(Debug, Clone)]
struct Partial<Id> {
    events: Vec<Option<Id>>,
    /// Timestamp of each stage's event (0 for stages not matched yet).
    stage_ts: Vec<i64>,
    start_ts: i64,
    last_ts: i64,
    last_ordinal: u64,
}

/// A sequence whose positive stages matched, waiting for its trailing missing-event window to pass.
#[derive(Debug, Clone)]
struct Awaiting<Id> {
    completed: Completed<Id>,
    start_ts: i64,
    last_ts: i64,
    last_leading: Option<i64>,
}

pub(crate) struct SequenceMatcher<Id> {
    /// `pending[i]`: partial sequences whose last matched stage is the positive stage `i`.
    pending: Vec<HashMap<JoinKey, Partial<Id>>>,
    awaiting: Vec<Awaiting<Id>>,
    /// Timestamps of recent events matching each missing stage (indexed like `plan.stages`), by key.
    missing_seen: Vec<HashMap<JoinKey, Vec<i64>>>,
    next_ordinal: u64,
    /// Whether the event last pushed is held by a pending or awaiting sequence.
    holds_last: bool,
}

impl<Id: Copy> SequenceMatcher<Id> {
    pub fn new(plan: &SequencePlan) -> Self {
        SequenceMatcher {
            pending: plan.positive.iter().map(|_| HashMap::new()).collect(),
            awaiting: Vec::new(),
            missing_seen: plan.stages.iter().map(|_| HashMap::new()).collect(),
            next_ordinal: 0,
            holds_last: false,
        }
    }

    /// Feeds one event (in time order); returns the sequences it completes.
    pub fn push(
        &mut self,
        plan: &SequencePlan,
        id: Id,
        doc: &dyn Node,
        ts: i64,
    ) -> Vec<Completed<Id>> {
        let ordinal = self.next_ordinal;
        self.next_ordinal += 1;
        self.holds_last = false;
        let mut done = self.settle_awaiting(plan, doc, ts);
        if let Some(until) = &plan.until {
            for key in stage_keys(until, doc) {
                for stage in &mut self.pending {
                    stage.remove(&key);
                }
            }
        }
        for missing in plan.missing_stages() {
            for key in stage_keys(&plan.stages[missing], doc) {
                let seen = self.missing_seen[missing].entry(key).or_default();
                if let Some(maxspan) = plan.maxspan {
                    seen.retain(|t| *t >= ts.saturating_sub(maxspan));
                }
                seen.push(ts);
            }
        }
        for position in (0..plan.positive.len()).rev() {
            let stage_index = plan.positive[position];
            for key in stage_keys(&plan.stages[stage_index], doc) {
                let mut partial = if position == 0 {
                    Partial {
                        events: vec![None; plan.stages.len()],
                        stage_ts: vec![0; plan.stages.len()],
                        start_ts: ts,
                        last_ts: ts,
                        last_ordinal: ordinal,
                    }
                } else {
                    let Some(partial) = self.pending[position - 1].remove(&key) else {
                        continue;
                    };
                    if plan
                        .maxspan
                        .is_some_and(|maxspan| ts - partial.start_ts > maxspan)
                    {
                        continue;
                    }
                    partial
                };
                partial.events[stage_index] = Some(id);
                partial.stage_ts[stage_index] = ts;
                partial.last_ts = ts;
                partial.last_ordinal = ordinal;
                if position + 1 < plan.positive.len() {
                    self.holds_last = true;
                    self.pending[position].insert(key, partial);
                } else {
                    self.complete(plan, key, partial, &mut done);
                }
            }
        }
        done
    }

    fn seen(&self, stage: usize, key: &JoinKey) -> &[i64] {
        self.missing_seen[stage].get(key).map_or(&[], Vec::as_slice)
    }

    /// ES checks missing stages once the positive stages matched: an event strictly between the neighbouring
    /// positive events discards the sequence; leading/trailing events only do when within maxspan.
    fn complete(
        &mut self,
        plan: &SequencePlan,
        key: JoinKey,
        partial: Partial<Id>,
        done: &mut Vec<Completed<Id>>,
    ) {
        for (missing, before) in &plan.middle_missing {
            let (from, to) = (
                partial.stage_ts[plan.positive[*before]],
                partial.stage_ts[plan.positive[*before + 1]],
            );
            if self
                .seen(*missing, &key)
                .iter()
                .any(|t| *t > from && *t < to)
            {
                return;
            }
        }
        let last_leading = plan
            .leading_missing
            .iter()
            .filter_map(|stage| {
                self.seen(*stage, &key)
                    .iter()
                    .copied()
                    .filter(|t| *t < partial.start_ts)
                    .max()
            })
            .max();
        let completed = Completed {
            events: partial.events,
            key,
            ordinal: partial.last_ordinal,
        };
        if plan.trailing_missing.is_empty() {
            if accept(plan, last_leading, None, partial.start_ts, partial.last_ts) {
                done.push(completed);
            }
        } else {
            self.holds_last = true;
            self.awaiting.push(Awaiting {
                completed,
                start_ts: partial.start_ts,
                last_ts: partial.last_ts,
                last_leading,
            });
        }
    }

    /// Decides waiting sequences: a trailing missing event of their key arrived, or their window closed.
    fn settle_awaiting(
        &mut self,
        plan: &SequencePlan,
        doc: &dyn Node,
        now: i64,
    ) -> Vec<Completed<Id>> {
        if self.awaiting.is_empty() {
            return Vec::new();
        }
        let trailing_keys: Vec<JoinKey> = plan
            .trailing_missing
            .iter()
            .flat_map(|stage| stage_keys(&plan.stages[*stage], doc))
            .collect();
        let mut settled = Vec::new();
        self.awaiting.retain(|waiting| {
            let first_trailing = (now > waiting.last_ts
                && trailing_keys.contains(&waiting.completed.key))
            .then_some(now);
            let window_closed = plan
                .maxspan
                .is_some_and(|maxspan| now - waiting.start_ts > maxspan);
            if first_trailing.is_none() && !window_closed {
                return true;
            }
            if accept(
                plan,
                waiting.last_leading,
                first_trailing,
                waiting.start_ts,
                waiting.last_ts,
            ) {
                settled.push(waiting.completed.clone());
            }
            false
        });
        settled
    }

    /// End of input: sequences still waiting saw no trailing missing event.
    pub fn finish(&mut self, plan: &SequencePlan) -> Vec<Completed<Id>> {
        self.awaiting
            .drain(..)
            .filter(|w| accept(plan, w.last_leading, None, w.start_ts, w.last_ts))
            .map(|w| w.completed)
            .collect()
    }
}

impl<Id: Copy + Ord> SequenceMatcher<Id> {
    /// The smallest event id a still-open sequence (partial, or waiting for its trailing missing-event window)
    /// holds: a consumer that must be able to rebuild this state after a restart re-reads from that event on.
    /// Whether the event last pushed is held by a pending or awaiting sequence.
    pub fn holds_last(&self) -> bool {
        self.holds_last
    }

    pub fn oldest_held_event(&self) -> Option<Id> {
        self.held_events().min()
    }

    /// Every event a pending or awaiting sequence holds (an event may come more than once).
    pub fn held_events(&self) -> impl Iterator<Item = Id> + '_ {
        let partial = self
            .pending
            .iter()
            .flat_map(HashMap::values)
            .flat_map(|partial| partial.events.iter().flatten());
        let awaiting = self
            .awaiting
            .iter()
            .flat_map(|waiting| waiting.completed.events.iter().flatten());
        partial.chain(awaiting).copied()
    }
}

/// ES `TumblingWindow.doCheckMissingEvents` acceptance rule for leading / trailing missing stages.
fn accept(
    plan: &SequencePlan,
    last_leading: Option<i64>,
    first_trailing: Option<i64>,
    start_ts: i64,
    last_ts: i64,
) -> bool {
    let leading = !plan.leading_missing.is_empty();
    let trailing = !plan.trailing_missing.is_empty();
    let beyond_maxspan = |from: Option<i64>, to: Option<i64>| match (from, to) {
        (Some(from), Some(to)) => plan
            .maxspan
            .is_some_and(|maxspan| maxspan > 0 && to - from > maxspan),
        _ => true,
    };
    (first_trailing.is_none() && last_leading.is_none())
        || (last_leading.is_none() && leading)
        || (first_trailing.is_none() && trailing)
        || (leading && trailing && beyond_maxspan(last_leading, first_trailing))
        || (leading && !trailing && beyond_maxspan(last_leading, Some(last_ts)))
        || (!leading && trailing && beyond_maxspan(Some(start_ts), first_trailing))
}

/// The join keys an event has for a stage: the cartesian product of its key fields' values. Empty when a
/// non-optional key is missing (null keys never join, except `?field` keys where null joins null).
pub(crate) fn stage_keys(stage: &StagePlan, doc: &dyn Node) -> Vec<JoinKey> {
    if !stage.filter_matches(doc) {
        return Vec::new();
    }
    let mut keys: Vec<JoinKey> = vec![Vec::with_capacity(stage.keys.len())];
    for key_field in &stage.keys {
        let mut values = Vec::new();
        key_field.field.any_value(doc, |v| {
            let part = KeyPart::from_node(v);
            if !values.contains(&part) {
                values.push(part);
            }
            false
        });
        if values.is_empty() {
            if !key_field.optional {
                return Vec::new();
            }
            values.push(KeyPart::Null);
        }
        keys = keys
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut key = prefix.clone();
                    key.push(v.clone());
                    key
                })
            })
            .collect();
    }
    keys
}
