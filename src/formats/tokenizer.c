/*
 * Vocabularies from Hugging Face tokenizer.json files: the token of every
 * id, so that two models' embedding rows can be matched by token.
 *
 *   model.vocab     {"token": id, ...}              BPE, WordPiece, WordLevel
 *                   [["token", score], ...]         Unigram (id = position)
 *   added_tokens    [{"id": id, "content": "token"}, ...]   win over model.vocab
 *
 * Everything else in the file (normalizer, merges, templates) is ignored.
 * Tokens are compared as bytes (a token may hold "\u0000").
 */
#include "util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IDS (1u << 22) /* 4M: the largest vocabularies hold 262K tokens */
#define MAX_TOKENIZER_BYTES (256u << 20)

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* Makes room for ids up to id. */
static int grow(lad_vocab *v, uint64_t id, lad_error *err)
{
    if (id >= MAX_IDS)
        return lad_fail(err, "token id %llu is beyond ladle's limit of %u ids",
                        (unsigned long long)id, MAX_IDS);
    if (id < v->cap)
        return 0;
    size_t cap = v->cap ? v->cap : 1024;
    while (cap <= id)
        cap *= 2;
    char **tok = realloc(v->tok, cap * sizeof *tok);
    if (tok)
        v->tok = tok;
    uint32_t *len = realloc(v->len, cap * sizeof *len);
    if (len)
        v->len = len;
    unsigned char *add = realloc(v->added, cap);
    if (add)
        v->added = add;
    if (!tok || !len || !add)
        return lad_fail(err, "out of memory");
    memset(v->tok + v->cap, 0, (cap - v->cap) * sizeof *tok);
    memset(v->len + v->cap, 0, (cap - v->cap) * sizeof *len);
    memset(v->added + v->cap, 0, cap - v->cap);
    v->cap = cap;
    return 0;
}

/* Sets id's token (a copy); a later call for the same id replaces it. */
static int set_token(lad_vocab *v, uint64_t id, const char *s, size_t n, bool added,
                     lad_error *err)
{
    if (grow(v, id, err))
        return -1;
    char *copy = malloc(n + 1);
    if (!copy)
        return lad_fail(err, "out of memory");
    memcpy(copy, s, n);
    copy[n] = '\0';
    free(v->tok[id]);
    v->tok[id] = copy;
    v->len[id] = (uint32_t)n;
    v->added[id] = added;
    if (id >= v->n)
        v->n = (size_t)id + 1;
    return 0;
}

static int read_vocab(lad_vocab *v, json_t *vocab, lad_error *err)
{
    if (json_is_object(vocab)) {
        const char *k;
        size_t klen;
        json_t *id;
        json_object_keylen_foreach(vocab, k, klen, id)
        {
            if (!json_is_integer(id) || json_integer_value(id) < 0)
                return lad_fail(err, "model.vocab: token '%s' has no id (a non-negative "
                                     "integer)",
                                k);
            if (set_token(v, (uint64_t)json_integer_value(id), k, klen, false, err))
                return -1;
        }
        return 0;
    }
    if (json_is_array(vocab)) { /* Unigram: [token, score] in id order */
        size_t i;
        json_t *e;
        json_array_foreach(vocab, i, e)
        {
            json_t *s = json_array_get(e, 0);
            if (!json_is_array(e) || !json_is_string(s))
                return lad_fail(err, "model.vocab[%zu] is not a [token, score] pair", i);
            if (set_token(v, i, json_string_value(s), json_string_length(s), false, err))
                return -1;
        }
        return 0;
    }
    return lad_fail(err, "its model has no vocab ladle reads (an object of token ids, or a "
                         "Unigram list)");
}

static int read_added(lad_vocab *v, json_t *added, lad_error *err)
{
    if (!added || json_is_null(added))
        return 0;
    if (!json_is_array(added))
        return lad_fail(err, "added_tokens is not a list");
    size_t i;
    json_t *e;
    json_array_foreach(added, i, e)
    {
        json_t *id = json_object_get(e, "id"), *s = json_object_get(e, "content");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || !json_is_string(s))
            return lad_fail(err, "added_tokens[%zu] has no id and content", i);
        if (set_token(v, (uint64_t)json_integer_value(id), json_string_value(s),
                      json_string_length(s), true, err))
            return -1;
    }
    return 0;
}

