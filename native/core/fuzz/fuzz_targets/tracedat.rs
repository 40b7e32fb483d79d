//! Fuzz the trace.dat page walk and the batch decode: the first byte picks the layout (page
//! size, byte order, long size, data offset), the rest are pages. Any input must walk or
//! give an error value, never panic; a walk's records must lie inside the pages' committed
//! data. The records walked are then decoded as one batch (`decode_batch`), their type the
//! record's first u16 (8 types), each type's fields read from the input's bytes (every
//! kind: numbers of all sizes, char arrays, `__data_loc`, `__rel_loc`, tail arrays): the
//! merge must be a stable sort of the kept rows, every column as long as its type's rows,
//! every string array well-formed UTF-8.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rmapscope_core::tracedat::batch::{decode_batch, Column, FieldSpec, Header, Records, StrLoc};
use rmapscope_core::tracedat::fields::Field;
use rmapscope_core::tracedat::pages::{walk, Layout};

/// Fields of a type, from 6 bytes of the input: (kind, offset, size) per byte pair.
fn spec_of(bytes: &[u8]) -> Vec<FieldSpec> {
    bytes
        .chunks(2)
        .map(|c| {
            let (k, o) = (c[0], usize::from(*c.get(1).unwrap_or(&0)));
            let size = [0, 1, 2, 4, 8, 3, 16, 5][usize::from(k >> 3 & 7)];
            match k % 5 {
                0 => FieldSpec::Number(Field {
                    offset: o,
                    size,
                    signed: k & 64 != 0,
                }),
                1 => FieldSpec::Str {
                    loc: StrLoc::Fixed,
                    offset: o,
                    size,
                },
                2 => FieldSpec::Str {
                    loc: StrLoc::DataLoc,
                    offset: o,
                    size: 4,
                },
                3 => FieldSpec::Str {
                    loc: StrLoc::RelLoc,
                    offset: o,
                    size: 4,
                },
                _ => FieldSpec::Str {
                    loc: StrLoc::Flexible,
                    offset: o,
                    size: 0,
                },
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, pages)) = data.split_first() else {
        return;
    };
    let page_size = [4096, 64, 128, 8192][usize::from(mode & 3)];
    let layout = Layout {
        page_size,
        big_endian: mode & 4 != 0,
        long_size: if mode & 8 != 0 { 4 } else { 8 },
        data_offset: if mode & 16 != 0 { 12 } else { 16 },
    };
    // a page count that may exceed the bytes given (the rest reads as zeros)
    let n_pages = pages.len().div_ceil(page_size) + usize::from(mode >> 5 & 1);
    let w = match walk(pages, n_pages, &layout) {
        Ok(w) => w,
        Err(e) => {
            assert!(e.page < n_pages.max(1));
            assert!(e.byte < page_size);
            let _ = e.message(page_size);
            return;
        }
    };
    let n = w.rec_off.len();
    assert!(w.rec_len.len() == n && w.raw_ts.len() == n);
    assert!(w.page.is_empty() || w.page.len() == n);
    assert_eq!(w.lost_pages.len(), w.lost_counts.len());
    for (&off, &len) in w.rec_off.iter().zip(&w.rec_len) {
        let off = usize::try_from(off).expect("offset >= 0");
        let len = usize::try_from(len).expect("length >= 0");
        let page = off / page_size;
        assert!(page < n_pages);
        assert!(off % page_size >= layout.data_offset);
        assert!(
            off % page_size + len <= page_size,
            "a record crosses its page"
        );
    }

    // the batch decode of the records walked
    let ev_type: Vec<u32> = w
        .rec_off
        .iter()
        .map(|&o| u32::from(pages.get(o as usize).copied().unwrap_or(0) & 7))
        .collect();
    // keys: the timestamps, made non-decreasing per half (two "CPUs")
    let half = n / 2;
    let mut key: Vec<i64> = w.raw_ts.iter().map(|&t| (t >> 1) as i64).collect();
    let (first, second) = key.split_at_mut(half);
    for part in [first, second] {
        for i in 1..part.len() {
            part[i] = part[i].max(part[i - 1]);
        }
    }
    let drop: Vec<u8> = w.rec_len.iter().map(|&l| u8::from(l < 8)).collect();
    let use_drop = mode & 64 != 0;
    let recs = Records {
        buf: pages,
        rec: &w.rec_off,
        rec_len: &w.rec_len,
        key: &key,
        ev_type: &ev_type,
        drop: use_drop.then_some(&drop[..]),
        big_endian: layout.big_endian,
    };
    let tail = &pages[pages.len().saturating_sub(48)..];
    let specs: Vec<Vec<FieldSpec>> = (0..8)
        .map(|t| spec_of(tail.get(t * 6..t * 6 + 6).unwrap_or(&[])))
        .collect();
    let ts: Vec<u8> = w.raw_ts.iter().flat_map(|t| t.to_le_bytes()).collect();
    let headers = [Header {
        values: &ts,
        width: 8,
    }];
    let out = decode_batch(&recs, &headers, |t| {
        (t % 3 != 2).then(|| specs[t as usize].as_slice())
    });
    let kept: Vec<usize> = (0..n).filter(|&i| !use_drop || drop[i] == 0).collect();
    assert_eq!(out.order.len(), kept.len());
    for pair in out.order.windows(2) {
        let (a, b) = (pair[0] as usize, pair[1] as usize);
        assert!(
            key[a] < key[b] || (key[a] == key[b] && a < b),
            "not a stable merge"
        );
    }
    let mut seen = vec![false; out.order.len()];
    for t in &out.types {
        let m = t.rel.len();
        assert!(m > 0 && t.rows.len() == m && t.rec.len() == m && t.rec_len.len() == m);
        assert_eq!(t.headers[0].len(), 8 * m);
        for (&p, &r) in t.rel.iter().zip(&t.rows) {
            assert!(!seen[p as usize]);
            seen[p as usize] = true;
            assert_eq!(out.order[p as usize], r);
            assert_eq!(ev_type[r as usize], t.ev_type);
        }
        let want = if t.ev_type % 3 != 2 {
            specs[t.ev_type as usize].len()
        } else {
            0
        };
        assert_eq!(t.columns.len(), want);
        for c in &t.columns {
            match c {
                Column::Numbers(v) => assert_eq!(v.len() % m, 0),
                Column::Strings {
                    offsets,
                    data,
                    validity,
                    nulls,
                } => {
                    assert_eq!(offsets.len(), m + 1);
                    assert!(offsets.windows(2).all(|p| p[0] <= p[1]));
                    assert_eq!(*offsets.last().unwrap() as usize, data.len());
                    assert!(std::str::from_utf8(data).is_ok());
                    assert_eq!(validity.is_some(), *nulls > 0);
                }
            }
        }
    }
    assert!(seen.iter().all(|&s| s));
});
