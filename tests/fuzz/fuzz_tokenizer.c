/*
 * Fuzz target: a tokenizer.json, parsed on its own, then as the tokenizer
 * of a fine-tune whose embedding and head have more rows than its base's:
 * the merge matches their rows by token (engine/vocab.c), reordering,
 * dropping and filling rows, into the base's vocabulary, the fine-tune's
 * and their union, and must write the rows of the one asked for.
 */
#include "ladle.h"
#include "scratch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { H = 3, BASE_ROWS = 6, FT_ROWS = 9 };

static char base_dir[160], ft_dir[160], ft_tok[192];

/* model.safetensors with a [rows, H] F32 embedding and head. */
static void write_model(const char *dir, int rows)
{
    char header[512], path[200];
    uint64_t n = (uint64_t)rows * H * 4;
    int hl = snprintf(header, sizeof header,
                      "{\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[%d,%d],"
                      "\"data_offsets\":[0,%llu]},\"lm_head.weight\":{\"dtype\":\"F32\","
                      "\"shape\":[%d,%d],\"data_offsets\":[%llu,%llu]}}",
                      rows, H, (unsigned long long)n, rows, H, (unsigned long long)n,
                      (unsigned long long)(2 * n));
    uint64_t len = (uint64_t)hl;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    fwrite(&len, 8, 1, f); /* little-endian hosts only: x86-64, arm64 */
    fwrite(header, 1, (size_t)hl, f);
    for (int i = 0; i < 2 * rows * H; i++) {
        float v = (float)i;
        fwrite(&v, 4, 1, f);
    }
    fclose(f);
}

static void setup(void)
{
    const char *dir = scratch_dir("tokenizer");
    snprintf(base_dir, sizeof base_dir, "%s/base", dir);
    snprintf(ft_dir, sizeof ft_dir, "%s/ft", dir);
    snprintf(ft_tok, sizeof ft_tok, "%s/tokenizer.json", ft_dir);
    char tok[200];
    snprintf(tok, sizeof tok, "%s/tokenizer.json", base_dir);
    static const char base_json[] =
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"d\":3,\"e\":4},"
        "\"merges\":[]},\"added_tokens\":[{\"id\":5,\"content\":\"<s>\"}]}";
    if (mkdir(base_dir, 0700) || mkdir(ft_dir, 0700) ||
        write_input(tok, (const uint8_t *)base_json, sizeof base_json - 1))
        abort();
    write_model(base_dir, BASE_ROWS);
    write_model(ft_dir, FT_ROWS);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!base_dir[0])
        setup();
    lad_vocab v;
    lad_error err;
    if (lad_vocab_parse((const char *)data, size, "fuzz", &v, &err) == 0) {
        /* every token is found, at an id holding the same bytes, never a
         * higher one than its own */
        for (size_t id = 0; id < v.n; id++) {
            if (!v.tok[id])
                continue;
            int64_t got = lad_vocab_find(&v, v.tok[id], v.len[id]);
            if (got < 0 || (size_t)got > id || v.len[got] != v.len[id] ||
                memcmp(v.tok[got], v.tok[id], v.len[id]) != 0) {
                fprintf(stderr, "fuzz_tokenizer: token of id %zu found at %lld\n", id,
                        (long long)got);
                abort();
            }
        }
        lad_vocab_free(&v);
    }
    if (write_input(ft_tok, data, size))
        return 0;
    /* merged into memory (no file to write and sync per input), the output
     * in the base's vocabulary, the fine-tune's, and their union */
    static const char *const sources[] = {"base", "ft", "union"};
    for (int k = 0; k < 3; k++) {
        char *argv[] = {"lerp", base_dir, ft_dir, "--alpha", "0.5", "-j", "1",
                        "--tokenizer-source", k == 1 ? ft_dir : (char *)sources[k]};
        lad_job *job = NULL;
        lad_plan *plan = NULL;
        if (lad_job_parse(9, argv, &job, &err) != 0)
            abort();
        if (lad_job_plan(job, NULL, NULL, &plan, &err) == 0) {
            size_t n = lad_plan_ntensors(plan);
            void *dst[2] = {NULL, NULL};
            if (n != 2)
                abort();
            for (size_t i = 0; i < n; i++) {
                const lad_plan_tensor *pt = lad_plan_tensor_at(plan, i);
                uint64_t want = k == 0 ? BASE_ROWS : k == 1 ? FT_ROWS : pt->shape[0];
                if (pt->shape[0] != want || pt->shape[0] < BASE_ROWS || pt->shape[1] != H)
                    abort(); /* the rows of the vocabulary asked for */
                dst[i] = malloc(pt->nbytes + 1);
            }
            if (!dst[0] || !dst[1] || lad_plan_execute_memory(plan, dst, NULL, &err) != 0) {
                fprintf(stderr, "fuzz_tokenizer: a planned merge failed: %s\n", err.msg);
                abort();
            }
            free(dst[0]);
            free(dst[1]);
        }
        lad_plan_free(plan);
        lad_job_free(job);
    }
    return 0;
}
