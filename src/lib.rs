//! vigil: Elastic-style threat detection on the Kubernetes API server's audit log.
//!
//! Data flows one way: audit source → normalise (`ecs`) → engine (`eql`) → alert sink, with the CLI and the
//! Kubernetes controller at the edges. `eql` and `ecs` know nothing of Kubernetes clients or tokio.

pub mod crd;
