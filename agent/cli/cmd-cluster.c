/* SPDX-License-Identifier: Apache-2.0 */
/* cplet cluster status|plan|upgrade|rollback: the reference controller (docs/cluster.md). */

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cluster-api.h"
#include "cluster-lease.h"
#include "cluster-plan.h"
#include "cluster-preflight.h"
#include "cluster-state.h"
#include "controller.h"
#include "kubeconfig.h"
#include "macro.h"

/* An idle agent writes its status each time the API server ends its watch (every 5 to 10 minutes,
 * docs/protocol.md): one missed period plus slack. */
#define DEFAULT_MAX_STATUS_AGE "15m"
#define DEFAULT_NODE_TIMEOUT "15m"

typedef struct cluster_cli {
        sd_event *event;
        kube_client *kube;
        cluster_api api;
} cluster_cli;

static void cluster_cli_done(cluster_cli *cc) {
        kube_client_free(cc->kube);
        sd_event_unref(cc->event);
}

/* --kubeconfig, else the first file of $KUBECONFIG (kubectl merges the list; cplet takes the
 * first one only), else ~/.kube/config. */
static int resolve_kubeconfig(const cli *c, char **ret) {
        const char *env = getenv("KUBECONFIG"), *home = getenv("HOME");

        if (c->kubeconfig)
                *ret = strdup(c->kubeconfig);
        else if (env && *env && *env != ':')
                *ret = strndup(env, strcspn(env, ":"));
        else if (home && *home)
                *ret = strdup_printf("%s/.kube/config", home);
        else {
                cli_error("no kubeconfig: give --kubeconfig or set KUBECONFIG (HOME is not set)");
                return EXIT_INVALID;
        }
        return *ret ? EXIT_OK : EXIT_FAILED;
}

static int connect_api(const cli *c, cluster_cli *cc) {
        _cleanup_(kubeconfig_freep) kubeconfig *k = NULL;
        _cleanup_free_ char *path = NULL, *error = NULL;
        int r;

        r = resolve_kubeconfig(c, &path);
        if (r != EXIT_OK)
                return r;
        r = kubeconfig_load(path, c->context, &k, &error);
        if (r < 0) {
                cli_error("%s", error ?: strerror(-r));
                return r == -ENOMEM ? EXIT_FAILED : EXIT_INVALID;
        }
        r = sd_event_new(&cc->event);
        if (r < 0)
                return cli_fail(r, NULL);
        r = kube_client_new(cc->event, k, c->insecure_skip_tls_verify, &cc->kube, &error);
        if (r < 0) {
                cli_error("%s", error ?: strerror(-r));
                return r == -ENOMEM ? EXIT_FAILED : EXIT_INVALID;
        }
        cc->api = (cluster_api){ .event = cc->event, .kube = cc->kube };
        return EXIT_OK;
}

static uint64_t wall_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

static int get_list(cluster_cli *cc, const char *path, const char *what, json_t **ret) {
        _cleanup_(api_result_done) api_result res = {};
        int r;

        r = api_call(&cc->api, "GET", path, NULL, NULL, &res);
        if (r < 0)
                return cli_fail(r, NULL);
        if (res.status != 200 || !json_is_object(res.body)) {
                cli_error("reading %s: %s", what, res.error ?: "not a list");
                return EXIT_FAILED;
        }
        *ret = TAKE_PTR(res.body);
        return EXIT_OK;
}

static int read_state(const cli *c, cluster_cli *cc, cluster_state **ret) {
        json_auto_t *nodes = NULL, *pods = NULL;
        _cleanup_free_ char *error = NULL;
        uint64_t max_age;
        int r;

        if (parse_duration(c->max_status_age ?: DEFAULT_MAX_STATUS_AGE, &max_age) < 0) {
                cli_error("--max-status-age \"%s\": not a duration (0s, 30s, 5m, 1m30s)", c->max_status_age);
                return EXIT_INVALID;
        }
        r = get_list(cc, "/api/v1/nodes?labelSelector=" "node-role.kubernetes.io%2Fcontrol-plane", "the nodes",
                     &nodes);
        if (r != EXIT_OK)
                return r;
        r = get_list(cc, "/api/v1/namespaces/kube-system/pods", "the pods of kube-system", &pods);
        if (r != EXIT_OK)
                return r;
        r = cluster_state_build(nodes, pods, wall_usec(), max_age, ret, &error);
        if (r < 0)
                return cli_fail(r == -ENOMEM ? r : -EIO, error);
        return EXIT_OK;
}

