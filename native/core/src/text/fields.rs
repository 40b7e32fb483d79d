//! Typed fields of an event's payload (stage 3 of ``ingest/fields.py``).
//!
//! An event whose print fmt is space-separated ``prefix%vsuffix`` tokens (its *token plan*,
//! see ``_token_plan`` in ``ingest/fields.py``) is cut at spaces and each value converted:
//! ``int`` to int64, ``hex``/``ptr`` to uint64, ``bool`` through its choices, labels
//! (``symbolic``, ``flags``) kept as text. A row parses when every token is there with its
//! prefix, suffix and a number where one belongs; the caller retries the others by regex.
//! [`Labels`] turns a printed label back into the integer it stands for (``<field>_raw``).
//!
//! The rules are those of the polars expressions they replace, value for value, including
//! the values of rows that do not parse (the caller may merge them with a fallback's).

use std::borrow::Cow;
use std::collections::HashMap;

use super::columns::{I64Col, StrCol, Validity};

/// How a token's value is converted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conv {
    /// ``%d``: decimal, spaces around it stripped, to int64
    Int,
    /// ``%x``, ``%lx``, ``%p``: hexadecimal (an optional ``0x``) to uint64
    Hex,
    /// ``cond ? "a" : "b"``: true for `truth`, false for the other choices, else null
    Bool { choices: Vec<String>, truth: String },
    /// ``__print_symbolic``, ``__print_flags``: the text, trailing spaces stripped
    Label,
}

/// One space-separated piece of the print fmt: literal text, or ``prefix%vsuffix``.
#[derive(Clone, Debug)]
pub struct Token {
    pub prefix: String,
    /// None: the token is literal text (`prefix`)
    pub conv: Option<Conv>,
    pub suffix: String,
    /// the characters in `prefix`
    chars: usize,
}

impl Token {
    pub fn new(prefix: String, conv: Option<Conv>, suffix: String) -> Self {
        let chars = prefix.chars().count();
        Token {
            prefix,
            conv,
            suffix,
            chars,
        }
    }
}

/// A nullable column of parsed values.
#[derive(Debug, Clone)]
pub enum Column {
    I64(I64Col),
    U64(I64Col),
    /// values bitmap, validity
    Bool(Validity, Validity),
    Str(StrCol),
}

impl Column {
    fn new(conv: &Conv, rows: usize, bytes: usize) -> Self {
        match conv {
            Conv::Int => Column::I64(I64Col::with_capacity(rows)),
            Conv::Hex => Column::U64(I64Col::with_capacity(rows)),
            Conv::Bool { .. } => {
                Column::Bool(Validity::with_capacity(rows), Validity::with_capacity(rows))
            }
            Conv::Label => Column::Str(StrCol::with_capacity(rows, bytes)),
        }
    }

    fn push_null(&mut self) {
        match self {
            Column::I64(c) => c.push(None),
            Column::U64(c) => push_u64(c, None),
            Column::Bool(v, valid) => {
                v.push(false);
                valid.push(false);
            }
            Column::Str(c) => c.push(None),
        }
    }
}

fn push_u64(c: &mut I64Col, v: Option<u64>) {
    c.data.extend_from_slice(&v.unwrap_or(0).to_le_bytes());
    c.valid.push(v.is_some());
}

/// The rows of an Arrow ``large_string`` array: int64 offsets, UTF-8 data, a validity
/// bitmap (None: no nulls), starting at row `offset` of the buffers.
#[derive(Clone, Copy, Debug)]
pub struct Strings<'a> {
    pub offsets: &'a [u8],
    pub data: &'a [u8],
    pub validity: Option<&'a [u8]>,
    pub offset: usize,
    pub len: usize,
}

impl StrCol {
    /// The column's rows as the core's string arrays read them.
    pub fn view(&self) -> Strings<'_> {
        Strings {
            offsets: &self.offsets,
            data: &self.data,
            validity: Some(&self.valid.bits),
            offset: 0,
            len: self.len(),
        }
    }
}

impl<'a> Strings<'a> {
    fn at(&self, i: usize) -> Option<usize> {
        let b = self.offsets.get(i * 8..i * 8 + 8)?;
        usize::try_from(i64::from_le_bytes(b.try_into().ok()?)).ok()
    }

    /// Where row `i` is in `data` (None for a null, or for buffers that do not hold it).
    fn range(&self, i: usize) -> Option<(usize, usize)> {
        let j = self.offset + i;
        if let Some(bits) = self.validity {
            if bits.get(j / 8)? & (1 << (j % 8)) == 0 {
                return None;
            }
        }
        Some((self.at(j)?, self.at(j + 1)?))
    }

