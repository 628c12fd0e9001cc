# shellcheck shell=bash
# Shared helpers for scripts/run and scripts/test: install what is missing, build, start a
# loopback Redis and PostgreSQL. Sourced, never run.

RD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RD_PGBIN=/usr/lib/postgresql/15/bin
RD_PACKAGES=(build-essential cmake pkg-config libevent-dev libhiredis-dev libjansson-dev
    libpq-dev libcmocka-dev redis-server postgresql-15 postgresql-client-15 python3
    python3-pytest python3-requests python3-psycopg2 python3-redis curl libssl-dev openssl)

rd_say() { printf '==> %s\n' "$*" >&2; }
rd_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs the Debian packages that are missing (plus any given as arguments).
rd_install_deps() {
    local missing=() p
    for p in "${RD_PACKAGES[@]}" "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    rd_say "installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq || rd_die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null || rd_die "apt-get install failed"
    # Debian starts the packaged servers; ours run on their own ports, theirs are not needed.
    if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
        $sudo systemctl stop redis-server postgresql >/dev/null 2>&1 || true
    fi
}

# rd_build BUILD_DIR [cmake args...]
rd_build() {
    local dir=$1
    shift
    cmake -S "$RD_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null ||
        rd_die "cmake configure failed"
    cmake --build "$dir" -j "$(nproc)" >"$dir/build.log" 2>&1 ||
        { cat "$dir/build.log" >&2; rd_die "build failed"; }
}

rd_free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# rd_redis_start DIR PORT: durable settings of DESIGN §2 (AOF always, noeviction). An AOF
# rewrite forks and rewrites the whole data set, a latency spike each time: not before 1 GB.
rd_redis_start() {
    local dir=$1 port=$2
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --daemonize yes \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
        --appendonly yes --appendfsync "${RD_REDIS_APPENDFSYNC:-always}" \
        --auto-aof-rewrite-min-size 1gb --maxmemory-policy noeviction \
        --lazyfree-lazy-expire yes --lazyfree-lazy-user-del yes \
        --save '' >/dev/null 9>&- || rd_die "redis-server did not start (see $dir/redis.log)"
    # A large data set takes a while to load from the AOF; Redis answers LOADING meanwhile.
    local i out said=
    for i in $(seq 1 6000); do
        out=$(redis-cli -p "$port" ping 2>&1 || true)
        case $out in
        PONG) return 0 ;;
        *LOADING*) [ -n "$said" ] || { rd_say "Redis is loading its data set..."; said=1; } ;;
        esac
        if [ "$i" -gt 100 ] && [ -z "$said" ]; then
            break
        fi
        sleep 0.1
    done
    rd_die "redis-server on port $port did not answer (see $dir/redis.log)"
}

rd_redis_stop() {
    local dir=$1 port=$2
    redis-cli -p "$port" shutdown >/dev/null 2>&1 || true
    [ -f "$dir/redis.pid" ] && kill "$(cat "$dir/redis.pid")" 2>/dev/null || true
}

# rd_redis_cluster_start DIR PORT PRIMARIES: a Redis Cluster of PRIMARIES primaries and one
# replica each on PORT .. PORT+2*PRIMARIES-1 (node N's data in DIR/PORT+N), with the durable
# settings above and a short cluster-node-timeout (RD_CLUSTER_NODE_TIMEOUT ms, 2000): a dead
# primary's replica takes over within a few seconds. Formed with redis-cli --cluster create on
# first use; a second start reuses each node's nodes.conf and the cluster forms again by itself.
# Prints the seed list for redeemd's redis_cluster setting.
rd_redis_cluster_start() {
    local dir=$1 base=$2 n=$3 i port nodes=() out
    for ((i = 0; i < 2 * n; i++)); do
        port=$((base + i))
        mkdir -p "$dir/$port"
        redis-server --port "$port" --bind 127.0.0.1 --dir "$dir/$port" --daemonize yes \
            --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log" \
            --cluster-enabled yes --cluster-config-file nodes.conf \
            --cluster-node-timeout "${RD_CLUSTER_NODE_TIMEOUT:-2000}" --repl-diskless-sync-delay 0 \
            --appendonly yes --appendfsync "${RD_REDIS_APPENDFSYNC:-always}" \
            --auto-aof-rewrite-min-size 1gb --maxmemory-policy noeviction \
            --lazyfree-lazy-expire yes --lazyfree-lazy-user-del yes \
            --save '' >/dev/null 9>&- || rd_die "redis-server did not start (see $dir/$port/redis.log)"
        nodes+=("127.0.0.1:$port")
    done
    for ((i = 0; i < 2 * n; i++)); do
        port=$((base + i))
        for _ in $(seq 1 600); do
            out=$(redis-cli -p "$port" ping 2>&1 || true)
            [ "$out" = PONG ] && break
            sleep 0.1
        done
        [ "$out" = PONG ] || rd_die "redis-server on port $port did not answer (see $dir/$port/redis.log)"
    done
    if redis-cli -p "$base" cluster info | grep -q '^cluster_known_nodes:1\b'; then
        redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes \
            >"$dir/create.log" 2>&1 || { cat "$dir/create.log" >&2; rd_die "redis-cli --cluster create failed"; }
    fi
    # every node must see the whole map before redeemd asks any of them
    for ((i = 0; i < 2 * n; i++)); do
        port=$((base + i))
        for _ in $(seq 1 600); do
            redis-cli -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' && break
            sleep 0.1
        done
        redis-cli -p "$port" cluster info | grep -q '^cluster_state:ok' ||
            rd_die "the cluster did not form (see $dir/*/redis.log)"
    done
    local IFS=,
    echo "${nodes[*]}"
}

