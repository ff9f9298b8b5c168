//! The OS walls around a worker, raised once its component is loaded: landlock limits the
//! filesystem to the granted directories (and the compile cache, read-only), and a seccomp
//! allow-list kills the worker on any system call a wasm runtime has no business making
//! (exec, fork, ptrace, new sockets, mounts, signals to other processes, …).
//!
//! If wasmtime ever had a bug that let a guest out of its sandbox, the guest would find
//! itself in a process that can only do what a wasm runtime does, with the files it was
//! granted. Landlock is best effort (it depends on the kernel); seccomp is required.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use landlock::{
    ABI, Access, AccessFs, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use tracing::debug;

use crate::grants::dir::DirGrant;
use crate::grants::network::{Network, RESOLVER_FILES};

/// What the worker may still open once sandboxed.
pub(crate) struct Walls<'a> {
    /// Where compiled components are read from.
    pub(crate) cache_dir: PathBuf,
    /// The guest's granted directories.
    pub(crate) dirs: &'a [DirGrant],
    /// `/proc/self/status`, read for memory accounting.
    pub(crate) proc_status: bool,
    /// Network access granted to this worker: widens the seccomp filter (and, for name
    /// lookups, landlock) for it alone.
    pub(crate) network: Network,
}

/// Raises both walls for this process (every thread).
pub(crate) fn enter(walls: &Walls<'_>) -> Result<()> {
    restrict_filesystem(walls)?;
    restrict_syscalls(walls.network.opens_sockets())
}

fn restrict_filesystem(walls: &Walls<'_>) -> Result<()> {
    let abi = ABI::V5;
    let read = AccessFs::from_read(abi);
    let all = AccessFs::from_all(abi);
    let mut rules: Vec<(PathBuf, _)> = vec![(walls.cache_dir.clone(), read)];
    if walls.proc_status {
        rules.push((
            PathBuf::from("/proc/self/status"),
            AccessFs::ReadFile.into(),
        ));
    }
    for dir in walls.dirs {
        let access = if dir.is_read_only() { read } else { all };
        rules.push((dir.host().to_path_buf(), access));
    }
    if walls.network.ip_name_lookup {
        for file in RESOLVER_FILES.iter().map(Path::new).filter(|f| f.exists()) {
            rules.push((file.to_path_buf(), AccessFs::ReadFile.into()));
        }
    }
    let mut ruleset = Ruleset::default()
        .handle_access(all)
        .context("failed to set up landlock")?
        .create()
        .context("failed to create the landlock ruleset")?;
    for (path, access) in rules {
        let fd = PathFd::new(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let access = if Path::new(&path).is_dir() {
            access
        } else {
            access & AccessFs::from_file(abi)
        };
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, access))
            .context("failed to add a landlock rule")?;
    }
    let status = ruleset
        .restrict_self()
        .context("failed to enforce landlock")?;
    let state = match status.ruleset {
        RulesetStatus::FullyEnforced => "fully enforced",
        RulesetStatus::PartiallyEnforced => "partially enforced by this kernel",
        RulesetStatus::NotEnforced => "not supported by this kernel",
    };
    debug!("landlock: {state}");
    let _ = LANDLOCK.set(state);
    Ok(())
}

/// How landlock went, for diagnostics.
pub(crate) static LANDLOCK: std::sync::OnceLock<&str> = std::sync::OnceLock::new();

