//! Decode a batch of trace.dat records, every event type at once: the records of all CPUs
//! merged into trace order, grouped by event type, and per type the header columns
//! gathered and every field read (numbers, NUL-terminated char arrays, `__data_loc` /
//! `__rel_loc` strings, inline tail arrays) into column vectors.
//!
//! The caller (the reader) has walked the pages and concatenated the records taken from
//! each CPU into one buffer ("cat" rows, each CPU's rows sorted by their merge key); what
//! it keeps in Python is what depends on the print fmt per distinct value (labels) and
//! the rare field kinds (stacks, `bprint`, non-char arrays, probes).

use std::borrow::Cow;

use super::fields::{read_fields, Field};
use crate::text::escape::escape;

/// Where a string field's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrLoc {
    /// `char name[size]` at `offset`.
    Fixed,
    /// `__data_loc`: a u32 at `offset`, `length << 16 | offset in the record`.
    DataLoc,
    /// `__rel_loc`: the same, the offset counted from the end of the u32.
    RelLoc,
    /// `char name[]` (no `__data_loc`): from `offset` to the record's end.
    Flexible,
}

/// One field of an event type to decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldSpec {
    Number(Field),
    Str {
        loc: StrLoc,
        offset: usize,
        size: usize,
    },
}

/// A decoded field: number values (little-endian, [`Field::width`] bytes each) or an
/// Arrow `large_string` array (validity bitmap only when some value is null).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Column {
    Numbers(Vec<u8>),
    Strings {
        offsets: Vec<i64>,
        data: Vec<u8>,
        validity: Option<Vec<u8>>,
        nulls: usize,
    },
}

/// A header column of the cat rows to gather per type: `width`-byte values.
pub struct Header<'a> {
    pub values: &'a [u8],
    pub width: usize,
}

/// Batches of fewer rows are grouped by a sort, not a counting sort over every u16 id.
const COUNTING_ROWS: usize = 1 << 12;
/// Batches of fewer rows are decoded on one thread.
const PARALLEL_ROWS: usize = 1 << 14;

/// The records of a batch, in cat order (see the module's note).
pub struct Records<'a> {
    pub buf: &'a [u8],
    pub rec: &'a [i64],
    pub rec_len: &'a [i32],
    /// The merge key of each row (non-decreasing within each CPU's rows).
    pub key: &'a [i64],
    pub ev_type: &'a [u32],
    /// Rows to drop (non-zero: records too short, unknown events), if any.
    pub drop: Option<&'a [u8]>,
    pub big_endian: bool,
}

/// One event type's rows of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeRows {
    pub ev_type: u32,
    /// Positions in trace order (the batch's `rel`).
    pub rel: Vec<i64>,
    /// Cat rows.
    pub rows: Vec<i64>,
    /// Record offsets and lengths of those rows.
    pub rec: Vec<i64>,
    pub rec_len: Vec<i32>,
    /// The header columns gathered, in the order given.
    pub headers: Vec<Vec<u8>>,
    /// The fields decoded (types with a spec), in the spec's order.
    pub columns: Vec<Column>,
}

/// The batch decoded: `order` (kept cat rows in trace order) and the rows of each event
/// type present, by ascending type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    pub order: Vec<i64>,
    pub types: Vec<TypeRows>,
}

