#!/bin/sh
# install.sh install|links|uninstall - the body of "make install", "make
# install-sendmail-links" and "make uninstall" (see the end of the
# Makefile), run from the repository root after the build. Environment:
# DESTDIR (a staging root, empty for the real system), PREFIX (/usr),
# SETGID_GROUP (postdrop; empty: never install anything set-id, as the
# Debian package build does), SYSTEMD_DIR (/lib/systemd/system),
# POSTERN_BUILD (the build tree to install from: build, or build/san for
# "make install SANITIZE=1"), PURGE (uninstall only: 1 also removes
# /etc/postern and the queue).
#
# Layout: $PREFIX/sbin commands, $PREFIX/libexec/postern daemons,
# /etc/postern main.cf and master.cf (an existing file is never replaced;
# the new one is left beside it as FILE.dist), /var/spool/postern the queue
# (master and "postern check" create its subdirectories with the right
# owners), $SYSTEMD_DIR/postern.service. Nothing is set-id except postdrop
# and postqueue, which are setgid SETGID_GROUP when that group exists;
# otherwise "postern check" run as root afterwards creates the group and
# mail_owner (useradd/groupadd --system) and sets the bits.
#
# On the real system (no DESTDIR) nothing is written over a file that a
# Debian package owns (dpkg-query -S): install and links list every such
# file with its package and stop before changing anything; "make deb"
# builds a package that replaces the other MTA the Debian way instead.
# Every file install and links write, and every directory they create for
# them (not the configuration, not the queue), is listed in
# $PREFIX/share/postern/install-manifest, which is what uninstall removes.
set -eu

: "${DESTDIR:=}" "${PREFIX:=/usr}" "${SETGID_GROUP=postdrop}" "${PURGE:=}"
: "${SYSTEMD_DIR:=/lib/systemd/system}" "${POSTERN_BUILD:=build}"
sbin=$PREFIX/sbin
libexec=$PREFIX/libexec/postern
etc=/etc/postern
queue=/var/spool/postern
manifest=$PREFIX/share/postern/install-manifest

say() { echo "install.sh: $*"; }

group_exists() { [ -n "$1" ] && getent group "$1" >/dev/null 2>&1; }

# --- files other packages own -------------------------------------------

