#!/usr/bin/env bash
# Local Apache Kafka (KRaft, no ZooKeeper) for development and tests: one node by
# default, or a cluster of KAFKA_BROKERS nodes on this machine.
#
# There is no Docker engine here and Maven Central is the only reachable download
# site, so the broker comes from Maven (deploy/kafka/pom.xml) and runs as a plain
# JVM process per node: each a combined broker+controller bound to 127.0.0.1 only.
# With KAFKA_BROKERS=N (N > 1) the N nodes form the controller quorum together,
# topics default to min(N, 3) replicas and min.insync.replicas is 2 (1 for N = 2),
# so a producer with acks=all is answered only once two copies hold a message.
#
# Usage: deploy/kafka.sh {install|start|stop|kill|status|wait|reset|bootstrap|pid|quorum-leader}
#   bootstrap       prints the comma-separated PLAINTEXT addresses of every node
#   pid             prints the pid of node KAFKA_NODE (default 1) if it is running
#   quorum-leader   prints the node id of the active controller, as the running nodes record it
#
# Environment:
#   CRM_CACHE_DIR          jar cache root        (default: $HOME/.cache/crm-platform)
#   CRM_STATE_DIR          state root            (default: <repo>/.state); Kafka uses <root>/kafka
#   KAFKA_PORT             PLAINTEXT listener    (default: 9092)
#   KAFKA_CONTROLLER_PORT  CONTROLLER listener   (default: 9093)
#   KAFKA_HEAP_OPTS        JVM heap              (default: -Xmx512m -Xms256m)
#   KAFKA_START_TIMEOUT    seconds to wait for readiness (default: 90)
#   KAFKA_STOP_TIMEOUT     seconds to wait for a clean stop before SIGKILL (default: 30)
#   KAFKA_BROKERS          nodes in the cluster  (default: 1); node i (1..N) listens on
#                          KAFKA_PORT + (i-1)*KAFKA_PORT_STEP and KAFKA_CONTROLLER_PORT + (i-1)*KAFKA_PORT_STEP,
#                          state in <root>/kafka/node<i> (a single node keeps <root>/kafka)
#   KAFKA_PORT_STEP        port distance between nodes (default: 10)
#   KAFKA_NODE             start/stop/kill/status/wait/pid act on this node only (default: every node)
set -euo pipefail

KAFKA_VERSION=3.9.1

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
POM="$REPO_ROOT/deploy/kafka/pom.xml"

CACHE_ROOT="${CRM_CACHE_DIR:-${HOME:-/tmp}/.cache/crm-platform}"
KAFKA_HOME="$CACHE_ROOT/kafka-$KAFKA_VERSION"
LIBS_DIR="$KAFKA_HOME/libs"
# Written last by install: its presence means the libs dir is complete.
INSTALL_MARKER="$LIBS_DIR/.installed"

ROOT_STATE_DIR="${CRM_STATE_DIR:-$REPO_ROOT/.state}/kafka"
CLUSTER_ID_FILE="$ROOT_STATE_DIR/cluster.id"

HOST=127.0.0.1
BASE_PORT="${KAFKA_PORT:-9092}"
BASE_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
BROKERS="${KAFKA_BROKERS:-1}"
PORT_STEP="${KAFKA_PORT_STEP:-10}"
[[ "$BROKERS" =~ ^[1-9][0-9]*$ ]] || { printf '[kafka] ERROR: KAFKA_BROKERS=%s is not a positive number\n' "$BROKERS" >&2; exit 2; }
[[ "$PORT_STEP" =~ ^[1-9][0-9]*$ ]] || { printf '[kafka] ERROR: KAFKA_PORT_STEP=%s is not a positive number\n' "$PORT_STEP" >&2; exit 2; }

# The node the helpers below act on; use_node sets it (node 1 of a single-node setup keeps the
# historical layout: its state lives directly in <root>/kafka).
NODE=1
use_node() {
    NODE="$1"
    if ((BROKERS == 1)); then
        STATE_DIR="$ROOT_STATE_DIR"
    else
        STATE_DIR="$ROOT_STATE_DIR/node$NODE"
    fi
    DATA_DIR="$STATE_DIR/data"
    CONFIG_FILE="$STATE_DIR/server.properties"
    LOG4J_FILE="$STATE_DIR/log4j.properties"
    LOG_FILE="$STATE_DIR/server.log"
    PID_FILE="$STATE_DIR/kafka.pid"
    PORT=$((BASE_PORT + (NODE - 1) * PORT_STEP))
    CONTROLLER_PORT=$((BASE_CONTROLLER_PORT + (NODE - 1) * PORT_STEP))
}
use_node 1

