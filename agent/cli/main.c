/* SPDX-License-Identifier: Apache-2.0 */
/* cplet: options may stand before or after the command (cplet --json status, cplet status
 * --json); each command says which of the command options it takes. */

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <string.h>

#include "cli.h"
#include "cplet-build.h"
#include "macro.h"

enum {
        OPT_ROOT = 0x100,
        OPT_CONFIG,
        OPT_PLUGIN_DIR,
        OPT_JSON,
        OPT_VERSION,
        OPT_BINARY_VERSION,
        OPT_EMULATED_VERSION,
        OPT_MIN_COMPAT_VERSION,
        OPT_IMAGE_REPOSITORY,
        OPT_IMAGE,
        OPT_NO_WAIT,
        OPT_DRY_RUN,
        OPT_COMPONENT,
        OPT_TO_REVISION,
        OPT_STABLE_FOR,
        OPT_STEP_TIMEOUT,
        OPT_ON_FAILURE,
        OPT_QUIET,
        OPT_FORCE,
        OPT_KUBECONFIG,
        OPT_CONTEXT,
        OPT_NODE_NAME,
        OPT_INSECURE_SKIP_TLS_VERIFY,
        OPT_COMPONENTS,
        OPT_NODE_TIMEOUT,
        OPT_MAX_STATUS_AGE,
        OPT_DROP_REMOVED,
};

/* Bits for the command options a command accepts. */
enum {
        TAKES_TARGET = 1 << 0,
        TAKES_WRITE = 1 << 1,      /* --no-wait, --dry-run */
        TAKES_COMPONENT = 1 << 2,  /* --component */
        TAKES_REVISION = 1 << 3,   /* --to-revision */
        TAKES_GATE = 1 << 4,       /* --stable-for, --step-timeout, --on-failure, --quiet */
        TAKES_FORCE = 1 << 5,      /* --force */
        TAKES_COMPONENTS = 1 << 6, /* --components */
        TAKES_API = 1 << 7,        /* --kubeconfig, --context, --node-name, --insecure-skip-tls-verify */
        TAKES_CLUSTER = 1 << 8,    /* --node-timeout, --max-status-age */
        TAKES_DROP = 1 << 9,       /* --drop-removed */
};

typedef struct command {
        const char *name;
        int (*run)(cli *c);
        unsigned takes;
        int min_args, max_args; /* positional arguments after the command */
        const char *summary;
        const char *help;
} command;

