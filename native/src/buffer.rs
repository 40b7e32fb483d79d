//! A byte buffer Python sees through the buffer protocol, so that `pyarrow.py_buffer`
//! wraps it (and `pyarrow.Array.from_buffers` builds columns on it) without a copy.

use std::ffi::{c_int, c_void};

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;

/// Read-only bytes owned by Rust: the values, offsets or validity bitmap of one column.
#[pyclass(frozen, module = "rmapscope._native")]
pub struct Buffer {
    data: Vec<u8>,
}

impl Buffer {
    pub fn from_bytes(data: Vec<u8>) -> Self {
        Buffer { data }
    }

    /// The little-endian bytes of `values` (Arrow's layout on every supported host).
    pub fn from_i64(values: &[i64]) -> Self {
        let mut data = Vec::with_capacity(values.len() * 8);
        for v in values {
            data.extend_from_slice(&v.to_le_bytes());
        }
        Buffer { data }
    }
}

#[pymethods]
impl Buffer {
    /// Pack Python ints as little-endian int64 values (a column built in Python).
    #[staticmethod]
    fn int64(values: Vec<i64>) -> Self {
        Buffer::from_i64(&values)
    }

    fn __len__(&self) -> usize {
        self.data.len()
    }

    /// # Safety
    /// The buffer protocol (PEP 3118): `view` is CPython's to fill; the memory it points
    /// at is owned by this frozen object, which the view keeps alive (`obj`).
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        if view.is_null() {
            return Err(PyBufferError::new_err("view is null"));
        }
        if (flags & ffi::PyBUF_WRITABLE) == ffi::PyBUF_WRITABLE {
            return Err(PyBufferError::new_err("the buffer is read-only"));
        }
        let data = &slf.get().data;
        (*view).obj = slf.clone().into_any().into_ptr();
        (*view).buf = data.as_ptr() as *mut c_void;
        (*view).len = data.len() as ffi::Py_ssize_t;
        (*view).readonly = 1;
        (*view).itemsize = 1;
        (*view).format = if (flags & ffi::PyBUF_FORMAT) == ffi::PyBUF_FORMAT {
            c"B".as_ptr() as *mut _
        } else {
            std::ptr::null_mut()
        };
        (*view).ndim = 1;
        (*view).shape = if (flags & ffi::PyBUF_ND) == ffi::PyBUF_ND {
            &mut (*view).len
        } else {
            std::ptr::null_mut()
        };
        (*view).strides = if (flags & ffi::PyBUF_STRIDES) == ffi::PyBUF_STRIDES {
            &mut (*view).itemsize
        } else {
            std::ptr::null_mut()
        };
        (*view).suboffsets = std::ptr::null_mut();
        (*view).internal = std::ptr::null_mut();
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}
