/* rmapscope lab: copy a per-CPU trace_pipe_raw to a file until its ring buffer is empty.
 *
 *   rawdump per_cpu/cpuN/trace_pipe_raw OUT
 *
 * Tracing is stopped when this runs: the file is read O_NONBLOCK a page at a time (each read
 * is one ring-buffer page) until EAGAIN (empty). Exit 0 on success; otherwise one line on
 * stderr saying what failed. Built with `gcc -static -O2` like the workload.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: rawdump TRACE_PIPE_RAW OUT\n");
		return 2;
	}
	int in = open(argv[1], O_RDONLY | O_NONBLOCK);
	if (in < 0) {
		fprintf(stderr, "open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	int out = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (out < 0) {
		fprintf(stderr, "open %s: %s\n", argv[2], strerror(errno));
		return 1;
	}
	long page = sysconf(_SC_PAGESIZE);
	char *buf = malloc(page);
	for (;;) {
		ssize_t n = read(in, buf, page);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break; /* empty */
		if (n < 0) {
			fprintf(stderr, "read %s: %s\n", argv[1], strerror(errno));
			return 1;
		}
		if (n == 0)
			break;
		for (ssize_t done = 0; done < n;) {
			ssize_t w = write(out, buf + done, n - done);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				fprintf(stderr, "write %s: %s\n", argv[2], strerror(errno));
				return 1;
			}
			done += w;
		}
	}
	if (close(out)) {
		fprintf(stderr, "close %s: %s\n", argv[2], strerror(errno));
		return 1;
	}
	return 0;
}
