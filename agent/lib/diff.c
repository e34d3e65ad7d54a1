/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "diff.h"
#include "macro.h"

#define CONTEXT 3

typedef struct lines {
        const char **start;
        size_t *len;
        size_t n;
} lines;

static void lines_done(lines *l) {
        free(l->start);
        free(l->len);
}

static int split(const char *s, lines *ret) {
        size_t n = 0, cap = 16;
        lines l = { .start = malloc(cap * sizeof(char *)), .len = malloc(cap * sizeof(size_t)) };

        if (!l.start || !l.len) {
                lines_done(&l);
                return -ENOMEM;
        }
        while (*s) {
                const char *nl = strchrnul(s, '\n');

                if (n == DIFF_LINES_MAX) {
                        lines_done(&l);
                        return -E2BIG;
                }
                if (n == cap) {
                        cap *= 2;
                        const char **a = realloc(l.start, cap * sizeof(char *));
                        size_t *b = a ? realloc(l.len, cap * sizeof(size_t)) : NULL;

                        if (a)
                                l.start = a;
                        if (b)
                                l.len = b;
                        if (!a || !b) {
                                lines_done(&l);
                                return -ENOMEM;
                        }
                }
                l.start[n] = s;
                l.len[n++] = (size_t) (nl - s) + (*nl ? 1 : 0);
                s = *nl ? nl + 1 : nl;
        }
        l.n = n;
        *ret = l;
        return 0;
}

static bool same(const lines *a, size_t i, const lines *b, size_t j) {
        return a->len[i] == b->len[j] && memcmp(a->start[i], b->start[j], a->len[i]) == 0;
}

static void emit(FILE *f, char tag, const char *s, size_t len) {
        fputc(tag, f);
        fwrite(s, 1, len, f);
        if (len == 0 || s[len - 1] != '\n')
                fputs("\n\\ No newline at end of file\n", f);
}

/* The edit script from a to b: ops[k] is '=' keep, '-' delete from a, '+' insert from b, at
 * line ai[k] of a and bi[k] of b. */
typedef struct edits {
        char *ops;
        size_t *ai, *bi;
        size_t n;
} edits;

static void edits_done(edits *e) {
        free(e->ops);
        free(e->ai);
        free(e->bi);
}

static int edit_script(const lines *la, const lines *lb, edits *ret) {
        _cleanup_free_ uint32_t *lcs = NULL;
        size_t i, j, w = lb->n + 1, n = 0;
        edits e = {};

        /* Classic LCS table; manifests are a few hundred lines. */
        if ((la->n + 1) > SIZE_MAX / sizeof(uint32_t) / w || (la->n + 1) * w > 64u * 1024 * 1024)
                return -E2BIG;
        lcs = calloc((la->n + 1) * w, sizeof(uint32_t));
        e.ops = malloc(la->n + lb->n + 1);
        e.ai = malloc((la->n + lb->n + 1) * sizeof(size_t));
        e.bi = malloc((la->n + lb->n + 1) * sizeof(size_t));
        if (!lcs || !e.ops || !e.ai || !e.bi) {
                edits_done(&e);
                return -ENOMEM;
        }
        for (i = la->n; i-- > 0;)
                for (j = lb->n; j-- > 0;)
                        lcs[i * w + j] = same(la, i, lb, j) ? lcs[(i + 1) * w + j + 1] + 1
                                         : MAX(lcs[(i + 1) * w + j], lcs[i * w + j + 1]);
        for (i = 0, j = 0; i < la->n || j < lb->n; n++) {
                e.ai[n] = i;
                e.bi[n] = j;
                if (i < la->n && j < lb->n && same(la, i, lb, j)) {
                        e.ops[n] = '=';
                        i++, j++;
                } else if (i < la->n && (j == lb->n || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1])) {
                        e.ops[n] = '-'; /* deletions first, as diff -u prints them */
                        i++;
                } else {
                        e.ops[n] = '+';
                        j++;
                }
        }
        e.n = n;
        *ret = e;
        return 0;
}

/* One hunk from the change at k: CONTEXT lines before it to CONTEXT lines after the last change
 * that is no more than 2*CONTEXT equal lines away. Returns where the next search starts. */
static size_t print_hunk(FILE *f, const edits *e, const lines *la, const lines *lb, size_t k) {
        size_t start = k > CONTEXT ? k - CONTEXT : 0, end = k, a_count = 0, b_count = 0;

        for (size_t q = k; q < e->n; q++)
                if (e->ops[q] != '=')
                        end = q;
                else if (q - end > 2 * CONTEXT)
                        break;
        end = MIN(end + CONTEXT + 1, e->n);
        for (size_t q = start; q < end; q++) {
                a_count += e->ops[q] != '+';
                b_count += e->ops[q] != '-';
        }
        fprintf(f, "@@ -%zu,%zu +%zu,%zu @@\n", e->ai[start] + (a_count ? 1 : 0), a_count,
                e->bi[start] + (b_count ? 1 : 0), b_count);
        for (size_t q = start; q < end; q++) {
                if (e->ops[q] == '+')
                        emit(f, '+', lb->start[e->bi[q]], lb->len[e->bi[q]]);
                else
                        emit(f, e->ops[q] == '-' ? '-' : ' ', la->start[e->ai[q]], la->len[e->ai[q]]);
        }
        return end;
}

int unified_diff(const char *a, const char *b, const char *label_a, const char *label_b, char **ret) {
        _cleanup_(lines_done) lines la = {}, lb = {};
        _cleanup_(edits_done) edits e = {};
        char *buf = NULL;
        size_t size = 0;
        FILE *f;
        int r;

        r = split(a, &la);
        if (r >= 0)
                r = split(b, &lb);
        if (r >= 0)
                r = edit_script(&la, &lb, &e);
        if (r < 0)
                return r;
        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        for (size_t k = 0; k < e.n;) {
                if (e.ops[k] == '=') {
                        k++;
                        continue;
                }
                if (ftell(f) == 0)
                        fprintf(f, "--- %s\n+++ %s\n", label_a, label_b);
                k = print_hunk(f, &e, &la, &lb, k);
        }
        if (fclose(f) != 0) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        return 0;
}
