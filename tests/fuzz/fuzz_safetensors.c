/*
 * Fuzz target: the safetensors file parser (header length, JSON header,
 * dtypes, shapes, offsets, tiling, metadata) on arbitrary bytes.
 *
 * Beyond "no crash", it checks the parser's promise: every tensor it
 * accepts lies inside the file's data area and has the size its shape and
 * dtype say. An accepted file is then opened as a model, which pairs its
 * quantised weights with their scales (formats/quant.c), and each paired
 * weight's first and last values are read through its scales.
 */
#define _GNU_SOURCE
#include "ladle.h"
#include "scratch.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_safetensors: accepted a file that breaks: %s\n", what);
        abort(); /* the fuzzer's signal for a finding */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_input("fuzz.safetensors", data, size);
    if (fd < 0)
        return 0;
    lad_file f = {.path = "fuzz.safetensors", .fd = fd, .size = size};
    lad_tensor *ts = NULL;
    size_t n = 0;
    lad_error err;
    if (lad_safetensors_parse(&f, &ts, &n, &err) == 0) {
        uint64_t covered = 0;
        for (size_t i = 0; i < n; i++) {
            const lad_tensor *t = &ts[i];
            check(t->file == &f, "tensor not tied to its file");
            check(t->offset >= f.data_start, "tensor before the data area");
            check(t->nbytes <= f.size - t->offset, "tensor past end of file");
            check(t->nelem * lad_dtype_bits(t->dtype) == t->nbytes * 8,
                  "byte size disagrees with shape x dtype");
            covered += t->nbytes;
        }
        check(covered == f.size - f.data_start, "tensors do not tile the data area");
        char path[64];
        lad_model *m = NULL;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        if (lad_model_open(path, &m, &err) == 0) {
            for (size_t i = 0; i < m->ntensors; i++) {
                const lad_tensor *t = &m->tensors[i];
                float v[2];
                if (!t->q.scheme || !t->nelem)
                    continue;
                check(!t->hidden && t->q.scales && t->q.scales->hidden, "scales not paired");
                check(lad_quant_read(t, 0, 1, v, &err) == 0 &&
                          lad_quant_read(t, t->nelem - 1, 1, v + 1, &err) == 0,
                      "a paired weight's values cannot be read");
            }
            lad_model_close(m);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(ts[i].name);
    free(ts);
    json_decref(f.metadata);
    close(fd);
    return 0;
}
