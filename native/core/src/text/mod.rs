//! ftrace text: split a block of lines into the header columns of its event lines.
//!
//! Every text format of ``ingest/text.py`` (tracefs ``trace`` with or without flags, tgid or
//! latency-format, ``trace_pipe``, ``trace-cmd report`` incl. ``-l``/``-t``/instance
//! prefixes, ``perf script``, bpftrace). One line at a time: the ordinary tracefs and
//! trace-cmd line is cut at its delimiters ([`fast`]); any other line is matched against the
//! format's regex ([`Format::pattern`], the spec of each layout); a line neither takes is
//! left to the caller (markers, comments, stack frames, continuation lines, odd lines) by
//! its number and text.

pub mod columns;
pub mod escape;
mod fast;
pub mod fields;
pub mod partition;

use std::borrow::Cow;

use regex::{CaptureLocations, Regex};

use columns::{I32Col, I64Col, StrCol};

/// The text formats (``--format`` names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Tracefs,
    TracePipe,
    TracefsLatency,
    Tcreport,
    TcreportLatency,
    PerfScript,
    Bpftrace,
}

const REST: &str = r"(?P<event>[^:\s]+):\s?(?P<rest>[^\r\n]*)";
// perf event names (sys:name, cpu-clock, cpu/cycles/): no parens, so that
// "PERF_RECORD_FORK(1:1):(0:0)" is not read as event "1)" of system "PERF_RECORD_FORK(1". A
// sample event with modifiers ("cycles:u:", "cpu-clock:uH:") is one name, tried first: the
// modifier letters are perf's (tools/perf/util/parse-events.l).
const PERF_REST: &str = r"(?:(?P<sample>[\w./-]+:[ukhpPIGHSDWeb]+)|(?:(?P<sys>[\w./-]+):)?(?P<event>[\w./-]+)):\s?(?P<rest>[^\r\n]*)";
// a syscall exit, "sys_mbind -> 0x0": the event has no ":" after its name
const SYS_EXIT_REST: &str = r"(?P<sysexit>sys_\w+ -> \S+)\s*$";
const SYSCALL_ENTER: &str = r"^sys_(\w+)\((.*)\)$";
const SYSCALL_EXIT: &str = r"^sys_(\w+) -> (\S+)$";

const TRACEFS: &str = r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\((?:\s*(?P<tgid>\d+)|-+)\)\s+)?\[(?P<cpu>\d+)\]\s+(?:(?P<flags>[^\s\d]\S{3,6})\s+)?(?P<secs>\d+)(?:\.(?P<frac>\d+))?:\s";
const TRACEFS_LATENCY: &str =
    r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?P<cpu>\d+)(?P<flags>\S*)\s+(?P<secs>\d+)us.:\s";
const TCREPORT: &str = r"^\s*(?:(?P<instance>[^\s:]+): )?\s*(?P<comm>.*?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?:(?P<flags>[^\s\d]\S{3,6})\s+)?(?P<secs>\d+)(?:\.(?P<frac>\d+))?:\s+";
const TCREPORT_LATENCY: &str = r"^\s*(?:(?P<instance>[^\s:]+): )?\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?P<cpu>\d+)(?P<flags>\S*)\s+(?P<secs>\d+)(?:\.(?P<frac>\d+))?:\s+";
// perf script: "%16s %5d [%03d] %12s: " (or "%s " before a callchain, "%5d/%-5d" for
// pid/tid, %7d from perf 6.5), an optional period, then "sys:event:" right-aligned.
const PERF_SCRIPT: &str = r"^\s*(?P<comm>.*?)\s+(?:(?P<tgid>\d+)/)?(?P<pid>\d+)\s+(?:\[(?P<cpu>\d+)\]\s+)?(?P<secs>\d+)\.(?P<frac>\d+):\s+(?:(?P<period>\d+)\s+)?";
// bpftrace: what the script printfs, "<nsecs> [<cpu>] <comm>-<pid> <event>: <payload>".
const BPFTRACE: &str = r"^\s*(?P<secs>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<comm>.*?)-(?P<pid>\d+)\s+";

const MAX_NS: i64 = i64::MAX;

