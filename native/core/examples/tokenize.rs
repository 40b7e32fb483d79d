//! Time the tokenizer on a file: `cargo run --release --example tokenize -- FILE [FORMAT]`.
use rmapscope_core::text::{Format, Tokenizer};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data = std::fs::read(&args[1]).expect("readable file");
    let fmt = Format::from_name(args.get(2).map_or("tracefs", |s| s)).expect("a text format");
    let tok = Tokenizer::new(fmt);
    let start = std::time::Instant::now();
    let (mut lines, mut other) = (0, 0);
    for block in data.chunks(16 << 20) {
        let t = tok.tokenize(block, 0);
        lines += t.lines;
        other += t.other_line.len();
    }
    let s = start.elapsed().as_secs_f64();
    println!(
        "{lines} lines ({other} other) in {s:.3} s: {:.2} M lines/s",
        lines as f64 / s / 1e6
    );
}
