/*
 * The I/O floor of a merge: exactly ladle's file traffic for a soup of K
 * models, with no computation. T threads take 256 KiB-output work items in
 * order, pread() the matching slice of every input (data areas only, as
 * ladle reads them) and pwrite() one slice to a new output file. A merge
 * cannot be faster than this on the same files; the ratio ladle / floor
 * shows what the conversions and kernels cost on top of the kernel's
 * page-cache copies.
 *
 *   iofloor OUT THREADS IN1 IN2 ...      (prints seconds)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ITEM (256u << 10)

static int in_fd[64], out_fd, nin;
static uint64_t size;
static atomic_uint_least64_t next;

static void *run(void *arg)
{
    (void)arg;
    unsigned char *buf = malloc((size_t)ITEM * (size_t)(nin + 1));
    for (;;) {
        uint64_t off = atomic_fetch_add(&next, ITEM);
        if (off >= size)
            break;
        size_t n = size - off < ITEM ? (size_t)(size - off) : ITEM;
        for (int j = 0; j < nin; j++)
            if (pread(in_fd[j], buf + (size_t)j * ITEM, n, (off_t)off) != (ssize_t)n)
                exit(1);
        if (pwrite(out_fd, buf, n, (off_t)off) != (ssize_t)n)
            exit(1);
    }
    free(buf);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc - 3 > 64)
        return 2;
    int threads = atoi(argv[2]);
    nin = argc - 3;
    struct stat st;
    for (int j = 0; j < nin; j++) {
        in_fd[j] = open(argv[3 + j], O_RDONLY);
        if (in_fd[j] < 0 || fstat(in_fd[j], &st) != 0)
            return 1;
        size = j == 0 || (uint64_t)st.st_size < size ? (uint64_t)st.st_size : size;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    out_fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out_fd < 0 || ftruncate(out_fd, (off_t)size) != 0)
        return 1;
    pthread_t tid[256];
    for (int t = 0; t < threads; t++)
        pthread_create(&tid[t], NULL, run, NULL);
    for (int t = 0; t < threads; t++)
        pthread_join(tid[t], NULL);
    if (fsync(out_fd) != 0 || close(out_fd) != 0)
        return 1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%.4f\n", (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
    return 0;
}
