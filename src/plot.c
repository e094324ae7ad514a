/* gnuplot figures (include/timirec/plot.h). */
#include "timirec/plot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

void plot_string(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s, f);
    }
    fputc('\'', f);
}

/* One panel: its title, axis and lines. */
static void write_panel(FILE *f, const plot_figure_t *fig, const plot_panel_t *pn) {
    fprintf(f, "set title ");
    plot_string(f, pn->title);
    fprintf(f, "\nset ylabel ");
    plot_string(f, pn->ylabel);
    fprintf(f, "\n%s\n", pn->y_from_zero ? "set yrange [0:*]" : "set yrange [*:*]");
    if (pn->n_lines == 0) {
        fprintf(f, "set label 1 ");
        plot_string(f, fig->empty_text);
        fprintf(f, " at graph 0.5,0.5 center\nplot NaN notitle\nunset label 1\n");
        return;
    }
    fprintf(f, "plot ");
    for (int l = 0; l < pn->n_lines; l++) {
        const plot_line_t *ln = &pn->line[l];
        fprintf(f, "%s", l == 0 ? "" : ", \\\n     ");
        plot_string(f, fig->data);
        fprintf(f, " index %d using 1:%d:%d:%d:xtic(2) with yerrorlines lw 2 pt 7 ps 0.8 lc %d title ",
                ln->block, pn->col_y, pn->col_lo, pn->col_hi, ln->color);
        plot_string(f, ln->title);
    }
    fprintf(f, "\n");
}

int plot_write_script(const plot_figure_t *fig, const char *gp, const char *png, const char *svg) {
    FILE *f = fopen(gp, "w");
    if (!f) return -1;
    fprintf(f, "# Written by %s; redraw with: gnuplot %s\n", fig->writer, gp);
    for (int term = 0; term < 2; term++) {
        if (term == 0)
            fprintf(f, "set terminal pngcairo noenhanced size %d,%d font 'sans,10'\n", fig->width,
                    fig->height);
        else
            fprintf(f, "set terminal svg noenhanced size %d,%d font 'sans,10' background rgb 'white'\n",
                    fig->width, fig->height);
        fprintf(f, "set output ");
        plot_string(f, term == 0 ? png : svg);
        fprintf(f, "\nset multiplot layout %d,%d title ", fig->rows, fig->cols);
        plot_string(f, fig->title);
        fprintf(f, "\nset grid\nset key outside right top vertical Left reverse samplen 2\nset bars 2\n"
                   "set xrange [-0.4:%g]\nset xlabel ", fig->n_x - 0.6);
        plot_string(f, fig->xlabel);
        fprintf(f, "\n");
        for (int p = 0; p < fig->rows * fig->cols; p++) write_panel(f, fig, &fig->panel[p]);
        fprintf(f, "unset multiplot\nset output\n");
    }
    return fclose(f) == 0 ? 0 : -1;
}

int plot_have_gnuplot(void) {
    const char *path = getenv("PATH");
    if (!path) return 0;
    char file[4096];
    while (*path) {
        size_t n = strcspn(path, ":");
        snprintf(file, sizeof file, "%.*s/gnuplot", (int)n, path);
        if (access(file, X_OK) == 0) return 1;
        path += n + (path[n] == ':');
    }
    return 0;
}

int plot_run_gnuplot(const char *gp, const char *log) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) {
        int fl = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        if (fl >= 0) {
            dup2(fl, 1);
            dup2(fl, 2);
            close(fl);
        }
        execlp("gnuplot", "gnuplot", gp, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return 0;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}
