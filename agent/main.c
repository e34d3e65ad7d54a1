/* SPDX-License-Identifier: Apache-2.0 */
/* cplet: options may stand before or after the command (cplet --json status, cplet status
 * --json); each command says which of the command options it takes. */

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>

#include "cli.h"
#include "cplet-build.h"
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
};

/* Bits for the command options a command accepts. */
enum {
        TAKES_TARGET = 1 << 0,
};

typedef struct command {
        const char *name;
        int (*run)(cli *c);
        unsigned takes;
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
                        "                  [--min-compatibility-version M] [--image-repository R] [--json]\n"
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
                        "\n"
                        "Exit status: 0 a plan (possibly empty), 2 invalid input or a plan refused by the\n"
                        "safety rules (the reason is printed).\n",
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

void cli_error(const char *fmt, ...) {
        va_list ap;

        fputs("cplet: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

int cli_exit_code(int r) {
        switch (-r) {
        case EINVAL:
        case E2BIG:
        case EOPNOTSUPP:
        case ELOOP:
        case EPERM:
        case EEXIST:
        case EPROTO:
        case ERANGE:
        case ENOENT:
        case ENOTDIR:
                return EXIT_INVALID;
        default:
                return EXIT_FAILED;
        }
}

int cli_load_node(cli *c) {
        _cleanup_free_ char *error = NULL;
        const char *dir;
        int r;

        r = config_load(c->root, c->config_path, &c->config, &error);
        if (r < 0) {
                cli_error("%s", error ?: strerror(-r));
                return cli_exit_code(r);
        }
        dir = c->plugin_dir_option ?: c->config.plugin_dir ?: CPLET_PLUGIN_DIR;
        r = plugin_set_load(dir, &c->plugins, &error);
        if (r < 0) {
                cli_error("%s", error ?: strerror(-r));
                return cli_exit_code(r);
        }
        r = node_load(c->root, c->plugins, &c->node, &error);
        if (r < 0) {
                cli_error("%s", error ?: strerror(-r));
                return cli_exit_code(r);
        }
        return EXIT_OK;
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

static const command *find_command(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (streq(commands[i].name, name))
                        return &commands[i];
        return NULL;
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
                {},
        };
        _cleanup_free_ char *plugin_dir = NULL;
        const char *root = "/", *target_option = NULL;
        bool help = false, version = false;
        const command *cmd = NULL;
        cli c = {};
        int opt, r, ret;

        /* "+" is not used: GNU getopt permutes, so options may follow the command. */
        opterr = 0;
        while ((opt = getopt_long(argc, argv, ":h", options, NULL)) >= 0) {
                switch (opt) {
                case OPT_ROOT:
                        root = optarg;
                        break;
                case OPT_CONFIG:
                        c.config_path = optarg;
                        break;
                case OPT_PLUGIN_DIR:
                        free(plugin_dir);
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
                case ':':
                        cli_error("option %s needs a value", argv[optind - 1]);
                        return EXIT_INVALID;
                default:
                        cli_error("unknown option %s (see cplet --help)", argv[optind - 1]);
                        return EXIT_INVALID;
                }
        }

        if (version) {
                printf("cplet %s\n", CPLET_VERSION);
                return EXIT_OK;
        }
        if (optind < argc) {
                cmd = find_command(argv[optind]);
                if (!cmd) {
                        cli_error("unknown command \"%s\" (see cplet --help)", argv[optind]);
                        return EXIT_INVALID;
                }
                if (optind + 1 < argc) {
                        cli_error("%s: unexpected argument \"%s\"", cmd->name, argv[optind + 1]);
                        return EXIT_INVALID;
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
        if (target_option && !(cmd->takes & TAKES_TARGET)) {
                cli_error("%s: option %s does not apply to this command", cmd->name, target_option);
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
        return ret;
}
