/* SPDX-License-Identifier: Apache-2.0 */
/* cplet: options may stand before or after the command (cplet --json status, cplet status
 * --json); each command says which of the command options it takes. */

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <string.h>

#include "cli.h"
#include "cplet-build.h"
#include "rollout.h"
#include "config.h"
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
};

/* Bits for the command options a command accepts. */
enum {
        TAKES_TARGET = 1 << 0,
        TAKES_WRITE = 1 << 1,     /* --no-wait, --dry-run */
        TAKES_COMPONENT = 1 << 2, /* --component */
        TAKES_REVISION = 1 << 3,  /* --to-revision */
        TAKES_GATE = 1 << 4,      /* --stable-for, --step-timeout, --on-failure, --quiet */
        TAKES_FORCE = 1 << 5,     /* --force */
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
                .takes = TAKES_TARGET,
                .summary = "show the ordered steps that would move the node to a target version",
                .help = "Usage: cplet plan --binary-version V [--emulated-version E]\n"
                        "                  [--min-compatibility-version M] [--image-repository R]\n"
                        "                  [--image C=REF]... [--json]\n"
                        "\n"
                        "Prints the ordered steps from the node's current state to the target and changes\n"
                        "nothing. Binaries change first (API server, controller-manager, scheduler), each\n"
                        "keeping the emulated version it ran; then the emulated version rises one minor at\n"
                        "a time; then min-compatibility, if asked. Downgrades go in reverse order.\n"
                        "\n"
                        "  --binary-version V             the Kubernetes version of the new binaries (v1.35.0)\n"
                        "  --emulated-version E           target emulated version (default: the binary's minor)\n"
                        "  --min-compatibility-version M  target min-compatibility version\n"
                        "                                 (default: the binary's default for E)\n"
                        "  --image-repository R           registry prefix, as kubeadm's imageRepository:\n"
                        "                                 R/kube-apiserver:V (default: each manifest's own)\n"
                        "  --image C=REF                  the exact image of C's binary step, required when\n"
                        "                                 C's image is pinned by digest: REPO:V@sha256:...\n"
                        "\n"
                        "Exit status: 0 a plan (possibly empty), 2 invalid input or a plan refused by the\n"
                        "safety rules (the reason is printed).\n",
        },
        {
                .name = "upgrade",
                .run = cmd_upgrade,
                .takes = TAKES_TARGET | TAKES_WRITE | TAKES_GATE | TAKES_FORCE,
                .summary = "execute the plan, step by step, each gated by process, versions and health",
                .help = "Usage: cplet upgrade --binary-version V [--emulated-version E]\n"
                        "                     [--min-compatibility-version M] [--image-repository R]\n"
                        "                     [--image C=REF]... [--stable-for D] [--step-timeout D]\n"
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
                        "  --stable-for D      how long health must hold (default 10s; durations: 0s, 30s, 5m, 1m30s)\n"
                        "  --step-timeout D    give up on a step after D (default 5m)\n"
                        "  --on-failure P      rollback (default) or stop\n"
                        "  --no-wait           write every step without waiting (image builders, offline nodes)\n"
                        "  --dry-run           print what would be written (a diff per step) and write nothing\n"
                        "  --force             allow lowering the min-compatibility version below its high-water mark\n"
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
                                                  "--stable-for", "--step-timeout", "--on-failure" };
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

