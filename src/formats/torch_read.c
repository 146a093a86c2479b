/*
 * PyTorch checkpoints (.bin, .pt, .pth): the zip archive torch.save writes
 * (PyTorch 1.6 and later), read without Python and without running any of
 * it.
 *
 *   PREFIX/data.pkl      the state dict, pickled
 *   PREFIX/data/KEY      each storage's raw bytes (stored, not compressed)
 *   PREFIX/byteorder     "little" (absent in older archives: little)
 *
 * data.pkl runs on a small pickle machine that knows the opcodes a pickled
 * state dict uses (protocols 2 to 5) and a short list of globals:
 * collections.OrderedDict, torch._utils._rebuild_tensor_v2,
 * _rebuild_parameter(_with_state) and the typed storages (torch.FloatStorage,
 * ...). Any other global (os.system, builtins.eval, numpy, a custom class) is
 * refused by name the moment the pickle names it: nothing is called, not
 * even an allowed global; _rebuild_tensor_v2's arguments only describe where
 * a tensor's bytes lie. The result must be a dict of names to tensors, each
 * contiguous in its storage, which must lie within its archive entry; the
 * tensors then read from the archive in place, like a safetensors file's.
 */
#include "zip.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define MAX_PICKLE (64u << 20)
#define MAX_MEMO (1u << 24)

typedef enum vkind {
    V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_TUPLE, V_LIST, V_DICT, V_GLOBAL, V_STORAGE,
    V_TENSOR,
} vkind;

/* The globals a state dict may name. */
enum {
    G_ORDERED_DICT, G_REBUILD_TENSOR, G_REBUILD_PARAM, G_REBUILD_PARAM_STATE, G_STORAGE,
};

static const struct {
    const char *module, *name;
    int kind;
    lad_dtype dtype;
} GLOBALS[] = {
    {"collections", "OrderedDict", G_ORDERED_DICT, LAD_U8},
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_TENSOR, LAD_U8},
    {"torch._utils", "_rebuild_parameter", G_REBUILD_PARAM, LAD_U8},
    {"torch._utils", "_rebuild_parameter_with_state", G_REBUILD_PARAM_STATE, LAD_U8},
    {"torch", "FloatStorage", G_STORAGE, LAD_F32},
    {"torch", "DoubleStorage", G_STORAGE, LAD_F64},
    {"torch", "HalfStorage", G_STORAGE, LAD_F16},
    {"torch", "BFloat16Storage", G_STORAGE, LAD_BF16},
    {"torch", "LongStorage", G_STORAGE, LAD_I64},
    {"torch", "IntStorage", G_STORAGE, LAD_I32},
    {"torch", "ShortStorage", G_STORAGE, LAD_I16},
    {"torch", "CharStorage", G_STORAGE, LAD_I8},
    {"torch", "ByteStorage", G_STORAGE, LAD_U8},
    {"torch", "BoolStorage", G_STORAGE, LAD_BOOL},
};

typedef struct value value;
struct value {
    vkind k;
    int64_t i;              /* INT, BOOL; GLOBAL: its index in GLOBALS */
    double f;
    char *s;                /* STR (NUL-terminated; len bytes) */
    size_t len;
    value **items;          /* TUPLE, LIST; DICT: key, value, key, value, ... */
    size_t n, cap;
    const lad_zip_entry *entry; /* STORAGE: its bytes */
    lad_dtype dtype;        /* STORAGE, TENSOR */
    uint64_t numel;         /* STORAGE: elements */
    value *storage;         /* TENSOR */
    uint64_t offset;        /* TENSOR: elements into its storage */
    int ndim;
    uint64_t shape[LAD_MAX_DIMS], stride[LAD_MAX_DIMS];
};

typedef struct vm {
    const unsigned char *start, *p, *end;
    value **stack;
    size_t sp, stack_cap;
    size_t *marks;
    size_t nmarks, marks_cap;
    value **memo;
    size_t memo_cap, nmemo; /* nmemo: entries set (MEMOIZE's next index) */
    value **all;            /* every value made, freed at the end */
    size_t nall, all_cap;
    const lad_zip *zip;
    const char *prefix;     /* "archive/" */
    lad_error *err;
} vm;

