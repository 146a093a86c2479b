/*
 * Fuzz target: the text ladle reads back from things it runs or wrote
 * before: an evaluation log resumed with --resume (JSON Lines, possibly cut
 * short by a crash, possibly edited by hand) and an evaluator's standard
 * output, from which the score is read.
 */
#include "ladle.h"
#include "scratch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char path[128];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0])
        snprintf(path, sizeof path, "%s/log.jsonl", scratch_dir("journal"));
    if (write_input(path, data, size))
        return 0;
    lad_journal j;
    lad_error err;
    if (lad_journal_open(&j, path, true, &err) == 0) {
        double score;
        lad_journal_find(&j, "ladle lerp A B --alpha 0.5", "python3 eval.py {model}", &score);
    }
    lad_journal_close(&j);

    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    double score;
    if (lad_eval_score(text, &score) == 0 && !isfinite(score)) {
        fprintf(stderr, "fuzz_journal: a non-finite score was accepted\n");
        abort();
    }
    free(text);
    return 0;
}
