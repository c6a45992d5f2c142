# Shared by the aarch64 checks on an x86_64 box (cross-aarch64.sh, deb.sh with an arm64
# package). Source it; it defines functions only.

# qemu-user 7.2 (Debian 12) shows the host's x86 /proc/cpuinfo to the guest, and PyTorch's
# cpuinfo library crashes parsing it (SIGSEGV at the first tensor operation). The guest gets
# the /proc/cpuinfo of a Cortex-A76 (a Raspberry Pi 5's core) instead, bind-mounted over the
# real one, and qemu emulates that core (QEMU_CPU=cortex-a76).
write_cortex_a76_cpuinfo() {
    : > "$1"
    for n in 0 1 2 3; do
        printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n' "$n" >> "$1"
    done
}

# aarch64 programs started by the kernel (a chroot's dpkg, its maintainer scripts) run through
# qemu-user: binfmt_misc mounted and qemu-aarch64 registered from qemu-user-static's own entry
# (its F flag opens the interpreter now, so a chroot needs no copy of it).
ensure_aarch64_binfmt() {
    local bm=/proc/sys/fs/binfmt_misc
    mountpoint -q "$bm" || mount -t binfmt_misc binfmt_misc "$bm"
    [ -e "$bm/qemu-aarch64" ] && return 0
    cat /usr/lib/binfmt.d/qemu-aarch64.conf > "$bm/register"
}
