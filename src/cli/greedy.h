/* Greedy soup: `ladle soup --greedy` (cmd_soup parses, cmd_greedy runs). */
#ifndef LADLE_GREEDY_H
#define LADLE_GREEDY_H

#include "search.h"

#define GREEDY_MAX 64

typedef struct greedy_args {
    merge_opts merge;           /* -o, --dtype, -j, --shard-size, --force, -q */
    search_opts search;
    const char *const *models;
    size_t nmodels;
    double scores[GREEDY_MAX];  /* --scores */
    int nscores;                /* -1: not given */
    bool strict, json;
} greedy_args;

int greedy_soup(greedy_args *g);

#endif
