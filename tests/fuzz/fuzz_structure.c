/*
 * libFuzzer target: a model's stacks of blocks, found from its tensor
 * names (engine/structure.c). The input is a list of names, one per line;
 * the first line, when it starts with "re:", is a --layers regex. Beyond
 * crashes, checks what callers rely on: a tensor in a stack has a position
 * inside it and a depth in [0, 1], and renaming a block's tensor to another
 * position lands it there (slices renumber layers that way).
 */
#include "ladle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NAMES 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), *names[MAX_NAMES];
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    size_t n = 0;
    const char *regex = NULL;
    for (char *line = text, *next; line && n < MAX_NAMES; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        if (line == text && !strncmp(line, "re:", 3))
            regex = line + 3;
        else if (*line)
            names[n++] = line;
    }
    lad_mem_tensor ts[MAX_NAMES];
    static const uint64_t shape[1] = {0};
    for (size_t i = 0; i < n; i++)
        ts[i] = (lad_mem_tensor){.name = names[i], .dtype = LAD_F32, .ndim = 1, .shape = shape};
    lad_model *m = NULL;
    lad_structure *s = NULL;
    lad_error err;
    if (lad_model_from_memory("fuzz", ts, n, NULL, &m, &err) == 0 &&
        lad_structure_build(m, regex ? &regex : NULL, regex ? 1 : 0, &s, &err) == 0) {
        for (size_t i = 0; i < n; i++) {
            lad_place p = lad_structure_place(s, names[i]);
            if (!(p.t >= 0 && p.t <= 1))
                abort();
            if (p.stack < 0)
                continue;
            if ((size_t)p.stack >= lad_structure_nstacks(s) || p.pos >= p.len ||
                p.len != lad_structure_stack(s, (size_t)p.stack)->len)
                abort();
            /* (a regex may not match a renamed name: only detected stacks) */
            char *moved = regex ? NULL
                                : lad_structure_rename(s, names[i], p.pos ? p.pos - 1 : p.pos + 1);
            if (moved) {
                lad_place q = lad_structure_place(s, moved);
                if (q.stack != p.stack || q.pos != (p.pos ? p.pos - 1 : p.pos + 1))
                    abort();
            }
            free(moved);
        }
    }
    lad_structure_free(s);
    lad_model_close(m);
    free(text);
    return 0;
}
