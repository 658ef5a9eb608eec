//! `vigil run`: the pipeline of the operator. One task per source → bounded channel → the engine task (owns the
//! sequence state; no locks on the hot path) → bounded channel → the alert writer task → acknowledgements back to
//! the source, which only then advances its checkpoint. When the API server is slow the channels fill, reading
//! pauses and the checkpoint waits: the log on disk is the buffer.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use std::future::Future;
use std::pin::Pin;

use bumpalo::Bump;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::{Event as KubeEventRecord, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use prometheus_client::registry::Registry;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::alert::{self, writer::AlertWriter, writer::PendingAlert};
use crate::audit::counters::{GapKind, IngestCounters};
use crate::audit::follow::{FileKey, FollowConfig, FollowError, Follower, Gap, Position};
use crate::audit::users::IgnoredUsers;
use crate::controller::{self, ActiveRule, Retention, RuleBook};
use crate::crd::{AlertEvent, DetectionAlert};
use crate::engine::{Detector, HeldEvents, Input, Rule};
use crate::eql::Node;
use crate::metrics::{Metrics, ReasonLabel};
use crate::projection::Projection;
use crate::server::{self, ServerState};
use kube::runtime::reflector::Store;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// Called once everything before it has been handled (alerts written), with where a restart must read again
/// from to rebuild open sequences (`None`: nothing before the end of the batch is needed): the source may then
/// advance its checkpoint.
pub type Acknowledge = Box<dyn FnOnce(Option<Position>) + Send>;

/// One line of the audit log (an audit `Event` or `EventList`), as read: the engine task parses it, keeping only
/// what its rules read.
pub struct SourceLine {
    pub text: Vec<u8>,
    pub start: Position,
    /// Read again after a restart to rebuild open sequences: its alerts were written before.
    pub replayed: bool,
    /// The file it was read from, to report it if it is malformed.
    pub file: Arc<str>,
}

/// What a source read, in order.
pub enum SourceEvents {
    /// Lines of the audit log.
    Lines(Vec<SourceLine>),
    /// Events already parsed (the webhook checks each request it answers); they have no position.
    Events(Vec<Value>),
}

/// Audit events read by a source, in order, with what to call once they are handled.
pub struct SourceBatch {
    pub events: SourceEvents,
    /// Losses the source found (also counted and logged there); each becomes a Kubernetes Event.
    pub gaps: Vec<Gap>,
    pub ack: Option<Acknowledge>,
}

/// A batch acknowledgement, its resume position decided: what the writer calls once the batch's alerts are written.
type Ack = Box<dyn FnOnce() + Send>;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct RunConfig {
    pub metrics_addr: SocketAddr,
    pub write_budget: u32,
    pub retention: Retention,
    /// Events of these users are dropped before the engine (vigil's own service account).
    pub ignored: IgnoredUsers,
    /// Identity in the Lease and in Events (the pod or node name).
    pub identity: String,
    /// Namespace of the Lease.
    pub namespace: String,
    /// How often the leader writes rule status.
    pub status_interval: Duration,
}

/// What the writer task is handed, in order.
enum WriterItem {
    Alert(PendingAlert),
    Ack(Ack),
}

/// The Lease electing the one pod that writes rule status.
const LEASE_NAME: &str = "vigil-status-writer";

const LEASE_RETRY: Duration = Duration::from_secs(2);

/// Events open sequences hold whose metadata is kept, for sequence matches that name earlier events.
const HELD_EVENTS_KEPT: usize = 20_000;
const SOURCE_QUEUE: usize = 8;

/// The bounded channel between a source and the pipeline.
pub fn source_channel() -> (mpsc::Sender<SourceBatch>, mpsc::Receiver<SourceBatch>) {
    mpsc::channel(SOURCE_QUEUE)
}
const WRITER_QUEUE: usize = 1024;
/// How long the follower waits for new lines before checking acknowledgements again.
const SOURCE_POLL: Duration = Duration::from_millis(100);

/// Runs the operator until `shutdown` resolves, then flushes pending alerts and acknowledges what was written.
pub async fn run(
    client: Client,
    config: RunConfig,
    mut source: mpsc::Receiver<SourceBatch>,
    source_open: Arc<AtomicBool>,
    counters: Arc<IngestCounters>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let rules_loaded = Arc::new(AtomicBool::new(false));
    tokio::spawn(export_ingest_counters(counters.clone(), metrics.clone()));
    let listener = tokio::net::TcpListener::bind(config.metrics_addr)
        .await
        .map_err(|source| RunError::Metrics {
            addr: config.metrics_addr,
            source,
        })?;
    let router = server::router(ServerState {
        registry: Arc::new(registry),
        rules_loaded: rules_loaded.clone(),
        source_open,
    });
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            warn!(%error, "the metrics server stopped");
        }
    });

    let (book_sender, mut book) = watch::channel(Arc::new(RuleBook::default()));
    tokio::spawn(controller::watch_rules(
        client.clone(),
        book_sender,
        metrics.clone(),
    ));

    // Every alert, from a watch: the writer recognises replays and other pods' alerts in it, and the leader
    // derives match counts and retention from it instead of listing.
    let (existing_alerts, existing_writer) = reflector::store();
    let alert_watch = reflector(
        existing_writer,
        watcher(
            Api::<DetectionAlert>::all(client.clone()),
            watcher::Config::default(),
        )
        .backoff(controller::WatchBackoff::default())
        // The cache serves existence checks, counts and retention only: it need not hold what is large.
        .modify(|alert| {
            alert.managed_fields_mut().clear();
            alert.annotations_mut().clear();
            alert.spec.events.clear();
            alert.spec.message.clear();
        }),
    );
    tokio::spawn(alert_watch.for_each(|_| std::future::ready(())));
    if existing_alerts.wait_until_ready().await.is_err() {
        return Ok(());
    }
    tokio::spawn(write_status_while_leading(
        client.clone(),
        StatusWriting {
            namespace: config.namespace.clone(),
            identity: config.identity.clone(),
            rule_book: book.clone(),
            alerts: existing_alerts.clone(),
            metrics: metrics.clone(),
            retention: config.retention,
            interval: config.status_interval,
        },
    ));

    // Rules first: evaluating before the initial list is read would miss matches.
    while !book.borrow_and_update().synced {
        if book.changed().await.is_err() {
            return Ok(());
        }
    }
    rules_loaded.store(true, Ordering::Relaxed);
    let (writer_sender, writer_receiver) = mpsc::channel(WRITER_QUEUE);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "vigil".to_string(),
            instance: Some(config.identity.clone()),
        },
    );
    let gap_recorder = recorder.clone();
    let writer = AlertWriter::new(
        client,
        recorder,
        metrics.clone(),
        config.write_budget,
        existing_alerts,
    );
    let last_ack = Arc::new(std::sync::Mutex::new(std::time::Instant::now()));
    tokio::spawn(export_checkpoint_age(last_ack.clone(), metrics.clone()));
    let writer_task = tokio::spawn(write_alerts(writer, writer_receiver, last_ack));

    let mut engine = EngineTask::new(metrics, config.ignored, counters);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            batch = source.recv() => {
                let Some(batch) = batch else { break };
                for gap in &batch.gaps {
                    publish_gap(&gap_recorder, &config.namespace, gap).await;
                }
                let rules = book.borrow_and_update().clone();
                engine.update_rules(&rules);
                match &batch.events {
                    SourceEvents::Lines(lines) => {
                        for line in lines {
                            let pending = engine.observe_line(line);
                            // A replayed line's alerts were written before the restart.
                            if !line.replayed && !send_alerts(&writer_sender, pending).await {
                                return Ok(());
                            }
                        }
                    }
                    SourceEvents::Events(events) => {
                        for event in events {
                            let pending = engine.detection.observe(event, || event, || event, None);
                            if !send_alerts(&writer_sender, pending).await {
                                return Ok(());
                            }
                        }
                    }
                }
                if let Some(acknowledge) = batch.ack {
                    let resume = engine.detection.resume_position();
                    let ack: Ack = Box::new(move || acknowledge(resume));
                    if writer_sender.send(WriterItem::Ack(ack)).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
    info!("shutting down: flushing pending alerts");
    drop(writer_sender);
    if let Err(error) = writer_task.await {
        warn!(%error, "the alert writer stopped abnormally");
    }
    Ok(())
}

/// Hands `pending` alerts to the writer (waiting while its queue is full); false once the writer has stopped.
async fn send_alerts(writer: &mpsc::Sender<WriterItem>, pending: Vec<PendingAlert>) -> bool {
    for alert in pending {
        if writer.send(WriterItem::Alert(alert)).await.is_err() {
            return false;
        }
    }
    true
}

/// Alert writes in flight at once: the API server round trip, not vigil, bounds throughput.
const WRITES_IN_FLIGHT: usize = 16;

/// The writer task: admits matches in order and runs their writes concurrently; a batch is acknowledged once every
/// write before it has finished (and pending overflow counts are written).
async fn write_alerts(
    mut writer: AlertWriter,
    mut items: mpsc::Receiver<WriterItem>,
    last_ack: Arc<std::sync::Mutex<std::time::Instant>>,
) {
    // Writes and acknowledgements complete in the order they were queued.
    let mut in_flight: FuturesOrdered<Pin<Box<dyn Future<Output = Option<Ack>> + Send>>> =
        FuturesOrdered::new();
    let mut waiting_acks: Vec<Ack> = Vec::new();
    let acknowledge = |acks: &mut Vec<Ack>| {
        if acks.is_empty() {
            return;
        }
        acks.drain(..).for_each(|ack| ack());
        if let Ok(mut at) = last_ack.lock() {
            *at = std::time::Instant::now();
        }
    };
    let mut flush_tick = tokio::time::interval(Duration::from_millis(500));
    let mut open = true;
    while open || !in_flight.is_empty() {
        tokio::select! {
            item = items.recv(), if open && in_flight.len() < WRITES_IN_FLIGHT => match item {
                Some(WriterItem::Alert(pending)) => {
                    if let Some(write) = writer.admit(pending) {
                        in_flight.push_back(Box::pin(async move {
                            write.await;
                            None
                        }));
                    }
                }
                Some(WriterItem::Ack(ack)) => in_flight.push_back(Box::pin(std::future::ready(Some(ack)))),
                None => open = false,
            },
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                if let Some(ack) = done {
                    waiting_acks.push(ack);
                    // Overflow counts are written at most once a second; acknowledgements wait for them.
                    if writer.flush_overflow(false).await {
                        acknowledge(&mut waiting_acks);
                    }
                }
            }
            _ = flush_tick.tick() => {
                if writer.flush_overflow(false).await {
                    acknowledge(&mut waiting_acks);
                }
            }
        }
    }
    writer.flush_overflow(true).await;
    acknowledge(&mut waiting_acks);
}

