//! The worker process's first steps after exec: tie its life to the host's and shed what
//! it inherited.
//!
//! These run after exec rather than in a `pre_exec` hook so that the host keeps spawning
//! with `posix_spawn` (a `pre_exec` closure forces fork+exec, ≈50× slower from a large host).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use anyhow::{Context, Result, bail};
use rustix::process::{Signal, getppid, set_parent_process_death_signal};

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

/// The host hands the channel socket over as stdin (posix_spawn can place an fd only at
/// 0, 1 or 2). Move it to a close-on-exec fd and give the guest-facing stdin `/dev/null`.
pub(crate) fn take_channel_from_stdin() -> Result<UnixStream> {
    let channel = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), 3)
        .context("failed to take the channel from stdin")?;
    let null = File::open("/dev/null").context("failed to open /dev/null")?;
    rustix::stdio::dup2_stdin(null.as_fd()).context("failed to replace stdin")?;
    Ok(UnixStream::from(channel))
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