static value *make(vm *m, vkind k)
{
    if (m->nall == m->all_cap) {
        size_t cap = m->all_cap ? m->all_cap * 2 : 256;
        value **a = realloc(m->all, cap * sizeof *a);
        if (!a)
            return NULL;
        m->all = a;
        m->all_cap = cap;
    }
    value *v = calloc(1, sizeof *v);
    if (v) {
        v->k = k;
        m->all[m->nall++] = v;
    }
    return v;
}

static int oom(vm *m) { return lad_fail(m->err, "out of memory"); }

static int push(vm *m, value *v)
{
    if (!v)
        return oom(m);
    if (m->sp == m->stack_cap) {
        size_t cap = m->stack_cap ? m->stack_cap * 2 : 64;
        value **s = realloc(m->stack, cap * sizeof *s);
        if (!s)
            return oom(m);
        m->stack = s;
        m->stack_cap = cap;
    }
    m->stack[m->sp++] = v;
    return 0;
}

static value *pop(vm *m)
{
    size_t floor = m->nmarks ? m->marks[m->nmarks - 1] : 0;
    if (m->sp <= floor) {
        lad_fail(m->err, "the pickle takes a value from an empty stack");
        return NULL;
    }
    return m->stack[--m->sp];
}

static value *top(vm *m)
{
    size_t floor = m->nmarks ? m->marks[m->nmarks - 1] : 0;
    if (m->sp <= floor) {
        lad_fail(m->err, "the pickle uses a value from an empty stack");
        return NULL;
    }
    return m->stack[m->sp - 1];
}

static int append_item(vm *m, value *c, value *v)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 4;
        value **it = realloc(c->items, cap * sizeof *it);
        if (!it)
            return oom(m);
        c->items = it;
        c->cap = cap;
    }
    c->items[c->n++] = v;
    return 0;
}

/* The values since the last MARK, in a new tuple or list (the mark popped). */
static value *since_mark(vm *m, vkind k)
{
    if (!m->nmarks) {
        lad_fail(m->err, "the pickle closes a MARK it never opened");
        return NULL;
    }
    size_t from = m->marks[--m->nmarks];
    value *t = make(m, k);
    if (!t) {
        oom(m);
        return NULL;
    }
    for (size_t i = from; i < m->sp; i++)
        if (append_item(m, t, m->stack[i]))
            return NULL;
    m->sp = from;
    return t;
}

static int need(vm *m, size_t n)
{
    if ((size_t)(m->end - m->p) < n)
        return lad_fail(m->err, "the pickle ends in the middle of an instruction");
    return 0;
}

static uint64_t le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int push_int(vm *m, int64_t i)
{
    value *v = make(m, V_INT);
    if (v)
        v->i = i;
    return push(m, v);
}

static int push_str(vm *m, size_t n)
{
    if (need(m, n))
        return -1;
    value *v = make(m, V_STR);
    if (!v || !(v->s = malloc(n + 1)))
        return oom(m);
    memcpy(v->s, m->p, n);
    v->s[n] = '\0';
    v->len = n;
    m->p += n;
    return push(m, v);
}

static int memo_put(vm *m, uint64_t idx)
{
    value *v = top(m);
    if (!v)
        return -1;
    /* A pickler numbers its memo entries from 0, at most one per byte of
     * the pickle: a larger index is not one a pickler wrote. */
    if (idx >= MAX_MEMO || idx > (uint64_t)(m->end - m->start))
        return lad_fail(m->err, "the pickle's memo index %llu is beyond its length",
                        (unsigned long long)idx);
    if (idx >= m->memo_cap) {
        size_t cap = m->memo_cap ? m->memo_cap : 64;
        while (cap <= idx)
            cap *= 2;
        value **mm = realloc(m->memo, cap * sizeof *mm);
        if (!mm)
            return oom(m);
        memset(mm + m->memo_cap, 0, (cap - m->memo_cap) * sizeof *mm);
        m->memo = mm;
        m->memo_cap = cap;
    }
    m->nmemo += !m->memo[idx];
    m->memo[idx] = v;
    return 0;
}

static int memo_get(vm *m, uint64_t idx)
{
    if (idx >= m->memo_cap || !m->memo[idx])
        return lad_fail(m->err, "the pickle refers to memo entry %llu, which it never set",
                        (unsigned long long)idx);
    return push(m, m->memo[idx]);
}

