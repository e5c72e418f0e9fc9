#!/usr/bin/env bash
# Build berth's test images from scratch with `docker import` (no registry needed).
#
#   images/build.sh [--force] [NAME...]
#
# NAME is a short name (busybox, debian) or the full tag (berth-test/busybox[:latest]).
# Without NAME every image is built; a named image brings its base images along.
# An image is only (re)built when it is missing, its recipe revision label differs
# from REV below (bump it after changing a recipe), or the base image it was built
# from has changed since; --force rebuilds the named images (all without NAME)
# regardless. Each freshly built image is smoke-tested and removed again if the
# test fails. Needs root (debootstrap, chroot).
#
# Images: busybox, debian, ssh (debian + openssh-server, no host keys), ssh-hostile
# (ssh with an sshd config and root password berth must ignore), ssh-user (ssh with
# USER app, WORKDIR /home/app and an ENTRYPOINT that must never run in ssh mode),
# jupyter (ssh + Debian's classic Notebook and a pip-installed JupyterLab in /opt/jlab),
# argserver (jupyter + an ENTRYPOINT/CMD web server on 8765 that answers with its argv
# and working directory: odd arguments, WORKDIR with a space, EXPOSE, ENV).
#
# Adding an image: write build_<name> TAG and verify_<name> TAG ('-' in <name> becomes
# '_' in the function names), add <name> to REV, and append <name> to IMAGES (after
# the images it derives from); a derived image also goes into BASE, so that it is
# rebuilt whenever its base image changes and its base is built first.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BERTH_LOG_TAG=images
# shellcheck source=images/lib.sh
. "$HERE/lib.sh"

IMAGES=(busybox debian ssh ssh-hostile ssh-user jupyter argserver)
# Recipe revisions, stored in the image label $REV_LABEL. Bump after changing a recipe.
declare -A REV=(
    [busybox]=1
    [debian]=2
    [ssh]=1
    [ssh-hostile]=1
    [ssh-user]=1
    [jupyter]=1
    [argserver]=1
)
REV_LABEL=org.berth.test-image.rev
# Images built from another test image. A derived image records the id of the base
# it was built from in the label $BASE_LABEL and counts as outdated when that differs.
declare -A BASE=(
    [ssh]=debian
    [ssh-hostile]=ssh
    [ssh-user]=ssh
    [jupyter]=ssh
    [argserver]=jupyter
)
BASE_LABEL=org.berth.test-image.base
PATH_ENV='PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
# What berth-test/jupyter pip-installs into its JupyterLab venv (Debian has no
# JupyterLab package). Bump REV[jupyter] after changing it.
JUPYTERLAB_PIP=(jupyterlab==4.6.6 ipykernel==7.4.0)

# ---------------------------------------------------------------------------
# Temp dirs and chroot mounts, always cleaned up