static const command commands[] = {
        {
                .name = "status",
                .run = cmd_status,
                .summary = "show each component: manifest, image, binary, emulated and min-compatibility versions",
                .help = "Usage: cplet status [--json]\n"
                        "\n"
                        "Shows one row per control-plane component found in the manifest directory:\n"
                        "its manifest file, image, binary version (from the image tag), emulated version\n"
                        "and min-compatibility version, each marked explicit (a flag in the manifest) or\n"
                        "implied (the binary's default). Changes nothing.\n",
        },
        {
                .name = "plan",
                .run = cmd_plan,
                .takes = TAKES_TARGET | TAKES_COMPONENTS | TAKES_DROP | TAKES_FORCE,
                .summary = "show the ordered steps that would move the node to a target version",
                .help = "Usage: cplet plan --binary-version V [--emulated-version E]\n"
                        "                  [--min-compatibility-version M] [--image-repository R]\n"
                        "                  [--image C=REF]... [--components C[,C...]]\n"
                        "                  [--drop-removed NAME[,NAME...]]... [--force] [--json]\n"
                        "\n"
                        "Prints the ordered steps from the node's current state to the target and changes\n"
                        "nothing. Binaries change first (API server, controller-manager, scheduler), each\n"
                        "keeping the emulated version it ran; then the emulated version rises one minor at\n"
                        "a time; then min-compatibility, if asked. Downgrades go in reverse order.\n"
                        "\n"
                        "Preflight: each step's flags are checked against what the step's binary accepts\n"
                        "(cplet's release data, 1.30 to 1.36): a flag, feature gate or admission plugin the\n"
                        "release removed, a gate locked to the other value or not yet available at the\n"
                        "emulated version refuses the plan, every one listed. Flags missing from cplet's\n"
                        "lists and deprecated flags are warnings.\n"
                        "\n"
                        "  --binary-version V             the Kubernetes version of the new binaries (v1.35.0)\n"
                        "  --emulated-version E           target emulated version (default: the binary's minor)\n"
                        "  --min-compatibility-version M  target min-compatibility version\n"
                        "                                 (default: the binary's default for E)\n"
                        "  --image-repository R           registry prefix, as kubeadm's imageRepository:\n"
                        "                                 R/kube-apiserver:V (default: each manifest's own)\n"
                        "  --image C=REF                  the exact image of C's binary step, required when\n"
                        "                                 C's image is pinned by digest: REPO:V@sha256:...\n"
                        "  --components C[,C...]          move only these components (a controller moves one\n"
                        "                                 component on every node before the next); the\n"
                        "                                 others keep their manifests and must stay valid\n"
                        "                                 with every step, or the plan is refused naming the\n"
                        "                                 one that would have to move first. The target\n"
                        "                                 means the same: give --emulated-version to keep it\n"
                        "                                 pinned while only the binary moves\n"
                        "  --drop-removed NAME[,NAME...]  remove these refused flags, feature gates or\n"
                        "                                 admission plugins in each component's first step\n"
                        "                                 (repeatable; a name nothing refuses is an error)\n"
                        "  --force                        show the plan upgrade --force would run: refusals\n"
                        "                                 become warnings, the min-compatibility high-water\n"
                        "                                 mark is lifted\n"
                        "\n"
                        "Exit status: 0 a plan (possibly empty), 2 invalid input or a plan refused by the\n"
                        "safety rules (the reason is printed).\n",
        },
        {
                .name = "upgrade",
                .run = cmd_upgrade,
                .takes = TAKES_TARGET | TAKES_WRITE | TAKES_GATE | TAKES_FORCE | TAKES_COMPONENTS | TAKES_DROP,
                .summary = "execute the plan, step by step, each gated by process, versions and health",
                .help = "Usage: cplet upgrade --binary-version V [--emulated-version E]\n"
                        "                     [--min-compatibility-version M] [--image-repository R]\n"
                        "                     [--image C=REF]... [--components C[,C...]]\n"
                        "                     [--drop-removed NAME[,NAME...]]...\n"
                        "                     [--stable-for D] [--step-timeout D]\n"
                        "                     [--on-failure rollback|stop]\n"
                        "                     [--no-wait] [--dry-run] [--force] [--json|--quiet]\n"
                        "\n"
                        "Executes the plan of cplet plan step by step. Each step is written as a new\n"
                        "revision and swapped in atomically; then cplet waits until a process runs with\n"
                        "exactly the new command line (started after the swap), the component reports the\n"
                        "step's versions (kube-apiserver /version), and the manifest's own probes answer\n"
                        "2xx for the stability window. A step that fails or times out is restored to the\n"
                        "previous revision (which must come back healthy), then the plan's completed steps\n"
                        "are unwound in reverse (--on-failure rollback, the default) or left (stop).\n"
                        "Every transition is journaled: after a crash, cplet resume or cplet abort.\n"
                        "\n"
                        "  --image C=REF       the exact image of C's binary step (see cplet plan --help)\n"
                        "  --components C,...  move only these components (see cplet plan --help)\n"
                        "  --drop-removed N,... remove these flags, feature gates or admission plugins that\n"
                        "                      the new binaries refuse, in each component's first step\n"
                        "                      (see cplet plan --help; the plan is refused without it)\n"
                        "  --stable-for D      how long health must hold (default 10s; durations: 0s, 30s, 5m, 1m30s)\n"
                        "  --step-timeout D    give up on a step after D (default 5m)\n"
                        "  --on-failure P      rollback (default) or stop\n"
                        "  --no-wait           write every step without waiting (image builders, offline nodes)\n"
                        "  --dry-run           print what would be written (a diff per step) and write nothing\n"
                        "  --force             allow lowering the min-compatibility version below its high-water mark,\n"
                        "                      and go ahead with flags the preflight refuses (as warnings)\n"
                        "  --json              one JSON object per transition; --quiet: errors only\n"
                        "\n"
                        "Exit status: 0 done, 1 a step failed (restored and unwound as said) or interrupted,\n"
                        "2 invalid input or a plan refused by the safety rules.\n",
        },
        {
                .name = "rollback",
                .run = cmd_rollback,
                .takes = TAKES_COMPONENT | TAKES_REVISION | TAKES_WRITE | TAKES_TARGET | TAKES_GATE | TAKES_FORCE,
                .summary = "go back: to an earlier emulated or binary version (gated), or to a revision",
                .help = "Usage: cplet rollback --emulated-version E [gate options]\n"
                        "       cplet rollback --binary-version V [gate options]\n"
                        "       cplet rollback --component C --to-revision N [--no-wait|--dry-run]\n"
                        "\n"
                        "--emulated-version lowers the emulated version one minor at a time, components in\n"
                        "reverse order, never below the min-compatibility version in force; each step\n"
                        "gated like an upgrade step (see cplet upgrade --help for the gate options).\n"
                        "--binary-version goes back to an older binary, in reverse order, only when that\n"
                        "binary accepts the emulated and min-compatibility versions in force.\n"
                        "--to-revision writes revision N's content back as a new revision (history only\n"
                        "grows), after checking that the result is valid for the binaries and the skew\n"
                        "rules; gated (--no-wait writes without waiting). Refusals exit 2 with the reason.\n",
        },
        {
                .name = "flags",
                .run = cmd_flags,
                .takes = TAKES_WRITE | TAKES_GATE | TAKES_FORCE,
                .min_args = 2,
                .max_args = 1000,
                .summary = "set or unset other flags of a component, as a new revision",
                .help = "Usage: cplet [OPTIONS] flags set COMPONENT --NAME=VALUE... [--no-wait|--dry-run]\n"
                        "       cplet [OPTIONS] flags unset COMPONENT NAME... [--no-wait|--dry-run]\n"
                        "\n"
                        "Changes flags of a component's command line and writes the result as a new\n"
                        "revision, gated like an upgrade step (restored if the component does not come\n"
                        "back healthy; --no-wait writes without waiting). After COMPONENT every\n"
                        "--NAME=VALUE is the component's flag, except cplet's own --no-wait, --dry-run,\n"
                        "--json, --quiet, --stable-for, --step-timeout and --on-failure; cplet's\n"
                        "own options with values (--root, --config, --plugin-dir) go before \"flags\".\n"
                        "The compatibility flags (--emulated-version, --min-compatibility-version,\n"
                        "--emulation-forward-compatible...) are refused: they go through plan/upgrade.\n"
                        "A value must be a single command-line item: no white space or control\n"
                        "characters.\n",
        },
        {
                .name = "resume",
                .run = cmd_resume,
                .takes = TAKES_GATE,
                .summary = "continue a rollout that was interrupted (crash, reboot, signal)",
                .help = "Usage: cplet resume [--stable-for D] [--step-timeout D] [--on-failure P] [--json|--quiet]\n"
                        "\n"
                        "Checks the live manifests against the rollout journal (a change made since is\n"
                        "refused), waits for the step that was interrupted, then continues the plan to the\n"
                        "same target. Options default to those the rollout began with.\n",
        },
        {
                .name = "abort",
                .run = cmd_abort,
                .takes = TAKES_GATE,
                .summary = "undo an interrupted rollout: unwind its completed steps in reverse",
                .help = "Usage: cplet abort [--stable-for D] [--step-timeout D] [--json|--quiet]\n"
                        "\n"
                        "Checks the live manifests against the rollout journal, then restores, in reverse\n"
                        "order and gated, the revision each completed step replaced: the node returns to\n"
                        "the state before the plan.\n",
        },
        {
                .name = "daemon",
                .run = cmd_daemon,
                .takes = TAKES_API,
                .summary = "run as the node agent: take targets from the Node object, report status",
                .help = "Usage: cplet daemon [--kubeconfig FILE] [--context NAME] [--node-name NAME]\n"
                        "                    [--insecure-skip-tls-verify]\n"
                        "\n"
                        "Watches this node's Node object and runs each new cplet.io/target annotation as a\n"
                        "gated upgrade, reporting progress in the cplet.io/status annotation and in Events\n"
                        "(docs/protocol.md). Runs until SIGTERM; a rollout it interrupts is resumed at the\n"
                        "next start. SIGHUP reloads the configuration. For systemd: Type=notify.\n"
                        "\n"
                        "  --kubeconfig FILE  credentials (default: kubeconfig in the configuration, else\n"
                        "                     ROOT/etc/kubernetes/kubelet.conf, the kubelet's own)\n"
                        "  --context NAME     the kubeconfig context (default: its current-context)\n"
                        "  --node-name NAME   the Node (default: nodeName in the configuration, else the\n"
                        "                     client certificate's system:node:NAME, else the host name)\n"
                        "  --insecure-skip-tls-verify  do not verify the API server's certificate\n",
        },
        {
                .name = "cluster",
                .run = cmd_cluster,
                .takes = TAKES_TARGET | TAKES_WRITE | TAKES_GATE | TAKES_API | TAKES_CLUSTER,
                .min_args = 1,
                .max_args = 1,
                .summary = "drive every control-plane node's agent: status, plan, upgrade, rollback",
                .help = CMD_CLUSTER_HELP,
        },
        {
                .name = "history",
                .run = cmd_history,
                .takes = TAKES_COMPONENT,
                .summary = "list the revisions of each component, newest first",
                .help = "Usage: cplet history [--component C] [--json]\n"
                        "\n"
                        "Lists revisions newest first: number, time, reason, versions, and which one is\n"
                        "live (byte-equal to the manifest the kubelet runs). Changes nothing.\n",
        },
        {
                .name = "diff",
                .run = cmd_diff,
                .min_args = 2,
                .max_args = 3,
                .summary = "show the difference between two revisions of a component",
                .help = "Usage: cplet diff COMPONENT A [B]\n"
                        "\n"
                        "Unified diff from revision A to revision B (default: the live manifest).\n",
        },
};

