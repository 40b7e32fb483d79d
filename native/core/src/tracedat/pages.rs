//! Walk ring-buffer pages (sub-buffers) of a trace.dat CPU stream into record arrays.
//!
//! A page is `u64 timestamp, long commit, data[commit & (1<<27)-1]`; the data is a chain of
//! 4-byte-aligned entries whose first word holds `type_len:5, time_delta:27` (libtraceevent's
//! kbuffer-parse.c):
//!
//! * 1..28: a data record of `type_len * 4` bytes after the header word;
//! * 0: a data record whose length (+4) is in the next word (`array[0]`);
//! * 29: padding, `array[0]` bytes long; with `time_delta == 0` the rest of the page is padding;
//! * 30: time extend, `(array[0] << 27) | time_delta` added to the clock;
//! * 31: absolute time stamp, replacing the clock (its top 5 bits kept from the page's time).
//!
//! Padding deltas are added to the clock like trace-cmd (libtraceevent) does, so timestamps
//! match `trace-cmd report`. Every read is bounds-checked: a word beyond the buffer reads as
//! 0 (the Python caller pads groups with zeros, so this is what it saw before), and a corrupt
//! page is an error value naming the page and the byte in it.

/// The committed-size bits of a page header's `commit` word.
pub const COMMIT_MASK: u64 = (1 << 27) - 1;
/// `commit` flag: events were lost before this page.
pub const MISSING_EVENTS: u64 = 1 << 31;
/// `commit` flag: the number lost is stored (a long) right after the page's data.
pub const MISSING_STORED: u64 = 1 << 30;
const TS_MSB: u64 = 0xF8 << 56;

/// How to read a page: size, endianness, kernel long size and data offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub page_size: usize,
    pub big_endian: bool,
    pub long_size: usize,
    /// 16 on 64-bit kernels, 12 on 32-bit.
    pub data_offset: usize,
}

/// The data records of one group of pages, in page order.
///
/// `rec_off`/`rec_len`: byte offset (in the group buffer) and length of each record's
/// payload; `raw_ts`: its timestamp in clock units; `page`: its page index in the group
/// (filled only when some page reports lost events). `lost_pages`/`lost_counts`: pages whose
/// header says events were lost before them (count -1 when the page does not store it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Walked {
    pub rec_off: Vec<i64>,
    pub rec_len: Vec<i32>,
    pub raw_ts: Vec<u64>,
    pub page: Vec<i64>,
    pub lost_pages: Vec<i64>,
    pub lost_counts: Vec<i64>,
}

/// What is wrong with a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkErrorKind {
    /// The header's committed size does not fit the page.
    PageSize { size: u64 },
    /// An entry that cannot be walked (a length below 4, padding not a multiple of 4).
    Malformed,
    /// The last entry of the page runs past its committed data.
    Overrun,
}

/// A corrupt page: its index in the group and (for entries) the byte in the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkError {
    pub page: usize,
    pub byte: usize,
    pub kind: WalkErrorKind,
}

impl WalkError {
    /// The message after the page's description, as the reader has always worded it.
    pub fn message(&self, page_size: usize) -> String {
        match self.kind {
            WalkErrorKind::PageSize { size } => format!(
                "page header claims {size} bytes of data in a {page_size}-byte page: corrupt trace.dat"
            ),
            WalkErrorKind::Malformed => format!(
                "a malformed entry at byte {} of the page: corrupt trace.dat",
                self.byte
            ),
            WalkErrorKind::Overrun => format!(
                "an entry that overruns the page's data at byte {} of the page: corrupt trace.dat",
                self.byte
            ),
        }
    }
}

struct Words<'a> {
    buf: &'a [u8],
    big: bool,
}

impl Words<'_> {
    /// The 32-bit word at word index `i`; 0 past the buffer's end.
    #[inline]
    fn at(&self, i: usize) -> u32 {
        let lo = match i.checked_mul(4) {
            Some(lo) => lo,
            None => return 0,
        };
        match self.buf.get(lo..lo.saturating_add(4)) {
            Some(b) => {
                let b = [b[0], b[1], b[2], b[3]];
                if self.big {
                    u32::from_be_bytes(b)
                } else {
                    u32::from_le_bytes(b)
                }
            }
            None => 0,
        }
    }

    /// An entry header as `time_delta << 5 | type_len` whatever the byte order (a
    /// big-endian kernel puts type_len in the top 5 bits).
    #[inline]
    fn header(&self, i: usize) -> u32 {
        let w = self.at(i);
        if self.big {
            ((w & 0x07FF_FFFF) << 5) | (w >> 27)
        } else {
            w
        }
    }

    /// Two words `i`, `i + 1` as the u64 the kernel wrote.
    fn u64(&self, i: usize) -> u64 {
        let (lo, hi) = if self.big { (i + 1, i) } else { (i, i + 1) };
        u64::from(self.at(lo)) | (u64::from(self.at(hi)) << 32)
    }
}