/* ---- status ---- */

static void problems_of(const cluster_state *st, size_t i, json_t *list) {
        const cluster_node *nd = &st->nodes[i];
        const node_report *rep = &st->reports[i];
        _cleanup_free_ char *why = NULL;

        switch (nd->agent) {
        case CLUSTER_AGENT_MISSING:
                json_array_append_new(list, json_string("no agent (no cplet.io/status)"));
                break;
        case CLUSTER_AGENT_STALE:
                json_array_append_new(list, json_sprintf("stale status (updated %llds ago)", (long long) rep->age_sec));
                break;
        case CLUSTER_AGENT_INVALID:
                json_array_append_new(list,
                                      json_sprintf("invalid status: %s", rep->status_problem ?: "not the protocol's"));
                break;
        case CLUSTER_AGENT_OK:
                break;
        }
        for (int c = 0; c < _CLUSTER_COMPONENT_MAX; c++) {
                if (nd->agent != CLUSTER_AGENT_MISSING && !nd->comps[c].known)
                        json_array_append_new(list, json_sprintf("%s not reported", cluster_component_names[c]));
                if (nd->comps[c].mirror_agrees == 0)
                        json_array_append_new(list, json_sprintf("%s: %s", cluster_component_names[c],
                                                                 rep->mirror_why[c] ?: "mirror pod disagrees"));
                else if (rep->mirror[c].present && !rep->mirror[c].ready)
                        json_array_append_new(list, json_sprintf("%s: mirror pod not Ready",
                                                                 cluster_component_names[c]));
        }
        if (nd->agent != CLUSTER_AGENT_MISSING && cluster_validate_state(nd, 1, &why) < 0)
                json_array_append_new(list, json_sprintf("components disagree: %s", why));
}

static json_t *string_or_null(const char *s) {
        return s ? json_string(s) : json_null();
}

static json_t *component_json(const cluster_state *st, size_t i, int c) {
        const cluster_comp *s = &st->nodes[i].comps[c];
        const node_report *rep = &st->reports[i];
        const mirror_pod *m = &rep->mirror[c];
        char b[KVERSION_STRING_MAX], e[KMINOR_STRING_MAX], mc[KMINOR_STRING_MAX];
        _cleanup_free_ char *pod = mirror_pod_name(c, rep->name);

        kversion_format(&s->binary, b);
        kminor_format(s->emulated, e);
        kminor_format(s->min_compat, mc);
        return json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:{s:s?, s:b, s:o, s:o, s:b, s:o, s:o}}", "name",
                         cluster_component_names[c], "binaryVersion", string_or_null(s->known ? b : NULL),
                         "emulatedVersion", string_or_null(s->known ? e : NULL), "minCompatibilityVersion",
                         string_or_null(s->known ? mc : NULL), "revision",
                         s->revision ? json_integer(s->revision) : json_null(), "healthy",
                         rep->healthy[c] < 0 ? json_null() : json_boolean(rep->healthy[c]), "mirrorPod", "name", pod,
                         "present", m->present, "revision", m->revision ? json_integer(m->revision) : json_null(),
                         "image", string_or_null(m->image), "ready", m->ready, "agrees",
                         s->mirror_agrees < 0 ? json_null() : json_boolean(s->mirror_agrees), "why",
                         string_or_null(rep->mirror_why[c]));
}

static json_t *node_json(const cluster_state *st, size_t i) {
        const cluster_node *nd = &st->nodes[i];
        const node_report *rep = &st->reports[i];
        json_t *o, *comps, *problems;

        o = json_pack("{s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:[], s:[]}", "name", nd->name, "agent",
                      cluster_agent_to_string(nd->agent), "phase", string_or_null(nd->phase), "id",
                      string_or_null(nd->status_id), "generation",
                      nd->status_id ? json_integer((json_int_t) rep->generation) : json_null(), "agentVersion",
                      string_or_null(rep->agent_version), "updated", string_or_null(rep->updated), "ageSeconds",
                      rep->age_sec >= 0 ? json_integer(rep->age_sec) : json_null(), "message",
                      string_or_null(rep->message), "target", rep->target ? json_incref(rep->target) : json_null(),
                      "components", "problems");
        if (!o)
                return NULL;
        comps = json_object_get(o, "components");
        problems = json_object_get(o, "problems");
        for (int c = 0; c < _CLUSTER_COMPONENT_MAX; c++)
                json_array_append_new(comps, component_json(st, i, c));
        problems_of(st, i, problems);
        return o;
}

