{{/* Chart name, truncated to the 63 characters Kubernetes allows in names and labels. */}}
{{- define "llmops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped prefix of every object; component names are appended as "<fullname>-<component>". */}}
{{- define "llmops.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains (include "llmops.name" .) .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "llmops.name" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. Call with (dict "root" $ "component" "gateway"). */}}
{{- define "llmops.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: llmops-platform
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "llmops.selectorLabels" . }}
{{- end -}}

{{/* Immutable selector labels of one component. */}}
{{- define "llmops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llmops.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Image of a platform service: (dict "root" $ "name" "gateway"). */}}
{{- define "llmops.serviceImage" -}}
{{- $img := .root.Values.image -}}
{{- include "llmops.image" (dict "root" .root "repository" (printf "%s/%s" $img.prefix .name) "tag" (default .root.Chart.AppVersion $img.tag)) -}}
{{- end -}}

{{/* Any image of the chart behind image.registry when one is set (a mirror for every pod):
     (dict "root" $ "repository" "vllm/vllm-openai" "tag" "v0.33.0"). */}}
{{- define "llmops.image" -}}
{{- $registry := .root.Values.image.registry -}}
{{- if $registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $registry) .repository .tag -}}
{{- else -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}
{{- end -}}

{{/* imagePullSecrets of every pod spec (indent 6 under spec:, or use nindent). */}}
{{- define "llmops.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The Prometheus job name of a component (its Service's llmops-platform/job label, the ServiceMonitors'
     jobLabel): the same as compose's job_name, so dashboards and alerts do not depend on the release name. */}}
{{- define "llmops.jobName" -}}
{{- if eq . "vllm" -}}vllm{{- else -}}{{ printf "llmops-%s" . }}{{- end -}}
{{- end -}}

{{/* Name of the Secret holding passwords, tokens and DSNs. */}}
{{- define "llmops.secretName" -}}
{{- default (printf "%s-secrets" (include "llmops.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Where state lives: in-cluster StatefulSets or the external endpoints (Redis: its URL, which carries the
     password, is the Secret's redis-url). */}}
{{- define "llmops.qdrantUrl" -}}
{{- if .Values.qdrant.enabled -}}
{{- printf "http://%s-qdrant:6333" (include "llmops.fullname" .) -}}
{{- else -}}
{{- required "externalQdrant.url is required when qdrant.enabled=false" .Values.externalQdrant.url -}}
{{- end -}}
{{- end -}}

{{- define "llmops.mlflowUrl" -}}
{{- if .Values.mlflow.enabled -}}
{{- printf "http://%s-mlflow:5000" (include "llmops.fullname" .) -}}
{{- else -}}
{{- required "externalMlflow.url is required when mlflow.enabled=false" .Values.externalMlflow.url -}}
{{- end -}}
{{- end -}}

{{- define "llmops.postgresHost" -}}
{{- printf "%s-postgresql" (include "llmops.fullname" .) -}}
{{- end -}}

{{/* HTTP GET probe on a named port. (dict "probe" $probe "port" "http") */}}
{{- define "llmops.httpProbe" -}}
httpGet:
  path: {{ .probe.path }}
  port: {{ .port }}
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end -}}
