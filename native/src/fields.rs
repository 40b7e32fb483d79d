//! `rmapscope._native.TokenPlan` and `LabelTable`: the typed fields of event payloads
//! (`rmapscope_core::text::fields`) for `ingest/fields.py`. Payloads come in as the buffers
//! of an Arrow `large_string` array and the columns go back as `Buffer`s in Arrow's layout;
//! the GIL is released while the rows are parsed.

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;

use rmapscope_core::text::columns::Validity;
use rmapscope_core::text::fields::{
    split_tokens, Checked, Column, Conv, Labels, Parsed, RegexPlan as CoreRegexPlan, Strings, Token,
};
use rmapscope_core::text::partition::{gather_fixed, gather_strings, Fixed, Partitioner};

use crate::text::{ints, strings};

/// The bytes of a C-contiguous buffer of signed chars (a pyarrow buffer), read-only.
fn bytes_of(buf: &PyBuffer<i8>) -> PyResult<&[u8]> {
    if !buf.is_c_contiguous() {
        return Err(PyBufferError::new_err("expected a contiguous buffer"));
    }
    // SAFETY: the FFI boundary. `buf` holds a buffer view (the exporter keeps this memory
    // until the view is released, when `buf` is dropped) of `item_count()` contiguous bytes
    // at `buf_ptr()`; the slice borrows `buf`. Arrow buffers are immutable.
    Ok(unsafe { std::slice::from_raw_parts(buf.buf_ptr() as *const u8, buf.item_count()) })
}

/// The buffers of a `large_string` array: (rows, offset, validity | None, offsets, data).
type StrArgs = (
    usize,
    usize,
    Option<PyBuffer<i8>>,
    PyBuffer<i8>,
    PyBuffer<i8>,
);

fn view(args: &StrArgs) -> PyResult<Strings<'_>> {
    let (len, offset, valid, offsets, data) = args;
    if offsets.item_count() < (offset + len + 1) * 8 {
        return Err(PyValueError::new_err("offsets shorter than the rows"));
    }
    Ok(Strings {
        offsets: bytes_of(offsets)?,
        data: bytes_of(data)?,
        validity: valid.as_ref().map(bytes_of).transpose()?,
        offset: *offset,
        len: *len,
    })
}

fn column(py: Python<'_>, c: Column) -> PyResult<PyObject> {
    match c {
        Column::I64(c) => ints(py, "i64", c.data, c.valid),
        Column::U64(c) => ints(py, "u64", c.data, c.valid),
        Column::Bool(values, valid) => ints(py, "bool", values.bits, valid),
        Column::Str(c) => strings(py, c),
    }
}

/// The token plan of one event's print fmt.
#[pyclass(frozen, module = "rmapscope._native")]
pub struct TokenPlan {
    tokens: Vec<Token>,
    padded: bool,
}

type TokenArg = (String, Option<ConvArg>, String);

/// (kind int/hex/bool/label, the bool choices, the true text)
type ConvArg = (String, Vec<String>, String);

fn conv((kind, choices, truth): ConvArg) -> PyResult<Conv> {
    Ok(match kind.as_str() {
        "int" => Conv::Int,
        "hex" => Conv::Hex,
        "bool" => Conv::Bool { choices, truth },
        "label" => Conv::Label,
        _ => return Err(PyValueError::new_err(format!("no conversion {kind:?}"))),
    })
}

fn parsed(py: Python<'_>, parsed: Parsed) -> PyResult<(Vec<PyObject>, PyObject)> {
    let cols = parsed
        .columns
        .into_iter()
        .map(|c| column(py, c))
        .collect::<PyResult<Vec<_>>>()?;
    let n = parsed.ok.len;
    let all = Validity {
        bits: Vec::new(),
        len: n,
        nulls: 0,
    };
    Ok((cols, ints(py, "bool", parsed.ok.bits, all)?))
}

#[pymethods]
impl TokenPlan {
    /// `tokens`: (prefix, None | (kind, bool choices, bool true text), suffix), kind one of
    /// int, hex, bool, label; `padded`: squeeze runs of spaces first.
    #[new]
    fn new(tokens: Vec<TokenArg>, padded: bool) -> PyResult<Self> {
        let tokens = tokens
            .into_iter()
            .map(|(prefix, how, suffix)| Ok(Token::new(prefix, how.map(conv).transpose()?, suffix)))
            .collect::<PyResult<Vec<_>>>()?;
        if tokens.is_empty() {
            return Err(PyValueError::new_err("a plan has tokens"));
        }
        Ok(TokenPlan { tokens, padded })
    }

