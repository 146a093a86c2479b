/*
 * Parameters of the generalized task arithmetic method (gta.c), as indexes
 * into lad_op.param. Inputs: in[0] = base, in[1..k] = the fine-tunes.
 */
#ifndef LADLE_GTA_H
#define LADLE_GTA_H

enum gta_sparsify { GTA_DENSE, GTA_MAGNITUDE, GTA_RANDOM, GTA_OUTLIERS, GTA_DELLA };
enum gta_consensus { GTA_NO_CONSENSUS, GTA_SUM, GTA_COUNT };
/* Survivors of a random drop rescaled by 1/p (the DARE and DELLA papers),
 * or each sparsified task vector by |d|_1 / |kept d|_1 per tensor
 * (mergekit's rescale), or not at all. */
enum gta_rescale { GTA_RESCALE_NONE, GTA_RESCALE_P, GTA_RESCALE_L1 };

enum gta_param {
    GTA_LAMBDA,     /* scale of the merged task vector */
    GTA_SPARSIFY,   /* enum gta_sparsify */
    GTA_CONSENSUS,  /* enum gta_consensus */
    GTA_NORMALIZE,  /* 1: divide by the weights that contributed */
    GTA_RESCALE,    /* enum gta_rescale */
    GTA_SEED,       /* random drop: the seed */
    GTA_NORM_MAG,   /* 1: scale each task vector to the mean norm (per tensor) */
    GTA_SCOPE,      /* 0: select per tensor; 1: over the whole model (TIES paper) */
    GTA_TALL_K,     /* consensus: keep where >= K TALL masks hold (0: no mask) */
    GTA_TALL_LAMBDA, /* the TALL masks' lambda */
    GTA_TV0 = 10,   /* then per task vector i, GTA_PER_TV values: */
    GTA_PER_TV = 4,
};
enum gta_tv_param { GTA_WEIGHT, GTA_DENSITY, GTA_GAMMA, GTA_EPSILON };

#define GTA_MAX_TV ((256 - GTA_TV0) / GTA_PER_TV)
#define GTA_TV(i, p) (GTA_TV0 + (i) * GTA_PER_TV + (p))

#endif