/// Merge, group and decode `recs`; `spec(t)` gives the fields of type `t` (None: gather
/// its rows and headers only). Rows of equal keys keep their cat order (trace-cmd puts
/// ties in CPU order), so the merge is a stable sort of the kept rows by key.
pub fn decode_batch<'s>(
    recs: &Records<'_>,
    headers: &[Header<'_>],
    spec: impl Fn(u32) -> Option<&'s [FieldSpec]> + Sync,
) -> Decoded {
    let n = recs
        .rec
        .len()
        .min(recs.rec_len.len())
        .min(recs.key.len())
        .min(recs.ev_type.len());
    let mut order: Vec<i64> = (0..n)
        .filter(|&i| recs.drop.is_none_or(|d| d.get(i).is_some_and(|&x| x == 0)))
        .map(|i| i as i64)
        .collect();
    order.sort_by_key(|&i| recs.key[i as usize]);
    // positions in trace order, grouped by type (ascending)
    let ty = |pos: usize| recs.ev_type[order[pos] as usize];
    let mut groups: Vec<(u32, Vec<i64>)> = Vec::new();
    if order.len() >= COUNTING_ROWS && order.iter().all(|&i| recs.ev_type[i as usize] < 1 << 16) {
        // the usual ids in a big batch: a counting sort
        let mut slots: Vec<Vec<i64>> = vec![Vec::new(); 1 << 16];
        for pos in 0..order.len() {
            slots[ty(pos) as usize].push(pos as i64);
        }
        for (t, rel) in slots.into_iter().enumerate() {
            if !rel.is_empty() {
                groups.push((t as u32, rel));
            }
        }
    } else {
        let mut by_type: Vec<i64> = (0..order.len() as i64).collect();
        by_type.sort_by_key(|&pos| ty(pos as usize));
        for pos in by_type {
            let t = ty(pos as usize);
            match groups.last_mut() {
                Some((last, rel)) if *last == t => rel.push(pos),
                _ => groups.push((t, vec![pos])),
            }
        }
    }
    // the types on two threads (half the rows each): the work is per type
    let decode_type = |(ev_type, rel): (u32, Vec<i64>)| {
        let rows: Vec<i64> = rel.iter().map(|&p| order[p as usize]).collect();
        let rec: Vec<i64> = rows.iter().map(|&r| recs.rec[r as usize]).collect();
        let rec_len: Vec<i32> = rows.iter().map(|&r| recs.rec_len[r as usize]).collect();
        let headers = headers.iter().map(|h| gather(h, &rows)).collect();
        let columns = match spec(ev_type) {
            Some(fields) => decode_fields(recs.buf, &rec, &rec_len, fields, recs.big_endian),
            None => Vec::new(),
        };
        TypeRows {
            ev_type,
            rel,
            rows,
            rec,
            rec_len,
            headers,
            columns,
        }
    };
    let half = order.len() / 2;
    let mut split = 0;
    let mut acc = 0;
    while split < groups.len() && acc < half {
        acc += groups[split].1.len();
        split += 1;
    }
    let second = groups.split_off(split);
    let types = if order.len() < PARALLEL_ROWS || second.is_empty() || groups.is_empty() {
        groups.into_iter().chain(second).map(decode_type).collect()
    } else {
        std::thread::scope(|scope| {
            let other = scope.spawn(|| second.into_iter().map(&decode_type).collect::<Vec<_>>());
            let mut types: Vec<TypeRows> = groups.into_iter().map(&decode_type).collect();
            // (a panic of the other thread is re-raised here)
            types.extend(
                other
                    .join()
                    .unwrap_or_else(|e| std::panic::resume_unwind(e)),
            );
            types
        })
    };
    Decoded { order, types }
}

/// The distinct `values` in order of first appearance, and each value's index among
/// them: print-fmt labels are rendered once per distinct value.
pub fn distinct(values: &[u64]) -> (Vec<u64>, Vec<u32>) {
    let mut seen: std::collections::HashMap<u64, u32> = std::collections::HashMap::new();
    let mut uniq = Vec::new();
    let mut codes = Vec::with_capacity(values.len());
    let mut last: Option<(u64, u32)> = None; // runs of one value are common
    for &v in values {
        let code = match last {
            Some((lv, lc)) if lv == v => lc,
            _ => *seen.entry(v).or_insert_with(|| {
                uniq.push(v);
                (uniq.len() - 1) as u32
            }),
        };
        last = Some((v, code));
        codes.push(code);
    }
    (uniq, codes)
}

/// `h`'s values at `rows` (a row past its end reads as zeros).
fn gather(h: &Header<'_>, rows: &[i64]) -> Vec<u8> {
    match h.width {
        1 => gather_n::<1>(h.values, rows),
        2 => gather_n::<2>(h.values, rows),
        4 => gather_n::<4>(h.values, rows),
        8 => gather_n::<8>(h.values, rows),
        w => gather_any(h.values, w, rows),
    }
}

fn gather_n<const W: usize>(values: &[u8], rows: &[i64]) -> Vec<u8> {
    let items: &[[u8; W]] = values.as_chunks::<W>().0;
    let mut out = Vec::with_capacity(rows.len() * W);
    for &r in rows {
        out.extend_from_slice(
            &usize::try_from(r)
                .ok()
                .and_then(|r| items.get(r))
                .copied()
                .unwrap_or([0; W]),
        );
    }
    out
}

