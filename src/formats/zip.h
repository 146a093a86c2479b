/* The entries of a zip archive, as torch.save writes them (formats/zip.c):
 * stored, not compressed, so each entry's bytes are a range of the file
 * that the engine reads in place. */
#ifndef LADLE_ZIP_H
#define LADLE_ZIP_H

#include "ladle.h"

typedef struct lad_zip_entry {
    char *name;
    uint64_t offset;       /* its first byte in the file */
    uint64_t size;
    bool stored;           /* false: compressed (its bytes are not readable in place) */
} lad_zip_entry;

typedef struct lad_zip {
    lad_zip_entry *e;
    size_t n;
} lad_zip;

/* Reads the central directory of the archive in f (zip64 too). Every
 * entry's range is checked to lie in the file. */
int lad_zip_open(const lad_file *f, lad_zip *z, lad_error *err);
const lad_zip_entry *lad_zip_find(const lad_zip *z, const char *name);
void lad_zip_free(lad_zip *z);

#endif
