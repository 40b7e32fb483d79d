//! trace.dat pages for Python: `walk_pages` wraps `rmapscope_core::tracedat::pages::walk`,
//! `decode_batch` wraps `rmapscope_core::tracedat::batch::decode_batch`.

use std::collections::HashMap;

use pyo3::buffer::PyBuffer;
use pyo3::create_exception;
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;

use rmapscope_core::tracedat::batch::{self, Column, FieldSpec, Header, Records, StrLoc};
use rmapscope_core::tracedat::fields::Field;
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
    m.add_function(wrap_pyfunction!(decode_batch, m)?)?;
    m.add_function(wrap_pyfunction!(distinct, m)?)?;
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

/// One decoded field for Python: number values, or `(offsets i64, data, validity or None,
/// null count)` of an Arrow `large_string` array.
#[derive(IntoPyObject)]
enum PyColumn {
    Numbers(Buffer),
    Strings((Buffer, Buffer, Option<Buffer>, usize)),
}

/// `(event type, rel i64, rec i64, rec_len i32, [headers], [columns])`.
type PyTypeRows = (u32, Buffer, Buffer, Buffer, Vec<Buffer>, Vec<PyColumn>);

/// Field kinds of `decode_batch`'s specs: `(kind, offset, size, signed)`.
fn field_spec(kind: u8, offset: usize, size: usize, signed: bool) -> PyResult<FieldSpec> {
    let loc = match kind {
        0 => {
            return Ok(FieldSpec::Number(Field {
                offset,
                size,
                signed,
            }))
        }
        1 => StrLoc::Fixed,
        2 => StrLoc::DataLoc,
        3 => StrLoc::RelLoc,
        4 => StrLoc::Flexible,
        _ => return Err(PyValueError::new_err(format!("unknown field kind {kind}"))),
    };
    Ok(FieldSpec::Str { loc, offset, size })
}

/// Decode a batch (`rmapscope_core::tracedat::batch::decode_batch`): the cat rows' records
/// (`rec` offsets into `buf`, `rec_len`, merge `key`, `ev_type`, `drop` mask or None),
/// `headers` (byte views of per-row columns, with their item width) to gather per type,
/// and `specs` (event type -> `[(kind, offset, size, signed)]`, kind 0 number, 1 char
/// array, 2 `__data_loc`, 3 `__rel_loc`, 4 tail array). Returns `(order, [per type])`
/// (see `PyTypeRows`), every buffer little-endian; the GIL is released while decoding.
#[pyfunction]
#[pyo3(signature = (buf, rec, rec_len, key, ev_type, drop, headers, specs, big_endian))]
#[allow(clippy::too_many_arguments)]
fn decode_batch(
    py: Python<'_>,
    buf: PyBuffer<u8>,
    rec: PyBuffer<i64>,
    rec_len: PyBuffer<i32>,
    key: PyBuffer<i64>,
    ev_type: PyBuffer<u32>,
    drop: Option<PyBuffer<u8>>,
    headers: Vec<(PyBuffer<u8>, usize)>,
    specs: HashMap<u32, Vec<(u8, usize, usize, bool)>>,
    big_endian: bool,
) -> PyResult<(Buffer, Vec<PyTypeRows>)> {
    let mut fields: HashMap<u32, Vec<FieldSpec>> = HashMap::new();
    for (t, list) in specs {
        let spec = list
            .into_iter()
            .map(|(k, o, s, signed)| field_spec(k, o, s, signed))
            .collect::<PyResult<Vec<_>>>()?;
        fields.insert(t, spec);
    }
    let drop_items = match &drop {
        Some(d) => Some(items_of(d)?),
        None => None,
    };
    let mut views = Vec::with_capacity(headers.len());
    for (b, width) in &headers {
        views.push(Header {
            values: items_of(b)?,
            width: (*width).max(1),
        });
    }
    let recs = Records {
        buf: items_of(&buf)?,
        rec: items_of(&rec)?,
        rec_len: items_of(&rec_len)?,
        key: items_of(&key)?,
        ev_type: items_of(&ev_type)?,
        drop: drop_items,
        big_endian,
    };
    let out = py.allow_threads(|| {
        batch::decode_batch(&recs, &views, |t| fields.get(&t).map(Vec::as_slice))
    });
    let types = out
        .types
        .into_iter()
        .map(|t| {
            let columns = t
                .columns
                .into_iter()
                .map(|c| match c {
                    Column::Numbers(v) => PyColumn::Numbers(Buffer::from_bytes(v)),
                    Column::Strings {
                        offsets,
                        data,
                        validity,
                        nulls,
                    } => PyColumn::Strings((
                        Buffer::from_i64(&offsets),
                        Buffer::from_bytes(data),
                        validity.map(Buffer::from_bytes),
                        nulls,
                    )),
                })
                .collect();
            (
                t.ev_type,
                Buffer::from_i64(&t.rel),
                Buffer::from_i64(&t.rec),
                Buffer::from_bytes(le_bytes(&t.rec_len, i32::to_le_bytes)),
                t.headers.into_iter().map(Buffer::from_bytes).collect(),
                columns,
            )
        })
        .collect();
    Ok((Buffer::from_i64(&out.order), types))
}

/// The distinct values of `values` (u64) in order of first appearance and each one's index
/// among them (u32), as little-endian buffers; the GIL is released.
#[pyfunction]
fn distinct(py: Python<'_>, values: PyBuffer<u64>) -> PyResult<(Buffer, Buffer)> {
    let values = items_of(&values)?;
    let (uniq, codes) = py.allow_threads(|| batch::distinct(values));
    Ok((
        Buffer::from_bytes(le_bytes(&uniq, u64::to_le_bytes)),
        Buffer::from_bytes(le_bytes(&codes, u32::to_le_bytes)),
    ))
}
