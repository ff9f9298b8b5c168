//! What a worker may reach and use: directories, environment variables, resource limits.

pub(crate) mod dir;
pub(crate) mod limits;
