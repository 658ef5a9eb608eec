//! From a matched audit event to what people see: the safe metadata of the event (never its request or response
//! body, credentials masked) and a one-sentence message.

pub mod writer;

use std::borrow::Borrow;

use crate::crd::{AlertEvent, AlertObjectRef, AlertUser};
use crate::eql::{Kind, Node};

/// Where [`event_metadata`] reads: a reader may skip everything else of an event.
pub const METADATA_PATHS: [&[&str]; 17] = [
    &["auditID"],
    &["stage"],
    &["requestReceivedTimestamp"],
    &["stageTimestamp"],
    &["verb"],
    &["user"],
    &["impersonatedUser"],
    &["sourceIPs"],
    &["userAgent"],
    &["objectRef"],
    &["responseObject", "metadata", "name"],
    &["responseObject", "metadata", "uid"],
    &["requestObject", "metadata", "name"],
    &["requestObject", "metadata", "uid"],
    &["requestURI"],
    &["responseStatus", "code"],
    &["annotations"],
];

/// [`METADATA_PATHS`] below `prefix` (none for a raw audit event), as a projection takes paths.
pub fn metadata_paths(prefix: &'static [&'static str]) -> impl Iterator<Item = Vec<String>> {
    METADATA_PATHS.into_iter().map(move |path| {
        prefix
            .iter()
            .chain(path)
            .map(|segment| (*segment).to_owned())
            .collect()
    })
}

/// The safe metadata of one raw audit event. Also accepts the `kubernetes.audit` object of an ECS document, whose
/// annotation keys have `.` replaced by `_`.
pub fn event_metadata(audit: &dyn Node) -> AlertEvent {
    let at = |path: &[&str]| path.iter().try_fold(audit, |node, key| node.get(key));
    let text = |key: &str| {
        audit
            .get(key)
            .and_then(|value| value.as_str())
            .map(str::to_string)
    };
    let annotation = |key: &str| {
        let annotations = audit.get("annotations")?;
        annotations
            .get(key)
            .or_else(|| annotations.get(key.replace('.', "_").as_str()))
            .and_then(|value| value.as_str())
            .map(str::to_string)
    };
    AlertEvent {
        audit_id: text("auditID").unwrap_or_default(),
        stage: text("stage"),
        request_received_timestamp: text("requestReceivedTimestamp"),
        stage_timestamp: text("stageTimestamp"),
        verb: text("verb"),
        user: user_info(audit.get("user")).unwrap_or_default(),
        impersonated_user: user_info(audit.get("impersonatedUser")),
        source_ips: strings(audit.get("sourceIPs")),
        user_agent: text("userAgent"),
        object_ref: audit.get("objectRef").map(|object| AlertObjectRef {
            api_group: non_empty(object.get("apiGroup")),
            api_version: non_empty(object.get("apiVersion")),
            resource: non_empty(object.get("resource")),
            subresource: non_empty(object.get("subresource")),
            namespace: non_empty(object.get("namespace")),
            // A create names its object only in the body: take just the name from there.
            name: non_empty(object.get("name"))
                .or_else(|| non_empty(at(&["responseObject", "metadata", "name"])))
                .or_else(|| non_empty(at(&["requestObject", "metadata", "name"]))),
            // The audited object's uid is only known from the response (or request) object.
            uid: non_empty(object.get("uid"))
                .or_else(|| non_empty(at(&["responseObject", "metadata", "uid"])))
                .or_else(|| non_empty(at(&["requestObject", "metadata", "uid"]))),
        }),
        request_uri: text("requestURI").map(|uri| mask_request_uri(&uri)),
        response_code: match at(&["responseStatus", "code"]).map(|code| code.kind()) {
            Some(Kind::Int(code)) => i32::try_from(code).ok(),
            _ => None,
        },
        decision: annotation("authorization.k8s.io/decision"),
        reason: annotation("authorization.k8s.io/reason"),
    }
}

fn user_info(user: Option<&dyn Node>) -> Option<AlertUser> {
    let user = user?;
    Some(AlertUser {
        username: non_empty(user.get("username")),
        uid: non_empty(user.get("uid")),
        groups: strings(user.get("groups")),
    })
}

