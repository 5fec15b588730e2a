{{/*
headwater.yaml of each component: what the chart sets, then `config.headwater`, then the
component's own `config` over it. Secrets never appear here: they reach the process as
HEADWATER_* variables from Secrets (headwater.secretEnv).
*/}}

{{/* The Kafka client settings of gateways and routers: (list $ "gateway"). */}}
{{- define "headwater.kafkaClient" -}}
{{- $root := index . 0 }}{{ $c := index . 1 }}
{{- $k := $root.Values.kafka }}
{{- $p := include "headwater.paths" $root | fromYaml }}
{{- $props := deepCopy $k.properties }}
{{- $proto := "PLAINTEXT" }}
{{- if and $k.sasl.enabled $k.tls.enabled }}{{ $proto = "SASL_SSL" }}
{{- else if $k.sasl.enabled }}{{ $proto = "SASL_PLAINTEXT" }}
{{- else if $k.tls.enabled }}{{ $proto = "SSL" }}
{{- end }}
{{- $_ := set $props "security.protocol" $proto }}
{{- if $k.sasl.enabled }}
{{- $_ := set $props "sasl.mechanisms" $k.sasl.mechanism }}
{{- $_ := set $props "sasl.username" (index $k.sasl.users $c) }}
{{- end }}
{{- if and $k.tls.enabled $k.tls.existingSecret }}
{{- $_ := set $props "ssl.ca.location" (printf "%s/ca.crt" $p.kafkaTls) }}
{{- end }}
brokers: {{ include "headwater.brokers" $root | quote }}
{{- if eq $root.Values.mode "cluster" }}
# The components use the topics of logNode.topics (on every log node); they create none.
auto_create_topics: false
{{- end }}
properties:
  {{- toYaml $props | nindent 2 }}
{{- end }}

{{/* The chart's part of a component's headwater.yaml: (list $ "gateway"). */}}
{{- define "headwater.baseConfig" -}}
{{- $root := index . 0 }}{{ $c := index . 1 }}
{{- $v := $root.Values }}
{{- $p := include "headwater.paths" $root | fromYaml }}
data_dir: {{ $p.data }}
logging:
  format: {{ $v.defaults.logFormat }}
gateway:
  listen: 0.0.0.0:8080
  {{- if and $v.ingestTls.existingSecret (has $c (list "single" "gateway")) }}
  tls:
    cert_file: {{ $p.ingestTls }}/tls.crt
    key_file: {{ $p.ingestTls }}/tls.key
    {{- if $v.ingestTls.clientCa }}
    client_ca_file: {{ $p.ingestTls }}/ca.crt
    {{- end }}
  {{- end }}
{{- if include "headwater.readsSchemas" $c }}
schemas:
  dir: {{ $p.schemas }}
{{- end }}
{{- if include "headwater.readsRoutes" $c }}
router:
  routes: {{ $p.routes }}/routes.yaml
{{- end }}
{{- if has $c (list "gateway" "router") }}
log:
  client:
    {{- include "headwater.kafkaClient" . | nindent 4 }}
{{- else if eq $c "log" }}
log:
  kafka_listen: 0.0.0.0:9092
  auto_create_topics: false
  flush:
    mode: {{ $v.logNode.flushMode }}
  topics:
    {{- toYaml $v.logNode.topics | nindent 4 }}
  {{- if $v.kafka.tls.enabled }}
  kafka_tls:
    cert_file: {{ $p.kafkaTls }}/tls.crt
    key_file: {{ $p.kafkaTls }}/tls.key
  {{- end }}
  kafka_sasl:
    enabled: {{ $v.kafka.sasl.enabled }}
    {{- if $v.kafka.tls.enabled }}
    mechanisms: [SCRAM-SHA-256, SCRAM-SHA-512, PLAIN]
    {{- else }}
    # PLAIN would send passwords in clear: only SCRAM without TLS.
    mechanisms: [SCRAM-SHA-256, SCRAM-SHA-512]
    {{- end }}
  cluster:
    id: {{ $v.logNode.clusterId | quote }}
    # node_id comes from HEADWATER_LOG__CLUSTER__NODE_ID (the pod's ordinal, from 1).
    # Peers dial the pod's DNS name; the pod binds every address (its name may not resolve
    # before the pod is up).
    listen: "0.0.0.0:{{ $v.logNode.replication.port }}"
    nodes:
      {{- range $i := until (int $v.logNode.replicas) }}
      {{- $host := include "headwater.logPodHost" (list $root (add1 $i)) }}
      - id: {{ add1 $i }}
        replication: "{{ $host }}:{{ $v.logNode.replication.port }}"
        kafka: "{{ $host }}:9092"
      {{- end }}
    tls:
      cert_file: {{ $p.replicationTls }}/tls.crt
      key_file: {{ $p.replicationTls }}/tls.key
      ca_file: {{ $p.replicationTls }}/ca.crt
{{- end }}
{{- end }}

{{/* The whole headwater.yaml of a component: (list $ "gateway"). */}}
{{- define "headwater.config" -}}
{{- $root := index . 0 }}{{ $c := index . 1 }}
{{- $base := include "headwater.baseConfig" . | fromYaml }}
{{- $own := index $root.Values (include "headwater.valuesKey" $c) "config" }}
{{- $merged := mustMergeOverwrite $base (deepCopy $root.Values.config.headwater) (deepCopy $own) }}
{{- toYaml $merged }}
{{- end }}

{{/* Environment variables from Secrets and the downward API: (list $ "gateway"). */}}
{{- define "headwater.secretEnv" -}}
{{- $root := index . 0 }}{{ $c := index . 1 }}
{{- $v := $root.Values -}}
- name: HEADWATER_GATEWAY__AUTH__KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "headwater.authSecret" $root }}
      key: api-keys
- name: HEADWATER_GATEWAY__AUTH__OPS_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "headwater.authSecret" $root }}
      key: ops-keys
      optional: true
{{- if and $v.kafka.sasl.enabled (has $c (list "gateway" "router")) }}
- name: HEADWATER_LOG__CLIENT__PROPERTIES__SASL.PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "headwater.saslSecret" $root }}
      key: {{ $c }}-password
{{- end }}
{{- if eq $c "log" }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: HEADWATER_LOG__CLUSTER__NODE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
- name: HEADWATER_LOG__ADVERTISED_LISTENER
  value: "$(POD_NAME).{{ include "headwater.logHeadless" $root }}.{{ $root.Release.Namespace }}.svc.{{ $v.clusterDomain }}:9092"
{{- if $v.kafka.sasl.enabled }}
- name: HEADWATER_LOG__PRINCIPALS
  valueFrom:
    secretKeyRef:
      name: {{ include "headwater.saslSecret" $root }}
      key: principals
{{- end }}
{{- end }}
{{- end }}
