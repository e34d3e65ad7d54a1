/* SPDX-License-Identifier: Apache-2.0 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "buffer.h"
#include "macro.h"
#include "manifest.h"

/* Where this departs from a plain "YAML to JSON", and why:
 *  - Mapping keys become JSON keys as sigs.k8s.io/yaml makes them: plain 1, 0x10 and yes become
 *    "1", "16" and "true". Null keys (the kubelet fails on them too), float keys (Go formats them
 *    through float32) and the merge key "<<" are refused.
 *  - Integers that fit uint64 but not int64 become floats (jansson has no unsigned integers), as
 *    do larger decimal integers in go-yaml; larger hex/octal/binary ones stay strings, as there.
 *  - .inf and .nan are refused: JSON has no such numbers, and the kubelet's conversion fails.
 *  - More than one document, anchors and aliases, and duplicate keys are refused although go-yaml
 *    would take them: cplet must not rewrite a file whose meaning it cannot see line by line.
 *
 * Number parsing and formatting (strtod, "%g") assume LC_NUMERIC is "C", which it is unless the
 * program calls setlocale(); cplet does not. */

#define TAG_PREFIX "tag:yaml.org,2002:"
#define TAG_STR    TAG_PREFIX "str"
#define TAG_NULL   TAG_PREFIX "null"
#define TAG_BOOL   TAG_PREFIX "bool"
#define TAG_INT    TAG_PREFIX "int"
#define TAG_FLOAT  TAG_PREFIX "float"
#define TAG_MAP    TAG_PREFIX "map"
#define TAG_SEQ    TAG_PREFIX "seq"

/* ---------------------------------------------------------------------------------------------
 * Plain scalar resolution, a transcription of go-yaml v2's resolve() (resolve.go) for an untyped
 * (interface{}) target, which is what sigs.k8s.io/yaml.YAMLToJSON decodes into. */

typedef enum ScalarKind {
        SCALAR_STRING,
        SCALAR_NULL,
        SCALAR_BOOL,
        SCALAR_INT,
        SCALAR_FLOAT,
        /* .inf and .nan: go-yaml resolves them as floats, but JSON has no such numbers, so the
         * kubelet's YAML→JSON conversion fails on them and so do we. */
        SCALAR_FLOAT_NONFINITE,
} ScalarKind;

typedef struct Scalar {
        ScalarKind kind;
        bool b;
        int64_t i;
        double f;
} Scalar;

