//! The worker process's first steps after exec: tie its life to the host's and shed what
//! it inherited.
//!
//! These run after exec rather than in a `pre_exec` hook so that the host keeps spawning
//! with `posix_spawn` (a `pre_exec` closure forces fork+exec, ≈50× slower from a large host).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use anyhow::{Context, Result, bail};
use rustix::process::{
    Resource, Rlimit, Signal, getppid, getrlimit, set_parent_process_death_signal, setrlimit,
};

use crate::grants::limits::Limits;

/// SIGKILL this process when the host dies, then make sure the host did not die before
/// that was armed (the race PDEATHSIG alone leaves open).
pub(crate) fn die_with_parent(parent_pid: u32) -> Result<()> {
    set_parent_process_death_signal(Some(Signal::KILL))
        .context("failed to arm the parent-death signal")?;
    let ppid = getppid().map_or(0, |pid| pid.as_raw_pid() as u32);
    if ppid != parent_pid {
        bail!("the host (pid {parent_pid}) is gone; now parented by {ppid}");
    }
    Ok(())
}

/// Drops what a sandboxed process never needs: the ability to gain privileges (a
/// prerequisite of seccomp and landlock for unprivileged processes), core dumps (they would
/// write guest memory to disk), and a large file-descriptor table.
pub(crate) fn lock_down() -> Result<()> {
    rustix::thread::set_no_new_privs(true).context("failed to set no_new_privs")?;
    set_limit(Resource::Core, 0).context("failed to disable core dumps")?;
    set_limit(Resource::Nofile, MAX_OPEN_FILES).context("failed to limit open files")?;
    Ok(())
}

/// Enough for the runtime, the channel, stdio and the files a guest opens in its grants.
const MAX_OPEN_FILES: u64 = 512;

/// The OS backstop under wasmtime's own memory limit: `RLIMIT_DATA` (private writable
/// memory) at the guest's limit plus room for the runtime. Never `RLIMIT_AS`: wasmtime
/// reserves gigabytes of address space per linear memory, which `RLIMIT_AS` would refuse.
pub(crate) fn limit_memory(limits: &Limits) -> Result<()> {
    const RUNTIME_HEADROOM: u64 = 512 << 20;
    if let Some(bytes) = limits.max_memory_size {
        set_limit(
            Resource::Data,
            (bytes as u64).saturating_add(RUNTIME_HEADROOM),
        )
        .context("failed to limit the worker's data size")?;
    }
    Ok(())
}

/// Sets both limits to `value`, or keeps a hard limit already below it: lowering is always
/// allowed, raising is not (a host run under `ulimit -n 64` still starts its workers).
fn set_limit(resource: Resource, value: u64) -> rustix::io::Result<()> {
    let value = getrlimit(resource)
        .maximum
        .map_or(value, |hard| hard.min(value));
    setrlimit(
        resource,
        Rlimit {
            current: Some(value),
            maximum: Some(value),
        },
    )
}

/// The host hands the channel socket over as stdin (posix_spawn can place an fd only at
/// 0, 1 or 2). Move it to a close-on-exec fd and give the guest-facing stdin `/dev/null`.
pub(crate) fn take_channel_from_stdin() -> Result<UnixStream> {
    let channel = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), 3)
        .context("failed to take the channel from stdin")?;
    let null = File::open("/dev/null").context("failed to open /dev/null")?;
    rustix::stdio::dup2_stdin(null.as_fd()).context("failed to replace stdin")?;
    Ok(UnixStream::from(channel))
}

/// Makes `fd` this process's stdin, which the guest's WASI stdin reads.
pub(crate) fn replace_stdin(fd: &OwnedFd) -> Result<()> {
    rustix::stdio::dup2_stdin(fd).context("failed to hand the host's stdin to the guest")
}

/// Closes every fd above stderr except the channel: a host that leaked an fd without
/// close-on-exec (or a C library that did) must not hand it to an untrusted guest.
pub(crate) fn close_inherited_fds(channel: &UnixStream) -> Result<()> {
    let keep = channel.as_raw_fd();
    let inherited: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .context("failed to list /proc/self/fd")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2 && fd != keep)
        .collect();
    for fd in inherited {
        // The directory listing's own fd is already closed by now: skip fds that are gone.
        if rustix::io::fcntl_getfd(unsafe_borrow(fd)).is_err() {
            continue;
        }
        #[expect(
            unsafe_code,
            reason = "closing fds this process inherited but never owned"
        )]
        // SAFETY: `fd` is open (checked above), is not stdio or the channel, and nothing in
        // this process owns it: the worker has opened no other files yet, so it can only be
        // an fd inherited across exec. Taking ownership and dropping it closes it once.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    Ok(())
}

fn unsafe_borrow(fd: i32) -> std::os::fd::BorrowedFd<'static> {
    #[expect(unsafe_code, reason = "probing an fd number for validity")]
    // SAFETY: only used for `fcntl(F_GETFD)`, which fails cleanly (EBADF) on a closed fd.
    unsafe {
        std::os::fd::BorrowedFd::borrow_raw(fd)
    }
}
