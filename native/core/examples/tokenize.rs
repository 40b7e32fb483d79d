//! Time the tokenizer, then the partition of its rows by event (with the gathers of each
//! event's payloads), on a file:
//! `cargo run --release --example tokenize -- FILE [FORMAT]`.
use rmapscope_core::text::partition::{gather_strings, Partitioner};
use rmapscope_core::text::{Format, Tokenizer};

/// ``ingest/probes.py``'s ``PROBE_PAYLOAD``.
const PROBE: &str =
    r"^\((?:[\w.]+\+0x[0-9a-fA-F]+/0x[0-9a-fA-F]+|[0-9a-fA-F]+)(?: <- [\w.]+)?\)(?:\s|$)";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data = std::fs::read(&args[1]).expect("readable file");
    let fmt = Format::from_name(args.get(2).map_or("tracefs", |s| s)).expect("a text format");
    let tok = Tokenizer::new(fmt);
    let start = std::time::Instant::now();
    let (mut lines, mut other) = (0, 0);
    let mut blocks = Vec::new();
    for block in data.chunks(16 << 20) {
        let t = tok.tokenize(block, 0);
        lines += t.lines;
        other += t.other_line.len();
        blocks.push(t);
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "{lines} lines ({other} other) in {s:.3} s: {:.2} M lines/s",
        lines as f64 / s / 1e6
    );
    let partitioner = Partitioner::new(PROBE).expect("a regex");
    let start = std::time::Instant::now();
    let mut groups = 0;
    for t in &blocks {
        let (event, rest) = (t.event.view(), t.rest.view());
        let checked = rest.checked();
        for g in partitioner.partition(&event, &rest) {
            groups += 1;
            std::hint::black_box(gather_strings(&checked, &g.rows));
        }
    }
    let s = start.elapsed().as_secs_f64();
    println!("partitioned into {groups} groups in {s:.3} s");
}
