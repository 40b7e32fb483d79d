//! The rows of a block by event (what ``partition_by("event", maintain_order=True)`` gave):
//! one group per event name in order of first appearance, its row numbers ascending, and
//! which of its payloads are probe payloads (``(func+0x0/0x1a0) key=..``, the pattern of
//! ``ingest/probes.py``), so that the caller takes each event's rows with one gather.

use std::collections::HashMap;

use regex::Regex;

use super::columns::{StrCol, Validity};
use super::fields::{Checked, Strings};

/// The rows of an Arrow array of fixed-width values (little-endian): values, validity
/// bitmap (None: no nulls), starting at row `offset` of the buffers.
#[derive(Clone, Copy, Debug)]
pub struct Fixed<'a> {
    pub data: &'a [u8],
    pub validity: Option<&'a [u8]>,
    pub offset: usize,
    pub len: usize,
    pub width: usize,
}

impl<'a> Fixed<'a> {
    /// Row `i`'s bytes (None for a null, or for buffers that do not hold it).
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        let j = self.offset + i;
        if let Some(bits) = self.validity {
            if bits.get(j / 8)? & (1 << (j % 8)) == 0 {
                return None;
            }
        }
        self.data.get(j * self.width..(j + 1) * self.width)
    }
}

/// Rows `rows` of `col`: values (zeros under a null) and validity.
pub fn gather_fixed(col: &Fixed<'_>, rows: &[u32]) -> (Vec<u8>, Validity) {
    let mut data = Vec::with_capacity(rows.len() * col.width);
    let mut valid = Validity::with_capacity(rows.len());
    let zeros = vec![0u8; col.width];
    for &r in rows {
        let v = col.get(r as usize);
        data.extend_from_slice(v.unwrap_or(&zeros));
        valid.push(v.is_some());
    }
    (data, valid)
}

/// Rows `rows` of `col` (checked once for all the gathers of a block's column).
pub fn gather_strings(col: &Checked<'_>, rows: &[u32]) -> StrCol {
    // sized first: growing the data buffer row by row copied it over and over
    let bytes = rows.iter().map(|&r| col.byte_len(r as usize)).sum();
    let mut out = StrCol::with_capacity(rows.len(), bytes);
    for &r in rows {
        out.push(col.get(r as usize));
    }
    out
}

/// The rows of one event.
#[derive(Debug, Clone)]
pub struct Group {
    /// the event name (None: rows without one)
    pub name: Option<String>,
    /// row numbers in the block, ascending
    pub rows: Vec<u32>,
    /// per row of the group, whether its payload is a probe's; None when none is
    pub probe: Option<Validity>,
}

/// Groups rows by event name; `probe` is the regex of a probe payload.
pub struct Partitioner {
    probe: Regex,
}

impl Partitioner {
    /// Fails when `probe` is no regex.
    pub fn new(probe: &str) -> Result<Self, regex::Error> {
        Ok(Partitioner {
            probe: Regex::new(probe)?,
        })
    }

    fn is_probe(&self, rest: &Strings<'_>, i: usize) -> bool {
        // a cheap prefix test on the bytes first: this runs on every event of a trace
        rest.bytes(i).is_some_and(|p| p.first() == Some(&b'('))
            && rest.get(i).is_some_and(|p| self.probe.is_match(p))
    }

    /// The groups of rows `0..event.len` (`rest`: the payloads, as many rows). Row numbers
    /// are u32: a block holds far fewer rows.
    pub fn partition(&self, event: &Strings<'_>, rest: &Strings<'_>) -> Vec<Group> {
        let mut index: HashMap<Option<&str>, usize> = HashMap::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut probes: Vec<Vec<u32>> = Vec::new(); // per group, positions of probe rows
        let names = event.checked();
        // most rows name the event of the row before (runs of one event): compared, not hashed
        let mut last: Option<(Option<&str>, usize)> = None;
        for i in 0..event.len {
            let name = names.get(i);
            let g = match last {
                Some((prev, g)) if prev == name => g,
                _ => {
                    let g = *index.entry(name).or_insert_with(|| {
                        groups.push(Group {
                            name: name.map(str::to_string),
                            rows: Vec::new(),
                            probe: None,
                        });
                        probes.push(Vec::new());
                        groups.len() - 1
                    });
                    last = Some((name, g));
                    g
                }
            };
            if self.is_probe(rest, i) {
                probes[g].push(groups[g].rows.len() as u32);
            }
            groups[g].rows.push(i as u32);
        }
        for (group, hits) in groups.iter_mut().zip(probes) {
            if hits.is_empty() {
                continue;
            }
            let mut mask = Validity::with_capacity(group.rows.len());
            let mut next = hits.iter().peekable();
            for j in 0..group.rows.len() as u32 {
                let hit = next.peek() == Some(&&j);
                if hit {
                    next.next();
                }
                mask.push(hit);
            }
            group.probe = Some(mask);
        }
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBE: &str =
        r"^\((?:[\w.]+\+0x[0-9a-fA-F]+/0x[0-9a-fA-F]+|[0-9a-fA-F]+)(?: <- [\w.]+)?\)(?:\s|$)";

    fn col(rows: &[Option<&str>]) -> StrCol {
        StrCol::from_rows(rows)
    }

    fn view(c: &StrCol) -> Strings<'_> {
        c.view()
    }

