#!/usr/bin/env bash
# `make install`: the binary and the libtorch libraries it loads in one prefix the hardened
# systemd unit can read (default /opt/mpdr: bin/mpdr finds lib/ through its $ORIGIN/../lib
# rpath, nothing under /home is needed), the demo models, the docs and example configs, a
# /usr/local/bin/mpdr link, the unit, and — only if there is none — /etc/mpdr/monitor.toml
# from config/monitor.service.toml (it passes the unit's ExecStartPre as installed).
# Variables: PREFIX, DESTDIR, MPDR_BINARY (default target/release/mpdr), MPDR_ETC,
# MPDR_BIN_LINK (folder of the mpdr link; empty: none), MPDR_SYSTEMD (unit folder),
# MPDR_INSTALL_LINK=1 (hard-link the libraries instead of copying: tests).
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/opt/mpdr}
DESTDIR=${DESTDIR:-}
BIN=${MPDR_BINARY:-${CARGO_TARGET_DIR:-target}/release/mpdr}
ETC=${MPDR_ETC:-$DESTDIR/etc/mpdr}
LINKDIR=${MPDR_BIN_LINK-$DESTDIR/usr/local/bin}
UNITDIR=${MPDR_SYSTEMD:-$DESTDIR/etc/systemd/system}
root="$DESTDIR$PREFIX"
[ -x "$BIN" ] || { echo "install: $BIN is not built (run make build)" >&2; exit 1; }
install -d "$root/bin" "$root/lib" "$root/models" "$root/share/doc/mpdr" "$root/share/mpdr/config"
install -m 0755 "$BIN" "$root/bin/mpdr"
# Every shared library the binary loads from outside the system folders (libtorch, c10, gomp,
# CUDA when linked): their whole closure, as the loader resolves it now.
# cuDNN and NVRTC load parts of themselves with dlopen (ldd cannot see them): a library of
# those families brings its siblings along.
put() {
  if [ "${MPDR_INSTALL_LINK:-0}" = 1 ]; then ln -f "$(readlink -f "$1")" "$root/lib/$(basename "$1")" 2>/dev/null || cp -L "$1" "$root/lib/"
  else cp -L "$1" "$root/lib/"; fi
}
# An aarch64 binary on an x86_64 box (a cross build being packaged): its own loader lists them,
# under qemu-user, with Debian's cross sysroot for the system libraries.
libs_of() {
  local machine
  machine=$(od -An -tu2 -j18 -N2 "$1" | tr -d ' ')
  if [ "$machine" = 183 ] && [ "$(uname -m)" != aarch64 ]; then
    QEMU_LD_PREFIX=/usr/aarch64-linux-gnu qemu-aarch64-static /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 --list "$1"
  else
    ldd "$1"
  fi
}
libs=$(libs_of "$BIN")
awk '/=> \// {print $3}' <<<"$libs" | grep -Ev '^/(usr/)?lib(64)?/|^/usr/aarch64-linux-gnu/' | while read -r so; do
  put "$so"
  case "$(basename "$so")" in
    libcudnn.so.*) for s in "$(dirname "$so")"/libcudnn_*.so.*; do [ -e "$s" ] && put "$s"; done ;;
    libnvrtc.so.*) for s in "$(dirname "$so")"/libnvrtc-builtins*.so*; do [ -e "$s" ] && put "$s"; done ;;
  esac
done
# What `mpdr doctor` reports of the libtorch: the stamps `make setup` wrote beside it.
torch_lib=$(awk '/libtorch_cpu.so => \// {print $3}' <<<"$libs")
for f in build-version build-flavour build-arch; do
  [ -n "$torch_lib" ] && [ -f "$(dirname "$torch_lib")/../$f" ] && install -m 0644 "$(dirname "$torch_lib")/../$f" "$root/lib/$f"
done
for m in models/*/; do
  install -d "$root/models/$(basename "$m")"
  install -m 0644 "$m"* "$root/models/$(basename "$m")/"
done
install -m 0644 README.md "$root/share/doc/mpdr/README.md"
for c in config/*.toml config/*.yml; do   # example configs, with @PREFIX@ filled in
  sed "s|@PREFIX@|$PREFIX|g" "$c" > "$root/share/mpdr/config/$(basename "$c")"
  chmod 0644 "$root/share/mpdr/config/$(basename "$c")"
done
if [ -n "$LINKDIR" ]; then install -d "$LINKDIR" && ln -sf "$PREFIX/bin/mpdr" "$LINKDIR/mpdr"; fi
install -d "$UNITDIR"
sed "s|@PREFIX@|$PREFIX|g" systemd/mpdr-monitor.service > "$UNITDIR/mpdr-monitor.service"
# The template (two daemons on one box): the same unit with /etc/mpdr/%i.toml and /var/lib/mpdr/%i.
sed -e "s|@PREFIX@|$PREFIX|g" -e 's|/etc/mpdr/monitor.toml|/etc/mpdr/%i.toml|g' \
    -e 's|^StateDirectory=mpdr$|StateDirectory=mpdr/%i|' -e 's|^WorkingDirectory=/var/lib/mpdr$|WorkingDirectory=/var/lib/mpdr/%i|' \
    -e 's|^Description=mpdr acoustic anomaly monitor$|Description=mpdr acoustic anomaly monitor (%i)|' \
    systemd/mpdr-monitor.service > "$UNITDIR/mpdr-monitor@.service"
install -d "$root/share/mpdr/systemd"
install -m 0644 systemd/jetson-devices.conf "$root/share/mpdr/systemd/jetson-devices.conf"
install -d "$ETC"
if [ ! -e "$ETC/monitor.toml" ]; then
  sed "s|@PREFIX@|$PREFIX|g" config/monitor.service.toml > "$ETC/monitor.toml"
  echo "installed $ETC/monitor.toml (edit it: one [[stream]] per microphone)"
else
  echo "kept $ETC/monitor.toml"
fi
# A CUDA build carries several GB of CUDA libraries: say so.
size=$(du -sh "$root" | cut -f1)
echo "installed mpdr in $root ($size; libraries: $(du -sh "$root/lib" | cut -f1))"
[ "${MPDR_PACKAGE:-0}" = 1 ] || echo "then: add a [[stream]] to $ETC/monitor.toml, sudo mpdr validate --as-service --config $ETC/monitor.toml, systemctl daemon-reload && systemctl enable --now mpdr-monitor"
