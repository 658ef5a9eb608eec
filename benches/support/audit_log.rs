//! A generator of realistic Kubernetes audit logs, shared by the scan benchmark and the tests: deterministic (one
//! seed, one log), events of about 1 KiB as a busy cluster writes them (controllers watching and updating, nodes
//! reporting, people and CI using kubectl, the occasional anonymous probe), and, at a low rate, the suspicious
//! requests the example rules look for, so that matching is exercised too.

use serde_json::{Value, json};

#[path = "split_mix.rs"]
mod split_mix;

use split_mix::SplitMix64;

impl SplitMix64 {
    /// True with probability `per_mille` / 1000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Picks by weight: `items` are (weight, item).
    fn weighted<'a, T>(&mut self, items: &'a [(u32, T)]) -> &'a T {
        let total: u32 = items.iter().map(|(weight, _)| weight).sum();
        let mut roll = (self.next() % u64::from(total)) as u32;
        for (weight, item) in items {
            if roll < *weight {
                return item;
            }
            roll -= weight;
        }
        &items[items.len() - 1].1
    }

    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }
}

struct Actor {
    username: &'static str,
    groups: &'static [&'static str],
    user_agent: &'static str,
    source_ip: &'static str,
}

const CONTROLLER_GROUPS: &[&str] = &[
    "system:serviceaccounts",
    "system:serviceaccounts:kube-system",
    "system:authenticated",
];
const NODE_GROUPS: &[&str] = &["system:nodes", "system:authenticated"];
const PEOPLE_GROUPS: &[&str] = &["developers", "system:authenticated"];

/// Who sends requests, by weight: mostly controllers and nodes, some people and CI, rarely nobody at all.
const ACTORS: &[(u32, Actor)] = &[
    (
        30,
        Actor {
            username: "system:kube-controller-manager",
            groups: &["system:authenticated"],
            user_agent: "kube-controller-manager/v1.37.2 (linux/amd64) kubernetes/8f1c2a4/leader-election",
            source_ip: "10.0.0.11",
        },
    ),
    (
        20,
        Actor {
            username: "system:serviceaccount:kube-system:replicaset-controller",
            groups: CONTROLLER_GROUPS,
            user_agent: "kube-controller-manager/v1.37.2 (linux/amd64) kubernetes/8f1c2a4/system:serviceaccount:kube-system:replicaset-controller",
            source_ip: "10.0.0.11",
        },
    ),
    (
        15,
        Actor {
            username: "system:kube-scheduler",
            groups: &["system:authenticated"],
            user_agent: "kube-scheduler/v1.37.2 (linux/amd64) kubernetes/8f1c2a4/scheduler",
            source_ip: "10.0.0.11",
        },
    ),
    (
        25,
        Actor {
            username: "system:node:worker-1",
            groups: NODE_GROUPS,
            user_agent: "kubelet/v1.37.2 (linux/amd64) kubernetes/8f1c2a4",
            source_ip: "10.0.1.21",
        },
    ),
    (
        25,
        Actor {
            username: "system:node:worker-2",
            groups: NODE_GROUPS,
            user_agent: "kubelet/v1.37.2 (linux/amd64) kubernetes/8f1c2a4",
            source_ip: "10.0.1.22",
        },
    ),
    (
        10,
        Actor {
            username: "system:serviceaccount:monitoring:prometheus",
            groups: &[
                "system:serviceaccounts",
                "system:serviceaccounts:monitoring",
                "system:authenticated",
            ],
            user_agent: "prometheus/2.53.0",
            source_ip: "10.244.3.17",
        },
    ),
    (
        8,
        Actor {
            username: "system:serviceaccount:ci:deployer",
            groups: &[
                "system:serviceaccounts",
                "system:serviceaccounts:ci",
                "system:authenticated",
            ],
            user_agent: "helm/v3.16.1 (linux/amd64)",
            source_ip: "10.244.5.40",
        },
    ),
    (
        4,
        Actor {
            username: "alice@example.com",
            groups: PEOPLE_GROUPS,
            user_agent: "kubectl/v1.37.1 (darwin/arm64) kubernetes/4a3b2c1",
            source_ip: "192.168.20.14",
        },
    ),
    (
        4,
        Actor {
            username: "bob@example.com",
            groups: &["platform-admins", "system:authenticated"],
            user_agent: "kubectl/v1.37.1 (linux/amd64) kubernetes/4a3b2c1",
            source_ip: "192.168.20.31",
        },
    ),
    (
        1,
        Actor {
            username: "system:anonymous",
            groups: &["system:unauthenticated"],
            user_agent: "Mozilla/5.0 (X11; Linux x86_64) zgrab/0.x",
            source_ip: "203.0.113.77",
        },
    ),
];