static void print_component_cell(const cluster_state *st, size_t i, int c) {
        const cluster_comp *s = &st->nodes[i].comps[c];
        const node_report *rep = &st->reports[i];
        char b[KVERSION_STRING_MAX], e[KMINOR_STRING_MAX], m[KMINOR_STRING_MAX], cell[256], rev[16];

        if (!s->known) {
                printf("  %-28s", "-");
                return;
        }
        kversion_format(&s->binary, b);
        kminor_format(s->emulated, e);
        kminor_format(s->min_compat, m);
        snprintf(rev, sizeof(rev), "%u", s->revision);
        snprintf(cell, sizeof(cell), "%s %s/%s r%s%s", b, e, m, s->revision ? rev : "-",
                 s->mirror_agrees == 0                           ? " !pod"
                 : rep->mirror[c].present && !rep->mirror[c].ready ? " !ready"
                                                                   : "");
        printf("  %-28s", cell);
}

static void print_status(const cluster_state *st, json_t *cluster_problem) {
        printf("%-16s %-10s %-12s", "NODE", "AGENT", "PHASE");
        printf("  %-28s  %-28s  %-28s\n", "KUBE-APISERVER", "KUBE-CONTROLLER-MANAGER", "KUBE-SCHEDULER");
        for (size_t i = 0; i < st->n; i++) {
                const cluster_node *nd = &st->nodes[i];
                const node_report *rep = &st->reports[i];

                printf("%-16s %-10s %-12s", nd->name,
                       nd->agent == CLUSTER_AGENT_OK ? (rep->agent_version ?: "?") : cluster_agent_to_string(nd->agent),
                       nd->phase ?: "-");
                for (int c = 0; c < _CLUSTER_COMPONENT_MAX; c++)
                        print_component_cell(st, i, c);
                printf("\n");
        }
        printf("\n(versions: binary emulated/min-compatibility, rN: revision (r-: none recorded yet); !pod: the mirror pod disagrees, "
               "!ready: not Ready)\n");
        for (size_t i = 0; i < st->n; i++) {
                json_auto_t *list = json_array();
                json_t *p;
                size_t k;

                problems_of(st, i, list);
                json_array_foreach(list, k, p)
                        printf("%s: %s\n", st->nodes[i].name, json_string_value(p));
                if (st->nodes[i].phase && st->reports[i].message &&
                    !streq(st->nodes[i].phase, "Succeeded") && !streq(st->nodes[i].phase, "Idle"))
                        printf("%s: %s: %s\n", st->nodes[i].name, st->nodes[i].phase, st->reports[i].message);
        }
        if (!json_is_null(cluster_problem))
                printf("cluster: %s\n", json_string_value(cluster_problem));
}

static int cluster_status(const cli *c, cluster_cli *cc) {
        _cleanup_(cluster_state_freep) cluster_state *st = NULL;
        _cleanup_free_ char *why = NULL;
        json_auto_t *problem = NULL;
        int r;

        r = read_state(c, cc, &st);
        if (r != EXIT_OK)
                return r;
        problem = cluster_validate_state(st->nodes, st->n, &why) < 0 ? json_string(why) : json_null();
        if (c->json) {
                json_auto_t *o = json_pack("{s:[], s:O}", "nodes", "problem", problem);

                for (size_t i = 0; o && i < st->n; i++)
                        json_array_append_new(json_object_get(o, "nodes"), node_json(st, i));
                if (!o || json_dumpf(o, stdout, JSON_INDENT(2)) < 0)
                        return cli_fail(-ENOMEM, NULL);
                printf("\n");
                return EXIT_OK;
        }
        print_status(st, problem);
        return EXIT_OK;
}

/* ---- plan ---- */

static int parse_target(const cli *c, cluster_mode mode, cluster_target *ret) {
        _cleanup_free_ char *error = NULL;
        cluster_target t = { .mode = mode };

        if (c->target.image_repository || c->target.n_images || c->n_components || c->node_name || c->no_wait) {
                cli_error("cluster: --image-repository, --image, --components, --node-name and --no-wait do not "
                          "apply (each node keeps its own repository; the controller chooses the components)");
                return EXIT_INVALID;
        }
        if (c->target.binary_version) {
                if (kversion_parse(c->target.binary_version, &t.binary, &error) < 0) {
                        cli_error("--binary-version \"%s\": %s", c->target.binary_version, error);
                        return EXIT_INVALID;
                }
                t.binary_set = true;
        }
        if (c->target.emulated_version) {
                if (kminor_parse(c->target.emulated_version, &t.emulated, &error) < 0) {
                        cli_error("--emulated-version \"%s\": %s", c->target.emulated_version, error);
                        return EXIT_INVALID;
                }
                t.emulated_set = true;
        }
        if (c->target.min_compat_version) {
                if (kminor_parse(c->target.min_compat_version, &t.min_compat, &error) < 0) {
                        cli_error("--min-compatibility-version \"%s\": %s", c->target.min_compat_version, error);
                        return EXIT_INVALID;
                }
                t.min_compat_set = true;
        }
        *ret = t;
        return EXIT_OK;
}