    /// Cut the payloads (a `large_string` array's buffers) by the plan: (one column per
    /// value token, ok mask as a bool column).
    #[pyo3(signature = (rows, offset, valid, offsets, data))]
    fn split(
        &self,
        py: Python<'_>,
        rows: usize,
        offset: usize,
        valid: Option<PyBuffer<i8>>,
        offsets: PyBuffer<i8>,
        data: PyBuffer<i8>,
    ) -> PyResult<(Vec<PyObject>, PyObject)> {
        let args = (rows, offset, valid, offsets, data);
        let input = view(&args)?;
        let out = py.allow_threads(|| split_tokens(&self.tokens, self.padded, &input));
        parsed(py, out)
    }
}

/// The regex of an event without a token plan and its fields' conversions, compiled.
#[pyclass(frozen, module = "rmapscope._native")]
pub struct RegexPlan {
    inner: CoreRegexPlan,
}

#[pymethods]
impl RegexPlan {
    /// `columns`: (group name, conversion) per field column.
    #[new]
    fn new(pattern: &str, columns: Vec<(String, ConvArg)>) -> PyResult<Self> {
        let columns = columns
            .into_iter()
            .map(|(name, how)| Ok((name, conv(how)?)))
            .collect::<PyResult<Vec<_>>>()?;
        let inner = CoreRegexPlan::new(pattern, columns).map_err(PyValueError::new_err)?;
        Ok(RegexPlan { inner })
    }

    /// (a column per field, the bool column of rows that parsed); the GIL is released
    /// while the rows are matched.
    #[pyo3(signature = (rows, offset, valid, offsets, data))]
    fn parse(
        &self,
        py: Python<'_>,
        rows: usize,
        offset: usize,
        valid: Option<PyBuffer<i8>>,
        offsets: PyBuffer<i8>,
        data: PyBuffer<i8>,
    ) -> PyResult<(Vec<PyObject>, PyObject)> {
        let args = (rows, offset, valid, offsets, data);
        let input = view(&args)?;
        let out = py.allow_threads(|| self.inner.parse(&input));
        parsed(py, out)
    }
}

#[pyclass(frozen, module = "rmapscope._native")]
pub struct LabelTable {
    inner: Labels,
}

#[pymethods]
impl LabelTable {
    #[new]
    #[pyo3(signature = (names, delim, other, suffix))]
    fn new(
        names: Vec<(String, i64)>,
        delim: Option<String>,
        other: Option<String>,
        suffix: Option<(Option<i64>, String)>,
    ) -> Self {
        let mut table = std::collections::HashMap::with_capacity(names.len());
        for (name, value) in names {
            table.entry(name).or_insert(value);
        }
        LabelTable {
            inner: Labels {
                names: table,
                delim: delim.filter(|d| !d.is_empty()),
                other,
                suffix,
            },
        }
    }

    /// The integer behind each label (a `large_string` array's buffers): an int64 column.
    #[pyo3(signature = (rows, offset, valid, offsets, data))]
    fn values(
        &self,
        py: Python<'_>,
        rows: usize,
        offset: usize,
        valid: Option<PyBuffer<i8>>,
        offsets: PyBuffer<i8>,
        data: PyBuffer<i8>,
    ) -> PyResult<PyObject> {
        let args = (rows, offset, valid, offsets, data);
        let input = view(&args)?;
        let col = py.allow_threads(|| self.inner.values(&input));
        ints(py, "i64", col.data, col.valid)
    }
}

/// Groups a block's rows by event (`rmapscope_core::text::partition`).
#[pyclass(frozen, module = "rmapscope._native")]
pub struct EventPartition {
    inner: Partitioner,
}

/// One group: (event name | None, row numbers as a u32 column, probe mask | None, the
/// group's rows of each column passed in).
type GroupOut = (Option<String>, PyObject, Option<PyObject>, Vec<PyObject>);

/// A column to gather: (kind i64/i32/str, rows, offset, validity | None, values or
/// offsets, string data | None).
type ColArgs = (
    String,
    usize,
    usize,
    Option<PyBuffer<i8>>,
    PyBuffer<i8>,
    Option<PyBuffer<i8>>,
);

