#!/usr/bin/env bash
# The C tests: checks the committed header against a fresh cbindgen run,
# builds the library, compiles the C tests and examples/c/seed.c with
# warnings as errors under AddressSanitizer and UndefinedBehaviorSanitizer,
# runs the tests, and the seed scenario against the C seed; then installs the
# release library with scripts/install-c.sh into a temp prefix, builds the
# seed against it with pkg-config as a user would, checks the SONAME and
# runs the seed scenario and the busy-port check against that binary.
# Ends with "N passed, N failed".
#
#   tests/c/run.sh                    (CARGO_TARGET_DIR defaults to target)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

need=()
command -v cc >/dev/null || need+=(gcc libc6-dev)
command -v python3 >/dev/null || need+=(python3)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v readelf >/dev/null || need+=(binutils)
# test_tls.c reads the certificate a server presents with s_client.
command -v openssl >/dev/null || need+=(openssl)
if ((${#need[@]})); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

tests/c/gen-header.sh --check

target=${CARGO_TARGET_DIR:-target}
[[ "$target" = /* ]] || target="$root/$target"
cargo build --quiet --lib
lib_dir="$target/debug"
[[ -f "$lib_dir/libgroupcast.so" ]] || { echo "no $lib_dir/libgroupcast.so" >&2; exit 1; }

build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cflags=(-std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Wpedantic -Werror
    -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
    -I include -I tests/c)
ldflags=(-L "$lib_dir" -lgroupcast -Wl,-rpath,"$lib_dir" -pthread)

cc "${cflags[@]}" examples/c/seed.c -o "$build/seed" "${ldflags[@]}"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
passed=0
failed=0
for src in tests/c/test_*.c; do
    name=$(basename "$src" .c)
    cc "${cflags[@]}" "$src" -o "$build/$name" "${ldflags[@]}"
    status=0
    timeout 120 "$build/$name" || status=$?
    if ((status == 0)); then
        passed=$((passed + 1))
    else
        echo "FAILED: $name (exit status $status)" >&2
        failed=$((failed + 1))
    fi
done
# The seed as a C host: the seed scenario through websocket clients, then
# SIGTERM must stop it cleanly (exit 0, no leak).
if timeout 120 python3 tests/php/seed_scenario.py -- "$build/seed"; then
    passed=$((passed + 1))
else
    echo "FAILED: seed scenario against examples/c/seed.c" >&2
    failed=$((failed + 1))
fi
check() {
    local what=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
    else
        echo "FAILED: $what" >&2
        failed=$((failed + 1))
    fi
}
# A busy port: one line naming the address, exit 1.
check "busy port, examples/c/seed.c (ASan)" timeout 60 python3 tests/php/busy_port.py -- "$build/seed"

# The library as people install it: scripts/install-c.sh into a temp prefix
# (a release build, which the benchmark smoke run reuses), the seed built
# with pkg-config, run against the installed library.
installed() {
    local prefix="$build/prefix"
    scripts/install-c.sh --prefix "$prefix" --release >/dev/null || return 1
    local version soname
    version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
    soname="libgroupcast.so.$(cut -d. -f1,2 <<<"$version")"
    [[ "$version" == 0.* ]] || soname="libgroupcast.so.${version%%.*}"
    local lib="$prefix/lib"
    [[ -f "$prefix/include/groupcast.h" && -f "$lib/libgroupcast.so.$version" ]] || { echo "files missing under $prefix" >&2; return 1; }
    [[ "$(readlink "$lib/$soname")" == "libgroupcast.so.$version" ]] || { echo "$soname link wrong" >&2; return 1; }
    [[ "$(readlink "$lib/libgroupcast.so")" == "$soname" ]] || { echo "libgroupcast.so link wrong" >&2; return 1; }
    readelf -d "$lib/libgroupcast.so.$version" | grep "Library soname: \[$soname\]" >/dev/null || { echo "no SONAME $soname" >&2; return 1; }
    export PKG_CONFIG_PATH="$lib/pkgconfig"
    [[ "$(pkg-config --modversion groupcast)" == "$version" ]] || { echo "pkg-config version" >&2; return 1; }
    # shellcheck disable=SC2046 # word splitting of pkg-config's flags is wanted
    cc -std=c11 -D_GNU_SOURCE -O1 -Wall -Wextra -Wpedantic -Werror $(pkg-config --cflags groupcast) \
        examples/c/seed.c -o "$build/seed-installed" $(pkg-config --libs groupcast) -pthread -Wl,-rpath,"$lib" || return 1
    # The program records the SONAME, not the unversioned name, and loads
    # the installed library.
    readelf -d "$build/seed-installed" | grep "Shared library: \[$soname\]" >/dev/null || { echo "seed does not need $soname" >&2; return 1; }
    ldd "$build/seed-installed" | grep "$lib/$soname" >/dev/null || { echo "seed does not load $lib/$soname" >&2; return 1; }
}
if installed; then
    passed=$((passed + 1))
    # The same scenario as for the ASan build.
    check "seed scenario against the installed library" timeout 120 python3 tests/php/seed_scenario.py -- "$build/seed-installed"
    check "busy port, installed seed" timeout 60 python3 tests/php/busy_port.py -- "$build/seed-installed"
else
    echo "FAILED: install with scripts/install-c.sh and build with pkg-config" >&2
    failed=$((failed + 1))
fi
echo "c: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
