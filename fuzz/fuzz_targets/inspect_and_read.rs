//! Arbitrary bytes through the two entry points that uploads reach, in the order NOVA calls them: `inspect`
//! (the upload check), then `read_with_engines` whatever `inspect` answered (the worker reads a stored
//! document without inspecting it again). No OCR engine or renderer: they run outside the process, and
//! without them extraction does no I/O.
//!
//! A crash is what would take a NOVA process down: a panic that escapes the entry points, a stack overflow,
//! an abort, more memory than `-rss_limit_mb`, or an input that runs longer than `-timeout`. A panic that
//! nova-extract catches itself (around the PDF libraries, turning it into `invalid_pdf`) is its documented
//! behaviour, not a crash. `NOVA_FUZZ_CAUGHT_PANICS=abort` makes those crashes too, to list the library
//! bugs that nova-extract papers over.

#![no_main]

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Mutex, PoisonError};

use libfuzzer_sys::fuzz_target;
use nova_extract::{inspect, read_with_engines, Engines, ExtractError, TemplateSet};

/// The message and location of the latest panic, kept for the report when one escapes.
static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

fuzz_target!(
    init: {
        // libfuzzer-sys aborts at every panic, which would stop the run at the panics nova-extract is built
        // to catch. Remembering the panic instead keeps the hook silent for those; one that escapes is
        // printed and aborts below.
        let abort_on_caught = std::env::var_os("NOVA_FUZZ_CAUGHT_PANICS").is_some_and(|v| v == "abort");
        panic::set_hook(Box::new(move |info| {
            if abort_on_caught {
                eprintln!("nova-fuzz: {info}");
                std::process::abort();
            }
            *LAST_PANIC.lock().unwrap_or_else(PoisonError::into_inner) = info.to_string();
        }));
    },
    |data: &[u8]| {
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            check("inspect", inspect(data));
            check("read_with_engines", read_with_engines(data, Engines::default(), &TemplateSet::empty()));
        }));
        if outcome.is_err() {
            let message = LAST_PANIC.lock().unwrap_or_else(PoisonError::into_inner).clone();
            eprintln!("nova-fuzz: a panic escaped nova-extract: {message}");
            // An abort, not an unwind, so that libFuzzer reports a crash and keeps the input.
            std::process::abort();
        }
    }
);

/// An entry point must answer with a value or with an error that callers can name.
fn check<T>(entry_point: &str, result: Result<T, ExtractError>) {
    if let Err(err) = result {
        assert!(!err.code().is_empty(), "{entry_point} returned an error without a code: {err}");
    }
}
