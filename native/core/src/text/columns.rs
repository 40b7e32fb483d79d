//! Column builders in Arrow's memory layout (little-endian values, validity bitmaps, string
//! offsets + data), so that the Python side wraps the vectors without a copy.

/// An Arrow validity bitmap (bit set = valid), built row by row.
#[derive(Default, Debug, Clone)]
pub struct Validity {
    pub bits: Vec<u8>,
    pub len: usize,
    pub nulls: usize,
}

impl Validity {
    pub fn with_capacity(rows: usize) -> Self {
        Validity {
            bits: Vec::with_capacity(rows / 8 + 1),
            len: 0,
            nulls: 0,
        }
    }

    pub fn push(&mut self, valid: bool) {
        if self.len.is_multiple_of(8) {
            self.bits.push(0);
        }
        if valid {
            let last = self.bits.len() - 1;
            self.bits[last] |= 1 << (self.len % 8);
        } else {
            self.nulls += 1;
        }
        self.len += 1;
    }

    pub fn get(&self, i: usize) -> bool {
        self.bits[i / 8] & (1 << (i % 8)) != 0
    }
}

/// A nullable integer column: values as little-endian bytes (0 under a null).
#[derive(Default, Debug, Clone)]
pub struct IntCol<const W: usize> {
    pub data: Vec<u8>,
    pub valid: Validity,
}

pub type I64Col = IntCol<8>;
pub type I32Col = IntCol<4>;

impl<const W: usize> IntCol<W> {
    pub fn with_capacity(rows: usize) -> Self {
        IntCol {
            data: Vec::with_capacity(rows * W),
            valid: Validity::with_capacity(rows),
        }
    }
}

impl I64Col {
    pub fn push(&mut self, v: Option<i64>) {
        self.data.extend_from_slice(&v.unwrap_or(0).to_le_bytes());
        self.valid.push(v.is_some());
    }

    pub fn get(&self, i: usize) -> Option<i64> {
        let b: [u8; 8] = self.data[i * 8..i * 8 + 8].try_into().ok()?;
        self.valid.get(i).then(|| i64::from_le_bytes(b))
    }
}

impl I32Col {
    pub fn push(&mut self, v: Option<i32>) {
        self.data.extend_from_slice(&v.unwrap_or(0).to_le_bytes());
        self.valid.push(v.is_some());
    }

    pub fn get(&self, i: usize) -> Option<i32> {
        let b: [u8; 4] = self.data[i * 4..i * 4 + 4].try_into().ok()?;
        self.valid.get(i).then(|| i32::from_le_bytes(b))
    }
}

/// A nullable UTF-8 column (Arrow ``large_string``: int64 offsets, one data buffer).
#[derive(Debug, Clone)]
pub struct StrCol {
    pub offsets: Vec<u8>,
    pub data: Vec<u8>,
    pub valid: Validity,
}

impl Default for StrCol {
    fn default() -> Self {
        StrCol {
            offsets: 0i64.to_le_bytes().to_vec(),
            data: Vec::new(),
            valid: Validity::default(),
        }
    }
}

impl StrCol {
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity((rows + 1) * 8);
        offsets.extend_from_slice(&0i64.to_le_bytes());
        StrCol {
            offsets,
            data: Vec::with_capacity(bytes),
            valid: Validity::with_capacity(rows),
        }
    }

    /// A column of the given rows (None: null).
    pub fn from_rows(rows: &[Option<&str>]) -> Self {
        let mut c = StrCol::with_capacity(rows.len(), 64);
        for r in rows {
            c.push(*r);
        }
        c
    }

    pub fn push(&mut self, s: Option<&str>) {
        if let Some(s) = s {
            self.data.extend_from_slice(s.as_bytes());
        }
        self.offsets
            .extend_from_slice(&(self.data.len() as i64).to_le_bytes());
        self.valid.push(s.is_some());
    }

    pub fn len(&self) -> usize {
        self.valid.len
    }

    pub fn is_empty(&self) -> bool {
        self.valid.len == 0
    }

    fn offset(&self, i: usize) -> usize {
        let b: [u8; 8] = self.offsets[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]);
        i64::from_le_bytes(b) as usize
    }

    /// Row ``i`` (None for a null); the data is valid UTF-8 by construction.
    pub fn get(&self, i: usize) -> Option<&str> {
        if !self.valid.get(i) {
            return None;
        }
        std::str::from_utf8(&self.data[self.offset(i)..self.offset(i + 1)]).ok()
    }
}
