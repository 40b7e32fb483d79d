use super::*;

fn one(fmt: &str, line: &str) -> Tokens {
    Tokenizer::new(Format::from_name(fmt).unwrap()).tokenize(line.as_bytes(), 0)
}

fn row(
    t: &Tokens,
) -> (
    Option<&str>,
    Option<i32>,
    Option<i32>,
    Option<i32>,
    Option<&str>,
    Option<i64>,
    &str,
    &str,
) {
    assert_eq!(
        t.event.len(),
        1,
        "one event expected, other lines: {:?}",
        t.other_line
    );
    (
        t.comm.get(0),
        t.pid.get(0),
        t.tgid.get(0),
        t.cpu.get(0),
        t.flags.get(0),
        t.ts.get(0),
        t.event.get(0).unwrap(),
        t.rest.get(0).unwrap(),
    )
}

#[test]
fn tracefs_flags_tgid_and_plain() {
    let t = one(
        "tracefs",
        "            bash-2134    [000] .....   116.118248: task_newtask: pid=2137 comm=bash\n",
    );
    assert_eq!(
        row(&t),
        (
            Some("bash"),
            Some(2134),
            None,
            Some(0),
            Some("....."),
            Some(116_118_248_000),
            "task_newtask",
            "pid=2137 comm=bash"
        )
    );
    assert!(!t.counter);
    let t = one(
        "tracefs",
        "            bash-2134    (   2134) [001] d..1.   116.1: ev: x=1\n",
    );
    assert_eq!(row(&t).2, Some(2134));
    assert_eq!(row(&t).5, Some(116_100_000_000));
    let t = one(
        "tracefs",
        "            bash-2134    (-------) [001]   116.1: ev: x=1\n",
    );
    assert_eq!(row(&t).2, None);
    assert_eq!(row(&t).4, None);
}

#[test]
fn comm_with_dashes_spaces_and_digits() {
    let t = one(
        "tracefs",
        "      foo-12 bar-1234    [000] .....   1.000001: ev: a\n",
    );
    assert_eq!(row(&t).0, Some("foo-12 bar"));
    let t = one(
        "tracefs",
        "a-very-long-escaped\\xff-comm-77    [000] .....   1.000001: ev: a\n",
    );
    assert_eq!(row(&t).0, Some("a-very-long-escaped\\x5cxff-comm"));
    assert_eq!(row(&t).1, Some(77));
}

#[test]
fn counter_clock_and_overflow() {
    let t = one(
        "tracefs",
        "            bash-2134    [000] .....   394709: ev: a\n",
    );
    assert_eq!(row(&t).5, Some(394709));
    assert!(t.counter);
    let t = one(
        "tracefs",
        "            bash-2134    [000] .....   99999999999.000001: ev: a\n",
    );
    assert_eq!(row(&t).5, None); // does not fit in int64 ns
    let t = one(
        "tcreport",
        "            bash-2134  [000]   1.000000000001: ev:   a\n",
    );
    assert_eq!(row(&t).5, Some(1_000_000_000_001));
    assert_eq!(row(&t).7, "a");
    assert!(t.counter);
}

#[test]
fn syscalls_are_renamed() {
    let t = one(
        "tracefs",
        "            bash-2134    [000] .....   1.000001: sys_mbind(start: 0x7f, len: 2)\n",
    );
    assert_eq!(
        (row(&t).6, row(&t).7),
        ("sys_enter_mbind", "start: 0x7f, len: 2")
    );
    let t = one(
        "tracefs_latency",
        "    bash-2134    0d..1   10us : sys_mbind -> 0xffffffffffffffea\n",
    );
    assert_eq!(
        (row(&t).6, row(&t).7, row(&t).5),
        ("sys_exit_mbind", "0xffffffffffffffea", Some(10_000))
    );
}

#[test]
fn tcreport_instance_and_latency() {
    let t = one(
        "tcreport",
        "inst:            bash-2134  [000]   116.118248: sched_process_fork:   comm=bash\n",
    );
    assert_eq!(t.instance.get(0), Some("inst"));
    assert_eq!(row(&t).7, "comm=bash");
    let t = one(
        "tcreport_latency",
        "    bash-2134      0.....   116.118248: sched_process_fork:   comm=bash\n",
    );
    assert_eq!((row(&t).3, row(&t).4), (Some(0), Some(".....")));
}

