//! The `switchboard` binary's allocator: mimalloc, unless built without the default `mimalloc`
//! feature (then the system's).
//!
//! A served run allocates about 1,250 small objects, many freed on another thread than the one
//! that made them. glibc's malloc took 16% of the server's CPU at concurrency 32. With mimalloc,
//! the same runs cost about 15% less CPU. The measurements are in the README, Performance,
//! "Allocator and verified-token cache".

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Returns to the OS the memory this thread's heap and mimalloc's arenas hold but no longer use.
/// `serve` calls it once start-up is done, on the thread that ran start-up. Building the runtime
/// (the router's training, the demo's data) frees most of what it allocates. mimalloc returns
/// freed memory only while allocating, a second after it was freed, so an idle server kept it:
/// about 2 MB of idle RSS. The system allocator needs nothing here.
pub fn release_freed_memory() {
    // SAFETY: collects the calling thread's own heap; `force` also purges the arenas' free pages.
    #[cfg(feature = "mimalloc")]
    unsafe {
        libmimalloc_sys::mi_collect(true)
    };
}