/// The engine side of the pipeline: reads lines through a projection of what the rules read, and detects.
struct EngineTask {
    /// What the rules, the alert metadata and [`Detection::observe`] read of each line.
    projection: Projection,
    /// Holds the projected objects of one line at a time.
    arena: Bump,
    counters: Arc<IngestCounters>,
    detection: Detection,
}

/// Every rule's state, and from matches to pending alerts.
struct Detection {
    metrics: Metrics,
    ignored: IgnoredUsers,
    /// The rules being evaluated, in the detector's order, and the detector holding their state.
    rules: Vec<Arc<ActiveRule>>,
    detector: Detector,
    /// Metadata and line starts of the events open sequences hold, for their matches and the resume position.
    held: HeldEvents<(AlertEvent, Option<Position>)>,
    next_id: u64,
}

impl EngineTask {
    fn new(metrics: Metrics, ignored: IgnoredUsers, counters: Arc<IngestCounters>) -> Self {
        EngineTask {
            projection: line_projection(&[]),
            arena: Bump::new(),
            counters,
            detection: Detection {
                metrics,
                ignored,
                rules: Vec::new(),
                detector: Detector::default(),
                held: HeldEvents::new(HELD_EVENTS_KEPT),
                next_id: 0,
            },
        }
    }

    /// Swaps in the current rules between two events; a rule whose generation did not change keeps its state.
    fn update_rules(&mut self, book: &RuleBook) {
        let detection = &mut self.detection;
        let unchanged = detection.rules.len() == book.active.len()
            && detection
                .rules
                .iter()
                .zip(book.active.values())
                .all(|(old, new)| Arc::ptr_eq(old, new));
        if unchanged {
            return;
        }
        let rules = book
            .active
            .values()
            .map(|active| Rule {
                name: active.name.as_str().into(),
                query: active.query.clone(),
            })
            .collect();
        // activate() only admits streamable queries, so this cannot fail.
        if let Err((name, error)) = detection.detector.replace_rules(rules) {
            warn!(rule = %name, %error, "rule cannot run on a stream; rules not updated");
            return;
        }
        detection.rules = book.active.values().cloned().collect();
        self.projection = line_projection(&detection.rules);
    }

