/* rmapscope lab workload: runs one scenario inside the guest and prints its ground truth
 * as JSON lines on stdout (one object per line; see data/lab/README.md).
 *
 *   workload SCENARIO SEED
 *
 * Scenarios: fork-vs-migrate, exit-during-migration, compaction, thp-split, thp-exit.
 * Built with `gcc -static -O2` (or the cross compiler) by rmapscope.record.lab.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MPOL_MF_MOVE_ALL (1 << 2)
#define PAGE 4096UL
#define HPAGE (2UL << 20)

static int pagemap_fd = -1;
static unsigned long rng;
static int child_split; /* thp-exit: each child splits its own pmd of the THP first */

static unsigned long next_rand(void)
{
	rng = rng * 6364136223846793005UL + 1442695040888963407UL;
	return rng >> 33;
}

/* pfn of the page at addr in this process (0 when not present). */
static uint64_t pfn_of(const void *addr)
{
	uint64_t ent = 0;
	off_t off = (off_t)((uintptr_t)addr / PAGE) * 8;
	if (pread(pagemap_fd, &ent, 8, off) != 8)
		return 0;
	if (!(ent & (1ULL << 63)))
		return 0;
	return ent & ((1ULL << 55) - 1);
}

static const char *VMSTAT_KEYS[] = {
	"pgmigrate_success", "pgmigrate_fail", "thp_migration_success", "thp_migration_fail",
	"thp_migration_split", "compact_migrate_scanned", "compact_free_scanned", "compact_isolated",
	"compact_stall", "compact_success", "compact_fail", "compact_daemon_wake",
	"thp_split_page", "thp_split_pmd", "thp_fault_alloc", "numa_pages_migrated", NULL,
};

static void vmstat(long *out)
{
	char key[128];
	long val;
	FILE *f = fopen("/proc/vmstat", "r");
	for (int i = 0; VMSTAT_KEYS[i]; i++)
		out[i] = -1;
	if (!f)
		return;
	while (fscanf(f, "%127s %ld", key, &val) == 2)
		for (int i = 0; VMSTAT_KEYS[i]; i++)
			if (!strcmp(key, VMSTAT_KEYS[i]))
				out[i] = val;
	fclose(f);
}

static void print_vmstat(const char *what, const long *before, const long *after)
{
	printf("{\"kind\":\"%s\"", what);
	for (int i = 0; VMSTAT_KEYS[i]; i++)
		if (before[i] >= 0 && after[i] >= 0)
			printf(",\"%s\":%ld", VMSTAT_KEYS[i], after[i] - before[i]);
	printf("}\n");
}

/* One line: the pfns of the n pages base + i * stride pages now (and the move status). */
static void print_pfns_stride(const char *kind, int round, char *base, long n, long stride,
			      const int *status)
{
	printf("{\"kind\":\"%s\",\"round\":%d,\"base\":\"0x%lx\",\"stride\":%ld,\"pfn\":[",
	       kind, round, (unsigned long)base, stride);
	for (long i = 0; i < n; i++)
		printf("%s%llu", i ? "," : "", (unsigned long long)pfn_of(base + i * stride * PAGE));
	printf("]");
	if (status) {
		printf(",\"status\":[");
		for (long i = 0; i < n; i++)
			printf("%s%d", i ? "," : "", status[i]);
		printf("]");
	}
	printf("}\n");
	fflush(stdout);
}

static void print_pfns(const char *kind, int round, char *base, long n, const int *status)
{
	print_pfns_stride(kind, round, base, n, 1, status);
}

static long move(char *base, long n, int node, int *status)
{
	void **pages = calloc(n, sizeof(void *));
	int *nodes = calloc(n, sizeof(int));
	for (long i = 0; i < n; i++) {
		pages[i] = base + i * PAGE;
		nodes[i] = node;
		status[i] = -1;
	}
	long r = syscall(SYS_move_pages, 0, n, pages, nodes, status, MPOL_MF_MOVE_ALL);
	if (r < 0)
		r = -errno;
	free(pages);
	free(nodes);
	return r;
}

/* A child of the fork storm: reads every page (keeps them shared), lingers, exits. */
static void child_touch(char *base, long n, int linger_us)
{
	volatile char sum = 0;
	if (child_split) /* the folio stays order 9, mapped by ptes in this child */
		mprotect(base + (next_rand() % 256) * PAGE, 16 * PAGE, PROT_READ);
	for (long i = 0; i < n; i++)
		sum += base[i * PAGE];
	if (linger_us)
		usleep(linger_us);
	(void)sum;
	_exit(0);
}

/* The fork storm: a process that keeps `width` children alive until killed. */
static pid_t start_forker(char *base, long n, int width, int linger_us)
{
	pid_t f = fork();
	if (f)
		return f;
	int alive = 0;
	for (;;) {
		while (alive < width) {
			pid_t c = fork();
			if (c == 0)
				child_touch(base, n, linger_us ? linger_us + (int)(next_rand() % 500) : 0);
			if (c > 0)
				alive++;
		}
		if (wait(NULL) > 0)
			alive--;
	}
}

