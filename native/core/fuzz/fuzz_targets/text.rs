//! Fuzz the ftrace text tokenizer: any bytes, in any text format (the first byte picks it).
//! Besides not crashing or hanging, every line is either an event row or an other line, in
//! order, and the escaped text keeps the input's line count. The payloads then go through a
//! token plan (its numbers checked against std's parsing of the same pieces), a regex plan
//! and a label table (the fallback of events without a token plan, `_raw` values).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rmapscope_core::text::fields::{split_tokens, Column, Conv, Labels, RegexPlan, Strings, Token};
use rmapscope_core::text::partition::{gather_strings, Partitioner};
use rmapscope_core::text::{columns::StrCol, escape, Format, Tokenizer};
use std::sync::OnceLock;

const FORMATS: [&str; 7] = [
    "tracefs",
    "trace_pipe",
    "tracefs_latency",
    "tcreport",
    "tcreport_latency",
    "perf_script",
    "bpftrace",
];

fn tokenizers() -> &'static Vec<Tokenizer> {
    static T: OnceLock<Vec<Tokenizer>> = OnceLock::new();
    T.get_or_init(|| {
        FORMATS
            .iter()
            .map(|f| Tokenizer::new(Format::from_name(f).unwrap()))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, block)) = data.split_first() else {
        return;
    };
    let tok = &tokenizers()[pick as usize % FORMATS.len()];
    let t = tok.tokenize(block, 7);
    let text = escape::escape(block);
    assert_eq!(
        text.matches('\n').count(),
        block.iter().filter(|&&b| b == b'\n').count()
    );
    let lines = text.split_inclusive('\n').count();
    assert_eq!(t.lines, lines);
    let events = t.lineno.valid.len;
    assert_eq!(events + t.other_lineno.valid.len, lines);
    for col in [&t.comm, &t.flags, &t.event, &t.rest, &t.instance] {
        assert_eq!(col.len(), events);
    }
    let (mut e, mut o, mut prev) = (0, 0, 7);
    while e < events || o < t.other_line.len() {
        let next_e = (e < events).then(|| t.lineno.get(e).unwrap());
        let next_o = (o < t.other_line.len()).then(|| t.other_lineno.get(o).unwrap());
        let n = match (next_e, next_o) {
            (Some(a), Some(b)) if a < b => {
                e += 1;
                a
            }
            (Some(a), None) => {
                e += 1;
                a
            }
            (_, Some(b)) => {
                o += 1;
                b
            }
            (None, None) => unreachable!(),
        };
        assert_eq!(n, prev + 1, "every line once, in order");
        prev = n;
    }
    for i in 0..events {
        assert!(t.event.get(i).is_some_and(|e| !e.is_empty()));
    }
    // the rows by event: every row in exactly one group, ascending, its own name
    let (ev, rest) = (view(&t.event), view(&t.rest));
    let groups = partitioner().partition(&ev, &rest);
    assert_eq!(groups.iter().map(|g| g.rows.len()).sum::<usize>(), events);
    for g in &groups {
        assert!(g.rows.windows(2).all(|w| w[0] < w[1]));
        let names = gather_strings(&ev.checked(), &g.rows);
        assert!((0..names.len()).all(|i| names.get(i) == g.name.as_deref()));
        assert!(g.probe.as_ref().is_none_or(|p| p.len == g.rows.len()));
    }
    // a token plan: a row per payload in each column; where a row parses, its numbers are
    // std's parse of the same space-separated pieces
    let plan = token_plan();
    let split = split_tokens(plan, false, &rest);
    assert_eq!(split.ok.len, events);
    assert_eq!(split.columns.len(), 5);
    if let (Column::U64(pfn), Column::I64(order)) = (&split.columns[1], &split.columns[2]) {
        for i in (0..events).filter(|&i| split.ok.get(i)) {
            let text = rest.get(i).unwrap();
            let pieces: Vec<&str> = text.splitn(plan.len(), ' ').collect();
            let hex = pieces[1].strip_prefix("pfn=0x").unwrap();
            let want = u64::from_str_radix(hex.strip_prefix("0x").unwrap_or(hex), 16).unwrap();
            assert_eq!(pfn.get(i), Some(want as i64));
            let dec = pieces[2].strip_prefix("order=").unwrap().trim_matches(' ');
            assert_eq!(order.get(i), Some(dec.parse::<i64>().unwrap()));
        }
    } else {
        unreachable!("columns follow the plan's conversions");
    }
    // every payload gets a row in each field column of a regex plan, and a label value
    let parsed = regex_plan().parse(&rest);
    assert_eq!(parsed.ok.len, events);
    assert_eq!(parsed.columns.len(), 3);
    let labels = Labels {
        names: [("GFP_KERNEL".to_string(), 1), ("__GFP_ZERO".to_string(), 2)].into(),
        delim: Some("|".into()),
        other: Some("none".into()),
        suffix: Some((Some(8), "+".into())),
    };
    assert_eq!(labels.values(&rest).valid.len, events);
});

fn token_plan() -> &'static Vec<Token> {
    static P: OnceLock<Vec<Token>> = OnceLock::new();
    P.get_or_init(|| {
        let t = |p: &str, c: Conv| Token::new(p.into(), Some(c), String::new());
        vec![
            t("page=", Conv::Hex),
            t("pfn=0x", Conv::Hex),
            t("order=", Conv::Int),
            t("migratetype=", Conv::Int),
            t("gfp_flags=", Conv::Label),
        ]
    })
}

fn regex_plan() -> &'static RegexPlan {
    static P: OnceLock<RegexPlan> = OnceLock::new();
    P.get_or_init(|| {
        RegexPlan::new(
            r"^comm=(?P<comm>.*?)\s*pid=(?P<pid>-?\d+)\s*(?:flags=(?P<flags>\S+))?\s*$",
            vec![
                ("comm".into(), Conv::Label),
                ("pid".into(), Conv::Int),
                ("flags".into(), Conv::Hex),
            ],
        )
        .unwrap()
    })
}

fn view(c: &StrCol) -> Strings<'_> {
    c.view()
}

fn partitioner() -> &'static Partitioner {
    static P: OnceLock<Partitioner> = OnceLock::new();
    P.get_or_init(|| {
        Partitioner::new(
            r"^\((?:[\w.]+\+0x[0-9a-fA-F]+/0x[0-9a-fA-F]+|[0-9a-fA-F]+)(?: <- [\w.]+)?\)(?:\s|$)",
        )
        .unwrap()
    })
}
