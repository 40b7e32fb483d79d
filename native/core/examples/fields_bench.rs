use rmapscope_core::text::columns::StrCol;
use rmapscope_core::text::fields::{split_tokens, Conv, Strings, Token};
fn main() {
    let mut c = StrCol::with_capacity(1_000_000, 100_000_000);
    for _ in 0..1_000_000 {
        c.push(Some("page=00000000d506ac5f pfn=0x1deabc order=0 migratetype=0 gfp_flags=GFP_KERNEL_ACCOUNT|__GFP_ZERO|__GFP_COMP"));
    }
    let t = |p: &str, c: Option<Conv>| Token::new(p.into(), c, String::new());
    let plan = vec![
        t("page=", Some(Conv::Hex)),
        t("pfn=0x", Some(Conv::Hex)),
        t("order=", Some(Conv::Int)),
        t("migratetype=", Some(Conv::Int)),
        t("gfp_flags=", Some(Conv::Label)),
    ];
    let s = Strings {
        offsets: &c.offsets,
        data: &c.data,
        validity: None,
        offset: 0,
        len: c.len(),
    };
    let t0 = std::time::Instant::now();
    let mut n = 0usize;
    for i in 0..s.len {
        n += s.get(i).map_or(0, |x| x.len());
    }
    println!("get {:?} {}", t0.elapsed(), n);
    let t0 = std::time::Instant::now();
    let p = split_tokens(&plan, false, &s);
    println!("{:?} {}", t0.elapsed(), p.ok.nulls);
}
