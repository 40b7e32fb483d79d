//! `rmapscope._native.TextTokenizer`: the ftrace text tokenizer of `rmapscope-core` for
//! Python. The columns come back as `Buffer`s in Arrow's layout; the GIL is released while
//! a block is split, so the reader's threads split blocks side by side.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use rmapscope_core::text::columns::{StrCol, Validity};
use rmapscope_core::text::{Format, Tokenizer, Tokens};

use crate::buffer::Buffer;

fn format(name: &str) -> PyResult<Format> {
    Format::from_name(name)
        .ok_or_else(|| PyValueError::new_err(format!("not a text format: {name:?}")))
}

/// The regex of an event line's header in format `fmt` (named groups as in the core).
#[pyfunction]
pub fn header_pattern(fmt: &str) -> PyResult<&'static str> {
    Ok(format(fmt)?.header_pattern())
}

fn validity(py: Python<'_>, v: Validity) -> PyResult<PyObject> {
    if v.nulls == 0 {
        return Ok(py.None());
    }
    Ok(Bound::new(py, Buffer::from_bytes(v.bits))?
        .into_any()
        .unbind())
}

/// (kind, rows, nulls, validity | None, values) or (kind, rows, nulls, validity, offsets, data)
pub(crate) fn ints(py: Python<'_>, kind: &str, data: Vec<u8>, v: Validity) -> PyResult<PyObject> {
    let (len, nulls) = (v.len, v.nulls);
    let t = (kind, len, nulls, validity(py, v)?, Buffer::from_bytes(data));
    Ok(t.into_pyobject(py)?.into_any().unbind())
}

pub(crate) fn strings(py: Python<'_>, c: StrCol) -> PyResult<PyObject> {
    let (len, nulls) = (c.valid.len, c.valid.nulls);
    let t = (
        "str",
        len,
        nulls,
        validity(py, c.valid)?,
        Buffer::from_bytes(c.offsets),
        Buffer::from_bytes(c.data),
    );
    Ok(t.into_pyobject(py)?.into_any().unbind())
}

/// The regex of a whole event line in format `fmt` (header, event name, payload).
#[pyfunction]
pub fn line_pattern(fmt: &str) -> PyResult<String> {
    Ok(format(fmt)?.pattern())
}

/// `block` as UTF-8 text, bytes that are not UTF-8 escaped (the rule of `ingest/_bytes.py`).
#[pyfunction]
pub fn escape_block(py: Python<'_>, block: &[u8]) -> Buffer {
    py.allow_threads(|| {
        Buffer::from_bytes(
            rmapscope_core::text::escape::escape(block)
                .into_owned()
                .into_bytes(),
        )
    })
}

/// Splits blocks of one text format into the header columns of their event lines.
#[pyclass(frozen, module = "rmapscope._native")]
pub struct TextTokenizer {
    inner: Tokenizer,
}

#[pymethods]
impl TextTokenizer {
    #[new]
    fn new(fmt: &str) -> PyResult<Self> {
        Ok(TextTokenizer {
            inner: Tokenizer::new(format(fmt)?),
        })
    }

    /// Split `block` (whole lines, the first numbered `line_base + 1`): returns
    /// `(lines, counter, events, other)`, `events` and `other` dicts of column name ->
    /// buffers tuple (see `ingest/text.py`).
    fn tokenize<'py>(
        &self,
        py: Python<'py>,
        block: &[u8],
        line_base: i64,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let t: Tokens = py.allow_threads(|| self.inner.tokenize(block, line_base));
        let events = PyDict::new(py);
        events.set_item("lineno", ints(py, "i64", t.lineno.data, t.lineno.valid)?)?;
        events.set_item("ts", ints(py, "i64", t.ts.data, t.ts.valid)?)?;
        events.set_item("cpu", ints(py, "i32", t.cpu.data, t.cpu.valid)?)?;
        events.set_item("pid", ints(py, "i32", t.pid.data, t.pid.valid)?)?;
        events.set_item("tgid", ints(py, "i32", t.tgid.data, t.tgid.valid)?)?;
        events.set_item("comm", strings(py, t.comm)?)?;
        events.set_item("flags", strings(py, t.flags)?)?;
        events.set_item("event", strings(py, t.event)?)?;
        events.set_item("rest", strings(py, t.rest)?)?;
        events.set_item("instance", strings(py, t.instance)?)?;
        let other = PyDict::new(py);
        other.set_item(
            "lineno",
            ints(py, "i64", t.other_lineno.data, t.other_lineno.valid)?,
        )?;
        other.set_item("line", strings(py, t.other_line)?)?;
        PyTuple::new(
            py,
            [
                t.lines.into_pyobject(py)?.into_any(),
                t.counter.into_pyobject(py)?.to_owned().into_any(),
                events.into_any(),
                other.into_any(),
            ],
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<TextTokenizer>()?;
    m.add_function(wrap_pyfunction!(header_pattern, m)?)?;
    m.add_function(wrap_pyfunction!(line_pattern, m)?)?;
    m.add_function(wrap_pyfunction!(escape_block, m)?)
}
