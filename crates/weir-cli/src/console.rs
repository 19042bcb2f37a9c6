//! Writing to stdout and stderr without panicking: `println!` panics when stdout is a closed
//! pipe (`weir run … | head -1`) or a full device (`> /dev/full`), and `eprintln!` when
//! stderr is. Every line the CLI prints goes through [`out!`], [`outln!`], [`err!`] and
//! [`errln!`] instead, which record a failed write here; [`exit_code`] then turns it into the
//! process's exit code:
//!
//! - stdout closed by its reader: stop quietly, exit 0 (as `yes | head -1` does);
//! - any other failed write to stdout or stderr (a full device): exit 1, with a message on
//!   stderr when stderr still works.

use std::fmt::Arguments;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Set when whoever read stdout went away.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// The first failed write to stdout other than a closed pipe.
static STDOUT_FAILED: Mutex<Option<String>> = Mutex::new(None);
/// Set when a write to stderr failed.
static STDERR_FAILED: AtomicBool = AtomicBool::new(false);

/// Write to stdout and flush; false if it failed (the failure is remembered).
pub fn write_out(args: Arguments) -> bool {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return false;
    }
    let mut out = std::io::stdout().lock();
    match out.write_fmt(args).and_then(|_| out.flush()) {
        Ok(()) => true,
        Err(e) => {
            stdout_failed(&e);
            false
        }
    }
}

/// Write to stderr; a failure is remembered (it cannot be reported).
pub fn write_err(args: Arguments) {
    let mut err = std::io::stderr().lock();
    if err.write_fmt(args).and_then(|_| err.flush()).is_err() {
        STDERR_FAILED.store(true, Ordering::Relaxed);
    }
}

/// Remember that a write to stdout failed with `e`.
pub fn stdout_failed(e: &std::io::Error) {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    } else {
        let mut failed = STDOUT_FAILED.lock().unwrap_or_else(|e| e.into_inner());
        failed.get_or_insert_with(|| e.to_string());
    }
}

/// Whether whoever read stdout went away.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// The exit code of a command that would end with `code`, given what failed to print: a
/// failed write (other than to a closed stdout) turns success into a runtime error.
pub fn exit_code(code: ExitCode) -> ExitCode {
    // what is still buffered (a line without its end)
    if let Err(e) = std::io::stdout().lock().flush() {
        stdout_failed(&e);
    }
    let failed = STDOUT_FAILED.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(e) = failed {
        write_err(format_args!("error: cannot write the results to stdout: {e}\n"));
        if code == ExitCode::SUCCESS {
            return ExitCode::from(crate::EXIT_RUNTIME);
        }
    }
    if STDERR_FAILED.load(Ordering::Relaxed) && code == ExitCode::SUCCESS {
        return ExitCode::from(crate::EXIT_RUNTIME);
    }
    code
}

/// `print!` that never panics.
macro_rules! out {
    ($($arg:tt)*) => {{ let _ = $crate::console::write_out(format_args!($($arg)*)); }};
}

/// `println!` that never panics.
macro_rules! outln {
    () => {{ let _ = $crate::console::write_out(format_args!("\n")); }};
    ($($arg:tt)*) => {{ let _ = $crate::console::write_out(format_args!("{}\n", format_args!($($arg)*))); }};
}

/// `eprint!` that never panics.
macro_rules! err {
    ($($arg:tt)*) => { $crate::console::write_err(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    () => { $crate::console::write_err(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::write_err(format_args!("{}\n", format_args!($($arg)*))) };
}