/* A global the pickle names: one of the allowed ones, else refused. */
static int push_global(vm *m, const char *module, size_t mlen, const char *name, size_t nlen)
{
    for (size_t g = 0; g < sizeof GLOBALS / sizeof *GLOBALS; g++)
        if (strlen(GLOBALS[g].module) == mlen && !memcmp(GLOBALS[g].module, module, mlen) &&
            strlen(GLOBALS[g].name) == nlen && !memcmp(GLOBALS[g].name, name, nlen)) {
            value *v = make(m, V_GLOBAL);
            if (v)
                v->i = (int64_t)g;
            return push(m, v);
        }
    return lad_fail(m->err, "the pickle names '%.*s.%.*s', which is not part of a state dict "
                            "of tensors; ladle never runs code from a checkpoint, so it cannot "
                            "read this file (save a plain state dict, or convert it to "
                            "safetensors where you trust it)",
                    (int)(mlen > 200 ? 200 : mlen), module, (int)(nlen > 200 ? 200 : nlen),
                    name);
}

static int op_global(vm *m)
{
    const unsigned char *nl1 = memchr(m->p, '\n', (size_t)(m->end - m->p));
    const unsigned char *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(m->end - nl1 - 1)) : NULL;
    if (!nl2)
        return lad_fail(m->err, "the pickle ends in the middle of a GLOBAL");
    const char *mod = (const char *)m->p, *name = (const char *)nl1 + 1;
    size_t mlen = (size_t)(nl1 - m->p), nlen = (size_t)(nl2 - nl1 - 1);
    m->p = nl2 + 1;
    return push_global(m, mod, mlen, name, nlen);
}

static int op_stack_global(vm *m)
{
    value *name = pop(m), *mod = name ? pop(m) : NULL;
    if (!mod)
        return -1;
    if (mod->k != V_STR || name->k != V_STR)
        return lad_fail(m->err, "the pickle's STACK_GLOBAL takes two strings");
    return push_global(m, mod->s, mod->len, name->s, name->len);
}

static bool is_int(const value *v) { return v && (v->k == V_INT || v->k == V_BOOL); }

/* ('storage', torch.XStorage, key, location, numel): the storage's bytes are
 * archive entry PREFIX/data/KEY. */
static int op_persid(vm *m)
{
    value *pid = pop(m);
    if (!pid)
        return -1;
    if (pid->k != V_TUPLE || pid->n != 5 || pid->items[0]->k != V_STR ||
        strcmp(pid->items[0]->s, "storage") || pid->items[1]->k != V_GLOBAL ||
        GLOBALS[pid->items[1]->i].kind != G_STORAGE || pid->items[2]->k != V_STR ||
        !is_int(pid->items[4]) || pid->items[4]->i < 0)
        return lad_fail(m->err, "the pickle loads a persistent object that is not a typed "
                                "storage ('storage', torch.XStorage, key, location, numel)");
    lad_dtype dt = GLOBALS[pid->items[1]->i].dtype;
    const char *key = pid->items[2]->s;
    if (strchr(key, '/') || pid->items[2]->len != strlen(key))
        return lad_fail(m->err, "storage key '%s' is not a plain name", key);
    char *name = lad_asprintf("%sdata/%s", m->prefix, key);
    if (!name)
        return oom(m);
    const lad_zip_entry *e = lad_zip_find(m->zip, name);
    free(name);
    if (!e)
        return lad_fail(m->err, "storage '%s' is not in the archive", key);
    if (!e->stored)
        return lad_fail(m->err, "storage '%s' is compressed; torch.save stores its archives "
                                "uncompressed, and ladle reads them in place",
                        key);
    uint64_t numel = (uint64_t)pid->items[4]->i, bytes;
    if (lad_mul_overflow(numel, lad_dtype_bits(dt) / 8, &bytes) || bytes > e->size)
        return lad_fail(m->err, "storage '%s' says %llu elements of %s, but the archive holds "
                                "%llu bytes for it",
                        key, (unsigned long long)numel, lad_dtype_name(dt),
                        (unsigned long long)e->size);
    value *v = make(m, V_STORAGE);
    if (!v)
        return oom(m);
    v->entry = e;
    v->dtype = dt;
    v->numel = numel;
    return push(m, v);
}

