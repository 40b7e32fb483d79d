#!/bin/busybox sh
# rmapscope lab guest init (PID 1 of the initramfs rmapscope.record.lab builds).
# Loads /probes.txt, enables the events of /events.txt, runs /workload, and sends the
# results (the text trace, and the pieces of a trace.dat of the same recording) framed on the second serial port (ttyS1 / ttyAMA1): "@@BEGIN name" + base64 of
# gzip + "@@END name". The first port is the console (the host keeps it as console.log).
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || mount -t debugfs debugfs /sys/kernel/debug
T=/sys/kernel/tracing
[ -d $T/events ] || T=/sys/kernel/debug/tracing
. /lab.conf
OUT=$LAB_DATA_PORT
stty -F $OUT raw -echo 2>/dev/null
send() { echo "@@BEGIN $1"; gzip -c "$2" | base64; echo "@@END $1"; }
finish() {
    dmesg > /tmp/dmesg.txt
    echo 1 > /proc/sys/kernel/printk  # nothing else on the port while the frames go out
    { send dmesg /tmp/dmesg.txt; for f in /tmp/out/*; do send "${f##*/}" "$f"; done; echo "@@DONE $1"; } > $OUT
    sync
    poweroff -f
}
mkdir -p /tmp/out
{ uname -r; uname -v; uname -m; } > /tmp/out/uname.txt
echo 0 > $T/tracing_on
echo > $T/trace
echo "$LAB_BUFFER_KB" > $T/buffer_size_kb
n=0
while IFS= read -r line; do
    case "$line" in ''|'#'*) continue;; esac
    n=$((n + 1))
    if ! echo "$line" >> $T/dynamic_events 2>/tmp/out/probe_err.txt; then
        echo "$line" > /tmp/out/refused.txt
        cat $T/error_log > /tmp/out/error_log.txt 2>/dev/null
        finish refused
    fi
done < /probes.txt
cat $T/dynamic_events > /tmp/out/probes_loaded.txt
while IFS= read -r ev; do
    [ -z "$ev" ] && continue
    f=$T/events/$ev/enable
    if [ -e "$f" ]; then echo 1 > "$f" && echo "$ev" >> /tmp/out/enabled.txt; else echo "$ev" >> /tmp/out/missing.txt; fi
done < /events.txt
[ -e /sys/kernel/mm/transparent_hugepage/enabled ] && echo madvise > /sys/kernel/mm/transparent_hugepage/enabled
cat /proc/vmstat > /tmp/out/vmstat_before.txt
echo 1 > $T/tracing_on
/workload "$LAB_SCENARIO" "$LAB_SEED" > /tmp/out/truth.jsonl 2>/tmp/out/workload_err.txt
echo $? > /tmp/out/workload_status.txt
echo 0 > $T/tracing_on
cat /proc/vmstat > /tmp/out/vmstat_after.txt
for c in $T/per_cpu/cpu*; do echo "${c##*/}"; cat $c/stats; done > /tmp/out/stats.txt
cat $T/trace > /tmp/out/trace.txt
# The same recording's binary side, for the host to assemble a trace.dat: every CPU's
# ring-buffer pages (trace_pipe_raw, consumed now that the text is read; /rawdump reads
# until empty) and the metadata a trace.dat holds, in /tmp/out/tracedat.tar.
D=/tmp/dat
mkdir -p $D/raw $D/events/ftrace
for f in header_page header_event; do cat $T/events/$f > $D/$f || echo "events/$f unreadable" >> /tmp/out/raw_error.txt; done
for f in printk_formats saved_cmdlines saved_tgids trace_clock; do [ -e $T/$f ] && cat $T/$f > $D/$f; done
cat /proc/kallsyms > $D/kallsyms
while IFS=: read -r sys ev; do
    mkdir -p $D/events/$sys
    cat $T/events/$sys/$ev/format > $D/events/$sys/$ev || echo "events/$sys/$ev/format unreadable" >> /tmp/out/raw_error.txt
done < $T/set_event
for f in $T/events/ftrace/*/format; do e=${f%/format}; cat $f > $D/events/ftrace/${e##*/}; done
n=0
for c in $T/per_cpu/cpu*; do
    n=$((n + 1))
    /rawdump $c/trace_pipe_raw $D/raw/${c##*/} 2>/tmp/rawdump_err.txt || echo "${c##*/}: rawdump: $(cat /tmp/rawdump_err.txt)" >> /tmp/out/raw_error.txt
done
echo $n > $D/cpus
tar -cf /tmp/out/tracedat.tar -C $D . 2>/tmp/tar_err.txt || echo "tar: $(cat /tmp/tar_err.txt)" >> /tmp/out/raw_error.txt
finish ok
