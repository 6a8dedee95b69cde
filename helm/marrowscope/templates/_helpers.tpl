{{/* Names */}}
{{- define "marrowscope.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "marrowscope.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* <fullname>-<component>, e.g. release-marrowscope-inference */}}
{{- define "marrowscope.componentName" -}}
{{- printf "%s-%s" (include "marrowscope.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Standard labels (app.kubernetes.io/*) */}}
{{- define "marrowscope.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "marrowscope.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: marrowscope
{{- end -}}

{{- define "marrowscope.selectorLabels" -}}
app.kubernetes.io/name: {{ include "marrowscope.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Image: <registry>/<repository>:<tag>, per-service overrides, GPU variant when asked */}}
{{- define "marrowscope.image" -}}
{{- $svc := index .root.Values .key -}}
{{- $repo := .root.Values.image.repository -}}
{{- if .gpu }}{{ $repo = .root.Values.image.gpuRepository }}{{ end -}}
{{- if $svc.image.repository }}{{ $repo = $svc.image.repository }}{{ end -}}
{{- $tag := $svc.image.tag | default .root.Values.global.imageTag | default .root.Chart.AppVersion -}}
{{- if .root.Values.global.imageRegistry -}}
{{- printf "%s/%s:%s" .root.Values.global.imageRegistry $repo $tag -}}
{{- else -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}

{{/* Secret names */}}
{{- define "marrowscope.authSecret" -}}
{{- .Values.auth.existingSecret | default (printf "%s-auth" (include "marrowscope.fullname" .)) -}}
{{- end -}}

{{- define "marrowscope.dbSecret" -}}
{{- if .Values.postgresql.enabled -}}
{{- printf "%s-postgresql" (include "marrowscope.fullname" .) -}}
{{- else -}}
{{- required "externalDatabase.existingSecret is required when postgresql.enabled=false" .Values.externalDatabase.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "marrowscope.dbSecretKey" -}}
{{- if .Values.postgresql.enabled }}dsn{{ else }}{{ .Values.externalDatabase.dsnKey }}{{ end -}}
{{- end -}}

{{- define "marrowscope.storeSecret" -}}
{{- if .Values.minio.enabled -}}
{{- printf "%s-minio" (include "marrowscope.fullname" .) -}}
{{- else -}}
{{- required "externalObjectStore.existingSecret is required when minio.enabled=false" .Values.externalObjectStore.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* Environment every service shares: config map + database and object-store credentials */}}
{{- define "marrowscope.commonEnv" -}}
- name: MARROWSCOPE_DB_DSN
  valueFrom:
    secretKeyRef:
      name: {{ include "marrowscope.dbSecret" . }}
      key: {{ include "marrowscope.dbSecretKey" . }}
- name: MARROWSCOPE_STORE_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "marrowscope.storeSecret" . }}
      key: {{ if .Values.minio.enabled }}root-user{{ else }}{{ .Values.externalObjectStore.accessKeyKey }}{{ end }}
- name: MARROWSCOPE_STORE_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "marrowscope.storeSecret" . }}
      key: {{ if .Values.minio.enabled }}root-password{{ else }}{{ .Values.externalObjectStore.secretKeyKey }}{{ end }}
{{- end -}}

{{/* Pod and container security: non-root, read-only root filesystem, no capabilities */}}
{{- define "marrowscope.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "marrowscope.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Probes: native gRPC (plaintext) or the image's health check command (TLS) */}}
{{- define "marrowscope.grpcProbes" -}}
{{- $probe := dict -}}
{{- if .root.Values.tls.enabled -}}
{{- $probe = dict "exec" (dict "command" (list "python" "-m" "marrowscope.core.healthcheck" .service "--port" (toString .port) "--tls-server-name" (include "marrowscope.componentName" .))) -}}
{{- else -}}
{{- $probe = dict "grpc" (dict "port" .port) -}}
{{- end }}
readinessProbe:
  {{- toYaml $probe | nindent 2 }}
  initialDelaySeconds: 5
  periodSeconds: 10
  timeoutSeconds: 5
livenessProbe:
  {{- toYaml $probe | nindent 2 }}
  initialDelaySeconds: 30
  periodSeconds: 20
  timeoutSeconds: 5
  failureThreshold: 6
{{- end -}}

{{/*
A Deployment + Service for one component. Arguments (dict):
  root, component (name suffix), key (values key), service (python module under marrowscope),
  port, http (bool: HTTP probes instead of gRPC), gpu (bool), env (list of extra env entries),
  extraPorts (list of {name, port}: more container and Service ports)
*/}}
{{- define "marrowscope.deployment" -}}
{{- $root := .root -}}
{{- $svc := index $root.Values .key -}}
{{- $prefix := printf "MARROWSCOPE_%s_" (upper (ternary "LIS" .service (eq .service "lis_api"))) -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "marrowscope.componentName" . }}
  labels:
    {{- include "marrowscope.labels" . | nindent 4 }}
spec:
  {{- if not (and (eq .key "inference") $svc.autoscaling.enabled) }}
  replicas: {{ $svc.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "marrowscope.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "marrowscope.selectorLabels" . | nindent 8 }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/config.yaml") $root | sha256sum }}
    spec:
      serviceAccountName: {{ .serviceAccount | default (printf "%s-workload" (include "marrowscope.fullname" $root)) }}
      automountServiceAccountToken: {{ ternary "true" "false" (eq .key "training") }}
      {{- with $root.Values.global.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- include "marrowscope.podSecurityContext" . | nindent 8 }}
      {{- $nodeSelector := $svc.nodeSelector }}
      {{- $tolerations := $svc.tolerations }}
      {{- if .gpu }}
      {{- $nodeSelector = merge (deepCopy $svc.nodeSelector) $svc.gpu.nodeSelector }}
      {{- $tolerations = concat $svc.tolerations $svc.gpu.tolerations }}
      {{- end }}
      {{- with $nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $svc.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "marrowscope.image" . }}
          imagePullPolicy: {{ $root.Values.global.imagePullPolicy }}
          command: ["python", "-m", "marrowscope.{{ .service }}"]
          ports:
            - name: {{ ternary "http" "grpc" (.http | default false) }}
              containerPort: {{ .port }}
            {{- range .extraPorts }}
            - name: {{ .name }}
              containerPort: {{ .port }}
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ include "marrowscope.fullname" $root }}-config
          env:
            - name: {{ $prefix }}HOST
              value: "0.0.0.0"
            - name: {{ $prefix }}PORT
              value: {{ .port | quote }}
            {{- include "marrowscope.commonEnv" $root | nindent 12 }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- if $root.Values.tls.enabled }}
            - {name: GRPC_TLS_CA_FILE, value: /etc/marrowscope/tls/ca.crt}
            {{- if not .http }}
            - {name: GRPC_TLS_CERT_FILE, value: /etc/marrowscope/tls/tls.crt}
            - {name: GRPC_TLS_KEY_FILE, value: /etc/marrowscope/tls/tls.key}
            {{- end }}
            {{- end }}
            {{- range $name, $value := $svc.env }}
            - name: {{ $name }}
              value: {{ $value | quote }}
            {{- end }}
          {{- if .http }}
          readinessProbe:
            httpGet: {path: /readyz, port: http}
            initialDelaySeconds: 5
            periodSeconds: 10
          livenessProbe:
            httpGet: {path: /healthz, port: http}
            initialDelaySeconds: 15
            periodSeconds: 20
          {{- else }}
          {{- include "marrowscope.grpcProbes" . | nindent 10 }}
          {{- end }}
          resources:
            {{- $resources := deepCopy $svc.resources }}
            {{- if .gpu }}
            {{- $limits := merge (dict "nvidia.com/gpu" ($svc.gpu.count | toString)) ($resources.limits | default dict) }}
            {{- $_ := set $resources "limits" $limits }}
            {{- end }}
            {{- toYaml $resources | nindent 12 }}
          securityContext:
            {{- include "marrowscope.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            - {name: tmp, mountPath: /tmp}
            {{- if $root.Values.tls.enabled }}
            - {name: tls, mountPath: /etc/marrowscope/tls, readOnly: true}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir: {}
        {{- if $root.Values.tls.enabled }}
        - name: tls
          secret:
            secretName: {{ required "tls.existingSecret is required when tls.enabled=true" $root.Values.tls.existingSecret }}
        {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "marrowscope.componentName" . }}
  labels:
    {{- include "marrowscope.labels" . | nindent 4 }}
spec:
  type: {{ .serviceType | default "ClusterIP" }}
  selector:
    {{- include "marrowscope.selectorLabels" . | nindent 4 }}
  ports:
    - name: {{ ternary "http" "grpc" (.http | default false) }}
      port: {{ .servicePort | default .port }}
      targetPort: {{ ternary "http" "grpc" (.http | default false) }}
      {{- if not .http }}
      appProtocol: grpc
      {{- end }}
    {{- range .extraPorts }}
    - name: {{ .name }}
      port: {{ .port }}
      targetPort: {{ .name }}
    {{- end }}
{{- end -}}


{{/* A NetworkPolicy peer: one Marrowscope component of this release */}}
{{- define "marrowscope.peer" -}}
- podSelector:
    matchLabels:
      app.kubernetes.io/name: {{ include "marrowscope.name" .root }}
      app.kubernetes.io/instance: {{ .root.Release.Name }}
      app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* A generated secret value, kept from the live Secret on upgrade */}}
{{- define "marrowscope.keep" -}}
{{- $existing := lookup "v1" "Secret" .namespace .name -}}
{{- if and $existing (hasKey $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- .fallback -}}
{{- end -}}
{{- end -}}
