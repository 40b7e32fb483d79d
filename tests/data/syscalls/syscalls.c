#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
    size_t len = 4 << 20;
    char *p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned long mask = 1;
    syscall(SYS_mbind, p, len, 2, &mask, 64, 3);      /* MPOL_BIND, MOVE|STRICT */
    syscall(SYS_mbind, p, len, 2, &mask, 64, 0xff);   /* bad flags: -EINVAL */
    madvise(p, len, MADV_HUGEPAGE);
    madvise(p, len, 12345);                           /* -EINVAL */
    char *q = mremap(p, len, 2 * len, MREMAP_MAYMOVE);
    pid_t c = fork();
    if (c == 0) _exit(0);
    waitpid(c, 0, 0);
    munmap(q, 2 * len);
    return 0;
}