fn gather_any(values: &[u8], w: usize, rows: &[i64]) -> Vec<u8> {
    let h = Header { values, width: w };
    let mut out = Vec::with_capacity(rows.len() * w);
    for &r in rows {
        let lo = (r as usize).saturating_mul(w);
        match h.values.get(lo..lo.saturating_add(w)) {
            Some(v) => out.extend_from_slice(v),
            None => out.resize(out.len() + w, 0),
        }
    }
    out
}

/// The fields of records at `rec` (lengths `rec_len`) of `buf`.
pub fn decode_fields(
    buf: &[u8],
    rec: &[i64],
    rec_len: &[i32],
    fields: &[FieldSpec],
    big_endian: bool,
) -> Vec<Column> {
    // every number field in one pass over the records
    let numbers: Vec<Field> = fields
        .iter()
        .filter_map(|f| match f {
            FieldSpec::Number(x) => Some(*x),
            FieldSpec::Str { .. } => None,
        })
        .collect();
    let mut values = read_fields(buf, rec, &numbers, big_endian).into_iter();
    fields
        .iter()
        .map(|f| match *f {
            FieldSpec::Number(_) => Column::Numbers(values.next().unwrap_or_default()),
            FieldSpec::Str { loc, offset, size } => {
                strings(buf, rec, rec_len, loc, offset, size, big_endian)
            }
        })
        .collect()
}

/// The bytes of a string field of one record, or None (null) when it lies outside the
/// record: as the reader's `_bounds` computes them.
fn string_bounds(
    buf: &[u8],
    r: i64,
    len: i32,
    loc: StrLoc,
    offset: usize,
    size: usize,
    big_endian: bool,
) -> Option<(usize, usize)> {
    let r = usize::try_from(r).ok()?;
    // (i128: no sum of a hostile offset and size overflows)
    let len = i128::from(len);
    let (offset, size) = (offset as i128, size as i128);
    let (off, n) = match loc {
        StrLoc::Flexible => (offset, len - offset),
        StrLoc::Fixed => (offset, if offset + size > len { -1 } else { size }),
        StrLoc::DataLoc | StrLoc::RelLoc => {
            let at = r.checked_add(usize::try_from(offset).ok()?)?;
            let word = match buf.get(at..at.checked_add(4)?) {
                Some(b) => {
                    let b = [b[0], b[1], b[2], b[3]];
                    if big_endian {
                        u32::from_be_bytes(b)
                    } else {
                        u32::from_le_bytes(b)
                    }
                }
                None => 0,
            };
            let mut off = i128::from(word & 0xFFFF);
            let n = i128::from(word >> 16);
            if loc == StrLoc::RelLoc {
                off += offset + size;
            }
            (off, if off + n > len { -1 } else { n })
        }
    };
    if n < 0 {
        return None;
    }
    let start = r.checked_add(usize::try_from(off).ok()?)?;
    Some((start, usize::try_from(n).ok()?))
}