# The nodes a command acts on: KAFKA_NODE, or all of them.
selected_nodes() {
    if [[ -n "${KAFKA_NODE:-}" ]]; then
        [[ "$KAFKA_NODE" =~ ^[0-9]+$ ]] && ((KAFKA_NODE >= 1 && KAFKA_NODE <= BROKERS)) ||
            die "KAFKA_NODE=$KAFKA_NODE is not a node of this cluster (1..$BROKERS)"
        echo "$KAFKA_NODE"
    else
        seq 1 "$BROKERS"
    fi
}

bootstrap_servers() {
    local i out=()
    for ((i = 1; i <= BROKERS; i++)); do
        out+=("$HOST:$((BASE_PORT + (i - 1) * PORT_STEP))")
    done
    (IFS=,; echo "${out[*]}")
}
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"

# Logged by kafka.server.KafkaRaftServer once the node has fully started.
READY_LINE="Kafka Server started"

log() {
    if ((BROKERS > 1)); then
        printf '[kafka node %s] %s\n' "$NODE" "$*" >&2
    else
        printf '[kafka] %s\n' "$*" >&2
    fi
}
die() { printf '[kafka] ERROR: %s\n' "$*" >&2; exit 1; }

show_log_tail() {
    if [[ -s "$LOG_FILE" ]]; then
        printf '[kafka] ---- last 40 lines of %s ----\n' "$LOG_FILE" >&2
        tail -n 40 "$LOG_FILE" >&2 || true
        printf '[kafka] ---- end of log ----\n' >&2
    fi
}

