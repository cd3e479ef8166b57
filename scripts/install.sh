#!/bin/sh
# install.sh install|links - the body of "make install" and "make
# install-sendmail-links" (see the end of the Makefile), run from the
# repository root after the build. Environment: DESTDIR (a staging root,
# empty for the real system), PREFIX (/usr), SETGID_GROUP (postdrop),
# SYSTEMD_DIR (/lib/systemd/system), POSTERN_BUILD (the build tree to install
# from: build, or build/san for "make install SANITIZE=1").
#
# Layout: $PREFIX/sbin commands, $PREFIX/libexec/postern daemons,
# /etc/postern main.cf and master.cf (an existing file is never replaced;
# the new one is left beside it as FILE.dist), /var/spool/postern the queue
# (master and "postern check" create its subdirectories with the right
# owners), $SYSTEMD_DIR/postern.service. Nothing is set-id except postdrop
# and postqueue, which are setgid SETGID_GROUP when that group exists;
# otherwise "postern check" run as root afterwards creates the group and
# mail_owner (useradd/groupadd --system) and sets the bits.
set -eu

: "${DESTDIR:=}" "${PREFIX:=/usr}" "${SETGID_GROUP:=postdrop}"
: "${SYSTEMD_DIR:=/lib/systemd/system}" "${POSTERN_BUILD:=build}"
sbin=$PREFIX/sbin
libexec=$PREFIX/libexec/postern
etc=/etc/postern
queue=/var/spool/postern

say() { echo "install.sh: $*"; }

group_exists() { getent group "$1" >/dev/null 2>&1; }

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
    install -d -m 0755 "$DESTDIR$sbin"
    for f in "$POSTERN_BUILD"/bin/*; do
        name=${f##*/}
        case $name in
            postdrop|postqueue)
                if [ "$(id -u)" = 0 ] && group_exists "$SETGID_GROUP"; then
                    install -m 2755 -g "$SETGID_GROUP" "$f" "$DESTDIR$sbin/$name"
                else
                    install -m 0755 "$f" "$DESTDIR$sbin/$name"
                    need_check=1
                fi ;;
            *) install -m 0755 "$f" "$DESTDIR$sbin/$name" ;;
        esac
    done
}

install_daemons() {
    install -d -m 0755 "$DESTDIR$libexec"
    for f in "$POSTERN_BUILD"/libexec/*; do
        install -m 0755 "$f" "$DESTDIR$libexec/${f##*/}"
    done
}

install_unit() {
    install -d -m 0755 "$DESTDIR$SYSTEMD_DIR"
    sed -e "s|@SBIN@|$sbin|g" -e "s|@QUEUE@|$queue|g" conf/postern.service \
        > "$DESTDIR$SYSTEMD_DIR/postern.service.tmp"
    chmod 0644 "$DESTDIR$SYSTEMD_DIR/postern.service.tmp"
    mv "$DESTDIR$SYSTEMD_DIR/postern.service.tmp" "$DESTDIR$SYSTEMD_DIR/postern.service"
}

do_install() {
    for p in "$POSTERN_BUILD"/bin/postern "$POSTERN_BUILD"/libexec/master; do
        [ -x "$p" ] || { echo "install.sh: $p is not built; run make first" >&2; exit 1; }
    done
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
    say "installed into ${DESTDIR:-/} (PREFIX=$PREFIX)"
    if [ "$need_check" = 1 ]; then
        say "postdrop and postqueue are not setgid $SETGID_GROUP yet: run"
        say "  $sbin/postern check"
        say "as root; it creates mail_owner and $SETGID_GROUP when missing and fixes modes"
    fi
}

# sendmail, mailq and newaliases are one program that looks at its name.
do_links() {
    install -d -m 0755 "$DESTDIR/usr/sbin" "$DESTDIR/usr/bin"
    # With PREFIX=/usr the program already is /usr/sbin/sendmail.
    [ "$sbin" = /usr/sbin ] || ln -sf "$sbin/sendmail" "$DESTDIR/usr/sbin/sendmail"
    ln -sf "$sbin/sendmail" "$DESTDIR/usr/bin/mailq"
    ln -sf "$sbin/sendmail" "$DESTDIR/usr/bin/newaliases"
    say "linked /usr/sbin/sendmail, /usr/bin/mailq, /usr/bin/newaliases to $sbin/sendmail"
}

case ${1:-} in
    install) do_install ;;
    links) do_links ;;
    *) echo "usage: sh scripts/install.sh install|links" >&2; exit 2 ;;
esac
