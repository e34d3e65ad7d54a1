/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "macro.h"
#include "status.h"

static const char *const phase_names[_STATUS_PHASE_MAX] = {
        [STATUS_IDLE] = "Idle",
        [STATUS_PENDING] = "Pending",
        [STATUS_PROGRESSING] = "Progressing",
        [STATUS_SUCCEEDED] = "Succeeded",
        [STATUS_FAILED] = "Failed",
        [STATUS_ROLLED_BACK] = "RolledBack",
        [STATUS_REFUSED] = "Refused",
        [STATUS_INTERRUPTED] = "Interrupted",
};

const char *status_phase_to_string(status_phase p) {
        return p >= 0 && p < _STATUS_PHASE_MAX ? phase_names[p] : NULL;
}

static json_t *string_or_null(const char *s) {
        return s ? json_string(s) : json_null();
}

/* A message is cut to the limit on a UTF-8 boundary (jansson refuses a broken sequence). */
static json_t *message_json(const char *m) {
        size_t n;

        if (!m)
                return json_null();
        n = strlen(m);
        if (n <= STATUS_MESSAGE_MAX)
                return json_string(m);
        n = STATUS_MESSAGE_MAX;
        while (n > 0 && ((unsigned char) m[n] & 0xC0) == 0x80)
                n--;
        return json_stringn(m, n);
}

static json_t *step_json(const status_step *s) {
        if (s->total == 0)
                return json_null();
        return json_pack("{s:I, s:I, s:o, s:o, s:o}", "index", (json_int_t) s->index, "total", (json_int_t) s->total,
                         "component", string_or_null(s->component), "kind", string_or_null(s->kind), "waitingFor",
                         string_or_null(s->waiting_for));
}

static json_t *component_json(const status_report *r, size_t i) {
        const component *co = &r->node->components[i];
        char b[KVERSION_STRING_MAX], e[KMINOR_STRING_MAX], m[KMINOR_STRING_MAX];
        int healthy = r->healthy ? r->healthy[i] : -1;

        kversion_format(&co->binary, b);
        kminor_format(co->emulated, e);
        kminor_format(co->min_compat, m);
        return json_pack("{s:s, s:o, s:o, s:o, s:o, s:o}", "name", co->plugin->name, "binaryVersion",
                         string_or_null(co->binary_known ? b : NULL), "emulatedVersion",
                         string_or_null(co->versions_known ? e : NULL), "minCompatibilityVersion",
                         string_or_null(co->versions_known ? m : NULL), "revision",
                         r->revisions && r->revisions[i] ? json_integer(r->revisions[i]) : json_null(), "healthy",
                         healthy < 0 ? json_null() : json_boolean(healthy));
}

json_t *status_to_json(const status_report *r, const char *now) {
        json_auto_t *o = NULL;
        json_t *list;

        if (!status_phase_to_string(r->phase))
                return NULL;
        o = json_pack("{s:o, s:o, s:s, s:o, s:o, s:s, s:s, s:[]}", "id", string_or_null(r->id), "generation",
                      r->id && r->generation > 0 ? json_integer((json_int_t) r->generation) : json_null(), "phase",
                      status_phase_to_string(r->phase), "step", step_json(&r->step), "message",
                      message_json(r->message), "updated", now, "agentVersion", r->agent_version ?: "unknown",
                      "components");
        if (!o)
                return NULL;
        list = json_object_get(o, "components");
        for (size_t i = 0; r->node && i < r->node->n_components; i++)
                if (json_array_append_new(list, component_json(r, i)) < 0)
                        return NULL;
        return TAKE_PTR(o);
}