fn strings(
    buf: &[u8],
    rec: &[i64],
    rec_len: &[i32],
    loc: StrLoc,
    offset: usize,
    size: usize,
    big_endian: bool,
) -> Column {
    let n = rec.len();
    let mut offsets = Vec::with_capacity(n + 1);
    offsets.push(0i64);
    let mut data = Vec::new();
    let mut validity = vec![0u8; n.div_ceil(8)];
    let mut nulls = 0;
    for (i, (&r, &len)) in rec.iter().zip(rec_len).enumerate() {
        match string_bounds(buf, r, len, loc, offset, size, big_endian) {
            Some((start, count)) => {
                validity[i / 8] |= 1 << (i % 8);
                // the bytes in the buffer (a record lies in it; clamp all the same)
                let lo = start.min(buf.len());
                let hi = start.saturating_add(count).min(buf.len());
                let raw = &buf[lo..hi];
                let raw = match memchr::memchr(0, raw) {
                    Some(z) => &raw[..z],
                    None => raw,
                };
                match escape(raw) {
                    Cow::Borrowed(s) => data.extend_from_slice(s.as_bytes()),
                    Cow::Owned(s) => data.extend_from_slice(s.as_bytes()),
                }
            }
            None => nulls += 1,
        }
        offsets.push(data.len() as i64);
    }
    Column::Strings {
        offsets,
        data,
        validity: (nulls > 0).then_some(validity),
        nulls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(offset: usize, size: usize, signed: bool) -> FieldSpec {
        FieldSpec::Number(Field {
            offset,
            size,
            signed,
        })
    }

    /// Records of 16 bytes: u16 type, u16 pad, i32 pid, u32 data_loc, char[4].
    fn record(ty: u16, pid: i32, loc: u32, name: &[u8; 4]) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&ty.to_le_bytes());
        r.extend_from_slice(&[0, 0]);
        r.extend_from_slice(&pid.to_le_bytes());
        r.extend_from_slice(&loc.to_le_bytes());
        r.extend_from_slice(name);
        r
    }

    fn strs(c: &Column) -> Vec<Option<String>> {
        let Column::Strings {
            offsets,
            data,
            validity,
            ..
        } = c
        else {
            panic!("not strings");
        };
        (0..offsets.len() - 1)
            .map(|i| {
                let ok = validity
                    .as_ref()
                    .is_none_or(|v| v[i / 8] >> (i % 8) & 1 == 1);
                ok.then(|| {
                    String::from_utf8(data[offsets[i] as usize..offsets[i + 1] as usize].to_vec())
                        .unwrap()
                })
            })
            .collect()
    }

    #[test]
    fn merge_group_and_decode() {
        // two CPUs' rows (keys sorted within each), types 7 and 3
        let mut buf = Vec::new();
        buf.extend(record(7, 10, 2 << 16 | 12, b"a\xff\0\0"));
        buf.extend(record(3, 11, 0, b"cdef"));
        buf.extend(record(7, 12, 4 << 16 | 12, b"\\x41"));
        let rec = [0, 16, 32];
        let rec_len = [16, 16, 16];
        let key = [5, 9, 5]; // row 2 (second CPU) ties with row 0: after it
        let ev_type = [7, 3, 7];
        let ts: Vec<u8> = [100i64, 200, 300]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let recs = Records {
            buf: &buf,
            rec: &rec,
            rec_len: &rec_len,
            key: &key,
            ev_type: &ev_type,
            drop: None,
            big_endian: false,
        };
        let spec7 = [
            num(4, 4, true),
            FieldSpec::Str {
                loc: StrLoc::DataLoc,
                offset: 8,
                size: 4,
            },
            FieldSpec::Str {
                loc: StrLoc::Fixed,
                offset: 12,
                size: 4,
            },
        ];
        let out = decode_batch(
            &recs,
            &[Header {
                values: &ts,
                width: 8,
            }],
            |t| (t == 7).then_some(&spec7[..]),
        );
        assert_eq!(out.order, vec![0, 2, 1]);
        assert_eq!(out.types.len(), 2);
        let (t3, t7) = (&out.types[0], &out.types[1]);
        assert_eq!(
            (t3.ev_type, t3.rel.clone(), t3.rows.clone()),
            (3, vec![2], vec![1])
        );
        assert!(t3.columns.is_empty());
        assert_eq!((t7.rel.clone(), t7.rows.clone()), (vec![0, 1], vec![0, 2]));
        assert_eq!(t7.rec, vec![0, 32]);
        assert_eq!(
            t7.headers[0],
            [100i64, 300]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>()
        );
        assert_eq!(
            t7.columns[0],
            Column::Numbers([10i32, 12].iter().flat_map(|v| v.to_le_bytes()).collect())
        );
        assert_eq!(
            strs(&t7.columns[1]),
            vec![Some("a\\xff".into()), Some("\\x5cx41".into())]
        );
        assert_eq!(
            strs(&t7.columns[2]),
            vec![Some("a\\xff".into()), Some("\\x5cx41".into())]
        );
    }

    #[test]
    fn dropped_rows_and_strings_outside_the_record() {
        let mut buf = record(1, 1, 9 << 16 | 12, b"abcd"); // 9 bytes at 12: past the end
        buf.extend(record(1, 2, 0, b"wxyz"));
        let recs = Records {
            buf: &buf,
            rec: &[0, 16],
            rec_len: &[16, 14],
            key: &[1, 2],
            ev_type: &[1, 1],
            drop: Some(&[0, 0]),
            big_endian: false,
        };
        let spec = [
            FieldSpec::Str {
                loc: StrLoc::DataLoc,
                offset: 8,
                size: 4,
            },
            FieldSpec::Str {
                loc: StrLoc::Fixed,
                offset: 12,
                size: 4,
            },
            FieldSpec::Str {
                loc: StrLoc::Flexible,
                offset: 12,
                size: 0,
            },
            FieldSpec::Str {
                loc: StrLoc::RelLoc,
                offset: 8,
                size: 4,
            },
        ];
        let out = decode_batch(&recs, &[], |_| Some(&spec[..]));
        let t = &out.types[0];
        assert_eq!(strs(&t.columns[0]), vec![None, Some("".into())]);
        assert_eq!(strs(&t.columns[1]), vec![Some("abcd".into()), None]);
        assert_eq!(
            strs(&t.columns[2]),
            vec![Some("abcd".into()), Some("wx".into())]
        );
        assert_eq!(strs(&t.columns[3]), vec![None, Some("".into())]);
        let recs = Records {
            drop: Some(&[1, 0]),
            ..recs
        };
        let out = decode_batch(&recs, &[], |_| None);
        assert_eq!(out.order, vec![1]);
        assert_eq!(out.types[0].rows, vec![1]);
    }

    #[test]
    fn two_threads_give_the_types_in_order() {
        // enough rows for the parallel path: 3 types, keys interleaved
        let n = 3 * PARALLEL_ROWS;
        let mut buf = Vec::new();
        for i in 0..n {
            buf.extend(record((i % 3) as u16, i as i32, 0, b"abcd"));
        }
        let rec: Vec<i64> = (0..n as i64).map(|i| 16 * i).collect();
        let rec_len = vec![16; n];
        let key: Vec<i64> = (0..n as i64).collect();
        let ev_type: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
        let recs = Records {
            buf: &buf,
            rec: &rec,
            rec_len: &rec_len,
            key: &key,
            ev_type: &ev_type,
            drop: None,
            big_endian: false,
        };
        let spec = [num(4, 4, true)];
        let out = decode_batch(&recs, &[], |_| Some(&spec[..]));
        assert_eq!(
            out.types.iter().map(|t| t.ev_type).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        for t in &out.types {
            let want: Vec<u8> = (0..n as i32)
                .filter(|i| (*i % 3) as u32 == t.ev_type)
                .flat_map(|i| i.to_le_bytes())
                .collect();
            assert_eq!(t.columns[0], Column::Numbers(want));
        }
    }

    #[test]
    fn distinct_in_order_of_appearance() {
        let (uniq, codes) = distinct(&[5, 5, 2, 5, 9, 2]);
        assert_eq!(uniq, vec![5, 2, 9]);
        assert_eq!(codes, vec![0, 0, 1, 0, 2, 1]);
        assert_eq!(distinct(&[]), (vec![], vec![]));
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let buf = [0xFFu8; 40];
        let recs = Records {
            buf: &buf,
            rec: &[-5, 38, i64::MAX, 0],
            rec_len: &[i32::MAX, -3, 100, 40],
            key: &[3, 2, 1],
            ev_type: &[0, 1 << 20, 7, 1],
            drop: Some(&[0]),
            big_endian: true,
        };
        let spec = [
            num(usize::MAX, 8, false),
            FieldSpec::Str {
                loc: StrLoc::RelLoc,
                offset: usize::MAX - 2,
                size: usize::MAX,
            },
            FieldSpec::Str {
                loc: StrLoc::Flexible,
                offset: 30,
                size: 0,
            },
        ];
        let h = [0u8; 3];
        let out = decode_batch(
            &recs,
            &[Header {
                values: &h,
                width: 2,
            }],
            |_| Some(&spec[..]),
        );
        assert_eq!(out.order, vec![0]);
        assert_eq!(out.types[0].headers[0], vec![0, 0]);
        // ids past u16 (a hostile common_type of 4 bytes): grouped all the same
        let recs = Records { drop: None, ..recs };
        let out = decode_batch(&recs, &[], |_| None);
        assert_eq!(out.order, vec![2, 1, 0]);
        let ids: Vec<u32> = out.types.iter().map(|t| t.ev_type).collect();
        assert_eq!(ids, vec![0, 7, 1 << 20]);
        assert_eq!(out.types[2].rel, vec![1]);
    }
}
