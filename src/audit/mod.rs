//! Where audit events come from: lines of the API server's audit log (`event`, `lines`), followed across
//! rotations with a checkpoint (`follow`, `identity`, `checkpoint`), or posted by its audit webhook backend
//! (`webhook`); what was skipped or lost is counted in `counters`.

pub mod checkpoint;
pub mod counters;
pub mod event;
pub mod follow;
pub mod identity;
pub mod lines;
pub mod users;
pub mod webhook;