# The Debian packages that own path (comma separated), empty when none.
# With merged /usr a package may have registered /sbin/X for /usr/sbin/X,
# or /usr/lib/X for /lib/X.
owner_of() {
    case $1 in
        /usr/*) alias=${1#/usr} ;;
        /bin/*|/sbin/*|/lib/*) alias=/usr$1 ;;
        *) alias= ;;
    esac
    for p in "$1" $alias; do
        dpkg-query -S "$p" 2>/dev/null | while IFS= read -r line; do
            case $line in
                "diversion by "*) ;;
                *": $p") echo "${line%: *}"; break ;;
            esac
        done
    done | head -n 1
}

# Arguments: the absolute paths about to be written. On the real system,
# stop (writing nothing) when a package owns any of them.
refuse_package_files() {
    [ -z "$DESTDIR" ] && command -v dpkg-query >/dev/null 2>&1 || return 0
    owned=0
    for path in "$@"; do
        pkgs=$(owner_of "$path")
        if [ -n "$pkgs" ]; then
            echo "install.sh: $path belongs to the Debian package $pkgs" >&2
            owned=1
        fi
    done
    [ "$owned" = 0 ] && return 0
    cat >&2 <<EOF
install.sh: refusing to overwrite files that Debian packages own (nothing was
install.sh: changed). Build a Debian package instead and let apt replace them:
install.sh:   make deb
install.sh:   apt install ./$POSTERN_BUILD/deb/postern_*.deb
install.sh: or install elsewhere: make install PREFIX=/usr/local
EOF
    exit 1
}

# Record what was written, for uninstall (one absolute path a line), with
# the directories the manifest's own directory needed.
record() {
    rec_m=$DESTDIR$manifest
    rec_made=
    rec_p=${manifest%/*}
    while [ -n "$rec_p" ] && [ ! -d "$DESTDIR$rec_p" ]; do
        rec_made="$rec_made $rec_p"
        rec_p=${rec_p%/*}
    done
    install -d -m 0755 "${rec_m%/*}"
    # shellcheck disable=SC2086
    { [ -f "$rec_m" ] && cat "$rec_m"; printf '%s\n' "$@" $rec_made; } | sort -u > "$rec_m.tmp"
    chmod 0644 "$rec_m.tmp"
    mv "$rec_m.tmp" "$rec_m"
}

# install -d DIR..., recording the directories that did not exist.
make_dirs() {
    for dir in "$@"; do
        dir_p=$dir
        while [ -n "$dir_p" ] && [ ! -d "$DESTDIR$dir_p" ]; do
            record "$dir_p"
            dir_p=${dir_p%/*}
        done
        install -d -m 0755 "$DESTDIR$dir"
    done
}

# --- install --------------------------------------------------------------

# The paths main.cf names must be where this install put things.
configure_main_cf() {
    sed -e "s|^daemon_directory = .*|daemon_directory = $libexec|" \
        -e "s|^command_directory = .*|command_directory = $sbin|" \
        -e "s|^queue_directory = .*|queue_directory = $queue|" \
        conf/main.cf
}

# Install $2 as $1 mode 0644 unless $1 exists; then leave it as $1.dist.
install_config() {
    target=$DESTDIR$etc/$1
    if [ -e "$target" ]; then
        install -m 0644 "$2" "$target.dist"
        say "kept $target (the new default is $target.dist)"
    else
        install -m 0644 "$2" "$target"
    fi
}

install_commands() {
    make_dirs "$sbin"
    for f in "$POSTERN_BUILD"/bin/*; do
        name=${f##*/}
        case $name in
            postdrop|postqueue)
                if [ "$(id -u)" = 0 ] && group_exists "$SETGID_GROUP"; then
                    install -m 2755 -g "$SETGID_GROUP" "$f" "$DESTDIR$sbin/$name"
                else
                    install -m 0755 "$f" "$DESTDIR$sbin/$name"
                    [ -z "$SETGID_GROUP" ] || need_check=1
                fi ;;
            *) install -m 0755 "$f" "$DESTDIR$sbin/$name" ;;
        esac
    done
}

install_daemons() {
    make_dirs "$libexec"
    for f in "$POSTERN_BUILD"/libexec/*; do
        install -m 0755 "$f" "$DESTDIR$libexec/${f##*/}"
    done
}

install_unit() {
    make_dirs "$SYSTEMD_DIR"
    sed -e "s|@SBIN@|$sbin|g" -e "s|@QUEUE@|$queue|g" conf/postern.service \
        > "$DESTDIR$SYSTEMD_DIR/postern.service.tmp"
    chmod 0644 "$DESTDIR$SYSTEMD_DIR/postern.service.tmp"
    mv "$DESTDIR$SYSTEMD_DIR/postern.service.tmp" "$DESTDIR$SYSTEMD_DIR/postern.service"
}

# Every program and the unit, as absolute paths on the target system.
install_targets() {
    for f in "$POSTERN_BUILD"/bin/*; do echo "$sbin/${f##*/}"; done
    for f in "$POSTERN_BUILD"/libexec/*; do echo "$libexec/${f##*/}"; done
    echo "$SYSTEMD_DIR/postern.service"
}