int main(int argc, char *argv[]) {
        static const struct option options[] = {
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
                {},
        };
        _cleanup_free_ char *plugin_dir = NULL;
        const char *root = "/", *target_option = NULL, *write_option = NULL, *component_option = NULL,
                   *revision_option = NULL, *gate_option = NULL, *force_option = NULL;
        _cleanup_free_ char **argv_main = NULL;
        _cleanup_free_ char *command_line = NULL;
        _cleanup_free_ char **flags_args = NULL;
        int argc_main;
        bool help = false, version = false;
        const command *cmd = NULL;
        cli c = {};
        int opt, r, ret;

        c.command_line = command_line = join_argv(argc, argv);
        r = split_flags_command(argc, argv, &argv_main, &argc_main, &c);
        if (r < 0)
                return EXIT_FAILED;
        flags_args = c.args; /* owned only for "flags"; NULL otherwise */

        /* "+" is not used: GNU getopt permutes, so options may follow the command. */
        opterr = 0;
        while ((opt = getopt_long(argc_main, argv_main, ":h", options, NULL)) >= 0) {
                switch (opt) {
                case OPT_ROOT:
                        root = optarg;
                        break;
                case OPT_CONFIG:
                        c.config_path = optarg;
                        break;
                case OPT_PLUGIN_DIR:
                        free(plugin_dir);
                        plugin_dir = NULL; /* absolute_dir() may fail and leave it unset */
                        if (absolute_dir("--plugin-dir", optarg, &plugin_dir) < 0)
                                return EXIT_INVALID;
                        c.plugin_dir_option = plugin_dir;
                        break;
                case OPT_JSON:
                        c.json = true;
                        break;
                case 'h':
                        help = true;
                        break;
                case OPT_VERSION:
                        version = true;
                        break;
                case OPT_BINARY_VERSION:
                        c.binary_version = optarg;
                        target_option = "--binary-version";
                        break;
                case OPT_EMULATED_VERSION:
                        c.emulated_version = optarg;
                        target_option = "--emulated-version";
                        break;
                case OPT_MIN_COMPAT_VERSION:
                        c.min_compat_version = optarg;
                        target_option = "--min-compatibility-version";
                        break;
                case OPT_IMAGE_REPOSITORY:
                        c.image_repository = optarg;
                        target_option = "--image-repository";
                        break;
                case OPT_IMAGE:
                        if (cli_add_image_option(&c, optarg) < 0)
                                return EXIT_INVALID;
                        target_option = "--image";
                        break;
                case OPT_NO_WAIT:
                        c.no_wait = true;
                        write_option = "--no-wait";
                        break;
                case OPT_DRY_RUN:
                        c.dry_run = true;
                        write_option = "--dry-run";
                        break;
                case OPT_COMPONENT:
                        c.component = optarg;
                        component_option = "--component";
                        break;
                case OPT_TO_REVISION:
                        c.to_revision = optarg;
                        revision_option = "--to-revision";
                        break;
                case OPT_STABLE_FOR:
                        c.stable_for = optarg;
                        gate_option = "--stable-for";
                        break;
                case OPT_STEP_TIMEOUT:
                        c.step_timeout = optarg;
                        gate_option = "--step-timeout";
                        break;
                case OPT_ON_FAILURE:
                        c.on_failure = optarg;
                        gate_option = "--on-failure";
                        break;
                case OPT_QUIET:
                        c.quiet = true;
                        gate_option = "--quiet";
                        break;
                case OPT_FORCE:
                        c.force = true;
                        force_option = "--force";
                        break;
                case ':':
                        cli_error("option %s needs a value", argv_main[optind - 1]);
                        return EXIT_INVALID;
                default:
                        cli_error("unknown option %s (see cplet --help)", argv_main[optind - 1]);
                        return EXIT_INVALID;
                }
        }

        if (version) {
                printf("cplet %s\n", CPLET_VERSION);
                return EXIT_OK;
        }
        if (optind < argc_main) {
                cmd = find_command(argv_main[optind]);
                if (!cmd) {
                        cli_error("unknown command \"%s\" (see cplet --help)", argv_main[optind]);
                        return EXIT_INVALID;
                }
                if (!streq(cmd->name, "flags")) {
                        c.args = argv_main + optind + 1;
                        c.n_args = argc_main - optind - 1;
                }
        }
        if (help) {
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
        {
                const char *misplaced = target_option && !(cmd->takes & TAKES_TARGET)         ? target_option
                                        : write_option && !(cmd->takes & TAKES_WRITE)         ? write_option
                                        : component_option && !(cmd->takes & TAKES_COMPONENT) ? component_option
                                        : revision_option && !(cmd->takes & TAKES_REVISION)   ? revision_option
                                        : gate_option && !(cmd->takes & TAKES_GATE)           ? gate_option
                                        : force_option && !(cmd->takes & TAKES_FORCE)         ? force_option
                                                                                               : NULL;

                if (misplaced) {
                        cli_error("%s: option %s does not apply to this command", cmd->name, misplaced);
                        return EXIT_INVALID;
                }
        }
        if (c.n_args < cmd->min_args || c.n_args > cmd->max_args) {
                if (c.n_args > cmd->max_args)
                        cli_error("%s: unexpected argument \"%s\"", cmd->name, c.args[cmd->max_args]);
                else
                        cli_error("%s: missing arguments (see cplet %s --help)", cmd->name, cmd->name);
                return EXIT_INVALID;
        }

        if (gate_option) {
                rollout_options unused;

                /* Bad values are refused even where they would not be used (--no-wait). */
                if (cli_rollout_options(&c, &unused) < 0)
                        return EXIT_INVALID;
        }

        r = absolute_dir("--root", root, &c.root);
        if (r < 0)
                return r == -ENOMEM ? EXIT_FAILED : EXIT_INVALID;

        ret = cmd->run(&c);

        node_free(c.node);
        plugin_set_free(c.plugins);
        config_done(&c.config);
        free(c.root);
        free(c.rollback_owned[0]);
        free(c.rollback_owned[1]);
        return ret;
}
