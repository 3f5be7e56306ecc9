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

{{/*
Checks that need more than one value, done once (the ConfigMap includes this): the schema cannot express
them, and a failed install names the knob instead of a crash-looping pod.
*/}}
{{- define "spex-monitor.validate" -}}
{{- $server := .Values.config.server | default dict -}}
{{- if and (not (kindIs "invalid" $server.proxy_port)) (not $server.upstream) -}}
{{- fail "config.server.proxy_port is set but config.server.upstream (the model server's host:port) is not" -}}
{{- end -}}
{{- if $server.admin_token -}}
{{- fail "config.server.admin_token would land in a ConfigMap: put it in a Secret and set adminToken.existingSecret" -}}
{{- end -}}
{{- if not (kindIs "invalid" $server.events_port) -}}
{{- fail "config.server.events_port is owned by the chart: set events.enabled and events.port instead" -}}
{{- end -}}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) -}}
{{- fail "tls.enabled needs tls.secretName (a kubernetes.io/tls Secret with tls.crt, tls.key and, for mutual, ca.crt)" -}}
{{- end -}}
{{- $store := (.Values.config.store | default dict).path | default "spex-monitor.db" | toString -}}
{{- $mount := .Values.persistence.mountPath | trimSuffix "/" -}}
{{- if not (hasPrefix (printf "%s/" $mount) $store) -}}
{{- fail (printf "config.store.path (%s) must lie under persistence.mountPath (%s): the root filesystem is read-only" $store $mount) -}}
{{- end -}}
{{- if eq .Values.mode "sidecar" -}}
{{- if not .Values.sidecar.podSelector -}}
{{- fail "mode sidecar needs sidecar.podSelector: the labels of the serving pods the sidecar is added to" -}}
{{- end -}}
{{- if .Values.networkPolicy.enabled -}}
{{- fail "networkPolicy is for mode standalone: in sidecar mode the pod's policy also covers the model server's ports, so it belongs with the serving workload" -}}
{{- end -}}
{{- else if and .Values.persistence.enabled (gt (int .Values.replicaCount) 1) -}}
{{- fail "persistence.enabled with replicaCount > 1: SQLite must have one writer; keep one replica or use an emptyDir per pod" -}}
{{- end -}}
{{- if .Values.gpu.enabled -}}
{{- $local := false -}}
{{- range .Values.config.models -}}
{{- if eq (toString (dig "backend" "kind" "" .)) "local" -}}{{- $local = true -}}{{- end -}}
{{- end -}}
{{- if not $local -}}
{{- fail "gpu.enabled serves the local backend: no model in config.models has backend.kind local" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The configuration file: values.config plus the fields the chart owns (TLS paths, events port). */}}
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
{{- toYaml $config -}}
{{- end -}}

{{/*
Ports, shared by the container, the Service and the NetworkPolicy. Container port names carry a spex- prefix:
in sidecar mode they share the pod with the model server's own ports, and the Service targets them by name.
*/}}
{{- define "spex-monitor.ports" -}}
{{- $server := .Values.config.server | default dict -}}
- name: grpc
  portName: spex-grpc
  port: {{ include "spex-monitor.grpcPort" . }}
  appProtocol: grpc
- name: metrics
  portName: spex-metrics
  port: {{ include "spex-monitor.metricsPort" . }}
  appProtocol: http
{{- if not (kindIs "invalid" $server.proxy_port) }}
- name: oip-proxy
  portName: spex-proxy
  port: {{ include "spex-monitor.port" (dict "name" "config.server.proxy_port" "port" $server.proxy_port) }}
  appProtocol: grpc
{{- end }}
{{- if .Values.events.enabled }}
- name: events
  portName: spex-events
  port: {{ include "spex-monitor.port" (dict "name" "events.port" "port" .Values.events.port) }}
  appProtocol: http
{{- end }}
{{- end -}}

{{/* Whether the container has a readiness (and startup) probe. */}}
{{- define "spex-monitor.gateReadiness" -}}
{{- if ne .Values.mode "sidecar" -}}
true
{{- else if eq (toString .Values.sidecar.gateReadiness) "auto" -}}
{{- if kindIs "invalid" (.Values.config.server | default dict).proxy_port }}false{{ else }}true{{ end -}}
{{- else -}}
{{- .Values.sidecar.gateReadiness | toString -}}
{{- end -}}
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
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- if .Values.tls.enabled }}
- name: spex-monitor-tls
  secret:
    secretName: {{ .Values.tls.secretName }}
    defaultMode: 0440
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "spex-monitor.container" -}}
{{- $secure := .Values.tls.enabled -}}
{{- $gate := eq (include "spex-monitor.gateReadiness" .) "true" -}}
{{- $resources := deepCopy (.Values.resources | default dict) -}}
{{- if .Values.gpu.enabled -}}
{{- $limits := get $resources "limits" | default dict -}}
{{- $_ := set $limits .Values.gpu.resourceName (int .Values.gpu.count) -}}
{{- $_ := set $resources "limits" $limits -}}
{{- end -}}
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
{{- if .Values.probes.enabled }}
{{- $grpcPort := include "spex-monitor.grpcPort" . }}
{{- $check := ternary (dict "tcpSocket" (dict "port" "spex-grpc")) (dict "grpc" (dict "port" (int $grpcPort))) $secure }}
{{- if $gate }}
startupProbe:
  {{- toYaml (merge (dict) $check .Values.probes.startup) | nindent 2 }}
readinessProbe:
  {{- toYaml (merge (dict) $check .Values.probes.readiness) | nindent 2 }}
livenessProbe:
  {{- toYaml (merge (dict "tcpSocket" (dict "port" "spex-metrics")) .Values.probes.liveness) | nindent 2 }}
{{- else }}
{{- $startup := .Values.probes.startup }}
{{- $delay := mul (int ($startup.periodSeconds | default 5)) (int ($startup.failureThreshold | default 60)) }}
livenessProbe:
  {{- toYaml (merge (dict "tcpSocket" (dict "port" "spex-metrics") "initialDelaySeconds" (int $delay)) .Values.probes.liveness) | nindent 2 }}
{{- end }}
{{- end }}
{{- with $resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
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
  {{- with .Values.extraVolumeMounts }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}
