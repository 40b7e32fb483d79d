//! Fuzz the trace.dat page walk: the first byte picks the layout (page size, byte order,
//! long size, data offset), the rest are pages. Any input must walk or give an error value,
//! never panic; a walk's records must lie inside the pages' committed data.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rmapscope_core::tracedat::pages::{walk, Layout};

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
    match walk(pages, n_pages, &layout) {
        Ok(w) => {
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
        }
        Err(e) => {
            assert!(e.page < n_pages.max(1));
            assert!(e.byte < page_size);
            let _ = e.message(page_size);
        }
    }
});
