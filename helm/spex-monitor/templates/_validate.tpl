{{/*
Checks that need more than one value, done once (the config ConfigMap includes this): the schema cannot express
them, and a failed install names the knob instead of leaving a pod that cannot start or takes serving down.
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
{{- include "spex-monitor.validateBaseline" . -}}
{{- include "spex-monitor.validateStore" . -}}
{{- $pdb := .Values.podDisruptionBudget -}}
{{- if and $pdb.enabled (not (kindIs "invalid" $pdb.minAvailable)) (not (kindIs "invalid" $pdb.maxUnavailable)) -}}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both" -}}
{{- end -}}
{{- if eq .Values.mode "sidecar" -}}
{{- include "spex-monitor.validateSidecar" . -}}
{{- else if and (gt (int .Values.replicaCount) 1) (not .Values.store.postgres.url) -}}
{{- fail (printf "replicaCount %d: each replica would keep its own store and baseline and see a share of the traffic; more than one replica needs a shared store (store.postgres.url). Keep replicaCount 1" (int .Values.replicaCount)) -}}
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
{{- include "spex-monitor.checkReferences" . -}}
{{- end -}}

{{/* The shared store: the chart owns config.store.url/password_file and config.fleet.aggregate. */}}
{{- define "spex-monitor.validateStore" -}}
{{- $store := .Values.config.store | default dict -}}
{{- $pg := .Values.store.postgres -}}
{{- if or $store.url $store.password_file -}}
{{- fail "config.store.url and config.store.password_file are owned by the chart: set store.postgres.url and store.postgres.passwordSecret" -}}
{{- end -}}
{{- if regexMatch "^postgres(ql)?://[^/@]*:[^/@]*@" $pg.url -}}
{{- fail "store.postgres.url must not carry a password (it would land in a ConfigMap): put it in a Secret and set store.postgres.passwordSecret.name" -}}
{{- end -}}
{{- if hasKey (.Values.config.fleet | default dict) "aggregate" -}}
{{- fail "config.fleet.aggregate is owned by the chart: set aggregator.mode (sidecars or standalone)" -}}
{{- end -}}
{{- if and (ne .Values.aggregator.mode "disabled") (not $pg.url) -}}
{{- fail (printf "aggregator.mode %s needs the shared PostgreSQL store: set store.postgres.url" .Values.aggregator.mode) -}}
{{- end -}}
{{- if and (ne .Values.aggregator.mode "disabled") (not (dig "windows" "seconds" 300 (.Values.config | default dict))) (not (dig "fleet" "window_s" nil (.Values.config | default dict))) -}}
{{- fail "aggregator.mode needs time windows: set config.fleet.window_s when config.windows.seconds is null" -}}
{{- end -}}
{{- end -}}

{{/* A restart must not relearn the baseline from whatever traffic follows: pin one, or opt in to learning. */}}
{{- define "spex-monitor.validateBaseline" -}}
{{- $pinned := .Values.baseline.pinned -}}
{{- if and $pinned.configMap $pinned.secret -}}
{{- fail "baseline.pinned: set configMap or secret, not both" -}}
{{- end -}}
{{- $file := (.Values.config.baseline | default dict).file -}}
{{- if and (or $pinned.configMap $pinned.secret) $file -}}
{{- fail "config.baseline.file is set by the chart from baseline.pinned: leave it unset" -}}
{{- end -}}
{{- if not (or $pinned.configMap $pinned.secret $file .Values.baseline.learnFromTraffic) -}}
{{- fail "no pinned baseline: set baseline.pinned.configMap (or .secret) to one holding `spex-monitor baseline export --model <model>` bytes under baseline.pinned.key, or set baseline.learnFromTraffic: true to learn one from the first windows after every start (a restart during a shift then learns the shifted traffic as normal)" -}}
{{- end -}}
{{- end -}}

