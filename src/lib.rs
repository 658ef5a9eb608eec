//! vigil: Elastic-style threat detection on the Kubernetes API server's audit log.
//!
//! Data flows one way: audit source (`audit`) → normalise (`ecs`) → engine (`eql`) → alert sink (`alert`), with
//! the CLI and the Kubernetes controller at the edges. `eql` and `ecs` know nothing of Kubernetes clients or tokio.

pub mod alert;
pub mod audit;
pub mod controller;
pub mod crd;
pub mod ecs;
pub mod engine;
pub mod eql;
pub mod metrics;
pub mod operator;
pub mod projection;
pub mod rules;
pub mod scan;
pub mod server;