static json_t *step_json(const cluster_state *st, const cluster_step *s) {
        char b[KVERSION_STRING_MAX], e[KMINOR_STRING_MAX], m[KMINOR_STRING_MAX];

        kversion_format(&s->binary, b);
        kminor_format(s->emulated, e);
        kminor_format(s->min_compat, m);
        return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "node", st->nodes[s->node].name, "component",
                         cluster_component_names[s->component], "phase", cluster_phase_to_string(s->phase), "id",
                         s->id, "binaryVersion", b, "emulatedVersion", e, "minCompatibilityVersion", m);
}

static void print_plan(const cluster_state *st, const cluster_plan *p) {
        if (p->n_steps == 0) {
                printf("Nothing to do: every control-plane node is at the target.\n");
                return;
        }
        printf("Plan: %zu steps over %zu control-plane nodes (targets cluster-%s-...)\n\n", p->n_steps, st->n,
               p->hash);
        for (size_t i = 0; i < p->n_steps; i++) {
                const cluster_step *s = &p->steps[i];
                char b[KVERSION_STRING_MAX], e[KMINOR_STRING_MAX], m[KMINOR_STRING_MAX];

                kversion_format(&s->binary, b);
                kminor_format(s->emulated, e);
                kminor_format(s->min_compat, m);
                printf("  %3zu. %-16s %-24s %-18s binary %s, emulated %s, min-compatibility %s\n", i + 1,
                       st->nodes[s->node].name, cluster_component_names[s->component],
                       cluster_phase_to_string(s->phase), b, e, m);
        }
}

/* The preflight over every node's mirror pods: warnings printed, refusals refuse the plan
 * (exit 2, all of them listed) unless --force; --drop-removed goes into the targets. */
static int cluster_preflight_cmd(const cli *c, const cluster_state *st, cluster_plan *p) {
        _cleanup_(cluster_preflight_done) cluster_preflight cp = {};
        _cleanup_free_ char *error = NULL;
        int r;

        r = cluster_preflight_run(st, p, c->target.drop_removed, &cp, &error);
        if (r < 0)
                return cli_fail(r, error);
        for (size_t i = 0; !c->quiet && i < cp.report.n_findings; i++)
                if (cp.report.findings[i].warning)
                        fprintf(stderr, "warning: %s\n", cp.report.findings[i].message);
        if (cp.n_unchecked > 0 && !c->quiet)
                fprintf(stderr, "warning: %zu (node, component) without a readable mirror pod: not checked here, "
                        "their agents check before writing\n", cp.n_unchecked);
        if (cp.report.n_refusals == 0)
                return EXIT_OK;
        if (c->force) {
                for (size_t i = 0; !c->quiet && i < cp.report.n_findings; i++)
                        if (!cp.report.findings[i].warning)
                                fprintf(stderr, "warning: %s (the binary will refuse this; going ahead as --force says)\n",
                                        cp.report.findings[i].message);
                return EXIT_OK;
        }
        cli_error("cluster plan refused: the new binaries would refuse to start (%zu finding%s):",
                  cp.report.n_refusals, cp.report.n_refusals == 1 ? "" : "s");
        for (size_t i = 0; i < cp.report.n_findings; i++)
                if (!cp.report.findings[i].warning)
                        fprintf(stderr, "  %s\n", cp.report.findings[i].message);
        fprintf(stderr, "Remove them from the manifests, or run again with --drop-removed NAME (each node's "
                        "component drops it in its first step), or with --force to go ahead anyway\n");
        return EXIT_INVALID;
}