const NAMESPACES: &[&str] = &[
    "default",
    "kube-system",
    "monitoring",
    "payments",
    "web",
    "ci",
    "ingress-nginx",
];

struct Resource {
    name: &'static str,
    group: &'static str,
    version: &'static str,
    namespaced: bool,
}

const RESOURCES: &[(u32, Resource)] = &[
    (
        20,
        Resource {
            name: "pods",
            group: "",
            version: "v1",
            namespaced: true,
        },
    ),
    (
        18,
        Resource {
            name: "leases",
            group: "coordination.k8s.io",
            version: "v1",
            namespaced: true,
        },
    ),
    (
        10,
        Resource {
            name: "configmaps",
            group: "",
            version: "v1",
            namespaced: true,
        },
    ),
    (
        8,
        Resource {
            name: "secrets",
            group: "",
            version: "v1",
            namespaced: true,
        },
    ),
    (
        8,
        Resource {
            name: "endpointslices",
            group: "discovery.k8s.io",
            version: "v1",
            namespaced: true,
        },
    ),
    (
        8,
        Resource {
            name: "events",
            group: "",
            version: "v1",
            namespaced: true,
        },
    ),
    (
        6,
        Resource {
            name: "nodes",
            group: "",
            version: "v1",
            namespaced: false,
        },
    ),
    (
        6,
        Resource {
            name: "deployments",
            group: "apps",
            version: "v1",
            namespaced: true,
        },
    ),
    (
        5,
        Resource {
            name: "replicasets",
            group: "apps",
            version: "v1",
            namespaced: true,
        },
    ),
    (
        4,
        Resource {
            name: "services",
            group: "",
            version: "v1",
            namespaced: true,
        },
    ),
    (
        3,
        Resource {
            name: "serviceaccounts",
            group: "",
            version: "v1",
            namespaced: true,
        },
    ),
    (
        2,
        Resource {
            name: "rolebindings",
            group: "rbac.authorization.k8s.io",
            version: "v1",
            namespaced: true,
        },
    ),
    (
        1,
        Resource {
            name: "clusterroles",
            group: "rbac.authorization.k8s.io",
            version: "v1",
            namespaced: false,
        },
    ),
    (
        1,
        Resource {
            name: "namespaces",
            group: "",
            version: "v1",
            namespaced: false,
        },
    ),
];

const VERBS: &[(u32, &str)] = &[
    (30, "get"),
    (18, "list"),
    (14, "watch"),
    (18, "update"),
    (8, "patch"),
    (8, "create"),
    (4, "delete"),
];

const IMAGES: &[&str] = &[
    "registry.example.com/payments/api:1.42.0",
    "registry.example.com/web/frontend:3.1.7",
    "docker.io/library/nginx:1.27",
    "quay.io/prometheus/node-exporter:v1.8.2",
    "registry.k8s.io/pause:3.10",
];

/// Generates audit log lines; the same seed always gives the same log.
pub struct AuditLogGenerator {
    rng: SplitMix64,
    /// Microseconds since the log's start: events are a few milliseconds apart.
    clock_micros: u64,
}

impl AuditLogGenerator {
    pub fn new(seed: u64) -> Self {
        AuditLogGenerator {
            rng: SplitMix64(seed),
            clock_micros: 0,
        }
    }

    /// One audit event as a line of JSON (without the newline).
    pub fn event_line(&mut self) -> String {
        self.event().to_string()
    }

