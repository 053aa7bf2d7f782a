#!/usr/bin/env bash
# The local stack: a Prefect server (SQLite), an S3 server (SeaweedFS `weed mini`), the validation
# service (warm sandbox and check workers that every flow run shares, on a Unix socket in a private
# folder) and a process worker, all on 127.0.0.1, with every bit of state under .state/ (git-ignored).
#
#   scripts/stack.sh up       start what is not running yet (safe to re-run), create or update the work
#                             pool and the global concurrency limit, deploy prefect.yaml
#   scripts/stack.sh demo     up, then run generate/tier1 with count=10 to completion and say where the
#                             scenarios are (DEMO_COUNT=N to change the count)
#   scripts/stack.sh down     stop the worker, then the validation service and the servers
#   scripts/stack.sh status   what is running
#   scripts/stack.sh env      print the environment a shell needs to talk to the stack:
#                             eval "$(scripts/stack.sh env)"
#
# Ports and paths can be moved with environment variables (the end-to-end test runs a second stack on
# free ports): SCENARIOS_STATE_DIR, SCENARIOS_PREFECT_PORT (4200), SCENARIOS_S3_PORT (8333),
# SCENARIOS_WEED_PORT_BASE (9333: SeaweedFS master, volume, filer and admin take BASE..BASE+3 and,
# for gRPC, the same + 10000; its S3 gRPC port is S3 port + 10000).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=${SCENARIOS_STATE_DIR:-$ROOT/.state}
VENV=$ROOT/.venv/bin

PREFECT_PORT=${SCENARIOS_PREFECT_PORT:-4200}
S3_PORT=${SCENARIOS_S3_PORT:-8333}
WEED_BASE=${SCENARIOS_WEED_PORT_BASE:-9333}
# SeaweedFS's servers and their HTTP ports, each with its gRPC port at +10000: the one list `up` starts
# them on and checks is free.
WEED_SERVERS=("s3:$S3_PORT" "master:$WEED_BASE" "volume:$((WEED_BASE + 1))" "filer:$((WEED_BASE + 2))" "admin:$((WEED_BASE + 3))")
BUCKET=${SCENARIOS_BUCKET:-scenarios}
WORK_POOL=${SCENARIOS_WORK_POOL:-scenarios}
GENERATION_LIMIT=scenario-generation  # flows/generate.py acquires this name
GENERATION_SLOTS=${SCENARIOS_GENERATION_SLOTS:-4}
S3_ACCESS_KEY=${SCENARIOS_S3_ACCESS_KEY:-local-demo}
S3_SECRET_KEY=${SCENARIOS_S3_SECRET_KEY:-local-demo-secret}
VALIDATION_SOCKET=$STATE/validation/validation.sock

stack_env() {
    cat <<EOF
export PREFECT_HOME=$(printf %q "$STATE/prefect")
export PREFECT_API_URL=http://127.0.0.1:$PREFECT_PORT/api
export PREFECT_UI_URL=http://127.0.0.1:$PREFECT_PORT
export DO_NOT_TRACK=1
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120
export PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS=1
export PREFECT_WORKER_QUERY_SECONDS=1
export PREFECT_WORKER_PREFETCH_SECONDS=1
export PREFECT_LOGGING_LEVEL=INFO
export MUJOCO_GL=egl
export SCENARIOS_STORE__URL=s3://$BUCKET/datasets
export SCENARIOS_STORE__ENDPOINT_URL=http://127.0.0.1:$S3_PORT
export SCENARIOS_STORE__ACCESS_KEY=$S3_ACCESS_KEY
export SCENARIOS_STORE__SECRET_KEY=$S3_SECRET_KEY
export SCENARIOS_REPO_DIR=$(printf %q "$ROOT")
export SCENARIOS_STATE_DIR=$(printf %q "$STATE")
export SCENARIOS_VALIDATION__SERVICE_SOCKET=$(printf %q "$VALIDATION_SOCKET")
EOF
}
eval "$(stack_env)"

pid_of() { cat "$STATE/$1.pid" 2>/dev/null || true; }

