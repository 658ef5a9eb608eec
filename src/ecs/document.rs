//! Building the `kubernetes.audit_logs` document: an emulation of the agent's filestream
//! processors, the integration's ingest pipeline and Fleet's final pipeline, in that order.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::fields::drop_empty_values;
use super::{DATA_STREAM_NAMESPACE, DATA_STREAM_TYPE, DATASET, EcsError};
use crate::eql::{Kind, Node};

/// Checks that `raw` is an `audit.k8s.io` `Event` object (not a GKE or AKS envelope).
///
/// # Errors
///
/// [`EcsError::NotAnObject`] or [`EcsError::NotAnAuditEvent`].
pub fn ensure_audit_event(raw: &Value) -> Result<&Map<String, Value>, EcsError> {
    let Value::Object(event) = raw else {
        return Err(EcsError::NotAnObject);
    };
    let kind = event.get("kind").and_then(Value::as_str);
    let api_version = event.get("apiVersion").and_then(Value::as_str);
    let is_audit_api = api_version.is_some_and(|version| version.starts_with("audit.k8s.io/"));
    if kind == Some("Event") && is_audit_api {
        Ok(event)
    } else {
        Err(EcsError::NotAnAuditEvent {
            kind: kind.map(str::to_owned),
            api_version: api_version.map(str::to_owned),
        })
    }
}

/// The document Elastic's Kubernetes integration indexes for the raw audit event `raw`.
///
/// `ingested` becomes `event.ingested` (whole seconds, like the final pipeline); `None` omits it.
///
/// # Errors
///
/// As [`ensure_audit_event`]: GKE and AKS envelopes are not normalised (yet).
pub fn normalize(raw: &Value, ingested: Option<SystemTime>) -> Result<Value, EcsError> {
    let raw = ensure_audit_event(raw)?;
    let audit = indexed_audit(raw);

    let mut document = Map::new();
    // Elastic stamps the time the agent read the line; the stage timestamp is the closest the
    // event itself offers.
    if let Some(stage_timestamp) = audit.get("stageTimestamp") {
        document.insert("@timestamp".into(), stage_timestamp.clone());
    }
    document.insert(
        "data_stream".into(),
        json!({"type": DATA_STREAM_TYPE, "dataset": DATASET, "namespace": DATA_STREAM_NAMESPACE}),
    );

    let mut event = Map::new();
    event.insert("kind".into(), "event".into());
    event.insert("dataset".into(), DATASET.into());
    copy_field(&audit, &["verb"], &mut event, "action");
    // The pipeline decides on the annotation key before it is dedotted.
    if let Some(outcome) = nested(raw, &["annotations", "authorization.k8s.io/decision"])
        .and_then(Value::as_str)
        .and_then(decision_outcome)
    {
        event.insert("outcome".into(), outcome.into());
    }
    if let Some(ingested) = ingested {
        event.insert("ingested".into(), format_whole_seconds(ingested).into());
    }
    document.insert("event".into(), Value::Object(event));

    let mut user = Map::new();
    copy_field(&audit, &["user", "username"], &mut user, "name");
    copy_field(&audit, &["user", "uid"], &mut user, "id");
    document.insert("user".into(), Value::Object(user));

    let mut user_agent = Map::new();
    copy_field(&audit, &["userAgent"], &mut user_agent, "original");
    document.insert("user_agent".into(), Value::Object(user_agent));

    let source_ips = converted_source_ips(audit.get("sourceIPs").map(|ips| ips as &dyn Node));
    if let Some(source_ips) = &source_ips {
        document.insert("source".into(), json!({ "ip": source_ips }));
        document.insert("client".into(), json!({ "ip": source_ips }));
    }

    let mut orchestrator = Map::new();
    orchestrator.insert("type".into(), "kubernetes".into());
    copy_field(&audit, &["apiVersion"], &mut orchestrator, "api_version");
    copy_field(
        &audit,
        &["objectRef", "namespace"],
        &mut orchestrator,
        "namespace",
    );
    let mut resource = Map::new();
    copy_field(&audit, &["objectRef", "resource"], &mut resource, "type");
    copy_field(&audit, &["objectRef", "name"], &mut resource, "name");
    orchestrator.insert("resource".into(), Value::Object(resource));
    document.insert("orchestrator".into(), Value::Object(orchestrator));

    document.insert(
        "related".into(),
        json!({
            "user": related_users(audit.get("user")),
            "ip": source_ips.as_ref().map(related_ips),
        }),
    );

    document.insert("kubernetes".into(), json!({ "audit": audit }));

    let mut document = Value::Object(document);
    drop_empty_values(&mut document);
    Ok(document)
}

