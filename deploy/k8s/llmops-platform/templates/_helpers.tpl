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
{{- $prefix := ternary (printf "%s/%s" $img.registry $img.prefix) $img.prefix (ne $img.registry "") -}}
{{- printf "%s/%s:%s" $prefix .name (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}

{{/* Name of the Secret holding passwords, tokens and DSNs. */}}
{{- define "llmops.secretName" -}}
{{- default (printf "%s-secrets" (include "llmops.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Where state lives: in-cluster StatefulSets or the external endpoints. */}}
{{- define "llmops.redisUrl" -}}
{{- if .Values.redis.enabled -}}
{{- printf "redis://%s-redis:6379/0" (include "llmops.fullname" .) -}}
{{- else -}}
{{- required "externalRedis.url is required when redis.enabled=false" .Values.externalRedis.url -}}
{{- end -}}
{{- end -}}

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
