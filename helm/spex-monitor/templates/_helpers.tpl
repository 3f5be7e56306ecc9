{{/* Names: <release>-spex-monitor unless the release name already says spex-monitor. 63 = DNS label. */}}
{{- define "spex-monitor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "spex-monitor.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "spex-monitor.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Suffixed names keep the suffix whole when the base is long. */}}
{{- define "spex-monitor.suffixed" -}}
{{- $base := include "spex-monitor.fullname" .root | trunc (int (sub 62 (len .suffix))) | trimSuffix "-" -}}
{{- printf "%s-%s" $base .suffix -}}
{{- end -}}

{{- define "spex-monitor.configName" -}}
{{- include "spex-monitor.suffixed" (dict "root" . "suffix" "config") -}}
{{- end -}}

{{- define "spex-monitor.dataClaimName" -}}
{{- .Values.persistence.existingClaim | default (include "spex-monitor.suffixed" (dict "root" . "suffix" "data")) -}}
{{- end -}}

{{- define "spex-monitor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "spex-monitor.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{- define "spex-monitor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spex-monitor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "spex-monitor.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "spex-monitor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .Values.mode }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "spex-monitor.image" -}}
{{- $image := .Values.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository ($image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* A port the pod must declare: Kubernetes needs a fixed one, so 0 ("any free port") is refused. */}}
{{- define "spex-monitor.port" -}}
{{- $port := int .port -}}
{{- if or (lt $port 1) (gt $port 65535) -}}
{{- fail (printf "%s must be a fixed port in 1-65535 on Kubernetes (got %v)" .name .port) -}}
{{- end -}}
{{- $port -}}
{{- end -}}

{{/* The bound ports; the fallbacks are ServerConfig's defaults (a test keeps them equal). */}}
{{- define "spex-monitor.grpcPort" -}}
{{- include "spex-monitor.port" (dict "name" "config.server.grpc_port" "port" (dig "grpc_port" 50051 (.Values.config.server | default dict))) -}}
{{- end -}}

{{- define "spex-monitor.metricsPort" -}}
{{- include "spex-monitor.port" (dict "name" "config.server.metrics_port" "port" (dig "metrics_port" 9464 (.Values.config.server | default dict))) -}}
{{- end -}}

{{/* Where a pinned baseline (baseline.pinned) is mounted, and the file config.baseline.file names. */}}
{{- define "spex-monitor.baselineDir" -}}/etc/spex-monitor/baseline{{- end -}}

{{- define "spex-monitor.pinned" -}}
{{- if or .Values.baseline.pinned.configMap .Values.baseline.pinned.secret -}}true{{- end -}}
{{- end -}}

{{/* The configuration file: values.config plus the fields the chart owns (TLS paths, events port, baseline). */}}
{{- define "spex-monitor.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $server := get $config "server" | default dict -}}
{{- if .Values.tls.enabled -}}
{{- $dir := .Values.tls.mountPath | trimSuffix "/" -}}
{{- $tls := dict "cert_file" (printf "%s/tls.crt" $dir) "key_file" (printf "%s/tls.key" $dir) -}}
{{- if .Values.tls.mutual -}}
{{- $_ := set $tls "ca_file" (printf "%s/ca.crt" $dir) -}}
{{- end -}}
{{- $_ := set $server "tls" $tls -}}
{{- end -}}
{{- if .Values.events.enabled -}}
{{- $_ := set $server "events_port" (int .Values.events.port) -}}
{{- end -}}
{{- $_ := set $config "server" $server -}}
{{- if include "spex-monitor.pinned" . -}}
{{- $baseline := get $config "baseline" | default dict -}}
{{- $_ := set $baseline "file" (printf "%s/%s" (include "spex-monitor.baselineDir" .) .Values.baseline.pinned.key) -}}
{{- $_ := set $config "baseline" $baseline -}}
{{- end -}}
{{- with .Values.store.postgres.url -}}
{{- $store := get $config "store" | default dict -}}
{{- $_ := set $store "url" . -}}
{{- $_ := unset $store "max_bytes" -}}
{{- if $.Values.store.postgres.passwordSecret.name -}}
{{- $_ := set $store "password_file" (printf "%s/%s" (include "spex-monitor.storeSecretDir" $) $.Values.store.postgres.passwordSecret.key) -}}
{{- end -}}
{{- $_ := set $config "store" $store -}}
{{- end -}}
{{- if eq .Values.aggregator.mode "sidecars" -}}
{{- $fleet := get $config "fleet" | default dict -}}
{{- $_ := set $fleet "aggregate" true -}}
{{- $_ := set $config "fleet" $fleet -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* Where the PostgreSQL password Secret (store.postgres.passwordSecret) is mounted. */}}
{{- define "spex-monitor.storeSecretDir" -}}/etc/spex-monitor/store{{- end -}}

{{/*
Ports, shared by the container, the Service, the NetworkPolicy and the sidecar's clash check. Container port
names carry a spex- prefix: in sidecar mode they share the pod with the model server's own ports, and the
Service targets them by name. `value` is the knob that sets the number.
*/}}
{{- define "spex-monitor.ports" -}}
{{- $server := .Values.config.server | default dict -}}
- name: grpc
  portName: spex-grpc
  port: {{ include "spex-monitor.grpcPort" . }}
  appProtocol: grpc
  value: config.server.grpc_port
- name: metrics
  portName: spex-metrics
  port: {{ include "spex-monitor.metricsPort" . }}
  appProtocol: http
  value: config.server.metrics_port
{{- if not (kindIs "invalid" $server.proxy_port) }}
- name: oip-proxy
  portName: spex-proxy
  port: {{ include "spex-monitor.port" (dict "name" "config.server.proxy_port" "port" $server.proxy_port) }}
  appProtocol: grpc
  value: config.server.proxy_port
{{- end }}
{{- if not (kindIs "invalid" $server.openai_proxy_port) }}
- name: openai-proxy
  portName: spex-openai
  port: {{ include "spex-monitor.port" (dict "name" "config.server.openai_proxy_port" "port" $server.openai_proxy_port) }}
  appProtocol: http
  value: config.server.openai_proxy_port
{{- end }}
{{- if .Values.events.enabled }}
- name: events
  portName: spex-events
  port: {{ include "spex-monitor.port" (dict "name" "events.port" "port" .Values.events.port) }}
  appProtocol: http
  value: events.port
{{- end }}
{{- end -}}

{{/* Whether the container has a readiness probe (it then gates the pod's readiness). */}}
{{- define "spex-monitor.gateReadiness" -}}
{{- if ne .Values.mode "sidecar" -}}
true
{{- else if eq (toString .Values.sidecar.gateReadiness) "auto" -}}
{{- if kindIs "invalid" (.Values.config.server | default dict).proxy_port }}false{{ else }}true{{ end -}}
{{- else -}}
{{- .Values.sidecar.gateReadiness | toString -}}
{{- end -}}
{{- end -}}

{{/* A CPU quantity ("250m", "1", 0.5) in millicores. */}}
{{- define "spex-monitor.millicores" -}}
{{- $text := toString . -}}
{{- if hasSuffix "m" $text -}}{{- trimSuffix "m" $text | int -}}{{- else -}}{{- mulf (float64 $text) 1000 | int -}}{{- end -}}
{{- end -}}

{{/*
The container's resources: values.resources, plus a CPU request sized for the explain workers when none is
given (cpuRequest.base + cpuRequest.perWorker x server.workers, x server.torch_threads when a model runs
the local backend), plus the GPU limit. Only requests protect the serving container's CPU from this one.
*/}}
{{- define "spex-monitor.resources" -}}
{{- $resources := deepCopy (.Values.resources | default dict) -}}
{{- $requests := get $resources "requests" | default dict -}}
{{- if not (hasKey $requests "cpu") -}}
{{- $server := .Values.config.server | default dict -}}
{{- $threads := 1 -}}
{{- range .Values.config.models -}}
{{- if eq (toString (dig "backend" "kind" "" .)) "local" -}}{{- $threads = int ($server.torch_threads | default 1) -}}{{- end -}}
{{- end -}}
{{- $perWorker := include "spex-monitor.millicores" .Values.cpuRequest.perWorker | int -}}
{{- $base := include "spex-monitor.millicores" .Values.cpuRequest.base | int -}}
{{- $_ := set $requests "cpu" (printf "%dm" (add $base (mul $perWorker (int ($server.workers | default 1)) $threads))) -}}
{{- $_ := set $resources "requests" $requests -}}
{{- end -}}
{{- if .Values.gpu.enabled -}}
{{- $limits := get $resources "limits" | default dict -}}
{{- $_ := set $limits .Values.gpu.resourceName (int .Values.gpu.count) -}}
{{- $_ := set $resources "limits" $limits -}}
{{- end -}}
{{- toYaml $resources -}}
{{- end -}}

{{/*
The store's emptyDir (no persistence): sized to config.store.max_bytes, doubled for the WAL and journal plus
64 MiB, so the store degrades (StoreDegraded, writes refused) long before the kubelet would evict the pod —
in sidecar mode an eviction would take the serving pod with it.
*/}}
{{- define "spex-monitor.dataSizeLimit" -}}
{{- $max := (.Values.config.store | default dict).max_bytes -}}
{{- if $max -}}{{- printf "%dMi" (add (div (mul 2 (int64 $max)) 1048576) 65) -}}{{- end -}}
{{- end -}}

{{/* Volume names carry the chart's prefix so they cannot clash with the serving pod's own in sidecar mode. */}}
{{- define "spex-monitor.volumes" -}}
- name: spex-monitor-config
  configMap:
    name: {{ include "spex-monitor.configName" . }}
- name: spex-monitor-tmp
  emptyDir:
    {{- with .Values.tmpDir.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
- name: spex-monitor-data
  {{- if .Values.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ include "spex-monitor.dataClaimName" . }}
  {{- else if include "spex-monitor.dataSizeLimit" . }}
  emptyDir:
    sizeLimit: {{ include "spex-monitor.dataSizeLimit" . }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- if .Values.tls.enabled }}
- name: spex-monitor-tls
  secret:
    secretName: {{ .Values.tls.secretName }}
    {{- if eq .Values.mode "sidecar" }}
    # World-readable inside this container only: the serving pod sets no fsGroup that would give uid 10001
    # the files' group, and no other container mounts this volume.
    defaultMode: 0444
    {{- else }}
    # Readable through the pod's fsGroup (podSecurityContext).
    defaultMode: 0440
    {{- end }}
{{- end }}
{{- with .Values.store.postgres.passwordSecret.name }}
- name: spex-monitor-store-password
  secret:
    secretName: {{ . }}
    items: [{key: {{ $.Values.store.postgres.passwordSecret.key | quote }}, path: {{ $.Values.store.postgres.passwordSecret.key | quote }}}]
    {{- if eq $.Values.mode "sidecar" }}
    defaultMode: 0444
    {{- else }}
    defaultMode: 0440
    {{- end }}
{{- end }}
{{- with .Values.baseline.pinned }}
{{- if or .configMap .secret }}
- name: spex-monitor-baseline
  {{- if .configMap }}
  configMap:
    name: {{ .configMap }}
    items: [{key: {{ .key | quote }}, path: {{ .key | quote }}}]
  {{- else }}
  secret:
    secretName: {{ .secret }}
    items: [{key: {{ .key | quote }}, path: {{ .key | quote }}}]
  {{- end }}
    defaultMode: 0444
{{- end }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Probes, all on the metrics port's HTTP server (answered off the gRPC user-call pool): startup and liveness
GET /healthz (the process and its HTTP server live), readiness GET /readyz (what serving needs is up: the
OIP proxy port when configured, else the gRPC server) where readiness gates the pod.
*/}}
{{/*
HTTPS when the metrics port serves TLS: the chart's tls.enabled sets server.tls, which the metrics port
inherits unless config.server.metrics_tls says "off" (an own cert/key also means TLS).
*/}}
{{- define "spex-monitor.metricsScheme" -}}
{{- $server := (.Values.config | default dict).server | default dict -}}
{{- $metricsTLS := get $server "metrics_tls" | default "inherit" -}}
{{- if kindIs "map" $metricsTLS -}}HTTPS
{{- else if and .Values.tls.enabled (ne $metricsTLS "off") -}}HTTPS
{{- else -}}HTTP
{{- end -}}
{{- end -}}

{{- define "spex-monitor.probes" -}}
{{- if .Values.probes.enabled -}}
{{- $get := dict "path" "/healthz" "port" "spex-metrics" -}}
{{- $ready := dict "path" "/readyz" "port" "spex-metrics" -}}
{{- if eq (include "spex-monitor.metricsScheme" .) "HTTPS" -}}
{{- $_ := set $get "scheme" "HTTPS" -}}
{{- $_ := set $ready "scheme" "HTTPS" -}}
{{- end -}}
{{- $health := dict "httpGet" $get -}}
startupProbe:
  {{- toYaml (merge (dict) (deepCopy $health) .Values.probes.startup) | nindent 2 }}
livenessProbe:
  {{- toYaml (merge (dict) (deepCopy $health) .Values.probes.liveness) | nindent 2 }}
{{- if eq (include "spex-monitor.gateReadiness" .) "true" }}
readinessProbe:
  {{- toYaml (merge (dict "httpGet" $ready) .Values.probes.readiness) | nindent 2 }}
{{- end }}
{{- end -}}
{{- end -}}

{{- define "spex-monitor.container" -}}
name: spex-monitor
image: {{ include "spex-monitor.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
command: ["spex-monitor"]
args:
  - serve
  - --config
  - /etc/spex-monitor/config/config.yaml
  {{- range .Values.extraArgs }}
  - {{ . | quote }}
  {{- end }}
env:
  - name: HOME
    value: /tmp
  - name: HF_HOME
    value: /tmp/huggingface
  - name: HF_HUB_OFFLINE
    value: "1"
  - name: PYTHONUNBUFFERED
    value: "1"
  # glibc gives each thread group its own heap arena; with gRPC's thread pools that fragments and creeps.
  # Two arenas cut the sidecar's RSS creep under sustained load by ~60 % (benchmarks/RESULTS.md).
  - name: MALLOC_ARENA_MAX
    value: "2"
  {{- with .Values.adminToken.existingSecret }}
  - name: SPEX_MONITOR_SERVER__ADMIN_TOKEN
    valueFrom:
      secretKeyRef:
        name: {{ . }}
        key: {{ $.Values.adminToken.key }}
  {{- end }}
  {{- with .Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
ports:
  {{- range include "spex-monitor.ports" . | fromYamlArray }}
  - name: {{ .portName }}
    containerPort: {{ .port }}
    protocol: TCP
  {{- end }}
{{- with include "spex-monitor.probes" . }}
{{ . }}
{{- end }}
resources:
  {{- include "spex-monitor.resources" . | nindent 2 }}
{{- with .Values.securityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumeMounts:
  - name: spex-monitor-config
    mountPath: /etc/spex-monitor/config
    readOnly: true
  - name: spex-monitor-tmp
    mountPath: /tmp
  - name: spex-monitor-data
    mountPath: {{ .Values.persistence.mountPath }}
  {{- if .Values.tls.enabled }}
  - name: spex-monitor-tls
    mountPath: {{ .Values.tls.mountPath }}
    readOnly: true
  {{- end }}
  {{- if .Values.store.postgres.passwordSecret.name }}
  - name: spex-monitor-store-password
    mountPath: {{ include "spex-monitor.storeSecretDir" . }}
    readOnly: true
  {{- end }}
  {{- if include "spex-monitor.pinned" . }}
  - name: spex-monitor-baseline
    mountPath: {{ include "spex-monitor.baselineDir" . }}
    readOnly: true
  {{- end }}
  {{- with .Values.extraVolumeMounts }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}