fn non_empty(value: Option<&dyn Node>) -> Option<String> {
    value
        .and_then(|value| value.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn strings(value: Option<&dyn Node>) -> Vec<String> {
    let mut strings = Vec::new();
    if let Some(items) = value.filter(|value| value.kind() == Kind::Array) {
        items.any_item(&mut |item| {
            strings.extend(item.as_str().map(str::to_string));
            false
        });
    }
    strings
}

/// Query parameters whose names contain one of these (case-insensitively) carry credentials.
const CREDENTIAL_PARAMETERS: [&str; 9] = [
    "token",
    "password",
    "passwd",
    "secret",
    "credential",
    "auth",
    "apikey",
    "api_key",
    "signature",
];
const MASK: &str = "REDACTED";

/// The request URI with the values of credential-like query parameters replaced by `REDACTED`.
pub fn mask_request_uri(uri: &str) -> String {
    let Some((path, query)) = uri.split_once('?') else {
        return uri.to_string();
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_credential_parameter(name) => format!("{name}={MASK}"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", masked.join("&"))
}

fn is_credential_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    CREDENTIAL_PARAMETERS
        .iter()
        .any(|credential| name.contains(credential))
}

/// One sentence: who did what to which object, and which rule fired.
pub fn message<E: Borrow<AlertEvent>>(
    rule_name: &str,
    display_name: Option<&str>,
    events: &[E],
) -> String {
    let rule = match display_name {
        Some(display) if display != rule_name => format!("rule {rule_name} ({display})"),
        _ => format!("rule {rule_name}"),
    };
    let Some(first) = events.first().map(Borrow::borrow) else {
        return format!("{rule} fired.");
    };
    let who = first
        .user
        .username
        .as_deref()
        .unwrap_or("an unauthenticated user");
    let what = first.verb.as_deref().unwrap_or("requested");
    let object = describe_object(first);
    let outcome = match (first.decision.as_deref(), first.response_code) {
        (Some("forbid"), _) => " (forbidden)".to_string(),
        (_, Some(code)) => format!(" (HTTP {code})"),
        _ => String::new(),
    };
    let steps = match events.len() {
        1 => String::new(),
        n => format!(" as the first of {n} steps of a sequence"),
    };
    format!("{who} {what} {object}{outcome}{steps}; {rule} fired.")
}

fn describe_object(event: &AlertEvent) -> String {
    let Some(object) = &event.object_ref else {
        return event
            .request_uri
            .clone()
            .unwrap_or_else(|| "the API".to_string());
    };
    let mut resource = object
        .resource
        .clone()
        .unwrap_or_else(|| "resource".to_string());
    if let Some(sub) = &object.subresource {
        resource = format!("{resource}/{sub}");
    }
    match (&object.namespace, &object.name) {
        (Some(ns), Some(name)) => format!("{resource} {ns}/{name}"),
        (Some(ns), None) => format!("{resource} in namespace {ns}"),
        (None, Some(name)) => format!("{resource} {name}"),
        (None, None) => resource,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn anonymous_pod_create() -> Value {
        json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
            "auditID": "5c1e6d2a-0000-4000-8000-000000000001", "stage": "ResponseComplete",
            "requestURI": "/api/v1/namespaces/default/pods?fieldManager=kubectl&access_token=abc123",
            "verb": "create",
            "user": {"username": "system:anonymous", "groups": ["system:unauthenticated"]},
            "sourceIPs": ["10.0.0.7"], "userAgent": "curl/8.5.0",
            "objectRef": {"resource": "pods", "namespace": "default", "name": "evil", "apiVersion": "v1", "apiGroup": ""},
            "responseStatus": {"metadata": {}, "code": 201},
            "requestObject": {"kind": "Pod", "spec": {"containers": [{"name": "x", "image": "alpine", "env": [{"name": "PASSWORD", "value": "hunter2"}]}]}},
            "responseObject": {"kind": "Pod", "metadata": {"name": "evil", "uid": "0b6c-uid"}},
            "requestReceivedTimestamp": "2026-12-04T10:00:00.000000Z",
            "stageTimestamp": "2026-12-04T10:00:00.010000Z",
            "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "RBAC: allowed by ClusterRoleBinding \"anon\""}
        })
    }

    #[test]
    fn metadata_is_safe_and_complete() {
        let event = event_metadata(&anonymous_pod_create());
        assert_eq!(event.audit_id, "5c1e6d2a-0000-4000-8000-000000000001");
        assert_eq!(event.user.username.as_deref(), Some("system:anonymous"));
        assert_eq!(event.user.groups, ["system:unauthenticated"]);
        let object = event.object_ref.as_ref().unwrap();
        assert_eq!(object.api_group, None, "empty strings are dropped");
        assert_eq!(
            object.uid.as_deref(),
            Some("0b6c-uid"),
            "uid from the response object"
        );
        assert_eq!(event.response_code, Some(201));
        assert_eq!(event.decision.as_deref(), Some("allow"));
        assert_eq!(
            event.request_uri.as_deref(),
            Some("/api/v1/namespaces/default/pods?fieldManager=kubectl&access_token=REDACTED")
        );
        let serialized = serde_json::to_string(&event).unwrap();
        assert!(
            !serialized.contains("hunter2") && !serialized.contains("alpine"),
            "no bodies: {serialized}"
        );
    }

    #[test]
    fn ecs_annotation_keys_are_understood() {
        let mut audit = anonymous_pod_create();
        audit["annotations"] = json!({"authorization_k8s_io/decision": "forbid"});
        assert_eq!(event_metadata(&audit).decision.as_deref(), Some("forbid"));
    }

    #[test]
    fn masking_keeps_harmless_parameters() {
        assert_eq!(mask_request_uri("/api/v1/pods"), "/api/v1/pods");
        assert_eq!(
            mask_request_uri(
                "/api/v1/namespaces/a/pods/b/exec?command=sh&container=c&X-Amz-Signature=s1&Token=t"
            ),
            "/api/v1/namespaces/a/pods/b/exec?command=sh&container=c&X-Amz-Signature=REDACTED&Token=REDACTED"
        );
    }

    #[test]
    fn message_says_who_did_what_to_which_object_and_which_rule() {
        let event = event_metadata(&anonymous_pod_create());
        assert_eq!(
            message(
                "anonymous-pod-write",
                Some("Anonymous pod write"),
                std::slice::from_ref(&event)
            ),
            "system:anonymous create pods default/evil (HTTP 201); rule anonymous-pod-write (Anonymous pod write) fired."
        );
    }
}
