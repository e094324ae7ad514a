/* gnuplot figures: a grid of panels, each with lines of points with error bars read from one
 * data file, drawn once as PNG and once as SVG by one gnuplot script (kept, so the figure can
 * be redrawn or edited). The data file has one gnuplot block (index) per line, rows
 * "x-index x-label column3 column4 ...": x-index 0, 1, ... places the point, x-label is its
 * tick. timirec sweep draws a metric and the throughput against each grid key with it. */
#ifndef TIMIREC_PLOT_H
#define TIMIREC_PLOT_H

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *title;      /* legend entry */
    int block;              /* the data file's block (gnuplot index) */
    int color;              /* gnuplot line colour, 1, 2, ... */
} plot_line_t;

typedef struct {
    const char *title, *ylabel;
    int y_from_zero;        /* y axis from 0 (heights compare); else fitted to the data */
    int col_y, col_lo, col_hi;  /* data columns: the value, its error bar from and to */
    int n_lines;            /* 0: the panel says fig->empty_text */
    const plot_line_t *line;
} plot_panel_t;

typedef struct {
    const char *writer;     /* names the program in the script's first line */
    const char *title;      /* above all panels */
    const char *xlabel;
    const char *data;       /* the data file */
    int n_x;                /* x indices 0 .. n_x-1 */
    int rows, cols, width, height;  /* panels (row-major in panel[]), size in pixels */
    const char *empty_text; /* on a panel without lines */
    const plot_panel_t *panel;
} plot_figure_t;

/* A gnuplot string literal: single quotes, inner ones doubled. */
void plot_string(FILE *f, const char *s);
/* Write the gnuplot script gp that draws fig into png and svg. 0 or -1 (cannot write). */
int plot_write_script(const plot_figure_t *fig, const char *gp, const char *png, const char *svg);
/* 1 when gnuplot is on PATH. */
int plot_have_gnuplot(void);
/* Run gnuplot on a script, its output to log. 1 when it exited 0. */
int plot_run_gnuplot(const char *gp, const char *log);

#ifdef __cplusplus
}
#endif
#endif
