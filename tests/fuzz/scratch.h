/* What the file-reading fuzz targets share: a scratch folder of their own,
 * made once, and writing each input into a file in it. */
#ifndef LADLE_FUZZ_SCRATCH_H
#define LADLE_FUZZ_SCRATCH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* /tmp/ladle-fuzz-NAME-XXXXXX, made on the first call. */
static inline const char *scratch_dir(const char *name)
{
    static char dir[96];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/ladle-fuzz-%s-XXXXXX", name);
        if (!mkdtemp(dir))
            abort();
    }
    return dir;
}

/* Writes the input to path; 0 on success. */
static inline int write_input(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t put = fwrite(data, 1, size, f);
    return fclose(f) == 0 && put == size ? 0 : -1;
}

#ifdef _GNU_SOURCE
#include <sys/mman.h>
#include <unistd.h>

/* The input as an anonymous file (memfd), or -1. */
static inline int memfd_input(const char *name, const uint8_t *data, size_t size)
{
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd >= 0 && size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return -1;
    }
    return fd;
}
#endif

#endif
