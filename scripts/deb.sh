#!/usr/bin/env bash
# `make deb`: a Debian package over the `make install` layout (dpkg-deb, no debhelper):
#   /opt/mpdr/{bin,lib,models,share}  the binary, the libtorch it loads (its ldd closure), the
#                                     demo models, docs and example configs
#   /usr/bin/mpdr                     a link to /opt/mpdr/bin/mpdr
#   /lib/systemd/system/              mpdr-monitor.service and the template mpdr-monitor@.service
#   /etc/mpdr/monitor.toml            a conffile (dpkg keeps your edits on upgrade)
#   postinst                          the system user mpdr (group audio), /var/lib/mpdr/{models,}
# The service is not enabled: the installed config monitors nothing until a stream is added.
#
# `make deb-test`: the package installed into a fresh Debian root made with debootstrap
# (cached in target/deb/base-<arch>), then — inside that root — `mpdr validate` of the installed
# config, `validate --as-service`, and `mpdr monitor` on a file stream to its end, as the
# service user, with a file sink. Needs root (chroot, mount) and debootstrap; opt-in.
# An arm64 package (`make cross-aarch64-deb`: the cross build) is tested the same way on an
# x86_64 box, in an arm64 root whose programs run under qemu-user (binfmt_misc).
#   MPDR_BINARY (default target/release/mpdr), MPDR_DEB_ARCH (default: dpkg's architecture)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/file-stream.sh
. scripts/lib/qemu.sh
root=$PWD
mode=${1:-build}
bin=${MPDR_BINARY:-${CARGO_TARGET_DIR:-target}/release/mpdr}
arch=${MPDR_DEB_ARCH:-$(dpkg --print-architecture)}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
work=target/deb
pkg=$work/mpdr_${version}_$arch.deb

