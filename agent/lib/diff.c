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

typedef struct out {
        FILE *f;
} out;

static void emit(FILE *f, char tag, const char *s, size_t len) {
        fputc(tag, f);
        fwrite(s, 1, len, f);
        if (len == 0 || s[len - 1] != '\n')
                fputs("\n\\ No newline at end of file\n", f);
}

int unified_diff(const char *a, const char *b, const char *label_a, const char *label_b, char **ret) {
        _cleanup_(lines_done) lines la = {}, lb = {};
        _cleanup_free_ uint32_t *lcs = NULL;
        _cleanup_free_ char *ops = NULL;
        _cleanup_free_ size_t *ai = NULL, *bi = NULL;
        char *buf = NULL;
        size_t size = 0, n_ops = 0, i, j, w;
        FILE *f;
        int r;

        r = split(a, &la);
        if (r < 0)
                return r;
        r = split(b, &lb);
        if (r < 0)
                return r;

        /* Classic LCS table; manifests are a few hundred lines. */
        w = lb.n + 1;
        if ((la.n + 1) > SIZE_MAX / sizeof(uint32_t) / w || (la.n + 1) * w > 64u * 1024 * 1024)
                return -E2BIG;
        lcs = calloc((la.n + 1) * w, sizeof(uint32_t));
        ops = malloc(la.n + lb.n + 1);
        ai = malloc((la.n + lb.n + 1) * sizeof(size_t));
        bi = malloc((la.n + lb.n + 1) * sizeof(size_t));
        if (!lcs || !ops || !ai || !bi)
                return -ENOMEM;
        for (i = la.n; i-- > 0;)
                for (j = lb.n; j-- > 0;)
                        lcs[i * w + j] = same(&la, i, &lb, j) ? lcs[(i + 1) * w + j + 1] + 1
                                         : lcs[(i + 1) * w + j] >= lcs[i * w + j + 1] ? lcs[(i + 1) * w + j]
                                                                                      : lcs[i * w + j + 1];
        /* The edit script: '=' keep, '-' delete from a, '+' insert from b. */
        for (i = 0, j = 0; i < la.n || j < lb.n;) {
                ai[n_ops] = i;
                bi[n_ops] = j;
                if (i < la.n && j < lb.n && same(&la, i, &lb, j)) {
                        ops[n_ops++] = '=';
                        i++, j++;
                } else if (i < la.n && (j == lb.n || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1])) {
                        ops[n_ops++] = '-'; /* deletions first, as diff -u prints them */
                        i++;
                } else {
                        ops[n_ops++] = '+';
                        j++;
                }
        }

        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        for (size_t k = 0; k < n_ops;) {
                size_t start, end, a_count = 0, b_count = 0;

                if (ops[k] == '=') {
                        k++;
                        continue;
                }
                /* A hunk: from CONTEXT lines before this change to CONTEXT lines after the last
                 * change that is no more than 2*CONTEXT equal lines away. */
                start = k > CONTEXT ? k - CONTEXT : 0;
                end = k;
                for (size_t q = k; q < n_ops; q++)
                        if (ops[q] != '=')
                                end = q;
                        else if (q - end > 2 * CONTEXT)
                                break;
                end = end + CONTEXT + 1 < n_ops ? end + CONTEXT + 1 : n_ops;
                for (size_t q = start; q < end; q++) {
                        a_count += ops[q] != '+';
                        b_count += ops[q] != '-';
                }
                if (ftell(f) == 0)
                        fprintf(f, "--- %s\n+++ %s\n", label_a, label_b);
                fprintf(f, "@@ -%zu,%zu +%zu,%zu @@\n", ai[start] + (a_count ? 1 : 0), a_count,
                        bi[start] + (b_count ? 1 : 0), b_count);
                for (size_t q = start; q < end; q++) {
                        if (ops[q] == '+')
                                emit(f, '+', lb.start[bi[q]], lb.len[bi[q]]);
                        else
                                emit(f, ops[q] == '-' ? '-' : ' ', la.start[ai[q]], la.len[ai[q]]);
                }
                k = end;
        }
        if (fclose(f) != 0) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        return 0;
}
