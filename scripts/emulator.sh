# Sourced, not run: the Python tools in .venv (tests/requirements.txt) and `start_emulator LOG`,
# which starts moto (DynamoDB serialised: scripts/moto_server.py) on a free loopback port, stops
# it when the calling script exits, and exports the AWS variables that point every later command
# at it (dummy credentials, a fixed region).
# Used by scripts/test.sh and scripts/local-aws.sh.

install_python_tools() {
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
    fi
    .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
}

start_emulator() {
    local log="$1" port
    mkdir -p "$(dirname "$log")"
    port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # moto's DynamoDB loses acknowledged writes under concurrent requests (a failed transaction
    # restores a whole-table snapshot): scripts/moto_server.py takes DynamoDB requests one at a
    # time, as atomic as real DynamoDB. MOTO_RAW=1 runs plain moto_server (bench/moto_races.py).
    if [ "${MOTO_RAW:-0}" = 1 ]; then
        .venv/bin/moto_server -H 127.0.0.1 -p "$port" > "$log" 2>&1 &
    else
        .venv/bin/python scripts/moto_server.py -H 127.0.0.1 -p "$port" > "$log" 2>&1 &
    fi
    moto_pid=$!
    trap 'kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true' EXIT
    for _ in $(seq 100); do
        if .venv/bin/python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
        AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true
}
