//! rmapscope's compiled ingest core (`rmapscope._native`).
//!
//! Python reads the bytes and knows the event registry; this module splits records and
//! parses fields, and hands the columns back as Arrow buffers (`buffer::Buffer`) that
//! pyarrow wraps without a copy. The only `unsafe` code is the buffer protocol at the FFI
//! boundary (`buffer.rs`); the parsing itself is `rmapscope-core` (native/core), safe Rust
//! with `#![forbid(unsafe_code)]`.

use pyo3::prelude::*;

mod buffer;
mod fields;
mod text;
mod tracedat;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<buffer::Buffer>()?;
    tracedat::register(m)?;
    text::register(m)?;
    fields::register(m)?;
    Ok(())
}
