#!/usr/bin/env bash
# The main job, end to end, on this machine with no AWS account.
# (Interim: until `kopsy sandbox` lands this runs create -> get against a local moto server.)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/setup.sh
source "$ROOT/scripts/setup.sh"
work="$(mktemp -d)"
port=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$VENV/bin/python" -m moto.server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null; rm -rf "$work"' EXIT
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=sandbox AWS_SECRET_ACCESS_KEY=sandbox AWS_REGION=us-east-1
unset AWS_PROFILE
"$VENV/bin/python" - <<'PY'
import os, time, urllib.request
deadline = time.time() + 20
while True:
    try:
        urllib.request.urlopen(os.environ["AWS_ENDPOINT_URL"] + "/moto-api/data.json", timeout=1)
        break
    except OSError:
        if time.time() > deadline:
            raise
        time.sleep(0.1)
PY
"$VENV/bin/python" -c 'import boto3; boto3.client("s3").create_bucket(Bucket="kopsy-demo")'
export KOPSY_STATE_STORE=s3://kopsy-demo
ssh-keygen -q -t ed25519 -N "" -f "$work/id_ed25519"
step() { echo; echo "\$ $*"; "$@"; }
step kopsy create cluster demo.example.com --zones us-east-1a,us-east-1b --ssh-public-key "$work/id_ed25519.pub"
step kopsy get clusters
step kopsy get instancegroups
