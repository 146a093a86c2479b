/* ladle index OUT: completes a merge in parts (--part I/N) whose last part
 * stopped before publishing it, or says which parts are still to run. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>

static const char HELP[] =
    "usage: ladle index OUT\n"
    "\n"
    "Completes a merge written in parts (any merge command with --part I/N -o OUT, on\n"
    "one machine or many, e.g. a Slurm array job on shared storage): once every part's\n"
    "shards are in OUT, writes the index, config, tokenizer and card the parts staged,\n"
    "so OUT becomes the model the whole merge writes, byte for byte. The last part to\n"
    "finish does this itself; run `ladle index` when it stopped before, or to see which\n"
    "parts are missing (exit 1). A complete OUT is left as it is.\n"
    "\n"
    "  -h, --help            this help\n";

static int take(void *ctx, int id, const char *arg, lad_error *err)
{
    (void)ctx;
    (void)id;
    (void)arg;
    (void)err;
    return 0;
}

int cmd_index(int argc, char **argv)
{
    static const lad_optdef defs[] = {{"help", 'h', false}, {0}};
    char *const *pos;
    int npos, code;
    if (!cli_parse("index", HELP, argc, argv, defs, false, take, NULL, &pos, &npos, &code))
        return code;
    if (npos != 1) {
        free((void *)pos);
        return usage_error("index", "expected one folder OUT");
    }
    lad_error err = {0};
    lad_parts_status st;
    int rc = 0;
    if (lad_parts_publish(pos[0], NULL, &st, &err) != 0)
        rc = report(&err);
    else if (!st.complete) {
        fprintf(stderr, "ladle: error: %s: %zu shard%s of %u parts still missing: %s; run those "
                        "parts (the same command with --part I/%u), then ladle index again\n",
                pos[0], st.missing, st.missing == 1 ? "" : "s", st.parts, st.missing_text,
                st.parts);
        rc = 1;
    } else {
        note(false, "index: %s is complete%s", pos[0],
             st.published ? " (index, config, tokenizer and card written)" : "");
    }
    free((void *)pos);
    return rc;
}
