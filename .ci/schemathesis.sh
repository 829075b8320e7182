#!/usr/bin/env bash
# Property-based test of the served OpenAPI document with schemathesis (PyPI): a real server on
# a GitHub stand-in, a real API key, a bounded number of examples per operation. Fails on any
# 5xx and on any response whose body does not match the document. Run by .ci/run after the
# tests; also runnable alone: `bash .ci/schemathesis.sh` (needs python3 and network for pip).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=/tmp/ghbs-schemathesis-venv
if [ ! -x "$venv/bin/schemathesis" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'schemathesis>=4,<5'
fi

cargo build -q -p github-backup-scheduler
cargo build -q -p ghbs-testkit --example standin
bin=target/debug/github-backup-scheduler
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# The stand-in reads commands on stdin; keep it open.
(sleep 3600 | target/debug/examples/standin >"$work/standin.out" 2>&1) &
pids+=($!)
for _ in $(seq 1 50); do grep -q "token for" "$work/standin.out" 2>/dev/null && break; sleep 0.2; done
api=$(sed -n 's/GitHub stand-in API: //p' "$work/standin.out")
token=$(sed -n 's/token for octocat: *//p' "$work/standin.out")

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Fuzzing sends many bad keys on purpose: a high failed-auth limit lets it reach the handlers.
"$bin" server --data-dir "$work/data" --listen "127.0.0.1:$port" --github-api-url "$api" \
  --auth-failures-per-minute 10000 >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null && break; sleep 0.2; done

export XDG_CONFIG_HOME="$work/cfg" HOME="$work/home"
mkdir -p "$HOME"
printf '%s\n' "$token" | "$bin" --server "http://127.0.0.1:$port" login --token-stdin >/dev/null
key=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(next(iter(d["servers"].values()))["api_key"])' \
  "$XDG_CONFIG_HOME/github-backup-scheduler/credentials.json")
# Something to find: a job with a snapshot.
"$bin" --server "http://127.0.0.1:$port" schedule octocat/hello-world --daily 03:00 >/dev/null
"$bin" --server "http://127.0.0.1:$port" run 1 --wait >/dev/null

# logout and key revocation would revoke the key under the run; everything else is exercised.
"$venv/bin/schemathesis" run "http://127.0.0.1:$port/api/v1/openapi.json" \
  --header "Authorization: Bearer $key" \
  --checks not_a_server_error,response_schema_conformance \
  --exclude-path /api/v1/logout --exclude-path "/api/v1/keys/{id}" \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" \
  --max-time "${SCHEMATHESIS_MAX_TIME:-150}" \
  --workers 2 \
  --suppress-health-check all
echo "schemathesis: no 5xx and every response matched the document"