    /// Row `i` (None for a null, or for buffers that do not hold it).
    pub fn get(&self, i: usize) -> Option<&'a str> {
        let (start, end) = self.range(i)?;
        std::str::from_utf8(self.data.get(start..end)?).ok()
    }

    /// Row `i`'s bytes, whether UTF-8 or not (None as for [`Strings::get`]).
    pub fn bytes(&self, i: usize) -> Option<&'a [u8]> {
        let (start, end) = self.range(i)?;
        self.data.get(start..end)
    }

    /// The rows with their data checked to be UTF-8 once, not row by row.
    pub fn checked(&self) -> Checked<'a> {
        Checked {
            rows: *self,
            text: std::str::from_utf8(self.data).ok(),
        }
    }
}

/// [`Strings`] whose data was checked to be UTF-8 as a whole: [`Checked::get`] is
/// [`Strings::get`] without checking each row again.
#[derive(Clone, Copy, Debug)]
pub struct Checked<'a> {
    pub rows: Strings<'a>,
    /// the data as text (None: not UTF-8 as a whole, so rows are checked one by one)
    text: Option<&'a str>,
}

impl<'a> Checked<'a> {
    /// Row `i`, as [`Strings::get`] has it.
    pub fn get(&self, i: usize) -> Option<&'a str> {
        match self.text {
            Some(text) => {
                let (start, end) = self.rows.range(i)?;
                text.get(start..end)
            }
            None => self.rows.get(i),
        }
    }

    /// How many bytes row `i` holds (0 for a null), without reading them.
    pub fn byte_len(&self, i: usize) -> usize {
        self.rows
            .range(i)
            .map_or(0, |(start, end)| end.saturating_sub(start))
    }
}

/// What [`split_tokens`] returns: one column per value token (in plan order) and whether
/// each row parsed.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub columns: Vec<Column>,
    pub ok: Validity,
}

/// `text` with every run of spaces made one (``str.replace_all(" +", " ")``).
fn squeeze(text: &str) -> Cow<'_, str> {
    if !text.contains("  ") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for ch in text.chars() {
        if ch == ' ' && space {
            continue;
        }
        space = ch == ' ';
        out.push(ch);
    }
    Cow::Owned(out)
}

/// `s` without its first `n` characters (``str.slice(n)``).
fn skip_chars(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((at, _)) => &s[at..],
        None => "",
    }
}

/// ``text.splitn(n, ' ')``, searching with the memchr crate (core's search is a byte loop
/// on short texts, a fifth of the plan's time).
struct SpaceSplit<'a> {
    rest: Option<&'a str>,
    left: usize,
}

impl<'a> SpaceSplit<'a> {
    fn new(text: &'a str, n: usize) -> Self {
        SpaceSplit {
            rest: Some(text),
            left: n,
        }
    }
}

