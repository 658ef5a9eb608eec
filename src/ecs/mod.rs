//! ECS normalisation of Kubernetes audit events, as Elastic's Kubernetes integration indexes them
//! in the `kubernetes.audit_logs` data stream, and the way back from ECS fields to the raw event.
//!
//! # API
//!
//! - [`normalize`]`(raw, ingested)` builds the document for one raw `audit.k8s.io` `Event`
//!   (the JSON the API server writes to its audit log or webhook). `ingested` is the processing
//!   time for `event.ingested`; nothing here reads the clock.
//! - [`raw_source`]`(ecs_field)` says, once per rule, where a document field lives in the raw
//!   event ([`RawSource`]), so rules can run on raw events without building documents.
//!   [`RawSource::values`] reads it and agrees with [`field_values`] on the document.
//! - [`field_values`] reads a dotted field as Elasticsearch sees it; [`leaf_fields`] lists a
//!   document's fields; [`ensure_audit_event`] tells audit events from cloud envelopes.
//!
//! # The document
//!
//! It follows the agent's filestream processors, the ingest pipeline
//! (`elasticsearch/ingest_pipeline/default.yml`) and Fleet's final pipeline:
//!
//! - the whole event under `kubernetes.audit`, without `requestObject.metadata` and
//!   `responseObject.metadata`, annotation keys with `.` → `_`;
//! - `event.kind: event`, `event.action` ← `verb`, `event.outcome` ← decision annotation
//!   (`allow` → `success`, `forbid` → `failure`, otherwise absent), `event.dataset` and
//!   `data_stream.{type,dataset,namespace}` = `logs`, [`DATASET`], `default`;
//! - `user.name` ← `user.username`, `user.id` ← `user.uid`, `related.user` = [uid, username]
//!   without duplicates, `user_agent.original` ← `userAgent` (not parsed);
//! - `source.ip`, `client.ip` ← `sourceIPs` (still a list), `related.ip` = the same, deduplicated;
//! - `orchestrator.type: kubernetes`, `orchestrator.api_version` ← `apiVersion`,
//!   `orchestrator.namespace`, `orchestrator.resource.{type,name}` ← `objectRef`;
//! - `@timestamp` ← `stageTimestamp`. Elastic stamps the time the agent read the line, which
//!   only the agent knows; the stage timestamp is the closest time in the event;
//! - `event.ingested` ← the caller's time, truncated to whole seconds (`2022-08-31T08:09:58Z`);
//! - finally every `null`, `""`, `{}` and `[]` is removed at any depth, including objects that
//!   only held such values ([`drop_empty_values`]).
//!
//! Not produced: `event.original` (only set when the event reaches the pipeline as `message`;
//! the filestream input parses the line itself), `tags`, `ecs.version`, `agent.*`, `host.*`,
//! `log.*`, `input.type`, `event.agent_id_status` (agent and Fleet metadata), `cloud.provider`
//! (cloud inputs only). GKE (`protoPayload`) and AKS (`properties.log`) envelopes are rejected
//! by [`normalize`]; the pipeline's GKE renames never apply to an `audit.k8s.io` event.
//!
//! # Empty values
//!
//! Since the document never holds `""`, a raw `""` reads as missing through [`raw_source`] too:
//! `kubernetes.audit.user.username == ""` can never match, and the default rule's
//! `kubernetes.audit.user.username == null or kubernetes.audit.user.username == ""` only matches
//! through its `null` half, for events whose username is absent or empty.

mod alias;
mod document;
mod fields;
#[cfg(test)]
mod tests;

pub use alias::{ComputeField, RawSource, raw_paths_read, raw_source};
pub use document::{ensure_audit_event, normalize};
pub use fields::{drop_empty_values, field_values, leaf_fields, without_empty_values};

/// `event.dataset` and `data_stream.dataset` of every document.
pub const DATASET: &str = "kubernetes.audit_logs";
/// `data_stream.type` of every document.
pub const DATA_STREAM_TYPE: &str = "logs";
/// `data_stream.namespace`: the Fleet policy's namespace, `default` unless configured.
pub const DATA_STREAM_NAMESPACE: &str = "default";

/// Why a JSON value cannot be normalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EcsError {
    #[error("audit event is not a JSON object")]
    NotAnObject,
    #[error("not an audit.k8s.io Event (kind {kind:?}, apiVersion {api_version:?})")]
    NotAnAuditEvent {
        kind: Option<String>,
        api_version: Option<String>,
    },
}
