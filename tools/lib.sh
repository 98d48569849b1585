# shellcheck shell=bash
# Shared helpers for the developer tools (sourced, never run directly).
set -euo pipefail

SNAPFLEET_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SNAPFLEET_CACHE="${SNAPFLEET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/snapfleet}"
# Default location of a dattobd source tree for the real-driver tier (see docs/testing.md).
SNAPFLEET_DEFAULT_DATTOBD_SOURCE="$SNAPFLEET_CACHE/dattobd-source"
export SNAPFLEET_ROOT SNAPFLEET_CACHE SNAPFLEET_DEFAULT_DATTOBD_SOURCE

log() { printf '[snapfleet] %s\n' "$*" >&2; }
die() { printf '[snapfleet] ERROR: %s\n' "$*" >&2; exit 1; }

# Resolve the dattobd source for the real-driver tier: $DATTOBD_SOURCE, else the default cache folder.
# Prints the path, or nothing when neither exists.
dattobd_source() {
  if [ -n "${DATTOBD_SOURCE:-}" ]; then
    [ -e "$DATTOBD_SOURCE" ] || die "DATTOBD_SOURCE=$DATTOBD_SOURCE does not exist"
    printf '%s\n' "$DATTOBD_SOURCE"
  elif [ -d "$SNAPFLEET_DEFAULT_DATTOBD_SOURCE" ]; then
    printf '%s\n' "$SNAPFLEET_DEFAULT_DATTOBD_SOURCE"
  fi
}

venv_dir() {
  local h
  h=$(sha256sum "$SNAPFLEET_ROOT/tools/requirements-dev.txt" | cut -c1-12)
  printf '%s/venv-%s\n' "$SNAPFLEET_CACHE" "$h"
}

# The ansible-core minors the collection claims (meta/runtime.yml requires_ansible): tools/test's
# sanity tier runs ansible-test sanity with each of them.
SANITY_CORE_VERSIONS=(2.17 2.18 2.19)

# The venv for ansible-test sanity --local of one ansible-core minor (default: the newest claimed):
# keyed by the dev requirements and the minor; it holds that ansible-core and its pinned sanity
# requirements.
sanity_venv_dir() {
  printf '%s-sanity-%s\n' "$(venv_dir)" "${1:-${SANITY_CORE_VERSIONS[-1]}}"
}

# Activate the cached development virtualenv (created by tools/bootstrap).
activate_venv() {
  local v
  v=$(venv_dir)
  [ -x "$v/bin/python" ] || die "development venv missing: run tools/bootstrap first"
  # shellcheck disable=SC1091
  . "$v/bin/activate"
}

# Run a command whose output goes to a log file, printing every SNAPFLEET_PROGRESS_SECONDS (30 s) a line
# with the elapsed time and what the log says it is doing (the last Ansible TASK, or the last line).
# Usage: with_progress LABEL LOGFILE command [args...]   (exit status of the command)
checkout_collections() {
  # The checkout as the collection snapfleet.dattobd (FQCN roles and modules resolve from here), in
  # a collections path of its own: two runs from different checkouts at once (a VM test from a
  # clone beside the lab) each keep their own code. Prints the path (for ANSIBLE_COLLECTIONS_PATH).
  local colls
  colls="$SNAPFLEET_CACHE/collections/$(printf '%s' "$SNAPFLEET_ROOT" | sha256sum | cut -c1-12)"
  mkdir -p "$colls/ansible_collections/snapfleet"
  ln -sfn "$SNAPFLEET_ROOT" "$colls/ansible_collections/snapfleet/dattobd"
  echo "$colls"
}

# The environment variable that points a guest image's overlays at another base (an engine overlay):
# SNAPFLEET_VM_BASE_<IMAGE>, upper case, '-' as '_' (debian12-dracut: SNAPFLEET_VM_BASE_DEBIAN12_DRACUT).
# extensions/molecule/resources/create.yml reads the same name.
vm_base_var() {
  local v=${1^^}
  printf 'SNAPFLEET_VM_BASE_%s\n' "${v//-/_}"
}

# How far the running DKMS build of dattobd under ROOT (a build root, or /) is: the line the engine
# role's PRE_BUILD step keeps in the build directory ("configure test 57 of 112 for <kernel>"), and
# once it says "compiling", the objects kbuild has made of the module's sources. Prints nothing when
# there is no build.   Usage: dkms_progress ROOT
dkms_progress() {
  local f="" cand dir text srcs=0 objs=0 c
  for cand in "$1"/var/lib/dkms/dattobd/*/build/.snapfleet-progress; do  # the newest
    [ -e "$cand" ] || continue
    if [ -z "$f" ] || [ "$cand" -nt "$f" ]; then f=$cand; fi
  done
  [ -n "$f" ] && [ -r "$f" ] || return 0
  dir=${f%/*}
  text=$(head -c 200 "$f")
  if [[ $text == *compiling ]]; then
    for c in "$dir"/*.c; do
      [ -e "$c" ] || continue
      [[ $c == *.mod.c ]] && continue  # kbuild's own (dattobd.mod.c), made at the link
      srcs=$((srcs + 1))
      [ -e "${c%.c}.o" ] && objs=$((objs + 1))
    done
    text="${text%compiling}compiling: $objs of $srcs objects"
  fi
  printf '%s' "$text"
}

with_progress() {
  local label=$1 logf=$2 pid rc t0=$SECONDS every=${SNAPFLEET_PROGRESS_SECONDS:-30}
  shift 2
  "$@" >"$logf" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    local i=0
    while [ "$i" -lt "$every" ] && kill -0 "$pid" 2>/dev/null; do sleep 1; i=$((i + 1)); done
    kill -0 "$pid" 2>/dev/null || break
    local at
    at=$(grep -E '^TASK \[' "$logf" 2>/dev/null | tail -1 | sed -E 's/^TASK \[(.*)\] \**$/\1/')
    [ -n "$at" ] || at=$(tail -1 "$logf" 2>/dev/null | cut -c1-120)
    local detail=""
    local root=${SNAPFLEET_BUILD_ROOT:-${PROGRESS_BUILD_ROOT:-}}
    if [ -n "$root" ] && [[ $at == *"Build the module"* ]]; then
      detail=$(dkms_progress "$root")
    fi
    log "$label: $((SECONDS - t0))s, at: ${at:-starting}${detail:+ - $detail}"
  done
  set +e
  wait "$pid"
  rc=$?
  set -e
  return "$rc"
}
