//! Log lines to stderr (the container log), each prefixed `berth-init: `. Write errors are
//! ignored: PID 1 must not panic because nobody reads its stderr.

use std::fmt;
use std::io::Write;

/// The prefix of every line berth-init writes to stderr.
pub const PREFIX: &str = "berth-init: ";

/// Writes one log line (use the [`log!`](crate::log!) macro).
pub fn line(args: fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{PREFIX}{args}");
}

/// `log!("…", args)`: one `berth-init: …` line on stderr.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log::line(format_args!($($arg)*))
    };
}
