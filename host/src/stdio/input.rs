//! Where a worker's stdin comes from.

/// A guest's stdin. Python's `Process` reads `/dev/null` in the child; `wasmtime run`
/// hands the guest its own stdin. wasmp does the former by default and the latter on request
/// (`wasmp run` asks for it, as `wasmtime run` does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// End of file at once.
    #[default]
    Null,
    /// The host's own stdin, shared with the guest: the host passes its file descriptor to
    /// the worker process over the channel (`SCM_RIGHTS`), so a terminal or a pipe reaches
    /// the guest unchanged and unbuffered. The host must not read its stdin meanwhile.
    Inherit,
}
