{{/* Names, labels and the per-component settings every template shares. */}}

{{- define "headwater.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "headwater.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "headwater.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object name of a component: (list $ "gateway") -> release-headwater-gateway. */}}
{{- define "headwater.componentName" -}}
{{- $root := index . 0 }}{{ $c := index . 1 }}
{{- if eq $c "single" }}{{ include "headwater.fullname" $root }}
{{- else }}{{ printf "%s-%s" (include "headwater.fullname" $root | trunc 50 | trimSuffix "-") $c }}
{{- end }}
{{- end }}

{{- define "headwater.labels" -}}
helm.sh/chart: {{ include "headwater.chart" . }}
app.kubernetes.io/name: {{ include "headwater.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of a component: (list $ "log"). */}}
{{- define "headwater.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "headwater.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "headwater.componentLabels" -}}
{{ include "headwater.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "headwater.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "headwater.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "headwater.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Values key of a component. */}}
{{- define "headwater.valuesKey" -}}
{{- if eq . "log" }}logNode{{ else }}{{ . }}{{ end }}
{{- end }}

{{/*
The settings of a component, as YAML: `defaults` with the component's own values over them.
Maps are merged (the component wins), lists appended to the defaults', scalars and
resources/affinity taken from the component when set.
*/}}
{{- define "headwater.settings" -}}
{{- $root := index . 0 }}
{{- $d := $root.Values.defaults }}
{{- $c := index $root.Values (include "headwater.valuesKey" (index . 1)) }}
{{- $out := dict }}
{{- range $k := list "podAnnotations" "podLabels" "nodeSelector" }}
{{- $_ := set $out $k (merge (deepCopy (default (dict) (index $c $k))) (deepCopy (default (dict) (index $d $k)))) }}
{{- end }}
{{- range $k := list "tolerations" "extraEnv" "extraEnvFrom" "extraVolumes" "extraVolumeMounts" "topologySpreadConstraints" }}
{{- $_ := set $out $k (concat (default (list) (index $d $k)) (default (list) (index $c $k))) }}
{{- end }}
{{- range $k := list "resources" "affinity" "priorityClassName" }}
{{- $_ := set $out $k (default (index $d $k) (index $c $k)) }}
{{- end }}
{{- range $k := list "terminationGracePeriodSeconds" "podSecurityContext" "securityContext" "logFormat" }}
{{- $_ := set $out $k (index $d $k) }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* Does a component read the schema directory / routes? */}}
{{- define "headwater.readsSchemas" -}}
{{- if has . (list "single" "gateway" "log") }}true{{ end }}
{{- end }}
{{- define "headwater.readsRoutes" -}}
{{- if has . (list "single" "router") }}true{{ end }}
{{- end }}

{{/* The log nodes' peer-address helpers: (list $ ordinal). */}}
{{- define "headwater.logPodHost" -}}
{{- $root := index . 0 }}
{{- printf "%s-%d.%s.%s.svc.%s" (include "headwater.componentName" (list $root "log")) (int (index . 1)) (include "headwater.logHeadless" $root) $root.Release.Namespace $root.Values.clusterDomain }}
{{- end }}
{{- define "headwater.logHeadless" -}}
{{- printf "%s-headless" (include "headwater.componentName" (list . "log")) }}
{{- end }}

{{/* Bootstrap brokers of the gateways and routers. */}}
{{- define "headwater.brokers" -}}
{{- if eq .Values.mode "external-kafka" }}
{{- .Values.kafka.brokers }}
{{- else }}
{{- $hosts := list }}
{{- range $i := until (int .Values.logNode.replicas) }}
{{- $hosts = append $hosts (printf "%s:9092" (include "headwater.logPodHost" (list $ (add1 $i)))) }}
{{- end }}
{{- join "," $hosts }}
{{- end }}
{{- end }}

{{/* Secret names. */}}
{{- define "headwater.authSecret" -}}
{{- default (printf "%s-auth" (include "headwater.fullname" .)) .Values.auth.existingSecret }}
{{- end }}
{{- define "headwater.saslSecret" -}}
{{- default (printf "%s-kafka-sasl" (include "headwater.fullname" .)) .Values.kafka.sasl.existingSecret }}
{{- end }}

{{/* Volume mount points. */}}
{{- define "headwater.paths" -}}
config: /etc/headwater/config
routes: /etc/headwater/routes
schemas: /etc/headwater/schemas
data: /var/lib/headwater
kafkaTls: /etc/headwater/kafka-tls
replicationTls: /etc/headwater/replication-tls
ingestTls: /etc/headwater/ingest-tls
{{- end }}

{{/* What a component reads of the SASL Secret, for its checksum: (list $ component). */}}
{{- define "headwater.saslSecretData" -}}
{{- $root := index . 0 }}{{ $c := index . 1 }}
{{- $s := $root.Values.kafka.sasl }}
{{- if $s.existingSecret }}existing:{{ $s.existingSecret }}
{{- else if eq $c "log" }}{{ toJson $s.principals }}
{{- else }}{{ index $s.passwords $c }}
{{- end }}
{{- end }}

{{/* The components of the mode, as a YAML list. */}}
{{- define "headwater.components" -}}
{{- if eq .Values.mode "single" }}[single]
{{- else if eq .Values.mode "cluster" }}[log, gateway, router]
{{- else }}[gateway, router]
{{- end }}
{{- end }}

{{/*
The budget of a component's PDB, validated: (list $ component). For log nodes, at most
replicas - quorum pods may be down (quorum = replicas/2 + 1), so a budget that would let an
eviction break the quorum fails the rendering. Percentages are rounded up, as the eviction
API does.
*/}}
{{- define "headwater.pdbBudget" -}}
{{- $root := index . 0 }}{{ $c := index . 1 }}
{{- $key := include "headwater.valuesKey" $c }}
{{- $pdb := index $root.Values $key "pdb" }}
{{- $hasMax := not (kindIs "invalid" $pdb.maxUnavailable) }}
{{- $hasMin := not (kindIs "invalid" $pdb.minAvailable) }}
{{- if and $hasMax $hasMin }}
{{- fail (printf "%s.pdb: set maxUnavailable or minAvailable, not both (the API server refuses a budget with both)" $key) }}
{{- end }}
{{- if not (or $hasMax $hasMin) }}
{{- fail (printf "%s.pdb: set maxUnavailable or minAvailable" $key) }}
{{- end }}
{{- if eq $c "log" }}
{{- $n := int $root.Values.logNode.replicas }}
{{- $quorum := add1 (div $n 2) }}
{{- if $hasMax }}
{{- $down := include "headwater.pdbCount" (list $pdb.maxUnavailable $n) | int }}
{{- if gt $down (sub $n $quorum) }}
{{- fail (printf "logNode.pdb.maxUnavailable %v lets %d of %d log nodes be down at once, which breaks the Raft quorum of %d: at most %d" $pdb.maxUnavailable $down $n $quorum (sub $n $quorum)) }}
{{- end }}
{{- if lt $down 1 }}
{{- fail "logNode.pdb.maxUnavailable must let at least one log node be down, or no node can ever be drained" }}
{{- end }}
{{- else }}
{{- $up := include "headwater.pdbCount" (list $pdb.minAvailable $n) | int }}
{{- if lt $up $quorum }}
{{- fail (printf "logNode.pdb.minAvailable %v keeps %d of %d log nodes up, below the Raft quorum of %d" $pdb.minAvailable $up $n $quorum) }}
{{- end }}
{{- if ge $up $n }}
{{- fail "logNode.pdb.minAvailable must let at least one log node be down, or no node can ever be drained" }}
{{- end }}
{{- end }}
{{- end }}
{{- if $hasMax }}
maxUnavailable: {{ $pdb.maxUnavailable | toYaml }}
{{- else }}
minAvailable: {{ $pdb.minAvailable | toYaml }}
{{- end }}
{{- end }}

{{/* A PDB value as a pod count: (list VALUE REPLICAS); "34%" of 3 is 2 (rounded up). */}}
{{- define "headwater.pdbCount" -}}
{{- $v := index . 0 }}{{ $n := int (index . 1) }}
{{- if and (kindIs "string" $v) (hasSuffix "%" $v) }}
{{- $pct := trimSuffix "%" $v | int }}
{{- div (add (mul $pct $n) 99) 100 }}
{{- else }}
{{- int $v }}
{{- end }}
{{- end }}
