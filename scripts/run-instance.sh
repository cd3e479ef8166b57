#!/bin/sh
# run-instance.sh RUN_DIR PORT - start a private Postern instance for
# development ("make run" calls it from the repository root after building).
#
# Everything lives under RUN_DIR: etc/ (main.cf, master.cf, written only if
# absent so local edits survive), queue/, mail/ (one Maildir per local part
# of mydestination) and log/maillog. It runs in instance mode (mail_owner is
# you), listens on 127.0.0.1:PORT only, relays for nobody but this host, and
# is stopped by "make stop" (postern -c RUN_DIR/etc stop). The programs are
# those in $POSTERN_BUILD (the Makefile's build tree; default build/).
set -eu

usage() {
    echo "usage: sh scripts/run-instance.sh RUN_DIR PORT" >&2
    exit 2
}

[ $# -eq 2 ] || usage
run_dir=$1
port=$2
case $port in
    ''|*[!0-9]*) echo "run-instance.sh: bad port: $port" >&2; exit 2 ;;
esac
if [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
    echo "run-instance.sh: bad port: $port" >&2
    exit 2
fi

repo=$(cd "$(dirname "$0")/.." && pwd -P)
mkdir -p "$run_dir/etc" "$run_dir/queue" "$run_dir/mail" "$run_dir/log"
abs=$(cd "$run_dir" && pwd -P)
touch "$abs/log/maillog"
build=${POSTERN_BUILD:-$repo/build}
postern="$build/bin/postern"
for prog in "$postern" "$build/libexec/master"; do
    if [ ! -x "$prog" ]; then
        echo "run-instance.sh: $prog is not built; run make first" >&2
        exit 1
    fi
done

# UNIX socket names are limited to 107 bytes.
case $abs in
    ????????????????????????????????????????????????????????????????????????*)
        echo "run-instance.sh: warning: $abs is long; queue/private socket paths may not fit" >&2 ;;
esac

if [ ! -f "$abs/etc/main.cf" ]; then
    cat > "$abs/etc/main.cf" <<EOF
# main.cf of the development instance written by scripts/run-instance.sh.
# Edit freely, then "build/bin/postern -c $abs/etc reload".
queue_directory = $abs/queue
mail_spool_directory = $abs/mail
maillog_file = $abs/log/maillog
daemon_directory = $build/libexec
command_directory = $build/bin

# Instance mode: everything runs as you, no user id switching.
mail_owner = $(id -un)

myhostname = localhost.localdomain
mydestination = localhost, localhost.localdomain, \$myhostname
# The instance's own aliases(5); newaliases rebuilds $abs/etc/aliases.cdb.
alias_maps = cdb:$abs/etc/aliases
alias_database = cdb:$abs/etc/aliases
recipient_delimiter = +
# Relay for this host only: never an open relay.
mynetworks = 127.0.0.0/8 [::1]/128
inet_interfaces = loopback-only
EOF
fi

if [ ! -f "$abs/etc/aliases" ]; then
    cat > "$abs/etc/aliases" <<EOF
# aliases(5) of the development instance; run newaliases (or
# build/bin/postalias -c $abs/etc) after editing.
postmaster: $(id -un)
EOF
fi
"$build/bin/postalias" -c "$abs/etc" "cdb:$abs/etc/aliases"

# A daemon that is not built yet (pickup, bounce, remote arrive one by one)
# is left out of the generated master.cf rather than listed for master to
# warn about; delete etc/master.cf after building it to get it in.
optional_service() {   # name type private unpriv chroot wakeup maxproc command
    if [ -x "$build/libexec/$8" ]; then
        printf '%-16s %-5s %-7s %-7s %-7s %-7s %-7s %s\n' "$@"
    fi
}

if [ ! -f "$abs/etc/master.cf" ]; then
    {
        cat <<EOF
# master.cf of the development instance written by scripts/run-instance.sh.
# service        type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:$port  inet  n       -       n       -       -       smtpd
cleanup          unix  -       -       n       -       0       cleanup
qmgr             fifo  n       -       n       300     1       qmgr
local            unix  -       n       n       -       -       local
EOF
        optional_service pickup fifo n - n 60 1 pickup
        optional_service bounce unix - - n - 0 bounce
        optional_service defer unix - - n - 0 bounce
        optional_service smtp unix - - n - - remote
        optional_service relay unix - - n - - remote
        optional_service showq unix n - n - - showq
        optional_service virtual unix - n n - - virtual
    } > "$abs/etc/master.cf"
elif ! grep -q "^127\.0\.0\.1:$port[ 	]" "$abs/etc/master.cf"; then
    echo "run-instance.sh: warning: $abs/etc/master.cf does not listen on 127.0.0.1:$port;" \
         "it was written for another port (remove it to start over)" >&2
fi

if "$postern" -c "$abs/etc" status >/dev/null 2>&1; then
    echo "Postern is already running in $abs (build/bin/postern -c $abs/etc status)."
else
    if ! "$postern" -c "$abs/etc" start; then
        echo "run-instance.sh: start failed; the end of $abs/log/maillog:" >&2
        tail -n 20 "$abs/log/maillog" >&2
        exit 1
    fi
fi

# Wait until smtpd's port takes connections (at most 15 s).
port_open() {
    if [ -x /usr/bin/python3 ]; then
        /usr/bin/python3 - "$1" <<'EOF'
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
except OSError:
    sys.exit(1)
EOF
    elif command -v nc >/dev/null 2>&1; then
        nc -z 127.0.0.1 "$1" >/dev/null 2>&1
    else
        bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" >/dev/null 2>&1
    fi
}
deadline=$(($(date +%s) + 15))
until port_open "$port"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "run-instance.sh: nothing accepts connections on 127.0.0.1:$port after 15 s;" \
             "the end of $abs/log/maillog:" >&2
        tail -n 20 "$abs/log/maillog" >&2
        exit 1
    fi
    sleep 0.2
done

stop_hint="make stop"
[ "$run_dir" = run ] || stop_hint="make stop RUN_DIR=$run_dir"
cat <<EOF

Postern is running on 127.0.0.1:$port (configuration $abs/etc).
  send a message:   swaks --server 127.0.0.1:$port --to bob@localhost
  it lands in:      $abs/mail/bob/new/
  the log:          $abs/log/maillog
  status, reload:   build/bin/postern -c $abs/etc status|reload
  stop it:          $stop_hint
EOF