static int int_tuple(vm *m, const value *t, uint64_t *out, int *n, const char *what)
{
    if (!t || t->k != V_TUPLE || t->n > LAD_MAX_DIMS)
        return lad_fail(m->err, "a tensor's %s is not a tuple of at most %d integers", what,
                        LAD_MAX_DIMS);
    for (size_t i = 0; i < t->n; i++) {
        if (!is_int(t->items[i]) || t->items[i]->i < 0)
            return lad_fail(m->err, "a tensor's %s holds a negative or non-integer value", what);
        out[i] = (uint64_t)t->items[i]->i;
    }
    *n = (int)t->n;
    return 0;
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
 * backward_hooks[, metadata]): only recorded, never called. */
static value *rebuild_tensor(vm *m, const value *args)
{
    if (args->n < 4 || args->items[0]->k != V_STORAGE || !is_int(args->items[1]) ||
        args->items[1]->i < 0) {
        lad_fail(m->err, "_rebuild_tensor_v2 is given arguments a tensor never has");
        return NULL;
    }
    value *t = make(m, V_TENSOR);
    if (!t) {
        oom(m);
        return NULL;
    }
    int nstride;
    if (int_tuple(m, args->items[2], t->shape, &t->ndim, "size") ||
        int_tuple(m, args->items[3], t->stride, &nstride, "stride"))
        return NULL;
    if (nstride != t->ndim) {
        lad_fail(m->err, "a tensor's size and stride differ in length");
        return NULL;
    }
    t->storage = args->items[0];
    t->dtype = t->storage->dtype;
    t->offset = (uint64_t)args->items[1]->i;
    return t;
}

static int op_reduce(vm *m)
{
    value *args = pop(m), *fn = args ? pop(m) : NULL;
    if (!fn)
        return -1;
    if (fn->k != V_GLOBAL || args->k != V_TUPLE)
        return lad_fail(m->err, "the pickle calls something that is not a known global");
    value *r = NULL;
    switch (GLOBALS[fn->i].kind) {
    case G_ORDERED_DICT:
        if (args->n != 0)
            return lad_fail(m->err, "OrderedDict is given arguments (a state dict's has none)");
        r = make(m, V_DICT);
        break;
    case G_REBUILD_TENSOR:
        if (!(r = rebuild_tensor(m, args)))
            return -1;
        break;
    case G_REBUILD_PARAM:
    case G_REBUILD_PARAM_STATE:
        if (args->n < 1 || args->items[0]->k != V_TENSOR)
            return lad_fail(m->err, "%s is not given a tensor", GLOBALS[fn->i].name);
        r = args->items[0];
        break;
    default:
        return lad_fail(m->err, "the pickle calls torch.%s, which a state dict never does",
                        GLOBALS[fn->i].name);
    }
    return push(m, r);
}

static int set_items(vm *m, value *d, value *const *kv, size_t n)
{
    if (!d || d->k != V_DICT)
        return lad_fail(m->err, "the pickle sets items of something that is not a dict");
    if (n % 2)
        return lad_fail(m->err, "SETITEMS with a key but no value");
    for (size_t i = 0; i < n; i++)
        if (append_item(m, d, kv[i]))
            return -1;
    return 0;
}

