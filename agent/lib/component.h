/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A control-plane component as its live manifest and its plugin describe it: image, binary
 * version, flags, and the effective compatibility versions (explicit or implied). */

#include <jansson.h>
#include <stdbool.h>

#include "cmdline.h"
#include "image.h"
#include "plugin-loader.h"
#include "version.h"

typedef struct component {
        const plugin *plugin; /* borrowed from the plugin set */
        char *file;           /* manifest file name inside the manifest directory */
        json_t *pod;          /* the whole parsed manifest (owned) */
        json_t *container;    /* the component's container inside pod (borrowed) */

        char *image;             /* as written; NULL if missing */
        image_ref image_ref;     /* parsed; repository NULL if unparseable */
        bool binary_known;
        kversion binary;
        char *binary_unknown_reason; /* why the binary version cannot be known */

        bool cmdline_ok;
        cmdline cmdline;
        char *cmdline_error; /* why cplet cannot read or edit the command line */

        bool emulated_explicit;   /* --emulated-version names kube */
        bool min_compat_explicit; /* --min-compatibility-version names kube */
        bool forward_compat_set;  /* a forward-compatibility flag is on */
        kminor emulated_flag, min_compat_flag;

        bool versions_known; /* emulated and min_compat below are meaningful */
        kminor emulated, min_compat;
        char *versions_error; /* the manifest's flags are invalid for its binary */
} component;

/* Reads the component's state from a container of a parsed pod. Takes a reference on pod.
 * Never fails for content the component cannot start with: such problems are recorded in
 * the reason and error fields so that status can tell the truth. */
int component_read(json_t *pod, json_t *container, const plugin *p, const char *file, component *ret);
void component_done(component *c);

/* The name of a container ("" when absent). */
const char *container_name(json_t *container);

/* True when the component is fully known and valid: binary version, command line, and
 * compatibility versions. Otherwise *ret_reason says why (borrowed). */
bool component_is_plannable(const component *c, const char **ret_reason);

struct plan_step;

/* Returns a new pod tree: the component's manifest with the step applied (image; the
 * compatibility flags written only where they differ from the binary's default; the
 * forward-compatibility flags removed when the step drops them; the step's --drop-removed
 * entries removed). Everything else in the document stays as it was. The result is re-read and must show exactly the step's
 * versions, or -EINVAL. */
int component_apply_step(const component *c, const struct plan_step *step, json_t **ret, char **ret_error);

/* Finds the component's container in another tree (a copy, another revision) by its name. */
json_t *component_container_in(const component *c, json_t *pod);
