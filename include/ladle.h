/*
 * ladle — weight-space model merging.
 *
 * This header is the whole library API. Layers, each using only the ones
 * below it:
 *
 *   plan + engine   "output tensor T = method(params, input tensors)", streamed
 *   methods         pure per-chunk kernels over fp32 (fp64 for F64 tensors)
 *   formats         safetensors files, sharded indexes, Hugging Face folders
 *   core            errors, dtypes and their conversions, small utilities
 *
 * Every fallible function returns 0 on success or -1 with a message in a
 * caller-provided lad_error; nothing here prints or exits.
 */
#ifndef LADLE_H
#define LADLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LADLE_VERSION "0.1.0"
/* The library's LADLE_VERSION (bindings check it against their own). */
const char *lad_version(void);

/* ---------------------------------------------------------------- errors */

typedef struct lad_error {
    char msg[2048];
    bool interrupted; /* the failure is a user interrupt (SIGINT/SIGTERM) */
    bool usage;       /* the arguments were wrong (the CLI exits with 2) */
} lad_error;

/* Sets err->msg with printf formatting; returns -1 so callers can
 * `return lad_fail(err, ...)`. */
int lad_fail(lad_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* As lad_fail, for wrong arguments: also sets err->usage. */
int lad_usage(lad_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends context ("file: ") to an existing message; returns -1. */
int lad_fail_prefix(lad_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------- dtypes */

/* Every dtype the reference safetensors crate knows. */
typedef enum lad_dtype {
    LAD_BOOL, LAD_F4, LAD_F6_E2M3, LAD_F6_E3M2, LAD_U8, LAD_I8,
    LAD_F8_E5M2, LAD_F8_E4M3, LAD_F8_E8M0, LAD_I16, LAD_U16, LAD_F16,
    LAD_BF16, LAD_I32, LAD_U32, LAD_F32, LAD_F64, LAD_C64, LAD_I64, LAD_U64,
    LAD_DTYPE_COUNT
} lad_dtype;

const char *lad_dtype_name(lad_dtype t);          /* "BF16" */
const char *lad_dtype_torch_name(lad_dtype t);    /* "bfloat16", or NULL */
int lad_dtype_parse(const char *name, lad_dtype *out); /* file names: "BF16" */
int lad_dtype_parse_user(const char *name, lad_dtype *out); /* "bf16", "f32" */
unsigned lad_dtype_bits(lad_dtype t);
/* F16, BF16, F32, F64: the dtypes ladle merges. Others are copied. */
bool lad_dtype_mergeable(lad_dtype t);

/* Scalar conversions: round-to-nearest-even, NaN/Inf preserved, subnormals
 * kept. These are the reference the bulk (SIMD) kernels are tested against. */
float lad_bf16_to_f32(uint16_t h);
float lad_f16_to_f32(uint16_t h);
uint16_t lad_f32_to_bf16(float f);
uint16_t lad_f32_to_f16(float f);

/* The OCP 8-bit floats (F8_E4M3 as float8_e4m3fn: no Inf, S.1111.111 is
 * NaN; F8_E5M2 IEEE-like) and MXFP4's E2M1 (a nibble): decoding is exact;
 * encoding rounds to nearest even and saturates at the largest finite value
 * (448, 57344, 6), NaN staying NaN (E2M1 has none: 0). */
float lad_fp8_to_f32(lad_dtype t, uint8_t code);
uint8_t lad_f32_to_fp8(lad_dtype t, float x);
float lad_fp8_max(lad_dtype t);
float lad_e2m1_to_f32(uint8_t nibble);
uint8_t lad_f32_to_e2m1(float x);

/* Bulk conversions between a mergeable dtype's bytes and fp32/fp64.
 * The fast paths are chosen at run time from the CPU's features. */
void lad_load_f32(lad_dtype src, const void *in, float *out, size_t n);
void lad_store_f32(lad_dtype dst, const float *in, void *out, size_t n);
void lad_load_f64(lad_dtype src, const void *in, double *out, size_t n);
void lad_store_f64(lad_dtype dst, const double *in, void *out, size_t n);
/* Disable the SIMD paths (tests compare both against each other). */
void lad_convert_force_scalar(bool on);
const char *lad_convert_impl(void); /* "avx2+f16c" or "scalar" */

/* ---------------------------------------------------------------- models */

#define LAD_MAX_DIMS 16

typedef struct lad_file {
    char *path;            /* for a file in memory: the model's label */
    int fd;                /* -1 in memory */
    const void *mem;       /* the bytes of a file held in memory, else NULL */
    uint64_t size;
    uint64_t data_start;   /* 8 + header length */
    void *metadata;        /* json_t object of __metadata__ (GGUF: its key-values,
                            * for display), or NULL */
    struct lad_gguf_meta *gguf; /* GGUF: its key-value table (formats/gguf.c), or NULL */
} lad_file;

/* Reads n bytes at off (from the file, or the memory holding it). */
int lad_file_read(const lad_file *f, void *buf, size_t n, uint64_t off, lad_error *err);

/*
 * Quantised weights as checkpoints ship them (formats/quant.c): a weight
 * and its scales are one logical tensor, read as fp32 values.
 *   FP8_TENSOR   F8_E4M3/E5M2 codes, one scale for the tensor
 *   FP8_CHANNEL  one scale per row ([R] or [R, 1])
 *   FP8_BLOCK    one per block of block[0] x block[1] (DeepSeek's 128 x 128;
 *                edges need not divide): value = code x scale
 *   MXFP4        gpt-oss's X_blocks (U8: two E2M1 codes, low nibble first,
 *                32 per block of 16 bytes) and X_scales (U8, E8M0): value =
 *                e2m1 x 2^(scale - 127); the logical tensor is X with the
 *                blocks' last two dimensions joined
 * The scale tensor is hidden: it is never merged on its own.
 */
typedef enum lad_qscheme {
    LAD_Q_NONE, LAD_Q_FP8_TENSOR, LAD_Q_FP8_CHANNEL, LAD_Q_FP8_BLOCK, LAD_Q_MXFP4,
    LAD_Q_GGML             /* a GGUF tensor in one of ggml's block types (ggml_type) */
} lad_qscheme;

struct lad_tensor;
typedef struct lad_quant {
    lad_qscheme scheme;
    const struct lad_tensor *scales;
    uint32_t block[2];     /* FP8_BLOCK: the rows and columns one scale covers */
    char *phys_name;       /* MXFP4: the packed tensor's own name, "X_blocks" */
    int phys_ndim;
    uint64_t phys_shape[LAD_MAX_DIMS];
    const char *problem;   /* a low-bit tensor ladle could not pair: why */
    /* GGUF: the tensor's ggml type, for LAD_Q_GGML and for the types ladle
     * cannot read (stored as U8 bytes, copied only when every input holds
     * the same bytes); 0 otherwise (plain dtypes carry their own). */
    uint32_t ggml_type;
} lad_quant;

typedef struct lad_tensor {
    char *name;
    lad_dtype dtype;       /* for a quantised weight, its codes' type (F4 for MXFP4) */
    int ndim;
    uint64_t shape[LAD_MAX_DIMS];
    uint64_t nelem;
    uint64_t nbytes;       /* bytes in the file (MXFP4: of the packed blocks) */
    const lad_file *file;
    uint64_t offset;       /* absolute byte offset in file */
    lad_quant q;
    bool hidden;           /* the scales of a quantised weight */
    /* LoRA deltas added when read (formats/lora.c), or NULL */
    const struct lad_lora *lora;
} lad_tensor;

/* Can the tensor be merged (a float ladle reads, quantised or not)? */
bool lad_tensor_mergeable(const lad_tensor *t);
/* Elements [start, start + n) of a mergeable tensor as fp32: plain,
 * quantised or with LoRA deltas; raw: room for n elements of its dtype
 * (8 bytes each covers every one). (formats/quant.c) */
int lad_tensor_read_f32(const lad_tensor *t, uint64_t start, size_t n, void *raw, float *out,
                        lad_error *err);
/* The same number of dimensions and the same sizes? */
bool lad_tensor_same_shape(const lad_tensor *a, const lad_tensor *b);
/* A base model with LoRA adapters applied when read (formats/lora.c): each
 * adapter a PEFT folder, weighted (weights NULL: 1 each). A model reference
 * "BASE+ADAPTER" opens as such a model. */
struct lad_model;
int lad_lora_attach(struct lad_model *m, const char *const *adapters, const double *weights,
                    size_t n, lad_error *err);
/* Reads elements [start, start + n) of a tensor with LoRA deltas as fp32. */
int lad_lora_read(const lad_tensor *t, uint64_t start, size_t n, float *out, lad_error *err);
void lad_lora_free(const struct lad_lora *l);
/* Reads elements [start, start + n) of a quantised tensor as fp32. */
int lad_quant_read(const lad_tensor *t, uint64_t start, size_t n, float *out, lad_error *err);
/* "fp8 block 128x128", "mxfp4", ... */
const char *lad_qscheme_name(lad_qscheme s);
/* The tensor's type as its file names it: "BF16", or a GGUF tensor's ggml
 * type ("Q4_K"). */
const char *lad_tensor_type_name(const lad_tensor *t);

/*
 * ggml's tensor types (GGUF files; formats/ggml.c), by their ids in
 * ggml.h. ladle reads F32, F16, BF16, F64, the integer types and the block
 * types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K (dequantised exactly as
 * ggml's reference code does), and writes the plain types, Q8_0 and Q4_0
 * (ggml's reference quantisers, bit for bit).
 */
enum {
    LAD_GGML_F32 = 0, LAD_GGML_F16 = 1, LAD_GGML_Q4_0 = 2, LAD_GGML_Q4_1 = 3,
    LAD_GGML_Q5_0 = 6, LAD_GGML_Q5_1 = 7, LAD_GGML_Q8_0 = 8, LAD_GGML_Q2_K = 10,
    LAD_GGML_Q3_K = 11, LAD_GGML_Q4_K = 12, LAD_GGML_Q5_K = 13, LAD_GGML_Q6_K = 14,
    LAD_GGML_I8 = 24, LAD_GGML_I16 = 25, LAD_GGML_I32 = 26, LAD_GGML_I64 = 27,
    LAD_GGML_F64 = 28, LAD_GGML_BF16 = 30, LAD_GGML_COUNT = 43
};
/* "Q4_K"; NULL for an id ggml does not define. */
const char *lad_ggml_type_name(uint32_t type);
int lad_ggml_type_parse(const char *name, uint32_t *out); /* "q8_0", "Q8_0", "f16" */
uint32_t lad_ggml_block_size(uint32_t type);   /* elements per block */
uint32_t lad_ggml_type_size(uint32_t type);    /* bytes per block */
bool lad_ggml_is_block(uint32_t type);         /* a block type ladle dequantises */
bool lad_ggml_can_write(uint32_t type);        /* Q8_0, Q4_0 */
/* The plain dtype of a ggml type, or false (block and unknown types). */
bool lad_ggml_dtype(uint32_t type, lad_dtype *out);
bool lad_ggml_from_dtype(lad_dtype t, uint32_t *out);
/* n values (a multiple of the block size) from whole blocks, and back. */
void lad_ggml_dequantize(uint32_t type, const void *blocks, float *out, size_t n);
void lad_ggml_quantize(uint32_t type, const float *x, void *blocks, size_t n);
/* llama.cpp's general.file_type for a model mostly of this type (the types
 * ladle writes), or -1. */
int lad_ggml_file_type(uint32_t type);
/* The lad_quant of a GGML block type, for a plan's re-quantised output. */
const lad_quant *lad_ggml_quant(uint32_t type);

typedef struct lad_model {
    char *ref;             /* as the user named it */
    char *dir;             /* Hugging Face folder, or NULL for a bare file */
    lad_file *files;
    size_t nfiles;
    lad_tensor *tensors;   /* file order, then offset order */
    size_t ntensors;
    lad_tensor **by_name;  /* sorted by name, for lookup */
    void *config;          /* json_t of config.json, or NULL */
    uint64_t total_bytes;  /* bytes of all files */
    const char *quant_method; /* quantization_config's, when ladle cannot read it */
} lad_model;

/* Opens and fully validates a model: a .safetensors file, or a folder with
 * model.safetensors or model.safetensors.index.json plus shards. */
int lad_model_open(const char *ref, lad_model **out, lad_error *err);

/* A tensor the caller holds in memory: contiguous, row-major, nelem x the
 * dtype's size bytes at data. */
typedef struct lad_mem_tensor {
    const char *name;
    lad_dtype dtype;
    int ndim;
    const uint64_t *shape;
    const void *data;
} lad_mem_tensor;

/* A model of tensors held in memory (a binding's state dict), validated as
 * a file would be (names unique, shapes within limits). The tensors' bytes
 * are borrowed until lad_model_close; names and shapes are copied. label
 * names it in messages; config_json, when not NULL, plays config.json's
 * part (tied embeddings, the config of a folder output). */
int lad_model_from_memory(const char *label, const lad_mem_tensor *ts, size_t n,
                          const char *config_json, lad_model **out, lad_error *err);

/* One tensor of a model or a plan, for bindings that cannot read the
 * structs. path is the file holding it (NULL in memory or in a plan's
 * output), offset its first byte there. */
typedef struct lad_tensor_info {
    const char *name;
    lad_dtype dtype;
    int ndim;
    uint64_t shape[LAD_MAX_DIMS];
    uint64_t nbytes;
    const char *path;
    uint64_t offset;
} lad_tensor_info;

size_t lad_model_ntensors(const lad_model *m);
void lad_model_tensor_info(const lad_model *m, size_t i, lad_tensor_info *out);
/* config.json (or the config given in memory) as JSON text, or NULL; allocated. */
char *lad_model_config_json(const lad_model *m);
void lad_model_close(lad_model *m);
const lad_tensor *lad_model_find(const lad_model *m, const char *name);

/* Validates one safetensors file already opened on fd (size bytes). The
 * tensors are appended to *tensors; the file keeps its fd. */
/* The same for a PyTorch checkpoint (torch.save's zip archive): its pickle
 * read by a machine that runs nothing (formats/torch_read.c). */
int lad_torch_parse(lad_file *file, lad_tensor **tensors, size_t *ntensors, lad_error *err);
int lad_safetensors_parse(lad_file *file, lad_tensor **tensors, size_t *ntensors,
                          lad_error *err);
/* The same for a GGUF file (formats/gguf.c): its tensors shaped row-major
 * (GGUF's dimensions reversed), its key-values kept for a GGUF output and
 * shown as the file's metadata. lad_gguf_free releases the key-values. */
int lad_gguf_parse(lad_file *file, lad_tensor **tensors, size_t *ntensors, lad_error *err);
void lad_gguf_free(lad_file *file);
/* A GGUF file's general.alignment, or 32 (also for NULL or another format). */
uint32_t lad_gguf_alignment(const lad_file *file);

/* A vocabulary as a Hugging Face tokenizer.json gives it (model.vocab and
 * added_tokens, which win): the token of each id, compared as bytes. */
typedef struct lad_vocab {
    char **tok;            /* per id: the token, or NULL where no token has the id */
    uint32_t *len;         /* per id: its length in bytes (a token may hold NULs) */
    unsigned char *added;  /* per id: 1 for an added token (added_tokens) */
    size_t n;              /* ids: the largest + 1 */
    size_t cap;
    int64_t *slots;        /* token -> id table (open addressing) */
    size_t nslots;
} lad_vocab;

/* Parses a tokenizer.json held in memory (path names it in errors). */
int lad_vocab_parse(const char *text, size_t len, const char *path, lad_vocab *v,
                    lad_error *err);
int lad_vocab_load(const char *path, lad_vocab *v, lad_error *err);
/* Adds a token (NULL: none) at id v->n: a vocabulary being built, from {0}. */
int lad_vocab_append(lad_vocab *v, const char *tok, size_t len, bool added, lad_error *err);
/* The id of a token (its lowest, if several hold it), or -1. */
int64_t lad_vocab_find(const lad_vocab *v, const char *tok, size_t len);
void lad_vocab_free(lad_vocab *v);

/* ---------------------------------------------------------------- methods */

struct lad_op;

/* Kernels and statistics are called on chunks of at most LAD_BLOCK
 * elements, each starting at a multiple of LAD_BLOCK within its tensor;
 * a method with row_length gets whole rows instead, one per call. */
#define LAD_BLOCK 1024u

/* What a kernel knows about the chunk it is given. */
typedef struct lad_kctx {
    const struct lad_op *op;
    void *stats;           /* the tensor's statistics (method-defined), or NULL */
    uint64_t start;        /* index in the tensor of in[..][0] */
    uint32_t key;          /* hash of the tensor's name: counter-based RNG */
    /* The statistics' scope: the tensor, or with model_scope every merged
     * tensor of the model, in order. */
    uint64_t nelem;        /* elements in the scope */
    size_t item, nitems;   /* this work item in the scope, and how many */
    uint64_t block_base;   /* LAD_BLOCK blocks before this tensor's in the scope */
    uint64_t nblocks;      /* LAD_BLOCK blocks in the scope */
    uint64_t row;          /* a row method's row length, else 0 */
    uint64_t item_start, item_end; /* this work item's elements in the tensor */
    int ndim;              /* the tensor's shape */
    const uint64_t *shape;
    void *scratch;         /* LAD_SCRATCH_BYTES(ninputs, n) for a call of n elements */
} lad_kctx;

/* The longest row a row method may ask for, and the scratch memory a
 * kernel may use in a call of n elements. */
#define LAD_MAX_ROW (1u << 17)
#define LAD_SCRATCH_BYTES(ninputs, n) ((size_t)(n) * 8 * (2 * (size_t)(ninputs) + 4))

/*
 * A merge method. A kernel computes out[i] = f(in[0][i], ..., in[k-1][i])
 * for i < n, in fp32 (fp64 for F64 tensors). A method that needs
 * statistics of a whole tensor (norms, top-k thresholds) declares passes:
 * before the merge pass, the engine runs each pass over all the tensor's
 * chunks, giving each thread an accumulator of acc_size bytes (zeroed),
 * then calls pass_end with every thread's accumulator to fold them into
 * the tensor's stats (stats_size bytes, zeroed at the first pass).
 */
typedef struct lad_method {
    const char *name;
    void (*chunk_f32)(const lad_kctx *k, float *out, const float *const *in, size_t n);
    void (*chunk_f64)(const lad_kctx *k, double *out, const double *const *in, size_t n);
    /* Optional statistics passes; npasses NULL means none. stats_init,
     * when given, runs once on the zeroed stats before the first pass. */
    int (*npasses)(const struct lad_op *op, bool wide);
    size_t (*stats_size)(const lad_kctx *k);
    void (*stats_init)(const lad_kctx *k, bool wide);
    /* Optional: the passes cover the whole model, not each tensor. */
    bool (*model_scope)(const struct lad_op *op);
    /* Optional: the kernel needs whole rows of this many elements (at most
     * LAD_MAX_ROW); 0 when the tensor's shape is not supported. */
    uint64_t (*row_length)(const struct lad_op *op, int ndim, const uint64_t *shape);
    size_t (*acc_size)(const struct lad_op *op);
    void (*stats_f32)(const lad_kctx *k, int pass, void *acc, const float *const *in, size_t n);
    void (*stats_f64)(const lad_kctx *k, int pass, void *acc, const double *const *in,
                      size_t n);
    /* Returns NULL, or why the tensor cannot be merged (the engine names
     * the tensor and the method). */
    const char *(*pass_end)(const lad_kctx *k, int pass, bool wide, void *const *accs,
                            size_t naccs);
    /* Optional: true when an earlier pass made this one unneeded (it is not
     * run, nor its pass_end). */
    bool (*pass_skip)(const lad_kctx *k, int pass);
    /* Optional: a pass that samples reads only the work items whose index
     * in their tensor is a multiple of this (1: all; 0 is taken as 1). */
    unsigned (*pass_stride)(const lad_kctx *k, int pass);
    /* Optional: frees what the passes allocated beyond the stats block
     * (called once, after the merge pass or a failure). */
    void (*stats_release)(const lad_kctx *k);
} lad_method;

/* A method with its resolved parameters. What the parameters mean, and the
 * order of the inputs, is documented in each method's file. */
typedef struct lad_op {
    const lad_method *method;
    size_t ninputs;
    double param[256];     /* method-specific, as the user gave them */
    float paramf[256];     /* the same rounded once to fp32 for fp32 math */
    size_t nparam;
} lad_op;

extern const lad_method lad_method_linear;          /* lerp, soup, ckpt */
extern const lad_method lad_method_mean;            /* soup --sum-first: sum, one division */
extern const lad_method lad_method_task_arithmetic; /* task vectors */
extern const lad_method lad_method_slerp;           /* spherical interpolation */
extern const lad_method lad_method_gta;             /* TIES, DARE, breadcrumbs */
extern const lad_method lad_method_della;           /* DELLA (the same, by rows) */
extern const lad_method lad_method_model_stock;     /* Model Stock */
extern const lad_method lad_method_model_stock_rows; /* the same per row (filter_wise) */
#define STOCK_MAX 24                                 /* its fine-tunes */
extern const lad_method lad_method_nearswap;        /* NearSwap */
extern const lad_method lad_method_nuslerp;         /* NuSLERP, whole tensors */
extern const lad_method lad_method_nuslerp_rows;    /* NuSLERP, row by row */
extern const lad_method lad_method_nuslerp_cols;    /* NuSLERP, column by column */
enum { NUSLERP_FLAT = 0, NUSLERP_ROWS = 1, NUSLERP_COLS = 2 }; /* nuslerp's param[1] */
extern const lad_method lad_method_multislerp;       /* Multi-SLERP */
enum { MSLERP_BASE, MSLERP_EPS, MSLERP_W0 };         /* its params (w_i from W0) */
#define MSLERP_MAX 64                                /* models */
extern const lad_method lad_method_karcher;          /* Karcher mean */
enum { KARCHER_MAX_ITER, KARCHER_TOL };              /* its params */
#define KARCHER_MAX 64                               /* models */
extern const lad_method lad_method_ram;              /* RAM and RAM+ (tensor-local) */
enum { RAM_EPS, RAM_PLUS, RAM_R, RAM_ALPHA };        /* its params */
extern const lad_method lad_method_arcee_fusion;     /* Arcee Fusion */
extern const lad_method lad_method_iso_c;            /* Iso-C */
/* Is this an embedding's or an output head's name (embed_tokens, wte,
 * lm_head, output, ...)? (engine/vocab.c) */
bool lad_name_is_vocab(const char *name);
extern const lad_method lad_method_tsv;              /* TSV-M */
extern const lad_method lad_method_iso_cts;          /* Iso-CTS */
extern const lad_method lad_method_wudi;             /* WUDI */
/* their params (weights from W0): FRACTION Iso-CTS's, ITERS and LR WUDI's */
enum { ISO_LAMBDA, ISO_MEAN_ONLY, ISO_FRACTION, ISO_ITERS, ISO_LR, ISO_W0 };
extern const lad_method lad_method_consensus_ta;     /* consensus task arithmetic */
enum { CONS_LAMBDA, CONS_TALL, CONS_K, CONS_W0 };    /* its params (weights from W0) */
extern const lad_method lad_method_sce;              /* SCE */
enum { SCE_TOPK };                                   /* its param: select_topk */

/* ---------------------------------------------------------------- structure */

/*
 * A model's stacks of blocks, found from its tensor names (engine/
 * structure.c has the rules): where each tensor sits along the forward
 * pass. In a stack of len positions, position pos has depth t = pos / (len
 * - 1) (1 for a stack of one); outside the stacks, embeddings come before
 * (t = 0) and the rest after (final norms, heads: t = 1), as mergekit
 * places its pre- and post-weights. Several stacks (encoder and decoder,
 * vision tower and language model) each have their own depths.
 */
typedef struct lad_place {
    int stack;             /* -1: outside every stack */
    bool before;           /* outside: before the stacks (embeddings) */
    uint32_t pos, len;     /* position in its stack, and the stack's length */
    double t;              /* depth in [0, 1] */
} lad_place;

typedef struct lad_stack_info {
    char *name;            /* "model.layers.N", "...input_blocks.N + ...middle_block +
                            * ...output_blocks.N", or a --layers regex */
    uint32_t len;          /* positions */
    uint32_t npresent;     /* positions that hold tensors (fewer: a gap) */
    uint64_t ntensors;
} lad_stack_info;

typedef struct lad_structure lad_structure;

/* The stacks of m: detected from its names, or with layers (nlayers POSIX
 * extended regexes, \d accepted, each with one capture group: the block
 * index) one stack per regex. */
int lad_structure_build(const lad_model *m, const char *const *layers, size_t nlayers,
                        lad_structure **out, lad_error *err);
void lad_structure_free(lad_structure *s);
size_t lad_structure_nstacks(const lad_structure *s);
const lad_stack_info *lad_structure_stack(const lad_structure *s, size_t i);
lad_place lad_structure_place(const lad_structure *s, const char *tensor);
/* name with its block index replaced by pos (slices); NULL when its stack
 * is a sequence or a regex's. Allocated. */
char *lad_structure_rename(const lad_structure *s, const char *name, uint32_t pos);

/* ---------------------------------------------------------------- schedules */

/*
 * Per-tensor parameters, with mergekit's semantics. A value is a scalar or
 * a gradient (a list), evaluated at the tensor's depth t (lad_place). A
 * gradient v[0..n-1] gives, with s = t (n - 1), i0 = floor(s):
 * (1 - (s - i0)) v[i0] + (s - i0) v[min(i0+1, n-1)].
 *
 * Overrides apply to tensors that match their pattern: '|'-separated
 * alternatives, each a substring of the name, or a layer group:
 *   embed          outside the stacks, before them (embeddings)
 *   head           outside the stacks, after them (final norms, heads)
 *   early, middle, late   the first, second and last third of each stack
 *                  (position p of len: third floor(3p / len))
 *   layers[a:b]    positions a <= p < b of each stack (a, b optional)
 * The first matching override of a parameter wins.
 */
#define LAD_SCHED_MAX_PARAMS 70
#define LAD_SCHED_MAX_VALUES 64

typedef struct lad_sched_value {
    double v[LAD_SCHED_MAX_VALUES];
    int n;                 /* 1: a scalar */
} lad_sched_value;

typedef struct lad_sched_override {
    char pattern[256];     /* "self_attn", "embed_tokens|lm_head", "middle" */
    int param;             /* index into names */
    lad_sched_value value;
} lad_sched_override;

typedef struct lad_schedule {
    const char *names[LAD_SCHED_MAX_PARAMS];
    lad_sched_value value[LAD_SCHED_MAX_PARAMS];
    int nparams;
    lad_sched_override *over;
    size_t nover;
    /* Builds a tensor's op from its resolved values (in names' order). */
    int (*build)(const double *values, lad_op *op, const void *ctx, lad_error *err);
    const void *ctx;
    /* Or, instead of names/values/build: resolves a tensor's op itself
     * (recipes, whose rules are richer); spec_ctx is the tensor spec's ctx
     * (NULL without specs). */
    int (*resolve)(const char *tensor, const lad_place *place, const void *spec_ctx,
                   lad_op *op, const void *ctx, lad_error *err);
    bool resolve_needs_layers; /* with resolve: a gradient or a layer group is used */
} lad_schedule;

/* Parses "0.3" or "0,0.5,1" (a gradient). */
int lad_sched_parse_value(const char *s, lad_sched_value *out);
/* Parses "PATTERN:name=VALUE" against the schedule's names and appends it. */
int lad_sched_add_override(lad_schedule *s, const char *spec, lad_error *err);
/* Does the schedule need the model's stacks (a gradient, or a layer group
 * in an override)? */
bool lad_sched_needs_layers(const lad_schedule *s);
/* Resolves every parameter for one tensor. */
void lad_sched_resolve(const lad_schedule *s, const char *tensor, const lad_place *place,
                       double *values);
void lad_sched_free(lad_schedule *s);

/* A pattern as overrides and recipe filters take it (see above): is it
 * well formed (usage error otherwise), does it name a layer group, does it
 * match this tensor? */
int lad_pattern_check(const char *pattern, bool *layered, lad_error *err);
bool lad_pattern_matches(const char *pattern, const char *tensor, const lad_place *place);

/* ---------------------------------------------------------------- plans */

/* A running merge's progress: bytes written so far of total, called about
 * ten times a second on the thread that runs the plan, and once more with
 * final set when it is done. A non-zero return stops the merge (it fails as
 * interrupted; nothing is written). */
typedef int (*lad_progress_fn)(void *ctx, uint64_t done, uint64_t total, double seconds,
                               bool final);

typedef enum lad_tensor_kind { LAD_MERGE, LAD_COPY } lad_tensor_kind;

typedef struct lad_plan_tensor {
    const char *name;
    lad_tensor_kind kind;
    lad_dtype out_dtype;
    int ndim;
    uint64_t shape[LAD_MAX_DIMS];
    uint64_t nelem, nbytes;
    const lad_tensor **in;     /* one per model; COPY uses in[0] */
    size_t nin;
    const lad_op *op;
    size_t shard;              /* output file index */
    uint64_t offset;           /* within the shard's data area */
    /* Re-quantised in the template's scheme (its codes here, its scales in
     * the scale tensor written right after them), or NULL. */
    const lad_quant *oq;
    lad_dtype scale_dtype;
    uint64_t scale_nbytes, scale_offset;
    /* The output swaps the inputs' last two dimensions (MXFP4 experts
     * written dequantised, in transformers' layout). */
    bool transpose;
    /* Embedding and head rows of inputs whose vocabulary differs from the
     * output's (engine/vocab.c): per input, the row each output row reads
     * (-1: a row it lacks, filled from input fill_from when that has it,
     * else with the mean of the inputs that do), or NULL when its rows are
     * the output's. NULL when no input needs one. */
    const int64_t *const *rows;
    int fill_from;
    /* Rows may also read LAD_ROW_PAD (past the vocabulary: the input's mean
     * row over [0, pad_from), as mergekit's pad_to_multiple_of), or
     * LAD_ROW_RULE - k (token rule k of the request: row rule_row[k] of
     * input rule_in[k], or zeros where rule_in[k] < 0). */
    uint64_t pad_from;
    const int *rule_in;
    const int64_t *rule_row;
    struct lad_pad_cache *pad; /* the pad rows, computed on first use */
    /* A GGUF output: the tensor's ggml type (oq is lad_ggml_quant's for
     * Q8_0 and Q4_0). */
    uint32_t ggml_type;
    /* Bit j: input j is stored with the last two dimensions swapped (an
     * MXFP4 expert beside transformers' dequantised layout); read as its
     * transpose, one matrix per work item. */
    uint64_t swapped;
} lad_plan_tensor;

/* An output tensor given explicitly (recipes with slices): its name and its
 * inputs, each a tensor of one of the request's models. */
#define LAD_SPEC_MAX_IN 16
typedef struct lad_tensor_spec {
    char *name;
    size_t nin;
    size_t model[LAD_SPEC_MAX_IN];
    char *in_name[LAD_SPEC_MAX_IN];
    lad_place place;       /* for the schedule: mergekit's t in its slice */
    const void *ctx;       /* handed to the schedule's resolve */
} lad_tensor_spec;

typedef enum lad_tokenizer_source {
    LAD_TOKENIZER_BASE, LAD_TOKENIZER_MODEL, LAD_TOKENIZER_UNION
} lad_tokenizer_source;

enum { LAD_ROW_FILL = -1, LAD_ROW_PAD = -2, LAD_ROW_RULE = -3 };

/* Where one token's embedding and head rows come from (mergekit's
 * tokenizer: tokens:): model `model`'s row of the token (MODEL), of another
 * token or id of that model's own vocabulary (MODEL_TOKEN), or zeros; for
 * every input that lacks the token, or with force for every input. */
typedef enum lad_token_source { LAD_TOKEN_MODEL, LAD_TOKEN_MODEL_TOKEN, LAD_TOKEN_ZERO }
    lad_token_source;
typedef struct lad_token_rule {
    const char *token;       /* in the output's vocabulary */
    lad_token_source kind;
    size_t model;            /* an index into the request's models */
    const char *src_token;   /* MODEL_TOKEN: that model's token, or NULL: src_id */
    int64_t src_id;
    bool force;
} lad_token_rule;

typedef struct lad_merge_request {
    const char *command;       /* the command line, for the recipe */
    const char *method_label;  /* "lerp", "soup", ... for the card */
    lad_model **models;        /* inputs, in the method's order */
    const char **roles;        /* per model: "A", "base", "model", ... */
    size_t nmodels;
    size_t template_model;     /* config, tokenizer, non-float tensors */
    lad_op op;                 /* the op of every tensor, unless schedule */
    const lad_schedule *schedule; /* per-tensor parameters, or NULL */
    const lad_tensor_spec *specs; /* the output tensors, or NULL: the template's */
    size_t nspecs;
    uint64_t num_layers;       /* > 0: config.json's num_hidden_layers */
    void *params_json;         /* json_t object describing parameters */
    const char *const *layers; /* --layers regexes (the stacks), or NULL: detected */
    size_t nlayers;
    const char *output;        /* a file or folder; NULL: into memory */
    void *metadata;            /* json_t object: the files' __metadata__ instead of the recipe */
    bool copy_all;             /* every tensor copied from the template (a save) */
    /* The template gives config, tokenizer, tensor set and each merged
     * tensor's output dtype, but no values: the op's inputs are models 1..
     * (soup --partial-sum: the running sum stands for it). */
    bool template_only;
    /* Tensors that cannot be merged (integers, bools) and differ between the
     * inputs are an error (0), or taken from model take_unmergeable - 1. */
    size_t take_unmergeable;
    /* The output's vocabulary (embedding and head rows, tokenizer files):
     * the template's (BASE), model tokenizer_model's, or the union of the
     * inputs' (engine/vocab.c). */
    lad_tokenizer_source tokenizer_source;
    size_t tokenizer_model;
    /* mergekit's tokenizer: pad_to_multiple_of (0: none) and tokens: */
    uint64_t pad_multiple;
    const lad_token_rule *token_rules;
    size_t ntoken_rules;
    /* The output's chat template (tokenizer_config.json): auto (the inputs'
     * most common), chatml, llama3, alpaca, a file, or a Jinja template;
     * NULL: the tokenizer's own. */
    const char *chat_template;
    bool has_out_dtype;
    lad_dtype out_dtype;
    /* A GGUF output's type for merged tensors of 2 or more dimensions
     * whose rows are whole blocks (--quant): F32, F16, BF16, Q8_0, Q4_0. */
    bool has_quant;
    uint32_t quant;
    uint64_t shard_size;       /* 0 = never shard */
    /* Part `part` (0-based) of `nparts` (0: the whole merge) of a folder
     * output: only the shards lad_plan_part assigns it, staged and moved
     * into OUT; the last part to finish (or lad_parts_publish) adds the
     * index, config, tokenizer and card (engine/parts.c). */
    uint32_t part, nparts;
    int threads;
    bool force;
    lad_progress_fn progress;  /* or NULL */
    void *progress_ctx;
} lad_merge_request;

typedef struct lad_plan lad_plan;

/* Checks everything that can be checked (tensor sets, shapes, dtypes, the
 * output path) before a byte is written. */
int lad_plan_build(const lad_merge_request *req, lad_plan **out, lad_error *err);
void lad_plan_free(lad_plan *p);
size_t lad_plan_ntensors(const lad_plan *p);
uint32_t lad_plan_nparts(const lad_plan *p); /* --part's N, or 0 */
/* Tensor i's place in the model's stacks, as schedules see it. */
lad_place lad_plan_tensor_place(const lad_plan *p, size_t i);
/* The template model's stacks (lad_structure). */
const lad_structure *lad_plan_structure(const lad_plan *p);
/* Tensor i's spec context (explicit tensor lists), or NULL. */
const void *lad_plan_tensor_ctx(const lad_plan *p, size_t i);
uint64_t lad_plan_bytes_read(const lad_plan *p);
uint64_t lad_plan_bytes_written(const lad_plan *p);
const lad_plan_tensor *lad_plan_tensor_at(const lad_plan *p, size_t i);
/* What the user should be told before the merge runs (rows of a vocabulary
 * dropped or filled, ...): one line each. */
size_t lad_plan_nwarnings(const lad_plan *p);
const char *lad_plan_warning(const lad_plan *p, size_t i);

typedef struct lad_run_stats {
    uint64_t bytes_read, bytes_written;
    /* What the engine read, every statistics pass included (bytes_read is
     * each input once): a multi-pass method's I/O. */
    uint64_t bytes_read_passes;
    double seconds;
    size_t nshards;
    /* NaN or Inf values written: an input holds some, the arithmetic
     * overflowed, or a value overflowed the output dtype (f16 beyond
     * 65504). A merge does not fail on them; callers should warn. */
    uint64_t nonfinite;
    size_t nonfinite_tensors;
    const char *first_nonfinite; /* the first such tensor's name */
    /* a merge in parts (--part): this part's shards, and whether the model
     * was complete after them (and this process published it) */
    size_t part_shards;
    bool part_complete, part_published;
} lad_run_stats;

/* The state of a merge in parts in OUT (engine/parts.c). */
typedef struct lad_parts_status {
    uint32_t parts;
    bool complete, published;  /* every shard in; this call published it */
    size_t missing;            /* shards not yet in OUT */
    char missing_text[1024];   /* which, and their parts */
} lad_parts_status;

/* `ladle index OUT`: publishes a merge in parts whose shards are all in
 * OUT (the index, config, tokenizer and card every part staged), or says
 * which are missing (st->missing); staging NULL: found in OUT. */
int lad_parts_publish(const char *out, const char *staging, lad_parts_status *st,
                      lad_error *err);

/* Streams the plan to the output; the output appears complete or not at all. */
int lad_plan_execute(lad_plan *p, lad_run_stats *stats, lad_error *err);
/* Runs a plan without an output into memory: tensor i's bytes go to dst[i]
 * (lad_plan_tensor_info gives its dtype, shape and nbytes). */
int lad_plan_execute_memory(lad_plan *p, void *const *dst, lad_run_stats *stats, lad_error *err);
void lad_plan_tensor_info(const lad_plan *p, size_t i, lad_tensor_info *out);

/* Writes a model's tensors unchanged to out (a .safetensors file, or a
 * Hugging Face folder with its config), atomically; metadata_json (a JSON
 * object of strings, or NULL) becomes the __metadata__, with "format":
 * "pt" unless it says otherwise. */
int lad_save(const lad_model *m, const char *out, const char *metadata_json, bool force,
             uint64_t shard_size, lad_error *err);

/* ---------------------------------------------------------------- jobs */

/*
 * A merge as ladle's commands describe it: an argument vector such as
 * {"lerp", "A", "B", "--alpha", "0.3", "-o", "OUT"} (argv[0] is one of
 * lerp, soup, task, ckpt, slerp, ties, dare, breadcrumbs, della, stock,
 * merge). The CLI, the greedy soup's and the sweep's candidates and the
 * Python package all go through this one parser, so the same arguments
 * give the same bits whoever runs them. Parsing opens nothing; planning
 * opens the models (through `open`, so a caller may supply models held in
 * memory) and checks everything lad_plan_build checks.
 */
typedef struct lad_job lad_job;

/* 0, or 1 when the arguments ask for --help, or -1 with err (err->usage
 * set when the arguments are wrong). */
int lad_job_parse(int argc, char *const *argv, lad_job **out, lad_error *err);
const char *lad_job_command(const lad_job *j);
const char *lad_job_output(const lad_job *j);    /* -o, or NULL: plan to memory */
bool lad_job_quiet(const lad_job *j);            /* -q */
bool lad_job_dry_run(const lad_job *j);          /* --dry-run (recipes) */
const char *lad_job_note(const lad_job *j);      /* a remark for the user, or NULL */
size_t lad_job_ninputs(const lad_job *j);
const char *lad_job_input(const lad_job *j, size_t i);  /* as given */
const char *lad_job_role(const lad_job *j, size_t i);   /* "base", "A", ... */
void lad_job_set_progress(lad_job *j, lad_progress_fn fn, void *ctx);
/* Opens a model reference; NULL means lad_model_open. */
typedef int (*lad_open_fn)(void *ctx, const char *ref, lad_model **out, lad_error *err);
/* Opens the inputs and plans the merge (to memory when the job has no
 * output). The models stay open until lad_job_free. */
int lad_job_plan(lad_job *j, lad_open_fn open, void *ctx, lad_plan **out, lad_error *err);
/* Tensor i's resolved parameters as "name=value ..." (dry runs). */
int lad_job_describe(const lad_job *j, const lad_plan *p, size_t i, char *buf, size_t len,
                     lad_error *err);
void lad_job_free(lad_job *j);
/* "ladle ARGS..." quoted as a shell would read it back; allocated. */
char *lad_command_line(int argc, char *const *argv);

/* ---------------------------------------------------------------- diagnosis */

/* How two models (or their task vectors from a base) relate, per tensor:
 * a = A - BASE and b = B - BASE (a = A, b = B without a base). */
/* ---------------------------------------------------------------- LoRA extraction */

/* A PEFT LoRA adapter from a base and its fine-tune (engine/extract.c). */
typedef struct lad_extract_request {
    const lad_model *base, *tuned;
    const char *base_name;       /* base_model_name_or_path, or NULL: base->ref */
    uint32_t rank;               /* the largest rank (r) */
    double sv_epsilon;           /* drop singular values at or below it (0: none) */
    bool no_distribute;          /* A = S Vt, B = U (default: sqrt(S) each side) */
    bool embed_lora;             /* input embedding and head as LoRA, not full copies */
    bool randomized;             /* a randomized SVD instead of LAPACK's exact one (the
                                  * CLI's default) */
    int power_iters;             /* its power iterations */
    uint64_t seed;               /* its test matrices' seed */
    const char *const *include;  /* regexes a tensor name must match one of, or none */
    size_t ninclude;
    const char *const *exclude;  /* regexes that leave a tensor out */
    size_t nexclude;
    bool has_dtype;              /* the adapter's dtype (default: each tensor's) */
    lad_dtype dtype;
    const char *output;          /* the adapter folder */
    bool force;
    const char *cmdline;         /* for the card, or NULL */
    lad_progress_fn progress;    /* or NULL */
    void *progress_ctx;
} lad_extract_request;

typedef struct lad_extract_stats {
    size_t lora, full, biases;   /* modules given a LoRA, full copies, bias deltas */
    size_t same, left_out, below_epsilon;
    double rel_error;            /* |D - B A|_F / |D|_F over every LoRA module */
    double seconds;
} lad_extract_stats;

int lad_lora_extract(const lad_extract_request *req, lad_extract_stats *stats, lad_error *err);

/* The same from `ladle lora extract`'s arguments (argv[0] is "extract";
 * argv[-1] must be readable, "lora"): opens the models, runs, closes them.
 * Returns 0, 1 for --help (nothing done), or -1 with err (err->usage for a
 * usage error). progress is not called with -q; *quiet says whether it was
 * given. */
int lad_lora_extract_argv(int argc, char *const *argv, lad_progress_fn progress, void *ctx,
                          bool *quiet, lad_extract_stats *stats, lad_error *err);

/* ---------------------------------------------------------------- TALL masks */

/* TALL-mask compression (engine/masks.c): T fine-tunes of a base as their
 * summed task vector and one bit-packed mask per task. */
typedef struct lad_masks_request {
    const lad_model *base;
    const lad_model *const *tasks;
    size_t ntasks;
    double tall_lambda;          /* m_t = |tau_t| > tall_lambda |tau_MTL - tau_t| */
    bool has_dtype;              /* the merged vector's dtype (default F32) */
    lad_dtype dtype;
    const char *output;          /* a .safetensors file */
    bool force;
    lad_progress_fn progress;    /* or NULL */
    void *progress_ctx;
} lad_masks_request;

typedef struct lad_masks_stats {
    size_t tensors;
    uint64_t elements, bytes;
    double kept_fraction;        /* of the T x elements mask bits, how many are set */
} lad_masks_stats;

int lad_masks_write(const lad_masks_request *req, lad_masks_stats *stats, lad_error *err);

/* One task's model from a masks file: base + m_task * tau_MTL. */
typedef struct lad_masks_apply_request {
    const lad_model *base, *masks;
    const char *task;            /* its index (0-based) or its label in the file */
    bool has_dtype;              /* the output's dtype (default: the base's) */
    lad_dtype dtype;
    const char *output;          /* a .safetensors file */
    bool force;
} lad_masks_apply_request;

int lad_masks_apply(const lad_masks_apply_request *req, lad_error *err);

/* Either from `ladle masks` / `ladle masks apply`'s arguments (argv[0] is
 * "masks", argv[1] "apply" for the second): opens the models, runs, closes
 * them. Returns 0, 1 for --help (nothing done), or -1 with err. progress is
 * not called with -q; *quiet says whether it was given. */
int lad_masks_argv(int argc, char *const *argv, lad_progress_fn progress, void *ctx, bool *quiet,
                   lad_masks_stats *stats, lad_error *err);

typedef struct lad_diff_tensor {
    const char *name;
    uint64_t n;
    double aa, bb, ab;         /* |a|^2, |b|^2, a.b in fp64 */
    uint64_t both_nonzero;     /* elements where a and b are both non-zero */
    uint64_t conflicts;        /* ... and of opposite signs */
    /* with subspace, for a 2-D tensor (not an embedding or head): */
    bool subspace;
    double erank_a, erank_b;   /* effective ranks, exp(entropy of S / sum S) */
    uint64_t k_a, k_b;         /* singular directions holding 90% of |.|_F^2 */
    double overlap_u, overlap_v; /* |U_a^T U_b|_F^2 / min(k_a, k_b) over those, and V's */
    double chance_u, chance_v; /* the same for random subspaces: max(k_a, k_b) / dim */
} lad_diff_tensor;

/* Streams every float tensor the models share (shapes must match). With
 * subspace (and a base), each 2-D task vector is also decomposed (LAPACK's
 * SVD, the matrix held whole): the diagnostics of the subspace methods. */
int lad_diff(const lad_model *a, const lad_model *b, const lad_model *base, bool subspace,
             lad_diff_tensor **out, size_t *n, lad_error *err);

/* ---------------------------------------------------------------- evaluation */

/*
 * Child processes with their output captured: the evaluator protocol's
 * commands and the merges that make candidates. Several run at once; the
 * caller polls them. A child in its own process group (evaluators) is
 * stopped as a whole group: SIGTERM, then SIGKILL two seconds later.
 */
#define LAD_TAIL_BYTES 65536   /* of each output stream, the last bytes kept */

typedef struct lad_child {
    int pid;                   /* 0: not started */
    int fd[2];                 /* stdout and stderr pipes; -1 once closed */
    char *text[2];             /* their last LAD_TAIL_BYTES, NUL-terminated */
    size_t len[2];
    bool own_group;
    double started;            /* lad_now() at start */
    double timeout;            /* seconds; 0 = none */
    bool timed_out;            /* stopped because of the timeout */
    int stop_stage;            /* 0 running, 1 SIGTERM sent, 2 SIGKILL sent */
    double stop_time;
    bool exited;
    int status;                /* waitpid status once exited */
} lad_child;

/* Starts argv[0] (searched in PATH) with the extra "NAME=VALUE" strings in
 * env added to the environment (env may be NULL); stdin is /dev/null. */
int lad_child_start(lad_child *c, char *const argv[], char *const env[], bool own_group,
                    double timeout, lad_error *err);
/* Waits at most timeout_ms for output, exits or timeouts of the children
 * that are still running; enforces timeouts. */
void lad_child_poll(lad_child *const *cs, size_t n, int timeout_ms);
/* Asks a running child (and its group) to stop: SIGTERM now, SIGKILL
 * after two seconds of polling. */
void lad_child_stop(lad_child *c);
/* "exit status 3", "killed by signal 9", "timed out after 5 s". */
void lad_child_describe(const lad_child *c, char *buf, size_t len);
bool lad_child_ok(const lad_child *c); /* exited with status 0, no timeout */
void lad_child_free(lad_child *c);
double lad_now(void);                  /* monotonic seconds */

/* Expands "{NAME}" placeholders (NAME a C identifier): lookup gives NAME's
 * text (name is len bytes, not NUL-terminated), or NULL to keep the
 * placeholder as written; setting *quote shell-quotes the text. Returns an
 * allocated string, NULL when out of memory. */
typedef const char *(*lad_expand_fn)(const char *name, size_t len, bool *quote, void *ctx);
char *lad_expand(const char *tmpl, lad_expand_fn lookup, void *ctx);
bool lad_is_identifier(const char *s, size_t len);
/* s in POSIX shell single quotes ('it'\''s'); allocated. */
char *lad_shell_quote(const char *s);

/* The evaluator command template (lad_expand): "{model}" becomes the
 * shell-quoted path, "{slot}" the slot number, "{NAME}" the value of vars
 * NAME (names[i] = values[i]); other braces stay. */
char *lad_eval_expand(const char *tmpl, const char *model, int slot, const char *const *names,
                      const char *const *values, size_t nvars);
/* The score an evaluator printed: the last token of its standard output
 * that is a finite number, tokens being separated by white space and
 * any of , ; : = ( ) [ ] { } % " ' (so "acc=0.93", "93.1%" and JSON work).
 * Returns -1 when there is none. */
int lad_eval_score(const char *text, double *score);

/*
 * The evaluation log: one JSON object per line (recipe, eval, path,
 * score, seconds, ...), appended and flushed to disk as each evaluation
 * ends, so an interrupted search loses nothing. Resuming reads it back and
 * finds a score by (recipe, eval command).
 */
typedef struct lad_journal {
    char *path;
    int fd;
    void *entries;             /* json_t object: key -> the last entry */
    size_t nloaded;
} lad_journal;

/* Opens the log for appending. resume: read the scores already in it;
 * otherwise an existing non-empty log is an error (nothing is overwritten). */
int lad_journal_open(lad_journal *j, const char *path, bool resume, lad_error *err);
/* The logged score of (recipe, eval), if one succeeded. */
bool lad_journal_find(const lad_journal *j, const char *recipe, const char *eval,
                      double *score);
/* Appends an entry (a json_t object with at least "recipe" and "eval"). */
int lad_journal_append(lad_journal *j, void *entry, lad_error *err);
void lad_journal_close(lad_journal *j);

/* ---------------------------------------------------------------- search */

/*
 * Greedy soups and sweeps: the policy, shared by the CLI (candidates written
 * to disk and scored by a command) and the Python package (candidates in
 * memory, scored by a callback). The caller's scorer turns candidates into
 * scores; higher is better unless minimize.
 *
 * Greedy soup (Wortsman et al. 2022, recipe 1): ingredients ranked by their
 * own score, best first, ties in the order given; the soup starts as the
 * best; each next ingredient is added when the uniform soup with it scores
 * at least the best so far (strict: better).
 */
/* Scores n candidate soups at once (the scorer may run them in parallel):
 * candidate k is the uniform soup of ingredients sets[k][0..sizes[k]); a
 * set of one is an ingredient on its own. Returns 0 with every scores[k]
 * set, or -1 with err. */
typedef int (*lad_soup_scorer)(void *ctx, const size_t *const *sets, const size_t *sizes,
                               size_t n, double *scores, lad_error *err);

typedef struct lad_greedy {
    size_t n;              /* ingredients */
    const double *scores;  /* their own scores, or NULL: each is scored alone */
    bool strict, minimize;
    /* Optional (NULL: not told): called before each step's candidate is
     * scored, with the candidate the next step scores if this one is
     * rejected, so a scorer may make it meanwhile. */
    void (*next)(void *ctx, const size_t *set, size_t size);
    /* results, allocated by lad_greedy_run (lad_greedy_free) */
    size_t *rank;          /* rank[r]: the ingredient at rank r */
    double *own;           /* own[i]: ingredient i's own score */
    double *soup_score;    /* soup_score[r]: the soup's score with rank r tried (r = 0: own) */
    bool *accepted;        /* accepted[r] */
    size_t *soup;          /* the accepted ingredients, in rank order */
    size_t nsoup;
    double best;           /* the soup's score */
} lad_greedy;

int lad_greedy_run(lad_greedy *g, lad_soup_scorer score, void *ctx, lad_error *err);
void lad_greedy_free(lad_greedy *g);
/* Is a better than b (strictly), in the search's direction? */
bool lad_better(double a, double b, bool minimize);

/* A sweep's axis, "NAME=START:STOP:STEPS" (STEPS values from START to STOP
 * as numpy.linspace) or "NAME=v1,v2,...": values rounded to 12 significant
 * digits (0:1:11 gives 0.3, not 0.30000000000000004), each with the text
 * substituted for {NAME}. */
#define LAD_GRID_MAX_POINTS 100000
typedef struct lad_axis {
    char name[64];
    double *v;
    char **text;
    size_t n;
} lad_axis;
int lad_axis_parse(const char *spec, lad_axis *out, lad_error *err); /* usage errors */
void lad_axis_free(lad_axis *a);

/* ---------------------------------------------------------------- process */

/* SIGINT/SIGTERM set a flag that long operations poll. */
void lad_interrupt_install(void);
bool lad_interrupted(void);

#endif
