#!/usr/bin/env bash
# Build berth's test images from scratch with `docker import` (no registry needed).
#
#   images/build.sh [--force] [NAME...]
#
# NAME is a short name (busybox, debian) or the full tag (berth-test/busybox[:latest]).
# Without NAME every image is built. An image is only (re)built when it is missing
# or its recipe revision label differs from REV below (bump it after changing a
# recipe); --force rebuilds regardless. Each freshly built image is smoke-tested
# and removed again if the test fails. Needs root (debootstrap, chroot).
#
# Adding an image: write build_<name> TAG and verify_<name> TAG, add <name> to REV,
# and append <name> to IMAGES (after the images it derives from). E.g. (tried out:
# builds in ~7 s, 96 MB; sshd needs `mkdir -p /run/sshd` before it starts):
#   build_ssh() {
#       local tag=$1 root
#       new_workdir
#       root=$WORK/root && mkdir "$root"
#       rootfs_from_image berth-test/debian:latest "$root"
#       root_apt_install "$root" openssh-server
#       import_root "$root" "$tag" ssh "ENV $PATH_ENV" 'CMD ["/usr/sbin/sshd","-D","-e"]' 'EXPOSE 22'
#   }
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BERTH_LOG_TAG=images
# shellcheck source=images/lib.sh
. "$HERE/lib.sh"

IMAGES=(busybox debian)
# Recipe revisions, stored in the image label $REV_LABEL. Bump after changing a recipe.
declare -A REV=(
    [busybox]=1
    [debian]=2
)
REV_LABEL=org.berth.test-image.rev
PATH_ENV='PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

# ---------------------------------------------------------------------------
# Temp dirs and chroot mounts, always cleaned up

WORKDIRS=()
MOUNTS=()

# Create a fresh temp dir (on a disk that allows device nodes) and set WORK to it.
# Not meant for $(...): the dir must be registered in this shell for cleanup.
new_workdir() {
    WORK=$(mktemp -d "${BERTH_IMAGES_TMPDIR:-/var/tmp}/berth-image.XXXXXX")
    WORKDIRS+=("$WORK")
}

CURRENT=""  # image being built, for the failure message