/* Puts id in the token -> id table (open addressing, at most half full). */
static void index_put(lad_vocab *v, size_t id)
{
    size_t s = (size_t)hash_bytes(v->tok[id], v->len[id]) & (v->nslots - 1);
    while (v->slots[s] >= 0)
        s = (s + 1) & (v->nslots - 1);
    v->slots[s] = (int64_t)id;
}

/* (Re)builds the table for every id: a token held by two ids maps to the
 * lower. */
static int build_index(lad_vocab *v, lad_error *err)
{
    size_t cap = 16;
    while (cap < 2 * v->n + 2)
        cap *= 2;
    free(v->slots);
    v->nslots = 0;
    if (!(v->slots = malloc(cap * sizeof *v->slots)))
        return lad_fail(err, "out of memory");
    memset(v->slots, 0xff, cap * sizeof *v->slots); /* -1: empty */
    v->nslots = cap;
    for (size_t id = 0; id < v->n; id++)
        if (v->tok[id] && lad_vocab_find(v, v->tok[id], v->len[id]) < 0)
            index_put(v, id);
    return 0;
}

int lad_vocab_append(lad_vocab *v, const char *tok, size_t len, bool added, lad_error *err)
{
    if (!tok) { /* an id without a token */
        if (grow(v, v->n, err))
            return -1;
        v->n++;
        return 0;
    }
    if (set_token(v, v->n, tok, len, added, err))
        return -1;
    if (2 * v->n + 2 > v->nslots)
        return build_index(v, err);
    if (lad_vocab_find(v, tok, len) < 0)
        index_put(v, v->n - 1);
    return 0;
}

int64_t lad_vocab_find(const lad_vocab *v, const char *tok, size_t len)
{
    if (!v->nslots)
        return -1;
    size_t s = (size_t)hash_bytes(tok, len) & (v->nslots - 1);
    for (; v->slots[s] >= 0; s = (s + 1) & (v->nslots - 1)) {
        int64_t id = v->slots[s];
        if (v->len[id] == len && memcmp(v->tok[id], tok, len) == 0)
            return id;
    }
    return -1;
}

int lad_vocab_parse(const char *text, size_t len, const char *path, lad_vocab *v,
                    lad_error *err)
{
    memset(v, 0, sizeof *v);
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_ALLOW_NUL, &je);
    int rc = 0;
    if (!root)
        rc = lad_fail(err, "line %d: %s", je.line, je.text);
    else if (!json_is_object(root) || !json_is_object(json_object_get(root, "model")))
        rc = lad_fail(err, "not a tokenizer.json (no \"model\" object)");
    else
        rc = read_vocab(v, json_object_get(json_object_get(root, "model"), "vocab"), err);
    if (rc == 0)
        rc = read_added(v, json_object_get(root, "added_tokens"), err);
    if (rc == 0)
        rc = build_index(v, err);
    json_decref(root);
    if (rc) {
        lad_vocab_free(v);
        return lad_fail_prefix(err, "%s: ", path);
    }
    return 0;
}

int lad_vocab_load(const char *path, lad_vocab *v, lad_error *err)
{
    char *text = NULL;
    size_t len = 0;
    memset(v, 0, sizeof *v);
    if (lad_read_file(path, MAX_TOKENIZER_BYTES, &text, &len, err))
        return -1;
    int rc = lad_vocab_parse(text, len, path, v, err);
    free(text);
    return rc;
}

void lad_vocab_free(lad_vocab *v)
{
    for (size_t i = 0; i < v->cap && v->tok; i++)
        free(v->tok[i]);
    free(v->tok);
    free(v->len);
    free(v->added);
    free(v->slots);
    memset(v, 0, sizeof *v);
}