static void print_usage(FILE *f) {
        fprintf(f,
                "Usage: cplet [OPTIONS] COMMAND [COMMAND OPTIONS]\n"
                "\n"
                "Manages the static pods and compatibility versions of a Kubernetes control-plane node.\n"
                "\n"
                "Commands:\n");
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
        fprintf(f,
                "\n"
                "Options (before or after the command):\n"
                "  --root DIR        take every node path under DIR (default: /)\n"
                "  --config FILE     configuration file (default: ROOT/etc/cplet/config.yaml if present)\n"
                "  --plugin-dir DIR  load component plugins from DIR (default: %s)\n"
                "  --json            machine-readable output\n"
                "  --help            show this help, or a command's with cplet COMMAND --help\n"
                "  --version         show the version\n"
                "\n"
                "Exit status: 0 success, 1 the operation failed, 2 invalid input or a refused plan.\n",
                CPLET_PLUGIN_DIR);
}

/* Makes a directory option absolute: plugins load only by absolute path, and every node path
 * is built by prefixing the root. */
static int absolute_dir(const char *option, const char *path, char **ret) {
        char buf[PATH_MAX];

        if (!realpath(path, buf)) {
                cli_error("%s %s: %s", option, path, strerror(errno));
                return -errno;
        }
        *ret = strdup(buf);
        return *ret ? 0 : -ENOMEM;
}

