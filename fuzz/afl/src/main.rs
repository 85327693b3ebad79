//! One decoder under AFL++: `LOGFOLD_AFL_TARGET=<name> cargo afl fuzz ... target/release/logfold-afl`
//! (scripts/fuzz-afl does this). A panic is a crash to AFL, and so is a call that allocates more
//! than [`ALLOC_LIMIT`] at once, the bound crates/core/tests/fuzz.rs also holds the decoders to.
//! Given a file name as its argument, it runs that one input instead, to replay a finding.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The largest content a packed segment may declare (64 MiB) and some room.
const ALLOC_LIMIT: usize = 80 << 20;

/// Keeps the live heap bytes and their peak since the last reset (the fuzzed program runs one
/// thread, so relaxed counters are enough).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(now, Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size);
        let p = System.realloc(ptr, layout, new_size);
        LIVE.fetch_sub(layout.size(), Relaxed);
        p
    }
}

#[global_allocator]
static HEAP: Counting = Counting;

fn checked(name: &str, bytes: &[u8], def: &std::sync::Arc<logfold_core::table::TableDef>) {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    logfold_afl::run(name, bytes, def);
    let peak = PEAK.load(Relaxed).saturating_sub(base);
    assert!(
        peak <= ALLOC_LIMIT,
        "{name}: {peak} bytes allocated at once for a {}-byte input",
        bytes.len()
    );
}

fn main() {
    let name = std::env::var("LOGFOLD_AFL_TARGET").unwrap_or_default();
    if !logfold_afl::TARGETS.contains(&name.as_str()) {
        eprintln!(
            "set LOGFOLD_AFL_TARGET to one of: {}",
            logfold_afl::TARGETS.join(", ")
        );
        std::process::exit(2);
    }
    let def = logfold_afl::ledger();
    if let Some(file) = std::env::args_os().nth(1) {
        let bytes = std::fs::read(&file).expect("the input file reads");
        checked(&name, &bytes, &def);
        eprintln!("{name}: the input returned");
        return;
    }
    afl::fuzz!(|bytes: &[u8]| checked(&name, bytes, &def));
}