#[test]
fn perf_and_bpftrace() {
    let t = one("perf_script", "              sh  6224 [000]   444.894767:            task:task_newtask: pid=6226 comm=sh\n");
    assert_eq!(
        (row(&t).0, row(&t).1, row(&t).6, row(&t).7),
        (Some("sh"), Some(6224), "task_newtask", "pid=6226 comm=sh")
    );
    let t = one("perf_script", "              sh  12/6224 [000]   444.894767:          1 cycles:u:  ffffffff8135acb1 sym\n");
    assert_eq!(
        (row(&t).2, row(&t).6, row(&t).7),
        (Some(12), "cycles:u", "period=1 ffffffff8135acb1 sym")
    );
    let t = one(
        "bpftrace",
        "2958046971904 [1] fs_parent-528 sched_process_fork: comm=a pid=1\n",
    );
    assert_eq!(
        (row(&t).5, row(&t).3, row(&t).6),
        (Some(2958046971904), Some(1), "sched_process_fork")
    );
}

#[test]
fn other_lines_are_left_with_their_numbers() {
    let block = b"# tracer: nop\n CPU:1 [LOST 3 EVENTS]\n => func+0x1/0x2\n            bash-2134    [000] .....   1.000001: ev: a\r\nlast without newline";
    let t = Tokenizer::new(Format::Tracefs).tokenize(block, 10);
    assert_eq!(t.lines, 5);
    assert_eq!(t.lineno.get(0), Some(14));
    assert_eq!(t.rest.get(0), Some("a"));
    let others: Vec<_> = (0..t.other_line.len())
        .map(|i| (t.other_lineno.get(i).unwrap(), t.other_line.get(i).unwrap()))
        .collect();
    assert_eq!(others[0], (11, "# tracer: nop\n"));
    assert_eq!(others[3], (15, "last without newline"));
}

#[test]
fn invalid_bytes_are_escaped() {
    let t = Tokenizer::new(Format::Tracefs).tokenize(
        b"         ab\xffcd-1    [000] .....   1.000001: ev: x=\\x41 \xfe\n",
        0,
    );
    assert_eq!(row(&t).0, Some("ab\\xffcd"));
    assert_eq!(row(&t).7, "x=\\x5cx41 \\xfe");
}

#[test]
fn an_empty_event_name_is_no_event() {
    let t = one(
        "tracefs",
        "            bash-2134    [000] .....   1.000001: : x\n",
    );
    assert_eq!((t.event.len(), t.other_line.len()), (0, 1));
}

#[test]
fn printed_integers_are_digits_only_and_in_range() {
    assert_eq!(digits_value(b"0"), Some(0));
    assert_eq!(digits_value(b"007"), Some(7));
    assert_eq!(digits_value(b"9223372036854775807"), Some(i64::MAX));
    assert_eq!(digits_value(b"9223372036854775808"), None); // beyond int64
    assert_eq!(digits_value(b"99999999999999999999"), None);
    for bad in [&b""[..], b"+1", b"-1", b"1 ", b" 1", b"1a", b"1.5", b"\xd9"] {
        assert_eq!(digits_value(bad), None, "{bad:?}");
    }
    assert_eq!(int::<i32>(Some("2147483647")), Some(i32::MAX));
    assert_eq!(int::<i32>(Some("2147483648")), None); // a pid or cpu beyond int32: null
    assert_eq!(int::<i64>(None), None);
}

#[test]
fn a_signed_or_oversized_header_field_is_left_to_the_regex_or_nulled() {
    // "+5" is no pid (str::parse would take it); the line is not an event line
    let t = one(
        "tracefs",
        "           a-+5      [000] .....   1.000000: e: x=1\n",
    );
    assert_eq!(t.event.len(), 0);
    // a cpu beyond int32 still makes an event line, its cpu null
    let t = one(
        "tracefs",
        "           a-5       [4294967296] .....   1.000000: e: x=1\n",
    );
    assert_eq!(row(&t).3, None);
}
