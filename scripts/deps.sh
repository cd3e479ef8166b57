#!/bin/sh
# Installs the Debian packages Postern builds and tests with (DESIGN.md,
# "Dependencies"). Does nothing when everything is present; as non-root it
# only reports what is missing. Used by `make run`, `make check` and .ci/run.
set -e
PKGS="build-essential pkg-config libssl-dev libc-ares-dev libevent-dev libcdb-dev
libcmocka-dev python3 python3-pytest swaks dnsmasq-base postfix openssl python3-aiosmtpd pflogsumm bsd-mailx clang libclang-rt-dev"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: missing Debian packages:$missing (run as root to install)" >&2
    exit 0
fi
echo "deps.sh: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# postfix must not grab port 25 or start on install: we only use its tools.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
# A policy-rc.d-less container may have started postfix; stop it.
if command -v postfix >/dev/null 2>&1; then postfix stop >/dev/null 2>&1 || true; fi