/* "cplet upgrade --binary-version v1.35.0 --no-wait", at most 200 characters, one line. */
static char *join_argv(int argc, char *argv[]) {
        char *s = calloc(1, 201);
        size_t len = 0;

        if (!s)
                return NULL;
        for (int i = 0; i < argc && len < 200; i++) {
                const char *a = i == 0 ? "cplet" : argv[i];

                len += (size_t) snprintf(s + len, 201 - len, "%s%s", i ? " " : "", a);
                if (len > 200)
                        len = 200;
        }
        for (char *p = s; *p; p++)
                if (*p == '\n' || *p == '\r')
                        *p = ' ';
        return s;
}

static const command *find_command(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (streq(commands[i].name, name))
                        return &commands[i];
        return NULL;
}

/* "flags set COMPONENT --NAME=VALUE...": after the command word, everything but cplet's own
 * boolean options belongs to the component, so it is kept away from getopt. The command
 * word is the first argument that is not an option or an option's value. */
static int split_flags_command(int argc, char *argv[], char ***ret_argv, int *ret_argc, cli *c) {
        static const char *const with_value[] = { "--root", "--config", "--plugin-dir", "--binary-version",
                                                  "--emulated-version", "--min-compatibility-version",
                                                  "--image-repository", "--image", "--component", "--to-revision",
                                                  "--stable-for", "--step-timeout", "--on-failure",
                                                  "--kubeconfig", "--context", "--node-name", "--components",
                                                  "--node-timeout", "--max-status-age", "--drop-removed" };
        static const char *const gate_with_value[] = { "--stable-for", "--step-timeout", "--on-failure" };
        static const char *const own_booleans[] = { "--no-wait", "--dry-run", "--json", "--quiet", "--help", "-h" };
        char **out = calloc(argc + 1, sizeof(char *));
        int n = 0, i;

        if (!out)
                return -ENOMEM;
        for (i = 0; i < argc; i++) {
                bool takes_value = false;

                if (i > 0 && argv[i][0] != '-' && streq(argv[i], "flags"))
                        break;
                out[n++] = argv[i];
                for (size_t k = 0; k < ELEMENTSOF(with_value); k++)
                        if (streq(argv[i], with_value[k]))
                                takes_value = true;
                if (i > 0 && argv[i][0] != '-' && !takes_value)
                        break; /* another command */
                if (takes_value && i + 1 < argc)
                        out[n++] = argv[++i];
        }
        if (i < argc && streq(argv[i], "flags")) {
                c->args = calloc(argc, sizeof(char *));
                if (!c->args) {
                        free(out);
                        return -ENOMEM;
                }
                out[n++] = argv[i];
                for (i++; i < argc; i++) {
                        bool own = false;

                        for (size_t k = 0; k < ELEMENTSOF(own_booleans); k++)
                                if (streq(argv[i], own_booleans[k]))
                                        own = true;
                        /* The gate's options: no component has flags of these names. */
                        for (size_t k = 0; k < ELEMENTSOF(gate_with_value); k++) {
                                const char *rest = startswith(argv[i], gate_with_value[k]);

                                if (rest && *rest == '=')
                                        own = true;
                                else if (rest && !*rest && i + 1 < argc) {
                                        out[n++] = argv[i++];
                                        own = true;
                                }
                        }
                        if (own)
                                out[n++] = argv[i];
                        else
                                c->args[c->n_args++] = argv[i];
                }
        } else
                for (i++; i < argc; i++)
                        out[n++] = argv[i];
        out[n] = NULL;
        *ret_argv = out;
        *ret_argc = n;
        return 0;
}