/* Runs data.pkl to its STOP; *out is the pickled object. */
static int run(vm *m, value **out)
{
    while (m->p < m->end) {
        unsigned char op = *m->p++;
        int rc = 0;
        value *a, *b, *c;
        switch (op) {
        case 0x80: /* PROTO */
            rc = need(m, 1);
            if (rc == 0 && (*m->p < 2 || *m->p > 5))
                rc = lad_fail(m->err, "pickle protocol %d (ladle reads 2 to 5)", *m->p);
            m->p++;
            break;
        case 0x95: /* FRAME: a length hint */
            if ((rc = need(m, 8)) == 0)
                m->p += 8;
            break;
        case '.': /* STOP */
            if (!(*out = pop(m)))
                return -1;
            return 0;
        case '(': /* MARK */
            if (m->nmarks == m->marks_cap) {
                size_t cap = m->marks_cap ? m->marks_cap * 2 : 16;
                size_t *mk = realloc(m->marks, cap * sizeof *mk);
                if (!mk)
                    return oom(m);
                m->marks = mk;
                m->marks_cap = cap;
            }
            m->marks[m->nmarks++] = m->sp;
            break;
        case '}': /* EMPTY_DICT */
            rc = push(m, make(m, V_DICT));
            break;
        case ']': /* EMPTY_LIST */
            rc = push(m, make(m, V_LIST));
            break;
        case ')': /* EMPTY_TUPLE */
            rc = push(m, make(m, V_TUPLE));
            break;
        case 't': /* TUPLE */
            rc = (a = since_mark(m, V_TUPLE)) ? push(m, a) : -1;
            break;
        case 'l': /* LIST */
            rc = (a = since_mark(m, V_LIST)) ? push(m, a) : -1;
            break;
        case 'd': /* DICT */
            if (!(a = since_mark(m, V_TUPLE)))
                return -1;
            b = make(m, V_DICT);
            rc = b ? set_items(m, b, a->items, a->n) : oom(m);
            if (rc == 0)
                rc = push(m, b);
            break;
        case 0x85: /* TUPLE1 */
        case 0x86: /* TUPLE2 */
        case 0x87: { /* TUPLE3 */
            size_t n = (size_t)(op - 0x84);
            value *items[3];
            for (size_t i = n; i-- > 0;)
                if (!(items[i] = pop(m)))
                    return -1;
            if (!(a = make(m, V_TUPLE)))
                return oom(m);
            for (size_t i = 0; i < n && rc == 0; i++)
                rc = append_item(m, a, items[i]);
            if (rc == 0)
                rc = push(m, a);
            break;
        }
        case 'J': /* BININT */
            if ((rc = need(m, 4)) == 0) {
                rc = push_int(m, (int32_t)(uint32_t)le(m->p, 4));
                m->p += 4;
            }
            break;
        case 'K': /* BININT1 */
            if ((rc = need(m, 1)) == 0)
                rc = push_int(m, *m->p++);
            break;
        case 'M': /* BININT2 */
            if ((rc = need(m, 2)) == 0) {
                rc = push_int(m, (int64_t)le(m->p, 2));
                m->p += 2;
            }
            break;
        case 0x8a: { /* LONG1 */
            if ((rc = need(m, 1)) != 0)
                break;
            size_t n = *m->p++;
            if (n > 8)
                return lad_fail(m->err, "the pickle holds an integer of %zu bytes", n);
            if ((rc = need(m, n)) != 0)
                break;
            uint64_t u = n ? le(m->p, (int)n) : 0;
            if (n && n < 8 && (m->p[n - 1] & 0x80))
                u |= ~0ull << (8 * n); /* sign-extended */
            m->p += n;
            rc = push_int(m, (int64_t)u);
            break;
        }
        case 'G': { /* BINFLOAT: big-endian */
            if ((rc = need(m, 8)) != 0)
                break;
            uint64_t u = 0;
            for (int i = 0; i < 8; i++)
                u = u << 8 | m->p[i];
            m->p += 8;
            if (!(a = make(m, V_FLOAT)))
                return oom(m);
            memcpy(&a->f, &u, sizeof a->f);
            rc = push(m, a);
            break;
        }
        case 'X': /* BINUNICODE */
        case 'B': /* BINBYTES */
            if ((rc = need(m, 4)) == 0) {
                size_t n = (size_t)le(m->p, 4);
                m->p += 4;
                rc = push_str(m, n);
            }
            break;
        case 0x8c: /* SHORT_BINUNICODE */
        case 'C':  /* SHORT_BINBYTES */
            if ((rc = need(m, 1)) == 0)
                rc = push_str(m, *m->p++);
            break;
        case 0x8d: /* BINUNICODE8 */
        case 0x8e: /* BINBYTES8 */
            if ((rc = need(m, 8)) == 0) {
                uint64_t n = le(m->p, 8);
                m->p += 8;
                rc = n > MAX_PICKLE ? lad_fail(m->err, "a string longer than the pickle")
                                    : push_str(m, (size_t)n);
            }
            break;
        case 0x88: /* NEWTRUE */
        case 0x89: /* NEWFALSE */
            if (!(a = make(m, V_BOOL)))
                return oom(m);
            a->i = op == 0x88;
            rc = push(m, a);
            break;
        case 'N': /* NONE */
            rc = push(m, make(m, V_NONE));
            break;
        case 'c': /* GLOBAL */
            rc = op_global(m);
            break;
        case 0x93: /* STACK_GLOBAL */
            rc = op_stack_global(m);
            break;
        case 'q': /* BINPUT */
            if ((rc = need(m, 1)) == 0)
                rc = memo_put(m, *m->p++);
            break;
        case 'r': /* LONG_BINPUT */
            if ((rc = need(m, 4)) == 0) {
                rc = memo_put(m, le(m->p, 4));
                m->p += 4;
            }
            break;
        case 0x94: /* MEMOIZE */
            rc = memo_put(m, m->nmemo);
            break;
        case 'h': /* BINGET */
            if ((rc = need(m, 1)) == 0)
                rc = memo_get(m, *m->p++);
            break;
        case 'j': /* LONG_BINGET */
            if ((rc = need(m, 4)) == 0) {
                rc = memo_get(m, le(m->p, 4));
                m->p += 4;
            }
            break;
        case 'Q': /* BINPERSID */
            rc = op_persid(m);
            break;
        case 'R': /* REDUCE */
            rc = op_reduce(m);
            break;
        case 'b': /* BUILD: a dict's attributes (_metadata) or a tensor's state */
            if (!(a = pop(m)) || !(b = top(m)))
                return -1;
            if (b->k != V_DICT && b->k != V_TENSOR)
                rc = lad_fail(m->err, "the pickle sets the state of something that is neither "
                                      "a dict nor a tensor");
            break;
        case 's': /* SETITEM */
            if (!(b = pop(m)) || !(a = pop(m)) || !(c = top(m)))
                return -1;
            {
                value *kv[2] = {a, b};
                rc = set_items(m, c, kv, 2);
            }
            break;
        case 'u': /* SETITEMS */
            if (!(a = since_mark(m, V_TUPLE)) || !(c = top(m)))
                return -1;
            rc = set_items(m, c, a->items, a->n);
            break;
        case 'a': /* APPEND */
            if (!(a = pop(m)) || !(c = top(m)))
                return -1;
            rc = c->k == V_LIST ? append_item(m, c, a)
                                : lad_fail(m->err, "APPEND to something not a list");
            break;
        case 'e': /* APPENDS */
            if (!(a = since_mark(m, V_TUPLE)) || !(c = top(m)))
                return -1;
            if (c->k != V_LIST)
                return lad_fail(m->err, "APPENDS to something not a list");
            for (size_t i = 0; i < a->n && rc == 0; i++)
                rc = append_item(m, c, a->items[i]);
            break;
        case '0': /* POP */
            rc = pop(m) ? 0 : -1;
            break;
        case '1': /* POP_MARK */
            rc = since_mark(m, V_TUPLE) ? 0 : -1;
            break;
        case '2': /* DUP */
            rc = (a = top(m)) ? push(m, a) : -1;
            break;
        default:
            return lad_fail(m->err, "pickle opcode 0x%02x at byte %zu is not one a state dict "
                                    "uses; ladle does not read it",
                            op, (size_t)(m->p - 1 - m->start));
        }
        if (rc)
            return -1;
    }
    return lad_fail(m->err, "the pickle ends without STOP");
}

