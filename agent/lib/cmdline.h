/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A component's command line inside a container of a pod tree: `command` + `args` seen as one
 * argv, the component binary somewhere in it, and its flags after it. Items before the binary
 * (a wrapper such as go-runner with its own flags) are never touched. */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct cmdline {
        json_t *container; /* borrowed */
        json_t *command;   /* borrowed; NULL when the container has none */
        json_t *args;      /* borrowed; NULL when the container has none */
        size_t flags_start; /* index of the first flag in the joined argv */
        bool entrypoint;    /* no binary in argv: the image's entrypoint is the binary */
} cmdline;

/* Finds `binary` (compared by basename) in the container's command + args. Refuses, with a
 * reason, a shell script (`/bin/bash -ec "…"`), non-string items, and a command that does not
 * run the binary. With no `command` at all, the image's entrypoint is taken to be the binary
 * and every `args` item is a flag. */
int cmdline_open(json_t *container, const char *binary, cmdline *ret, char **ret_error);

/* True when the container's argv names `binary` (by basename) anywhere; no other checks. */
bool cmdline_mentions_binary(json_t *container, const char *binary);

/* Total items in command + args. */
size_t cmdline_size(const cmdline *c);
/* The string at joined index i (NULL when out of range). */
const char *cmdline_item(const cmdline *c, size_t i);

/* Reads a flag the way pflag does: the last occurrence wins. Accepts --name=value,
 * --name value (next item not starting with '-') and bare --name (*ret_value NULL).
 * Returns the number of occurrences (0: absent, *ret_value untouched). */
int cmdline_get_flag(const cmdline *c, const char *name, const char **ret_value);

/* Sets a flag: the first occurrence takes the value in its own form and every later one is
 * removed, so exactly one remains where the first stood; a new flag is appended after the
 * last flag as --name=value. value NULL writes a bare boolean flag. */
int cmdline_set_flag(cmdline *c, const char *name, const char *value);

/* Removes every occurrence (with its separate value item, if any). Returns how many. */
int cmdline_unset_flag(cmdline *c, const char *name);

/* Compares a flag name (len bytes, no dashes) as the components do: pflag's
 * WordSepNormalizeFunc makes "_" and "-" the same. */
bool cmdline_flag_name_equal(const char *name, size_t len, const char *wanted);

/* Calls fn for each flag in order (name without dashes, value or NULL for bare). */
typedef int (*cmdline_flag_fn)(const char *name, size_t name_len, const char *value, void *userdata);
int cmdline_foreach_flag(const cmdline *c, cmdline_flag_fn fn, void *userdata);
