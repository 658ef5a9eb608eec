//! Where audit events come from: lines of the API server's audit log (`event`).

pub mod event;
pub mod lines;