cleanup() {
    local rc=$? i d
    if ((rc)) && [[ -n $CURRENT ]]; then
        berth_log "ERROR: building $CURRENT failed (exit $rc)"
        CURRENT=""
    fi
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount -l "${MOUNTS[i]}" 2>/dev/null || true
    done
    MOUNTS=()
    for d in "${WORKDIRS[@]}"; do
        [[ -d $d ]] || continue
        # Never rm -rf through a mount that is still there.
        if findmnt -rn -o TARGET | grep -q "^$d/"; then
            berth_log "WARNING: mounts remain under $d; not removing it"
            continue
        fi
        rm -rf --one-file-system "$d"
    done
    WORKDIRS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Run a command inside ROOT with /proc mounted (unmounted again right after).
# Only use it when the command needs /proc; plain `chroot ROOT ...` is enough for most.
chroot_with_proc() { # ROOT CMD...
    local root=$1 rc=0
    shift
    mount -t proc proc "$root/proc"
    MOUNTS+=("$root/proc")
    chroot "$root" "$@" || rc=$?
    umount "$root/proc"
    unset 'MOUNTS[${#MOUNTS[@]}-1]'
    return "$rc"
}

# apt-get install PKG... inside a Debian ROOT without starting any service, then
# drop apt lists and caches. Uses the root's own /etc/apt/sources.list (written
# by debootstrap with the host's mirror).
root_apt_install() { # ROOT PKG...
    local root=$1
    shift
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    chroot "$root" apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive chroot "$root" \
        apt-get install -y -q --no-install-recommends "$@" >&2
    rm -f "$root/usr/sbin/policy-rc.d"
    clean_debian_root "$root"
}

clean_debian_root() { # ROOT
    local root=$1
    chroot "$root" apt-get clean
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
        "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old \
        "$root"/var/log/apt/* "$root"/var/log/dpkg.log "$root"/var/log/bootstrap.log \
        "$root"/tmp/* "$root"/var/tmp/*
    # Docker provides these at run time; do not leak the build host's.
    : >"$root/etc/resolv.conf"
    : >"$root/etc/hostname"
}

# Export an existing image's filesystem into DIR (to derive one image from another).
rootfs_from_image() { # IMAGE DIR
    local cid
    cid=$(docker create "$1" /bin/true)
    docker export "$cid" | tar -C "$2" -x --numeric-owner ||
        { docker rm -f "$cid" >/dev/null; return 1; }
    docker rm -f "$cid" >/dev/null
    rm -f "$2/.dockerenv" # added by Docker to every container filesystem
}

# tar ROOT and docker-import it as TAG with the given --change instructions.
import_root() { # ROOT TAG NAME CHANGE...
    local root=$1 tag=$2 name=$3
    shift 3
    local args=(--message "berth test image $tag (images/build.sh)"
        --change "LABEL $REV_LABEL=${REV[$name]}")
    local c
    for c in "$@"; do args+=(--change "$c"); done
    tar -C "$root" -c --numeric-owner . | docker import "${args[@]}" - "$tag" >/dev/null
}

# ---------------------------------------------------------------------------
# berth-test/busybox: busybox-static + a greet entrypoint

build_busybox() { # TAG
    local tag=$1 w root bb a
    berth_need_pkgs busybox-static
    bb=$(dpkg -L busybox-static | grep -E '^(/usr)?/bin/busybox$' | head -n1)
    [[ -x $bb ]] || berth_die "busybox-static installed but no busybox binary found"
    new_workdir
    w=$WORK
    root=$w/root
    mkdir -p "$root"/{bin,etc,root,srv,tmp,usr/bin,usr/local/bin,proc,sys,dev}
    chmod 1777 "$root/tmp"
    chmod 700 "$root/root"
    install -m 0755 "$bb" "$root/bin/busybox"
    for a in $("$root/bin/busybox" --list); do
        [[ $a == busybox || -e $root/bin/$a ]] || ln -s busybox "$root/bin/$a"
    done
    ln -s /bin/busybox "$root/usr/bin/env" # for `#!/usr/bin/env ...` scripts
    cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
    cat >"$root/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
EOF
    cat >"$root/usr/local/bin/greet" <<'EOF'
#!/bin/sh
echo "greet: $*"
echo "pwd: $(pwd)"
echo "greeting: $GREETING"
exit 0
EOF
    chmod 0755 "$root/usr/local/bin/greet"
    import_root "$root" "$tag" busybox \
        'ENTRYPOINT ["/usr/local/bin/greet"]' \
        'CMD ["hello","from cmd"]' \
        "ENV $PATH_ENV" \
        'ENV GREETING=hi' \
        'WORKDIR /srv' \
        'EXPOSE 8000'
}

verify_busybox() { # TAG
    local tag=$1 out want
    want=$'greet: hello from cmd\npwd: /srv\ngreeting: hi'
    out=$(docker run --rm --label berth-test=images-build "$tag")
    [[ $out == "$want" ]] || { berth_log "unexpected default output: $out"; return 1; }
    out=$(docker run --rm --label berth-test=images-build --entrypoint /bin/sh "$tag" -c 'echo ok')
    [[ $out == ok ]] || { berth_log "unexpected sh output: $out"; return 1; }
    out=$(docker run --rm --label berth-test=images-build --user nobody --entrypoint id "$tag")
    [[ $out == 'uid=65534(nobody) gid=65534(nobody)'* ]] || { berth_log "unexpected id output: $out"; return 1; }
}

# ---------------------------------------------------------------------------
# berth-test/debian: debootstrap minbase of the host's release + user app (1000)

debootstrap_root() { # ROOT: minimal Debian of the host's codename from the host's mirror
    local root=$1 codename mirror
    berth_need_pkgs debootstrap debian-archive-keyring
    codename=$(berth_codename)
    mirror=$(berth_debian_mirror)
    berth_log "debootstrap --variant=minbase $codename from $mirror"
    debootstrap --variant=minbase "$codename" "$root" "$mirror" >&2 ||
        { [[ -f $root/debootstrap/debootstrap.log ]] && tail -n 30 "$root/debootstrap/debootstrap.log" >&2; return 1; }
    slim_debian_root "$root"
}

# Like Debian's official -slim images: no docs/man pages/translations, now and for
# any package installed later (dpkg path-exclude).
slim_debian_root() { # ROOT
    local root=$1
    cat >"$root/etc/dpkg/dpkg.cfg.d/berth-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
EOF
    find "$root/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/{man,info,groff,lintian,locale}/*
}

build_debian() { # TAG
    local tag=$1 w root
    new_workdir
    w=$WORK
    root=$w/root
    debootstrap_root "$root"
    chroot "$root" useradd --create-home --uid 1000 --user-group --shell /bin/bash app
    clean_debian_root "$root"
    import_root "$root" "$tag" debian \
        "ENV $PATH_ENV" \
        'CMD ["/bin/bash"]'
}

verify_debian() { # TAG
    local tag=$1 out
    out=$(docker run --rm --label berth-test=images-build "$tag" bash -c 'echo ok')
    [[ $out == ok ]] || { berth_log "unexpected bash output: $out"; return 1; }
    out=$(docker run --rm --label berth-test=images-build --user app -w /home/app "$tag" sh -c 'id; pwd')
    [[ $out == $'uid=1000(app) gid=1000(app) groups=1000(app)\n/home/app' ]] ||
        { berth_log "unexpected output as app: $out"; return 1; }
}

# ---------------------------------------------------------------------------
# driver

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }

