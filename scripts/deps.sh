#!/bin/sh
# Installs the Debian packages Postern builds, runs and tests with: the list
# is scripts/packages.txt (docs/DESIGN.md, "Dependencies"). Does nothing when
# everything is present; as non-root it only reports what is missing. Used by
# `make run`, `make check` and .ci/run; scripts/check-tools.py then proves the
# list covers every program the tests run.
set -e
here=$(dirname "$0")
PKGS=$(sed -e 's/#.*//' "$here/packages.txt" | tr -s ' \n' '  ')
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
# Peers installed as packages must not start system services: each test
# session starts its own private server.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
# A policy-rc.d-less container may have started postfix; stop it.
if command -v postfix >/dev/null 2>&1; then postfix stop >/dev/null 2>&1 || true; fi
