//! Process-wide allocator tuning: the binary's business, never the
//! library's (a host chooses its own allocator). Also compiled into the
//! benchmark, whose child processes measure what the binary would.
#![allow(unsafe_code)]

/// Makes glibc's allocator serve every allocation of 1 MiB or more with its
/// own mapping, returned to the system when freed. Without it glibc raises
/// that threshold as large blocks are freed, keeps freed part buffers in
/// per-thread arenas, and the resident size of a process that moves many
/// 8 MiB parts grows far past what it holds. Called once at start, before
/// other threads exist.
pub(crate) fn pin_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before
    // the process starts other threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