image_rev() { # TAG -> label value, empty when the image is missing
    docker image inspect -f "{{ index .Config.Labels \"$REV_LABEL\" }}" "$1" 2>/dev/null || true
}

build_one() { # NAME
    local name=$1 tag="berth-test/$1:latest" rev=${REV[$1]} cur old_id="" t0 secs
    cur=$(image_rev "$tag")
    if [[ $FORCE == 0 && -n $cur && $cur == "$rev" ]]; then
        berth_log "$tag is up to date (rev $cur)"
        return
    fi
    if [[ -n $cur ]]; then
        old_id=$(docker image inspect -f '{{.Id}}' "$tag")
        berth_log "rebuilding $tag (have rev '$cur', recipe rev $rev$( ((FORCE)) && echo ', --force'))"
    else
        berth_log "building $tag"
    fi
    t0=$(date +%s.%N)
    # Not `build_x || ...`: that would disable set -e inside the build function.
    CURRENT=$tag
    "build_$name" "$tag"
    CURRENT=""
    cleanup # free the temp dirs right away
    if ! "verify_$name" "$tag"; then
        docker rmi "$tag" >/dev/null 2>&1 || true
        berth_die "$tag failed its smoke test; image removed"
    fi
    secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    berth_log "built $tag in ${secs}s ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{ printf "%.1f MB", $1 / 1e6 }'))"
    # Drop the replaced image if nothing uses it any more.
    if [[ -n $old_id && $old_id != "$(docker image inspect -f '{{.Id}}' "$tag")" ]]; then
        docker rmi "$old_id" >/dev/null 2>&1 || true
    fi
}

FORCE=0
WANT=()
while (($#)); do
    case $1 in
    --force | -f) FORCE=1 ;;
    -h | --help) usage; exit 0 ;;
    -*) berth_die "unknown option $1 (see --help)" ;;
    *)
        n=${1#berth-test/}
        n=${n%:latest}
        [[ " ${IMAGES[*]} " == *" $n "* ]] || berth_die "unknown image '$1' (known: ${IMAGES[*]})"
        WANT+=("$n")
        ;;
    esac
    shift
done
((${#WANT[@]})) || WANT=("${IMAGES[@]}")

[[ $EUID -eq 0 ]] || berth_die "must run as root (debootstrap, chroot)"
docker info >/dev/null 2>&1 || berth_die "'docker info' failed: is the Docker daemon running and reachable?"

# Serialize concurrent builds on this machine.
exec 9>"${TMPDIR:-/tmp}/berth-images-build.lock"
flock 9

# Build in IMAGES order so derived images come after their bases.
for n in "${IMAGES[@]}"; do
    if [[ " ${WANT[*]} " == *" $n "* ]]; then build_one "$n"; fi
done
berth_log "images ready: $(printf 'berth-test/%s ' "${WANT[@]}")"
