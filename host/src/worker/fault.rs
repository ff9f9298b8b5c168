//! Test-only fault injection, honoured by debug builds only (release builds compile it
//! out): the adversarial tests need a worker that misbehaves in ways no guest can, as if a
//! runtime bug had let a guest reach the OS. Chosen with `WASMP_FAULT` in the host's
//! environment (the one variable besides logging that workers inherit).

use super::channel::Channel;
use super::sandbox::LANDLOCK;

/// Where in the worker's life a fault may strike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Point {
    /// Right after the hello, before the start message is read.
    AfterHello,
    /// Inside the sandbox, before the guest runs.
    InSandbox,
}

/// Injects the fault `WASMP_FAULT` names, if it strikes at `point`.
pub(crate) fn inject(point: Point, channel: &Channel) {
    if !cfg!(debug_assertions) {
        return;
    }
    let Ok(fault) = std::env::var("WASMP_FAULT") else {
        return;
    };
    match (point, fault.as_str()) {
        // A worker that always dies at start-up (a crash loop for pools).
        (Point::AfterHello, "crash-at-start") => std::process::exit(3),
        // A system call outside the seccomp allow-list: the worker must be killed.
        (Point::InSandbox, "forbidden-syscall") => {
            let _ = rustix::net::socket(
                rustix::net::AddressFamily::INET,
                rustix::net::SocketType::STREAM,
                None,
            );
        }
        // A file outside the grants: landlock must refuse it.
        (Point::InSandbox, "read-outside") => {
            let landlock = LANDLOCK.get().copied().unwrap_or("unknown");
            match std::fs::read("/etc/passwd") {
                Ok(_) => eprintln!("fault injection: read /etc/passwd (landlock {landlock})"),
                Err(e) => {
                    eprintln!("fault injection: /etc/passwd refused: {e} (landlock {landlock})")
                }
            }
        }
        // A corrupt frame with a huge length prefix: the host must kill this worker
        // without allocating the claimed length, and carry on.
        (Point::InSandbox, "bad-frame") => {
            channel.write_raw(&[0xff, 0xff, 0xff, 0x7f, 1, 2, 3]);
            std::thread::sleep(std::time::Duration::from_secs(30));
        }
        _ => {}
    }
}
