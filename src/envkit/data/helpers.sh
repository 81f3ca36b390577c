# envkit's runtime helpers: sourced before the steps run (in a Dockerfile through BASH_ENV,
# on every RUN; inlined in the shell script). Three parts:
# - mirrors: ENVKIT_MIRROR_<TOOL> lists a tool's mirrors in order; '-' means the tool's own
#   default. The first one that answers is used; a skipped one is reported. Never fails: a
#   mirror that does not answer is the tool's error to report, not ours.
# - a flaky network: downloads and clones retry with backoff, and a stalled transfer is
#   abandoned; each retry says why.
# - secrets: a step that uses one gets its variable for that step only.

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
  if [ -n "${ENVKIT_OFFLINE:-}" ]; then
    # an offline build (invoke build --offline DIR): pip and uv install from the exported
    # wheels alone, apt from the exported repository (envkit_apt_sources); nothing is probed
    export PIP_NO_INDEX=1 PIP_FIND_LINKS="$ENVKIT_OFFLINE/wheels" ENVKIT_APT_MIRROR=- \
      ENVKIT_CONDA_MIRROR=- ENVKIT_MIRRORS_PICKED=1
    return 0
  fi
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
  # shellcheck disable=SC2086
  pick=$(envkit_mirror_pick python-standalone ${ENVKIT_MIRROR_PYTHON_STANDALONE:--})
  if [ "$pick" != - ]; then
    # python-build-standalone's release layout (TAG/FILE); uv still checks each sha256
    export UV_PYTHON_INSTALL_MIRROR="$pick"
  fi
  export ENVKIT_APT_MIRROR ENVKIT_CONDA_MIRROR ENVKIT_MIRRORS_PICKED=1
}

envkit_apt_sources() {
  # Point this apt-get run at the apt mirror (or, with ENVKIT_APT_SNAPSHOT=YYYYMMDDTHHMMSSZ
  # from a lock, at that day's snapshot of the archive) without editing the system's sources:
  # a list in apt's own state folder (a cache mount in Docker builds, so in no layer).
  ENVKIT_APT_LIST=''
  local snapshot=${ENVKIT_APT_SNAPSHOT:-}
  if [ -n "${ENVKIT_OFFLINE:-}" ]; then
    # the exported flat repository of the lock's .debs (their SHA256 in its Packages)
    mkdir -p "${ENVKIT_APT_STATE:-/var/lib/apt/envkit}/parts"
    printf 'deb [trusted=yes] file:%s ./\n' "$ENVKIT_OFFLINE/apt" > "${ENVKIT_APT_STATE:-/var/lib/apt/envkit}/sources.list"
    ENVKIT_APT_LIST=${ENVKIT_APT_STATE:-/var/lib/apt/envkit}/sources.list
    ENVKIT_APT_PARTS=${ENVKIT_APT_STATE:-/var/lib/apt/envkit}/parts
    return 0
  fi
  [ "${ENVKIT_APT_MIRROR:--}" = - ] && [ -z "$snapshot" ] && return 0
  local id codename dir=${ENVKIT_APT_STATE:-/var/lib/apt/envkit} osr=${ENVKIT_OS_RELEASE:-/etc/os-release}
  local root=${ENVKIT_APT_MIRROR:--} opt=''
  # shellcheck disable=SC1090,SC1091
  id=$(. "$osr" 2>/dev/null && echo "${ID:-}") || id=''
  # shellcheck disable=SC1090,SC1091
  codename=$(. "$osr" 2>/dev/null && echo "${VERSION_CODENAME:-}") || codename=''
  mkdir -p "$dir/parts"
  case $id in
    debian)
      local main=$root/debian security=$root/debian-security
      if [ -n "$snapshot" ]; then
        main=https://snapshot.debian.org/archive/debian/$snapshot
        security=https://snapshot.debian.org/archive/debian-security/$snapshot
        opt='[check-valid-until=no] '
      fi
      printf 'deb %s%s %s main\ndeb %s%s %s-updates main\ndeb %s%s %s-security main\n' \
        "$opt" "$main" "$codename" "$opt" "$main" "$codename" \
        "$opt" "$security" "$codename" > "$dir/sources.list" ;;
    ubuntu)
      local main=$root/ubuntu
      if [ -n "$snapshot" ]; then
        main=https://snapshot.ubuntu.com/ubuntu/$snapshot
        opt='[check-valid-until=no] '
      fi
      printf 'deb %s%s %s main restricted universe multiverse\n' \
        "$opt" "$main" "$codename" "$opt" "$main" "$codename-updates" \
        "$opt" "$main" "$codename-security" > "$dir/sources.list" ;;
    *)
      printf '[envkit] apt mirror: %s is neither Debian nor Ubuntu; keeping its sources\n' "$id" >&2
      return 0 ;;
  esac
  ENVKIT_APT_LIST=$dir/sources.list ENVKIT_APT_PARTS=$dir/parts
}

