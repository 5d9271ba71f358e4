//! Line output that survives a closed stdout or stderr.
//!
//! `println!` and `eprintln!` panic when their stream is closed (a dead
//! pipe, a closed SSH session). A tool that must run to its end whoever is
//! reading (a demo that stops motors last, a benchmark) prints with
//! [`safe_println!`](crate::safe_println) and
//! [`safe_eprintln!`](crate::safe_eprintln) instead: the same lines, and a
//! failed write is ignored. Import them under the std names to keep the
//! call sites unchanged:
//!
//! ```
//! use banyan_component::{safe_eprintln as eprintln, safe_println as println};
//! println!("{} messages", 3);
//! eprintln!("done");
//! ```
//!
//! Not for output whose loss must be noticed (a command's result on
//! stdout): there, handle the `writeln!` error.

/// `println!` that ignores a failed write (a closed stdout) instead of
/// panicking. See the [`stdio`](crate::stdio) module docs.
#[macro_export]
macro_rules! safe_println {
    () => {
        $crate::safe_println!("")
    };
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that ignores a failed write (a closed stderr) instead of
/// panicking. See the [`stdio`](crate::stdio) module docs.
#[macro_export]
macro_rules! safe_eprintln {
    () => {
        $crate::safe_eprintln!("")
    };
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stderr(), $($arg)*);
    }};
}
