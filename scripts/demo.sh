#!/usr/bin/env bash
# The main job, end to end, on this machine with no AWS account:
#   sandbox up -> create cluster -> update (plan) -> update --yes -> validate --wait
#   -> export kubecfg -> delete --yes -> sandbox down
# It runs in a throw-away HOME, so your ~/.kube/config and ~/.kopsy are never touched.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/setup.sh
source "$ROOT/scripts/setup.sh"

demo="$(mktemp -d "${TMPDIR:-/tmp}/kopsy-demo.XXXXXX")"
export HOME="$demo"
cleanup() {
  kopsy sandbox down >/dev/null 2>&1 || true
  rm -rf "$demo"
}
trap cleanup EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
CLUSTER="${CLUSTER:-demo.example.com}"

mkdir -m 700 "$HOME/.ssh"
ssh-keygen -q -t ed25519 -N "" -C "kopsy-demo" -f "$HOME/.ssh/id_ed25519"

step kopsy sandbox up
eval "$(kopsy sandbox env)"
step kopsy create cluster "$CLUSTER" --zones us-east-1a,us-east-1b --node-count 2 \
  --ssh-public-key "$HOME/.ssh/id_ed25519.pub"
step kopsy get instancegroups
step kopsy update cluster "$CLUSTER"
step kopsy update cluster "$CLUSTER" --yes
step kopsy update cluster "$CLUSTER"            # a second run changes nothing
step kopsy validate cluster "$CLUSTER" --wait 5m --interval 2s
step kopsy export kubecfg "$CLUSTER" --admin
step kubectl config get-contexts
step kopsy delete cluster "$CLUSTER" --yes
step kopsy sandbox down
echo
echo "Done: the whole main job ran against the local sandbox (an emulation of AWS, not AWS)."
