/* SIGINT/SIGTERM: set a flag that the engine polls between chunks, so the
 * writer can remove its temporary output before exiting. A second signal
 * kills the process at once (the temporary then stays, named .*.ladle-tmp-*).
 * SIGXFSZ (a file-size limit) is ignored so the write fails with EFBIG and
 * is cleaned up like any other write error. */
#include "ladle.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t flag;

static void on_signal(int sig)
{
    flag = 1;
    signal(sig, SIG_DFL);
}

void lad_interrupt_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGXFSZ, SIG_IGN);
}

bool lad_interrupted(void) { return flag != 0; }