static const struct option long_options[] = {
        { "root", required_argument, NULL, OPT_ROOT },
        { "config", required_argument, NULL, OPT_CONFIG },
        { "plugin-dir", required_argument, NULL, OPT_PLUGIN_DIR },
        { "json", no_argument, NULL, OPT_JSON },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, OPT_VERSION },
        { "binary-version", required_argument, NULL, OPT_BINARY_VERSION },
        { "emulated-version", required_argument, NULL, OPT_EMULATED_VERSION },
        { "min-compatibility-version", required_argument, NULL, OPT_MIN_COMPAT_VERSION },
        { "image-repository", required_argument, NULL, OPT_IMAGE_REPOSITORY },
        { "image", required_argument, NULL, OPT_IMAGE },
        { "no-wait", no_argument, NULL, OPT_NO_WAIT },
        { "dry-run", no_argument, NULL, OPT_DRY_RUN },
        { "component", required_argument, NULL, OPT_COMPONENT },
        { "to-revision", required_argument, NULL, OPT_TO_REVISION },
        { "stable-for", required_argument, NULL, OPT_STABLE_FOR },
        { "step-timeout", required_argument, NULL, OPT_STEP_TIMEOUT },
        { "on-failure", required_argument, NULL, OPT_ON_FAILURE },
        { "quiet", no_argument, NULL, OPT_QUIET },
        { "force", no_argument, NULL, OPT_FORCE },
        { "kubeconfig", required_argument, NULL, OPT_KUBECONFIG },
        { "context", required_argument, NULL, OPT_CONTEXT },
        { "node-name", required_argument, NULL, OPT_NODE_NAME },
        { "insecure-skip-tls-verify", no_argument, NULL, OPT_INSECURE_SKIP_TLS_VERIFY },
        { "components", required_argument, NULL, OPT_COMPONENTS },
        { "node-timeout", required_argument, NULL, OPT_NODE_TIMEOUT },
        { "max-status-age", required_argument, NULL, OPT_MAX_STATUS_AGE },
        { "drop-removed", required_argument, NULL, OPT_DROP_REMOVED },
        {},
};

/* What the command line said, besides what goes into the cli struct. */
typedef struct parsed {
        const char *root;
        char *plugin_dir; /* absolute */
        bool help, version;
        /* The last option given of each TAKES_* group, to say which one does not apply. */
        char used[10][40];
} parsed;

static void parsed_done(parsed *p) {
        free(p->plugin_dir);
}

