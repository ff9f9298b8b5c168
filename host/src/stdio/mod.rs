//! A worker's standard streams: where stdin comes from, where stdout and stderr go.

pub(crate) mod input;
pub(crate) mod output;