/* Is the tensor's data one block, in row-major order? */
static bool contiguous(const value *t)
{
    uint64_t want = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] == 0)
            return true;
        if (t->shape[d] != 1 && t->stride[d] != want)
            return false;
        want *= t->shape[d];
    }
    return true;
}

static int to_tensor(vm *m, const char *name, const value *v, lad_file *file, lad_tensor *t)
{
    memset(t, 0, sizeof *t);
    if (v->k != V_TENSOR)
        return lad_fail(m->err, "state dict entry '%s' is not a tensor (ladle reads a dict of "
                                "names to tensors)",
                        name);
    t->dtype = v->dtype;
    t->ndim = v->ndim;
    t->nelem = 1;
    for (int d = 0; d < v->ndim; d++)
        if (lad_mul_overflow(t->nelem, v->shape[d], &t->nelem))
            return lad_fail(m->err, "tensor '%s': its shape overflows", name);
    memcpy(t->shape, v->shape, sizeof t->shape);
    if (!contiguous(v))
        return lad_fail(m->err, "tensor '%s' is a strided view of its storage; save it "
                                "contiguous (tensor.contiguous()) to read it in place",
                        name);
    const value *s = v->storage;
    uint64_t es = lad_dtype_bits(v->dtype) / 8;
    if (v->offset > s->numel || t->nelem > s->numel - v->offset)
        return lad_fail(m->err, "tensor '%s' runs past the end of its storage", name);
    t->nbytes = t->nelem * es;
    t->offset = s->entry->offset + v->offset * es;
    t->file = file;
    if (!(t->name = lad_strdup(name)))
        return oom(m);
    return 0;
}