/* The TAKES_* group of a command option (its bit's index), or -1 for a global option. */
static int option_group(int opt) {
        switch (opt) {
        case OPT_BINARY_VERSION:
        case OPT_EMULATED_VERSION:
        case OPT_MIN_COMPAT_VERSION:
        case OPT_IMAGE_REPOSITORY:
        case OPT_IMAGE:
                return 0;
        case OPT_NO_WAIT:
        case OPT_DRY_RUN:
                return 1;
        case OPT_COMPONENT:
                return 2;
        case OPT_TO_REVISION:
                return 3;
        case OPT_STABLE_FOR:
        case OPT_STEP_TIMEOUT:
        case OPT_ON_FAILURE:
        case OPT_QUIET:
                return 4;
        case OPT_FORCE:
                return 5;
        case OPT_KUBECONFIG:
        case OPT_CONTEXT:
        case OPT_NODE_NAME:
        case OPT_INSECURE_SKIP_TLS_VERIFY:
                return 7;
        case OPT_COMPONENTS:
                return 6;
        case OPT_NODE_TIMEOUT:
        case OPT_MAX_STATUS_AGE:
                return 8;
        case OPT_DROP_REMOVED:
                return 9;
        default:
                return -1;
        }
}

static const char *option_name(int opt) {
        for (const struct option *o = long_options; o->name; o++)
                if (o->val == opt)
                        return o->name;
        return "?";
}

/* One option into the cli struct (or p); an exit code (> 0) when it is refused. */
static int take_option(int opt, const char *arg, cli *c, parsed *p) {
        int group = option_group(opt);

        if (group >= 0)
                snprintf(p->used[group], sizeof(p->used[group]), "--%s", option_name(opt));
        switch (opt) {
        case OPT_ROOT:
                p->root = arg;
                return EXIT_OK;
        case OPT_CONFIG:
                c->config_path = arg;
                return EXIT_OK;
        case OPT_PLUGIN_DIR:
                p->plugin_dir = (free(p->plugin_dir), NULL);
                if (absolute_dir("--plugin-dir", arg, &p->plugin_dir) < 0)
                        return EXIT_INVALID;
                c->plugin_dir_option = p->plugin_dir;
                return EXIT_OK;
        case OPT_JSON:
                c->json = true;
                return EXIT_OK;
        case 'h':
                p->help = true;
                return EXIT_OK;
        case OPT_VERSION:
                p->version = true;
                return EXIT_OK;
        case OPT_BINARY_VERSION:
                c->target.binary_version = arg;
                return EXIT_OK;
        case OPT_EMULATED_VERSION:
                c->target.emulated_version = arg;
                return EXIT_OK;
        case OPT_MIN_COMPAT_VERSION:
                c->target.min_compat_version = arg;
                return EXIT_OK;
        case OPT_IMAGE_REPOSITORY:
                c->target.image_repository = arg;
                return EXIT_OK;
        case OPT_IMAGE:
                return cli_add_image_option(c, arg);
        case OPT_NO_WAIT:
                c->no_wait = true;
                return EXIT_OK;
        case OPT_DRY_RUN:
                c->dry_run = true;
                return EXIT_OK;
        case OPT_COMPONENT:
                c->component = arg;
                return EXIT_OK;
        case OPT_TO_REVISION:
                c->to_revision = arg;
                return EXIT_OK;
        case OPT_STABLE_FOR:
                c->stable_for = arg;
                return EXIT_OK;
        case OPT_STEP_TIMEOUT:
                c->step_timeout = arg;
                return EXIT_OK;
        case OPT_ON_FAILURE:
                c->on_failure = arg;
                return EXIT_OK;
        case OPT_QUIET:
                c->quiet = true;
                return EXIT_OK;
        case OPT_FORCE:
                c->force = true;
                return EXIT_OK;
        case OPT_KUBECONFIG:
                c->kubeconfig = arg;
                return EXIT_OK;
        case OPT_CONTEXT:
                c->context = arg;
                return EXIT_OK;
        case OPT_NODE_NAME:
                c->node_name = arg;
                return EXIT_OK;
        case OPT_INSECURE_SKIP_TLS_VERIFY:
                c->insecure_skip_tls_verify = true;
                return EXIT_OK;
        case OPT_COMPONENTS:
                return cli_add_components_option(c, arg);
        case OPT_NODE_TIMEOUT:
                c->node_timeout = arg;
                return EXIT_OK;
        case OPT_MAX_STATUS_AGE:
                c->max_status_age = arg;
                return EXIT_OK;
        case OPT_DROP_REMOVED:
                return cli_add_drop_removed_option(c, arg);
        default:
                return EXIT_INVALID;
        }
}

