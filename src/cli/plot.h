/* Charts as plain SVG (plot.c), for --plot. */
#ifndef LADLE_PLOT_H
#define LADLE_PLOT_H

#include "cli.h"

enum { PLOT_POINT, PLOT_REJECTED, PLOT_BEST }; /* a point's marker */

typedef struct plot_series {
    const char *name;
    const double *x, *y;       /* non-finite y: not drawn */
    size_t n;
    const unsigned char *mark; /* per point, or NULL: PLOT_POINT */
    const char *const *labels; /* per point, for its tooltip, or NULL */
} plot_series;

typedef struct plot_panel {
    const char *xlabel, *ylabel;
    const plot_series *series;
    size_t nseries;
    const char *const *xticks; /* categories at x = 0..nxticks-1, or NULL */
    size_t nxticks;
    double ymin, ymax;         /* the y range to cover at least (when ymin < ymax) */
} plot_panel;

/* Can the chart be written there? (Checked before a long search starts.) */
int plot_check(const char *path, lad_error *err);
/* Panels stacked top to bottom under a title. */
int plot_lines(const char *path, const char *title, const plot_panel *panels, size_t n,
               lad_error *err);
/* z[j * nx + i] at x tick i, y tick j (the first y at the bottom); the cell
 * `best` outlined (or none when best >= nx * ny). */
int plot_heatmap(const char *path, const char *title, const char *xlabel,
                 const char *const *xticks, size_t nx, const char *ylabel,
                 const char *const *yticks, size_t ny, const double *z, size_t best,
                 lad_error *err);

#endif
