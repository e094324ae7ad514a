/* The sweep's pieces: the grid parser (values, point order, every rejected form), the CSV
 * splitter against the writer (commas, quotes, empty fields), and the reader of run.c's
 * JSON-lines log (epochs, the best epoch the test reloaded, dev metrics there, test metrics,
 * times and samples/s; a log without its test record; a line that is not JSON), the CSV table
 * saved and read back (a replaced row, another header, a short row, no file), and a gnuplot
 * script (quotes in titles, data columns, a panel without lines). */
#include "test_util.h"
#include "timirec/csv_table.h"
#include "timirec/jsonl.h"
#include "timirec/plot.h"
#include "timirec/sweep.h"

#include <unistd.h>

static void test_grid(void) {
    sweep_grid_t g;
    char err[512];
    CHECK(sweep_grid_parse(" K = 1, 2,4 ; --history_max=20,50;", &g, err, sizeof err) == 0, "%s", err);
    CHECK(g.n_keys == 2 && g.n_points == 6, "keys %d points %lld", g.n_keys, (long long)g.n_points);
    CHECK(strcmp(g.key[0], "K") == 0 && strcmp(g.key[1], "history_max") == 0, "keys %s %s", g.key[0],
          g.key[1]);
    CHECK(g.n_values[0] == 3 && strcmp(g.value[0][2], "4") == 0, "K values");
    CHECK(g.n_values[1] == 2 && strcmp(g.value[1][1], "50") == 0, "history values");
    /* Last key fastest: point 3 = (K index 1, history index 1). */
    int idx[SWEEP_MAX_KEYS];
    sweep_grid_point(&g, 3, idx);
    CHECK(idx[0] == 1 && idx[1] == 1, "point 3 -> %d %d", idx[0], idx[1]);
    sweep_grid_point(&g, 4, idx);
    CHECK(idx[0] == 2 && idx[1] == 0, "point 4 -> %d %d", idx[0], idx[1]);
    sweep_grid_free(&g);

    CHECK(sweep_grid_parse("lr=1e-3", &g, err, sizeof err) == 0 && g.n_points == 1, "%s", err);
    sweep_grid_free(&g);

    static const struct {
        const char *grid, *message;
    } bad[] = {
        {"", "empty"},
        {"K", "has no \"=\""},
        {"K=1,,2", "empty or blank value"},
        {"K=", "empty or blank value"},
        {"=1,2", "is not a flag name"},
        {"K-x=1", "is not a flag name"},
        {"K=1;K=2", "appears twice"},
        {"K=1,2,1", "value 1 of K appears twice"},
        {"K=1;;L=2", "empty element"},
        {"K=1 2", "empty or blank value"},
        {"a=1;b=1;c=1;d=1;e=1;f=1;g=1;h=1;i=1", "more than 8 keys"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        int rc = sweep_grid_parse(bad[i].grid, &g, err, sizeof err);
        CHECK(rc == -1 && strstr(err, bad[i].message), "grid \"%s\": rc %d, message \"%s\" (want \"%s\")",
              bad[i].grid, rc, err, bad[i].message);
        CHECK(g.n_keys == 0, "grid \"%s\" left %d keys", bad[i].grid, g.n_keys);
    }
}

static void test_csv(void) {
    const char *fields[] = {"plain", "", "a,b", "say \"hi\"", "exit 2: --K: 0 is outside [1, 64]", "x"};
    int n = (int)(sizeof fields / sizeof *fields);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    for (int i = 0; i < n; i++) {
        if (i) fputc(',', f);
        csv_write_field(f, fields[i]);
    }
    fclose(f);
    CHECK(strcmp(text, "plain,,\"a,b\",\"say \"\"hi\"\"\",\"exit 2: --K: 0 is outside [1, 64]\",x") == 0,
          "written: %s", text);
    char *got[16];
    int m = csv_split(text, got, 16);
    CHECK(m == n, "%d fields, want %d", m, n);
    for (int i = 0; i < m && i < n; i++) {
        CHECK(strcmp(got[i], fields[i]) == 0, "field %d: \"%s\" want \"%s\"", i, got[i], fields[i]);
        free(got[i]);
    }
    free(text);
    m = csv_split("a,b,c", got, 2);
    CHECK(m == 2 && strcmp(got[1], "b") == 0, "max_fields: %d", m);
    for (int i = 0; i < m; i++) free(got[i]);
}

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

static void test_json_log(void) {
    char path[] = "/tmp/timirec_test_sweep_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    close(fd);
    /* As run.c writes it: epoch 2 is the best, epoch 3 ties it (so the checkpoint the test
     * reloads is epoch 3's), epoch 4 is worse. */
    const char *log =
        "{\"event\": \"start\", \"time\": \"2026-11-28 10:00:00\", \"config\": {\"K\": 2, \"path\": \"a\\\"b\"}}\n"
        "{\"event\": \"epoch\", \"epoch\": 1, \"loss\": 0.5, \"train_s\": 2.000, \"samples_per_s\": 100.0, \"eval_s\": 0.500, \"dev\": {\"NDCG@5\": 0.100000, \"HR@5\": 0.200000}, \"best\": true}\n"
        "{\"event\": \"epoch\", \"epoch\": 2, \"loss\": 0.4, \"train_s\": 1.000, \"samples_per_s\": 200.0, \"eval_s\": 0.250, \"dev\": {\"NDCG@5\": 0.300000, \"HR@5\": 0.400000}, \"best\": true}\n"
        "{\"event\": \"epoch\", \"epoch\": 3, \"loss\": 0.3, \"train_s\": 1.000, \"samples_per_s\": 200.0, \"eval_s\": 0.250, \"dev\": {\"NDCG@5\": 0.300000, \"HR@5\": 0.450000}, \"test\": {\"NDCG@5\": 0.7, \"HR@5\": 0.8}, \"best\": true}\n"
        "{\"event\": \"epoch\", \"epoch\": 4, \"loss\": 0.2, \"train_s\": 1.000, \"samples_per_s\": 200.0, \"eval_s\": 0.250, \"dev\": {\"NDCG@5\": 0.200000, \"HR@5\": 0.300000}, \"best\": false}\n"
        "{\"event\": \"test\", \"stage\": \"pretrain\", \"model_path\": \"m/\\\"x\\\".safetensors\", \"metrics\": {\"NDCG@5\": 0.250000, \"NDCG@10\": 0.300000, \"HR@5\": 0.350000, \"HR@10\": 0.500000}}\n";
    CHECK(write_text(path, log) == 0, "write %s", path);
    jsonl_run_summary_t r;
    char err[512];
    CHECK(jsonl_read_run_log(path, &r, err, sizeof err) == 0, "%s", err);
    CHECK(r.has_test == 1 && r.epochs == 4 && r.best_epoch == 3, "has_test %d epochs %d best %d",
          r.has_test, r.epochs, r.best_epoch);
    CHECK(r.n_dev == 2 && strcmp(r.dev_name[1], "HR@5") == 0, "dev %d %s", r.n_dev, r.dev_name[1]);
    CHECK_CLOSE(r.dev[1], 0.45, 1e-12);
    CHECK(r.n_test == 4 && strcmp(r.test_name[3], "HR@10") == 0, "test %d", r.n_test);
    CHECK_CLOSE(r.test[0], 0.25, 1e-12);
    CHECK_CLOSE(r.test[3], 0.5, 1e-12);
    CHECK_CLOSE(r.train_s, 5.0, 1e-12);
    CHECK_CLOSE(r.eval_s, 1.25, 1e-12);
    CHECK_CLOSE(r.samples_per_s, (200.0 + 600.0) / 5.0, 1e-9); /* samples over time, not a mean of rates */

    /* Killed before the test record: epochs counted, has_test 0. */
    const char *partial = "{\"event\": \"epoch\", \"epoch\": 1, \"loss\": 0.5, \"train_s\": 2.0, "
                          "\"samples_per_s\": 100.0, \"eval_s\": 0.5, \"dev\": {\"NDCG@5\": 0.1}, \"best\": true}\n";
    write_text(path, partial);
    CHECK(jsonl_read_run_log(path, &r, err, sizeof err) == 0 && r.has_test == 0 && r.epochs == 1,
          "partial: has_test %d epochs %d", r.has_test, r.epochs);

    write_text(path, "{\"event\": \"epoch\", \"epoch\": 1}\nnot json\n");
    err[0] = 0;
    CHECK(jsonl_read_run_log(path, &r, err, sizeof err) == -1 && strstr(err, ":2: not a JSON object"),
          "garbage line: \"%s\"", err);
    write_text(path, "{\"event\": \"test\", \"metrics\": {\"HR@5\": 0.1\n");
    err[0] = 0;
    CHECK(jsonl_read_run_log(path, &r, err, sizeof err) == -1 && strstr(err, "malformed"),
          "cut-off record: \"%s\"", err);
    unlink(path);
    CHECK(jsonl_read_run_log(path, &r, err, sizeof err) == -1 && strstr(err, "cannot open"),
          "missing file: \"%s\"", err);
}

static char **row3(const char *a, const char *b, const char *c) {
    char **r = malloc(3 * sizeof *r);
    r[0] = strdup(a), r[1] = strdup(b), r[2] = strdup(c);
    return r;
}

static void test_csv_table(void) {
    char dir[] = "/tmp/timirec_test_sweep_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[256], err[512];
    snprintf(path, sizeof path, "%s/t.csv", dir);
    csv_table_t t = {0}, u = {0};
    CHECK(csv_table_add_col(&t, "key") == 0 && csv_table_add_col(&t, "why") == 1 &&
          csv_table_add_col(&t, "x") == 2 && csv_table_col(&t, "x") == 2 && csv_table_col(&t, "y") == -1,
          "columns");
    csv_table_append(&t, row3("a", "exit 2: \"K\", 0", "1"));
    csv_table_append(&t, row3("b", "", "2"));
    csv_table_replace(&t, 0, row3("a", "say \"hi\", twice", "3"));
    CHECK(csv_table_save(&t, path, err, sizeof err) == 0, "%s", err);
    for (int c = 0; c < 3; c++) csv_table_add_col(&u, t.col[c]);
    CHECK(csv_table_load(&u, path, err, sizeof err) == 0 && u.n_rows == 2, "load: %s, %d rows", err, u.n_rows);
    for (int i = 0; i < u.n_rows && i < 2; i++)
        for (int c = 0; c < 3; c++)
            CHECK(strcmp(u.row[i][c], t.row[i][c]) == 0, "row %d col %d: \"%s\" want \"%s\"", i, c,
                  u.row[i][c], t.row[i][c]);
    csv_table_free(&u);
    csv_table_add_col(&u, "key");
    CHECK(csv_table_load(&u, path, err, sizeof err) == -2 && u.n_rows == 0, "another header");
    csv_table_free(&u);
    for (int c = 0; c < 3; c++) csv_table_add_col(&u, t.col[c]);
    write_text(path, "key,why,x\na,b,c\n\nd,e\n");
    err[0] = 0;
    CHECK(csv_table_load(&u, path, err, sizeof err) == -1 && strstr(err, ":4: 2 fields, expected 3"),
          "short row: \"%s\"", err);
    csv_table_free(&u);
    unlink(path);
    for (int c = 0; c < 3; c++) csv_table_add_col(&u, t.col[c]);
    CHECK(csv_table_load(&u, path, err, sizeof err) == 0 && u.n_rows == 0, "no file: %s", err);
    csv_table_free(&u);
    csv_table_free(&t);
    rmdir(dir);
}

static void test_plot_script(void) {
    char gp[] = "/tmp/timirec_test_sweep_XXXXXX";
    int fd = mkstemp(gp);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    close(fd);
    plot_line_t lines[1] = {{"K=1 it's", 3, 2}};
    plot_panel_t panel[2] = {{"pretrain: test HR@5", "HR@5", 0, 3, 4, 5, 1, lines},
                             {"pretrain: samples/s", "samples/s", 1, 6, 7, 8, 0, NULL}};
    plot_figure_t fig = {"a test", "title", "K", "d.dat", 3, 2, 1, 700, 800, "no runs", panel};
    CHECK(plot_write_script(&fig, gp, "a.png", "a.svg") == 0, "write %s", gp);
    char *text = NULL;
    size_t len = 0;
    FILE *f = fopen(gp, "r");
    CHECK(f && getdelim(&text, &len, 0, f) > 0, "read %s", gp);
    if (f) fclose(f);
    static const char *want[] = {
        "set output 'a.png'\nset multiplot layout 2,1 title 'title'\n",
        "set xrange [-0.4:2.4]\nset xlabel 'K'\n",
        "plot 'd.dat' index 3 using 1:3:4:5:xtic(2) with yerrorlines lw 2 pt 7 ps 0.8 lc 2 title 'K=1 it''s'\n",
        "set yrange [0:*]\nset label 1 'no runs' at graph 0.5,0.5 center\nplot NaN notitle\n",
        "set terminal svg noenhanced size 700,800",
    };
    for (size_t i = 0; text && i < sizeof want / sizeof *want; i++)
        CHECK(strstr(text, want[i]) != NULL, "the script lacks \"%s\":\n%s", want[i], text);
    free(text);
    unlink(gp);
}

int main(void) {
    test_grid();
    test_csv();
    test_json_log();
    test_csv_table();
    test_plot_script();
    return tu_finish("test_sweep");
}