envkit_os_suite() {
  # this system's release as a lock names it: the Debian suite, or ubuntuXX.YY
  local osr=${ENVKIT_OS_RELEASE:-/etc/os-release}
  # shellcheck disable=SC1090,SC1091
  (. "$osr" 2>/dev/null && if [ "${ID:-}" = ubuntu ]; then echo "ubuntu${VERSION_ID:-}"; else echo "${VERSION_CODENAME:-}"; fi) || true
}

envkit_apt_opts() {
  # the options every apt command gets: retries and timeouts, the CA bundle (ENVKIT_CA, set
  # by --ca-bundle) for https sources, and the sources list envkit_apt_sources made
  ENVKIT_APT_OPTS=(-o Acquire::Retries=5 -o Acquire::http::Timeout=60 -o Acquire::https::Timeout=60)
  [ -z "${ENVKIT_CA:-}" ] || ENVKIT_APT_OPTS+=(-o "Acquire::https::CAInfo=$ENVKIT_CA")
  [ -z "${ENVKIT_APT_LIST:-}" ] ||
    ENVKIT_APT_OPTS+=(-o "Dir::Etc::SourceList=$ENVKIT_APT_LIST" -o "Dir::Etc::SourceParts=$ENVKIT_APT_PARTS")
}

envkit_apt_get() {
  envkit_apt_opts
  DEBIAN_FRONTEND=noninteractive apt-get "${ENVKIT_APT_OPTS[@]}" "$@"
}

envkit_apt_cache() {
  envkit_apt_opts
  apt-cache "${ENVKIT_APT_OPTS[@]}" "$@"
}

