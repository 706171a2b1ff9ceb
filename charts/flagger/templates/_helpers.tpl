{{/* Chart name, overridable. */}}
{{- define "flagger.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified name. A release named like the chart (the usual `helm install flagger`) is not
doubled into "flagger-flagger".
*/}}
{{- define "flagger.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "flagger.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the operator's pods; never change them on upgrade. */}}
{{- define "flagger.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flagger.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "flagger.labels" -}}
helm.sh/chart: {{ include "flagger.chart" . }}
{{ include "flagger.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "flagger.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "flagger.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "flagger.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
Namespace of the leader-election Lease and of the shard Leases. The operator keeps it in its watch namespace when it has
one and in -leader-election-namespace otherwise (which the chart sets to the release namespace).
*/}}
{{- define "flagger.leaseNamespace" -}}
{{- default .Release.Namespace .Values.namespace -}}
{{- end -}}

{{/* Secret holding the notifier URLs and tokens, if any is set. */}}
{{- define "flagger.notifierSecretName" -}}
{{- printf "%s-notifiers" (include "flagger.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "flagger.notifierSecretData" -}}
{{- with .Values.slack.url }}
SLACK_URL: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.slack.token }}
SLACK_TOKEN: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.msteams.url }}
MSTEAMS_URL: {{ . | b64enc | quote }}
{{- end }}
{{- with .Values.eventWebhook }}
EVENT_WEBHOOK_URL: {{ . | b64enc | quote }}
{{- end }}
{{- end -}}

{{/*
Arguments of `flagger run`, in the operator's Go-flag style (one dash, `=` before the value;
booleans always with `=true`/`=false`). Rendered as a YAML list, quoted by the caller.
*/}}
{{- define "flagger.args" -}}
- run
- {{ printf "-log-level=%s" .Values.logLevel | quote }}
- {{ printf "-metrics-server=%s" .Values.metricsServer | quote }}
{{- with .Values.meshProvider }}
- {{ printf "-mesh-provider=%s" . | quote }}
{{- end }}
{{- with .Values.namespace }}
- {{ printf "-namespace=%s" . | quote }}
{{- end }}
{{- with .Values.selectorLabels }}
- {{ printf "-selector-labels=%s" . | quote }}
{{- end }}
{{- with .Values.includeLabelPrefix }}
- {{ printf "-include-label-prefix=%s" . | quote }}
{{- end }}
- {{ printf "-enable-config-tracking=%t" (.Values.configTracking.enabled | default false) | quote }}
- {{ printf "-enable-leader-election=%t" (.Values.leaderElection.enabled | default false) | quote }}
{{- if or .Values.leaderElection.enabled .Values.sharding.enabled }}
- {{ printf "-leader-election-namespace=%s" .Release.Namespace | quote }}
{{- end }}
{{- if .Values.sharding.enabled }}
- {{ printf "-shards=%d" (int .Values.sharding.shards) | quote }}
- {{ printf "-shard-by=%s" .Values.sharding.by | quote }}
- {{ printf "-shard-lease-duration=%s" .Values.sharding.leaseDuration | quote }}
{{- end }}
{{- with .Values.controlLoopInterval }}
- {{ printf "-control-loop-interval=%s" . | quote }}
{{- end }}
{{- with .Values.minAnalysisInterval }}
- {{ printf "-min-analysis-interval=%s" . | quote }}
{{- end }}
{{- with .Values.threadiness }}
- {{ printf "-threadiness=%v" . | quote }}
{{- end }}
{{- with .Values.kubeconfigQPS }}
- {{ printf "-kubeconfig-qps=%v" . | quote }}
{{- end }}
{{- with .Values.kubeconfigBurst }}
- {{ printf "-kubeconfig-burst=%v" . | quote }}
{{- end }}
{{- with .Values.maxWritesInFlight }}
- {{ printf "-max-writes-in-flight=%v" . | quote }}
{{- end }}
{{- with .Values.maxConcurrentInitializations }}
- {{ printf "-max-concurrent-initializations=%v" . | quote }}
{{- end }}
{{- with .Values.clusterName }}
- {{ printf "-cluster-name=%s" . | quote }}
{{- end }}
{{- if .Values.slack.url }}
- {{ printf "-slack-user=%s" .Values.slack.user | quote }}
- {{ printf "-slack-channel=%s" .Values.slack.channel | quote }}
{{- end }}
{{- with .Values.slack.proxy }}
- {{ printf "-slack-proxy-url=%s" . | quote }}
{{- end }}
{{- with .Values.msteams.proxy }}
- {{ printf "-msteams-proxy-url=%s" . | quote }}
{{- end }}
{{- if .Values.recordTraces.enabled }}
- "-record-traces=/var/lib/flagger/traces"
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}
