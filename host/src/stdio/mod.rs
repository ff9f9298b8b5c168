//! A worker's standard streams: where stdin comes from, where stdout and stderr go, and the
//! threads that drain piped output (tagged lines or a capture). Knows nothing of the rest
//! of the crate.

pub(crate) mod input;
pub(crate) mod output;