static void stop(pid_t f)
{
	kill(f, SIGKILL);
	waitpid(f, NULL, 0);
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

static char *region(long n, int huge)
{
	size_t len = n * PAGE + (huge ? HPAGE : 0);
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	if (huge) {
		p = (char *)(((uintptr_t)p + HPAGE - 1) & ~(HPAGE - 1));
		madvise(p, n * PAGE, MADV_HUGEPAGE);
	} else {
		madvise(p, n * PAGE, MADV_NOHUGEPAGE);
	}
	for (long i = 0; i < n; i++)
		memset(p + i * PAGE, (int)(i & 0xff) | 1, PAGE);
	return p;
}

/* The node page `base` is not on (move_pages without nodes says where it is). */
static int other_node(void *base)
{
	int where = -1;
	syscall(SYS_move_pages, 0, 1, &base, NULL, &where, 0);
	return where == 1 ? 0 : 1;
}

/* Pages move between node 0 and node 1 `rounds` times while the storm forks. */
static void migrate_rounds(char *base, long n, int rounds, int width, int linger_us)
{
	int *status = calloc(n, sizeof(int));
	int start = other_node(base) ? 1 : 0;
	print_pfns("pfns", 0, base, n, NULL);
	pid_t f = start_forker(base, n, width, linger_us);
	usleep(20000);
	for (int r = 1; r <= rounds; r++) {
		int node = (start + r + 1) % 2; /* round 1: the other node */
		long ret = move(base, n, node, status);
		printf("{\"kind\":\"move_pages\",\"round\":%d,\"node\":%d,\"ret\":%ld}\n", r, node,
		       ret);
		print_pfns("pfns", r, base, n, status);
	}
	stop(f);
	free(status);
}

/* Fragment memory (map 4n pages, keep every 4th), fork a storm, compact all zones. */
static void compaction(long n)
{
	const long stride = 4;
	char *p = region(stride * n, 0);
	for (long i = 0; i < stride * n; i++)
		if (i % stride)
			madvise(p + i * PAGE, PAGE, MADV_DONTNEED);
	int *none = NULL;
	print_pfns_stride("pfns", 0, p, n, stride, none);
	pid_t f = start_forker(p, stride * n, 3, 2000);
	usleep(20000);
	/* a pass may find none of our pages to move (the free memory is elsewhere, the pages
	 * are pinned under the storm's copies): ask again, up to 8 passes, until a kept page
	 * moved; pages that did not move keep their pfns, so one after-round is the truth */
	uint64_t *was = calloc(n, sizeof(uint64_t));
	for (long i = 0; i < n; i++)
		was[i] = pfn_of(p + i * stride * PAGE);
	int moved = 0;
	for (int pass = 0; pass < 8 && !moved; pass++) {
		int fd = open("/proc/sys/vm/compact_memory", O_WRONLY);
		if (fd >= 0) {
			if (write(fd, "1", 1) != 1)
				perror("compact_memory");
			close(fd);
		}
		for (long i = 0; i < n && !moved; i++)
			moved = pfn_of(p + i * stride * PAGE) != was[i];
	}
	free(was);
	stop(f);
	print_pfns_stride("pfns", 1, p, n, stride, none);
}

int main(int argc, char **argv)
{
	const char *scenario = argc > 1 ? argv[1] : "fork-vs-migrate";
	rng = argc > 2 ? strtoul(argv[2], NULL, 10) : 1;
	long before[32], after[32];
	pagemap_fd = open("/proc/self/pagemap", O_RDONLY);
	if (pagemap_fd < 0) {
		perror("pagemap");
		return 1;
	}
	setvbuf(stdout, NULL, _IOFBF, 1 << 20);
	printf("{\"kind\":\"start\",\"scenario\":\"%s\",\"seed\":%lu,\"pid\":%d,\"page_size\":%lu}\n",
	       scenario, rng, getpid(), PAGE);
	vmstat(before);
	if (!strcmp(scenario, "fork-vs-migrate")) {
		char *b = region(512, 0);
		migrate_rounds(b, 512, 6, 3, 3000);
	} else if (!strcmp(scenario, "exit-during-migration")) {
		char *b = region(512, 0);
		migrate_rounds(b, 512, 6, 6, 0);
	} else if (!strcmp(scenario, "thp-exit")) {
		char *b = region(512, 1);
		child_split = 1;
		migrate_rounds(b, 512, 6, 6, 0);
	} else if (!strcmp(scenario, "compaction")) {
		compaction(4096);
	} else if (!strcmp(scenario, "thp-split")) {
		char *b = region(512, 1);
		print_pfns("pfns", 0, b, 512, NULL);
		pid_t f = start_forker(b, 512, 3, 3000);
		usleep(20000);
		/* Split the pmd: the folio stays order 9, mapped by ptes. */
		mprotect(b + 256 * PAGE, 16 * PAGE, PROT_READ);
		printf("{\"kind\":\"split\",\"how\":\"mprotect\",\"first\":256,\"pages\":16}\n");
		int *status = calloc(512, sizeof(int));
		int node = other_node(b);
		/* Two moves of the folio; a move the storm's references made fail (page 0 kept
		 * its pfn) is tried again, up to 4 calls per move, each call a round of its own. */
		for (int r = 1, moved = 0, tries = 0; moved < 2 && r <= 8; r++) {
			uint64_t was = pfn_of(b);
			long ret = move(b, 512, node, status);
			printf("{\"kind\":\"move_pages\",\"round\":%d,\"node\":%d,\"ret\":%ld}\n", r,
			       node, ret);
			print_pfns("pfns", r, b, 512, status);
			if (pfn_of(b) != was || ++tries == 4) {
				moved++;
				tries = 0;
				node ^= 1;
			}
		}
		stop(f);
	} else {
		fprintf(stderr, "unknown scenario %s\n", scenario);
		return 2;
	}
	vmstat(after);
	print_vmstat("vmstat", before, after);
	printf("{\"kind\":\"end\"}\n");
	return 0;
}
