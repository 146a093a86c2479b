/*
 * The machine's memory bandwidth, in the shape of a merge: T threads each
 * stream three source arrays and write one (d = a ^ b ^ c, trivially
 * cheap), over buffers far larger than the caches. Prints the best of
 * several passes as bytes moved (3 read + 1 written) per second, the upper
 * bound for a soup of three models. Also a plain copy (memcpy) figure.
 *
 *   membw [MiB per array (default 256)] [threads (default: all cores)]
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct job {
    uint64_t *a, *b, *c, *d;
    size_t n;
    int copy;
} job;

static void *run(void *arg)
{
    job *j = arg;
    if (j->copy) {
        memcpy(j->d, j->a, j->n * 8);
        return NULL;
    }
    for (size_t i = 0; i < j->n; i++)
        j->d[i] = j->a[i] ^ j->b[i] ^ j->c[i];
    return NULL;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double pass(uint64_t **buf, size_t n, int threads, int copy)
{
    pthread_t tid[256];
    job jobs[256];
    size_t per = n / (size_t)threads;
    double t0 = now();
    for (int t = 0; t < threads; t++) {
        size_t o = per * (size_t)t;
        jobs[t] = (job){buf[0] + o, buf[1] + o, buf[2] + o, buf[3] + o, per, copy};
        pthread_create(&tid[t], NULL, run, &jobs[t]);
    }
    for (int t = 0; t < threads; t++)
        pthread_join(tid[t], NULL);
    return now() - t0;
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 256;
    int threads = argc > 2 ? atoi(argv[2]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1 || threads > 256 || mib < 1)
        return 2;
    size_t n = mib * (1u << 20) / 8;
    uint64_t *buf[4];
    for (int i = 0; i < 4; i++) {
        buf[i] = malloc(n * 8);
        if (!buf[i])
            return 1;
        memset(buf[i], i + 1, n * 8); /* fault the pages in */
    }
    double best3 = 1e30, bestc = 1e30;
    for (int r = 0; r < 5; r++) {
        double t = pass(buf, n, threads, 0);
        best3 = t < best3 ? t : best3;
        t = pass(buf, n, threads, 1);
        bestc = t < bestc ? t : bestc;
    }
    printf("{\"threads\": %d, \"merge_shaped_GBps\": %.3f, \"copy_GBps\": %.3f}\n", threads,
           (double)n * 8 * 4 / best3 / 1e9, (double)n * 8 * 2 / bestc / 1e9);
    return 0;
}
