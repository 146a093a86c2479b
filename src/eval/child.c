#define _GNU_SOURCE /* pipe2 */
/*
 * Child processes with captured output, several at once: the evaluator
 * commands of greedy soups and sweeps, and the merges that make their
 * candidates.
 *
 * A child is finished when it has exited (reaped), not when its pipes
 * close: a background process it left behind may hold them open forever.
 * What it wrote before exiting is still in the pipes and is drained then.
 */
#include "ladle.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KILL_GRACE 2.0 /* seconds between SIGTERM and SIGKILL */

double lad_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int lad_child_start(lad_child *c, char *const argv[], char *const env[], bool own_group,
                    double timeout, lad_error *err)
{
    memset(c, 0, sizeof *c);
    c->fd[0] = c->fd[1] = -1;
    int p[2][2] = {{-1, -1}, {-1, -1}};
    for (int s = 0; s < 2; s++)
        if (!(c->text[s] = calloc(LAD_TAIL_BYTES + 1, 1)) || pipe2(p[s], O_CLOEXEC) != 0) {
            lad_fail(err, "cannot start '%s': %s", argv[0], c->text[s] ? strerror(errno)
                                                                      : "out of memory");
            goto fail;
        }
    pid_t pid = fork();
    if (pid < 0) {
        lad_fail(err, "cannot start '%s': fork: %s", argv[0], strerror(errno));
        goto fail;
    }
    if (pid == 0) {
        /* The child: only async-signal-safe calls until exec, bar setenv
         * (the parent is single-threaded here: merges run in children). */
        if (own_group)
            setpgid(0, 0);
        signal(SIGXFSZ, SIG_DFL); /* ignored by ladle; do not pass that on */
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2(null, STDIN_FILENO);
        dup2(p[0][1], STDOUT_FILENO);
        dup2(p[1][1], STDERR_FILENO);
        for (size_t i = 0; env && env[i]; i++)
            putenv(env[i]);
        execvp(argv[0], argv);
        const char *why = strerror(errno);
        (void)!write(STDERR_FILENO, "cannot run ", 11);
        (void)!write(STDERR_FILENO, argv[0], strlen(argv[0]));
        (void)!write(STDERR_FILENO, ": ", 2);
        (void)!write(STDERR_FILENO, why, strlen(why));
        _exit(127);
    }
    if (own_group)
        setpgid(pid, pid); /* also here: no race with an early stop */
    for (int s = 0; s < 2; s++) {
        close(p[s][1]);
        c->fd[s] = p[s][0];
        fcntl(c->fd[s], F_SETFL, fcntl(c->fd[s], F_GETFL) | O_NONBLOCK);
    }
    c->pid = pid;
    c->own_group = own_group;
    c->started = lad_now();
    c->timeout = timeout;
    return 0;
fail:
    for (int s = 0; s < 2; s++) {
        for (int e = 0; e < 2; e++)
            if (p[s][e] >= 0)
                close(p[s][e]);
        free(c->text[s]);
        c->text[s] = NULL;
    }
    return -1;
}

/* Reads what is there; keeps the last LAD_TAIL_BYTES. */
static void drain(lad_child *c, int s)
{
    char buf[8192]; /* smaller than LAD_TAIL_BYTES */
    while (c->fd[s] >= 0) {
        ssize_t n = read(c->fd[s], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            close(c->fd[s]);
            c->fd[s] = -1;
            return;
        }
        size_t k = (size_t)n, keep = c->len[s]; /* k < LAD_TAIL_BYTES */
        if (keep + k > LAD_TAIL_BYTES) {
            size_t drop = keep + k - LAD_TAIL_BYTES;
            memmove(c->text[s], c->text[s] + drop, keep - drop);
            keep -= drop;
        }
        memcpy(c->text[s] + keep, buf, k);
        c->len[s] = keep + k;
        c->text[s][c->len[s]] = 0;
    }
}

static void signal_child(lad_child *c, int sig)
{
    kill(c->own_group ? -c->pid : c->pid, sig);
}

void lad_child_stop(lad_child *c)
{
    if (!c->pid || c->exited || c->stop_stage)
        return;
    signal_child(c, SIGTERM);
    c->stop_stage = 1;
    c->stop_time = lad_now();
}

void lad_child_poll(lad_child *const *cs, size_t n, int timeout_ms)
{
    enum { MAX_FDS = 256 }; /* 2 per child; more children are polled next time */
    struct pollfd fds[MAX_FDS];
    lad_child *who[MAX_FDS];
    int side[MAX_FDS];
    nfds_t nf = 0;
    for (size_t i = 0; i < n; i++)
        for (int s = 0; s < 2; s++)
            if (cs[i]->pid && !cs[i]->exited && cs[i]->fd[s] >= 0 && nf < MAX_FDS) {
                fds[nf] = (struct pollfd){.fd = cs[i]->fd[s], .events = POLLIN};
                who[nf] = cs[i];
                side[nf++] = s;
            }
    if (nf && poll(fds, nf, timeout_ms) > 0) {
        for (nfds_t k = 0; k < nf; k++)
            if (fds[k].revents)
                drain(who[k], side[k]);
    } else if (!nf) {
        struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL); /* both pipes closed: wait for the exit */
    }
    double now = lad_now();
    for (size_t i = 0; i < n; i++) {
        lad_child *c = cs[i];
        if (!c->pid || c->exited)
            continue;
        int st;
        pid_t r = waitpid(c->pid, &st, WNOHANG);
        if (r == c->pid) {
            c->exited = true;
            c->status = st;
            for (int s = 0; s < 2; s++)
                drain(c, s);
            /* Whatever it left behind keeps the pipes; we stop listening. */
            for (int s = 0; s < 2; s++)
                if (c->fd[s] >= 0) {
                    close(c->fd[s]);
                    c->fd[s] = -1;
                }
            continue;
        }
        if (c->timeout > 0 && !c->stop_stage && now - c->started > c->timeout) {
            c->timed_out = true;
            lad_child_stop(c);
        } else if (c->stop_stage == 1 && now - c->stop_time > KILL_GRACE) {
            signal_child(c, SIGKILL);
            c->stop_stage = 2;
        }
    }
}

bool lad_child_ok(const lad_child *c)
{
    return c->exited && !c->timed_out && WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0;
}

void lad_child_describe(const lad_child *c, char *buf, size_t len)
{
    if (c->timed_out)
        snprintf(buf, len, "timed out after %g s", c->timeout);
    else if (!c->exited)
        snprintf(buf, len, "still running");
    else if (WIFEXITED(c->status))
        snprintf(buf, len, "exit status %d", WEXITSTATUS(c->status));
    else if (WIFSIGNALED(c->status))
        snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(c->status),
                 strsignal(WTERMSIG(c->status)));
    else
        snprintf(buf, len, "ended with wait status %d", c->status);
}

void lad_child_free(lad_child *c)
{
    if (c->pid && !c->exited) { /* never leave a zombie or an orphan */
        signal_child(c, SIGKILL);
        waitpid(c->pid, NULL, 0);
    }
    for (int s = 0; s < 2; s++) {
        if (c->fd[s] >= 0)
            close(c->fd[s]);
        free(c->text[s]);
    }
    memset(c, 0, sizeof *c);
    c->fd[0] = c->fd[1] = -1;
}
