{{/*
The pod template of every component: (list $ component command).
Checksum annotations cover exactly what the component reads, so a change rolls only the pods
that read it: a gateway or router replica change never restarts the log nodes.
*/}}
{{- define "headwater.podTemplate" -}}
{{- $root := index . 0 }}{{ $c := index . 1 }}{{ $cmd := index . 2 }}
{{- $v := $root.Values }}
{{- $s := include "headwater.settings" (list $root $c) | fromYaml }}
{{- $p := include "headwater.paths" $root | fromYaml }}
{{- $name := include "headwater.componentName" (list $root $c) }}
{{- $tlsIngest := and $v.ingestTls.existingSecret (has $c (list "single" "gateway")) }}
{{- $kafkaTls := and $v.kafka.tls.enabled $v.kafka.tls.existingSecret (ne $c "single") -}}
metadata:
  labels:
    {{- include "headwater.selectorLabels" (list $root $c) | nindent 4 }}
    {{- with $s.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    {{- if $v.config.existingConfigMap }}
    checksum/config: {{ printf "existing:%s" $v.config.existingConfigMap | sha256sum }}
    {{- else }}
    checksum/config: {{ include "headwater.config" (list $root $c) | sha256sum }}
    {{- end }}
    {{- if and (include "headwater.readsRoutes" $c) $v.config.rollOnChange.routes }}
    checksum/routes: {{ printf "%s%s" $v.config.routes $v.config.existingRoutesConfigMap | sha256sum }}
    {{- end }}
    {{- if and (include "headwater.readsSchemas" $c) $v.config.rollOnChange.schemas }}
    checksum/schemas: {{ printf "%s%s" (toJson $v.config.schemas) $v.config.existingSchemasConfigMap | sha256sum }}
    {{- end }}
    checksum/auth: {{ printf "%s%s%s" (toJson $v.auth.apiKeys) (toJson $v.auth.opsKeys) $v.auth.existingSecret | sha256sum }}
    {{- if and $v.kafka.sasl.enabled (ne $c "single") }}
    checksum/kafka-sasl: {{ include "headwater.saslSecretData" (list $root $c) | sha256sum }}
    {{- end }}
    {{- with $s.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "headwater.serviceAccountName" $root }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  {{- with $v.image.pullSecrets }}
  imagePullSecrets:
    {{- range . }}
    - name: {{ . }}
    {{- end }}
  {{- end }}
  {{- with $s.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ $s.terminationGracePeriodSeconds }}
  securityContext:
    {{- toYaml $s.podSecurityContext | nindent 4 }}
  {{- with $s.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $s.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $s.affinity }}
  affinity:
    {{- toYaml $s.affinity | nindent 4 }}
  {{- else if eq $c "log" }}
  affinity:
    podAntiAffinity:
      {{- if eq $v.logNode.antiAffinity "required" }}
      requiredDuringSchedulingIgnoredDuringExecution:
        - topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "headwater.selectorLabels" (list $root $c) | nindent 14 }}
      {{- else }}
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                {{- include "headwater.selectorLabels" (list $root $c) | nindent 16 }}
      {{- end }}
  {{- end }}
  {{- if $s.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml $s.topologySpreadConstraints | nindent 4 }}
  {{- else if ne $c "single" }}
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: topology.kubernetes.io/zone
      whenUnsatisfiable: {{ if eq $c "log" }}{{ $v.logNode.zoneSpread }}{{ else }}ScheduleAnyway{{ end }}
      labelSelector:
        matchLabels:
          {{- include "headwater.selectorLabels" (list $root $c) | nindent 10 }}
      {{- if ne $c "log" }}
      matchLabelKeys: [pod-template-hash]
      {{- end }}
    {{- if ne $c "log" }}
    - maxSkew: 1
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "headwater.selectorLabels" (list $root $c) | nindent 10 }}
      matchLabelKeys: [pod-template-hash]
    {{- end }}
  {{- end }}
  containers:
    - name: headwater
      image: {{ include "headwater.image" $root }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      args:
        - {{ $cmd }}
        - --config
        - {{ $p.config }}/headwater.yaml
        - --log-format
        - {{ $s.logFormat }}
      env:
        {{- include "headwater.secretEnv" (list $root $c) | nindent 8 }}
        {{- with $s.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $s.extraEnvFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        - name: http
          containerPort: 8080
          protocol: TCP
        {{- if eq $c "log" }}
        - name: kafka
          containerPort: 9092
          protocol: TCP
        - name: replication
          containerPort: {{ $v.logNode.replication.port }}
          protocol: TCP
        {{- end }}
      {{- $scheme := ternary "HTTPS" "HTTP" (not (empty $tlsIngest)) }}
      startupProbe:
        httpGet:
          path: /readyz
          port: http
          scheme: {{ $scheme }}
        periodSeconds: 5
        timeoutSeconds: 3
        failureThreshold: 120
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
          scheme: {{ $scheme }}
        periodSeconds: 10
        timeoutSeconds: 3
        failureThreshold: 6
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
          scheme: {{ $scheme }}
        periodSeconds: 5
        timeoutSeconds: 3
        failureThreshold: 3
      {{- with $s.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $s.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: {{ $p.config }}
          readOnly: true
        {{- if include "headwater.readsRoutes" $c }}
        - name: routes
          mountPath: {{ $p.routes }}
          readOnly: true
        {{- end }}
        {{- if include "headwater.readsSchemas" $c }}
        - name: schemas
          mountPath: {{ $p.schemas }}
          readOnly: true
        {{- end }}
        - name: data
          mountPath: {{ $p.data }}
        - name: tmp
          mountPath: /tmp
        {{- if $tlsIngest }}
        - name: ingest-tls
          mountPath: {{ $p.ingestTls }}
          readOnly: true
        {{- end }}
        {{- if $kafkaTls }}
        - name: kafka-tls
          mountPath: {{ $p.kafkaTls }}
          readOnly: true
        {{- end }}
        {{- if eq $c "log" }}
        - name: replication-tls
          mountPath: {{ $p.replicationTls }}
          readOnly: true
        {{- end }}
        {{- with $s.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ default (printf "%s-config" $name) $v.config.existingConfigMap }}
    {{- if include "headwater.readsRoutes" $c }}
    - name: routes
      configMap:
        name: {{ default (printf "%s-routes" (include "headwater.fullname" $root)) $v.config.existingRoutesConfigMap }}
    {{- end }}
    {{- if include "headwater.readsSchemas" $c }}
    - name: schemas
      configMap:
        name: {{ default (printf "%s-schemas" (include "headwater.fullname" $root)) $v.config.existingSchemasConfigMap }}
    {{- end }}
    {{- if or (has $c (list "gateway" "router")) (and (eq $c "single") (not $v.single.persistence.enabled)) }}
    - name: data
      emptyDir: {}
    {{- end }}
    - name: tmp
      emptyDir:
        sizeLimit: 256Mi
    {{- if $tlsIngest }}
    - name: ingest-tls
      secret:
        secretName: {{ $v.ingestTls.existingSecret }}
    {{- end }}
    {{- if $kafkaTls }}
    - name: kafka-tls
      secret:
        secretName: {{ $v.kafka.tls.existingSecret }}
    {{- end }}
    {{- if eq $c "log" }}
    - name: replication-tls
      secret:
        secretName: {{ $v.logNode.replication.tlsSecret }}
    {{- end }}
    {{- with $s.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
