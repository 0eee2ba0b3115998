#!/usr/bin/env bash
# Runs in the first stage of docker/Containerfile: assembles ROOTFS, the whole filesystem of
# the runtime image (copied into an empty `FROM scratch` stage), around one prebuilt binary.
# Whatever it installs or leaves in the staging stage itself never reaches the runtime image.
#
#   bash stage-rootfs.sh PIPELINE BINARY [ROOTFS]     # ROOTFS defaults to /rootfs
#
# ROOTFS gets:
#   /usr/local/bin/PIPELINE               the binary (debug info stripped if `strip` is here)
#   the shared libraries `ldd` lists      at the paths ldd prints, with the dynamic loader
#   /etc/passwd, /etc/group               root and the non-root user fti (uid/gid 10001)
#   /etc/nsswitch.conf                    files, then DNS
#   /etc/ssl/certs/ca-certificates.crt    the base's CA bundle (TLS to S3, GCS, Azure)
#   /tmp (1777), /home/fti (10001, 0750)  the only writable places for the user
# and nothing else: no shell, no package manager, no compiler. The stage's base (Debian
# bookworm by default) needs bash, ldd, chroot and ca-certificates (installed with apt-get
# when missing, as in debian:bookworm-slim), and a glibc at least as new
# as the one the binary was linked against: the binary is started once inside ROOTFS at the end
# (`--version` under chroot), so a missing library fails the build, not the first job.
set -euo pipefail

pipeline=${1:?usage: stage-rootfs.sh PIPELINE BINARY [ROOTFS]}
binary=${2:?usage: stage-rootfs.sh PIPELINE BINARY [ROOTFS]}
root=${3:-/rootfs}
user=fti
uid=10001
gid=10001

log() { printf '[stage-rootfs] %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

case "$pipeline" in
    feature-pipeline | training-pipeline | inference-pipeline) ;;
    *) die "unknown pipeline '$pipeline' (feature-pipeline, training-pipeline or inference-pipeline)" ;;
esac
[[ -f "$binary" && -x "$binary" ]] || die "$binary is not an executable file"
[[ ! -e "$root" ]] || die "$root already exists"
# debian:bookworm-slim has no CA bundle: install it into this stage only (needs network).
if [[ ! -f /etc/ssl/certs/ca-certificates.crt ]] && command -v apt-get >/dev/null; then
    log "the base has no CA bundle: apt-get install ca-certificates (in the staging stage only)"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates >&2
fi
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || die "the base has no /etc/ssl/certs/ca-certificates.crt (install ca-certificates)"

mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp" "$root/home/$user"

# --- the binary ---------------------------------------------------------------------------
install -m 0755 "$binary" "$root/usr/local/bin/$pipeline"
if command -v strip >/dev/null; then
    strip --strip-debug "$root/usr/local/bin/$pipeline"
fi
log "binary: /usr/local/bin/$pipeline ($(stat -c %s "$root/usr/local/bin/$pipeline") bytes)"

# --- exactly the shared libraries ldd lists ------------------------------------------------
# Lines look like `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`, `/lib64/ld-linux-
# x86-64.so.2 (0x...)` (the loader) or `linux-vdso.so.1 (0x...)` (in the kernel, no file).
# Each file is copied with its symlinks resolved to the path ldd printed, the path the loader
# searches (/lib/x86_64-linux-gnu is one of glibc's built-in directories: no ld.so.cache needed).
if ldd_out=$(ldd "$binary" 2>&1); then
    log "ldd $pipeline:"
    printf '%s\n' "$ldd_out" | sed 's/^/[stage-rootfs]   /' >&2
    libs=()
    while read -r first second third _; do
        if [[ "$second" == "=>" ]]; then
            [[ "$third" == /* ]] || die "ldd: $first => $third (not found)"
            libs+=("$third")
        elif [[ "$first" == /* ]]; then
            libs+=("$first")
        fi
    done <<<"$ldd_out"
    ((${#libs[@]})) || die "ldd listed no library files"
    for lib in "${libs[@]}"; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
elif grep -q 'not a dynamic executable' <<<"$ldd_out"; then
    log "ldd: $pipeline is statically linked, no libraries to copy"
else
    die "ldd $binary failed: $ldd_out"
fi

# --- users, name service, certificates -----------------------------------------------------
cat >"$root/etc/passwd" <<EOF
root:x:0:0:root:/root:/usr/sbin/nologin
$user:x:$uid:$gid:FTI pipelines:/home/$user:/usr/sbin/nologin
EOF
cat >"$root/etc/group" <<EOF
root:x:0:
$user:x:$gid:
EOF
cat >"$root/etc/nsswitch.conf" <<EOF
passwd: files
group: files
hosts: files dns
EOF
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$root/etc/ssl/certs/ca-certificates.crt"

# --- writable places -----------------------------------------------------------------------
chmod 1777 "$root/tmp"
chown "$uid:$gid" "$root/home/$user"
chmod 0750 "$root/home/$user"

# --- the binary starts inside the assembled filesystem --------------------------------------
version=$(chroot "$root" "/usr/local/bin/$pipeline" --version) ||
    die "/usr/local/bin/$pipeline does not start inside $root (missing library or glibc too old?)"
log "runs inside the rootfs: $version"

log "rootfs contents:"
(cd "$root" && find . -mindepth 1 -printf '%M %4U:%-5G %10s %p\n' | sort -k4) |
    sed 's/^/[stage-rootfs]   /' >&2