pid_alive() {  # the pid file names a live process that is still the command we started
    local pid; pid=$(pid_of "$1")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && grep -qa -- "$2" "/proc/$pid/cmdline" 2>/dev/null
}

wait_for() {  # wait_for NAME SECONDS COMMAND...
    local name=$1 seconds=$2; shift 2
    local deadline=$((SECONDS + seconds))
    while ((SECONDS < deadline)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.25
    done
    echo "stack: $name did not become ready in ${seconds}s; see $STATE/logs/$name.log" >&2
    tail -20 "$STATE/logs/$name.log" >&2 || true
    return 1
}

start_bg() {  # start_bg NAME COMMAND... : a session of its own, so `down` can signal it and its children
    local name=$1; shift
    setsid "$@" >>"$STATE/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$STATE/$name.pid"
}

stop_bg() {  # stop_bg NAME:MATCH... : signal each running one's process group, wait for all, then kill leftovers
    local pair name match pid pids=() names=()
    for pair in "$@"; do
        name=${pair%%:*} match=${pair#*:}
        if pid_alive "$name" "$match"; then
            pid=$(pid_of "$name")
            kill -TERM -- "-$pid" 2>/dev/null || true
            pids+=("$pid") names+=("$name")
        fi
        rm -f "$STATE/$name.pid"
    done
    ((${#pids[@]})) || return 0
    # A worker started in the background shuts down gracefully only after a second signal (the first
    # one it forwards to its child as SIGINT and waits); a second one kills the child at once.
    sleep 0.5
    for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    local started=$SECONDS deadline=$((SECONDS + 15)) alive=()
    while ((SECONDS < deadline)); do
        alive=()
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
        ((${#alive[@]})) || break
        sleep 0.2
    done
    if ((${#alive[@]})); then
        echo "stack: pid(s) ${alive[*]} still running after 15 s; killing them" >&2
    fi
    for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
    echo "stopped ${names[*]} in $((SECONDS - started + 1)) s"
}

weed_port_flags() {  # -NAME.port=PORT -NAME.port.grpc=PORT+10000 for each of WEED_SERVERS
    local pair
    for pair in "${WEED_SERVERS[@]}"; do
        echo "-${pair%%:*}.port=${pair#*:} -${pair%%:*}.port.grpc=$((${pair#*:} + 10000))"
    done
}

port_taken() {  # something already listens on 127.0.0.1:PORT
    (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

refuse_taken_ports() {  # before starting anything: a server of ours that is not running needs its ports free
    local pair port s3_taken=() taken=()
    if ! pid_alive s3 weed; then
        for pair in "${WEED_SERVERS[@]}"; do
            for port in "${pair#*:}" $((${pair#*:} + 10000)); do
                port_taken "$port" && s3_taken+=("$port")
            done
        done
        ((${#s3_taken[@]})) && taken+=("S3 server: ${s3_taken[*]} (move it with SCENARIOS_S3_PORT and SCENARIOS_WEED_PORT_BASE)")
    fi
    if ! pid_alive prefect-server "server" && port_taken "$PREFECT_PORT"; then
        taken+=("Prefect server: $PREFECT_PORT (move it with SCENARIOS_PREFECT_PORT)")
    fi
    ((${#taken[@]})) || return 0
    echo "stack: not starting: ports it needs on 127.0.0.1 are in use by another program, perhaps the stack of" >&2
    echo "another checkout (its flow runs would go to that stack's server, worker and bucket):" >&2
    printf '  %s\n' "${taken[@]}" >&2
    echo "stop it (\`scripts/stack.sh down\` in its checkout) or move this stack to free ports." >&2
    exit 1
}

up() {
    if [[ ! -x $VENV/prefect ]]; then
        echo "stack: no virtual environment at $ROOT/.venv; run \`make install\` first" >&2
        exit 1
    fi
    refuse_taken_ports
    mkdir -p "$STATE/logs" "$STATE/prefect" "$STATE/s3"
    if ! pid_alive s3 weed; then
        # weed mini takes its admin credentials from these variables (no anonymous access).
        AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY \
            start_bg s3 "$VENV/weed" mini -dir="$STATE/s3" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
            $(weed_port_flags) -s3.port.iceberg=0 -s3.port.lance=0 -admin.ui=false \
            -webdav=false -master.telemetry=false -bucket="$BUCKET"
    fi
    if ! pid_alive prefect-server "server"; then
        start_bg prefect-server "$VENV/prefect" server start --host 127.0.0.1 --port "$PREFECT_PORT"
    fi
    if ! pid_alive validation "serve-validation"; then  # it warms its workers while the rest starts
        : >"$STATE/logs/validation.log"
        start_bg validation env -u SCENARIOS_VALIDATION__SERVICE_SOCKET \
            "$VENV/scenarios" serve-validation --socket "$VALIDATION_SOCKET"
    fi
    wait_for s3 60 curl -sf "http://127.0.0.1:$S3_PORT/status"
    wait_for prefect-server 120 curl -sf "http://127.0.0.1:$PREFECT_PORT/api/health"

    "$VENV/python" scripts/stack_admin.py setup --pool "$WORK_POOL" \
        --template deployments/process-work-pool.json --limit "$GENERATION_LIMIT" --slots "$GENERATION_SLOTS"
    if ! pid_alive worker "worker"; then  # it boots while the deployments are created
        : >"$STATE/logs/worker.log"
        start_bg worker "$VENV/prefect" worker start --pool "$WORK_POOL" --type process
    fi
    "$VENV/prefect" --no-prompt deploy --all >"$STATE/logs/deploy.log" 2>&1 || {
        echo "stack: prefect deploy failed; see $STATE/logs/deploy.log" >&2
        tail -20 "$STATE/logs/deploy.log" >&2
        exit 1
    }
    echo "deployments: $(grep -oE "'[a-z_-]+/[a-z0-9_-]+'" "$STATE/logs/deploy.log" | sort -u | tr -d "'" | tr '\n' ' ')"
    wait_for worker 60 grep -q "started!" "$STATE/logs/worker.log"
    wait_for validation 120 grep -q "validation service ready" "$STATE/logs/validation.log"
    echo "stack is up: Prefect UI http://127.0.0.1:$PREFECT_PORT  S3 http://127.0.0.1:$S3_PORT (bucket $BUCKET)  state $STATE"
}

demo() {
    up
    local count=${DEMO_COUNT:-10} output
    output=$(mktemp)
    echo "running generate/tier1 with count=$count (watch it at http://127.0.0.1:$PREFECT_PORT)"
    local started=$SECONDS rc=0
    "$VENV/prefect" deployment run generate/tier1 -p count="$count" --watch --watch-interval 1 | tee "$output" || rc=$?
    echo "generate/tier1 took $((SECONDS - started)) s from \`prefect deployment run\` to its final state"
    local flow_run_id
    flow_run_id=$(grep -oE 'UUID: [0-9a-f-]{36}' "$output" | head -1 | cut -d' ' -f2)
    rm -f "$output"
    if [[ -z $flow_run_id ]]; then
        echo "stack: could not create the flow run; see above" >&2
        exit 1
    fi
    "$VENV/python" scripts/stack_admin.py report "$flow_run_id" --ui "http://127.0.0.1:$PREFECT_PORT" || rc=$?
    return "$rc"
}

down() {
    stop_bg worker:worker  # before the server, so it does not retry against a stopped API
    stop_bg validation:serve-validation prefect-server:server s3:weed
}

status() {
    local name match
    for pair in s3:weed prefect-server:server validation:serve-validation worker:worker; do
        name=${pair%%:*} match=${pair#*:}
        if pid_alive "$name" "$match"; then echo "$name: running (pid $(pid_of "$name"))"; else echo "$name: stopped"; fi
    done
}

case "${1:-}" in
    up) up ;;
    demo) demo ;;
    down) down ;;
    status) status ;;
    env) stack_env ;;
    *) echo "usage: $0 up|demo|down|status|env" >&2; exit 2 ;;
esac