impl Format {
    /// The format of a ``--format`` name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "tracefs" => Format::Tracefs,
            "trace_pipe" => Format::TracePipe,
            "tracefs_latency" => Format::TracefsLatency,
            "tcreport" => Format::Tcreport,
            "tcreport_latency" => Format::TcreportLatency,
            "perf_script" => Format::PerfScript,
            "bpftrace" => Format::Bpftrace,
            _ => return None,
        })
    }

    /// The regex of an event line's header (up to the event name), with named groups
    /// ``instance comm pid tgid cpu flags secs frac period`` where the format has them.
    pub fn header_pattern(self) -> &'static str {
        match self {
            Format::Tracefs | Format::TracePipe => TRACEFS,
            Format::TracefsLatency => TRACEFS_LATENCY,
            Format::Tcreport => TCREPORT,
            Format::TcreportLatency => TCREPORT_LATENCY,
            Format::PerfScript => PERF_SCRIPT,
            Format::Bpftrace => BPFTRACE,
        }
    }

    /// The regex of a whole event line (header, event name, payload).
    pub fn pattern(self) -> String {
        let head = self.header_pattern();
        match self {
            Format::PerfScript => format!("{head}{PERF_REST}"),
            _ if self.syscalls() => format!("{head}(?:{REST}|{SYS_EXIT_REST})"),
            _ => format!("{head}{REST}"),
        }
    }

    /// tracefs prints syscall tracepoints as ``sys_mbind(start: 0x.., ...)`` and
    /// ``sys_mbind -> 0x0``: renamed to ``sys_enter_mbind`` / ``sys_exit_mbind``.
    fn syscalls(self) -> bool {
        matches!(
            self,
            Format::Tracefs | Format::TracePipe | Format::TracefsLatency
        )
    }

    /// trace-cmd pads event names: spaces before the payload are not part of it.
    fn padded(self) -> bool {
        matches!(self, Format::Tcreport | Format::TcreportLatency)
    }

    /// Whether ordinary lines take the delimiter fast path ([`fast`]).
    fn has_fast_path(self) -> bool {
        matches!(self, Format::Tracefs | Format::TracePipe | Format::Tcreport)
    }
}

/// The columns of one block's event lines (in line order), and the lines not taken.
#[derive(Default, Debug)]
pub struct Tokens {
    /// lines in the block
    pub lines: usize,
    pub lineno: I64Col,
    /// ns (``counter`` clocks: the raw count; latency-format: µs since the reset, in ns);
    /// null where the printed time does not fit in int64 ns
    pub ts: I64Col,
    pub cpu: I32Col,
    pub pid: I32Col,
    pub tgid: I32Col,
    pub comm: StrCol,
    pub flags: StrCol,
    pub event: StrCol,
    pub rest: StrCol,
    pub instance: StrCol,
    /// an event line printed a raw counter (no fraction, or trace-cmd's 12 digits)
    pub counter: bool,
    /// the lines no event was taken from: number and text (escaped, newline kept)
    pub other_lineno: I64Col,
    pub other_line: StrCol,
}

impl Tokens {
    fn with_capacity(rows: usize, bytes: usize) -> Self {
        Tokens {
            lines: 0,
            lineno: I64Col::with_capacity(rows),
            ts: I64Col::with_capacity(rows),
            cpu: I32Col::with_capacity(rows),
            pid: I32Col::with_capacity(rows),
            tgid: I32Col::with_capacity(rows),
            comm: StrCol::with_capacity(rows, rows * 12),
            flags: StrCol::with_capacity(rows, rows * 5),
            event: StrCol::with_capacity(rows, rows * 16),
            rest: StrCol::with_capacity(rows, bytes / 2),
            instance: StrCol::with_capacity(rows, 0),
            counter: false,
            other_lineno: I64Col::default(),
            other_line: StrCol::default(),
        }
    }
}

/// The header fields of one event line, as printed.
#[derive(Default, Debug)]
struct Row<'a> {
    comm: Option<&'a str>,
    pid: Option<&'a str>,
    tgid: Option<&'a str>,
    cpu: Option<&'a str>,
    flags: Option<&'a str>,
    secs: Option<&'a str>,
    frac: Option<&'a str>,
    instance: Option<&'a str>,
    event: Cow<'a, str>,
    rest: Option<Cow<'a, str>>,
}