WORKDIRS=()
MOUNTS=()
CONTAINERS=() # build-time containers (docker commit), removed by cleanup

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
    if ((${#CONTAINERS[@]})); then
        docker rm -f "${CONTAINERS[@]}" >/dev/null 2>&1 || true
    fi
    CONTAINERS=()
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

# The id of the image TAG, empty when it is missing.
image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

# Print the LABEL instructions every image gets: its recipe revision and, for a
# derived image, the id of its base image.
image_labels() { # NAME
    local name=$1 base
    printf 'LABEL %s=%s\n' "$REV_LABEL" "${REV[$name]}"
    [[ -n ${BASE[$name]:-} ]] || return 0
    base=$(image_id "berth-test/${BASE[$name]}:latest")
    [[ -n $base ]] || berth_die "base image berth-test/${BASE[$name]}:latest is missing"
    printf 'LABEL %s=%s\n' "$BASE_LABEL" "$base"
}

# tar ROOT and docker-import it as TAG with the given --change instructions.
import_root() { # ROOT TAG NAME CHANGE...
    local root=$1 tag=$2 name=$3 labels c
    shift 3
    labels=$(image_labels "$name")
    local args=(--message "berth test image $tag (images/build.sh)")
    while IFS= read -r c; do args+=(--change "$c"); done <<<"$labels"
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
# berth-test/ssh: berth-test/debian + the image's own OpenSSH server (sshd,
# sftp-server, ssh-keygen), procps and tmux. No host keys (berth brings its own per
# instance), no /run/sshd (berth's init creates it), no ENTRYPOINT, CMD bash: ssh
# mode must work without any help from the image.

build_ssh() { # TAG
    local tag=$1 root
    new_workdir
    root=$WORK/root
    mkdir "$root"
    rootfs_from_image berth-test/debian:latest "$root"
    root_apt_install "$root" openssh-server openssh-sftp-server procps tmux
    rm -f "$root"/etc/ssh/ssh_host_*
    # Leftovers of the package scripts in /run (sshd, adduser, runit): /run is no
    # tmpfs in a container, so they would show up at run time.
    find "$root/run" -mindepth 1 -maxdepth 1 ! -name lock ! -name mount -exec rm -rf {} +
    import_root "$root" "$tag" ssh \
        "ENV $PATH_ENV" \
        'CMD ["/bin/bash"]'
}

# Checks shared by every image derived from berth-test/ssh.
verify_ssh_common() { # TAG ENTRYPOINT_JSON
    local tag=$1 out
    out=$(docker image inspect -f '{{json .Config.Entrypoint}} {{json .Config.Cmd}}' "$tag")
    [[ $out == "$2 [\"/bin/bash\"]" ]] || { berth_log "unexpected entrypoint/cmd: $out"; return 1; }
    # No baked host keys or /run/sshd; sshd accepts its config once given a key and
    # the privilege separation dir; the sftp server and client tools are there.
    out=$(docker run --rm --label berth-test=images-build --user root --network none --entrypoint /bin/sh "$tag" -c '
        set -e
        for f in /etc/ssh/ssh_host_*; do [ ! -e "$f" ] || { echo "host key baked in: $f"; exit 1; }; done
        [ ! -e /run/sshd ] || { echo "/run/sshd baked in"; exit 1; }
        ssh-keygen -q -t ed25519 -N "" -f /tmp/k
        mkdir -p /run/sshd
        /usr/sbin/sshd -t -f /etc/ssh/sshd_config -h /tmp/k
        sftp=$(/usr/sbin/sshd -T -f /etc/ssh/sshd_config -h /tmp/k | awk "\$1 == \"subsystem\" && \$2 == \"sftp\" { print \$3 }")
        [ -x "$sftp" ] || { echo "sftp subsystem \"$sftp\" is not executable"; exit 1; }
        command -v ssh-keygen tmux ps >/dev/null
        echo "sftp-server: $sftp"
        ssh -V 2>&1
    ') || { berth_log "sshd check failed: $out"; return 1; }
    berth_log "$tag: ${out//$'\n'/; }"
}

verify_ssh() { # TAG
    local tag=$1 out
    verify_ssh_common "$tag" null || return 1
    # The image's sshd really serves: start it with a temp key and fetch that key back.
    out=$(docker run --rm --label berth-test=images-build --network none "$tag" /bin/sh -c '
        set -e
        ssh-keygen -q -t ed25519 -N "" -f /tmp/k
        mkdir -p /run/sshd
        /usr/sbin/sshd -h /tmp/k -o ListenAddress=127.0.0.1 -p 22
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            if ssh-keyscan -T 2 -t ed25519 127.0.0.1 2>/dev/null | grep -qF "$(cut -d" " -f2 /tmp/k.pub)"; then
                echo served; exit 0
            fi
            sleep 0.3
        done
        exit 1
    ') || true
    [[ $out == served ]] || { berth_log "sshd did not serve its host key: $out"; return 1; }
    out=$(docker run --rm --label berth-test=images-build "$tag" bash -c 'echo ok')
    [[ $out == ok ]] || { berth_log "unexpected bash output: $out"; return 1; }
}

# ---------------------------------------------------------------------------
# berth-test/ssh-hostile: berth-test/ssh whose own sshd config would lock berth out
# (other ports and listen address, no authorized keys, no root login, passwords on)
# and whose root has a password: berth must ignore all of it.

# Run SCRIPT with /bin/sh in a new container of BASE, then commit the container as
# TAG with the given --change instructions (plus the labels of image_labels).
commit_from() { # BASE TAG NAME SCRIPT CHANGE...
    local base=$1 tag=$2 name=$3 script=$4 cid c labels
    shift 4
    labels=$(image_labels "$name")
    local args=(--message "berth test image $tag (images/build.sh)")
    while IFS= read -r c; do args+=(--change "$c"); done <<<"$labels"
    for c in "$@"; do args+=(--change "$c"); done
    cid=$(docker create --network none "$base" /bin/sh -c "$script")
    CONTAINERS+=("$cid")
    docker start -a "$cid" >&2
    [[ $(docker inspect -f '{{.State.ExitCode}}' "$cid") == 0 ]] || { berth_log "build script failed in $base"; return 1; }
    docker commit "${args[@]}" "$cid" "$tag" >/dev/null
    docker rm -f "$cid" >/dev/null
    unset 'CONTAINERS[${#CONTAINERS[@]}-1]'
}

build_ssh_hostile() { # TAG
    local tag=$1
    # sshd keeps the first value it reads for most keywords, so the hostile settings
    # go first; Port accumulates (2223 from evil.conf via the Include, then 2222).
    # shellcheck disable=SC2016 # the script is expanded by the container's shell
    commit_from berth-test/ssh:latest "$tag" ssh-hostile '
        set -e
        f=/etc/ssh/sshd_config
        { printf "%s\n" "# berth-test/ssh-hostile: berth must ignore this file" \
            "Port 2222" "ListenAddress 127.0.0.2" "PasswordAuthentication yes" \
            "AuthorizedKeysFile /nonexistent" "PermitRootLogin no" ""
          cat "$f"; } >"$f.new"
        mv "$f.new" "$f"
        chmod 644 "$f"
        printf "%s\n" "# berth-test/ssh-hostile" "Port 2223" >/etc/ssh/sshd_config.d/evil.conf
        echo root:hunter2 | chpasswd
    ' \
        'CMD ["/bin/bash"]'
}

verify_ssh_hostile() { # TAG
    local tag=$1 out want
    verify_ssh_common "$tag" null || return 1
    out=$(docker run --rm --label berth-test=images-build --network none --entrypoint /bin/sh "$tag" -c '
        set -e
        ssh-keygen -q -t ed25519 -N "" -f /tmp/k
        mkdir -p /run/sshd
        /usr/sbin/sshd -T -f /etc/ssh/sshd_config -h /tmp/k |
            grep -E "^(port|listenaddress|passwordauthentication|authorizedkeysfile|permitrootlogin) " | sort
        getent shadow root | cut -d: -f2 | cut -c1
    ')
    want=$'authorizedkeysfile /nonexistent\nlistenaddress 127.0.0.2:2222\nlistenaddress 127.0.0.2:2223\npasswordauthentication yes\npermitrootlogin no\nport 2222\nport 2223\n$'
    [[ $out == "$want" ]] || { berth_log "unexpected hostile sshd config: $out"; return 1; }
}

# ---------------------------------------------------------------------------
# berth-test/ssh-user: berth-test/ssh run as user app in /home/app, with an
# ENTRYPOINT that fails loudly: ssh mode must not run it.

build_ssh_user() { # TAG
    local tag=$1
    commit_from berth-test/ssh:latest "$tag" ssh-user 'id app' \
        'USER app' \
        'WORKDIR /home/app' \
        'ENTRYPOINT ["/bin/sh","-c","echo this entrypoint must not run in ssh mode; exit 7"]' \
        'CMD ["/bin/bash"]'
}

verify_ssh_user() { # TAG
    local tag=$1 out rc=0
    verify_ssh_common "$tag" '["/bin/sh","-c","echo this entrypoint must not run in ssh mode; exit 7"]' || return 1
    out=$(docker image inspect -f '{{.Config.User}} {{.Config.WorkingDir}}' "$tag")
    [[ $out == 'app /home/app' ]] || { berth_log "unexpected user/workdir: $out"; return 1; }
    out=$(docker run --rm --label berth-test=images-build --network none "$tag") || rc=$?
    [[ $rc == 7 && $out == 'this entrypoint must not run in ssh mode' ]] ||
        { berth_log "unexpected entrypoint run (exit $rc): $out"; return 1; }
    out=$(docker run --rm --label berth-test=images-build --network none --entrypoint /bin/sh "$tag" -c 'id app; id -u; pwd')
    [[ $out == $'uid=1000(app) gid=1000(app) groups=1000(app)\n1000\n/home/app' ]] ||
        { berth_log "unexpected output as app: $out"; return 1; }
}

# ---------------------------------------------------------------------------
# berth-test/jupyter: berth-test/ssh + Debian's classic Notebook 6 (python3-notebook
# with its python3-ipykernel, and jupyter-notebook for /usr/bin/jupyter-notebook;
# kernel /usr/bin/python3) and
# JupyterLab, which Debian does not package: pip-installed with its own ipykernel
# into the isolated venv /opt/jlab (so Debian's Notebook stack stays untouched),
# linked as /usr/local/bin/jupyter-lab. No Jupyter is started by the image: berth's
# init starts it. Both serve TLS with --certfile/--keyfile and read JUPYTER_TOKEN.

# Run pip inside ROOT with a clean environment: the host's PyPI settings that make
# sense inside the chroot (proxies, index URLs) pass through, its CA bundle is copied
# in (PIP_CERT, else Debian's bundle), no pip config or cache. Needs ROOT's
# /etc/resolv.conf filled in (clean_debian_root empties it again).
root_pip() { # ROOT PIP_ARGS...
    local root=$1 v ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
    shift
    local env=("$PATH_ENV" HOME=/root LANG=C.UTF-8 PIP_CONFIG_FILE=/dev/null
        PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
        PIP_DEFAULT_TIMEOUT="${PIP_DEFAULT_TIMEOUT:-60}")
    for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY \
        PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST; do
        [[ -z ${!v:-} ]] || env+=("$v=${!v}")
    done
    if [[ -f $ca ]]; then
        cp "$ca" "$root/tmp/berth-pip-ca.crt"
        env+=(PIP_CERT=/tmp/berth-pip-ca.crt)
    fi
    chroot "$root" env -i "${env[@]}" "$@" >&2
}

build_jupyter() { # TAG
    local tag=$1 root venv=/opt/jlab
    new_workdir
    root=$WORK/root
    mkdir "$root"
    rootfs_from_image berth-test/ssh:latest "$root"
    root_apt_install "$root" jupyter-notebook python3-notebook python3-venv
    berth_log "pip install ${JUPYTERLAB_PIP[*]} into $venv"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    root_pip "$root" python3 -m venv "$venv"
    root_pip "$root" "$venv/bin/pip" install -q "${JUPYTERLAB_PIP[@]}"
    # pip and setuptools are not needed at run time.
    root_pip "$root" "$venv/bin/pip" uninstall -q -y pip setuptools
    ln -s "$venv/bin/jupyter-lab" "$root/usr/local/bin/jupyter-lab"
    clean_debian_root "$root"
    rm -rf "$root/root/.cache"
    find "$root/run" -mindepth 1 -maxdepth 1 ! -name lock ! -name mount -exec rm -rf {} +
    import_root "$root" "$tag" jupyter \
        "ENV $PATH_ENV" \
        'CMD ["/bin/bash"]'
}

# Start `CMD` (jupyter-notebook or jupyter-lab) from TAG over TLS with the
# self-signed certificate in CERTS, as berth's init would, and check it through the
# published port: /api answers, the token is required for /api/kernels, a kernel
# started over REST runs under KERNEL_PYTHON (its state stays "starting" until a
# client connects to its channels, so that is not waited for). Logs the version.
verify_jupyter_server() { # TAG CMD CERTS KERNEL_PYTHON
    local tag=$1 cmd=$2 certs=$3 kpy=$4 cid rc=0
    cid=$(docker run -d --label berth-test=images-build -p 127.0.0.1::8080 \
        -e JUPYTER_TOKEN=x -v "$certs:/certs:ro" "$tag" \
        "$cmd" --certfile=/certs/cert.pem --keyfile=/certs/key.pem \
        --ip=0.0.0.0 --port=8080 --no-browser --allow-root --notebook-dir=/) || return 1
    CONTAINERS+=("$cid")
    verify_jupyter_server_in "$cid" "$cmd" "$kpy" || rc=$?
    if ((rc)); then docker logs --tail 30 "$cid" >&2 || true; fi
    docker rm -f "$cid" >/dev/null
    unset 'CONTAINERS[${#CONTAINERS[@]}-1]'
    return "$rc"
}

verify_jupyter_server_in() { # CID CMD KERNEL_PYTHON
    local cid=$1 cmd=$2 kpy=$3 hp url body code ver="" kid i out
    hp=$(docker port "$cid" 8080/tcp | head -n1)
    [[ -n $hp ]] || { berth_log "$cmd: port 8080 not published"; return 1; }
    url=https://$hp
    for ((i = 0; i < 120; i++)); do
        body=$(curl -sk --max-time 2 "$url/api" 2>/dev/null) || true
        if [[ $body =~ \"version\":\ *\"([^\"]+)\" ]]; then ver=${BASH_REMATCH[1]}; break; fi
        [[ $(docker inspect -f '{{.State.Running}}' "$cid") == true ]] ||
            { berth_log "$cmd exited before serving"; return 1; }
        sleep 0.5
    done
    [[ -n $ver ]] || { berth_log "$cmd: no JSON version from $url/api within 60s"; return 1; }
    code=$(curl -sk -o /dev/null -w '%{http_code}' "$url/api/kernels?token=x")
    [[ $code == 200 ]] || { berth_log "$cmd: /api/kernels with token: HTTP $code, want 200"; return 1; }
    code=$(curl -sk -o /dev/null -w '%{http_code}' "$url/api/kernels")
    [[ $code == 403 ]] || { berth_log "$cmd: /api/kernels without token: HTTP $code, want 403"; return 1; }
    code=$(curl -sk -o /dev/null -w '%{http_code}' "$url/api/kernels?token=wrong")
    [[ $code == 403 ]] || { berth_log "$cmd: /api/kernels with a wrong token: HTTP $code, want 403"; return 1; }
    if [[ $cmd == jupyter-lab ]]; then
        code=$(curl -sk -o /dev/null -w '%{http_code}' "$url/lab?token=x")
        [[ $code == 200 ]] || { berth_log "$cmd: /lab?token=x: HTTP $code, want 200"; return 1; }
    else
        code=$(curl -sk -o /dev/null -w '%{http_code}' "$url/tree?token=x")
        [[ $code == 200 ]] || { berth_log "$cmd: /tree?token=x: HTTP $code, want 200"; return 1; }
    fi
    # A kernel started through the REST API comes up under the expected Python.
    body=$(curl -sk -X POST -H 'Content-Type: application/json' -d '{"name":"python3"}' \
        "$url/api/kernels?token=x")
    [[ $body =~ \"id\":\ *\"([0-9a-f-]+)\" ]] || { berth_log "$cmd: kernel start failed: $body"; return 1; }
    kid=${BASH_REMATCH[1]}
    for ((i = 0; i < 60; i++)); do
        out=$(docker exec "$cid" ps -eo args | grep -m1 'ipykernel_launcher' | cut -d' ' -f1) || true
        [[ -z $out ]] || break
        sleep 0.5
    done
    [[ $out == "$kpy" ]] || { berth_log "$cmd: kernel runs under '$out', want $kpy"; return 1; }
    code=$(curl -sk -o /dev/null -w '%{http_code}' -X DELETE "$url/api/kernels/$kid?token=x")
    [[ $code == 204 ]] || { berth_log "$cmd: kernel delete: HTTP $code, want 204"; return 1; }
    berth_log "$cmd serves TLS: /api version $ver, kernel python3 runs under $kpy"
}

verify_jupyter() { # TAG
    local tag=$1 out certs
    berth_need_pkgs openssl curl
    verify_ssh_common "$tag" null || return 1
    # Each Python has its ipykernel and evaluates 1+1 in a kernel of its own.
    out=$(docker run --rm --label berth-test=images-build --network none "$tag" /bin/sh -c '
        set -e
        for py in /usr/bin/python3 /opt/jlab/bin/python3; do
            "$py" -c "
from jupyter_client.manager import start_new_kernel
km, kc = start_new_kernel(kernel_name=\"python3\")
try:
    r = kc.execute(\"1+1\")
    while True:
        m = kc.get_iopub_msg(timeout=30)
        if m[\"parent_header\"].get(\"msg_id\") == r and m[\"msg_type\"] == \"execute_result\":
            assert m[\"content\"][\"data\"][\"text/plain\"] == \"2\", m
            break
finally:
    kc.stop_channels(); km.shutdown_kernel(now=True)
del kc, km
"
        done
        echo "notebook $(jupyter-notebook --version) lab $(jupyter-lab --version)"
    ' 2>&1) || { berth_log "jupyter kernel check failed: $out"; return 1; }
    out=${out##*$'\n'} # the versions line; the rest is the kernels' stderr chatter
    [[ $out =~ ^notebook\ 6\.[0-9.]+\ lab\ 4\.[0-9.]+$ ]] || { berth_log "unexpected versions: $out"; return 1; }
    berth_log "$tag: $out"
    new_workdir
    certs=$WORK
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
        -keyout "$certs/key.pem" -out "$certs/cert.pem" 2>/dev/null ||
        { berth_log "openssl could not make a test certificate"; return 1; }
    chmod 755 "$certs"
    chmod 644 "$certs/cert.pem" "$certs/key.pem"
    verify_jupyter_server "$tag" jupyter-notebook "$certs" /usr/bin/python3 || return 1
    verify_jupyter_server "$tag" jupyter-lab "$certs" /opt/jlab/bin/python3 || return 1
}

# ---------------------------------------------------------------------------
# berth-test/argserver: berth-test/jupyter (python3 and sshd) whose ENTRYPOINT+CMD
# start a web server on 8765 that answers GET / with {"argv": [...], "cwd": "..."}.
# The CMD holds every kind of argument a shell would mangle (quotes, $, backticks,
# spaces, a backslash, a newline, an empty string) and the WORKDIR has a space: a
# template made from it (`berth templates create --from-image`) must pass them on
# exactly when it moves them into an onstart script.

# The image's CMD as JSON (exactly what the template tests expect back as argv).
ARGSERVER_CMD=$(cat <<'EOF'
["--greeting","it's \"odd\" $HOME `x`","a b","back\\slash","line\nbreak",""]
EOF
)

build_argserver() { # TAG
    local tag=$1
    # shellcheck disable=SC2016 # the script is expanded by the container's shell
    commit_from berth-test/jupyter:latest "$tag" argserver '
        set -e
        mkdir -p "/srv/app dir"
        cat >/usr/local/bin/argserver.py <<"EOF"
"""berth-test/argserver: answers GET / with its argv and working directory as JSON."""
import http.server
import json
import os
import sys

PORT = 8765


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


print(f"argserver on :{PORT} argv={sys.argv[1:]!r} cwd={os.getcwd()!r}", flush=True)
http.server.ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
EOF
        chmod 755 /usr/local/bin/argserver.py
    ' \
        'ENTRYPOINT ["python3","/usr/local/bin/argserver.py"]' \
        "CMD $ARGSERVER_CMD" \
        'WORKDIR /srv/app dir' \
        'EXPOSE 8765' \
        'ENV GREETING_STYLE=loud'
}

verify_argserver() { # TAG
    local tag=$1 out cid rc=0
    out=$(docker image inspect -f '{{json .Config.Entrypoint}} {{json .Config.Cmd}}|{{.Config.WorkingDir}}|{{json .Config.ExposedPorts}}' "$tag")
    [[ $out == "[\"python3\",\"/usr/local/bin/argserver.py\"] $ARGSERVER_CMD|/srv/app dir|{\"8765/tcp\":{}}" ]] ||
        { berth_log "unexpected image config: $out"; return 1; }
    docker image inspect -f '{{json .Config.Env}}' "$tag" | grep -q '"GREETING_STYLE=loud"' ||
        { berth_log "GREETING_STYLE missing from the image's env"; return 1; }
    # Run as Docker would, ask it over its own loopback, and compare with the CMD.
    cid=$(docker run -d --label berth-test=images-build --network none "$tag") || return 1
    CONTAINERS+=("$cid")
    docker exec -e WANT="$ARGSERVER_CMD" "$cid" python3 -c '
import json, os, time, urllib.request
want = {"argv": json.loads(os.environ["WANT"]), "cwd": "/srv/app dir"}
for _ in range(100):
    try:
        got = json.load(urllib.request.urlopen("http://127.0.0.1:8765/", timeout=2))
        break
    except OSError:
        time.sleep(0.1)
else:
    raise SystemExit("argserver did not answer on 8765")
assert got == want, (got, want)
print("argserver answers", got)
' >&2 || rc=$?
    if ((rc)); then docker logs --tail 30 "$cid" >&2 || true; fi
    docker rm -f "$cid" >/dev/null
    unset 'CONTAINERS[${#CONTAINERS[@]}-1]'
    return "$rc"
}

# ---------------------------------------------------------------------------
# driver

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }

image_label() { # TAG LABEL -> label value, empty when the image or label is missing
    docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

build_one() { # NAME
    local name=$1 tag="berth-test/$1:latest" rev=${REV[$1]} cur old_id="" t0 secs
    local base_ok=1 base_tag=""
    cur=$(image_label "$tag" "$REV_LABEL")
    if [[ -n ${BASE[$name]:-} ]]; then
        base_tag=berth-test/${BASE[$name]}:latest
        [[ $(image_label "$tag" "$BASE_LABEL") == "$(image_id "$base_tag")" ]] || base_ok=0
    fi
    local force=0
    [[ $FORCE == 1 && $FORCED == *" $name "* ]] && force=1
    if [[ $force == 0 && -n $cur && $cur == "$rev" && $base_ok == 1 ]]; then
        berth_log "$tag is up to date (rev $cur)"
        return
    fi
    if [[ -n $cur ]]; then
        old_id=$(image_id "$tag")
        berth_log "rebuilding $tag (have rev '$cur', recipe rev $rev$( ((base_ok)) || echo ", $base_tag changed")$( ((force)) && echo ', --force'))"
    else
        berth_log "building $tag"
    fi
    t0=$(date +%s.%N)
    # Not `build_x || ...`: that would disable set -e inside the build function.
    CURRENT=$tag
    "build_${name//-/_}" "$tag"
    CURRENT=""
    cleanup # free the temp dirs right away
    if ! "verify_${name//-/_}" "$tag"; then
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
FORCED=" ${WANT[*]} " # --force applies to these, not to bases pulled in below
# A derived image needs its base: want that too (bases come earlier in IMAGES).
for ((i = ${#IMAGES[@]} - 1; i >= 0; i--)); do
    n=${IMAGES[i]}
    if [[ " ${WANT[*]} " == *" $n "* && -n ${BASE[$n]:-} && " ${WANT[*]} " != *" ${BASE[$n]} "* ]]; then
        WANT+=("${BASE[$n]}")
    fi
done

[[ $EUID -eq 0 ]] || berth_die "must run as root (debootstrap, chroot)"
docker info >/dev/null 2>&1 || berth_die "'docker info' failed: is the Docker daemon running and reachable?"

# Serialize concurrent builds on this machine.
exec 9>"${TMPDIR:-/tmp}/berth-images-build.lock"
flock 9

# Build in IMAGES order so derived images come after their bases.
for n in "${IMAGES[@]}"; do
    if [[ " ${WANT[*]} " == *" $n "* ]]; then build_one "$n"; fi
done
ready=()
for n in "${IMAGES[@]}"; do
    if [[ " ${WANT[*]} " == *" $n "* ]]; then ready+=("berth-test/$n"); fi
done
berth_log "images ready: ${ready[*]}"