static int compute_plan(const cli *c, cluster_cli *cc, cluster_mode mode, cluster_state **ret_state,
                        cluster_plan **ret_plan) {
        _cleanup_free_ char *error = NULL;
        cluster_target t;
        int r;

        r = parse_target(c, mode, &t);
        if (r != EXIT_OK)
                return r;
        r = read_state(c, cc, ret_state);
        if (r != EXIT_OK)
                return r;
        r = cluster_plan_compute((*ret_state)->nodes, (*ret_state)->n, &t, ret_plan, &error);
        if (r < 0)
                return cli_fail(r, error);
        return cluster_preflight_cmd(c, *ret_state, *ret_plan);
}

static int cluster_plan_cmd(const cli *c, cluster_cli *cc, cluster_mode mode) {
        _cleanup_(cluster_state_freep) cluster_state *st = NULL;
        _cleanup_(cluster_plan_freep) cluster_plan *p = NULL;
        int r;

        r = compute_plan(c, cc, mode, &st, &p);
        if (r != EXIT_OK)
                return r;
        if (c->json) {
                json_auto_t *o = json_pack("{s:s, s:[]}", "hash", p->hash, "steps");

                for (size_t i = 0; o && i < p->n_steps; i++)
                        json_array_append_new(json_object_get(o, "steps"), step_json(st, &p->steps[i]));
                if (!o || json_dumpf(o, stdout, JSON_INDENT(2)) < 0)
                        return cli_fail(-ENOMEM, NULL);
                printf("\n");
                return EXIT_OK;
        }
        print_plan(st, p);
        return EXIT_OK;
}

/* ---- upgrade, rollback ---- */

static void print_progress(size_t index, size_t total, const cluster_step *s, const char *node_name, const char *what,
                           const char *detail, void *userdata) {
        const cli *c = userdata;

        if (c->quiet)
                return;
        if (c->json) {
                json_auto_t *o = json_pack("{s:I, s:I, s:s, s:s, s:s, s:s, s:o}", "step", (json_int_t) index, "total",
                                           (json_int_t) total, "node", node_name, "component",
                                           cluster_component_names[s->component], "phase",
                                           cluster_phase_to_string(s->phase), "event", what, "detail",
                                           string_or_null(detail));

                if (o && json_dumpf(o, stdout, JSON_COMPACT) >= 0)
                        printf("\n");
        } else if (streq(what, "writing") || streq(what, "attached"))
                printf("[%zu/%zu] %s %s %s: %s %s\n", index, total, node_name, cluster_component_names[s->component],
                       cluster_phase_to_string(s->phase),
                       streq(what, "writing") ? "target" : "waiting again for target", detail);
        else if (streq(what, "done"))
                printf("[%zu/%zu] %s %s: done (agent Succeeded, mirror pod at the new revision and Ready%s)\n", index,
                       total, node_name, cluster_component_names[s->component],
                       s->component == CLUSTER_APISERVER ? "" : ", leader Lease renewed");
        fflush(stdout);
}

static int dry_run(const cli *c, const cluster_state *st, const cluster_plan *p, const controller_options *o) {
        for (size_t i = 0; i < p->n_steps; i++) {
                json_auto_t *t = controller_target_json(&p->steps[i], 1, o);
                _cleanup_free_ char *text = t ? json_dumps(t, JSON_COMPACT) : NULL;

                if (!text)
                        return cli_fail(-ENOMEM, NULL);
                printf("%zu. node %s: cplet.io/target=%s\n", i + 1, st->nodes[p->steps[i].node].name, text);
        }
        if (p->n_steps == 0)
                printf("Nothing to do: every control-plane node is at the target.\n");
        printf("(dry run: nothing written; generations are chosen when written)\n");
        return EXIT_OK;
}

static int controller_options_from(const cli *c, controller_options *ret) {
        _cleanup_free_ char *error = NULL;
        rollout_options unused;
        uint64_t timeout;

        if (op_parse_rollout_options(c->stable_for, c->step_timeout, c->on_failure, &unused, &error) < 0) {
                cli_error("%s", error);
                return EXIT_INVALID;
        }
        if (parse_duration(c->node_timeout ?: DEFAULT_NODE_TIMEOUT, &timeout) < 0 || timeout == 0) {
                cli_error("--node-timeout \"%s\": not a positive duration (30s, 5m, 1m30s)", c->node_timeout);
                return EXIT_INVALID;
        }
        *ret = (controller_options){
                .stable_for = c->stable_for,
                .step_timeout = c->step_timeout,
                .on_failure = c->on_failure,
                .node_timeout_usec = timeout,
                .progress = print_progress,
                .userdata = (void *) c,
        };
        return EXIT_OK;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        cluster_cli *cc = userdata;

        cc->api.interrupted = true;
        return 0;
}