    #[test]
    fn groups_in_order_of_first_row() {
        let ev = col(&[Some("b"), Some("a"), Some("b"), None, Some("a"), Some("c")]);
        let rest = col(&[
            Some("x=1"),
            None,
            Some("(f+0x0/0x10) k=1"),
            None,
            Some("y"),
            None,
        ]);
        let p = Partitioner::new(PROBE).unwrap();
        let g = p.partition(&view(&ev), &view(&rest));
        let names: Vec<_> = g.iter().map(|g| g.name.as_deref()).collect();
        assert_eq!(names, [Some("b"), Some("a"), None, Some("c")]);
        assert_eq!(g[0].rows, [0, 2]);
        assert_eq!(g[1].rows, [1, 4]);
        assert_eq!(g[2].rows, [3]);
        assert_eq!(g[3].rows, [5]);
        let probe = g[0].probe.as_ref().expect("a probe row in b");
        assert_eq!((probe.get(0), probe.get(1), probe.len), (false, true, 2));
        assert!(g[1].probe.is_none() && g[3].probe.is_none());
    }

    #[test]
    fn runs_of_one_event_group_like_single_rows() {
        // the partition compares a row's name with the row before's before it hashes
        let names = [
            Some("a"),
            Some("a"),
            None,
            None,
            Some("b"),
            Some("a"),
            Some("a"),
            None,
            Some("b"),
            Some("b"),
        ];
        let ev = col(&names);
        let p = Partitioner::new(PROBE).unwrap();
        let g = p.partition(&view(&ev), &view(&ev));
        let got: Vec<_> = g
            .iter()
            .map(|g| (g.name.as_deref(), g.rows.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (Some("a"), vec![0, 1, 5, 6]),
                (None, vec![2, 3, 7]),
                (Some("b"), vec![4, 8, 9]),
            ]
        );
    }

    #[test]
    fn probe_payloads() {
        let p = Partitioner::new(PROBE).unwrap();
        let rows = col(&[
            Some("(do_x+0x0/0x1a0) a=0x1"),
            Some("(ffffffff812345a0)"),
            Some("(caller+0x4a/0x120 <- do_x) r=0"),
            Some("(done) 12"),
            Some("page=0x1"),
            None,
        ]);
        let probes: Vec<bool> = (0..6).map(|i| p.is_probe(&view(&rows), i)).collect();
        assert_eq!(probes, [true, true, true, false, false, false]);
        assert!(Partitioner::new("(").is_err());
    }

    #[test]
    fn gathers() {
        let s = col(&[Some("a"), None, Some("ccc"), Some("")]);
        let g = gather_strings(&view(&s).checked(), &[2, 1, 0, 3, 9]);
        let got: Vec<_> = (0..g.len()).map(|i| g.get(i)).collect();
        assert_eq!(got, [Some("ccc"), None, Some("a"), Some(""), None]);
        assert_eq!(g.data.capacity(), 4); // sized once: "ccc" and "a"
        let data: Vec<u8> = [5i32, 6, 7].iter().flat_map(|v| v.to_le_bytes()).collect();
        let bits = [0b101u8];
        let f = Fixed {
            data: &data,
            validity: Some(&bits),
            offset: 1,
            len: 2,
            width: 4,
        };
        assert_eq!(f.get(0), None); // row 1 of the buffers is null
        let (out, valid) = gather_fixed(&f, &[1, 0, 5]);
        assert_eq!(&out[..4], &7i32.to_le_bytes());
        assert_eq!(&out[4..], &[0u8; 8]);
        assert_eq!(
            (valid.get(0), valid.get(1), valid.get(2), valid.nulls),
            (true, false, false, 2)
        );
    }

    #[test]
    fn empty_block() {
        let ev = col(&[]);
        let p = Partitioner::new(PROBE).unwrap();
        assert!(p.partition(&view(&ev), &view(&ev)).is_empty());
    }
}