/// The words entry `tl`/`a0`/`delta` takes, for the walk (`None`: it cannot be walked).
#[inline]
fn step(tl: u32, delta: u32, a0: u32, wps: usize) -> Option<usize> {
    let a0 = a0 as usize;
    let st = match tl {
        1..=28 => tl as usize + 1,
        0 => {
            if a0 < 4 {
                return None;
            }
            2 + (a0 - 4).div_ceil(4)
        }
        29 => {
            if delta == 0 {
                wps
            } else if !a0.is_multiple_of(4) {
                return None;
            } else {
                1 + a0 / 4
            }
        }
        _ => 2,
    };
    Some(st.min(wps))
}

/// Walk `n_pages` pages of `layout.page_size` bytes held in `buf`.
pub fn walk(buf: &[u8], n_pages: usize, layout: &Layout) -> Result<Walked, WalkError> {
    let ps = layout.page_size;
    let hdr = layout.data_offset;
    let words = Words {
        buf,
        big: layout.big_endian,
    };
    let wps = ps / 4;
    if ps < 4 || hdr >= ps {
        // (the reader rejects such a sub-buffer size before walking)
        return Err(WalkError {
            page: 0,
            byte: 0,
            kind: WalkErrorKind::PageSize { size: 0 },
        });
    }
    // pages past the buffer's end read as zeros: no data, no flags
    let n_pages = n_pages.min(buf.len().div_ceil(ps));
    // Page headers first: every page's size is checked before any entry.
    let mut commits = Vec::with_capacity(n_pages);
    for p in 0..n_pages {
        let pw = p * wps;
        let commit = if layout.long_size == 8 {
            u64::from(words.at(pw + if layout.big_endian { 3 } else { 2 }))
        } else {
            u64::from(words.at(pw + 2))
        };
        let size = commit & COMMIT_MASK;
        if size > (ps - hdr) as u64 {
            return Err(WalkError {
                page: p,
                byte: 8,
                kind: WalkErrorKind::PageSize { size },
            });
        }
        commits.push(commit);
    }
    let mut out = Walked::default();
    for (p, &commit) in commits.iter().enumerate() {
        if commit & MISSING_EVENTS == 0 {
            continue;
        }
        let size = (commit & COMMIT_MASK) as usize;
        let at = hdr + size; // the count is a long right after the data
        let mut count = -1i64;
        if commit & MISSING_STORED != 0 && at + layout.long_size <= ps && at.is_multiple_of(4) {
            let w = p * wps + at / 4;
            count = if layout.long_size == 8 {
                words.u64(w) as i64
            } else {
                i64::from(words.at(w))
            };
        }
        out.lost_pages.push(p as i64);
        out.lost_counts.push(count);
    }
    let want_pages = !out.lost_pages.is_empty();
    // Guess the capacity from the committed bytes (records are >= 8 bytes with the header).
    let total: u64 = commits.iter().map(|c| c & COMMIT_MASK).sum();
    let guess = (total / 16) as usize;
    out.rec_off.reserve(guess);
    out.rec_len.reserve(guess);
    out.raw_ts.reserve(guess);

    let mut malformed: Option<WalkError> = None;
    let mut overrun: Option<WalkError> = None;
    for (p, &commit) in commits.iter().enumerate() {
        let size = (commit & COMMIT_MASK) as usize;
        if size == 0 {
            continue;
        }
        let pw = p * wps;
        let ts0 = words.u64(pw);
        let start = pw + hdr / 4;
        let end = start + size.div_ceil(4);
        let mut pos = start;
        let mut clock = ts0;
        loop {
            let w = words.header(pos);
            let tl = w & 31;
            let delta = w >> 5;
            let special = tl == 0 || tl >= 29;
            let a0 = if special { words.at(pos + 1) } else { 0 };
            let st = step(tl, delta, a0, wps);
            // the clock
            match tl {
                30 => {
                    clock = clock
                        .wrapping_add(u64::from(delta))
                        .wrapping_add(u64::from(a0) << 27)
                }
                31 => clock = ((u64::from(a0) << 27) | u64::from(delta)) | (ts0 & TS_MSB),
                _ => clock = clock.wrapping_add(u64::from(delta)),
            }
            if st.is_none() && malformed.is_none() {
                malformed = Some(WalkError {
                    page: p,
                    byte: (pos - pw) * 4,
                    kind: WalkErrorKind::Malformed,
                });
            }
            let next = pos + st.unwrap_or(wps);
            let last = next >= end;
            if last && tl != 29 {
                // only the last entry of a page can run past its committed data
                let len = match tl {
                    0 => (2 + (i64::from(a0) - 4 + 3).div_euclid(4)) as usize,
                    30 | 31 => 2,
                    _ => tl as usize + 1,
                };
                if pos + len > end && overrun.is_none() {
                    overrun = Some(WalkError {
                        page: p,
                        byte: (pos - pw) * 4,
                        kind: WalkErrorKind::Overrun,
                    });
                }
            }
            if tl <= 28 && malformed.is_none() && overrun.is_none() {
                let (off, len) = if tl == 0 {
                    ((pos + 2) * 4, (a0 as usize - 4).div_ceil(4) * 4)
                } else {
                    ((pos + 1) * 4, tl as usize * 4)
                };
                out.rec_off.push(off as i64);
                out.rec_len.push(len as i32);
                out.raw_ts.push(clock);
                if want_pages {
                    out.page.push(p as i64);
                }
            }
            if last {
                break;
            }
            pos = next;
        }
    }
    if let Some(e) = malformed.or(overrun) {
        return Err(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: usize = 64;

    fn layout() -> Layout {
        Layout {
            page_size: PS,
            big_endian: false,
            long_size: 8,
            data_offset: 16,
        }
    }

    /// A page: timestamp, commit (size | flags) and the data words, zero-filled to PS.
    fn page(ts: u64, flags: u64, data: &[u32]) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&ts.to_le_bytes());
        p.extend_from_slice(&(flags | (data.len() as u64 * 4)).to_le_bytes());
        for w in data {
            p.extend_from_slice(&w.to_le_bytes());
        }
        p.resize(PS, 0);
        p
    }

    fn hdr(tl: u32, delta: u32) -> u32 {
        delta << 5 | tl
    }

    #[test]
    fn data_records_and_deltas() {
        let buf = page(1000, 0, &[hdr(2, 5), 0xAAAA, 0xBBBB, hdr(1, 7), 0xCCCC]);
        let w = walk(&buf, 1, &layout()).unwrap();
        assert_eq!(w.rec_off, vec![20, 32]);
        assert_eq!(w.rec_len, vec![8, 4]);
        assert_eq!(w.raw_ts, vec![1005, 1012]);
        assert!(w.page.is_empty() && w.lost_pages.is_empty());
    }

    #[test]
    fn type_zero_length_in_array0() {
        // length word 12 (+4 of itself): 8 bytes of payload after it
        let buf = page(0, 0, &[hdr(0, 3), 12, 1, 2]);
        let w = walk(&buf, 1, &layout()).unwrap();
        assert_eq!(
            (w.rec_off, w.rec_len, w.raw_ts),
            (vec![24], vec![8], vec![3])
        );
    }

    #[test]
    fn padding_counts_its_delta_and_rest_of_page() {
        // padding of 8 bytes (array[0] = 8) with a delta, then a record, then end-of-page
        // padding (delta 0)
        let buf = page(100, 0, &[hdr(29, 4), 8, 0, hdr(1, 1), 9, hdr(29, 0), 0]);
        let w = walk(&buf, 1, &layout()).unwrap();
        assert_eq!(w.rec_off, vec![32]);
        assert_eq!(w.raw_ts, vec![105]);
    }

    #[test]
    fn time_extend_and_absolute_stamp() {
        let ts0 = 0xF800_0000_0000_0000u64 | 10;
        let buf = page(
            ts0,
            0,
            &[hdr(30, 1), 2, hdr(1, 1), 7, hdr(31, 5), 3, hdr(1, 2), 8],
        );
        let w = walk(&buf, 1, &layout()).unwrap();
        let after_ext = ts0 + 1 + (2 << 27) + 1;
        let abs = ((3u64 << 27) | 5) | (ts0 & TS_MSB);
        assert_eq!(w.raw_ts, vec![after_ext, abs + 2]);
    }

    #[test]
    fn missing_events_with_and_without_count() {
        let mut buf = page(0, MISSING_EVENTS | MISSING_STORED, &[hdr(1, 1), 5]);
        buf[24..32].copy_from_slice(&42u64.to_le_bytes()); // the count after the data
        buf.extend(page(0, MISSING_EVENTS, &[hdr(1, 1), 6]));
        buf.extend(page(0, 0, &[hdr(1, 1), 7]));
        let w = walk(&buf, 3, &layout()).unwrap();
        assert_eq!(w.lost_pages, vec![0, 1]);
        assert_eq!(w.lost_counts, vec![42, -1]);
        assert_eq!(w.page, vec![0, 1, 2]);
        assert_eq!(w.rec_off, vec![20, PS as i64 + 20, 2 * PS as i64 + 20]);
    }

    #[test]
    fn commit_beyond_page() {
        let mut buf = page(0, 0, &[]);
        buf.extend(page(0, 0, &[]));
        buf[PS + 8..PS + 16].copy_from_slice(&(PS as u64 - 15).to_le_bytes());
        let e = walk(&buf, 2, &layout()).unwrap_err();
        assert_eq!(e.page, 1);
        assert_eq!(
            e.kind,
            WalkErrorKind::PageSize {
                size: PS as u64 - 15
            }
        );
        assert!(e
            .message(PS)
            .starts_with("page header claims 49 bytes of data in a 64-byte"));
    }

    #[test]
    fn overrun_at_the_end_of_data() {
        // a 3-word record with only 2 words committed
        let buf = page(0, 0, &[hdr(1, 1), 5, hdr(2, 1)]);
        let e = walk(&buf, 1, &layout()).unwrap_err();
        assert_eq!((e.page, e.byte, e.kind), (0, 24, WalkErrorKind::Overrun));
    }

    #[test]
    fn malformed_beats_an_earlier_overrun() {
        let mut buf = page(0, 0, &[hdr(2, 1)]); // overruns
        buf.extend(page(0, 0, &[hdr(0, 1), 2])); // length 2 < 4
        let e = walk(&buf, 2, &layout()).unwrap_err();
        assert_eq!((e.page, e.byte, e.kind), (1, 16, WalkErrorKind::Malformed));
        let buf = page(0, 0, &[hdr(29, 1), 6, 0]); // padding not a multiple of 4
        assert_eq!(
            walk(&buf, 1, &layout()).unwrap_err().kind,
            WalkErrorKind::Malformed
        );
    }

    #[test]
    fn truncated_group_reads_zeros() {
        let mut buf = page(0, 0, &[hdr(1, 1), 5, hdr(1, 1), 6]);
        buf.truncate(26); // the second record's words are gone: they read as 0 (type 0,
                          // length 0), a malformed entry
        let e = walk(&buf, 1, &layout()).unwrap_err();
        assert_eq!((e.page, e.byte, e.kind), (0, 24, WalkErrorKind::Malformed));
        assert!(walk(&[], 4, &layout()).unwrap().rec_off.is_empty());
    }

    #[test]
    fn big_endian_pages() {
        let l = Layout {
            big_endian: true,
            ..layout()
        };
        let mut p = Vec::new();
        p.extend_from_slice(&500u64.to_be_bytes());
        p.extend_from_slice(&8u64.to_be_bytes());
        p.extend_from_slice(&((1u32 << 27) | 3).to_be_bytes()); // type_len 1, delta 3
        p.extend_from_slice(&9u32.to_be_bytes());
        p.resize(PS, 0);
        let w = walk(&p, 1, &l).unwrap();
        assert_eq!(
            (w.rec_off, w.rec_len, w.raw_ts),
            (vec![20], vec![4], vec![503])
        );
    }

    #[test]
    fn hostile_layouts_do_not_panic() {
        let buf = vec![0xFFu8; 256];
        for ps in [0, 1, 4, 12, 16, 17, 64] {
            for hdr in [0, 12, 16, 100] {
                for long_size in [4, 8] {
                    let l = Layout {
                        page_size: ps,
                        big_endian: false,
                        long_size,
                        data_offset: hdr,
                    };
                    let _ = walk(&buf, 8, &l);
                }
            }
        }
    }
}
