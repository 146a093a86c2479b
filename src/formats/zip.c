/*
 * A zip archive's table of contents (APPNOTE.TXT 6.3), enough for the
 * archives torch.save writes: the end of central directory record (zip64's
 * when the archive needs it), the central directory, and each entry's local
 * header, which says where its bytes start. Nothing is decompressed: a
 * compressed or encrypted entry is listed as not stored, and its reader
 * refuses it.
 */
#include "zip.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define EOCD_SIG 0x06054b50u
#define EOCD64_SIG 0x06064b50u
#define LOC64_SIG 0x07064b50u
#define CDIR_SIG 0x02014b50u
#define LOCAL_SIG 0x04034b50u
#define MAX_CDIR (256u << 20)
#define MAX_ENTRIES (1u << 20)

static uint16_t u16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t u32(const unsigned char *p) { return (uint32_t)u16(p) | (uint32_t)u16(p + 2) << 16; }
static uint64_t u64(const unsigned char *p) { return (uint64_t)u32(p) | (uint64_t)u32(p + 4) << 32; }

/* Where the central directory is, and how many entries it holds. */
static int find_cdir(const lad_file *f, uint64_t *off, uint64_t *size, uint64_t *count,
                     lad_error *err)
{
    size_t tail = (size_t)(f->size < 65557 ? f->size : 65557);
    unsigned char *buf = malloc(tail + 1);
    if (!buf)
        return lad_fail(err, "out of memory");
    if (lad_file_read(f, buf, tail, f->size - tail, err)) {
        free(buf);
        return -1;
    }
    size_t at = (size_t)-1;
    for (size_t i = tail >= 22 ? tail - 22 + 1 : 0; i-- > 0;)
        if (u32(buf + i) == EOCD_SIG && i + 22 + u16(buf + i + 20) == tail) {
            at = i;
            break;
        }
    if (at == (size_t)-1) {
        free(buf);
        return lad_fail(err, "not a zip archive (no end of central directory record)");
    }
    const unsigned char *e = buf + at;
    if (u16(e + 4) || u16(e + 6)) {
        free(buf);
        return lad_fail(err, "a zip archive split over several files");
    }
    *count = u16(e + 10);
    *size = u32(e + 12);
    *off = u32(e + 16);
    uint64_t eocd = f->size - tail + at;
    if (eocd >= 20) { /* a zip64 locator right before it */
        unsigned char loc[20], rec[56];
        if (lad_file_read(f, loc, 20, eocd - 20, err)) {
            free(buf);
            return -1;
        }
        if (u32(loc) == LOC64_SIG) {
            uint64_t r = u64(loc + 8);
            if (r > f->size || f->size - r < 56 || lad_file_read(f, rec, 56, r, err) ||
                u32(rec) != EOCD64_SIG) {
                free(buf);
                return lad_fail(err, "a broken zip64 end of central directory record");
            }
            *count = u64(rec + 32);
            *size = u64(rec + 40);
            *off = u64(rec + 48);
        }
    }
    free(buf);
    if (*off > f->size || *size > f->size - *off)
        return lad_fail(err, "its central directory lies outside the file");
    if (*size > MAX_CDIR || *count > MAX_ENTRIES)
        return lad_fail(err, "its central directory holds more than ladle reads (%llu entries)",
                        (unsigned long long)*count);
    return 0;
}

/* The zip64 extra field's 64-bit values for the fields marked 0xFFFFFFFF. */
static int zip64_extra(const unsigned char *x, size_t n, uint64_t *usize, uint64_t *csize,
                       uint64_t *loff, bool need_u, bool need_c, bool need_o)
{
    while (n >= 4) {
        size_t id = u16(x), len = u16(x + 2);
        if (len > n - 4)
            return -1;
        if (id == 1) {
            const unsigned char *v = x + 4;
            size_t left = len;
            uint64_t *out[3] = {usize, csize, loff};
            bool need[3] = {need_u, need_c, need_o};
            for (int k = 0; k < 3; k++)
                if (need[k]) {
                    if (left < 8)
                        return -1;
                    *out[k] = u64(v);
                    v += 8;
                    left -= 8;
                }
            return 0;
        }
        x += 4 + len;
        n -= 4 + len;
    }
    return need_u || need_c || need_o ? -1 : 0;
}

