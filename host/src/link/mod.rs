//! The host's live link to a worker process: spawning it, its socket, its standby set.

pub(crate) mod conn;
pub(crate) mod live;
pub(crate) mod serve;
pub(crate) mod spawn;
pub(crate) mod standby;
