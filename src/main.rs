//! The `weir` binary; everything lives in the `weir-cli` crate.
//!
//! Its allocator is mimalloc, for Rust and, through `override`, for the C code linked in too
//! (librdkafka). With glibc's, the Kafka client's fetch thread allocates a message that the
//! query's thread frees, and the two contend for the allocator's lock on every record: about
//! a tenth of the CPU reading a topic went to that lock and the wake-ups it caused.
//! It is built with `no_thp`: it does not ask the kernel for transparent huge pages (a host
//! whose THP setting is `always`, not `madvise`, still gives them). Batches made on one thread
//! and freed on another keep mimalloc taking fresh memory, and the kernel zeroed 2 MiB at each
//! first touch of it (5% of Nexmark q8's CPU at parallelism 2, 2% on one thread); without
//! them q8's peak RSS went from 180 to 111 MiB at parallelism 2 (99 to 71 MiB on one thread).
//! Programs that embed weir choose their own allocator.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    weir_cli::main()
}
