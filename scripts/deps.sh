# Sourced by scripts/demo and scripts/test: installs what cplet needs to build and test,
# from Debian's archive, only when something is missing. Checked against a Debian 12
# debootstrap minbase: besides these packages, the tests and scripts run only programs of
# Essential packages (bash, coreutils: sleep, env, id; util-linux: flock; diffutils: diff;
# libc-bin: ldconfig, behind Python's ctypes.util) and dpkg/apt-get, and import only Python's
# standard library and yaml (python3-yaml). The sanitizer runtimes come with gcc
# (libgcc-12-dev: libasan8, libubsan1). Anything a new test runs goes here, or is not used.
CPLET_DEPS="meson ninja-build pkg-config gcc libc6-dev libsystemd-dev libjansson-dev
libcurl4-openssl-dev libssl-dev libyaml-dev libcmocka-dev python3 python3-yaml openssl"
# scripts/test's fuzz targets (tests/fuzz): Debian's clang, its libFuzzer/sanitizer runtimes
# (a Recommends of clang, so named here), llvm-symbolizer for readable reports.
CPLET_FUZZ_DEPS="clang libclang-rt-dev llvm"
# scripts/test's install test (tests/install): building and checking the packages, and a booted
# Debian 12 root to install them in.
CPLET_PACKAGE_DEPS="git gcc debhelper dpkg-dev fakeroot lintian rpm rpmlint mmdebstrap systemd-container"

# cplet_install_deps [PACKAGE...]: the build dependencies, or the packages named.
cplet_install_deps() {
    local missing="" p
    for p in ${@:-$CPLET_DEPS}; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    echo "Installing build dependencies:$missing"
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || { echo "need root (or sudo) to install:$missing" >&2; return 1; }
        sudo=sudo
    fi
    $sudo apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
}
