/* svgplot.c -- a log-log line plot as SVG, from "SERIES X Y" lines on standard input */
//
// tools/bench feeds it lines such as "poll 1000 241.5" (series, idle connections, µs per round
// trip) and gets back a picture that browsers and GitHub show: both axes logarithmic, because
// the interesting values span several decades and a straight line of slope 1 then means
// "cost grows in proportion to N". No library: an SVG file is just text.
//
//   svgplot --title TEXT [--xlabel TEXT] [--ylabel TEXT] < data > plot.svg
//
// Blank lines and lines starting with '#' are skipped. Series appear in the legend in the
// order they first appear in the input; each series' points are joined in order of X.

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WIDTH         720
#define HEIGHT        450
#define PLOT_LEFT     80
#define PLOT_TOP      50
#define PLOT_RIGHT    (WIDTH - 170) // the legend lives right of the plot
#define PLOT_BOTTOM   (HEIGHT - 60)
#define MAX_SERIES    8
#define NAME_BYTES    64
#define MARKER_RADIUS 3.5

static const char *const colours[MAX_SERIES] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                                "#9467bd", "#8c564b", "#e377c2", "#17becf"};

struct point {
    double x, y;
};

struct series {
    char name[NAME_BYTES];
    struct point *points;
    size_t count, cap;
};

// The decades an axis spans: 10^lo .. 10^hi, at least one decade.
struct axis {
    int lo, hi;
};

// How many bytes the UTF-8 character starting at p has, or 0 if it is not valid UTF-8.
// (The terminating '\0' is not a continuation byte, so we never read past the string.)
static size_t utf8_length(const unsigned char *p)
{
    size_t len = 0;

    if (*p < 0x80)
        return 1;
    if (*p >= 0xc2 && *p <= 0xdf)
        len = 2;
    else if (*p >= 0xe0 && *p <= 0xef)
        len = 3;
    else if (*p >= 0xf0 && *p <= 0xf4)
        len = 4;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    }
    return len;
}

// Text goes into the SVG inside elements, so XML's special characters must become entities.
// Control characters and broken UTF-8 are not allowed in XML at all: they become '?'.
static void put_escaped(const char *text)
{
    const unsigned char *p = (const unsigned char *)text;

    while (*p != '\0') {
        size_t len = utf8_length(p);
        if (len == 0 || (*p < 0x20 && *p != '\t')) {
            putchar('?');
            p++;
            continue;
        }
        switch (*p) {
        case '&': fputs("&amp;", stdout); break;
        case '<': fputs("&lt;", stdout); break;
        case '>': fputs("&gt;", stdout); break;
        case '"': fputs("&quot;", stdout); break;
        case '\'': fputs("&apos;", stdout); break;
        default: fwrite(p, 1, len, stdout);
        }
        p += len;
    }
}

static struct series *series_find(struct series *all, size_t *count, const char *name)
{
    for (size_t i = 0; i < *count; i++) {
        if (strcmp(all[i].name, name) == 0)
            return &all[i];
    }
    if (*count == MAX_SERIES)
        return NULL;
    struct series *s = &all[(*count)++];
    snprintf(s->name, sizeof s->name, "%s", name);
    return s;
}