    /// Detects on the events of one audit log line; a malformed line is counted and skipped.
    fn observe_line(&mut self, line: &SourceLine) -> Vec<PendingAlert> {
        self.arena.reset();
        let read = match self.projection.read_line(&line.text, &self.arena) {
            Ok(read) => read,
            Err(reason) => {
                self.counters
                    .malformed(reason, &line.file, line.start.offset);
                return Vec::new();
            }
        };
        read.events()
            .flat_map(|event| {
                self.detection.observe(
                    event.projected(),
                    || event.shown(),
                    || event.whole(),
                    Some(line.start),
                )
            })
            .collect()
    }
}

/// What `rules` read of each line, what alert metadata shows (read on demand), and what [`Detection::observe`]
/// reads itself.
fn line_projection(rules: &[Arc<ActiveRule>]) -> Projection {
    let own_paths = [vec!["stageTimestamp".to_owned()], IgnoredUsers::path_read()];
    Projection::new(rules.iter().map(|rule| &rule.query), Input::Audit)
        .showing(alert::metadata_paths(&[]))
        .reading(own_paths)
}

impl Detection {
    /// Where a restart must read again from so that every open sequence is rebuilt: the line of the oldest event
    /// an open sequence holds.
    fn resume_position(&self) -> Option<Position> {
        let oldest = self.detector.oldest_held_event()?;
        self.held.get(oldest).and_then(|(_, start)| *start)
    }

