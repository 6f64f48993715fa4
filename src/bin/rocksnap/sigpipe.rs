//! A command whose output goes to a pipe that closes early (`rocksnap list
//! | head`) ends quietly, as Unix tools do, instead of panicking on the
//! next write: the binary's business, never the library's.
#![allow(unsafe_code)]

/// Restores the default action of SIGPIPE (end the process), which Rust's
/// runtime sets to "ignore" so that writes fail with `BrokenPipe` instead.
/// Not for the node, which keeps serving whatever happens to its stdout.
/// Called once at start, before other threads exist.
pub(crate) fn end_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: `signal` with `SIG_DFL` installs no handler (no code runs in
    // signal context); it is called before the process starts other threads.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
