/*
 * Fuzz target: a sharded model's index (model.safetensors.index.json), read
 * by lad_model_open on a folder that holds two valid shards. The fuzzer
 * controls the index only; the shards are fixed, so what is exercised is
 * the index's JSON, its weight_map, shard names (no paths), and the
 * both-ways agreement between index and shards.
 */
#include "ladle.h"
#include "scratch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *dir;
static char index_path[160];

/* One shard holding tensor NAME: 2 F32 values. */
static void write_shard(const char *file, const char *name)
{
    char header[160], path[128];
    int hl = snprintf(header, sizeof header,
                      "{\"%s\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", name);
    uint64_t len = (uint64_t)hl;
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    float v[2] = {1, 2};
    fwrite(&len, 8, 1, f); /* little-endian hosts only: x86-64, arm64 */
    fwrite(header, 1, (size_t)hl, f);
    fwrite(v, sizeof v, 1, f);
    fclose(f);
}

static void setup(void)
{
    dir = scratch_dir("index");
    write_shard("model-00001-of-00002.safetensors", "a.weight");
    write_shard("model-00002-of-00002.safetensors", "b.weight");
    snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir)
        setup();
    if (write_input(index_path, data, size))
        return 0;
    lad_model *m = NULL;
    lad_error err;
    if (lad_model_open(dir, &m, &err) == 0) {
        /* Accepted: every tensor is one the shards hold, from its shard
         * (an index may leave a shard out: the index defines the model). */
        for (size_t i = 0; i < m->ntensors; i++) {
            const lad_tensor *t = &m->tensors[i];
            const char *want = strcmp(t->name, "a.weight") == 0   ? "00001-of-00002.safetensors"
                               : strcmp(t->name, "b.weight") == 0 ? "00002-of-00002.safetensors"
                                                                  : NULL;
            size_t pl = strlen(t->file->path);
            if (!want || pl < strlen(want) || strcmp(t->file->path + pl - strlen(want), want)) {
                fprintf(stderr, "fuzz_index: accepted an index that disagrees with its shards\n");
                abort();
            }
        }
        lad_model_close(m);
    }
    return 0;
}
