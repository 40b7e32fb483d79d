//! The fast path: an ordinary tracefs / trace_pipe / trace-cmd event line,
//! ``<comm>-<pid> [(<tgid>)] [<cpu>] [<flags>] <secs>[.<frac>]: <event>: <payload>``, cut at
//! its delimiters instead of matched by the regex. Every tool prints the task as
//! ``%16s-%-Nd``: comm right-aligned in 16 columns, a dash, then the pid; comms may hold
//! dashes, spaces and digits, so the columns are what counts. A line that does not come out
//! clean (a comm that is wider once escaped or not ASCII, another layout) is left to the
//! regex.

use std::borrow::Cow;

use regex::Regex;

use super::Row;

/// ``s.split_once(": ")`` without a substring searcher per call.
fn split_colon_space(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    memchr::memchr_iter(b':', b)
        .find(|&i| b.get(i + 1) == Some(&b' '))
        .map(|i| (&s[..i], &s[i + 2..]))
}

/// The first ``byte`` of a short text (a header field: a plain loop beats a vectorised
/// search on a few bytes).
fn position(s: &str, byte: u8) -> Option<usize> {
    s.bytes().position(|b| b == byte)
}

fn digits(s: &str) -> bool {
    super::digits_value(s.as_bytes()).is_some()
}

/// ``line`` without its newline (or, on the last line of an input without one, its last
/// character), cut into header fields; None when it is not clean.
pub(super) fn split<'a>(
    line: &'a str,
    padded: bool,
    exit: &Regex,
    enter: &Regex,
) -> Option<Row<'a>> {
    let body = match line.strip_suffix('\n') {
        Some(b) => b,
        None => &line[..line.char_indices().next_back().map_or(0, |(i, _)| i)],
    };
    let (head, after) = split_colon_space(body)?;
    let (event, mut rest) = match split_colon_space(after) {
        Some((e, r)) => (e, Some(r)),
        None => (after, None),
    };
    if event.is_empty() {
        return None; // no event name: the regex decides (it wants one)
    }
    if padded {
        rest = rest.map(|r| r.trim_start_matches(' '));
    }
    let lb = memchr::memchr(b'[', head.as_bytes())?;
    let rb = memchr::memchr(b']', head.as_bytes())?;
    // columns count bytes, a comm is printed in characters: a non-ASCII one goes to the regex
    if rb <= lb || !head[..rb].is_ascii() {
        return None;
    }
    let left = &head[..lb];
    if left.len() < 17 || left.as_bytes()[16] != b'-' {
        return None;
    }
    let comm = left[..16].trim_start_matches(' ');
    let pid_on = &left[17..];
    let pid_end = position(pid_on, b' ')?;
    let pid = &pid_on[..pid_end];
    let tail = pid_on[pid_end..].trim_matches(' ');
    let tgid = if tail.is_empty() {
        None
    } else if tail.len() >= 2 && tail.starts_with('(') && tail.ends_with(')') {
        Some(tail.trim_matches(|c| c == '(' || c == ')' || c == ' '))
    } else {
        return None;
    };
    let cpu = &head[lb + 1..rb];
    let right = head[rb + 1..].trim_matches(' ');
    let (flags, ts) = match position(right, b' ') {
        None => (None, right),
        Some(sp) => (Some(&right[..sp]), right[sp + 1..].trim_start_matches(' ')),
    };
    let (secs, frac) = match position(ts, b'.') {
        None => (ts, None),
        Some(dot) => (&ts[..dot], Some(&ts[dot + 1..])),
    };
    if !digits(pid) || !digits(cpu) || !digits(secs) || !frac.is_none_or(digits) {
        return None;
    }
    // no space in the event name, except a syscall exit's "sys_mbind -> 0x0"; no payload
    // only for a syscall line
    if memchr::memchr(b' ', event.as_bytes()).is_some() && !(rest.is_none() && exit.is_match(event))
    {
        return None;
    }
    if rest.is_none() && !enter.is_match(event) && !exit.is_match(event) {
        return None;
    }
    Some(Row {
        comm: Some(comm),
        pid: Some(pid),
        tgid,
        cpu: Some(cpu),
        flags,
        secs: Some(secs),
        frac,
        instance: None,
        event: Cow::Borrowed(event),
        rest: rest.map(Cow::Borrowed),
    })
}
