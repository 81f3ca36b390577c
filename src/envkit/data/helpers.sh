# envkit mirror helper: sourced before the steps run (in a Dockerfile through BASH_ENV,
# on every RUN). ENVKIT_MIRROR_<TOOL> lists a tool's mirrors in order; '-' means the
# tool's own default. The first one that answers is used; a skipped one is reported.
# Never fails: a mirror that does not answer is the tool's error to report, not ours.

envkit_mirror_answers() {
  # a TCP connection within 5 s to the URL's host and port
  local url=$1 rest host port
  [ "$url" = - ] && return 0
  rest=${url#*://}
  rest=${rest%%/*}
  host=${rest%:*}
  port=${rest##*:}
  if [ "$port" = "$rest" ]; then
    case $url in https://*) port=443 ;; *) port=80 ;; esac
  fi
  # shellcheck disable=SC2016  # expanded by the inner bash
  BASH_ENV='' timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2"' envkit-probe "$host" "$port" 2>/dev/null
}

envkit_mirror_pick() {
  # TOOL CANDIDATE... -> prints the first candidate that answers (the first when none does)
  local tool=$1 first=$2 url
  shift
  if [ "$#" -le 1 ]; then
    printf '%s' "$first"
    return 0
  fi
  for url in "$@"; do
    if envkit_mirror_answers "$url"; then
      [ "$url" = "$first" ] || printf '[envkit] %s mirror %s does not answer; using %s\n' \
        "$tool" "$first" "$([ "$url" = - ] && echo "the default" || echo "$url")" >&2
      printf '%s' "$url"
      return 0
    fi
    [ "$url" = "$first" ] || printf '[envkit] %s mirror %s does not answer either\n' "$tool" "$url" >&2
  done
  printf '[envkit] no %s mirror answers; trying %s\n' "$tool" "$first" >&2
  printf '%s' "$first"
}

envkit_mirrors() {
  local pick
  # shellcheck disable=SC2086  # the lists are space-separated URLs
  pick=$(envkit_mirror_pick pip ${ENVKIT_MIRROR_PIP:--})
  if [ "$pick" != - ]; then
    export PIP_INDEX_URL="$pick" UV_DEFAULT_INDEX="$pick"
  fi
  # shellcheck disable=SC2086
  ENVKIT_APT_MIRROR=$(envkit_mirror_pick apt ${ENVKIT_MIRROR_APT:--})
  # shellcheck disable=SC2086
  ENVKIT_CONDA_MIRROR=$(envkit_mirror_pick conda ${ENVKIT_MIRROR_CONDA:--})
  # shellcheck disable=SC2086
  pick=$(envkit_mirror_pick github ${ENVKIT_MIRROR_GITHUB:--})
  if [ "$pick" != - ]; then
    # every git command, submodules included, reads this: no global config is written
    export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0="url.$pick.insteadOf" \
      GIT_CONFIG_VALUE_0=https://github.com/
  fi
  # shellcheck disable=SC2086
  pick=$(envkit_mirror_pick python-build ${ENVKIT_MIRROR_PYTHON_BUILD:--})
  if [ "$pick" != - ]; then
    # python.org's layout (VERSION/Python-VERSION.tar.xz); python-build still checks sha256
    export PYTHON_BUILD_MIRROR_URL="$pick" PYTHON_BUILD_MIRROR_URL_SKIP_CHECKSUM=1
  fi
  export ENVKIT_APT_MIRROR ENVKIT_CONDA_MIRROR ENVKIT_MIRRORS_PICKED=1
}

envkit_apt_sources() {
  # Point this apt-get run at the apt mirror without editing the system's sources:
  # a list in apt's own state folder (a cache mount in Docker builds, so in no layer).
  ENVKIT_APT_LIST=''
  [ "${ENVKIT_APT_MIRROR:--}" = - ] && return 0
  local id codename dir=${ENVKIT_APT_STATE:-/var/lib/apt/envkit} osr=${ENVKIT_OS_RELEASE:-/etc/os-release}
  # shellcheck disable=SC1090,SC1091
  id=$(. "$osr" 2>/dev/null && echo "${ID:-}") || id=''
  # shellcheck disable=SC1090,SC1091
  codename=$(. "$osr" 2>/dev/null && echo "${VERSION_CODENAME:-}") || codename=''
  mkdir -p "$dir/parts"
  case $id in
    debian)
      printf 'deb %s/debian %s main\ndeb %s/debian %s-updates main\ndeb %s/debian-security %s-security main\n' \
        "$ENVKIT_APT_MIRROR" "$codename" "$ENVKIT_APT_MIRROR" "$codename" \
        "$ENVKIT_APT_MIRROR" "$codename" > "$dir/sources.list" ;;
    ubuntu)
      printf 'deb %s/ubuntu %s main restricted universe multiverse\n' \
        "$ENVKIT_APT_MIRROR" "$codename" "$ENVKIT_APT_MIRROR" "$codename-updates" \
        "$ENVKIT_APT_MIRROR" "$codename-security" > "$dir/sources.list" ;;
    *)
      printf '[envkit] apt mirror: %s is neither Debian nor Ubuntu; keeping its sources\n' "$id" >&2
      return 0 ;;
  esac
  ENVKIT_APT_LIST=$dir/sources.list ENVKIT_APT_PARTS=$dir/parts
}

envkit_condarc() {
  # FILE [CHANNEL...]: a .condarc for the conda mirror (channels default to conda-forge)
  local file=$1 ch
  shift
  [ "$#" -gt 0 ] || set -- conda-forge
  mkdir -p "$(dirname "$file")"
  {
    echo "channels:"
    for ch in "$@"; do echo "  - $ch"; done
    echo "show_channel_urls: true"
    if [ "${ENVKIT_CONDA_MIRROR:--}" != - ]; then
      echo "default_channels:"
      echo "  - $ENVKIT_CONDA_MIRROR/pkgs/main"
      echo "  - $ENVKIT_CONDA_MIRROR/pkgs/r"
      echo "custom_channels:"
      for ch in conda-forge pytorch nvidia bioconda; do echo "  $ch: $ENVKIT_CONDA_MIRROR/cloud"; done
    fi
  } > "$file"
}

# shellcheck disable=SC2034  # read by apt steps
ENVKIT_APT_LIST='' ENVKIT_APT_PARTS=''
# once per shell tree: a step's own child shells inherit the choice
[ "${ENVKIT_MIRRORS_PICKED:-}" = 1 ] || envkit_mirrors
