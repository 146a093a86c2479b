/*
 * Charts as plain SVG 1.1 (no script, no external resources: any browser,
 * rsvg-convert or Inkscape draws them): line charts in stacked panels and a
 * heat map. Written to a temporary sibling and renamed, so a chart appears
 * whole or not at all. Every point carries a <title> (its exact value on
 * hover).
 */
#include "plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define W 760.0
#define PANEL_H 300.0
#define LEFT 74.0
#define RIGHT 24.0
#define TOP 60.0 /* the title, then each panel's legend above it */
#define TICK_CHARS 28 /* category labels longer than this are cut */
#define GAP 64.0 /* below each panel: its x axis */

static const char *const COLORS[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
                                     "#8c564b"};

/* XML text: & < > " escaped. */
static void text(FILE *f, const char *s)
{
    for (; s && *s; s++)
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
}

/* Round tick steps (1, 2, 5 x 10^k) covering [lo, hi] with about n ticks. */
static double tick_step(double lo, double hi, int n)
{
    double span = hi - lo, raw = span > 0 ? span / n : 1, p = pow(10, floor(log10(raw)));
    double r = raw / p;
    return (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10) * p;
}

static void range_of(const plot_panel *p, bool ys, double *lo, double *hi)
{
    *lo = INFINITY;
    *hi = -INFINITY;
    for (size_t s = 0; s < p->nseries; s++)
        for (size_t i = 0; i < p->series[s].n; i++) {
            double v = ys ? p->series[s].y[i] : p->series[s].x[i];
            if (isfinite(v)) {
                *lo = fmin(*lo, v);
                *hi = fmax(*hi, v);
            }
        }
    if (!isfinite(*lo)) {
        *lo = 0;
        *hi = 1;
    }
    if (ys && p->ymin < p->ymax) {
        *lo = fmin(*lo, p->ymin);
        *hi = fmax(*hi, p->ymax);
    }
    if (*hi - *lo < 1e-12 * fmax(1, fabs(*hi))) { /* one value: a band around it */
        double d = fabs(*hi) > 0 ? fabs(*hi) * 0.05 : 0.5;
        *lo -= d;
        *hi += d;
    }
}

static void fmt(char *buf, size_t len, double v, double step)
{
    int digits = step > 0 && step < 1 ? (int)ceil(-log10(step) - 1e-9) : 0;
    snprintf(buf, len, "%.*f", digits > 12 ? 12 : digits, fabs(v) < step * 1e-9 ? 0.0 : v);
}

/* The room rotated category labels take below a panel. */
static double tick_room(const plot_panel *p)
{
    size_t longest = 0;
    for (size_t i = 0; p->xticks && i < p->nxticks; i++) {
        size_t n = strlen(p->xticks[i]);
        longest = n > longest ? n : longest;
    }
    longest = longest > TICK_CHARS ? TICK_CHARS : longest;
    return p->xticks ? 10 + 4.2 * (double)longest : 0; /* 6.5 px a character, at 40 degrees */
}

