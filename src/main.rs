//! The `weir` binary; everything lives in the `weir-cli` crate.

fn main() -> std::process::ExitCode {
    weir_cli::main()
}