envkit_apt_locked() {
  # RECIPE NAME=VERSION...: install exactly the locked versions. One the archive no longer
  # has (Debian drops superseded versions at point and security releases) fails in one line
  # naming it, the locked and the available version, and how to move on; with
  # ENVKIT_APT_VANISHED=newer a newer version of it is taken instead, said, and recorded
  # in /usr/local/share/envkit/apt-replaced for verify.
  local recipe=$1 spec name want have gone=0
  local pins=()
  shift
  for spec in "$@"; do
    name=${spec%%=*}
    want=${spec#*=}
    have=$(dpkg-query -W -f '${db:Status-Status} ${Version}' "$name" 2>/dev/null |
      sed -n 's/^installed //p') || have=''
    if [ -n "$have" ] && dpkg --compare-versions "$have" gt "$want"; then
      # the base already has a newer one (it was made after the lock): apt would downgrade
      if [ "${ENVKIT_APT_VANISHED:-fail}" = newer ]; then
        printf '[envkit] apt: %s %s is locked, but the base has %s, newer; keeping it (ENVKIT_APT_VANISHED=newer)\n' \
          "$name" "$want" "$have" >&2
        mkdir -p /usr/local/share/envkit
        printf '%s %s %s\n' "$name" "$want" "$have" >> /usr/local/share/envkit/apt-replaced
      else
        printf '[envkit] apt: %s %s is locked, but the base has %s, newer: run invoke lock --recipe %s --upgrade-package %s\n' \
          "$name" "$want" "$have" "$recipe" "$name" >&2
        gone=1
      fi
      continue
    fi
    if [ -n "$(envkit_apt_cache show "$name=$want" 2>/dev/null)" ]; then
      pins+=("$spec")
      continue
    fi
    have=$(envkit_apt_cache policy "$name" 2>/dev/null | sed -n 's/^  Candidate: //p')
    [ -n "$have" ] || have='(none)'
    if [ "${ENVKIT_APT_VANISHED:-fail}" = newer ] && [ "$have" != '(none)' ] &&
      dpkg --compare-versions "$have" gt "$want"; then
      printf '[envkit] apt: %s %s is locked, but the archive has only %s now; taking it (ENVKIT_APT_VANISHED=newer)\n' \
        "$name" "$want" "$have" >&2
      mkdir -p /usr/local/share/envkit
      printf '%s %s %s\n' "$name" "$want" "$have" >> /usr/local/share/envkit/apt-replaced
      pins+=("$name=$have")
      continue
    fi
    printf '[envkit] apt: %s %s is locked, but the archive has %s: run invoke lock --recipe %s --upgrade-package %s, or lock with --apt-snapshot DATE\n' \
      "$name" "$want" "$have" "$recipe" "$name" >&2
    gone=1
  done
  ((gone == 0)) || return 100
  envkit_apt_get install -y --no-install-recommends "${pins[@]}"
}

# --- uv ------------------------------------------------------------------------------------
# pip steps install with the pinned uv (ENVKIT_UV_REQ: uv==VERSION with its hashes). On a
# host, envkit hands its own uv in ENVKIT_UV; elsewhere the step's Python installs it once,
# hash-checked, from the pip index into ENVKIT_UV_DIR (a cache mount in Docker builds).

envkit_uv_bin() {
  # PYTHON: prints the uv to use, installing it first if need be. ENVKIT_UV_DIR names the
  # pinned version (uv-VERSION), so a new pin never finds an old uv there.
  local py=$1 dir=${ENVKIT_UV_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/envkit/uv} tmp boot=
  if [ -n "${ENVKIT_UV:-}" ] && [ -x "${ENVKIT_UV}" ]; then
    printf '%s' "$ENVKIT_UV"
    return 0
  fi
  if [ ! -x "$dir/bin/uv" ]; then
    mkdir -p -- "$(dirname -- "$dir")"
    tmp=$(mktemp -d "$dir.XXXXXX")
    if ! "$py" -m pip --version >/dev/null 2>&1; then
      # a Python without pip (Debian's python3): pip from a throwaway venv (ensurepip)
      boot=$(mktemp -d) && "$py" -m venv "$boot" && py=$boot/bin/python || py=''
    fi
    if [ -z "$py" ] || ! envkit_retry "installing uv" "$py" -m pip install --disable-pip-version-check \
      --no-input --quiet --no-deps --require-hashes --target "$tmp" -r "$ENVKIT_UV_REQ" >&2 ||
      [ ! -x "$tmp/bin/uv" ]; then
      printf '[envkit] could not install uv from the pip index (%s)\n' "$ENVKIT_UV_REQ" >&2
      rm -rf -- "$tmp" ${boot:+"$boot"}
      return 1
    fi
    [ -z "$boot" ] || rm -rf -- "$boot"
    [ -x "$dir/bin/uv" ] || rm -rf -- "$dir"  # a broken one (a stopped install) goes
    if ! mv -T -- "$tmp" "$dir" 2>/dev/null; then
      # another build was first; its uv is the same pin
      [ -x "$dir/bin/uv" ] && rm -rf -- "$tmp" || dir=$tmp
    fi
  fi
  printf '%s' "$dir/bin/uv"
}

envkit_uv_python() {
  # VERSION DIR: the CPython build (python-build-standalone) the pinned uv names for VERSION,
  # installed into DIR (uv checks its sha256), reachable as DIR/VERSION/bin/python3. uv
  # itself is installed with the base's python3 (Debian's, with python3-venv).
  local version=$1 dir=$2 boot uv found
  if ! boot=$(command -v python3); then
    printf '[envkit] a uv-managed Python needs the base'"'"'s python3 to install uv; add an apt step with python3 and python3-venv before it\n' >&2
    return 1
  fi
  uv=$(envkit_uv_bin "$boot") || return 1
  # the download is kept in uv's cache (a cache mount in Docker builds)
  envkit_retry "uv python install $version" env UV_PYTHON_INSTALL_DIR="$dir" \
    UV_PYTHON_DOWNLOADS=manual UV_PYTHON_CACHE_DIR="${UV_PYTHON_CACHE_DIR:-${UV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/uv}/python-downloads}" \
    "$uv" --no-config python install --no-bin "$version" || return 1
  found=$(UV_PYTHON_INSTALL_DIR="$dir" "$uv" --no-config python find --managed-python \
    --no-python-downloads "$version") || return 1
  # .../cpython-3.12.16-linux-x86_64-gnu/bin/python3.12 -> DIR/VERSION
  ln -sfn -- "$(dirname -- "$(dirname -- "$found")")" "$dir/$version"
  printf '[envkit] CPython %s: %s\n' "$version" "$("$dir/$version/bin/python3" -c 'import platform; print(platform.python_version())')" >&2
}

envkit_uv_pip() {
  # PYTHON SUBCOMMAND ARGS...: uv pip SUBCOMMAND ARGS for the environment of PYTHON
  local py=$1 sub=$2 uv
  shift 2
  uv=$(envkit_uv_bin "$py") || return 1
  if [ -n "${ENVKIT_OFFLINE:-}" ] && [ "$sub" = install ]; then
    set -- --no-index --find-links "$ENVKIT_OFFLINE/wheels" "$@"
  fi
  "$uv" pip "$sub" --no-config --python "$py" "$@"
}

envkit_uv_project() {
  # PYTHON NAME[EXTRAS] DIR [ARGS...]: install the project in DIR (a pyproject project) from a
  # copy of it, so a build backend's build/ and egg-info never land in DIR (read-only in a
  # Docker build, the user's own folder on a host)
  local py=$1 spec=$2 dir=$3 tmp rc=0
  shift 3
  tmp=$(mktemp -d) || return 1
  cp -a -- "$dir/." "$tmp/" || { rm -rf -- "$tmp"; return 1; }
  envkit_uv_pip "$py" install "$@" "$spec @ file://$tmp" || rc=$?
  rm -rf -- "$tmp"
  return "$rc"
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

# --- a flaky network ---------------------------------------------------------------------
# ENVKIT_RETRIES tries (default 4) per source, waiting ENVKIT_RETRY_DELAY (2) s, then twice as
# long each time, at most 30 s. A transfer slower than 1 kB/s for ENVKIT_STALL_TIMEOUT (60) s
# counts as failed, and a connection has ENVKIT_CONNECT_TIMEOUT (20) s.

envkit_backoff() {
  # ATTEMPT -> seconds to wait after that many failed tries. ENVKIT_RETRY_DELAY may have
  # decimals (0.05: the tests wait milliseconds); anything else means the default.
  local given=${ENVKIT_RETRY_DELAY:-2} whole frac='' ms n=1
  whole=${given%%.*}
  whole=${whole:-0}  # .5 is 0.5
  [[ $given == *.* ]] && frac=${given#*.}
  frac=${frac}000
  frac=${frac:0:3}
  if ! [[ $whole =~ ^[0-9]{1,4}$ && $frac =~ ^[0-9]{3}$ ]]; then
    whole=2 frac=000
  fi
  ms=$((10#$whole * 1000 + 10#$frac))
  while ((n < $1 && ms < 30000)); do
    ms=$((ms * 2))
    n=$((n + 1))
  done
  ((ms > 30000)) && ms=30000
  if ((ms % 1000)); then
    printf '%d.%03d' $((ms / 1000)) $((ms % 1000))
  else
    printf '%d' $((ms / 1000))
  fi
}

envkit_retry() {
  # WHAT CMD...: run CMD until it succeeds, ENVKIT_RETRIES tries at most
  local what=$1 tries=${ENVKIT_RETRIES:-4} attempt code wait
  shift
  for ((attempt = 1; ; attempt++)); do
    code=0
    "$@" || code=$?
    [ "$code" = 0 ] && return 0
    if ((attempt >= tries)); then
      printf '[envkit] %s failed %s times (exit %s); giving up\n' "$what" "$tries" "$code" >&2
      return "$code"
    fi
    wait=$(envkit_backoff "$attempt")
    printf '[envkit] %s failed (exit %s, try %s of %s); retrying in %ss\n' \
      "$what" "$code" "$attempt" "$tries" "$wait" >&2
    sleep "$wait"
  done
}

envkit_download() {
  # OUT URL...: fetch into OUT from the first URL that works, each tried ENVKIT_RETRIES times.
  # An answer that will not change (404, 403, 410) moves on to the next URL at once.
  local out=$1 tries=${ENVKIT_RETRIES:-4} url attempt status code wait
  shift
  for url in "$@"; do
    for ((attempt = 1; attempt <= tries; attempt++)); do
      code=0
      status=$(curl -sSL --fail --connect-timeout "${ENVKIT_CONNECT_TIMEOUT:-20}" \
        --speed-limit 1024 --speed-time "${ENVKIT_STALL_TIMEOUT:-60}" \
        -w '%{http_code}' -o "$out" -- "$url") || code=$?
      [ "$code" = 0 ] && return 0
      rm -f -- "$out"
      case $status in
        403 | 404 | 410)
          printf '[envkit] download from %s: HTTP %s\n' "$url" "$status" >&2
          break ;;
      esac
      if ((attempt < tries)); then
        wait=$(envkit_backoff "$attempt")
        printf '[envkit] download from %s failed (curl exit %s, HTTP %s, try %s of %s); retrying in %ss\n' \
          "$url" "$code" "${status:-000}" "$attempt" "$tries" "$wait" >&2
        sleep "$wait"
      else
        printf '[envkit] download from %s failed %s times\n' "$url" "$tries" >&2
      fi
    done
    [ "$url" = "${*: -1}" ] || printf '[envkit] trying the next source\n' >&2
  done
  printf '[envkit] no source of %s answered\n' "$1" >&2
  return 1
}

envkit_offline_file() {
  # SHA256 OUT: an offline build's download, from the export's files/ (by its sha256)
  if [ ! -f "$ENVKIT_OFFLINE/files/$1" ]; then
    printf '[envkit] the export has no file with sha256 %s: export again from this recipe\n' "$1" >&2
    return 1
  fi
  cp -- "$ENVKIT_OFFLINE/files/$1" "$2"
}

envkit_clone() {
  # URL DEST COMMIT [git clone options]: clone into DEST.part with retries, then rename it to
  # DEST. A DEST that is already a clone of URL at COMMIT (an earlier run) is kept.
  local url=$1 dest=$2 commit=$3 origin head
  shift 3
  while [[ $dest == */ && $dest != / ]]; do dest=${dest%/}; done  # DEST/ is DEST
  if [ -e "$dest" ]; then
    origin=$(git -C "$dest" config --get remote.origin.url 2>/dev/null) || origin=''
    if [ "$origin" != "$url" ]; then
      printf '[envkit] %s already exists and is not a clone of %s; remove it first\n' \
        "$dest" "$url" >&2
      return 1
    fi
    head=$(git -C "$dest" rev-parse -q --verify HEAD 2>/dev/null) || head=''
    if [ "$head" = "$commit" ]; then
      printf '[envkit] %s is already a clone of %s at %s\n' "$dest" "$url" "$commit" >&2
      return 0
    fi
    printf '[envkit] %s is a clone of %s at %s, not %s; cloning again\n' \
      "$dest" "$url" "${head:-nothing}" "$commit" >&2
    rm -rf -- "$dest"
  fi
  envkit_retry "git clone of $url" envkit_clone_once "$url" "$dest.part" "$@" &&
    mv -- "$dest.part" "$dest"
}

envkit_clone_once() {
  # URL DIR [options]: one try; a half-made DIR is removed so the next try starts clean
  local url=$1 dir=$2
  shift 2
  rm -rf -- "$dir"
  GIT_HTTP_LOW_SPEED_LIMIT=1000 GIT_HTTP_LOW_SPEED_TIME=${ENVKIT_STALL_TIMEOUT:-60} \
    git clone "$@" -- "$url" "$dir" && return 0
  local code=$?
  rm -rf -- "$dir"
  return "$code"
}

# --- the image's user ----------------------------------------------------------------------
# envkit_add_user NAME UID HOME: the user (and its group, gid UID) the image runs as. A name
# the base already holds with another id is an error: useradd would fail, or the image would
# run as an account it did not mean.
envkit_add_user() {
  local name=$1 uid=$2 home=$3 db entry id
  for db in passwd group; do
    entry=$(getent "$db" "$name") || continue
    id=$(printf '%s' "$entry" | cut -d: -f3)
    if [ "$id" != "$uid" ]; then
      printf '[envkit] the base already has a %s named %s with id %s, not %s: choose another name for the user\n' \
        "${db/passwd/user}" "$name" "$id" "$uid" >&2
      return 1
    fi
  done
  getent group "$uid" >/dev/null || groupadd --gid "$uid" "$name"
  getent passwd "$uid" >/dev/null ||
    useradd --uid "$uid" --gid "$uid" --create-home --home-dir "$home" --shell /bin/bash "$name"
}

# --- what an image holds -------------------------------------------------------------------

envkit_record_base() {
  # the base's Debian packages, before any step: verify compares what the steps added
  mkdir -p /usr/local/share/envkit
  if command -v dpkg-query >/dev/null; then
    envkit_dpkg_installed > /usr/local/share/envkit/base-packages.txt
  fi
}

envkit_installed() {
  # [PYTHON...]: each venv's distributions (name==version, under '# PYTHON'), then the
  # Debian packages (under '# dpkg'): what verify compares with the lock
  local py
  for py in "$@"; do
    printf '# %s\n' "$py"
    "$py" -c 'import importlib.metadata as m
for d in m.distributions():
    print(str(d.metadata.get("Name")) + "==" + str(d.version))' | LC_ALL=C sort -f
  done
  if command -v dpkg-query >/dev/null; then
    printf '# dpkg\n'
    envkit_dpkg_installed
  fi
}

envkit_dpkg_installed() {
  # 'NAME VERSION' of every installed Debian package (not those removed but configured), sorted
  dpkg-query -W -f '${db:Status-Status} ${Package} ${Version}\n' | sed -n 's/^installed //p' |
    LC_ALL=C sort
}

envkit_record_installed() {
  # PYTHON...: the manifest's pip freeze of each venv and dpkg-query -W, in the image
  mkdir -p /usr/local/share/envkit
  envkit_installed "$@" > /usr/local/share/envkit/installed.txt
}

# --- secrets ------------------------------------------------------------------------------

envkit_secret_use() {
  # VAR file|value ID: VAR is the path of secret ID's file, or its content, for this step.
  # The file is a BuildKit secret mount in a Docker build, and the shell script's private
  # copy on a host (ENVKIT_SECRETS_DIR). An optional secret that was not given leaves VAR unset.
  local file="${ENVKIT_SECRETS_DIR:-/run/secrets}/$3"
  if [ ! -f "$file" ]; then
    printf '[envkit] secret %s was not given; %s stays unset\n' "$3" "$1" >&2
    return 0
  fi
  if [ "$2" = file ]; then
    export "$1=$file"
  else
    export "$1=$(cat -- "$file")"
  fi
}

# shellcheck disable=SC2034  # read by apt steps
ENVKIT_APT_LIST='' ENVKIT_APT_PARTS=''
# once per shell tree: a step's own child shells inherit the choice
[ "${ENVKIT_MIRRORS_PICKED:-}" = 1 ] || envkit_mirrors