/// The event as `kubernetes.audit` holds it before empty values go: without
/// `requestObject.metadata`/`responseObject.metadata` (agent `drop_fields`, and again the
/// pipeline's `remove`) and with dedotted annotation keys.
pub(crate) fn indexed_audit(raw: &Map<String, Value>) -> Map<String, Value> {
    let mut audit = raw.clone();
    for object_key in ["requestObject", "responseObject"] {
        if let Some(Value::Object(object)) = audit.get_mut(object_key) {
            object.remove("metadata");
        }
    }
    if let Some(Value::Object(annotations)) = audit.get_mut("annotations") {
        *annotations = dedot_keys(annotations);
    }
    audit
}

/// `set` with `copy_from`; empty values are dropped at the end like the pipeline does.
fn copy_field(audit: &Map<String, Value>, from: &[&str], to: &mut Map<String, Value>, key: &str) {
    if let Some(value) = nested(audit, from) {
        to.insert(key.into(), value.clone());
    }
}

fn nested<'a>(map: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = map.get(*first)?;
    for key in rest {
        value = value.as_object()?.get(*key)?;
    }
    Some(value)
}

/// Annotation keys as indexed: every `.` becomes `_` (the `/` stays). When two raw keys collide,
/// the later one wins, as when the pipeline's script fills its map.
pub(crate) fn dedot_keys(annotations: &Map<String, Value>) -> Map<String, Value> {
    annotations
        .iter()
        .map(|(key, value)| (key.replace('.', "_"), value.clone()))
        .collect()
}

/// `event.outcome` from the raw (still dotted) `authorization.k8s.io/decision` annotation.
pub(crate) fn decision_outcome(decision: &str) -> Option<&'static str> {
    match decision {
        "allow" => Some("success"),
        "forbid" => Some("failure"),
        _ => None,
    }
}

/// `source.ip`: the pipeline's `convert` to `ip` keeps the original strings, and one invalid
/// element fails the whole processor, which `ignore_failure` turns into no `source.ip` at all.
pub(crate) fn converted_source_ips(source_ips: Option<&dyn Node>) -> Option<Value> {
    let source_ips = source_ips?;
    let all_addresses = match source_ips.kind() {
        Kind::Array => !source_ips.any_item(&mut |ip| !is_ip_address(ip)),
        _ => is_ip_address(source_ips),
    };
    all_addresses.then(|| source_ips.to_json())
}

/// Elasticsearch's `InetAddresses.isInetAddress`: IPv4 or IPv6, an IPv6 zone (`%eth0`) allowed.
fn is_ip_address(value: &dyn Node) -> bool {
    let Some(text) = value.as_str() else {
        return false;
    };
    let address = match text.split_once('%') {
        Some((address, _zone)) if address.contains(':') => address,
        Some(_) => return false,
        None => text,
    };
    address.parse::<IpAddr>().is_ok()
}

/// `related.ip`: the `foreach` over `source.ip` runs only when it is a list; duplicates skipped.
pub(crate) fn related_ips(source_ips: &Value) -> Value {
    let Value::Array(ips) = source_ips else {
        return Value::Null;
    };
    let mut related: Vec<Value> = Vec::with_capacity(ips.len());
    for ip in ips {
        if !related.contains(ip) {
            related.push(ip.clone());
        }
    }
    Value::Array(related)
}

/// `related.user`: uid first, then username, without duplicates. The pipeline renders them
/// through a Mustache template; the API server always writes strings, so only strings count.
pub(crate) fn related_users(user: Option<&Value>) -> Value {
    let mut users: Vec<Value> = Vec::with_capacity(2);
    for key in ["uid", "username"] {
        if let Some(Value::String(user)) = user.and_then(|user| user.get(key))
            && !users.iter().any(|known| known.as_str() == Some(user))
        {
            users.push(Value::String(user.clone()));
        }
    }
    Value::Array(users)
}

/// RFC 3339 in UTC truncated to whole seconds (`2022-08-31T08:09:58Z`), as `event.ingested` is.
pub(crate) fn format_whole_seconds(time: SystemTime) -> String {
    let seconds = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        // Truncation keeps the second that contains the instant, i.e. rounds down.
        Err(before) => {
            let before = before.duration();
            let whole = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            -whole - i64::from(before.subsec_nanos() > 0)
        }
    };
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let second_of_day = seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