build() {
    local t0=$SECONDS stage=$work/stage
    rm -rf "$stage" && mkdir -p "$stage/DEBIAN"
    PREFIX=/opt/mpdr DESTDIR="$stage" MPDR_BINARY="$bin" MPDR_ETC="$stage/etc/mpdr" \
        MPDR_BIN_LINK="$stage/usr/bin" MPDR_SYSTEMD="$stage/lib/systemd/system" \
        MPDR_INSTALL_LINK=1 MPDR_PACKAGE=1 scripts/install.sh >/dev/null
    local kib
    kib=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
    # The oldest C and C++ runtimes it runs on: the newest symbol versions the binary and the
    # libraries it ships ask for (a box with an older glibc refuses the package, not the start).
    local syms glibc cxx gcc
    syms=$(objdump -T "$stage/opt/mpdr/bin/mpdr" "$stage"/opt/mpdr/lib/*.so* 2>/dev/null)
    glibc=$(grep -o 'GLIBC_2\.[0-9]*' <<<"$syms" | sort -V -u | tail -1 | cut -d_ -f2)
    cxx=$(grep -o 'GLIBCXX_3\.4\.[0-9]*' <<<"$syms" | sort -V -u | tail -1 | cut -d. -f3)
    case "${cxx:-0}" in 29) gcc=11 ;; 30) gcc=12 ;; 31) gcc=13 ;; 32) gcc=14 ;; 33) gcc=15 ;; *) gcc= ;; esac
    cat > "$stage/DEBIAN/control" <<CONTROL
Package: mpdr
Version: $version
Architecture: $arch
Maintainer: mpdr developers <mpdr@localhost>
Installed-Size: $kib
Depends: libc6 (>= ${glibc:-2.28}), libstdc++6${gcc:+ (>= $gcc)}, libgcc-s1, libasound2, passwd
Section: sound
Priority: optional
Homepage: https://github.com/mpdr/mpdr
Description: acoustic anomaly monitor for industrial machines (MPDR)
 mpdr listens to machines through microphones and raises alarms (log, webhook,
 MQTT, Modbus TCP, exec) when one starts to sound wrong. Ships the daemon, the
 libtorch it scores with, demo models and a hardened systemd unit.
CONTROL
    echo /etc/mpdr/monitor.toml > "$stage/DEBIAN/conffiles"
    cat > "$stage/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    if ! getent group mpdr >/dev/null; then groupadd --system mpdr; fi
    if ! getent passwd mpdr >/dev/null; then
        useradd --system --gid mpdr --groups audio --home-dir /var/lib/mpdr --no-create-home \
            --shell /usr/sbin/nologin --comment "mpdr monitor" mpdr
    fi
    getent group audio >/dev/null && usermod -a -G audio mpdr
    install -d -o mpdr -g mpdr -m 0750 /var/lib/mpdr /var/lib/mpdr/models
    install -d -m 0750 /etc/mpdr/credentials
    if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
    echo "mpdr: edit /etc/mpdr/monitor.toml (a [[stream]] per microphone), check it with"
    echo "      sudo mpdr validate --as-service --config /etc/mpdr/monitor.toml, then"
    echo "      sudo systemctl enable --now mpdr-monitor"
fi
exit 0
POSTINST
    cat > "$stage/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
    systemctl stop mpdr-monitor.service 'mpdr-monitor@*.service' >/dev/null 2>&1 || true
fi
exit 0
PRERM
    chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm"
    dpkg-deb --root-owner-group -Zgzip -z6 --build "$stage" "$pkg" >/dev/null
    rm -rf "$stage"
    echo "deb: $pkg ($(du -h "$pkg" | cut -f1), $((kib / 1024)) MiB installed; needs glibc >= ${glibc:-2.28}${gcc:+, libstdc++ of GCC >= $gcc}) in $((SECONDS - t0)) s"
}

base=$work/base-$arch
new_root=$work/root
host_arch=$(dpkg --print-architecture)
cleanup() {
    for m in proc/cpuinfo proc dev; do mountpoint -q "$new_root/$m" 2>/dev/null && umount -l "$new_root/$m"; done
    mountpoint -q "$new_root" 2>/dev/null && umount -l "$new_root"
    return 0
}

test_install() {
    [ "$(id -u)" -eq 0 ] || { echo "deb-test: needs root (debootstrap, chroot)" >&2; exit 1; }
    command -v debootstrap >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq debootstrap >/dev/null; }
    local t0=$SECONDS suite
    suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    # An arm64 package on an x86_64 box: an arm64 root, its programs run by qemu-user.
    local foreign=0
    if [ "$arch" != "$host_arch" ]; then
        [ "$arch" = arm64 ] || { echo "deb-test: an $arch package cannot be tested on $host_arch (arm64 can, under qemu-user)" >&2; exit 1; }
        command -v qemu-aarch64-static >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq qemu-user-static >/dev/null; }
        ensure_aarch64_binfmt
        foreign=1
    fi
    if [ ! -f "$base/.complete" ]; then
        rm -rf "$base"
        debootstrap --arch="$arch" --variant=minbase --include=libasound2 "$suite" "$base" "${MPDR_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$work/debootstrap.log" 2>&1 \
            || { echo "deb-test: debootstrap failed, see $work/debootstrap.log" >&2; exit 1; }
        touch "$base/.complete"
        echo "deb-test: Debian $suite ($arch) root made in $((SECONDS - t0)) s"
    fi
    trap cleanup EXIT
    cleanup
    rm -rf "$new_root" && cp -a "$base" "$new_root"
    # A root that is a mount point, as on a real box (validate --as-service makes its mounts private).
    mount --bind "$new_root" "$new_root"
    mount -t proc proc "$new_root/proc"
    mount --bind /dev "$new_root/dev"
    local qemu_env=()
    if [ "$foreign" = 1 ]; then
        write_cortex_a76_cpuinfo "$work/cpuinfo"
        mount --bind "$work/cpuinfo" "$new_root/proc/cpuinfo"
        qemu_env=(QEMU_CPU=cortex-a76)
    fi
    cp "$pkg" "$new_root/tmp/mpdr.deb"
    in_root() {
        chroot "$new_root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin OMP_WAIT_POLICY=PASSIVE "${qemu_env[@]}" "$@" \
            2> >(grep -v "Can't open MIDR_EL1 sysfs entry" >&2)
    }
    in_root dpkg -i /tmp/mpdr.deb
    in_root test -x /opt/mpdr/bin/mpdr
    in_root id mpdr
    in_root mpdr --version
    # The box as the installed binary sees it: its architecture and the libtorch it loaded.
    local machine=x86_64
    [ "$arch" = arm64 ] && machine=aarch64
    in_root mpdr doctor | tee "$work/doctor.txt" | sed -n 1,3p
    grep -q "^mpdr .* on $machine " "$work/doctor.txt" && grep -q "^libtorch: /opt/mpdr (version 2.13.0" "$work/doctor.txt" \
        || { echo "deb-test: the installed mpdr is not the $machine build with its own libtorch" >&2; exit 1; }
    echo "deb-test: validate the installed /etc/mpdr/monitor.toml"
    in_root mpdr validate --config /etc/mpdr/monitor.toml
    in_root mpdr validate --as-service --config /etc/mpdr/monitor.toml
    # A file stream run to its end as the service user, with the shipped pump model.
    in_root install -d -o mpdr -g mpdr /var/lib/mpdr/site
    in_root runuser -u mpdr -- mpdr synth --machine pump --instance 1000 --seed 7 --seconds 60 \
        --fault bearing --fault-at 30 --ramp 5 --out /var/lib/mpdr/site/pump.wav
    file_stream_toml /var/lib/mpdr/site/state pump-1 /opt/mpdr/models/pump /var/lib/mpdr/site/pump.wav \
        /var/lib/mpdr/site/events.jsonl > "$new_root/etc/mpdr/site.toml"
    in_root mpdr validate --as-service --config /etc/mpdr/site.toml
    in_root runuser -u mpdr -- mpdr monitor --config /etc/mpdr/site.toml --exit-when-done
    local kinds
    kinds=$(event_kinds "$new_root/var/lib/mpdr/site/events.jsonl")
    echo "deb-test: event kinds in the new root: $kinds"
    require_raised deb-test "$kinds"
    in_root dpkg -r mpdr >/dev/null
    in_root test ! -e /opt/mpdr/bin/mpdr
    echo "deb-test: passed in $((SECONDS - t0)) s (install, validate, file stream, remove)"
}

case "$mode" in
    build) build ;;
    test) build && test_install ;;
    *) echo "usage: $0 build|test" >&2; exit 2 ;;
esac