/// The system calls a wasmtime worker makes: memory management, threads and futexes, signal
/// handling for traps, clocks and randomness, the channel socket, and file operations under
/// the granted directories. Everything else kills the process (`SIGSYS`).
const ALLOWED: &[i64] = &[
    // I/O on fds it already holds (the channel, stdio, granted files)
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_preadv2,
    libc::SYS_pwritev2,
    libc::SYS_lseek,
    libc::SYS_close,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_shutdown,
    libc::SYS_fcntl,
    libc::SYS_ioctl,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
    libc::SYS_eventfd2,
    libc::SYS_pipe2,
    // files under the granted directories (landlock decides which)
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_getdents64,
    libc::SYS_mkdirat,
    libc::SYS_unlinkat,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_linkat,
    libc::SYS_symlinkat,
    libc::SYS_readlinkat,
    libc::SYS_utimensat,
    libc::SYS_ftruncate,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_fadvise64,
    libc::SYS_fallocate,
    libc::SYS_flock,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_fstatfs,
    libc::SYS_getcwd,
    // memory
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_mremap,
    libc::SYS_brk,
    libc::SYS_membarrier,
    libc::SYS_memfd_create,
    // threads, futexes, scheduling
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_getppid,
    libc::SYS_prctl,
    libc::SYS_prlimit64,
    libc::SYS_getrlimit,
    libc::SYS_restart_syscall,
    // signals: traps arrive as SIGSEGV/SIGILL/SIGFPE; abort raises SIGABRT on itself
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_tgkill,
    // time and randomness
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettimeofday,
    libc::SYS_getrandom,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_uname,
    libc::SYS_sysinfo,
];

/// The socket calls a worker granted network access also makes (sending and receiving on
/// sockets it holds is allowed to every worker, for its channel).
const NETWORK: &[i64] = &[
    libc::SYS_socket,
    libc::SYS_connect,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
    libc::SYS_sendmmsg,
    libc::SYS_recvmmsg,
];

/// A second filter for a worker with network access: `socket` of any family but IPv4 and
/// IPv6 (Unix, netlink, packet, raw) fails with `EACCES` instead of killing the worker,
/// because the C library's resolver asks for some on its own (the `nscd` socket) and copes
/// when it cannot have them.
fn socket_families_filter(arch: TargetArch) -> Result<BpfProgram> {
    let other_family = [libc::AF_INET, libc::AF_INET6]
        .into_iter()
        .map(|family| {
            SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, family as u64)
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .context("failed to build the socket rule")?;
    let rule = SeccompRule::new(other_family).context("failed to build the socket rule")?;
    let filter = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_socket, vec![rule])]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EACCES as u32),
        arch,
    )
    .context("failed to build the socket filter")?;
    filter
        .try_into()
        .context("failed to compile the socket filter")
}

/// The compiled filters, without and with network access, in the order they are installed;
/// standby workers build the first ahead of need (see [`prepare`]).
static PROGRAMS: std::sync::OnceLock<Vec<BpfProgram>> = std::sync::OnceLock::new();
static NETWORK_PROGRAMS: std::sync::OnceLock<Vec<BpfProgram>> = std::sync::OnceLock::new();

fn programs(network: bool) -> &'static std::sync::OnceLock<Vec<BpfProgram>> {
    if network {
        &NETWORK_PROGRAMS
    } else {
        &PROGRAMS
    }
}

/// Compiles the seccomp filters now, so that entering the sandbox later only installs them.
pub(crate) fn prepare(network: bool) -> Result<()> {
    if programs(network).get().is_none() {
        let compiled = compile_filters(network)?;
        let _ = programs(network).set(compiled);
    }
    Ok(())
}

fn compile_filters(network: bool) -> Result<Vec<BpfProgram>> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| anyhow::anyhow!("seccomp does not support this architecture: {e:?}"))?;
    let mut allowed = ALLOWED.to_vec();
    let mut programs = Vec::new();
    if network {
        allowed.extend_from_slice(NETWORK);
        // Installed first: once the allow-list is in, `seccomp` itself is not allowed.
        programs.push(socket_families_filter(arch)?);
    }
    let rules = allowed
        .into_iter()
        .map(|nr| (nr, Vec::new()))
        .collect::<BTreeMap<_, _>>();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        arch,
    )
    .context("failed to build the seccomp filter")?;
    programs.push(
        filter
            .try_into()
            .context("failed to compile the seccomp filter")?,
    );
    Ok(programs)
}

fn restrict_syscalls(network: bool) -> Result<()> {
    prepare(network)?;
    let compiled = programs(network)
        .get()
        .context("the seccomp filter was not prepared")?;
    for program in compiled {
        seccompiler::apply_filter_all_threads(program)
            .context("failed to install the seccomp filter")?;
    }
    Ok(())
}
