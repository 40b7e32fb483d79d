//! rmapscope's ingest core in plain, safe Rust: splitting records and parsing fields of
//! ftrace text and trace.dat pages into column vectors. No Python here: `native/src`
//! wraps it for Python (PyO3) and `fuzz/` drives it with libFuzzer.

#![forbid(unsafe_code)]

pub mod text;
pub mod tracedat;