    /// An `EventList` of `count` events on one line, as the webhook and batch backends write them.
    pub fn event_list_line(&mut self, count: usize) -> String {
        let items: Vec<Value> = (0..count).map(|_| self.event()).collect();
        json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items}).to_string()
    }

    /// `count` lines of single events, newline-terminated.
    pub fn log(&mut self, count: usize) -> String {
        let mut log = String::with_capacity(count * 1100);
        for _ in 0..count {
            log.push_str(&self.event_line());
            log.push('\n');
        }
        log
    }

    pub fn event(&mut self) -> Value {
        self.clock_micros += 200 + self.rng.below(4000) as u64;
        // About one event in 60 is one of the suspicious requests the example rules target.
        if self.rng.chance(16) {
            return self.suspicious_event();
        }
        let actor = self.rng.weighted(ACTORS);
        let resource = self.rng.weighted(RESOURCES);
        let verb = *self.rng.weighted(VERBS);
        let namespace = *self.rng.pick(NAMESPACES);
        let name = format!(
            "{}-{:x}",
            resource.name.trim_end_matches('s'),
            self.rng.next() & 0xfffff
        );
        let mut object_ref = json!({"resource": resource.name, "apiVersion": resource.version});
        if !resource.group.is_empty() {
            object_ref["apiGroup"] = resource.group.into();
        }
        if resource.namespaced {
            object_ref["namespace"] = namespace.into();
        }
        if !matches!(verb, "list" | "watch" | "create") {
            object_ref["name"] = name.clone().into();
        }
        let level = if actor.username == "system:anonymous" {
            "Metadata"
        } else {
            *self
                .rng
                .weighted(&[(70, "Metadata"), (20, "Request"), (10, "RequestResponse")])
        };
        let forbidden = actor.username == "system:anonymous" || self.rng.chance(20);
        let mut event = self.envelope(actor, verb, level, object_ref, forbidden);
        if level != "Metadata" && verb == "create" && resource.name == "pods" {
            let pod = self.pod_spec(&name, namespace, false);
            event["requestObject"] = pod.clone();
            if level == "RequestResponse" && !forbidden {
                event["responseObject"] = pod;
            }
        }
        event
    }

    /// The envelope every event shares: identity, request, decision, timestamps.
    fn envelope(
        &mut self,
        actor: &Actor,
        verb: &str,
        level: &str,
        object_ref: Value,
        forbidden: bool,
    ) -> Value {
        let path = request_path(&object_ref, verb);
        let stage = match verb {
            "watch" => "ResponseStarted",
            _ if self.rng.chance(100) => "RequestReceived",
            _ => "ResponseComplete",
        };
        let received = timestamp(self.clock_micros);
        let completed = timestamp(self.clock_micros + 300 + self.rng.below(3000) as u64);
        let code = match (forbidden, verb) {
            (true, _) => 403,
            (false, "create") => 201,
            (false, _) if self.rng.chance(30) => 404,
            _ => 200,
        };
        let mut annotations = json!({
            "authorization.k8s.io/decision": if forbidden { "forbid" } else { "allow" },
            "authorization.k8s.io/reason": if forbidden {
                String::new()
            } else {
                format!("RBAC: allowed by ClusterRoleBinding \"{}\" of ClusterRole \"{}\" to User \"{}\"",
                    "system:controller-bindings", "system:controller-roles", actor.username)
            },
        });
        if verb == "create" && object_ref["resource"] == "pods" {
            annotations["pod-security.kubernetes.io/enforce-policy"] = "baseline:latest".into();
        }
        let mut user = json!({"username": actor.username, "groups": actor.groups});
        if actor.username != "system:anonymous" {
            user["uid"] = self.rng.uuid().into();
        }
        let mut event = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": level,
            "auditID": self.rng.uuid(),
            "stage": stage,
            "requestURI": path,
            "verb": verb,
            "user": user,
            "sourceIPs": [actor.source_ip],
            "userAgent": actor.user_agent,
            "objectRef": object_ref,
            "requestReceivedTimestamp": received,
            "stageTimestamp": completed,
            "annotations": annotations,
        });
        if stage != "RequestReceived" {
            event["responseStatus"] = if code == 403 {
                json!({"metadata": {}, "status": "Failure", "message": "forbidden: User cannot perform this action", "reason": "Forbidden", "code": 403})
            } else {
                json!({"metadata": {}, "code": code})
            };
        }
        event
    }

    /// A pod as `kubectl run` or a controller sends it; `risky` adds the settings attackers like.
    fn pod_spec(&mut self, name: &str, namespace: &str, risky: bool) -> Value {
        let image = *self.rng.pick(IMAGES);
        let mut container = json!({
            "name": "main",
            "image": image,
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
            "terminationMessagePath": "/dev/termination-log",
            "imagePullPolicy": "IfNotPresent",
            "securityContext": {"runAsNonRoot": true, "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true},
        });
        let mut spec = json!({
            "containers": [container.clone()],
            "restartPolicy": "Always",
            "serviceAccountName": "default",
            "dnsPolicy": "ClusterFirst",
            "volumes": [{"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}}],
        });
        if risky {
            match self.rng.below(6) {
                0 => container["securityContext"] = json!({"privileged": true}),
                1 => {
                    spec["volumes"] =
                        json!([{"name": "host", "hostPath": {"path": "/", "type": ""}}]);
                }
                2 => {
                    spec["volumes"] = json!([{"name": "sock", "hostPath": {"path": "/run/containerd/containerd.sock"}}])
                }
                3 => spec["hostNetwork"] = true.into(),
                4 => container["securityContext"] = json!({"capabilities": {"add": ["SYS_ADMIN"]}}),
                _ => container["image"] = "docker.io/minerco/xmrig:6.21".into(),
            }
            spec["containers"] = json!([container]);
        }
        json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": name.split('-').next().unwrap_or(name)}},
            "spec": spec,
            "status": {},
        })
    }

    /// One of the requests the example rules are written for, by a user who should not make it.
    fn suspicious_event(&mut self) -> Value {
        let actor = if self.rng.chance(300) {
            &ACTORS[ACTORS.len() - 1].1
        } else {
            &self.rng.pick(&ACTORS[5..]).1
        };
        let namespace = *self.rng.pick(NAMESPACES);
        let pod_name = format!("debug-{:x}", self.rng.next() & 0xffff);
        let reference = |resource: &str, subresource: Option<&str>, name: Option<&str>| {
            let mut object_ref =
                json!({"resource": resource, "namespace": namespace, "apiVersion": "v1"});
            if let Some(subresource) = subresource {
                object_ref["subresource"] = subresource.into();
            }
            if let Some(name) = name {
                object_ref["name"] = name.into();
            }
            object_ref
        };
        match self.rng.below(8) {
            0 | 1 => {
                let pod = self.pod_spec(&pod_name, namespace, true);
                let mut event = self.envelope(
                    actor,
                    "create",
                    "RequestResponse",
                    reference("pods", None, None),
                    false,
                );
                event["requestObject"] = pod.clone();
                event["responseObject"] = pod;
                event
            }
            2 => self.envelope(
                actor,
                "create",
                "Metadata",
                reference("pods", Some("exec"), Some(&pod_name)),
                false,
            ),
            3 => {
                let forbidden = self.rng.chance(500);
                self.envelope(
                    actor,
                    "list",
                    "Metadata",
                    reference("secrets", None, None),
                    forbidden,
                )
            }
            4 => self.envelope(
                actor,
                "get",
                "Metadata",
                reference("secrets", None, Some("db-credentials")),
                true,
            ),
            5 => {
                let mut object_ref = json!({"resource": "clusterrolebindings", "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"});
                object_ref["name"] = pod_name.clone().into();
                let mut event =
                    self.envelope(actor, "create", "RequestResponse", object_ref, false);
                event["requestObject"] = json!({
                    "kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
                    "metadata": {"name": pod_name},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                    "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
                });
                event
            }
            6 => self.envelope(
                actor,
                "create",
                "Metadata",
                reference("serviceaccounts", Some("token"), Some("default")),
                false,
            ),
            _ => self.envelope(
                actor,
                "delete",
                "Metadata",
                reference("events", None, Some(&pod_name)),
                false,
            ),
        }
    }
}