    /// Detects on one audit `event`; `shown` is the event as alert metadata reads it, `whole` the whole event
    /// (what suppression groups by), both only read for matches.
    fn observe<'e>(
        &mut self,
        event: &'e dyn Node,
        shown: impl FnOnce() -> &'e dyn Node,
        whole: impl Fn() -> &'e Value,
        start: Option<Position>,
    ) -> Vec<PendingAlert> {
        self.metrics.events_read.inc();
        if self.ignored.ignores(event) {
            return Vec::new();
        }
        let stage_time = event
            .get("stageTimestamp")
            .and_then(|time| time.as_str())
            .and_then(|time| time.parse::<Timestamp>().ok());
        if let Some(stage_time) = stage_time {
            let lag = Timestamp::now().duration_since(stage_time).as_secs_f64();
            self.metrics.lag_seconds.observe(lag.max(0.0));
        }
        let id = self.next_id;
        self.next_id += 1;
        let matches = self.detector.observe(id, event);
        // Later matches can only name events an open sequence holds: only theirs are kept.
        let keep = self.detector.holds_last_event();
        if matches.is_empty() && !keep {
            return Vec::new();
        }
        let this = alert::event_metadata(shown());
        let mut pending = Vec::new();
        for found in matches {
            let rule = &self.rules[found.rule];
            self.metrics.rule(&self.metrics.matches, &rule.name).inc();
            let events: Vec<AlertEvent> = found
                .events
                .iter()
                .flatten()
                .filter_map(|hit_id| match *hit_id == id {
                    true => Some(this.clone()),
                    false => self.held.get(*hit_id).map(|(event, _)| event.clone()),
                })
                .collect();
            let group = (!rule.group_by.is_empty()).then(|| {
                rule.group_by
                    .iter()
                    .map(|source| {
                        let values: Vec<String> = source
                            .values(whole())
                            .iter()
                            .map(|v| v.to_string())
                            .collect();
                        values.join(",")
                    })
                    .collect()
            });
            pending.push(PendingAlert {
                rule: rule.alerting.clone(),
                events,
                seen: stage_time.unwrap_or_else(Timestamp::now),
                group,
            });
        }
        if keep {
            self.held.keep(&self.detector, id, (this, start));
        }
        pending
    }
}