static void vm_free(vm *m)
{
    for (size_t i = 0; i < m->nall; i++) {
        free(m->all[i]->s);
        free(m->all[i]->items);
        free(m->all[i]);
    }
    free(m->all);
    free(m->stack);
    free(m->marks);
    free(m->memo);
}

/* PREFIX/data.pkl: the one entry of that name, PREFIX its folder. */
static const lad_zip_entry *find_pickle(const lad_zip *z, char *prefix, size_t len,
                                        lad_error *err)
{
    const lad_zip_entry *found = NULL;
    for (size_t i = 0; i < z->n; i++) {
        const char *nm = z->e[i].name, *slash = strchr(nm, '/');
        if (!slash || strcmp(slash + 1, "data.pkl"))
            continue;
        if (found) {
            lad_fail(err, "two pickles (%s and %s) in one archive", found->name, nm);
            return NULL;
        }
        found = &z->e[i];
        size_t n = (size_t)(slash - nm) + 1;
        if (n >= len) {
            lad_fail(err, "an archive folder name of %zu bytes", n);
            return NULL;
        }
        memcpy(prefix, nm, n);
        prefix[n] = '\0';
    }
    if (!found)
        lad_fail(err, "a zip archive without data.pkl: not a checkpoint torch.save wrote");
    else if (!found->stored)
        lad_fail(err, "its data.pkl is compressed");
    return found && found->stored ? found : NULL;
}

static int check_byteorder(const lad_file *f, const lad_zip *z, const char *prefix,
                           lad_error *err)
{
    char *name = lad_asprintf("%sbyteorder", prefix), buf[8] = {0};
    if (!name)
        return lad_fail(err, "out of memory");
    const lad_zip_entry *e = lad_zip_find(z, name);
    free(name);
    if (!e)
        return 0;
    if (!e->stored || e->size > 6 || lad_file_read(f, buf, (size_t)e->size, e->offset, err))
        return lad_fail(err, "an unreadable byteorder entry");
    if (strcmp(buf, "little"))
        return lad_fail(err, "a checkpoint saved in %s-endian byte order (ladle reads "
                             "little-endian ones)",
                        buf);
    return 0;
}

int lad_torch_parse(lad_file *file, lad_tensor **tensors, size_t *ntensors, lad_error *err)
{
    *tensors = NULL;
    *ntensors = 0;
    lad_zip z;
    char prefix[256];
    if (lad_zip_open(file, &z, err))
        return lad_fail_prefix(err, "%s: ", file->path);
    const lad_zip_entry *pkl = find_pickle(&z, prefix, sizeof prefix, err);
    int rc = pkl ? check_byteorder(file, &z, prefix, err) : -1;
    if (rc == 0 && pkl->size > MAX_PICKLE)
        rc = lad_fail(err, "its data.pkl is %llu bytes (ladle reads at most %u)",
                      (unsigned long long)pkl->size, MAX_PICKLE);
    unsigned char *text = rc == 0 ? malloc((size_t)pkl->size + 1) : NULL;
    if (rc == 0 && !text)
        rc = lad_fail(err, "out of memory");
    if (rc == 0)
        rc = lad_file_read(file, text, (size_t)pkl->size, pkl->offset, err);
    vm m = {.zip = &z, .prefix = prefix, .err = err};
    value *root = NULL;
    if (rc == 0) {
        m.start = m.p = text;
        m.end = text + pkl->size;
        rc = run(&m, &root);
    }
    if (rc == 0 && root->k != V_DICT)
        rc = lad_fail(err, "the pickle holds no dict of tensors (ladle reads state dicts)");
    lad_tensor *ts = NULL;
    size_t n = 0;
    if (rc == 0 && !(ts = calloc(root->n / 2 + 1, sizeof *ts)))
        rc = lad_fail(err, "out of memory");
    for (size_t i = 0; rc == 0 && i + 1 < root->n; i += 2) {
        const value *k = root->items[i];
        if (k->k != V_STR || strlen(k->s) != k->len || !k->len)
            rc = lad_fail(err, "a state dict key that is not a tensor name");
        else if ((rc = to_tensor(&m, k->s, root->items[i + 1], file, &ts[n])) == 0)
            n++;
    }
    vm_free(&m);
    free(text);
    lad_zip_free(&z);
    if (rc) {
        for (size_t i = 0; i < n; i++)
            free(ts[i].name);
        free(ts);
        return lad_fail_prefix(err, "%s: ", file->path);
    }
    *tensors = ts;
    *ntensors = n;
    return 0;
}
