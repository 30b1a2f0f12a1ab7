#!/usr/bin/env bash
# A real look at the Prefect UI: start a local Prefect server, run the quickstart through it (`mathaug build`,
# i.e. the flow), and take headless Chromium screenshots of the flow run page and of its funnel artifact.
#
#   bash bench/ui_screenshot.sh [OUT_DIR]        # default OUT_DIR: docs/
#
# Needs chromium (Debian: apt-get install -y chromium). Writes OUT_DIR/ui_flow_run.png (the run's Artifacts tab),
# OUT_DIR/ui_flow_run_logs.png (its timeline of batch tasks and logs), OUT_DIR/ui_funnel_artifact.png (the funnel
# table) and OUT_DIR/ui_summary_artifact.png (the markdown summary with sample rows).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$(realpath -m "${1:-$REPO/docs}")"
PY="${PYTHON:-$REPO/.venv/bin/python}"
CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}"
[ -n "$CHROMIUM" ] || { echo "chromium not found (apt-get install -y chromium)" >&2; exit 2; }

WORK="$(mktemp -d -t mathaug-ui-XXXXXX)"
PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export PREFECT_HOME="$WORK/prefect-home" PREFECT_SERVER_ANALYTICS_ENABLED=false
unset PREFECT_API_URL
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "starting prefect server on 127.0.0.1:$PORT"
# the UI asks the API at PREFECT_UI_API_URL (default: port 4200): point it at this server's port
PREFECT_UI_API_URL="http://127.0.0.1:$PORT/api" \
  "$PY" -m prefect server start --host 127.0.0.1 --port "$PORT" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
URL="http://127.0.0.1:$PORT"
for _ in $(seq 1 120); do
  curl -sf "$URL/api/health" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -sf "$URL/api/health" >/dev/null || { cat "$WORK/server.log" >&2; exit 1; }

echo "building the quickstart through the flow"
PREFECT_API_URL="$URL/api" "$PY" -m pipeline.cli build "$REPO/recipes/quickstart.yaml" --out "$WORK/quickstart" \
  >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log" >&2; exit 1; }

# the run's id and its artifacts' ids
read -r RUN_ID FUNNEL_ID SUMMARY_ID < <(PREFECT_API_URL="$URL/api" "$PY" - <<'EOF'
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

with get_client(sync_client=True) as client:
    run = client.read_flow_runs(limit=1)[0]
    arts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    by_key = {a.key: a.id for a in arts}
    print(run.id, by_key["mathaug-funnel"], by_key["mathaug-summary"])
EOF
)

mkdir -p "$DEST"
shoot() {  # URL FILE [HEIGHT]
  "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
    --no-first-run --user-data-dir="$(mktemp -d -p "$WORK")" --virtual-time-budget=15000 --hide-scrollbars \
    --screenshot="$2" --window-size="1400,${3:-900}" "$1" >/dev/null 2>&1
  echo "wrote $2"
}
# the flow run page, on its Artifacts tab (clicked after load: the UI ignores ?tab= before the run is loaded)
"$PY" "$REPO/bench/ui_tab_screenshot.py" "$CHROMIUM" "$URL/runs/flow-run/$RUN_ID" Artifacts "$DEST/ui_flow_run.png" 1400 1000
echo "wrote $DEST/ui_flow_run.png"
shoot "$URL/runs/flow-run/$RUN_ID" "$DEST/ui_flow_run_logs.png" 1000
shoot "$URL/artifacts/artifact/$FUNNEL_ID" "$DEST/ui_funnel_artifact.png" 700
shoot "$URL/artifacts/artifact/$SUMMARY_ID" "$DEST/ui_summary_artifact.png" 1400