/* go-yaml's resolveMapList. */
static const struct {
        ScalarKind kind;
        bool b;
        const char *texts[6];
} resolve_map[] = {
        {SCALAR_BOOL, true, {"y", "Y", "yes", "Yes", "YES"}},
        {SCALAR_BOOL, true, {"true", "True", "TRUE"}},
        {SCALAR_BOOL, true, {"on", "On", "ON"}},
        {SCALAR_BOOL, false, {"n", "N", "no", "No", "NO"}},
        {SCALAR_BOOL, false, {"false", "False", "FALSE"}},
        {SCALAR_BOOL, false, {"off", "Off", "OFF"}},
        {SCALAR_NULL, false, {"~", "null", "Null", "NULL"}},
        {SCALAR_FLOAT_NONFINITE, false, {".nan", ".NaN", ".NAN"}},
        {SCALAR_FLOAT_NONFINITE, false, {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"}},
        {SCALAR_FLOAT_NONFINITE, false, {"-.inf", "-.Inf", "-.INF"}},
};

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

static char ascii_lower(char c) {
        return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Go's strconv.ParseUint(s, base, 64) for base 0 (prefix 0x, 0o, 0b, or a leading 0 for octal),
 * 2, 8, 10 or 16, without the underscores (go-yaml strips them before calling it). No sign. */
static bool go_parse_uint(const char *s, unsigned base, uint64_t *ret) {
        uint64_t v = 0;

        if (*s == 0)
                return false;
        if (base == 0) {
                base = 10;
                /* As Go: a two-character prefix counts only with something after it ("0x" alone is
                 * an octal 0 followed by a bad digit), and a lone "0" is octal zero. */
                if (s[0] == '0') {
                        switch (strlen(s) >= 3 ? ascii_lower(s[1]) : 0) {
                        case 'b':
                                base = 2;
                                s += 2;
                                break;
                        case 'o':
                                base = 8;
                                s += 2;
                                break;
                        case 'x':
                                base = 16;
                                s += 2;
                                break;
                        default:
                                base = 8;
                                s += 1;
                        }
                }
        }
        for (; *s; s++) {
                char c = ascii_lower(*s);
                unsigned d = is_digit(c)            ? (unsigned)(c - '0')
                             : c >= 'a' && c <= 'z' ? (unsigned)(c - 'a' + 10)
                                                    : 99;

                if (d >= base || v > (UINT64_MAX - d) / base)
                        return false;
                v = v * base + d;
        }
        *ret = v;
        return true;
}

/* go-yaml tries strconv.ParseInt(s, base, 64) and then ParseUint(s, base, 64). Integers that only
 * fit uint64 (above INT64_MAX) become a float here: jansson has no unsigned integers. Kubernetes
 * has no unsigned fields either, so such a value is refused by the kubelet as an integer or as a
 * float alike. */
static bool go_parse_int(const char *s, unsigned base, Scalar *ret) {
        bool neg = false, sign = false;
        uint64_t v;

        if (*s == '+' || *s == '-') {
                sign = true;
                neg = *s == '-';
                s++;
        }
        if (!go_parse_uint(s, base, &v))
                return false;
        if (neg) {
                if (v > (uint64_t)INT64_MAX + 1)
                        return false;
                *ret = (Scalar){.kind = SCALAR_INT,
                                .i = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v};
        } else if (v <= INT64_MAX)
                *ret = (Scalar){.kind = SCALAR_INT, .i = (int64_t)v};
        else if (sign) /* ParseInt: out of range; ParseUint: no sign allowed. */
                return false;
        else
                *ret = (Scalar){.kind = SCALAR_FLOAT, .f = (double)v};
        return true;
}

/* strtod() with Go's ParseFloat() error semantics: an overflow is an error (go-yaml then falls back
 * to a string), an underflow is not. */
static bool parse_double(const char *s, double *ret) {
        char *end;
        double d;

        errno = 0;
        d = strtod(s, &end);
        if (end == s || *end != 0)
                return false;
        if (errno == ERANGE && isinf(d))
                return false;
        *ret = d;
        return true;
}

/* go-yaml's yamlStyleFloat: ^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$ */
static bool matches_yaml_float(const char *s) {
        if (*s == '+' || *s == '-')
                s++;
        if (*s == '.') {
                s++;
                if (!is_digit(*s))
                        return false;
                while (is_digit(*s))
                        s++;
        } else {
                if (!is_digit(*s))
                        return false;
                while (is_digit(*s))
                        s++;
                if (*s == '.')
                        for (s++; is_digit(*s); s++)
                                ;
        }
        if (*s == 'e' || *s == 'E') {
                s++;
                if (*s == '+' || *s == '-')
                        s++;
                if (!is_digit(*s))
                        return false;
                while (is_digit(*s))
                        s++;
        }
        return *s == 0;
}

/* Go's strconv.underscoreOK() for a decimal number: every '_' sits between two digits. */
static bool go_underscores_ok(const char *s) {
        char saw = '^';

        if (*s == '+' || *s == '-')
                s++;
        for (; *s; s++) {
                if (is_digit(*s))
                        saw = '0';
                else if (*s == '_') {
                        if (saw != '0')
                                return false;
                        saw = '_';
                } else {
                        if (saw == '_')
                                return false;
                        saw = '!';
                }
        }
        return saw != '_';
}

/* Go's strconv.ParseFloat(s, 64) for a string that starts with '.', which is all go-yaml hands it
 * unmodified: "." digits (with '_' between digits) and an optional exponent. */
static bool go_parse_float_dot(const char *s, size_t n, double *ret) {
        _cleanup_free_ char *plain = NULL;
        bool digits = false, underscores = false;
        size_t i = 1, j = 0;

        for (; i < n && (is_digit(s[i]) || s[i] == '_'); i++) {
                digits = digits || is_digit(s[i]);
                underscores = underscores || s[i] == '_';
        }
        if (!digits)
                return false;
        if (i < n && ascii_lower(s[i]) == 'e') {
                i++;
                if (i < n && (s[i] == '+' || s[i] == '-'))
                        i++;
                if (i >= n || !is_digit(s[i]))
                        return false;
                for (; i < n && (is_digit(s[i]) || s[i] == '_'); i++)
                        underscores = underscores || s[i] == '_';
        }
        if (i != n || (underscores && !go_underscores_ok(s)))
                return false;

        plain = malloc(n + 1);
        if (!plain)
                return false;
        for (i = 0; i < n; i++)
                if (s[i] != '_')
                        plain[j++] = s[i];
        plain[j] = 0;
        return parse_double(plain, ret);
}

/* Resolves the text of a plain scalar (s is NUL-terminated, n its length). Returns 0 or -ENOMEM. */
static int resolve_plain(const char *s, size_t n, Scalar *ret) {
        _cleanup_free_ char *plain = NULL;
        size_t j = 0;

        if (n == 0) {
                *ret = (Scalar){.kind = SCALAR_NULL};
                return 0;
        }
        /* go-yaml only looks further at texts whose first character hints at a non-string. */
        if (!strchr("+-0123456789.yYnNtTfFoO~", s[0]) || memchr(s, 0, n)) {
                *ret = (Scalar){.kind = SCALAR_STRING};
                return 0;
        }

        for (size_t k = 0; k < ELEMENTSOF(resolve_map); k++)
                for (size_t t = 0; t < ELEMENTSOF(resolve_map[k].texts) && resolve_map[k].texts[t]; t++)
                        if (streq(s, resolve_map[k].texts[t])) {
                                *ret = (Scalar){.kind = resolve_map[k].kind, .b = resolve_map[k].b};
                                return 0;
                        }

        if (s[0] == '.') {
                double d;

                if (go_parse_float_dot(s, n, &d)) {
                        *ret = (Scalar){.kind = SCALAR_FLOAT, .f = d};
                        return 0;
                }
        } else if (s[0] == '+' || s[0] == '-' || is_digit(s[0])) {
                double d;

                /* A timestamp (go-yaml checks for one first) stays a string for an interface{}
                 * target, and no timestamp parses as a number below, so it needs no test here. */
                plain = malloc(n + 1);
                if (!plain)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++)
                        if (s[i] != '_')
                                plain[j++] = s[i];
                plain[j] = 0;

                if (go_parse_int(plain, 0, ret))
                        return 0;
                if (matches_yaml_float(plain) && parse_double(plain, &d)) {
                        *ret = (Scalar){.kind = SCALAR_FLOAT, .f = d};
                        return 0;
                }
                /* go-yaml's fallback for binary, which also takes a sign after the prefix. */
                if (strneq(plain, "0b", 2) && go_parse_int(plain + 2, 2, ret))
                        return 0;
        }

        *ret = (Scalar){.kind = SCALAR_STRING};
        return 0;
}

static json_t *scalar_to_json(const Scalar *s) {
        switch (s->kind) {
        case SCALAR_NULL:
                return json_null();
        case SCALAR_BOOL:
                return json_boolean(s->b);
        case SCALAR_INT:
                return json_integer(s->i);
        case SCALAR_FLOAT:
                return json_real(s->f);
        default:
                assert(false);
                return NULL;
        }
}

/* ---------------------------------------------------------------------------------------------
 * YAML input */

typedef struct YamlReader {
        yaml_parser_t parser;
        const char *name;
        const char *data;
        size_t size;
        char **ret_error;
} YamlReader;

static void yaml_event_deletep(yaml_event_t *e) {
        yaml_event_delete(e);
}
#define _cleanup_event_ _cleanup_(yaml_event_deletep)

static int mark_error(YamlReader *y, int r, size_t line, size_t column, const char *fmt, ...) _printf_(5, 6);
static int mark_error(YamlReader *y, int r, size_t line, size_t column, const char *fmt, ...) {
        _cleanup_free_ char *reason = NULL;
        va_list ap;
        int n;

        /* vsnprintf() twice rather than vasprintf(), which needs _GNU_SOURCE. */
        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                return r;
        reason = malloc((size_t)n + 1);
        if (!reason)
                return -ENOMEM;
        va_start(ap, fmt);
        vsnprintf(reason, (size_t)n + 1, fmt, ap);
        va_end(ap);
        /* libyaml counts from 0, editors and compilers from 1. */
        return set_error(y->ret_error, r, "%s:%zu:%zu: %s", y->name, line + 1, column + 1, reason);
}

#define event_error(y, e, ...)                                                                              \
        mark_error((y), -EINVAL, (e)->start_mark.line, (e)->start_mark.column, __VA_ARGS__)

/* Line and column (from 0) of a byte offset, for errors that only carry an offset. */
static void offset_to_mark(const char *data, size_t size, size_t offset, size_t *ret_line,
                           size_t *ret_column) {
        size_t line = 0, column = 0;

        for (size_t i = 0; i < offset && i < size; i++) {
                if (data[i] == '\n') {
                        line++;
                        column = 0;
                } else if (((unsigned char)data[i] & 0xC0) != 0x80) /* count characters, not bytes */
                        column++;
        }
        *ret_line = line;
        *ret_column = column;
}

static int parser_error(YamlReader *y) {
        const yaml_parser_t *p = &y->parser;
        size_t line, column;

        switch (p->error) {
        case YAML_MEMORY_ERROR:
                return -ENOMEM;
        case YAML_READER_ERROR:
                offset_to_mark(y->data, y->size, p->problem_offset, &line, &column);
                if (p->problem_value >= 0)
                        return mark_error(y, -EINVAL, line, column, "%s (#x%X)", p->problem,
                                          (unsigned)p->problem_value);
                return mark_error(y, -EINVAL, line, column, "%s", p->problem);
        default:
                if (p->context)
                        return mark_error(y, -EINVAL, p->problem_mark.line, p->problem_mark.column,
                                          "%s (%s at line %zu, column %zu)", p->problem, p->context,
                                          p->context_mark.line + 1, p->context_mark.column + 1);
                return mark_error(y, -EINVAL, p->problem_mark.line, p->problem_mark.column, "%s",
                                  p->problem ?: "invalid YAML");
        }
}

static int next_event(YamlReader *y, yaml_event_t *ret) {
        if (!yaml_parser_parse(&y->parser, ret))
                return parser_error(y);
        return 0;
}

/* "tag:yaml.org,2002:binary" reads better as the "!!binary" the user wrote. */
static const char *tag_short(const char *tag, char *buf, size_t size) {
        const char *s = startswith(tag, TAG_PREFIX);

        if (!s)
                return tag;
        snprintf(buf, size, "!!%s", s);
        return buf;
}

static int check_anchor(YamlReader *y, const yaml_event_t *e, const yaml_char_t *anchor) {
        /* The kubelet would expand them; cplet would have to write them back, and a rewrite of a
         * value behind an alias would change every place that uses it. Static pods never use them. */
        if (anchor || e->type == YAML_ALIAS_EVENT)
                return event_error(y, e, "YAML anchors and aliases are not supported");
        return 0;
}

static int check_container_tag(YamlReader *y, const yaml_event_t *e, const yaml_char_t *tag,
                               const char *want) {
        char buf[128];

        if (tag && !streq((const char *)tag, want))
                return event_error(y, e, "unsupported tag \"%s\"",
                                   tag_short((const char *)tag, buf, sizeof(buf)));
        return 0;
}

static int parse_scalar(YamlReader *y, const yaml_event_t *e, json_t **ret) {
        const char *tag = (const char *)e->data.scalar.tag, *v = (const char *)e->data.scalar.value;
        size_t n = e->data.scalar.length;
        char buf[128];
        json_t *j;
        Scalar s;
        int r;

        r = check_anchor(y, e, e->data.scalar.anchor);
        if (r < 0)
                return r;

        /* As go-yaml: a scalar without a tag is a string unless it is plain; "!" (the non-specific
         * tag) and "!!str" make a string too. */
        if (!tag ? !e->data.scalar.plain_implicit : streq(tag, "!") || streq(tag, TAG_STR)) {
                j = json_stringn(v, n);
                if (!j)
                        return -ENOMEM;
                *ret = j;
                return 0;
        }

        r = resolve_plain(v, n, &s);
        if (r < 0)
                return r;

        if (tag) {
                ScalarKind want;

                if (streq(tag, TAG_NULL))
                        want = SCALAR_NULL;
                else if (streq(tag, TAG_BOOL))
                        want = SCALAR_BOOL;
                else if (streq(tag, TAG_INT))
                        want = SCALAR_INT;
                else if (streq(tag, TAG_FLOAT))
                        want = s.kind == SCALAR_FLOAT_NONFINITE ? SCALAR_FLOAT_NONFINITE : SCALAR_FLOAT;
                else
                        return event_error(y, e, "unsupported tag \"%s\"", tag_short(tag, buf, sizeof(buf)));

                if (want == SCALAR_FLOAT && s.kind == SCALAR_INT) /* go-yaml converts, so do we */
                        s = (Scalar){.kind = SCALAR_FLOAT, .f = (double)s.i};
                if (s.kind != want)
                        return event_error(y, e, "\"%s\" is not a valid %s", v,
                                           tag_short(tag, buf, sizeof(buf)));
        }
        if (s.kind == SCALAR_FLOAT_NONFINITE)
                return event_error(y, e, "\"%s\" cannot be represented in JSON (the kubelet refuses it too)",
                                   v);
        if (s.kind == SCALAR_STRING)
                j = json_stringn(v, n);
        else
                j = scalar_to_json(&s);
        if (!j)
                return -ENOMEM;
        *ret = j;
        return 0;
}

/* A mapping key as sigs.k8s.io/yaml turns it into a JSON key: strings as they are, integers and
 * booleans formatted as Go formats them. Null keys make the kubelet fail; float keys, which it
 * formats with Go's float32 shortest representation, are refused rather than imitated. */
static int parse_key(YamlReader *y, const yaml_event_t *e, char **ret, size_t *ret_len) {
        _cleanup_(json_decrefp) json_t *k = NULL;
        char *s;
        int r;

        if (e->type == YAML_ALIAS_EVENT)
                return check_anchor(y, e, NULL);
        if (e->type != YAML_SCALAR_EVENT)
                return event_error(y, e, "mapping keys must be scalars, not a %s",
                                   e->type == YAML_MAPPING_START_EVENT ? "mapping" : "sequence");
        /* go-yaml merges the mapping under a plain "<<" key into its parent. */
        if (!e->data.scalar.tag && e->data.scalar.plain_implicit &&
            streq((const char *)e->data.scalar.value, "<<"))
                return event_error(y, e, "YAML merge keys (<<) are not supported");

        r = parse_scalar(y, e, &k);
        if (r < 0)
                return r;

        switch (json_typeof(k)) {
        case JSON_STRING:
                s = malloc(json_string_length(k) + 1);
                if (!s)
                        return -ENOMEM;
                memcpy(s, json_string_value(k), json_string_length(k) + 1);
                *ret_len = json_string_length(k);
                break;
        case JSON_TRUE:
        case JSON_FALSE:
        case JSON_INTEGER:
                s = json_is_integer(k) ? strdup_printf("%" JSON_INTEGER_FORMAT, json_integer_value(k))
                                       : strdup(json_is_true(k) ? "true" : "false");
                if (!s)
                        return -ENOMEM;
                *ret_len = strlen(s);
                break;
        default:
                return event_error(y, e, "mapping key \"%s\" is not read as a string (it is a %s); quote it",
                                   (const char *)e->data.scalar.value, json_is_null(k) ? "null" : "float");
        }
        *ret = s;
        return 0;
}

static int parse_node(YamlReader *y, const yaml_event_t *e, unsigned depth, json_t **ret);

static int check_depth(YamlReader *y, const yaml_event_t *e, unsigned depth) {
        if (depth > MANIFEST_DEPTH_MAX)
                return event_error(y, e, "nesting deeper than %d levels", MANIFEST_DEPTH_MAX);
        return 0;
}

static int parse_mapping(YamlReader *y, const yaml_event_t *start, unsigned depth, json_t **ret) {
        _cleanup_(json_decrefp) json_t *o = NULL;
        int r;

        r = check_depth(y, start, depth);
        if (r < 0)
                return r;
        r = check_anchor(y, start, start->data.mapping_start.anchor);
        if (r < 0)
                return r;
        r = check_container_tag(y, start, start->data.mapping_start.tag, TAG_MAP);
        if (r < 0)
                return r;

        o = json_object();
        if (!o)
                return -ENOMEM;

        for (;;) {
                _cleanup_event_ yaml_event_t ke = {}, ve = {};
                _cleanup_(json_decrefp) json_t *v = NULL;
                _cleanup_free_ char *key = NULL;
                size_t key_len = 0;

                r = next_event(y, &ke);
                if (r < 0)
                        return r;
                if (ke.type == YAML_MAPPING_END_EVENT)
                        break;
                r = parse_key(y, &ke, &key, &key_len);
                if (r < 0)
                        return r;
                /* go-yaml keeps the last of duplicate keys, other tools the first; a rewrite of one
                 * of them would not do what the user meant either way. */
                if (json_object_getn(o, key, key_len))
                        return event_error(y, &ke, "duplicate key \"%s\"", key);

                r = next_event(y, &ve);
                if (r < 0)
                        return r;
                r = parse_node(y, &ve, depth + 1, &v);
                if (r < 0)
                        return r;
                if (json_object_setn_new(o, key, key_len, TAKE_PTR(v)) < 0)
                        return -ENOMEM;
        }

        *ret = TAKE_PTR(o);
        return 0;
}

static int parse_sequence(YamlReader *y, const yaml_event_t *start, unsigned depth, json_t **ret) {
        _cleanup_(json_decrefp) json_t *a = NULL;
        int r;

        r = check_depth(y, start, depth);
        if (r < 0)
                return r;
        r = check_anchor(y, start, start->data.sequence_start.anchor);
        if (r < 0)
                return r;
        r = check_container_tag(y, start, start->data.sequence_start.tag, TAG_SEQ);
        if (r < 0)
                return r;

        a = json_array();
        if (!a)
                return -ENOMEM;

        for (;;) {
                _cleanup_event_ yaml_event_t e = {};
                _cleanup_(json_decrefp) json_t *v = NULL;

                r = next_event(y, &e);
                if (r < 0)
                        return r;
                if (e.type == YAML_SEQUENCE_END_EVENT)
                        break;
                r = parse_node(y, &e, depth + 1, &v);
                if (r < 0)
                        return r;
                if (json_array_append_new(a, TAKE_PTR(v)) < 0)
                        return -ENOMEM;
        }

        *ret = TAKE_PTR(a);
        return 0;
}

static int parse_node(YamlReader *y, const yaml_event_t *e, unsigned depth, json_t **ret) {
        switch (e->type) {
        case YAML_SCALAR_EVENT:
                return parse_scalar(y, e, ret);
        case YAML_MAPPING_START_EVENT:
                return parse_mapping(y, e, depth, ret);
        case YAML_SEQUENCE_START_EVENT:
                return parse_sequence(y, e, depth, ret);
        case YAML_ALIAS_EVENT:
                return check_anchor(y, e, NULL);
        default:
                return event_error(y, e, "unexpected YAML event %d", (int)e->type);
        }
}

static void yaml_parser_deletep(yaml_parser_t **p) {
        if (*p)
                yaml_parser_delete(*p);
}

static int parse_yaml(const char *data, size_t size, const char *name, json_t **ret, char **ret_error) {
        _cleanup_(yaml_parser_deletep) yaml_parser_t *parser = NULL;
        _cleanup_(json_decrefp) json_t *root = NULL;
        _cleanup_event_ yaml_event_t stream = {};
        YamlReader y = {
                .name = name,
                .data = data,
                .size = size,
                .ret_error = ret_error,
        };
        int r;

        if (!yaml_parser_initialize(&y.parser))
                return -ENOMEM;
        parser = &y.parser;
        yaml_parser_set_input_string(&y.parser, (const unsigned char *)data, size);

        r = next_event(&y, &stream);
        if (r < 0)
                return r;
        assert(stream.type == YAML_STREAM_START_EVENT);

        for (;;) {
                _cleanup_event_ yaml_event_t e = {}, doc = {}, end = {};

                r = next_event(&y, &e);
                if (r < 0)
                        return r;
                if (e.type == YAML_STREAM_END_EVENT) {
                        if (!root)
                                return event_error(&y, &e, "empty document; expected a mapping");
                        break;
                }
                if (e.type != YAML_DOCUMENT_START_EVENT)
                        return event_error(&y, &e, "unexpected YAML event %d", (int)e.type);
                /* go-yaml reads the first document and silently drops the others; a file that the
                 * user meant as several pods is not something to rewrite. */
                if (root)
                        return event_error(&y, &e, "more than one YAML document");

                r = next_event(&y, &doc);
                if (r < 0)
                        return r;
                if (doc.type != YAML_MAPPING_START_EVENT && doc.type != YAML_ALIAS_EVENT)
                        return event_error(&y, &doc, "the top level must be a mapping (a Pod object)");
                r = parse_node(&y, &doc, 1, &root);
                if (r < 0)
                        return r;

                r = next_event(&y, &end);
                if (r < 0)
                        return r;
                if (end.type != YAML_DOCUMENT_END_EVENT)
                        return event_error(&y, &end, "unexpected YAML event %d", (int)end.type);
        }

        *ret = TAKE_PTR(root);
        return 0;
}

/* ---------------------------------------------------------------------------------------------
 * JSON input */

/* Finds where nesting first gets deeper than MANIFEST_DEPTH_MAX, before jansson (whose own limit
 * is 2048) builds the tree, so that the error can name a position. Returns true if it does. */
static bool json_too_deep(const char *data, size_t size, size_t *ret_line, size_t *ret_column) {
        bool in_string = false, escaped = false;
        size_t line = 1, column = 0;
        unsigned depth = 0;

        for (size_t i = 0; i < size; i++) {
                char c = data[i];

                if (c == '\n') {
                        line++;
                        column = 0;
                        continue;
                }
                if (((unsigned char)c & 0xC0) != 0x80)
                        column++;
                if (in_string) {
                        if (escaped)
                                escaped = false;
                        else if (c == '\\')
                                escaped = true;
                        else if (c == '"')
                                in_string = false;
                } else if (c == '"')
                        in_string = true;
                else if (c == '{' || c == '[') {
                        if (++depth > MANIFEST_DEPTH_MAX) {
                                *ret_line = line;
                                *ret_column = column;
                                return true;
                        }
                } else if ((c == '}' || c == ']') && depth > 0)
                        depth--;
        }
        return false;
}

static int parse_json(const char *data, size_t size, const char *name, json_t **ret, char **ret_error) {
        _cleanup_(json_decrefp) json_t *root = NULL;
        json_error_t err;
        size_t line, column;

        if (json_too_deep(data, size, &line, &column))
                return set_error(ret_error, -EINVAL, "%s:%zu:%zu: nesting deeper than %d levels", name, line,
                                 column, MANIFEST_DEPTH_MAX);

        /* The kubelet hands JSON to its decoder as it is; Go accepts \u0000 in strings. */
        root = json_loadb(data, size, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
        if (!root) {
                if (json_error_code(&err) == json_error_out_of_memory)
                        return -ENOMEM;
                return set_error(ret_error, -EINVAL, "%s:%d:%d: %s", name, err.line, err.column, err.text);
        }
        /* Only reached with a leading '{', so anything else would have been a syntax error. */
        assert(json_is_object(root));

        *ret = TAKE_PTR(root);
        return 0;
}

int manifest_parse(const char *data, size_t size, const char *name, json_t **ret, char **ret_error) {
        size_t i = 0;

        assert(data || size == 0);
        assert(ret);

        if (!name)
                name = "<input>";
        if (size > MANIFEST_SIZE_MAX)
                return set_error(ret_error, -E2BIG, "%s: manifest is larger than %d bytes", name,
                                 MANIFEST_SIZE_MAX);

        /* As the kubelet (k8s.io/apimachinery/pkg/util/yaml.ToJSON) tells JSON from YAML. */
        while (i < size && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n'))
                i++;
        if (i < size && data[i] == '{')
                return parse_json(data, size, name, ret, ret_error);
        return parse_yaml(data, size, name, ret, ret_error);
}

/* ---------------------------------------------------------------------------------------------
 * YAML output */

/* libyaml's write handler: 1 on success, 0 on failure. */
static int output_write(void *userdata, unsigned char *data, size_t size) {
        return buffer_append(userdata, data, size) >= 0;
}

static void yaml_emitter_deletep(yaml_emitter_t **e) {
        if (*e)
                yaml_emitter_delete(*e);
}

static int emit(yaml_emitter_t *e, yaml_event_t *event, int initialized) {
        /* The *_event_initialize() functions fail on OOM or on invalid UTF-8, which jansson does
         * not allow in strings. yaml_emitter_emit() takes the event over in all cases. */
        if (!initialized)
                return -ENOMEM;
        if (!yaml_emitter_emit(e, event))
                return e->error == YAML_EMITTER_ERROR ? -EINVAL : -ENOMEM;
        return 0;
}

/* go-yaml's isBase60Float regexp: ^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$ */
static bool is_base60(const char *s) {
        if (*s == '+' || *s == '-')
                s++;
        if (!is_digit(*s))
                return false;
        while (is_digit(*s) || *s == '_')
                s++;
        if (*s != ':')
                return false;
        while (*s == ':') {
                s++;
                if (!is_digit(*s))
                        return false;
                if (*s <= '5' && is_digit(s[1]))
                        s++;
                s++;
        }
        if (*s == '.')
                for (s++; is_digit(*s) || *s == '_'; s++)
                        ;
        return *s == 0;
}

/* Strings that must be quoted so that they read back as the same string: those that resolve to
 * something else. Also, as go-yaml's encoder does for other YAML 1.1 readers, base-60 numbers
 * ("1:20") and timestamps; and "<<", which is a merge key when plain. */
static int string_needs_quotes(const char *s, size_t n, bool *ret) {
        Scalar r;
        int k;

        if (memchr(s, 0, n)) {
                *ret = true;
                return 0;
        }
        k = resolve_plain(s, n, &r);
        if (k < 0)
                return k;
        *ret = r.kind != SCALAR_STRING || is_base60(s) || streq(s, "<<") || streq(s, "=") ||
               (n >= 5 && is_digit(s[0]) && is_digit(s[1]) && is_digit(s[2]) && is_digit(s[3]) &&
                s[4] == '-');
        return 0;
}

/* Length of the line break that ends s[0..n), or 0. YAML 1.1 breaks: LF, CR, NEL, LS, PS. */
static size_t trailing_break(const char *s, size_t n) {
        if (n >= 1 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
                return 1;
        if (n >= 2 && memcmp(s + n - 2, "\xc2\x85", 2) == 0)
                return 2;
        if (n >= 3 &&
            (memcmp(s + n - 3, "\xe2\x80\xa8", 3) == 0 || memcmp(s + n - 3, "\xe2\x80\xa9", 3) == 0))
                return 3;
        return 0;
}

/* Literal style keeps multi-line text (scripts) readable, but text that is only a line break or
 * ends in two would need the "|+" chomping indicator, after which libyaml ends the stream with a
 * "..." marker; such text is double-quoted instead. */
static bool needs_keep_chomping(const char *s, size_t n) {
        size_t k = trailing_break(s, n);

        return k > 0 && (k == n || trailing_break(s, n - k) > 0);
}

static int emit_string(yaml_emitter_t *e, const char *s, size_t n) {
        yaml_scalar_style_t style;
        yaml_event_t event;
        bool quote;
        int r;

        if (n > INT_MAX)
                return -E2BIG;
        r = string_needs_quotes(s, n, &quote);
        if (r < 0)
                return r;
        /* The emitter falls back from plain to single quotes, and from literal to double quotes, on
         * its own when the text needs it (": ", leading blanks, indicators, control characters...). */
        if (quote)
                style = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
        else if (memchr(s, '\n', n))
                style = needs_keep_chomping(s, n) ? YAML_DOUBLE_QUOTED_SCALAR_STYLE
                                                  : YAML_LITERAL_SCALAR_STYLE;
        else
                style = YAML_PLAIN_SCALAR_STYLE;
        return emit(e, &event,
                    yaml_scalar_event_initialize(&event, NULL, NULL, (yaml_char_t *)s, (int)n,
                                                 style == YAML_PLAIN_SCALAR_STYLE, 1, style));
}

static int emit_plain(yaml_emitter_t *e, const char *s) {
        yaml_event_t event;

        return emit(e, &event,
                    yaml_scalar_event_initialize(&event, NULL, NULL, (yaml_char_t *)s, -1, 1, 0,
                                                 YAML_PLAIN_SCALAR_STYLE));
}

static int format_real(double d, char *buf, size_t size) {
        Scalar s;
        int r;

        if (!isfinite(d))
                return -EINVAL;
        /* The shortest of %.15g..%.17g that reads back as the same double: 0.1, not 0.10000000000000001. */
        for (int precision = 15; precision <= 17; precision++) {
                double back;

                snprintf(buf, size, "%.*g", precision, d);
                if (parse_double(buf, &back) && back == d)
                        break;
        }
        /* "1" would read back as an integer. */
        if (!strpbrk(buf, ".e"))
                strncat(buf, ".0", size - strlen(buf) - 1);

        r = resolve_plain(buf, strlen(buf), &s);
        if (r < 0)
                return r;
        return s.kind == SCALAR_FLOAT ? 0 : -EINVAL;
}

static int emit_node(yaml_emitter_t *e, const json_t *j, unsigned depth) {
        yaml_event_t event;
        char buf[64];
        int r;

        switch (json_typeof(j)) {
        case JSON_OBJECT: {
                const char *key;
                size_t key_len;
                json_t *v;

                if (depth > MANIFEST_DEPTH_MAX)
                        return -EINVAL;
                r = emit(e, &event,
                         yaml_mapping_start_event_initialize(&event, NULL, NULL, 1,
                                                             json_object_size(j) == 0
                                                                     ? YAML_FLOW_MAPPING_STYLE
                                                                     : YAML_BLOCK_MAPPING_STYLE));
                if (r < 0)
                        return r;
                json_object_keylen_foreach((json_t *)j, key, key_len, v) {
                        r = emit_string(e, key, key_len);
                        if (r < 0)
                                return r;
                        r = emit_node(e, v, depth + 1);
                        if (r < 0)
                                return r;
                }
                return emit(e, &event, yaml_mapping_end_event_initialize(&event));
        }
        case JSON_ARRAY: {
                size_t i;
                json_t *v;

                if (depth > MANIFEST_DEPTH_MAX)
                        return -EINVAL;
                r = emit(e, &event,
                         yaml_sequence_start_event_initialize(&event, NULL, NULL, 1,
                                                              json_array_size(j) == 0
                                                                      ? YAML_FLOW_SEQUENCE_STYLE
                                                                      : YAML_BLOCK_SEQUENCE_STYLE));
                if (r < 0)
                        return r;
                json_array_foreach (j, i, v) {
                        r = emit_node(e, v, depth + 1);
                        if (r < 0)
                                return r;
                }
                return emit(e, &event, yaml_sequence_end_event_initialize(&event));
        }
        case JSON_STRING:
                return emit_string(e, json_string_value(j), json_string_length(j));
        case JSON_INTEGER:
                snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(j));
                return emit_plain(e, buf);
        case JSON_REAL:
                r = format_real(json_real_value(j), buf, sizeof(buf));
                if (r < 0)
                        return r;
                return emit_plain(e, buf);
        case JSON_TRUE:
                return emit_plain(e, "true");
        case JSON_FALSE:
                return emit_plain(e, "false");
        case JSON_NULL:
                return emit_plain(e, "null");
        }
        return -EINVAL;
}

int manifest_render(const json_t *root, char **ret, size_t *ret_size) {
        _cleanup_(yaml_emitter_deletep) yaml_emitter_t *emitter = NULL;
        _cleanup_free_ char *data = NULL;
        buffer b = {};
        yaml_emitter_t e;
        yaml_event_t event;
        int r;

        assert(ret);

        /* manifest_parse() would refuse anything else. */
        if (!json_is_object(root))
                return -EINVAL;

        if (!yaml_emitter_initialize(&e))
                return -ENOMEM;
        emitter = &e;
        yaml_emitter_set_output(&e, output_write, &b);
        yaml_emitter_set_encoding(&e, YAML_UTF8_ENCODING);
        yaml_emitter_set_indent(&e, 2);
        yaml_emitter_set_width(&e, -1); /* never fold long --flag=value items */
        yaml_emitter_set_unicode(&e, 1);
        yaml_emitter_set_break(&e, YAML_LN_BREAK);

        r = emit(&e, &event, yaml_stream_start_event_initialize(&event, YAML_UTF8_ENCODING));
        if (r >= 0)
                r = emit(&e, &event, yaml_document_start_event_initialize(&event, NULL, NULL, NULL, 1));
        if (r >= 0)
                r = emit_node(&e, root, 1);
        if (r >= 0)
                r = emit(&e, &event, yaml_document_end_event_initialize(&event, 1));
        if (r >= 0)
                r = emit(&e, &event, yaml_stream_end_event_initialize(&event));
        if (r >= 0 && !yaml_emitter_flush(&e))
                r = -ENOMEM;
        data = b.data;
        if (r < 0)
                return r;
        if (!data) /* cannot happen: a mapping is at least "{}" */
                return -EINVAL;

        if (ret_size)
                *ret_size = b.size;
        *ret = TAKE_PTR(data);
        return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Files */

int manifest_load(int dirfd, const char *path, json_t **ret, char **ret_error) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *data = NULL;
        size_t size = 0, allocated;
        struct stat st;

        assert(path);
        assert(ret);

        /* O_NONBLOCK so that a FIFO in place of a manifest cannot hang us before the check below;
         * it does nothing for regular files. */
        fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                struct stat lst;

                if (errno == ELOOP && fstatat(dirfd, path, &lst, AT_SYMLINK_NOFOLLOW) >= 0 &&
                    S_ISLNK(lst.st_mode))
                        return set_error(ret_error, -ELOOP, "%s: is a symbolic link; refusing to follow it",
                                         path);
                return set_error(ret_error, -errno, "%s: %s", path, strerror(errno));
        }
        if (fstat(fd, &st) < 0)
                return set_error(ret_error, -errno, "%s: %s", path, strerror(errno));
        /* Invalid input, not a failed operation: someone put the wrong kind of file there. */
        if (!S_ISREG(st.st_mode))
                return set_error(ret_error, -EINVAL, "%s: not a regular file (a %s)", path,
                                 S_ISDIR(st.st_mode)    ? "directory"
                                 : S_ISFIFO(st.st_mode) ? "FIFO"
                                 : S_ISSOCK(st.st_mode) ? "socket"
                                                        : "device");
        if (st.st_size > MANIFEST_SIZE_MAX)
                return set_error(ret_error, -E2BIG, "%s: larger than the manifest size limit of %d bytes",
                                 path, MANIFEST_SIZE_MAX);

        /* One more byte than the limit, so that a file that grew since fstat() is noticed. */
        allocated = (size_t)st.st_size + 1;
        if (allocated < 4096)
                allocated = 4096;
        if (allocated > MANIFEST_SIZE_MAX + 1)
                allocated = MANIFEST_SIZE_MAX + 1;
        data = malloc(allocated);
        if (!data)
                return -ENOMEM;

        for (;;) {
                ssize_t n;

                if (size == allocated) {
                        size_t a = allocated * 2 > MANIFEST_SIZE_MAX + 1 ? MANIFEST_SIZE_MAX + 1
                                                                         : allocated * 2;
                        char *p;

                        if (a == allocated)
                                return set_error(ret_error, -E2BIG,
                                                 "%s: larger than the manifest size limit of %d bytes", path,
                                                 MANIFEST_SIZE_MAX);
                        p = realloc(data, a);
                        if (!p)
                                return -ENOMEM;
                        data = p;
                        allocated = a;
                }
                n = read(fd, data + size, allocated - size);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return set_error(ret_error, -errno, "%s: %s", path, strerror(errno));
                }
                if (n == 0)
                        break;
                size += (size_t)n;
        }

        return manifest_parse(data, size, path, ret, ret_error);
}