/* SIGINT and SIGTERM end the wait in progress (never a write): the Lease is then released, so
 * that the next controller need not wait for it to expire. */
static int catch_signals(cluster_cli *cc) {
        sigset_t ss;
        int r;

        sigemptyset(&ss);
        sigaddset(&ss, SIGINT);
        sigaddset(&ss, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &ss, NULL) < 0)
                return -errno;
        r = sd_event_add_signal(cc->event, NULL, SIGINT, on_signal, cc);
        if (r < 0)
                return r;
        return sd_event_add_signal(cc->event, NULL, SIGTERM, on_signal, cc);
}

static int run_plan(const cli *c, cluster_cli *cc, cluster_mode mode) {
        _cleanup_(cluster_state_freep) cluster_state *st = NULL;
        _cleanup_(cluster_plan_freep) cluster_plan *p = NULL;
        _cleanup_(cluster_lease_releasep) cluster_lease *lease = NULL;
        _cleanup_(controller_failure_done) controller_failure f = {};
        _cleanup_free_ char *error = NULL, *identity = NULL;
        char host[HOST_NAME_MAX + 1] = "unknown";
        controller_options o;
        int r;

        r = controller_options_from(c, &o);
        if (r != EXIT_OK)
                return r;
        if (c->dry_run) {
                r = compute_plan(c, cc, mode, &st, &p);
                return r != EXIT_OK ? r : dry_run(c, st, p, &o);
        }
        (void) gethostname(host, sizeof(host) - 1);
        identity = strdup_printf("cplet-cluster@%s/%d", host, (int) getpid());
        if (!identity)
                return cli_fail(-ENOMEM, NULL);
        r = catch_signals(cc);
        if (r < 0)
                return cli_fail(r, NULL);
        r = cluster_lease_acquire(&cc->api, identity, CLUSTER_LEASE_DURATION_S, &lease, &error);
        if (r < 0)
                return cli_fail(r, error);
        /* Planned under the Lease: what another controller did before is seen. */
        r = compute_plan(c, cc, mode, &st, &p);
        if (r != EXIT_OK)
                return r;
        if (p->n_steps == 0) {
                printf("Nothing to do: every control-plane node is at the target.\n");
                return EXIT_OK;
        }
        if (!c->quiet && !c->json)
                print_plan(st, p);
        r = controller_run(&cc->api, lease, st, p, &o, &f);
        if (r == -EIO) {
                cli_error("step %zu/%zu failed: %s on node %s: %s. No other node was touched; cplet cluster status "
                          "shows where things stand, and the same command continues once the cause is fixed",
                          f.index, p->n_steps, cluster_component_names[f.component], f.node, f.why);
                return EXIT_FAILED;
        }
        if (r < 0)
                return cli_fail(r == -EINVAL ? -EIO : r, NULL);
        if (!c->quiet && !c->json)
                printf("Done: %zu steps; every control-plane node is at the target.\n", p->n_steps);
        return EXIT_OK;
}

int cmd_cluster(cli *c) {
        _cleanup_(cluster_cli_done) cluster_cli cc = {};
        const char *sub = c->args[0];
        int r;

        if (!streq(sub, "status") && !streq(sub, "plan") && !streq(sub, "upgrade") && !streq(sub, "rollback")) {
                cli_error("cluster: unknown sub-command \"%s\" (status, plan, upgrade, rollback)", sub);
                return EXIT_INVALID;
        }
        if (!streq(sub, "upgrade") && !streq(sub, "rollback") &&
            (c->dry_run || c->stable_for || c->step_timeout || c->on_failure || c->node_timeout)) {
                cli_error("cluster %s: --dry-run and the gate options apply to upgrade and rollback only", sub);
                return EXIT_INVALID;
        }
        if (streq(sub, "status") && (c->target.binary_version || c->target.emulated_version ||
                                     c->target.min_compat_version)) {
                cli_error("cluster status: the target options do not apply");
                return EXIT_INVALID;
        }
        /* A SIGPIPE from a closed output must not kill a controller between two writes. */
        (void) signal(SIGPIPE, SIG_IGN);
        r = connect_api(c, &cc);
        if (r != EXIT_OK)
                return r;
        if (streq(sub, "status"))
                return cluster_status(c, &cc);
        if (streq(sub, "plan"))
                return cluster_plan_cmd(c, &cc, CLUSTER_UPGRADE);
        return run_plan(c, &cc, streq(sub, "upgrade") ? CLUSTER_UPGRADE : CLUSTER_ROLLBACK);
}
