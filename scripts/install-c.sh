#!/usr/bin/env bash
# Builds the C library and installs it as C programs expect to find it:
#
#   PREFIX/include/groupcast.h
#   PREFIX/lib/libgroupcast.so.X.Y.Z                      the library
#   PREFIX/lib/libgroupcast.so.0.Y -> libgroupcast.so.X.Y.Z  its SONAME (1.x and later: .so.X)
#   PREFIX/lib/libgroupcast.so     -> the SONAME link     for -lgroupcast
#   PREFIX/lib/pkgconfig/groupcast.pc
#
#   scripts/install-c.sh [--prefix DIR] [--release|--debug] [--no-build]
#
# PREFIX defaults to /usr/local; --release (the default) runs
# `cargo build --release --lib`, --debug `cargo build --lib`; --no-build
# installs what the target dir already holds. CARGO_TARGET_DIR is honoured.
# Run ldconfig afterwards when installing into a system directory.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

prefix=/usr/local
profile=release
build=1
usage() { echo "usage: $0 [--prefix DIR] [--release|--debug] [--no-build]" >&2; exit 2; }
while (($#)); do
    case $1 in
        --prefix) (($# >= 2)) || usage; prefix=$2; shift ;;
        --prefix=*) prefix=${1#--prefix=} ;;
        --release) profile=release ;;
        --debug) profile=debug ;;
        --no-build) build=0 ;;
        *) usage ;;
    esac
    shift
done
[[ "$prefix" = /* ]] || prefix="$PWD/$prefix"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
[[ "$version" =~ ^([0-9]+)\.([0-9]+)\.[0-9]+ ]] || { echo "no version in Cargo.toml" >&2; exit 1; }
major=${BASH_REMATCH[1]}
minor=${BASH_REMATCH[2]}
# build.rs links the library with this SONAME.
if [[ "$major" == 0 ]]; then soname="libgroupcast.so.0.$minor"; else soname="libgroupcast.so.$major"; fi

target=${CARGO_TARGET_DIR:-target}
[[ "$target" = /* ]] || target="$root/$target"
if ((build)); then
    if [[ "$profile" == release ]]; then
        cargo build --quiet --release --lib
    else
        cargo build --quiet --lib
    fi
fi
lib="$target/$profile/libgroupcast.so"
[[ -f "$lib" ]] || { echo "no $lib: build it first" >&2; exit 1; }

install -d "$prefix/include" "$prefix/lib/pkgconfig"
install -m 644 include/groupcast.h "$prefix/include/groupcast.h"
install -m 755 "$lib" "$prefix/lib/libgroupcast.so.$version"
ln -sfn "libgroupcast.so.$version" "$prefix/lib/$soname"
ln -sfn "$soname" "$prefix/lib/libgroupcast.so"
# Only the shared library is installed, so no Libs.private: its own
# dependencies (libc, libm, libgcc_s) are recorded in it as NEEDED.
description=$(sed -n 's/^description = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
cat >"$prefix/lib/pkgconfig/groupcast.pc" <<PC
prefix=$prefix
exec_prefix=\${prefix}
libdir=\${exec_prefix}/lib
includedir=\${prefix}/include

Name: groupcast
Description: $description
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -lgroupcast
PC
echo "installed groupcast $version into $prefix (SONAME $soname)"
