#!/usr/bin/env bash
# A local Apache Kafka broker for trying weir's kafka connector, without Docker: one node in
# KRaft mode on localhost:9092 (KAFKA_PORT to change it), from the jars on Maven Central that
# tests/kafka/pom.xml names (fetched once into target/kafka/libs; needs Java 17 and Maven).
# Its data is kept in target/kafka/local between runs; topics are created when first written.
#
#   scripts/kafka-broker.sh           start it, in the foreground (Ctrl-C stops it)
#   scripts/kafka-broker.sh --fresh   start it with empty storage
set -euo pipefail
cd "$(dirname "$0")/.."
libs="$PWD/target/kafka/libs"
if [ ! -f "$libs/.complete" ]; then
  echo "fetching the broker's jars with Maven (once)..." >&2
  mvn -q -B -f tests/kafka/pom.xml -Dmaven.repo.local="$PWD/target/kafka/m2" \
    dependency:copy-dependencies -DoutputDirectory="$libs"
  touch "$libs/.complete"
fi
dir="$PWD/target/kafka/local"
if [ "${1:-}" = "--fresh" ]; then
  rm -rf "$dir"
fi
mkdir -p "$dir"
port="${KAFKA_PORT:-9092}"
controller=$((port + 1))
cat > "$dir/server.properties" <<PROPERTIES
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://localhost:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=4
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
PROPERTIES
if [ ! -f "$dir/data/meta.properties" ]; then
  java -cp "$libs/*" kafka.tools.StorageTool format -t q1Sh-9_ISia_zwGINzRvyQ -c "$dir/server.properties" >/dev/null
fi
echo "kafka on localhost:$port (data in $dir); Ctrl-C stops it" >&2
exec java -Xms256m -Xmx1g -cp "$libs/*" kafka.Kafka "$dir/server.properties"