static void panel(FILE *f, const plot_panel *p, double y0)
{
    /* (room on the left for the first rotated category label) */
    double x0 = LEFT + (p->xticks ? 56 : 0), pw = W - x0 - RIGHT, ph = PANEL_H;
    double xlo, xhi, ylo, yhi;
    range_of(p, false, &xlo, &xhi);
    range_of(p, true, &ylo, &yhi);
    double ys = tick_step(ylo, yhi, 5), xs = tick_step(xlo, xhi, 8);
    ylo = floor(ylo / ys) * ys;
    yhi = ceil(yhi / ys) * ys;
    if (p->xticks) { /* categories: x = 0..n-1 exactly */
        xlo -= 0.5;
        xhi += 0.5;
    } else {
        double pad = (xhi - xlo) * 0.03;
        xlo -= pad;
        xhi += pad;
    }
#define PX(v) (x0 + ((v) - xlo) / (xhi - xlo) * pw)
#define PY(v) (y0 + ph - ((v) - ylo) / (yhi - ylo) * ph)
    fprintf(f, "<g class=\"panel\">\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
               "fill=\"#fafafa\" stroke=\"#999\"/>\n",
            x0, y0, pw, ph);
    char b[64];
    for (double v = ylo; v <= yhi + ys * 1e-9; v += ys) {
        fmt(b, sizeof b, v, ys);
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                x0, x0 + pw, PY(v), PY(v), x0 - 6, PY(v) + 4, b);
    }
    if (p->xticks) {
        size_t n = p->nxticks, every = n > 24 ? (n + 23) / 24 : 1;
        for (size_t i = 0; i < n; i += every) {
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" transform=\"rotate(-40 "
                       "%.1f %.1f)\">",
                    PX((double)i), y0 + ph + 14, PX((double)i), y0 + ph + 14);
            char cut[TICK_CHARS + 8];
            size_t len = strlen(p->xticks[i]);
            if (len > TICK_CHARS) /* its end: where names differ */
                snprintf(cut, sizeof cut, "...%s", p->xticks[i] + len - (TICK_CHARS - 3));
            text(f, len > TICK_CHARS ? cut : p->xticks[i]);
            fputs("</text>\n", f);
        }
    } else {
        for (double v = ceil(xlo / xs) * xs; v <= xhi; v += xs) {
            fmt(b, sizeof b, v, xs);
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", PX(v),
                    y0 + ph + 16, b);
        }
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"xlabel\">", x0 + pw / 2,
            y0 + ph + 36 + tick_room(p));
    text(f, p->xlabel);
    fprintf(f, "</text>\n<text x=\"16\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 16 "
               "%.1f)\" class=\"ylabel\">",
            y0 + ph / 2, y0 + ph / 2);
    text(f, p->ylabel);
    fputs("</text>\n", f);
    for (size_t s = 0; s < p->nseries; s++) {
        const plot_series *se = &p->series[s];
        const char *col = COLORS[s % (sizeof COLORS / sizeof *COLORS)];
        fprintf(f, "<polyline class=\"series\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" "
                   "points=\"",
                col);
        for (size_t i = 0; i < se->n; i++)
            if (isfinite(se->y[i]))
                fprintf(f, "%.1f,%.1f ", PX(se->x[i]), PY(se->y[i]));
        fputs("\"/>\n", f);
        for (size_t i = 0; i < se->n; i++) {
            if (!isfinite(se->y[i]))
                continue;
            int mk = se->mark ? se->mark[i] : PLOT_POINT;
            double r = mk == PLOT_BEST ? 6 : 4;
            fprintf(f, "<circle class=\"%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"%.0f\" fill=\"%s\" "
                       "stroke=\"%s\" stroke-width=\"2\"><title>",
                    mk == PLOT_REJECTED ? "rejected" : mk == PLOT_BEST ? "best" : "point",
                    PX(se->x[i]), PY(se->y[i]), r,
                    mk == PLOT_REJECTED ? "white" : mk == PLOT_BEST ? "#ffbf00" : col, col);
            if (se->labels && se->labels[i]) {
                text(f, se->labels[i]);
                fputs(": ", f);
            }
            fprintf(f, "%.10g</title></circle>\n", se->y[i]);
        }
        /* the legend, above the panel, left to right */
        double lx = x0 + 260 * (double)s, ly = y0 - 8;
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                   "stroke-width=\"2\"/><text x=\"%.1f\" y=\"%.1f\">",
                lx, lx + 20, ly - 4, ly - 4, col, lx + 26, ly);
        text(f, se->name);
        fputs("</text>\n", f);
    }
    fputs("</g>\n", f);
#undef PX
#undef PY
}

static FILE *begin(const char *path, char **tmp, double h, const char *title, lad_error *err)
{
    size_t len = strlen(path) + 16;
    *tmp = malloc(len);
    if (!*tmp) {
        lad_fail(err, "out of memory");
        return NULL;
    }
    snprintf(*tmp, len, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(*tmp, "w");
    if (!f) {
        lad_fail(err, "--plot %s: cannot write it (%s)", path, strerror(errno));
        free(*tmp);
        *tmp = NULL;
        return NULL;
    }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
               "version=\"1.1\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
               "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"11\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
               "<text x=\"%.0f\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" class=\"title\">",
            W, h, W, h, W / 2);
    text(f, title);
    fputs("</text>\n", f);
    return f;
}

static int finish(FILE *f, const char *path, char *tmp, lad_error *err)
{
    fputs("</svg>\n", f);
    int bad = ferror(f) | (fflush(f) != 0) | (fsync(fileno(f)) != 0);
    bad |= fclose(f) != 0;
    if (!bad && rename(tmp, path) != 0)
        bad = 1;
    if (bad) {
        unlink(tmp);
        lad_fail(err, "--plot %s: writing it failed (%s)", path, strerror(errno));
    }
    free(tmp);
    return bad ? -1 : 0;
}

int plot_check(const char *path, lad_error *err)
{
    char *tmp;
    FILE *f = begin(path, &tmp, 1, "", err);
    if (!f)
        return -1;
    fclose(f);
    unlink(tmp);
    free(tmp);
    return 0;
}

