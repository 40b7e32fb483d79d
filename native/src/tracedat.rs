//! trace.dat pages for Python: `walk_pages` wraps `rmapscope_core::tracedat::pages::walk`,
//! `record_fields` wraps `rmapscope_core::tracedat::fields::read_fields`.

use pyo3::buffer::PyBuffer;
use pyo3::create_exception;
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;

use rmapscope_core::tracedat::fields::{read_fields, Field};
use rmapscope_core::tracedat::pages::{walk, Layout};

use crate::buffer::Buffer;

create_exception!(
    _native,
    CorruptPage,
    PyValueError,
    "A corrupt ring-buffer page: args are (page index in the group, message)."
);

/// Add this module's functions and exception to `_native`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("CorruptPage", m.py().get_type::<CorruptPage>())?;
    m.add_function(wrap_pyfunction!(walk_pages, m)?)?;
    m.add_function(wrap_pyfunction!(record_fields, m)?)?;
    Ok(())
}

/// The items of a C-contiguous, aligned buffer (a numpy array, bytes...), read-only.
fn items_of<T: pyo3::buffer::Element>(buf: &PyBuffer<T>) -> PyResult<&[T]> {
    if !buf.is_c_contiguous() || !(buf.buf_ptr() as usize).is_multiple_of(std::mem::align_of::<T>())
    {
        return Err(PyBufferError::new_err(
            "expected a contiguous, aligned buffer",
        ));
    }
    // SAFETY: the FFI boundary. `buf` holds a buffer view (the exporter stays alive and
    // keeps this memory until the view is released, when `buf` is dropped), of
    // `item_count()` contiguous, aligned items of type T at `buf_ptr()` (PyBuffer checked
    // the item format); the slice borrows `buf`. The reader does not write a page group or
    // a batch while the core reads it.
    Ok(unsafe { std::slice::from_raw_parts(buf.buf_ptr() as *const T, buf.item_count()) })
}

fn le_bytes<T: Copy, const N: usize>(values: &[T], to: fn(T) -> [u8; N]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * N);
    for &v in values {
        out.extend_from_slice(&to(v));
    }
    out
}

type Walked = (Buffer, Buffer, Buffer, Buffer, Buffer, Buffer);

/// Walk `n_pages` pages of a group: `(rec_off i64, rec_len i32, raw_ts u64, page i64,
/// lost_pages i64, lost_counts i64)` as little-endian buffers; `CorruptPage(page,
/// message)` for a corrupt page. The GIL is released while walking.
#[pyfunction]
#[pyo3(signature = (buf, n_pages, page_size, big_endian, long_size, data_offset))]
fn walk_pages(
    py: Python<'_>,
    buf: PyBuffer<u8>,
    n_pages: usize,
    page_size: usize,
    big_endian: bool,
    long_size: usize,
    data_offset: usize,
) -> PyResult<Walked> {
    let data = items_of(&buf)?;
    let layout = Layout {
        page_size,
        big_endian,
        long_size,
        data_offset,
    };
    let result = py.allow_threads(|| {
        walk(data, n_pages, &layout).map(|w| {
            [
                le_bytes(&w.rec_off, i64::to_le_bytes),
                le_bytes(&w.rec_len, i32::to_le_bytes),
                le_bytes(&w.raw_ts, u64::to_le_bytes),
                le_bytes(&w.page, i64::to_le_bytes),
                le_bytes(&w.lost_pages, i64::to_le_bytes),
                le_bytes(&w.lost_counts, i64::to_le_bytes),
            ]
        })
    });
    match result {
        Ok([a, b, c, d, e, f]) => Ok((
            Buffer::from_bytes(a),
            Buffer::from_bytes(b),
            Buffer::from_bytes(c),
            Buffer::from_bytes(d),
            Buffer::from_bytes(e),
            Buffer::from_bytes(f),
        )),
        Err(e) => Err(CorruptPage::new_err((e.page, e.message(page_size)))),
    }
}

/// The number fields `(offset, size, signed)` of the records at byte offsets `rec` of `buf`:
/// one little-endian buffer per field, of values `size` bytes wide (1, 2, 4, 8; 8 for other
/// sizes: their first 8 bytes; 4 for size 0). One pass over the records, GIL released.
#[pyfunction]
fn record_fields(
    py: Python<'_>,
    buf: PyBuffer<u8>,
    rec: PyBuffer<i64>,
    fields: Vec<(usize, usize, bool)>,
    big_endian: bool,
) -> PyResult<Vec<Buffer>> {
    let data = items_of(&buf)?;
    let rec = items_of(&rec)?;
    let fields: Vec<Field> = fields
        .into_iter()
        .map(|(offset, size, signed)| Field {
            offset,
            size,
            signed,
        })
        .collect();
    let cols = py.allow_threads(|| read_fields(data, rec, &fields, big_endian));
    Ok(cols.into_iter().map(Buffer::from_bytes).collect())
}
