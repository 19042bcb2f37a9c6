//! `cargo bench --bench nexmark [-- --events N --queries q0,q5 --json FILE --set k=v]`: the
//! Nexmark benchmark, the same as `weir bench nexmark` with the same options (each query in
//! a process of its own over the built-in generator, one line per query), built and run with
//! the optimised profile.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    // cargo passes `--bench` to every benchmark; the rest are `weir bench nexmark` options
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let status = Command::new(env!("CARGO_BIN_EXE_weir")).args(["bench", "nexmark"]).args(&args).status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("weir bench nexmark ended with {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("cannot run weir: {e}");
            ExitCode::FAILURE
        }
    }
}