static int read_entry(const lad_file *f, const unsigned char *c, size_t left, uint64_t cdir_off,
                      lad_zip_entry *e, size_t *used, lad_error *err)
{
    if (left < 46 || u32(c) != CDIR_SIG)
        return lad_fail(err, "a broken central directory entry");
    size_t nlen = u16(c + 28), xlen = u16(c + 30), clen = u16(c + 32);
    if (46 + nlen + xlen + clen > left)
        return lad_fail(err, "a central directory entry runs past the directory");
    uint16_t flags = u16(c + 8), method = u16(c + 10);
    uint64_t csize = u32(c + 20), usize = u32(c + 24), loff = u32(c + 42);
    if (zip64_extra(c + 46 + nlen, xlen, &usize, &csize, &loff, usize == 0xFFFFFFFFu,
                    csize == 0xFFFFFFFFu, loff == 0xFFFFFFFFu))
        return lad_fail(err, "an entry's zip64 sizes are missing");
    if (memchr(c + 46, 0, nlen))
        return lad_fail(err, "an entry's name holds a NUL byte");
    if (!(e->name = malloc(nlen + 1)))
        return lad_fail(err, "out of memory");
    memcpy(e->name, c + 46, nlen);
    e->name[nlen] = '\0';
    /* Its bytes start after the local header, whose name and extra field
     * may differ in length from the central directory's. */
    unsigned char lh[30];
    if (loff > cdir_off || cdir_off - loff < 30 || lad_file_read(f, lh, 30, loff, err) ||
        u32(lh) != LOCAL_SIG)
        return lad_fail(err, "entry '%s': no local header where the directory says", e->name);
    e->offset = loff + 30 + u16(lh + 26) + u16(lh + 28);
    e->size = csize;
    e->stored = method == 0 && !(flags & 1) && csize == usize;
    if (e->offset > cdir_off || csize > cdir_off - e->offset)
        return lad_fail(err, "entry '%s' runs into the central directory", e->name);
    *used = 46 + nlen + xlen + clen;
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const lad_zip_entry *)a)->name, ((const lad_zip_entry *)b)->name);
}

int lad_zip_open(const lad_file *f, lad_zip *z, lad_error *err)
{
    memset(z, 0, sizeof *z);
    uint64_t off = 0, size = 0, count = 0;
    if (find_cdir(f, &off, &size, &count, err))
        return -1;
    unsigned char *cd = malloc((size_t)size + 1);
    z->e = calloc((size_t)count + 1, sizeof *z->e);
    if (!cd || !z->e) {
        free(cd);
        return lad_fail(err, "out of memory");
    }
    int rc = lad_file_read(f, cd, (size_t)size, off, err);
    size_t at = 0;
    for (uint64_t i = 0; rc == 0 && i < count; i++) {
        size_t used = 0;
        rc = read_entry(f, cd + at, (size_t)size - at, off, &z->e[z->n], &used, err);
        z->n++; /* counted even on failure so free() releases its name */
        at += used;
    }
    free(cd);
    if (rc == 0) {
        qsort(z->e, z->n, sizeof *z->e, by_name);
        for (size_t i = 1; i < z->n && rc == 0; i++)
            if (!strcmp(z->e[i].name, z->e[i - 1].name))
                rc = lad_fail(err, "entry '%s' appears twice", z->e[i].name);
    }
    if (rc)
        lad_zip_free(z);
    return rc;
}

const lad_zip_entry *lad_zip_find(const lad_zip *z, const char *name)
{
    lad_zip_entry key = {.name = (char *)name};
    return bsearch(&key, z->e, z->n, sizeof *z->e, by_name);
}

void lad_zip_free(lad_zip *z)
{
    for (size_t i = 0; i < z->n; i++)
        free(z->e[i].name);
    free(z->e);
    memset(z, 0, sizeof *z);
}
