//! Fixed-offset number fields of trace.dat records, every field of a batch of records in
//! one pass over them (the records of one event type lie in trace order through the batch
//! buffer, so a record's fields are read together while its bytes are in cache).

/// One field to read: byte offset in the record, size, signedness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub offset: usize,
    /// 1, 2, 4 or 8 give values of that width; other sizes give the first `min(size, 8)`
    /// bytes as a 64-bit value (0 is read as 4, like the formats' size-less fields).
    pub size: usize,
    pub signed: bool,
}

impl Field {
    /// Bytes per value in the output: the field's own width, or 8.
    pub fn width(&self) -> usize {
        match self.size {
            0 => 4,
            1 | 2 | 4 | 8 => self.size,
            _ => 8,
        }
    }

    fn bytes_read(&self) -> usize {
        if self.size == 0 {
            4
        } else {
            self.size.min(8)
        }
    }
}

/// The values of `fields` for the records at byte offsets `rec` of `buf`: per field, the
/// little-endian bytes of `rec.len()` values of [`Field::width`] bytes (`signed` only says
/// how the caller views them). Bytes past the buffer (or at a negative offset) read as 0.
pub fn read_fields(buf: &[u8], rec: &[i64], fields: &[Field], big_endian: bool) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = fields
        .iter()
        .map(|f| Vec::with_capacity(rec.len() * f.width()))
        .collect();
    // the bytes a record must have in the buffer for the fast path (no bounds to mind)
    let span = fields
        .iter()
        .map(|f| f.offset.saturating_add(f.bytes_read()))
        .max()
        .unwrap_or(0);
    for &r in rec {
        let whole = usize::try_from(r)
            .ok()
            .and_then(|r| buf.get(r..r.checked_add(span)?));
        for (f, col) in fields.iter().zip(out.iter_mut()) {
            let n = f.bytes_read();
            let o = f.offset;
            match (whole, n) {
                // fixed-size reads: the usual widths of records inside the buffer
                (Some(rb), 1) => col.push(rb[o]),
                (Some(rb), 2) => {
                    let b = [rb[o], rb[o + 1]];
                    let v = if big_endian {
                        u16::from_be_bytes(b)
                    } else {
                        u16::from_le_bytes(b)
                    };
                    col.extend_from_slice(&v.to_le_bytes());
                }
                (Some(rb), 4) => {
                    let b = [rb[o], rb[o + 1], rb[o + 2], rb[o + 3]];
                    let v = if big_endian {
                        u32::from_be_bytes(b)
                    } else {
                        u32::from_le_bytes(b)
                    };
                    col.extend_from_slice(&v.to_le_bytes());
                }
                (Some(rb), 8) => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&rb[o..o + 8]);
                    let v = if big_endian {
                        u64::from_be_bytes(b)
                    } else {
                        u64::from_le_bytes(b)
                    };
                    col.extend_from_slice(&v.to_le_bytes());
                }
                _ => {
                    let mut tmp = [0u8; 8];
                    if let Some(rb) = whole {
                        tmp[..n].copy_from_slice(&rb[o..o + n]);
                    } else if let Some(at) = usize::try_from(r).ok().and_then(|r| r.checked_add(o))
                    {
                        let end = at.saturating_add(n).min(buf.len());
                        if at < end {
                            tmp[..end - at].copy_from_slice(&buf[at..end]);
                        }
                    }
                    let v = if big_endian {
                        u64::from_be_bytes(tmp) >> (8 * (8 - n))
                    } else {
                        u64::from_le_bytes(tmp)
                    };
                    // (signed odd sizes keep their bits as read, like a view of the
                    // unsigned value)
                    col.extend_from_slice(&v.to_le_bytes()[..f.width()]);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(offset: usize, size: usize, signed: bool) -> Field {
        Field {
            offset,
            size,
            signed,
        }
    }

    #[test]
    fn widths_and_byte_orders() {
        let buf: Vec<u8> = (1..=16).collect();
        let cols = read_fields(&buf, &[0, 4], &[f(0, 2, false), f(1, 4, true)], false);
        assert_eq!(cols[0], vec![1, 2, 5, 6]);
        assert_eq!(cols[1], vec![2, 3, 4, 5, 6, 7, 8, 9]);
        let be = read_fields(&buf, &[0], &[f(0, 4, false), f(0, 3, false)], true);
        assert_eq!(be[0], 0x01020304u32.to_le_bytes().to_vec());
        assert_eq!(be[1], 0x010203u64.to_le_bytes().to_vec());
    }

    #[test]
    fn out_of_bounds_reads_zero() {
        let buf = [0xFFu8; 6];
        let cols = read_fields(
            &buf,
            &[4, -8, i64::MAX],
            &[f(0, 4, false), f(usize::MAX, 8, true)],
            false,
        );
        assert_eq!(cols[0], vec![0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(cols[1], vec![0; 24]);
    }

    #[test]
    fn size_zero_reads_four_bytes() {
        let buf = [1u8, 0, 0, 0, 9];
        assert_eq!(
            read_fields(&buf, &[0], &[f(0, 0, false)], false)[0],
            vec![1, 0, 0, 0]
        );
    }
}