enum Gathered {
    Fixed(&'static str, Vec<u8>, Validity),
    Str(rmapscope_core::text::columns::StrCol),
}

/// An [`Input`] ready to gather from: strings checked to be UTF-8 once for all groups.
enum Ready<'a> {
    Fixed(&'static str, Fixed<'a>),
    Str(Checked<'a>),
}

enum Input<'a> {
    Fixed(&'static str, Fixed<'a>),
    Str(Strings<'a>),
}

fn input(args: &ColArgs) -> PyResult<Input<'_>> {
    let (kind, len, offset, valid, values, data) = args;
    let validity = valid.as_ref().map(bytes_of).transpose()?;
    let width = match kind.as_str() {
        "i64" => Some(("i64", 8)),
        "i32" => Some(("i32", 4)),
        "str" => None,
        _ => {
            return Err(PyValueError::new_err(format!(
                "cannot gather a {kind:?} column"
            )))
        }
    };
    Ok(match (width, data) {
        (Some((k, width)), _) => Input::Fixed(
            k,
            Fixed {
                data: bytes_of(values)?,
                validity,
                offset: *offset,
                len: *len,
                width,
            },
        ),
        (None, Some(data)) => {
            if values.item_count() < (offset + len + 1) * 8 {
                return Err(PyValueError::new_err("offsets shorter than the rows"));
            }
            Input::Str(Strings {
                offsets: bytes_of(values)?,
                data: bytes_of(data)?,
                validity,
                offset: *offset,
                len: *len,
            })
        }
        (None, None) => return Err(PyValueError::new_err("a str column needs its data")),
    })
}

#[pymethods]
impl EventPartition {
    /// `probe`: the regex of a probe payload.
    #[new]
    fn new(probe: &str) -> PyResult<Self> {
        let inner = Partitioner::new(probe).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(EventPartition { inner })
    }

    /// The rows of each event, in order of first appearance (`event` and `rest`: the
    /// buffers of two `large_string` arrays of as many rows).
    fn partition(
        &self,
        py: Python<'_>,
        event: StrArgs,
        rest: StrArgs,
        columns: Vec<ColArgs>,
    ) -> PyResult<Vec<GroupOut>> {
        if event.0 != rest.0 || columns.iter().any(|c| c.1 != event.0) {
            return Err(PyValueError::new_err("the columns differ in length"));
        }
        let (ev, re) = (view(&event)?, view(&rest)?);
        let inputs = columns.iter().map(input).collect::<PyResult<Vec<_>>>()?;
        let groups = py.allow_threads(|| {
            let groups = self.inner.partition(&ev, &re);
            let inputs: Vec<_> = inputs
                .iter()
                .map(|c| match c {
                    Input::Fixed(kind, f) => Ready::Fixed(kind, *f),
                    Input::Str(s) => Ready::Str(s.checked()),
                })
                .collect();
            groups
                .into_iter()
                .map(|g| {
                    let cols: Vec<Gathered> = inputs
                        .iter()
                        .map(|c| match c {
                            Ready::Fixed(kind, f) => {
                                let (data, valid) = gather_fixed(f, &g.rows);
                                Gathered::Fixed(kind, data, valid)
                            }
                            Ready::Str(s) => Gathered::Str(gather_strings(s, &g.rows)),
                        })
                        .collect();
                    (g, cols)
                })
                .collect::<Vec<_>>()
        });
        groups
            .into_iter()
            .map(|(g, cols)| {
                let cols = cols
                    .into_iter()
                    .map(|c| match c {
                        Gathered::Fixed(kind, data, valid) => ints(py, kind, data, valid),
                        Gathered::Str(s) => strings(py, s),
                    })
                    .collect::<PyResult<Vec<_>>>()?;
                let n = g.rows.len();
                let mut data = Vec::with_capacity(n * 4);
                for r in &g.rows {
                    data.extend_from_slice(&r.to_le_bytes());
                }
                let all = Validity {
                    bits: Vec::new(),
                    len: n,
                    nulls: 0,
                };
                let rows = ints(py, "u32", data, all)?;
                let probe = g
                    .probe
                    .map(|mask| {
                        let all = Validity {
                            bits: Vec::new(),
                            len: mask.len,
                            nulls: 0,
                        };
                        ints(py, "bool", mask.bits, all)
                    })
                    .transpose()?;
                Ok((g.name, rows, probe, cols))
            })
            .collect()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<EventPartition>()?;
    m.add_class::<TokenPlan>()?;
    m.add_class::<RegexPlan>()?;
    m.add_class::<LabelTable>()
}