/// Follows the audit log on a thread of its own (blocking I/O), hands batches of events to the pipeline, and
/// advances the checkpoint as acknowledgements come back. `open` turns true once the log is open.
pub fn spawn_file_source(
    config: FollowConfig,
    counters: Arc<IngestCounters>,
    batches: mpsc::Sender<SourceBatch>,
    open: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<(), FollowError>> {
    std::thread::spawn(move || {
        let mut follower = Follower::open(config, counters.clone())?;
        open.store(true, Ordering::Relaxed);
        // (resume, handled): everything before `handled` has its alerts written; open sequences need `resume` on.
        let (acked_sender, acked) = std::sync::mpsc::channel::<(Position, Position)>();
        loop {
            if let Some((resume, handled)) = acked.try_iter().last() {
                follower.commit(resume, handled)?;
            }
            let batch = follower.next_batch(SOURCE_POLL)?;
            if batch.is_empty() {
                if batches.is_closed() {
                    return Ok(());
                }
                continue;
            }
            // Each file's path as of this batch (files are renamed as they rotate), to report malformed lines with.
            let mut files: HashMap<FileKey, Arc<str>> = HashMap::new();
            let lines = batch
                .lines()
                .map(|(line, bytes)| SourceLine {
                    text: bytes.to_vec(),
                    start: line.start,
                    replayed: line.replayed,
                    file: files
                        .entry(line.start.file)
                        .or_insert_with(|| {
                            follower
                                .file_path(line.start.file)
                                .map(|path| path.display().to_string())
                                .unwrap_or_default()
                                .into()
                        })
                        .clone(),
                })
                .collect();
            let ack = batch.end().map(|end| {
                let acked_sender = acked_sender.clone();
                Box::new(move |resume: Option<Position>| {
                    let _ = acked_sender.send((resume.unwrap_or(end), end));
                }) as Acknowledge
            });
            if batches
                .blocking_send(SourceBatch {
                    events: SourceEvents::Lines(lines),
                    gaps: batch.gaps.clone(),
                    ack,
                })
                .is_err()
            {
                // The pipeline stopped: save what it acknowledged on its way out.
                if let Some((resume, handled)) = acked.try_iter().last() {
                    follower.commit(resume, handled)?;
                }
                return Ok(());
            }
        }
    })
}

/// Keeps `checkpoint_age_seconds` current: the time since handled events were last acknowledged to the source.
async fn export_checkpoint_age(
    last_ack: Arc<std::sync::Mutex<std::time::Instant>>,
    metrics: Metrics,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if let Ok(at) = last_ack.lock() {
            metrics
                .checkpoint_age_seconds
                .set(at.elapsed().as_secs() as i64);
        }
    }
}

/// The user the API server knows vigil as (a SelfSubjectReview, which every authenticated user may make), so that
/// vigil's own audit events are ignored without configuration. `None`, with a warning, when it cannot be told.
pub async fn own_username(client: &Client) -> Option<String> {
    let review = SelfSubjectReview::default();
    match Api::<SelfSubjectReview>::all(client.clone())
        .create(&kube::api::PostParams::default(), &review)
        .await
    {
        Ok(review) => {
            let username = review.status?.user_info?.username?;
            info!(%username, "ignoring vigil's own audit events");
            Some(username)
        }
        Err(error) => {
            warn!(%error, "cannot tell which user vigil is; its own audit events are ignored only through --ignore-user");
            None
        }
    }
}

/// What the pod holding the Lease needs to write rule status.
struct StatusWriting {
    namespace: String,
    identity: String,
    rule_book: watch::Receiver<Arc<RuleBook>>,
    alerts: Store<DetectionAlert>,
    metrics: Metrics,
    retention: Retention,
    interval: Duration,
}

