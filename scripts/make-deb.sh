#!/bin/sh
# make-deb.sh OUT - the body of "make deb": builds the Debian package of
# Postern (debian/) with dpkg-buildpackage into the directory OUT (the
# Makefile passes BUILD/deb). dpkg-buildpackage writes its products next to
# the source tree and debhelper writes into debian/, so the build runs in a
# copy of the source at OUT/postern-VERSION (the files git knows, tracked or not yet
# added, so uncommitted changes count; everything but build trees outside a
# git checkout), which is removed after a successful build. OUT then holds
# postern_VERSION_ARCH.deb, its -dbgsym package, .buildinfo and .changes.
set -eu

out=${1:?usage: make-deb.sh OUTPUT_DIRECTORY}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

for tool in dpkg-buildpackage dh; do
    command -v "$tool" >/dev/null 2>&1 ||
        { echo "make-deb.sh: $tool is missing: run make deps (scripts/packages.txt)" >&2; exit 1; }
done

version=$(dpkg-parsechangelog -S Version)
mail_version=$(sed -n 's/^P_STR (mail_version, "\(.*\)")$/\1/p' lib/mail/params.def)
case $version in
    "$mail_version"|"$mail_version"[-+~.]*) ;;
    *) echo "make-deb.sh: debian/changelog says $version but mail_version is" \
            "$mail_version (lib/mail/params.def): add a changelog entry" >&2
       exit 1 ;;
esac

src=$out/postern-$version
rm -rf "$src"
rm -f "$out"/postern_* "$out"/postern-dbgsym_*
mkdir -p "$src"

# The output directory may be inside the repository (BUILD is): never copy it.
case $out/ in
    "$top"/*) skip=${out#"$top"/} ;;
    *) skip= ;;
esac
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard |
        { if [ -n "$skip" ]; then grep -zv "^$skip/"; else cat; fi; } |
        tar --null --files-from=- --ignore-failed-read -cf - | tar -xf - -C "$src"
else
    tar --exclude=./build --exclude='./build-*' --exclude=./run --exclude=./.git \
        ${skip:+--exclude="./$skip"} -cf - . | tar -xf - -C "$src"
fi

# A make calling make passes its variables (BUILD, SANITIZE, -j) down in
# MAKEFLAGS: the package build must see none of them.
cd "$src"
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES \
    dpkg-buildpackage --build=binary --no-sign -Jauto
cd "$top"
rm -rf "$src"
arch=$(dpkg --print-architecture)
echo "make-deb.sh: built $out/postern_${version}_${arch}.deb"
echo "make-deb.sh: install it with: apt install $out/postern_${version}_${arch}.deb"