impl<'a> Iterator for SpaceSplit<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        if self.left == 0 {
            self.rest = None;
            return None;
        }
        self.left -= 1;
        match memchr::memchr(b' ', rest.as_bytes()).filter(|_| self.left > 0) {
            Some(at) => {
                self.rest = Some(&rest[at + 1..]);
                Some(&rest[..at])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// ``v.trim_matches(' ').parse::<i64>()``: plain digits by the tokenizer's one-pass
/// [`super::digits_value`], anything else (a sign, a value beyond int64) by `str::parse`.
fn parse_int(v: &str) -> Option<i64> {
    let b = v.as_bytes();
    let t = if b.first() == Some(&b' ') || b.last() == Some(&b' ') {
        v.trim_matches(' ')
    } else {
        v
    };
    super::digits_value(t.as_bytes()).or_else(|| t.parse::<i64>().ok())
}

/// ``u64::from_str_radix(v without "0x", 16)``: up to 16 hex digits directly, anything else
/// (a sign, more digits) by `from_str_radix` itself.
fn parse_hex(v: &str) -> Option<u64> {
    let t = v.strip_prefix("0x").unwrap_or(v);
    let d = t.as_bytes();
    if !d.is_empty() && d.len() <= 16 {
        let mut x: u64 = 0;
        let mut plain = true;
        for &c in d {
            let n = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => {
                    plain = false;
                    break;
                }
            };
            x = x << 4 | u64::from(n);
        }
        if plain {
            return Some(x);
        }
    }
    u64::from_str_radix(t, 16).ok()
}

/// Cut the payloads `rows` at spaces by the plan `tokens`; `padded`: squeeze runs of
/// spaces first (a fmt that pads a value, ``%-8s``).
pub fn split_tokens(tokens: &[Token], padded: bool, rows: &Strings<'_>) -> Parsed {
    let bytes = rows.data.len() / tokens.len().max(1);
    let mut columns: Vec<Column> = tokens
        .iter()
        .filter_map(|t| t.conv.as_ref().map(|c| Column::new(c, rows.len, bytes)))
        .collect();
    let mut ok = Validity::with_capacity(rows.len);
    let n = tokens.len();
    let checked = rows.checked();
    for i in 0..rows.len {
        let Some(text) = checked.get(i) else {
            columns.iter_mut().for_each(Column::push_null);
            ok.push(false);
            continue;
        };
        let text = if padded {
            squeeze(text)
        } else {
            Cow::Borrowed(text)
        };
        let mut parts = SpaceSplit::new(&text, n.max(1));
        let mut good = true;
        let mut col = 0;
        for (k, tok) in tokens.iter().enumerate() {
            let f = parts.next();
            let Some(conv) = &tok.conv else {
                good &= f == Some(tok.prefix.as_str());
                continue;
            };
            let column = &mut columns[col];
            col += 1;
            let Some(f) = f else {
                column.push_null();
                good = false;
                continue;
            };
            let starts = f.starts_with(tok.prefix.as_str());
            let mut v = match f.get(tok.prefix.len()..) {
                Some(v) if starts => v,
                _ => skip_chars(f, tok.chars),
            };
            if !tok.suffix.is_empty() {
                good &= f.ends_with(tok.suffix.as_str());
                v = v.strip_suffix(tok.suffix.as_str()).unwrap_or(v);
            }
            if k == n - 1 {
                good &= memchr::memchr(b' ', f.as_bytes()).is_none();
            }
            good &= starts;
            good &= convert(conv, column, v);
        }
        ok.push(good);
    }
    Parsed { columns, ok }
}

/// Converts one printed value by `conv` into `column` (the rules of [`split_tokens`]);
/// whether it was a number where one belongs.
fn convert(conv: &Conv, column: &mut Column, v: &str) -> bool {
    match (conv, column) {
        (Conv::Int, Column::I64(c)) => {
            let x = parse_int(v);
            c.push(x);
            x.is_some()
        }
        (Conv::Hex, Column::U64(c)) => {
            let x = parse_hex(v);
            push_u64(c, x);
            x.is_some()
        }
        (Conv::Bool { choices, truth }, Column::Bool(values, valid)) => {
            let known = choices.iter().any(|c| c == v);
            values.push(known && v == truth);
            valid.push(known);
            true
        }
        (Conv::Label, Column::Str(c)) => {
            c.push(Some(v.trim_end_matches(' ')));
            true
        }
        (_, c) => {
            c.push_null(); // not built so: Column::new follows the conversion
            true
        }
    }
}

/// An event without a token plan: its print fmt's regex (named groups, one per field; the
/// regex ``ingest/fields.py`` gives polars' ``str.extract_groups``) and the conversion of
/// each field's group, as ``_convert`` of ``ingest/fields.py`` has them (values of rows that
/// do not match are null). A row parses when the regex matches with a group taking part.
#[derive(Clone, Debug)]
pub struct RegexPlan {
    regex: regex::Regex,
    /// (capture group index, conversion) per field column, in column order
    fields: Vec<(usize, Conv)>,
}

impl RegexPlan {
    /// Fails when `pattern` is no regex or names no group of a column.
    pub fn new(pattern: &str, columns: Vec<(String, Conv)>) -> Result<Self, String> {
        let regex = regex::Regex::new(pattern).map_err(|e| e.to_string())?;
        let fields = columns
            .into_iter()
            .map(|(name, conv)| {
                let at = regex.capture_names().position(|n| n == Some(name.as_str()));
                at.map(|i| (i, conv)).ok_or(format!("no group {name:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RegexPlan { regex, fields })
    }

    /// The columns (one per field) and which rows parsed.
    pub fn parse(&self, rows: &Strings<'_>) -> Parsed {
        let bytes = rows.data.len() / self.fields.len().max(1);
        let mut columns: Vec<Column> = self
            .fields
            .iter()
            .map(|(_, c)| Column::new(c, rows.len, bytes))
            .collect();
        let mut ok = Validity::with_capacity(rows.len);
        let mut locs = self.regex.capture_locations();
        let checked = rows.checked();
        for i in 0..rows.len {
            let text = checked.get(i);
            let found = text.and_then(|t| self.regex.captures_read(&mut locs, t).map(|_| t));
            let Some(text) = found else {
                columns.iter_mut().for_each(Column::push_null);
                ok.push(false);
                continue;
            };
            ok.push((1..locs.len()).any(|g| locs.get(g).is_some()));
            for ((group, conv), column) in self.fields.iter().zip(columns.iter_mut()) {
                match locs.get(*group).and_then(|(a, b)| text.get(a..b)) {
                    Some(v) => {
                        convert(conv, column, v);
                    }
                    None => column.push_null(),
                }
            }
        }
        Parsed { columns, ok }
    }
}

/// The integers behind printed labels of one ``__print_symbolic`` / ``__print_flags``
/// conversion: its table's names, the flags' separator, the text printed for 0 (``cond ?
/// __print_flags(...) : "R"``) and a suffix label (``"+"`` of ``R+``) with its mask (None
/// when the mask is no constant).
#[derive(Clone, Debug, Default)]
pub struct Labels {
    pub names: HashMap<String, i64>,
    pub delim: Option<String>,
    pub other: Option<String>,
    pub suffix: Option<(Option<i64>, String)>,
}

impl Labels {
    /// One name: its value in the table, a leftover ``0x..`` its number, else None.
    fn one(&self, name: &str) -> Option<i64> {
        if let Some(v) = self.names.get(name) {
            return Some(*v);
        }
        let hex = name.strip_prefix("0x")?;
        u64::from_str_radix(hex, 16).ok().map(|v| v as i64)
    }

    /// The integer `label` stands for: the OR (sum) of its flags, plus the suffix's bit;
    /// None where a name is not in the table.
    pub fn value(&self, label: &str) -> Option<i64> {
        let mut text = label;
        let mut bits = Some(0);
        if let Some((mask, tail)) = &self.suffix {
            if let Some(stripped) = text.strip_suffix(tail.as_str()) {
                text = stripped;
                bits = *mask;
            }
        }
        let mut num = match &self.delim {
            Some(_) if text.is_empty() => Some(0),
            Some(d) => text.split(d.as_str()).try_fold(0i64, |acc, part| {
                self.one(part).map(|v| acc.wrapping_add(v))
            }),
            None => self.one(text),
        };
        if self.other.as_deref() == Some(text) {
            num = Some(0);
        }
        if let Some((None, _)) = &self.suffix {
            // as ``ingest/fields.py`` has it: the number only where the unknown bit is printed
            return if bits.is_none() { num } else { None };
        }
        Some(num?.wrapping_add(bits?))
    }

    /// [`Labels::value`] of every row (null for a null). A block prints few distinct labels,
    /// mostly the one of the row before: each is looked up once.
    pub fn values(&self, rows: &Strings<'_>) -> I64Col {
        let mut out = I64Col::with_capacity(rows.len);
        let mut seen: HashMap<&str, Option<i64>> = HashMap::new();
        let mut last: Option<(&str, Option<i64>)> = None;
        let checked = rows.checked();
        for i in 0..rows.len {
            let value = checked.get(i).and_then(|s| match last {
                Some((label, v)) if label == s => v,
                _ => {
                    let v = *seen.entry(s).or_insert_with(|| self.value(s));
                    last = Some((s, v));
                    v
                }
            });
            out.push(value);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(rows: &[Option<&str>]) -> StrCol {
        StrCol::from_rows(rows)
    }

    fn view(c: &StrCol) -> Strings<'_> {
        c.view()
    }

    fn tok(prefix: &str, conv: Option<Conv>, suffix: &str) -> Token {
        Token::new(prefix.into(), conv, suffix.into())
    }

    fn i64s(c: &Column) -> Vec<Option<i64>> {
        match c {
            Column::I64(c) | Column::U64(c) => (0..c.valid.len).map(|i| c.get(i)).collect(),
            _ => panic!("not an int column"),
        }
    }

    fn oks(p: &Parsed) -> Vec<bool> {
        (0..p.ok.len).map(|i| p.ok.get(i)).collect()
    }

    fn alloc_plan() -> Vec<Token> {
        vec![
            tok("page=", Some(Conv::Hex), ""),
            tok("pfn=0x", Some(Conv::Hex), ""),
            tok("order=", Some(Conv::Int), ""),
            tok("gfp_flags=", Some(Conv::Label), ""),
        ]
    }

    #[test]
    fn tokens_typed() {
        let rows = strings(&[
            Some("page=00000000d506ac5f pfn=0x1deabc order=0 gfp_flags=GFP_KERNEL|__GFP_ZERO"),
            Some("page=0xff pfn=0x10 order=-3 gfp_flags=0x0"),
        ]);
        let p = split_tokens(&alloc_plan(), false, &view(&rows));
        assert_eq!(oks(&p), [true, true]);
        assert_eq!(i64s(&p.columns[0]), [Some(0xd506ac5f), Some(0xff)]);
        assert_eq!(i64s(&p.columns[1]), [Some(0x1deabc), Some(0x10)]);
        assert_eq!(i64s(&p.columns[2]), [Some(0), Some(-3)]);
        let Column::Str(labels) = &p.columns[3] else {
            panic!()
        };
        assert_eq!(labels.get(0), Some("GFP_KERNEL|__GFP_ZERO"));
        assert_eq!(labels.get(1), Some("0x0"));
    }

    #[test]
    fn tokens_rejected() {
        let rows = strings(&[
            None,
            Some("page=0x1 pfn=0x2 order=x gfp_flags=A"), // no number
            Some("page=0x1 pfn=2 order=1 gfp_flags=A"),   // wrong prefix
            Some("page=0x1 pfn=0x2 order=1"),             // a token missing
            Some("page=0x1 pfn=0x2 order=1 gfp_flags=A B"), // more than the plan
            Some("page=0x1 pfn=0x2 order=99999999999999999999 gfp_flags=A"),
        ]);
        let p = split_tokens(&alloc_plan(), false, &view(&rows));
        assert_eq!(oks(&p), [false; 6]);
        // values of rows that do not parse are still what the conversion gives
        assert_eq!(i64s(&p.columns[1])[2], None); // ``pfn=2`` less its 6-character prefix
        assert_eq!(i64s(&p.columns[2])[4], Some(1));
        assert_eq!(i64s(&p.columns[2])[1], None);
        let Column::Str(labels) = &p.columns[3] else {
            panic!()
        };
        assert_eq!(labels.get(3), None);
        assert_eq!(labels.get(4), Some("A B"));
    }

    #[test]
    fn literal_suffix_bool_padding() {
        let plan = vec![
            tok("(", Some(Conv::Int), ")"),
            tok("done", None, ""),
            tok(
                "dead=",
                Some(Conv::Bool {
                    choices: vec!["yes".into(), "no".into()],
                    truth: "yes".into(),
                }),
                "",
            ),
        ];
        let rows = strings(&[
            Some("(12) done dead=yes"),
            Some("(  7)  done dead=no"),
            Some("(1) done dead=maybe"),
            Some("(1) gone dead=no"),
            Some("(1 done dead=no"),
        ]);
        let p = split_tokens(&plan, true, &view(&rows));
        assert_eq!(oks(&p), [true, false, true, false, false]);
        assert_eq!(i64s(&p.columns[0])[0], Some(12));
        let Column::Bool(values, valid) = &p.columns[1] else {
            panic!()
        };
        assert_eq!(
            (0..5)
                .map(|i| valid.get(i).then(|| values.get(i)))
                .collect::<Vec<_>>(),
            [Some(true), None, None, Some(false), Some(false)]
        );
    }

    #[test]
    fn checked_rows_as_unchecked() {
        // offsets 0, 1, 3, 5, 6: "a", "é", a cut through "é"'s two bytes, "\xff"
        let offsets: Vec<u8> = [0i64, 1, 3, 4, 6, 7]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        for data in [&b"a\xc3\xa9\xc3\xa9b"[..], &b"a\xc3\xa9\xc3\xa9\xff"[..]] {
            let rows = Strings {
                offsets: &offsets,
                data,
                validity: None,
                offset: 0,
                len: 5,
            };
            let checked = rows.checked();
            for i in 0..6 {
                assert_eq!(checked.get(i), rows.get(i), "row {i}");
            }
            assert_eq!(checked.get(1), Some("é"));
            assert_eq!(checked.get(2), None);
        }
    }

    #[test]
    fn regex_plan() {
        let plan = RegexPlan::new(
            r"^comm=(?P<comm>.*?)\s*pid=(?P<pid>-?\d+)\s*(?:flags=(?P<flags>\S+))?$",
            vec![
                ("comm".into(), Conv::Label),
                ("pid".into(), Conv::Int),
                ("flags".into(), Conv::Hex),
            ],
        )
        .unwrap();
        let rows = strings(&[
            Some("comm=a b  pid=12 flags=0x1f"),
            Some("comm=x pid=-3"),
            Some("pid=3"),
            None,
        ]);
        let p = plan.parse(&view(&rows));
        assert_eq!(oks(&p), [true, true, false, false]);
        let Column::Str(comm) = &p.columns[0] else {
            panic!()
        };
        assert_eq!(
            (comm.get(0), comm.get(1), comm.get(2)),
            (Some("a b"), Some("x"), None)
        );
        assert_eq!(i64s(&p.columns[1]), [Some(12), Some(-3), None, None]);
        assert_eq!(i64s(&p.columns[2]), [Some(0x1f), None, None, None]);
        assert!(RegexPlan::new("(?P<a>x)", vec![("b".into(), Conv::Int)]).is_err());
        assert!(RegexPlan::new("(", vec![]).is_err());
    }

    #[test]
    fn squeeze_and_skip() {
        assert_eq!(squeeze("a   b  c d"), "a b c d");
        assert_eq!(squeeze(" a"), " a");
        assert_eq!(skip_chars("éab", 1), "ab");
        assert_eq!(skip_chars("ab", 5), "");
    }

    #[test]
    fn fast_splits_and_numbers_are_std_value_for_value() {
        let texts = [
            "",
            " ",
            "a",
            "a b",
            "a  b",
            "a b ",
            " a b",
            "a b c d e",
            "é b",
            "0x1f 12 -3",
        ];
        for t in texts {
            for n in 1..6 {
                let ours: Vec<&str> = SpaceSplit::new(t, n).collect();
                let std: Vec<&str> = t.splitn(n, ' ').collect();
                assert_eq!(ours, std, "{t:?} {n}");
            }
        }
        let values = [
            "",
            "0",
            "7",
            "007",
            " 42 ",
            "+5",
            "-5",
            "-0",
            "5 ",
            "1_0",
            "12a",
            "é",
            "999999999999999999",
            "9223372036854775807",
            "9223372036854775808",
            "0x",
            "0x0",
            "0xff",
            "0xFFffFFffFFffFFff",
            "0x10000000000000000",
            "+ff",
            "-1",
            "0000000000000000001",
            "deadbeef",
            "g",
            "0xg",
            " ff",
        ];
        for v in values {
            assert_eq!(
                parse_int(v),
                v.trim_matches(' ').parse::<i64>().ok(),
                "{v:?}"
            );
            let hex = u64::from_str_radix(v.strip_prefix("0x").unwrap_or(v), 16).ok();
            assert_eq!(parse_hex(v), hex, "{v:?}");
        }
    }

    #[test]
    fn label_values() {
        let names: HashMap<String, i64> = [("A", 1), ("B", 2), ("C", 4)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let flags = Labels {
            names: names.clone(),
            delim: Some("|".into()),
            other: Some("none".into()),
            suffix: Some((Some(8), "+".into())),
        };
        assert_eq!(flags.value("A|C"), Some(5));
        assert_eq!(flags.value("A|0x10"), Some(17));
        assert_eq!(flags.value("A|D"), None);
        assert_eq!(flags.value("A||B"), None);
        assert_eq!(flags.value(""), Some(0));
        assert_eq!(flags.value("B+"), Some(10));
        assert_eq!(flags.value("+"), Some(8));
        assert_eq!(flags.value("none"), Some(0));
        let symbolic = Labels {
            names,
            ..Labels::default()
        };
        assert_eq!(symbolic.value("B"), Some(2));
        assert_eq!(symbolic.value("0xffffffffffffffff"), Some(-1));
        assert_eq!(symbolic.value("0xzz"), None);
        assert_eq!(symbolic.value("A|B"), None);
        let unknown_mask = Labels {
            suffix: Some((None, "+".into())),
            ..symbolic.clone()
        };
        assert_eq!(unknown_mask.value("B+"), Some(2));
        assert_eq!(unknown_mask.value("B"), None);
        let rows = strings(&[Some("A"), None, Some("x")]);
        let col = symbolic.values(&view(&rows));
        assert_eq!(
            (0..3).map(|i| col.get(i)).collect::<Vec<_>>(),
            [Some(1), None, None]
        );
    }
}