do_install() {
    for p in "$POSTERN_BUILD"/bin/postern "$POSTERN_BUILD"/libexec/master; do
        [ -x "$p" ] || { echo "install.sh: $p is not built; run make first" >&2; exit 1; }
    done
    # The configuration files are never overwritten, but one a package
    # owns means that package is installed: refuse as well.
    # shellcheck disable=SC2046 # paths have no spaces: they are ours
    refuse_package_files $(install_targets) "$etc/main.cf" "$etc/master.cf"
    need_check=0
    install_commands
    install_daemons
    install -d -m 0755 "$DESTDIR$etc" "$DESTDIR$queue"
    tmp=$(mktemp)
    configure_main_cf > "$tmp"
    install_config main.cf "$tmp"
    rm -f "$tmp"
    install_config master.cf conf/master.cf
    install_unit
    # shellcheck disable=SC2046
    record $(install_targets)
    say "installed into ${DESTDIR:-/} (PREFIX=$PREFIX); make uninstall removes it again"
    if [ "$need_check" = 1 ]; then
        say "postdrop and postqueue are not setgid $SETGID_GROUP yet: run"
        say "  $sbin/postern check"
        say "as root; it creates mail_owner and $SETGID_GROUP when missing and fixes modes"
    fi
}

# sendmail, mailq and newaliases are one program that looks at its name.
do_links() {
    links="/usr/bin/mailq /usr/bin/newaliases"
    # With PREFIX=/usr the program already is /usr/sbin/sendmail.
    [ "$sbin" = /usr/sbin ] || links="/usr/sbin/sendmail $links"
    # shellcheck disable=SC2086
    refuse_package_files $links
    make_dirs /usr/sbin /usr/bin
    for l in $links; do
        ln -sf "$sbin/sendmail" "$DESTDIR$l"
    done
    # shellcheck disable=SC2086
    record $links
    say "linked /usr/sbin/sendmail, /usr/bin/mailq, /usr/bin/newaliases to $sbin/sendmail"
}

# --- uninstall ------------------------------------------------------------

do_uninstall() {
    m=$DESTDIR$manifest
    if [ ! -f "$m" ]; then
        echo "install.sh: no $m: nothing was installed by make install with PREFIX=$PREFIX" >&2
        exit 1
    fi
    if [ -z "$DESTDIR" ] && [ -x "$sbin/postern" ] &&
        "$sbin/postern" status >/dev/null 2>&1; then
        echo "install.sh: the mail system is running: stop it first ($sbin/postern stop)" >&2
        exit 1
    fi
    list=$(sort -r "$m")   # a directory after everything in it
    rm -f "$m"
    kept=0
    for path in $list; do
        if [ -z "$DESTDIR" ] && command -v dpkg-query >/dev/null 2>&1; then
            pkgs=$(owner_of "$path")
            if [ -n "$pkgs" ]; then
                say "left $path: it belongs to the Debian package $pkgs now"
                kept=1
                continue
            fi
        fi
        if [ -d "$DESTDIR$path" ] && [ ! -L "$DESTDIR$path" ]; then
            rmdir "$DESTDIR$path" 2>/dev/null || say "left $path: not empty"
        else
            rm -f "$DESTDIR$path"
        fi
    done
    say "removed what make install put into ${DESTDIR:-/} (PREFIX=$PREFIX)"
    if [ "$PURGE" = 1 ]; then
        rm -rf "$DESTDIR$etc" "$DESTDIR$queue"
        say "removed $etc and the queue $queue (PURGE=1)"
    else
        say "kept the configuration $etc and the queue $queue:"
        say "  make uninstall PURGE=1 removes them too"
    fi
    say "kept the mail_owner and setgid_group accounts postern check made (userdel, groupdel)"
    if [ -z "$DESTDIR" ] && [ -e /etc/systemd/system/multi-user.target.wants/postern.service ]; then
        say "postern.service is still enabled: systemctl disable postern"
    fi
    [ "$kept" = 0 ] || say "files a package owns were left to that package"
}

case ${1:-} in
    install) do_install ;;
    links) do_links ;;
    uninstall) do_uninstall ;;
    *) echo "usage: sh scripts/install.sh install|links|uninstall" >&2; exit 2 ;;
esac
