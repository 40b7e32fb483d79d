//! Bytes that are not UTF-8, the rule of ``ingest/_bytes.py``: valid UTF-8 stays, every byte
//! of an invalid sequence becomes ``\xNN`` (lowercase hex), and a backslash of the input
//! followed by ``x`` and two hex digits becomes ``\x5c`` (so the rule is lossless).

use std::borrow::Cow;

fn literal_escape_at(raw: &[u8], i: usize) -> bool {
    raw[i] == b'\\'
        && i + 3 < raw.len()
        && raw[i + 1] == b'x'
        && raw[i + 2].is_ascii_hexdigit()
        && raw[i + 3].is_ascii_hexdigit()
}

/// Whether ``raw`` holds a ``\xNN`` of its own (then escaping changes it even when valid).
pub fn looks_escaped(raw: &[u8]) -> bool {
    memchr::memmem::find_iter(raw, b"\\x").any(|i| literal_escape_at(raw, i))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_valid(out: &mut Vec<u8>, chunk: &[u8]) {
    let mut start = 0;
    for i in memchr::memmem::find_iter(chunk, b"\\x") {
        if literal_escape_at(chunk, i) {
            out.extend_from_slice(&chunk[start..i]);
            out.extend_from_slice(b"\\x5c");
            start = i + 1;
        }
    }
    out.extend_from_slice(&chunk[start..]);
}

/// ``raw`` as UTF-8 text under the rule above; borrowed when nothing changes.
pub fn escape(raw: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(raw) {
        if !looks_escaped(raw) {
            return Cow::Borrowed(s);
        }
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 8);
    let mut rest = raw;
    loop {
        match std::str::from_utf8(rest) {
            Ok(_) => {
                push_valid(&mut out, rest);
                break;
            }
            Err(e) => {
                let good = e.valid_up_to();
                push_valid(&mut out, &rest[..good]);
                let bad = e.error_len().unwrap_or(rest.len() - good);
                for &b in &rest[good..good + bad] {
                    out.extend_from_slice(&[
                        b'\\',
                        b'x',
                        HEX[(b >> 4) as usize],
                        HEX[(b & 15) as usize],
                    ]);
                }
                rest = &rest[good + bad..];
            }
        }
    }
    // every byte pushed is ASCII or part of a valid sequence
    Cow::Owned(String::from_utf8(out).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule() {
        assert_eq!(escape(b"abc"), "abc");
        assert_eq!(escape(b"a\xffb"), "a\\xffb");
        assert_eq!(escape(b"\\x41"), "\\x5cx41");
        assert_eq!(escape(b"\\x4"), "\\x4");
        assert_eq!(escape(b"\xe2\x82a"), "\\xe2\\x82a");
        assert_eq!(escape("é\\xzz".as_bytes()), "é\\xzz");
        assert_eq!(escape(b"\xff\\x41"), "\\xff\\x5cx41");
    }
}
