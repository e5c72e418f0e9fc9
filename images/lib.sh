# shellcheck shell=bash
# Shared helpers for the berth test-infrastructure scripts (images/, scripts/).
# Source it; it defines functions only and changes no shell options.

berth_log() { printf '[%s] %s\n' "${BERTH_LOG_TAG:-berth}" "$*" >&2; }
berth_die() { printf '[%s] ERROR: %s\n' "${BERTH_LOG_TAG:-berth}" "$*" >&2; exit 1; }

# The host's Debian codename (VERSION_CODENAME from /etc/os-release).
berth_codename() {
    local c
    c=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
    [[ -n $c ]] || berth_die "no VERSION_CODENAME in /etc/os-release"
    printf '%s\n' "$c"
}

# Print "URI<TAB>SUITES<TAB>COMPONENTS" for every enabled `deb` entry of the
# machine's apt sources, in apt's order: /etc/apt/sources.list, then
# /etc/apt/sources.list.d/*.list and *.sources (other suffixes are ignored by apt).
# Handles the one-line format (with optional [options]) and deb822 stanzas.
berth_apt_source_entries() {
    local f files=()
    [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] && files+=("$f")
    done
    # Sort the sources.list.d part like apt does (plain byte order).
    local sorted=() main=()
    for f in "${files[@]}"; do
        if [[ $f == /etc/apt/sources.list ]]; then main+=("$f"); else sorted+=("$f"); fi
    done
    if ((${#sorted[@]})); then
        mapfile -t sorted < <(printf '%s\n' "${sorted[@]}" | LC_ALL=C sort)
    fi
    for f in "${main[@]}" "${sorted[@]}"; do
        case $f in
        *.sources)
            awk '
                function flush() {
                    if (types ~ /(^| )deb( |$)/ && enabled !~ /^(no|false|0)$/ && uris != "") {
                        n = split(uris, u, " ")
                        for (i = 1; i <= n; i++) printf "%s\t%s\t%s\n", u[i], suites, comps
                    }
                    types = uris = suites = comps = enabled = ""
                }
                /^[ \t]*#/ { next }
                /^[ \t]*$/ { flush(); next }
                /^[ \t]/   { next }                       # continuation line (e.g. inline key)
                {
                    key = tolower($0); sub(/:.*/, "", key)
                    val = $0; sub(/^[^:]*:[ \t]*/, "", val); gsub(/[ \t]+/, " ", val); sub(/ $/, "", val)
                    if (key == "types") types = val
                    else if (key == "uris") uris = val
                    else if (key == "suites") suites = val
                    else if (key == "components") comps = val
                    else if (key == "enabled") enabled = tolower(val)
                }
                END { flush() }
            ' "$f"
            ;;
        *)
            awk '
                { sub(/#.*/, "") }
                $1 == "deb" {
                    line = $0
                    gsub(/\[[^]]*\]/, " ", line)          # drop [arch=... signed-by=...]
                    n = split(line, w, /[ \t]+/)
                    k = 0
                    for (i = 1; i <= n; i++) if (w[i] != "") v[++k] = w[i]
                    if (k < 3) next
                    comps = ""
                    for (i = 4; i <= k; i++) comps = comps (comps == "" ? "" : " ") v[i]
                    printf "%s\t%s\t%s\n", v[2], v[3], comps
                }
            ' "$f"
            ;;
        esac
    done
}

# Print the URL of the machine's main Debian archive mirror, read from the apt
# sources at run time (never hard-coded). An entry qualifies when its suites
# include the host codename exactly, its components include "main", and it is not
# a -security archive. Among those, one whose downloaded Release file says
# "Origin: Debian" wins; otherwise the first qualifying entry is used.
# BERTH_DEBIAN_MIRROR overrides everything.
berth_debian_mirror() {
    if [[ -n ${BERTH_DEBIAN_MIRROR:-} ]]; then
        printf '%s\n' "${BERTH_DEBIAN_MIRROR%/}"
        return
    fi
    local codename uri suites comps first="" listname rel
    codename=$(berth_codename)
    while IFS=$'\t' read -r uri suites comps; do
        [[ " $suites " == *" $codename "* ]] || continue
        [[ " $comps " == *" main "* ]] || continue
        [[ $uri == *security* ]] && continue
        [[ $uri =~ ^(https?|ftp|file): ]] || continue
        uri=${uri%/}
        [[ -n $first ]] || first=$uri
        # apt's list file name: scheme stripped, '/' -> '_'
        listname=${uri#*://}
        listname=${listname#file:}
        listname=${listname//\//_}
        listname=${listname#_}
        for rel in "/var/lib/apt/lists/${listname}_dists_${codename}_InRelease" \
            "/var/lib/apt/lists/${listname}_dists_${codename}_Release"; do
            if [[ -f $rel ]] && grep -q '^Origin: Debian$' "$rel"; then
                printf '%s\n' "$uri"
                return
            fi
        done
    done < <(berth_apt_source_entries)
    [[ -n $first ]] || berth_die "no Debian '$codename' main archive found in /etc/apt/sources.list{,.d/*}"
    printf '%s\n' "$first"
}

# Install any of the given Debian packages that are not installed yet (needs root).
berth_need_pkgs() {
    local p missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    [[ $EUID -eq 0 ]] || berth_die "missing packages: ${missing[*]} (install them, or run as root)"
    berth_log "installing missing packages: ${missing[*]}"
    local apt=(apt-get install -y --no-install-recommends "${missing[@]}")
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" >&2 ||
        { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive "${apt[@]}" >&2; } ||
        berth_die "could not install: ${missing[*]}"
}

# Is TCP port $1 on 127.0.0.1 free (nothing listening)?
berth_port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Print a random currently-free TCP port in [20000, 60000).
berth_free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        if berth_port_free "$p"; then
            printf '%s\n' "$p"
            return
        fi
    done
    berth_die "no free TCP port found"
}