{{/* Sidecar mode: the monitor shares the serving pod, so nothing it adds may clash with or starve serving. */}}
{{- define "spex-monitor.validateSidecar" -}}
{{- if not .Values.sidecar.podSelector -}}
{{- fail "mode sidecar needs sidecar.podSelector: the labels of the serving pods the sidecar is added to" -}}
{{- end -}}
{{- if and (hasKey .Values.sidecar.podSelector "serving.kserve.io/inferenceservice") (not (hasKey .Values.sidecar.podSelector "component")) -}}
{{- fail "sidecar.podSelector selects an InferenceService's pods: add component: predictor (KServe's label), or the Service also selects its transformer and explainer pods" -}}
{{- end -}}
{{- if .Values.networkPolicy.enabled -}}
{{- fail "networkPolicy is for mode standalone: in sidecar mode the pod's policy also covers the model server's ports, so it belongs with the serving workload" -}}
{{- end -}}
{{- if .Values.persistence.enabled -}}
{{- fail "persistence.enabled in mode sidecar: every serving replica would mount the one ReadWriteOnce claim (a second node cannot attach it, two pods on one node are two SQLite writers on one file). Keep the per-pod emptyDir store, pin the baseline (baseline.pinned) so restarts keep it; fleet state belongs in the shared PostgreSQL store (store.postgres.url)" -}}
{{- end -}}
{{- if .Values.podDisruptionBudget.enabled -}}
{{- fail "podDisruptionBudget is for mode standalone: in sidecar mode the serving workload's budget covers the pod" -}}
{{- end -}}
{{- $serving := list -}}
{{- range .Values.sidecar.servingPorts | default list -}}{{- $serving = append $serving (int .) -}}{{- end -}}
{{- range include "spex-monitor.ports" . | fromYamlArray -}}
{{- if has (int .port) $serving -}}
{{- fail (printf "%s %d clashes with a port of the serving pod (sidecar.servingPorts %v): pick another" .value (int .port) $serving) -}}
{{- end -}}
{{- end -}}
{{- $budget := .Values.config.budget | default dict -}}
{{- range $index, $model := .Values.config.models -}}
{{- range $endpoint := (dig "backend" "endpoints" list $model) -}}
{{- if regexMatch "^(127\\.|localhost:|\\[::1\\]:)" (toString $endpoint) -}}
{{- if not $.Values.sidecar.ablateServingContainer -}}
{{- fail (printf "config.models[%d].backend.endpoints: %s is the serving container itself, so ablations would compete with live traffic for its CPU/GPU. Point the backend at replicas that serve no live traffic (a shadow predictor, see README.md), or set sidecar.ablateServingContainer: true" $index $endpoint) -}}
{{- end -}}
{{- if not $budget.max_latency_s -}}
{{- fail "sidecar.ablateServingContainer needs config.budget.max_latency_s: the ablation budget must pause while the serving container's batch latency is above it" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Objects the pod needs that this chart does not create. Offline (helm template) lookup returns nothing, so the
check runs only where the namespace's kube-root-ca.crt ConfigMap is visible (a live install); NOTES.txt lists
them either way. checkReferences: false skips it (an installer without read access to Secrets).
*/}}
{{- define "spex-monitor.references" -}}
{{- if .Values.tls.enabled }}
- {kind: Secret, name: {{ .Values.tls.secretName | quote }}, value: tls.secretName}
{{- end }}
{{- with .Values.adminToken.existingSecret }}
- {kind: Secret, name: {{ . | quote }}, value: adminToken.existingSecret}
{{- end }}
{{- range .Values.imagePullSecrets }}
- {kind: Secret, name: {{ .name | quote }}, value: imagePullSecrets}
{{- end }}
{{- with .Values.baseline.pinned.secret }}
- {kind: Secret, name: {{ . | quote }}, value: baseline.pinned.secret}
{{- end }}
{{- with .Values.baseline.pinned.configMap }}
- {kind: ConfigMap, name: {{ . | quote }}, value: baseline.pinned.configMap}
{{- end }}
{{- with .Values.store.postgres.passwordSecret.name }}
- {kind: Secret, name: {{ . | quote }}, value: store.postgres.passwordSecret.name}
{{- end }}
{{- end -}}

{{- define "spex-monitor.checkReferences" -}}
{{- if and .Values.checkReferences (lookup "v1" "ConfigMap" .Release.Namespace "kube-root-ca.crt") -}}
{{- range include "spex-monitor.references" . | fromYamlArray -}}
{{- if not (lookup "v1" .kind $.Release.Namespace .name) -}}
{{- fail (printf "%s: %s %q does not exist in namespace %s; create it first (the pod would not start)" .value .kind .name $.Release.Namespace) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