/// Splits blocks of one text format (one per reader; shareable between threads).
pub struct Tokenizer {
    fmt: Format,
    line: Regex,
    enter: Regex,
    exit: Regex,
    groups: Groups,
}

#[derive(Default)]
struct Groups {
    comm: Option<usize>,
    pid: Option<usize>,
    tgid: Option<usize>,
    cpu: Option<usize>,
    flags: Option<usize>,
    secs: Option<usize>,
    frac: Option<usize>,
    instance: Option<usize>,
    event: Option<usize>,
    rest: Option<usize>,
    sample: Option<usize>,
    sys: Option<usize>,
    period: Option<usize>,
    sysexit: Option<usize>,
}

/// The value of ASCII digits (no sign; what a cast of the printed text gives): None for
/// an empty text, any other byte, or a value beyond int64. One pass, no `str::parse`
/// (which would accept a leading `+` and scan the text again).
fn digits_value(text: &[u8]) -> Option<i64> {
    if text.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &b in text {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(d))?;
    }
    Some(v)
}

/// The integer value of ASCII digits (see [`digits_value`]): None for anything else or a
/// value out of ``T``'s range.
fn int<T: TryFrom<i64>>(text: Option<&str>) -> Option<T> {
    T::try_from(digits_value(text?.as_bytes())?).ok()
}

impl Tokenizer {
    pub fn new(fmt: Format) -> Self {
        let line = Regex::new(&fmt.pattern()).expect("the line patterns compile");
        let mut groups = Groups::default();
        for (i, name) in line.capture_names().enumerate() {
            let slot = match name {
                Some("comm") => &mut groups.comm,
                Some("pid") => &mut groups.pid,
                Some("tgid") => &mut groups.tgid,
                Some("cpu") => &mut groups.cpu,
                Some("flags") => &mut groups.flags,
                Some("secs") => &mut groups.secs,
                Some("frac") => &mut groups.frac,
                Some("instance") => &mut groups.instance,
                Some("event") => &mut groups.event,
                Some("rest") => &mut groups.rest,
                Some("sample") => &mut groups.sample,
                Some("sys") => &mut groups.sys,
                Some("period") => &mut groups.period,
                Some("sysexit") => &mut groups.sysexit,
                _ => continue,
            };
            *slot = Some(i);
        }
        Tokenizer {
            fmt,
            line,
            enter: Regex::new(SYSCALL_ENTER).expect("compiles"),
            exit: Regex::new(SYSCALL_EXIT).expect("compiles"),
            groups,
        }
    }

    pub fn format(&self) -> Format {
        self.fmt
    }

    /// Split ``block`` (whole lines; its first line is number ``line_base + 1``).
    pub fn tokenize(&self, block: &[u8], line_base: i64) -> Tokens {
        let text = escape::escape(block);
        let text: &str = &text;
        let mut out = Tokens::with_capacity(
            memchr::memchr_iter(b'\n', text.as_bytes()).count() + 1,
            text.len(),
        );
        let mut locs = self.line.capture_locations();
        let mut start = 0;
        let mut n: i64 = 0;
        while start < text.len() {
            let end = memchr::memchr(b'\n', &text.as_bytes()[start..])
                .map_or(text.len(), |i| start + i + 1);
            let line = &text[start..end];
            start = end;
            n += 1;
            let row = if self.fmt.has_fast_path() && !line.starts_with('#') {
                fast::split(line, self.fmt.padded(), &self.exit, &self.enter)
            } else {
                None
            };
            let row = row.or_else(|| self.by_regex(line, &mut locs));
            match row {
                Some(row) => self.push(&mut out, line_base + n, row),
                None => {
                    out.other_lineno.push(Some(line_base + n));
                    out.other_line.push(Some(line));
                }
            }
        }
        out.lines = n as usize;
        out
    }