/// Competes for the Lease, and writes rule status while holding it. The lease manager gives up when the API server
/// is away for long; it is then started again, so status writing resumes once the API server is back.
async fn write_status_while_leading(client: Client, status: StatusWriting) {
    loop {
        let manager = LeaseManagerBuilder::new(client.clone(), LEASE_NAME)
            .with_namespace(&status.namespace)
            .with_identity(&status.identity)
            .with_duration(15)
            .with_grace(5)
            .build()
            .await;
        let manager = match manager {
            Ok(manager) => manager,
            Err(error) => {
                status.metrics.api_error("lease");
                warn!(%error, "cannot take part in the status Lease; retrying");
                tokio::time::sleep(LEASE_RETRY).await;
                continue;
            }
        };
        let (mut leader, task) = manager.watch().await;
        loop {
            if !*leader.borrow_and_update() {
                if leader.changed().await.is_err() {
                    break;
                }
                continue;
            }
            info!("holding the Lease: writing rule status");
            let lead = controller::lead(
                client.clone(),
                status.rule_book.clone(),
                status.alerts.clone(),
                status.metrics.clone(),
                status.retention,
                status.interval,
            );
            tokio::select! {
                () = lead => {}
                lost = leader.wait_for(|is_leader| !*is_leader) => {
                    info!("lost the Lease");
                    if lost.is_err() {
                        break;
                    }
                }
            }
        }
        if let Ok(Err(error)) = task.await {
            status.metrics.api_error("lease");
            warn!(%error, "the status Lease manager stopped; starting it again");
        }
        tokio::time::sleep(LEASE_RETRY).await;
    }
}

/// A Warning Event for audit events lost before they could be read, regarding the Lease of vigil's pods (in
/// their namespace: `kubectl get events -n <vigil's namespace>` shows it).
async fn publish_gap(recorder: &Recorder, namespace: &str, gap: &Gap) {
    let amount = gap.bytes.map_or_else(
        || "an unknown amount".to_string(),
        |bytes| format!("{bytes} bytes"),
    );
    let event = KubeEventRecord {
        type_: EventType::Warning,
        reason: "AuditEventsLost".to_string(),
        note: Some(format!(
            "{amount} of {} from offset {} were never read ({}): audit events there were not evaluated",
            gap.path.display(),
            gap.offset,
            gap.kind.as_str()
        )),
        action: "ReadAuditLog".to_string(),
        secondary: None,
    };
    let lease = ObjectReference {
        api_version: Some("coordination.k8s.io/v1".to_string()),
        kind: Some("Lease".to_string()),
        name: Some(LEASE_NAME.to_string()),
        namespace: Some(namespace.to_string()),
        ..ObjectReference::default()
    };
    if let Err(error) = recorder.publish(&event, &lease).await {
        warn!(%error, "publishing the Event for an audit gap failed");
    }
}

/// Batches the webhook may hold before it answers 503 (the API server retries them).
pub const WEBHOOK_QUEUE: usize = 8;

/// Hands what the audit webhook received to the pipeline. The webhook cannot replay: nothing to acknowledge.
pub async fn forward_webhook_batches(
    mut received: mpsc::Receiver<Vec<Value>>,
    batches: mpsc::Sender<SourceBatch>,
) {
    while let Some(events) = received.recv().await {
        if batches
            .send(SourceBatch {
                events: SourceEvents::Events(events),
                gaps: Vec::new(),
                ack: None,
            })
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Copies the ingestion counters (kept by the follower and the webhook) into the exported metrics.
pub async fn export_ingest_counters(counters: Arc<IngestCounters>, metrics: Metrics) {
    let mut malformed_seen: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut gaps_seen: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        for (reason, total) in counters.malformed_counts() {
            add_difference(&metrics.malformed_lines, &mut malformed_seen, reason, total);
        }
        for kind in GapKind::ALL {
            add_difference(
                &metrics.gaps,
                &mut gaps_seen,
                kind.as_str(),
                counters.gap_count(kind),
            );
        }
    }
}

fn add_difference(
    family: &Family<ReasonLabel, Counter>,
    seen: &mut BTreeMap<&'static str, u64>,
    reason: &'static str,
    total: u64,
) {
    let previous = seen.insert(reason, total).unwrap_or(0);
    if total > previous {
        family
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc_by(total - previous);
    }
}