# True while pid exists and is not a zombie (an exited child that init has not
# reaped yet still answers kill -0).
alive() {
    [[ -e "/proc/$1" ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

java_bin() {
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        echo "$JAVA_HOME/bin/java"
    elif command -v java >/dev/null 2>&1; then
        command -v java
    else
        die "java not found (Java 17 is expected; install openjdk-17-jre-headless)"
    fi
}

# ---------------------------------------------------------------- install

is_installed() {
    [[ -f "$INSTALL_MARKER" && -f "$LIBS_DIR/kafka_2.13-$KAFKA_VERSION.jar" ]]
}

cmd_install() {
    if is_installed; then
        log "Kafka $KAFKA_VERSION already installed in $LIBS_DIR"
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn not found (Maven is needed to fetch Kafka from Maven Central)"
    mkdir -p "$KAFKA_HOME"

    # Serialise concurrent installs (e.g. parallel test jobs) on one lock file.
    exec 8>"$KAFKA_HOME/.install.lock"
    flock 8
    if is_installed; then
        log "Kafka $KAFKA_VERSION installed by a concurrent run"
        exec 8>&-
        return 0
    fi

    log "fetching Kafka $KAFKA_VERSION and its runtime dependencies from Maven Central ..."
    local tmp mvn_log
    tmp="$(mktemp -d "$KAFKA_HOME/libs.tmp.XXXXXX")"
    mvn_log="$KAFKA_HOME/install.log"
    # Copy into a temp dir and rename, so an interrupted install never looks complete.
    if ! mvn -B -q -f "$POM" dependency:copy-dependencies \
            -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
        tail -n 40 "$mvn_log" >&2 || true
        rm -rf "$tmp"
        die "Maven could not fetch Kafka (full output: $mvn_log)"
    fi
    [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || { rm -rf "$tmp"; die "kafka_2.13-$KAFKA_VERSION.jar missing after Maven run"; }
    echo "$KAFKA_VERSION" >"$tmp/.installed"
    rm -rf "$LIBS_DIR"
    mv "$tmp" "$LIBS_DIR"
    exec 8>&-
    log "installed $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars into $LIBS_DIR"
}

# ---------------------------------------------------------------- process helpers

# Prints the pid of our broker if it is alive; fails otherwise. The cmdline check
# guards against a stale pid file whose pid was reused by another process.
running_pid() {
    local pid
    [[ -f "$PID_FILE" ]] || return 1
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
    echo "$pid"
}

port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# Sends a real Kafka ApiVersions v0 request (correlation id 7) and checks that a
# response with that correlation id comes back: the broker is answering requests,
# not merely accepting TCP connections.
answers_api_versions() {
    local reply
    # shellcheck disable=SC2016  # $1/$2 are expanded by the inner bash
    reply="$(timeout 3 bash -c '
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        # size=14 | api_key=18 | api_version=0 | correlation_id=7 | client_id="ping"
        printf "\x00\x00\x00\x0e\x00\x12\x00\x00\x00\x00\x00\x07\x00\x04ping" >&3
        head -c 8 <&3 | od -An -tu1
    ' _ "$HOST" "$PORT" 2>/dev/null || true)"
    # bytes 5..8 are the correlation id: 0 0 0 7
    [[ "$(echo "$reply" | awk '{print $5,$6,$7,$8}')" == "0 0 0 7" ]]
}

is_ready() {
    grep -q "$READY_LINE" "$LOG_FILE" 2>/dev/null && answers_api_versions
}

# Waits for readiness; fails early if the process dies. Returns 1 (after printing
# the reason and the log tail) instead of exiting, so start can clean up.
wait_ready() {
    local deadline=$((SECONDS + START_TIMEOUT))
    while true; do
        if ! running_pid >/dev/null; then
            show_log_tail
            log "ERROR: Kafka process is not running (exited during startup?)"
            return 1
        fi
        if is_ready; then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            show_log_tail
            log "ERROR: Kafka did not become ready on $HOST:$PORT within ${START_TIMEOUT}s"
            return 1
        fi
        sleep 0.5
    done
}

# ---------------------------------------------------------------- config

quorum_voters() {
    local i out=()
    for ((i = 1; i <= BROKERS; i++)); do
        out+=("$i@$HOST:$((BASE_CONTROLLER_PORT + (i - 1) * PORT_STEP))")
    done
    (IFS=,; echo "${out[*]}")
}

# Copies of each partition: every node, at most three.
replication_factor() { echo $((BROKERS < 3 ? BROKERS : 3)); }

# An acks=all write needs this many copies in sync: two wherever there are two or more replicas.
min_insync_replicas() {
    local rf
    rf="$(replication_factor)"
    echo $((rf >= 3 ? 2 : 1))
}

write_config() {
    # Rewritten on every start so port/env changes take effect.
    cat >"$CONFIG_FILE" <<EOF
# Generated by deploy/kafka.sh - edits are overwritten on start.
process.roles=broker,controller
node.id=$NODE
controller.quorum.voters=$(quorum_voters)
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA_DIR

num.partitions=6
default.replication.factor=$(replication_factor)
min.insync.replicas=$(min_insync_replicas)
offsets.topic.replication.factor=$(replication_factor)
transaction.state.log.replication.factor=$(replication_factor)
transaction.state.log.min.isr=$(min_insync_replicas)
# A replica that is not in sync never becomes leader: that would drop acknowledged messages.
unclean.leader.election.enable=false
# Topics are created explicitly by the services; typos must fail, not create topics.
auto.create.topics.enable=false
# Tests should not wait 3 s for the first consumer group rebalance.
group.initial.rebalance.delay.ms=0
delete.topic.enable=true
# After a SIGKILL the restarted node cannot re-register until the controller expires
# the dead incarnation's session (default 9 s); keep fault-injection restarts short.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=6000
EOF

    cat >"$LOG4J_FILE" <<'EOF'
# Everything goes to stdout, which kafka.sh redirects to server.log.
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.authorizer.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.zookeeper=WARN
EOF
}

format_storage_once() {
    if [[ -f "$DATA_DIR/meta.properties" ]]; then
        return 0
    fi
    local java cluster_id
    java="$(java_bin)"
    if [[ -s "$CLUSTER_ID_FILE" ]]; then
        cluster_id="$(cat "$CLUSTER_ID_FILE")"
    else
        cluster_id="$("$java" -cp "$LIBS_DIR/*" -Dlog4j.configuration="file:$LOG4J_FILE" \
            kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
        [[ -n "$cluster_id" ]] || die "could not generate a KRaft cluster id"
        echo "$cluster_id" >"$CLUSTER_ID_FILE"
    fi
    log "formatting KRaft storage in $DATA_DIR (cluster id $cluster_id)"
    mkdir -p "$DATA_DIR"
    if ! "$java" -cp "$LIBS_DIR/*" -Dlog4j.configuration="file:$LOG4J_FILE" \
            kafka.tools.StorageTool format --ignore-formatted \
            -t "$cluster_id" -c "$CONFIG_FILE" >"$STATE_DIR/format.log" 2>&1; then
        cat "$STATE_DIR/format.log" >&2
        die "formatting KRaft storage failed"
    fi
}

# ---------------------------------------------------------------- commands

# Serialises start/stop/kill/reset on one state dir, so two concurrent `start`s
# cannot launch two brokers that fight over the ports and the pid file. fd 9 is
# closed for the broker itself (see launch_node), so the lock dies with this script.
lock_state() {
    mkdir -p "$ROOT_STATE_DIR"
    exec 9>"$ROOT_STATE_DIR/.lock"
    flock -w "$((START_TIMEOUT + STOP_TIMEOUT))" 9 || die "timed out waiting for another kafka.sh on $ROOT_STATE_DIR"
}

# Starts the current node's JVM unless it is running; does not wait for it to be ready (the nodes of a
# cluster become ready only together, once a quorum of controllers has formed).
launch_node() {
    local pid
    if pid="$(running_pid)"; then
        log "already running (pid $pid)"
        return 0
    fi
    rm -f "$PID_FILE"

    # Grace period: a broker that was just SIGKILLed from outside may still hold them.
    local p deadline=$((SECONDS + 10))
    for p in "$PORT" "$CONTROLLER_PORT"; do
        while port_open "$p"; do
            ((SECONDS < deadline)) ||
                die "port $HOST:$p is already in use by another process (not ours: no live pid in $PID_FILE)"
            sleep 0.2
        done
    done

    mkdir -p "$STATE_DIR"
    write_config
    format_storage_once

    # Keep the previous run's log for post-mortems; the ready check reads only the new one.
    if [[ -f "$LOG_FILE" ]]; then
        mv -f "$LOG_FILE" "$LOG_FILE.1"
    fi

    local java
    java="$(java_bin)"
    log "starting Kafka $KAFKA_VERSION on $HOST:$PORT (controller $CONTROLLER_PORT), log: $LOG_FILE"
    # JVM flags as in Kafka's kafka-run-class.sh. setsid detaches the broker from our
    # session/process group so it outlives this script and the caller's terminal;
    # the inner shell writes its own pid and then execs java, so the pid is java's.
    # shellcheck disable=SC2016,SC2086  # inner $1/$@ are for bash -c; HEAP_OPTS is word-split on purpose
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PID_FILE" \
        "$java" $HEAP_OPTS \
        -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
        -Dlog4j.configuration="file:$LOG4J_FILE" -Dkafka.logs.dir="$STATE_DIR" \
        -cp "$LIBS_DIR/*" kafka.Kafka "$CONFIG_FILE" \
        >"$LOG_FILE" 2>&1 </dev/null 9>&- &
    # Not a job of this shell: no "Killed" notices if start has to SIGKILL it.
    disown $!

    # The pid file is written by the child; give it a moment to appear.
    local i
    for ((i = 0; i < 50; i++)); do
        running_pid >/dev/null && break
        sleep 0.1
    done
}

# Kills the current node if it is running and forgets its pid (a start that failed must leave nothing).
abandon_node() {
    local pid
    if pid="$(running_pid)"; then
        kill -KILL "$pid" 2>/dev/null || true
        wait_exit "$pid" 10 || true
        wait_ports_closed
    fi
    rm -f "$PID_FILE"
}

cmd_start() {
    local node nodes
    lock_state
    cmd_install
    nodes="$(selected_nodes)"
    for node in $nodes; do
        use_node "$node"
        launch_node
    done
    for node in $nodes; do
        use_node "$node"
        if ! wait_ready; then
            # Do not leave a half-started broker behind: the next start must be clean.
            for node in $nodes; do
                use_node "$node"
                abandon_node
            done
            die "start failed (full log: $LOG_FILE)"
        fi
        log "ready on $HOST:$PORT (pid $(running_pid)) after ${SECONDS}s"
    done
}

cmd_wait() {
    local node
    for node in $(selected_nodes); do
        use_node "$node"
        running_pid >/dev/null || die "Kafka node $node is not running (start it with: deploy/kafka.sh start)"
        wait_ready || exit 1
        log "ready on $HOST:$PORT"
    done
}

# Waits until pid has exited, up to $2 seconds; fails on timeout.
wait_exit() {
    local pid="$1" deadline=$((SECONDS + $2))
    while alive "$pid"; do
        ((SECONDS >= deadline)) && return 1
        sleep 0.2
    done
}

# A SIGKILLed JVM can show up as a zombie while its other threads are still being
# torn down and its sockets are still listening; wait for the ports to go away too.
wait_ports_closed() {
    local deadline=$((SECONDS + 15))
    while port_open "$PORT" || port_open "$CONTROLLER_PORT"; do
        if ((SECONDS >= deadline)); then
            log "WARNING: ports $PORT/$CONTROLLER_PORT still open 15s after the broker exited"
            return 0
        fi
        sleep 0.2
    done
}

stop_node() {
    local pid
    if ! pid="$(running_pid)"; then
        log "not running"
        rm -f "$PID_FILE"
        return 0
    fi
    log "stopping (SIGTERM to pid $pid, up to ${STOP_TIMEOUT}s) ..."
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_exit "$pid" "$STOP_TIMEOUT"; then
        log "no clean shutdown after ${STOP_TIMEOUT}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_exit "$pid" 10 || die "pid $pid survived SIGKILL"
    fi
    wait_ports_closed
    rm -f "$PID_FILE"
    log "stopped"
}

kill_node() {
    local pid
    if ! pid="$(running_pid)"; then
        log "not running"
        rm -f "$PID_FILE"
        return 0
    fi
    log "SIGKILL to pid $pid"
    kill -KILL "$pid" 2>/dev/null || true
    # Wait until it is gone and its ports are closed, so the next start can bind them.
    wait_exit "$pid" 10 || die "pid $pid survived SIGKILL"
    wait_ports_closed
    rm -f "$PID_FILE"
}

# Runs stop_node or kill_node on every selected node.
on_nodes() {
    local node
    [[ -d "$ROOT_STATE_DIR" ]] || { log "not running"; return 0; }
    lock_state
    for node in $(selected_nodes); do
        use_node "$node"
        "$1"
    done
}

# SIGTERM to every node first: a cluster's last node cannot shut down cleanly once the controller
# quorum is gone, so nodes stopped one after another would each wait out the stop timeout.
term_node() {
    local pid
    if pid="$(running_pid)"; then
        kill -TERM "$pid" 2>/dev/null || true
    fi
}

cmd_stop() {
    ((BROKERS > 1)) && on_nodes term_node
    on_nodes stop_node
}

cmd_kill() { on_nodes kill_node; }

cmd_status() {
    local pid node down=0
    for node in $(selected_nodes); do
        use_node "$node"
        local name="kafka"
        ((BROKERS > 1)) && name="kafka node $node"
        if pid="$(running_pid)" && port_open "$PORT"; then
            echo "$name: running (pid $pid) on $HOST:$PORT"
        else
            echo "$name: not running"
            down=1
        fi
    done
    return "$down"
}

cmd_pid() {
    use_node "${KAFKA_NODE:-1}"
    running_pid
}

# The active controller as the running nodes last recorded it (KRaft's quorum-state file): the
# leader of the highest epoch any of them knows.
cmd_quorum_leader() {
    local node state epoch leader best_epoch=-1 best_leader=""
    for ((node = 1; node <= BROKERS; node++)); do
        use_node "$node"
        running_pid >/dev/null || continue
        state="$(cat "$DATA_DIR/__cluster_metadata-0/quorum-state" 2>/dev/null || true)"
        epoch="$(sed -n 's/.*"leaderEpoch":\([0-9-]*\).*/\1/p' <<<"$state")"
        leader="$(sed -n 's/.*"leaderId":\([0-9-]*\).*/\1/p' <<<"$state")"
        [[ -n "$epoch" && -n "$leader" && "$leader" != "-1" ]] || continue
        if ((epoch > best_epoch)); then
            best_epoch="$epoch"
            best_leader="$leader"
        fi
    done
    [[ -n "$best_leader" ]] || die "no running node knows a controller leader"
    echo "$best_leader"
}

cmd_reset() {
    KAFKA_NODE="" cmd_stop
    NODE=1
    log "deleting $ROOT_STATE_DIR"
    rm -rf "$ROOT_STATE_DIR"
}

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
        install) cmd_install ;;
        start) cmd_start ;;
        stop) cmd_stop ;;
        kill) cmd_kill ;;
        status) cmd_status ;;
        wait) cmd_wait ;;
        reset) cmd_reset ;;
        bootstrap) bootstrap_servers ;;
        pid) cmd_pid ;;
        quorum-leader) cmd_quorum_leader ;;
        -h | --help | help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