rd_redis_cluster_stop() {
    local dir=$1 base=$2 n=$3 i
    for ((i = 0; i < 2 * n; i++)); do
        rd_redis_stop "$dir/$((base + i))" "$((base + i))"
    done
}

# PostgreSQL refuses to run as root: the data directory belongs to the postgres user.
rd_as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# rd_pg_start DIR PORT: initialises DIR on first use, starts, creates role and db redeemd.
rd_pg_start() {
    local dir=$1 port=$2
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$dir"
        rd_as_pg test -x "$dir" || rd_die "the postgres user cannot reach $dir"
    fi
    chmod 700 "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
        rd_as_pg "$RD_PGBIN/initdb" -D "$dir" -A trust -U postgres --no-sync >/dev/null ||
            rd_die "initdb failed"
    fi
    rd_as_pg "$RD_PGBIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null 9>&- ||
        rd_die "PostgreSQL did not start (see $dir/server.log)"
    # redeemd owns its database and creates the read-only redeemd_fraud role (migration 002)
    psql -h 127.0.0.1 -p "$port" -U postgres -qtAc \
        "SELECT 1 FROM pg_roles WHERE rolname='redeemd'" | grep -q 1 ||
        psql -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE ROLE redeemd LOGIN" >/dev/null
    psql -h 127.0.0.1 -p "$port" -U postgres -qc "ALTER ROLE redeemd CREATEROLE" >/dev/null
    psql -h 127.0.0.1 -p "$port" -U postgres -qtAc \
        "SELECT 1 FROM pg_database WHERE datname='redeemd'" | grep -q 1 ||
        psql -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE redeemd OWNER redeemd" \
            >/dev/null
}

rd_pg_stop() {
    local dir=$1
    [ -f "$dir/postmaster.pid" ] && rd_as_pg "$RD_PGBIN/pg_ctl" -D "$dir" -m fast -w stop \
        >/dev/null 2>&1 || true
}

# rd_supervise CMD [ARGS...]: runs CMD (fd 9, scripts/run's lock, closed for it) and starts
# it again when it dies (a crash, kill -9, a non-zero exit), so that Redis and PostgreSQL
# outlive a daemon that fell over. INT or TERM to this shell are passed on to CMD and end the
# loop once it has exited; so does an exit with status 0. Gives up after RD_RESTART_MAX (5)
# deaths within a minute: a daemon that cannot start (a port taken, a bad setting) is not
# restarted forever. Waits RD_RESTART_DELAY (1) seconds between. Returns CMD's last status.
rd_supervise() {
    local pid= st=0 stopping= deaths=() now t recent
    trap 'stopping=1; [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null' INT TERM
    while :; do
        "$@" 9>&- &
        pid=$!
        # a signal ends `wait` early: wait again until the process has really exited
        while :; do
            wait "$pid" && st=0 || st=$?
            kill -0 "$pid" 2>/dev/null || break
        done
        pid=
        if [ -n "$stopping" ] || [ "$st" -eq 0 ]; then
            break
        fi
        now=$(date +%s)
        deaths+=("$now")
        recent=()
        for t in "${deaths[@]}"; do
            [ $((now - t)) -lt 60 ] && recent+=("$t")
        done
        deaths=("${recent[@]}")
        if [ ${#deaths[@]} -ge "${RD_RESTART_MAX:-5}" ]; then
            rd_say "$1 exited with status $st, the ${#deaths[@]}th time within a minute: not restarting it"
            break
        fi
        rd_say "$1 exited with status $st$([ "$st" -gt 128 ] && echo " (signal $((st - 128)))"); restarting it in ${RD_RESTART_DELAY:-1} s (Redis and PostgreSQL keep running)"
        sleep "${RD_RESTART_DELAY:-1}" &
        wait $! || true
        [ -n "$stopping" ] && break
    done
    trap - INT TERM
    return "$st"
}
