/*
 * Fuzz target: the GGUF reader (header, key-values of every type, arrays,
 * tensor infos, alignment, layout) on arbitrary bytes.
 *
 * Beyond "no crash", it checks the reader's promise: every tensor it
 * accepts lies inside the file, after the header, at an offset aligned to
 * general.alignment, has the bytes its ggml type and shape say, and does
 * not overlap the next; each readable tensor's first and last values are
 * read (dequantised when in blocks). An accepted file is then opened as a
 * model and written back as GGUF (a one-model soup), which must be read
 * again with the same tensors.
 */
#define _GNU_SOURCE
#include "ladle.h"
#include "scratch.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_gguf: accepted a file that breaks: %s\n", what);
        abort(); /* the fuzzer's signal for a finding */
    }
}

static uint64_t bytes_of(const lad_tensor *t)
{
    uint32_t type = t->q.ggml_type;
    if (!type)
        return t->nelem * lad_dtype_bits(t->dtype) / 8;
    return t->nelem / lad_ggml_block_size(type) * lad_ggml_type_size(type);
}

/* Writes the model back as GGUF (a soup of one) and reads it again. */
static void round_trip(const char *in, size_t n)
{
    const char *dir = scratch_dir("gguf");
    char out[160];
    snprintf(out, sizeof out, "%s/out.gguf", dir);
    unlink(out);
    char *argv[] = {"soup", (char *)in, "-o", out, "-q", "-j", "1", NULL};
    lad_job *j = NULL;
    lad_plan *p = NULL;
    lad_error err;
    if (lad_job_parse(7, argv, &j, &err) == 0 && lad_job_plan(j, NULL, NULL, &p, &err) == 0 &&
        lad_plan_execute(p, NULL, &err) == 0) {
        lad_model *m = NULL;
        check(lad_model_open(out, &m, &err) == 0, "ladle's own GGUF output does not read back");
        check(m->ntensors == n, "the output lost tensors");
        lad_model_close(m);
    }
    lad_plan_free(p);
    lad_job_free(j);
    unlink(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4 || memcmp(data, "GGUF", 4))
        return 0; /* other magics go to the other readers */
    int fd = memfd_input("fuzz.gguf", data, size);
    if (fd < 0)
        return 0;
    lad_file f = {.path = "fuzz.gguf", .fd = fd, .size = size};
    lad_tensor *ts = NULL;
    size_t n = 0;
    lad_error err;
    if (lad_gguf_parse(&f, &ts, &n, &err) == 0) {
        uint64_t align = lad_gguf_alignment(&f), end = f.data_start;
        for (size_t i = 0; i < n; i++) {
            const lad_tensor *t = &ts[i];
            check(t->file == &f, "tensor not tied to its file");
            check(t->offset >= end, "tensors overlap or precede the data area");
            check((t->offset - f.data_start) % align == 0, "tensor not aligned");
            check(t->nbytes <= f.size - t->offset, "tensor past end of file");
            check(t->nbytes == bytes_of(t), "byte size disagrees with shape x type");
            end = t->offset + t->nbytes;
            float v[2];
            if (t->q.scheme == LAD_Q_GGML && t->nelem)
                check(lad_quant_read(t, 0, 1, v, &err) == 0 &&
                          lad_quant_read(t, t->nelem - 1, 1, v + 1, &err) == 0,
                      err.msg);
        }
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        round_trip(path, n);
    }
    for (size_t i = 0; i < n; i++)
        free(ts[i].name);
    free(ts);
    json_decref(f.metadata);
    lad_gguf_free(&f);
    close(fd);
    return 0;
}