/// The request URI the API server records for a request on `object_ref`.
fn request_path(object_ref: &Value, verb: &str) -> String {
    let group = object_ref["apiGroup"].as_str().unwrap_or("");
    let version = object_ref["apiVersion"].as_str().unwrap_or("v1");
    let mut path = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    if let Some(namespace) = object_ref["namespace"].as_str() {
        path.push_str("/namespaces/");
        path.push_str(namespace);
    }
    path.push('/');
    path.push_str(object_ref["resource"].as_str().unwrap_or(""));
    if let Some(name) = object_ref["name"].as_str() {
        path.push('/');
        path.push_str(name);
    }
    if let Some(subresource) = object_ref["subresource"].as_str() {
        path.push('/');
        path.push_str(subresource);
    }
    match verb {
        "watch" => path.push_str("?allowWatchBookmarks=true&resourceVersion=1284736&timeout=7m41s&timeoutSeconds=461&watch=true"),
        "list" => path.push_str("?limit=500&resourceVersion=0"),
        _ => {}
    }
    path
}

/// RFC 3339 with microseconds, from a day in December 2026.
fn timestamp(micros: u64) -> String {
    let seconds = micros / 1_000_000;
    format!(
        "2026-12-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        4 + seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
        micros % 1_000_000
    )
}