int plot_lines(const char *path, const char *title, const plot_panel *panels, size_t n,
               lad_error *err)
{
    char *tmp;
    double h = TOP;
    for (size_t i = 0; i < n; i++)
        h += PANEL_H + GAP + tick_room(&panels[i]) + (i ? 24 : 0);
    FILE *f = begin(path, &tmp, h, title, err);
    if (!f)
        return -1;
    double y = TOP;
    for (size_t i = 0; i < n; i++) {
        panel(f, &panels[i], y);
        y += PANEL_H + GAP + tick_room(&panels[i]) + 24; /* 24: the next one's legend */
    }
    return finish(f, path, tmp, err);
}

/* viridis, by five of its stops */
static void color(double t, char *buf, size_t len)
{
    static const double S[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98},
                                   {253, 231, 37}};
    t = !isfinite(t) ? 0 : t < 0 ? 0 : t > 1 ? 1 : t;
    double p = t * 4;
    int i = p >= 4 ? 3 : (int)p;
    double u = p - i;
    snprintf(buf, len, "#%02x%02x%02x", (int)(S[i][0] + u * (S[i + 1][0] - S[i][0])),
             (int)(S[i][1] + u * (S[i + 1][1] - S[i][1])),
             (int)(S[i][2] + u * (S[i + 1][2] - S[i][2])));
}

int plot_heatmap(const char *path, const char *title, const char *xlabel,
                 const char *const *xticks, size_t nx, const char *ylabel,
                 const char *const *yticks, size_t ny, const double *z, size_t best,
                 lad_error *err)
{
    double pw = W - LEFT - RIGHT - 90, ph = fmin(420, fmax(120, 26.0 * (double)ny));
    char *tmp;
    FILE *f = begin(path, &tmp, TOP + ph + 90, title, err);
    if (!f)
        return -1;
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < nx * ny; i++)
        if (isfinite(z[i])) {
            lo = fmin(lo, z[i]);
            hi = fmax(hi, z[i]);
        }
    if (!isfinite(lo))
        lo = hi = 0;
    double cw = pw / (double)nx, chh = ph / (double)ny;
    char c[16];
    fputs("<g class=\"heatmap\">\n", f);
    for (size_t j = 0; j < ny; j++)
        for (size_t i = 0; i < nx; i++) {
            double v = z[j * nx + i];
            color(hi > lo ? (v - lo) / (hi - lo) : 0.5, c, sizeof c);
            /* the first y value at the bottom */
            double x = LEFT + (double)i * cw, y = TOP + ph - (double)(j + 1) * chh;
            fprintf(f, "<rect class=\"cell\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                       "fill=\"%s\"%s><title>%s=%s, %s=%s: %.10g</title></rect>\n",
                    x, y, cw, chh, isfinite(v) ? c : "#cccccc",
                    j * nx + i == best ? " stroke=\"red\" stroke-width=\"3\"" : "", xlabel,
                    xticks[i], ylabel, yticks[j], v);
            if (nx <= 16 && ny <= 16 && isfinite(v))
                fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"%s\">"
                           "%.4g</text>\n",
                        x + cw / 2, y + chh / 2 + 4,
                        hi > lo && (v - lo) / (hi - lo) > 0.6 ? "black" : "white", v);
        }
    for (size_t i = 0; i < nx; i++) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", LEFT + ((double)i + 0.5) * cw,
                TOP + ph + 16);
        text(f, xticks[i]);
        fputs("</text>\n", f);
    }
    for (size_t j = 0; j < ny; j++) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", LEFT - 6,
                TOP + ph - ((double)j + 0.5) * chh + 4);
        text(f, yticks[j]);
        fputs("</text>\n", f);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" class=\"xlabel\">", LEFT + pw / 2,
            TOP + ph + 38);
    text(f, xlabel);
    fprintf(f, "</text>\n<text x=\"16\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 16 "
               "%.1f)\" class=\"ylabel\">",
            TOP + ph / 2, TOP + ph / 2);
    text(f, ylabel);
    fputs("</text>\n", f);
    /* the colour bar */
    double bx = LEFT + pw + 30;
    for (int k = 0; k < 50; k++) {
        color(k / 49.0, c, sizeof c);
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"16\" height=\"%.2f\" fill=\"%s\"/>\n", bx,
                TOP + ph - (k + 1) * ph / 50, ph / 50 + 0.5, c);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%.4g</text><text x=\"%.1f\" y=\"%.1f\">%.4g</text>\n"
               "<text x=\"%.1f\" y=\"%.1f\">score</text>\n</g>\n",
            bx + 20, TOP + ph, lo, bx + 20, TOP + 8, hi, bx, TOP - 6);
    return finish(f, path, tmp, err);
}