    fn by_regex<'a>(&self, line: &'a str, locs: &mut CaptureLocations) -> Option<Row<'a>> {
        self.line.captures_read(locs, line)?;
        let get = |g: Option<usize>| g.and_then(|i| locs.get(i)).map(|(a, b)| &line[a..b]);
        let g = &self.groups;
        let mut event = get(g.event);
        let raw_rest = get(g.rest);
        let mut rest = raw_rest.map(Cow::Borrowed);
        if self.fmt == Format::PerfScript {
            // perf samples (no "sys:"): the name with its modifiers, "period=N" before the
            // payload, spaces stripped; tracepoints keep name and payload
            let sample = get(g.sample);
            let is_sample = (get(g.sys).is_none() && event.is_some()) || sample.is_some();
            event = sample.or(event);
            if is_sample {
                let payload = raw_rest.map(str::trim);
                rest = match (get(g.period), payload) {
                    (Some(p), Some(t)) if !t.is_empty() => {
                        Some(Cow::Owned(format!("period={p} {t}")))
                    }
                    (Some(p), Some(_)) => Some(Cow::Owned(format!("period={p}"))),
                    (_, t) => t.map(Cow::Borrowed),
                };
            }
        }
        if self.fmt.syscalls() && event.is_none() {
            event = get(g.sysexit);
        }
        let event = event?;
        if self.fmt.padded() {
            rest = rest.map(|r| match r {
                Cow::Borrowed(s) => Cow::Borrowed(s.trim_start_matches(' ')),
                Cow::Owned(s) => Cow::Owned(s.trim_start_matches(' ').to_string()),
            });
        }
        Some(Row {
            comm: get(g.comm),
            pid: get(g.pid),
            tgid: get(g.tgid),
            cpu: get(g.cpu),
            flags: get(g.flags),
            secs: get(g.secs),
            frac: get(g.frac),
            instance: get(g.instance),
            event: Cow::Borrowed(event),
            rest,
        })
    }

    /// Exact int64 ns from the printed seconds and fraction, never through float.
    fn timestamp(&self, secs: Option<&str>, frac: Option<&str>) -> Option<i64> {
        let s: i64 = int(secs)?;
        match self.fmt {
            Format::TracefsLatency => (s < MAX_NS / 1000).then(|| s * 1000),
            Format::Bpftrace => Some(s),
            _ => match frac {
                None => Some(s),
                Some(f) => {
                    let n = f.len() as u32;
                    let v: i64 = int(Some(f))?;
                    if n == 12 && s < MAX_NS / 1_000_000_000_000 {
                        Some(s * 1_000_000_000_000 + v) // trace-cmd's %5llu.%012llu of a counter
                    } else if n <= 9 && s < MAX_NS / 1_000_000_000 {
                        Some(s * 1_000_000_000 + v * 10i64.pow(9 - n))
                    } else {
                        None
                    }
                }
            },
        }
    }

    fn push(&self, out: &mut Tokens, lineno: i64, mut row: Row<'_>) {
        if self.fmt.syscalls() && row.event.starts_with("sys_") {
            let body = match &row.rest {
                None => row.event.to_string(),
                Some(r) => format!("{}: {}", row.event, r),
            };
            if let Some(c) = self.enter.captures(&body) {
                row.event = Cow::Owned(format!("sys_enter_{}", &c[1]));
                row.rest = Some(Cow::Owned(c[2].to_string()));
            } else if let Some(c) = self.exit.captures(&body) {
                row.event = Cow::Owned(format!("sys_exit_{}", &c[1]));
                row.rest = Some(Cow::Owned(c[2].to_string()));
            }
        }
        if !matches!(
            self.fmt,
            Format::TracefsLatency | Format::Bpftrace | Format::PerfScript
        ) {
            out.counter |= match row.frac {
                None => true,
                Some(f) => f.len() == 12,
            };
        }
        out.lineno.push(Some(lineno));
        out.ts.push(self.timestamp(row.secs, row.frac));
        out.cpu.push(int(row.cpu));
        out.pid.push(int(row.pid));
        out.tgid.push(int(row.tgid));
        out.comm.push(row.comm);
        out.flags.push(row.flags);
        out.event.push(Some(&row.event));
        out.rest
            .push(row.rest.as_deref().map(|r| r.trim_end_matches('\r')));
        out.instance.push(row.instance);
    }
}

#[cfg(test)]
mod tests;
