/* What the commands share: option parsing with help and usage errors, the
 * one-line error, notes and the progress bar. */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int usage_error(const char *cmd, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "ladle: error: %s%s%s (see 'ladle %s%s--help')\n", cmd ? cmd : "",
            cmd ? ": " : "", msg, cmd ? cmd : "", cmd ? " " : "");
    return EXIT_USAGE;
}

int report_cmd(const char *cmd, const lad_error *err)
{
    if (err->usage)
        return usage_error(cmd, "%s", err->msg);
    fprintf(stderr, "ladle: error: %s\n", err->msg);
    return err->interrupted ? EXIT_INTERRUPTED : 1;
}

int report(const lad_error *err) { return report_cmd(NULL, err); }

void note(bool quiet, const char *fmt, ...)
{
    if (quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("ladle: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

bool cli_parse(const char *cmd, const char *help, int argc, char **argv, const lad_optdef *defs,
               bool stop_at_positional, lad_opt_fn take, void *ctx, char *const **pos, int *npos,
               int *exit_code)
{
    lad_error err = {0};
    int rc = lad_opts_parse(argc, argv, defs, stop_at_positional, take, ctx, pos, npos, &err);
    if (rc == 1) {
        fputs(help, stdout);
        *exit_code = 0;
    } else if (rc != 0) {
        *exit_code = report_cmd(cmd, &err);
    }
    return rc == 0;
}

int progress_bar(void *ctx, uint64_t done, uint64_t total, double seconds, bool final)
{
    (void)ctx;
    double frac = total ? (double)done / (double)total : 1.0;
    int width = 30, fill = (int)(frac * width);
    char bar[32], d[32], tot[32];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    lad_format_bytes(done, d, sizeof d);
    lad_format_bytes(total, tot, sizeof tot);
    double rate = seconds > 0 ? (double)done / seconds : 0;
    fprintf(stderr, "\r[%s] %3.0f%% %s / %s written  %.2f GB/s  %s %.0fs ", bar, frac * 100, d,
            tot, rate / 1e9, final ? "in" : "eta",
            final ? seconds : (rate > 0 ? (double)(total - done) / rate : 0));
    if (final)
        fputc('\n', stderr);
    return 0;
}
