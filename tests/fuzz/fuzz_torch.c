/*
 * Fuzz target: PyTorch checkpoints (formats/zip.c, formats/torch_read.c) on
 * arbitrary bytes: the zip directory (zip64 too), the pickle machine and
 * the tensors it describes.
 *
 * Beyond "no crash", it checks the reader's promise: every tensor it
 * accepts has the size its shape and dtype say and lies inside the file,
 * where its first and last bytes can be read.
 */
#define _GNU_SOURCE
#include "ladle.h"
#include "scratch.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void check(bool ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_torch: accepted a file that breaks: %s\n", what);
        abort(); /* the fuzzer's signal for a finding */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_input("fuzz.bin", data, size);
    if (fd < 0)
        return 0;
    lad_file f = {.path = "fuzz.bin", .fd = fd, .size = size};
    lad_tensor *ts = NULL;
    size_t n = 0;
    lad_error err;
    if (lad_torch_parse(&f, &ts, &n, &err) == 0) {
        for (size_t i = 0; i < n; i++) {
            const lad_tensor *t = &ts[i];
            unsigned char b;
            check(t->file == &f, "tensor not tied to its file");
            check(t->nbytes <= f.size && t->offset <= f.size - t->nbytes,
                  "tensor past end of file");
            check(t->nelem * lad_dtype_bits(t->dtype) == t->nbytes * 8,
                  "byte size disagrees with shape x dtype");
            if (t->nbytes)
                check(lad_file_read(&f, &b, 1, t->offset, &err) == 0 &&
                          lad_file_read(&f, &b, 1, t->offset + t->nbytes - 1, &err) == 0,
                      "a tensor's bytes cannot be read");
        }
    }
    for (size_t i = 0; i < n; i++)
        free(ts[i].name);
    free(ts);
    close(fd);
    return 0;
}