static int parse_options(int argc, char *argv[], cli *c, parsed *p) {
        int opt, r;

        /* "+" is not used: GNU getopt permutes, so options may follow the command. */
        opterr = 0;
        while ((opt = getopt_long(argc, argv, ":h", long_options, NULL)) >= 0) {
                if (opt == ':') {
                        cli_error("option %s needs a value", argv[optind - 1]);
                        return EXIT_INVALID;
                }
                if (opt == '?') {
                        cli_error("unknown option %s (see cplet --help)", argv[optind - 1]);
                        return EXIT_INVALID;
                }
                r = take_option(opt, optarg, c, p);
                if (r != EXIT_OK)
                        return r;
        }
        return EXIT_OK;
}

/* Options and arguments must fit the command; bad gate values are refused even where they
 * would not be used (--no-wait). */
static int check_command_line(const command *cmd, const cli *c, const parsed *p) {
        _cleanup_free_ char *error = NULL;
        rollout_options unused;
        int r;

        for (size_t g = 0; g < ELEMENTSOF(p->used); g++)
                if (p->used[g][0] && !(cmd->takes & (1u << g))) {
                        cli_error("%s: option %s does not apply to this command", cmd->name, p->used[g]);
                        return EXIT_INVALID;
                }
        if (c->n_args > cmd->max_args) {
                cli_error("%s: unexpected argument \"%s\"", cmd->name, c->args[cmd->max_args]);
                return EXIT_INVALID;
        }
        if (c->n_args < cmd->min_args) {
                cli_error("%s: missing arguments (see cplet %s --help)", cmd->name, cmd->name);
                return EXIT_INVALID;
        }
        if (p->used[4][0]) {
                r = op_parse_rollout_options(c->stable_for, c->step_timeout, c->on_failure, &unused, &error);
                if (r < 0)
                        return cli_fail(r, error);
        }
        return EXIT_OK;
}

/* The command word, and its positional arguments ("flags" has its own, split earlier). */
static int find_command_word(int argc, char *argv[], cli *c, const command **ret) {
        const command *cmd;

        *ret = NULL;
        if (optind >= argc)
                return EXIT_OK;
        cmd = find_command(argv[optind]);
        if (!cmd) {
                cli_error("unknown command \"%s\" (see cplet --help)", argv[optind]);
                return EXIT_INVALID;
        }
        if (!streq(cmd->name, "flags")) {
                c->args = argv + optind + 1;
                c->n_args = argc - optind - 1;
        }
        *ret = cmd;
        return EXIT_OK;
}

int main(int argc, char *argv[]) {
        _cleanup_(parsed_done) parsed p = { .root = "/" };
        _cleanup_free_ char **argv_main = NULL, **flags_args = NULL, *command_line = NULL;
        const command *cmd = NULL;
        cli c = {};
        int argc_main, r;

        c.command_line = command_line = join_argv(argc, argv);
        if (split_flags_command(argc, argv, &argv_main, &argc_main, &c) < 0)
                return EXIT_FAILED;
        flags_args = c.args; /* owned only for "flags"; NULL otherwise */

        r = parse_options(argc_main, argv_main, &c, &p);
        if (r != EXIT_OK)
                return r;
        if (p.version) {
                printf("cplet %s\n", CPLET_VERSION);
                return EXIT_OK;
        }
        r = find_command_word(argc_main, argv_main, &c, &cmd);
        if (r != EXIT_OK)
                return r;
        if (p.help) {
                if (cmd)
                        fputs(cmd->help, stdout);
                else
                        print_usage(stdout);
                return EXIT_OK;
        }
        if (!cmd) {
                print_usage(stderr);
                return EXIT_INVALID;
        }
        r = check_command_line(cmd, &c, &p);
        if (r != EXIT_OK)
                return r;
        r = absolute_dir("--root", p.root, &c.root);
        if (r < 0)
                return r == -ENOMEM ? EXIT_FAILED : EXIT_INVALID;

        r = cmd->run(&c);
        op_env_free(c.env);
        free(c.root);
        return r;
}
