//! The `weir` binary; everything lives in the `weir-cli` crate.
//!
//! Its allocator is mimalloc, for Rust and, through `override`, for the C code linked in too
//! (librdkafka). With glibc's, the Kafka client's fetch thread allocates a message that the
//! query's thread frees, and the two contend for the allocator's lock on every record: about
//! a tenth of the CPU reading a topic went to that lock and the wake-ups it caused.
//! Programs that embed weir choose their own allocator.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    weir_cli::main()
}