static int series_add(struct series *s, double x, double y)
{
    if (s->count == s->cap) {
        size_t cap = s->cap == 0 ? 16 : s->cap * 2;
        struct point *grown = realloc(s->points, cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        s->points = grown;
        s->cap = cap;
    }
    s->points[s->count++] = (struct point){x, y};
    return 0;
}

// Reads every "SERIES X Y" line. Returns 0, or -1 after one line on stderr.
static int data_read(struct series *all, size_t *count)
{
    char *line = NULL;
    size_t line_cap = 0;
    size_t number = 0;
    int rc = 0;

    while (rc == 0 && getline(&line, &line_cap, stdin) != -1) {
        char name[NAME_BYTES];
        double x, y;
        char extra;
        number++;
        if (line[strspn(line, " \t\r\n")] == '\0' || line[0] == '#')
            continue;
        if (sscanf(line, "%63s %lf %lf %c", name, &x, &y, &extra) != 3) {
            fprintf(stderr, "svgplot: line %zu: expected 'SERIES X Y'\n", number);
            rc = -1;
        } else if (!(x > 0 && y > 0 && isfinite(x) && isfinite(y))) {
            // log10 of zero or a negative number has no place on a log axis
            fprintf(stderr, "svgplot: line %zu: X and Y must be positive\n", number);
            rc = -1;
        } else {
            struct series *s = series_find(all, count, name);
            if (s == NULL) {
                fprintf(stderr, "svgplot: line %zu: more than %d series\n", number, MAX_SERIES);
                rc = -1;
            } else if (series_add(s, x, y) < 0) {
                fprintf(stderr, "svgplot: out of memory\n");
                rc = -1;
            }
        }
    }
    if (rc == 0 && ferror(stdin)) {
        fprintf(stderr, "svgplot: read stdin: %s\n", strerror(errno));
        rc = -1;
    }
    free(line);
    return rc;
}

static int compare_x(const void *a, const void *b)
{
    double x = ((const struct point *)a)->x;
    double y = ((const struct point *)b)->x;

    return (x > y) - (x < y);
}

// The whole decades around [min, max]; with no data, the given default.
static struct axis axis_fit(double min, double max, struct axis fallback)
{
    if (!(min <= max))
        return fallback;
    struct axis a = {(int)floor(log10(min)), (int)ceil(log10(max))};
    if (a.hi == a.lo)
        a.hi++;
    return a;
}

static double axis_map(struct axis a, double value, double from, double to)
{
    return from + (log10(value) - a.lo) / (a.hi - a.lo) * (to - from);
}

static void put_decade_label(int decade)
{
    if (decade >= 0)
        printf("%.0f", pow(10, decade));
    else
        printf("%g", pow(10, decade));
}

static void plot_write(struct series *all, size_t count, const char *title, const char *xlabel,
                       const char *ylabel)
{
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;

    for (size_t i = 0; i < count; i++) {
        for (size_t j = 0; j < all[i].count; j++) {
            xmin = fmin(xmin, all[i].points[j].x);
            xmax = fmax(xmax, all[i].points[j].x);
            ymin = fmin(ymin, all[i].points[j].y);
            ymax = fmax(ymax, all[i].points[j].y);
        }
    }
    struct axis xa = axis_fit(xmin, xmax, (struct axis){1, 4});
    struct axis ya = axis_fit(ymin, ymax, (struct axis){0, 3});

    printf("<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\" "
           "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n",
           WIDTH, HEIGHT, WIDTH, HEIGHT);
    fputs("<title>", stdout);
    put_escaped(title);
    fputs("</title>\n", stdout);
    printf("<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", WIDTH, HEIGHT);
    printf("<text x=\"%d\" y=\"30\" text-anchor=\"middle\" font-size=\"16\" "
           "font-weight=\"bold\">",
           WIDTH / 2);
    put_escaped(title);
    fputs("</text>\n", stdout);

    // Grid: a solid line at every decade, faint ones at 2..9 times it, so values can be read.
    for (int d = xa.lo; d <= xa.hi; d++) {
        for (int m = 1; m <= (d < xa.hi ? 9 : 1); m++) {
            double x = axis_map(xa, m * pow(10, d), PLOT_LEFT, PLOT_RIGHT);
            printf("<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\"/>\n", x,
                   PLOT_TOP, x, PLOT_BOTTOM, m == 1 ? "#bbb" : "#eee");
        }
        double x = axis_map(xa, pow(10, d), PLOT_LEFT, PLOT_RIGHT);
        printf("<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", x, PLOT_BOTTOM + 18);
        put_decade_label(d);
        fputs("</text>\n", stdout);
    }
    for (int d = ya.lo; d <= ya.hi; d++) {
        for (int m = 1; m <= (d < ya.hi ? 9 : 1); m++) {
            double y = axis_map(ya, m * pow(10, d), PLOT_BOTTOM, PLOT_TOP);
            printf("<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\"/>\n", PLOT_LEFT,
                   y, PLOT_RIGHT, y, m == 1 ? "#bbb" : "#eee");
        }
        double y = axis_map(ya, pow(10, d), PLOT_BOTTOM, PLOT_TOP);
        printf("<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">", PLOT_LEFT - 8, y + 4);
        put_decade_label(d);
        fputs("</text>\n", stdout);
    }
    printf("<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#333\"/>\n",
           PLOT_LEFT, PLOT_TOP, PLOT_RIGHT - PLOT_LEFT, PLOT_BOTTOM - PLOT_TOP);
    printf("<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", (PLOT_LEFT + PLOT_RIGHT) / 2,
           HEIGHT - 20);
    put_escaped(xlabel);
    fputs("</text>\n", stdout);
    printf("<text transform=\"translate(24,%d) rotate(-90)\" text-anchor=\"middle\">",
           (PLOT_TOP + PLOT_BOTTOM) / 2);
    put_escaped(ylabel);
    fputs("</text>\n", stdout);

    for (size_t i = 0; i < count; i++) {
        struct series *s = &all[i];
        const char *colour = colours[i];
        qsort(s->points, s->count, sizeof *s->points, compare_x);
        printf("<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", colour);
        for (size_t j = 0; j < s->count; j++) {
            printf("%s%.1f,%.1f", j == 0 ? "" : " ",
                   axis_map(xa, s->points[j].x, PLOT_LEFT, PLOT_RIGHT),
                   axis_map(ya, s->points[j].y, PLOT_BOTTOM, PLOT_TOP));
        }
        fputs("\"/>\n", stdout);
        for (size_t j = 0; j < s->count; j++) {
            printf("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"%s\"/>\n",
                   axis_map(xa, s->points[j].x, PLOT_LEFT, PLOT_RIGHT),
                   axis_map(ya, s->points[j].y, PLOT_BOTTOM, PLOT_TOP), MARKER_RADIUS, colour);
        }
        int y = PLOT_TOP + 10 + (int)i * 22;
        printf("<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/>\n",
               PLOT_RIGHT + 16, y, PLOT_RIGHT + 40, y, colour);
        printf("<circle cx=\"%d\" cy=\"%d\" r=\"%.1f\" fill=\"%s\"/>\n", PLOT_RIGHT + 28, y,
               MARKER_RADIUS, colour);
        printf("<text x=\"%d\" y=\"%d\">", PLOT_RIGHT + 48, y + 4);
        put_escaped(s->name);
        fputs("</text>\n", stdout);
    }
    fputs("</svg>\n", stdout);
}

int main(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"title", required_argument, NULL, 't'},
        {"xlabel", required_argument, NULL, 'x'},
        {"ylabel", required_argument, NULL, 'y'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *title = "";
    const char *xlabel = "idle connections";
    const char *ylabel = "\xc2\xb5s per round trip"; // "µs" spelled in UTF-8 bytes
    struct series all[MAX_SERIES];
    size_t count = 0;
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, "t:x:y:h", long_options, NULL)) != -1) {
        switch (c) {
        case 't': title = optarg; break;
        case 'x': xlabel = optarg; break;
        case 'y': ylabel = optarg; break;
        case 'h':
            puts("usage: svgplot --title TEXT [--xlabel TEXT] [--ylabel TEXT] < data > plot.svg\n"
                 "Reads 'SERIES X Y' lines; writes a log-log SVG line plot, one line per series.");
            return 0;
        default:
            fprintf(stderr, "svgplot: bad option '%s' (try --help)\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "svgplot: unexpected argument '%s' (try --help)\n", argv[optind]);
        return 2;
    }
    memset(all, 0, sizeof all);
    int rc = data_read(all, &count);
    if (rc == 0) {
        plot_write(all, count, title, xlabel, ylabel);
        if (fflush(stdout) == EOF || ferror(stdout)) {
            fprintf(stderr, "svgplot: write stdout: %s\n", strerror(errno));
            rc = -1;
        }
    }
    for (size_t i = 0; i < count; i++)
        free(all[i].points);
    return rc == 0 ? 0 : 1;
}
