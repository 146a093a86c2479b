/* Every merge command (lerp, soup, task, ckpt, slerp, ties, dare,
 * breadcrumbs, della, stock, merge): the library parses the arguments into
 * a job (src/recipe/job.c); this file plans it, runs it or prints the plan
 * (--dry-run), and reports. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void print_shape(const lad_plan_tensor *pt)
{
    printf("[");
    for (int d = 0; d < pt->ndim; d++)
        printf("%s%llu", d ? ", " : "", (unsigned long long)pt->shape[d]);
    printf("]");
}

/* --dry-run: what would be written, from what, how. */
static int print_plan(const lad_plan *plan, const lad_job *job, lad_error *err)
{
    printf("inputs:\n");
    for (size_t j = 0; j < lad_job_ninputs(job); j++)
        printf("  %zu  %-10s %s\n", j, lad_job_role(job, j), lad_job_input(job, j));
    printf("tensors:\n");
    for (size_t i = 0; i < lad_plan_ntensors(plan); i++) {
        const lad_plan_tensor *pt = lad_plan_tensor_at(plan, i);
        printf("  %s %s ", pt->name, lad_dtype_name(pt->out_dtype));
        print_shape(pt);
        if (pt->kind == LAD_COPY) {
            printf(" copy of %s from %s\n", pt->in[0]->name, pt->in[0]->file->path);
            continue;
        }
        if (pt->nin == 1 && strcmp(pt->in[0]->name, pt->name)) /* renamed (slices) */
            printf(" from %s of %s", pt->in[0]->name, pt->in[0]->file->path);
        printf(" %s", lad_job_command(job));
        char desc[4096];
        if (lad_job_describe(job, plan, i, desc, sizeof desc, err) != 0)
            return -1;
        printf("%s%s", desc[0] ? " " : "", desc);
        for (size_t j = 0; pt->rows && j < pt->nin; j++) /* see the plan's warnings */
            if (pt->rows[j])
                printf(" (rows of %s matched to the output's vocabulary)", pt->in[j]->file->path);
        printf("\n");
    }
    char rd[32], wr[32];
    lad_format_bytes(lad_plan_bytes_read(plan), rd, sizeof rd);
    lad_format_bytes(lad_plan_bytes_written(plan), wr, sizeof wr);
    printf("%zu tensors: would read %s and write %s (dry run: nothing written)\n",
           lad_plan_ntensors(plan), rd, wr);
    return 0;
}

static int run(const char *cmd, lad_job *job)
{
    const char *out = lad_job_output(job);
    bool quiet = lad_job_quiet(job);
    if (!out)
        return usage_error(cmd, "no output given (-o OUT)");
    if (lad_job_note(job))
        note(quiet, "%s", lad_job_note(job));
    if (!quiet && isatty(STDERR_FILENO))
        lad_job_set_progress(job, progress_bar, NULL);
    lad_error err = {0};
    lad_plan *plan = NULL;
    int rc = 0;
    if (lad_job_plan(job, NULL, NULL, &plan, &err) != 0) {
        rc = report_cmd(cmd, &err);
        lad_plan_free(plan);
        return rc;
    }
    for (size_t i = 0; i < lad_plan_nwarnings(plan); i++) /* even with -q */
        fprintf(stderr, "ladle: warning: %s\n", lad_plan_warning(plan, i));
    if (lad_job_dry_run(job)) {
        if (print_plan(plan, job, &err) != 0)
            rc = report(&err);
    } else {
        lad_run_stats st;
        if (lad_plan_execute(plan, &st, &err) != 0) {
            rc = report(&err);
        } else {
            if (st.nonfinite) /* a warning even with -q: the model may be broken */
                fprintf(stderr,
                        "ladle: warning: %s: %llu NaN/Inf value%s in %zu tensor%s (first: %s): "
                        "an input holds NaN/Inf, or a value overflowed (f16 ends at 65504); "
                        "check with care\n",
                        out, (unsigned long long)st.nonfinite, st.nonfinite == 1 ? "" : "s",
                        st.nonfinite_tensors, st.nonfinite_tensors == 1 ? "" : "s",
                        st.first_nonfinite);
            char rd[32], wr[32];
            size_t n = lad_plan_ntensors(plan);
            lad_format_bytes(st.bytes_read, rd, sizeof rd);
            lad_format_bytes(st.bytes_written, wr, sizeof wr);
            if (lad_plan_nparts(plan))
                note(quiet, "%s: this part wrote %zu of %s's %zu shard%s in %.2fs; %s",
                     lad_job_command(job), st.part_shards, out, st.nshards,
                     st.nshards == 1 ? "" : "s", st.seconds,
                     st.part_published ? "every shard is in: the model is complete"
                     : st.part_complete ? "every shard is in: another part is publishing it"
                                        : "the other parts' shards are still to come (the "
                                          "last part, or `ladle index`, completes it)");
            else {
                /* a multi-pass method: what its statistics passes read besides */
                char all[64] = "";
                if (st.bytes_read_passes > st.bytes_read + st.bytes_read / 20) {
                    char ab[32];
                    lad_format_bytes(st.bytes_read_passes, ab, sizeof ab);
                    snprintf(all, sizeof all, " (%s over every pass)", ab);
                }
                note(quiet,
                     "%s: wrote %s to %s (%zu tensor%s in %zu file%s) from %s read%s, in %.2fs",
                     lad_job_command(job), wr, out, n, n == 1 ? "" : "s", st.nshards,
                     st.nshards == 1 ? "" : "s", rd, all, st.seconds);
            }
        }
    }
    lad_plan_free(plan);
    return rc;
}

/* Options that belong to the greedy soup, not to a plain one. */
static bool greedy_option(const char *arg)
{
    static const char *const opts[] = {"--eval", "--scores", "--strict", "--json", "--jobs",
                                       "--minimize", "--keep-candidates", "--work", "--log",
                                       "--resume", "--eval-timeout"};
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++)
        if (!strncmp(arg, opts[i], strlen(opts[i])))
            return true;
    return false;
}

int cmd_merge(int argc, char **argv)
{
    const char *cmd = argv[0];
    if (!strcmp(cmd, "soup")) {
        for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
            if (!strcmp(argv[i], "--greedy"))
                return cmd_greedy(argc, argv);
        for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
            if (greedy_option(argv[i]))
                return usage_error(cmd, "--eval, --scores, --strict, --json and the other search "
                                        "options go with --greedy");
    }
    lad_job *job = NULL;
    lad_error err = {0};
    int rc = lad_job_parse(argc, argv, &job, &err);
    if (rc == 1) {
        fputs(merge_help(cmd), stdout);
        return 0;
    }
    if (rc != 0)
        return report_cmd(cmd, &err);
    rc = run(cmd, job);
    lad_job_free(job);
    return rc;
}
