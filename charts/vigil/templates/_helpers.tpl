{{/* The chart name, or nameOverride. */}}
{{- define "vigil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of the release's objects: fullnameOverride, or the release name (containing the chart name). */}}
{{- define "vigil.fullname" -}}
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

{{- define "vigil.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vigil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vigil.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "vigil.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vigil
{{- end }}

{{- define "vigil.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vigil.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The user name the API server gives vigil's service account: its audit events are ignored. */}}
{{- define "vigil.serviceAccountUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "vigil.serviceAccountName" .) }}
{{- end }}

{{- define "vigil.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The pod template shared by the DaemonSet (mode=daemonset) and the Deployment (mode=webhook). Every `vigil run` flag
is passed as its environment variable VIGIL_<FLAG>.
*/}}
{{- define "vigil.podTemplate" -}}
{{- $daemonset := eq .Values.mode "daemonset" -}}
metadata:
  labels:
    {{- include "vigil.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "vigil.serviceAccountName" . }}
  automountServiceAccountToken: true
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with (ternary .Values.daemonset.affinity .Values.webhook.affinity $daemonset) }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with (ternary .Values.daemonset.tolerations .Values.webhook.tolerations $daemonset) }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: vigil
      image: {{ include "vigil.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: ["run"]
      env:
        - name: VIGIL_NODE_NAME
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
        - name: VIGIL_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        - name: VIGIL_POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- if $daemonset }}
        - name: VIGIL_AUDIT_LOG
          value: {{ .Values.auditLog.hostPath | quote }}
        - name: VIGIL_AUDIT_LOG_GLOB
          value: {{ .Values.auditLog.glob | quote }}
        - name: VIGIL_START_AT
          value: {{ .Values.auditLog.startAt | quote }}
        - name: VIGIL_MAX_LINE_BYTES
          value: {{ .Values.auditLog.maxLineBytes | int64 | quote }}
        - name: VIGIL_CHECKPOINT
          value: {{ printf "/var/lib/vigil/%s.checkpoint" .Release.Name | quote }}
        {{- else }}
        - name: VIGIL_WEBHOOK_ADDR
          value: {{ printf "0.0.0.0:%d" (int .Values.webhook.port) | quote }}
        - name: VIGIL_WEBHOOK_TLS_CERT
          value: /etc/vigil/webhook-tls/tls.crt
        - name: VIGIL_WEBHOOK_TLS_KEY
          value: /etc/vigil/webhook-tls/tls.key
        {{- if .Values.webhook.clientCA.secretName }}
        - name: VIGIL_WEBHOOK_CLIENT_CA
          value: /etc/vigil/webhook-client-ca/ca.crt
        {{- end }}
        {{- if .Values.webhook.token.secretName }}
        - name: VIGIL_WEBHOOK_TOKEN_FILE
          value: /etc/vigil/webhook-token/token
        {{- end }}
        {{- end }}
        - name: VIGIL_IGNORE_USER
          value: {{ prepend .Values.ignoreUsers (include "vigil.serviceAccountUser" .) | join "," | quote }}
        - name: VIGIL_METRICS_ADDR
          value: {{ printf "0.0.0.0:%d" (int .Values.metrics.port) | quote }}
        - name: VIGIL_WRITE_BUDGET
          value: {{ .Values.writeBudget | int64 | quote }}
        - name: VIGIL_ALERT_MAX_COUNT
          value: {{ .Values.retention.maxCount | int64 | quote }}
        - name: VIGIL_ALERT_MAX_AGE
          value: {{ .Values.retention.maxAge | quote }}
        - name: VIGIL_LOG_FORMAT
          value: {{ .Values.log.format | quote }}
        - name: VIGIL_LOG_LEVEL
          value: {{ .Values.log.level | quote }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: metrics
          containerPort: {{ .Values.metrics.port }}
          protocol: TCP
        {{- if not $daemonset }}
        - name: webhook
          containerPort: {{ .Values.webhook.port }}
          protocol: TCP
        {{- end }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: metrics
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: metrics
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        {{- if $daemonset }}
        - name: audit-log
          mountPath: {{ .Values.auditLog.hostPath }}
          readOnly: true
        - name: checkpoint
          mountPath: /var/lib/vigil
        {{- else }}
        - name: webhook-tls
          mountPath: /etc/vigil/webhook-tls
          readOnly: true
        {{- if .Values.webhook.clientCA.secretName }}
        - name: webhook-client-ca
          mountPath: /etc/vigil/webhook-client-ca
          readOnly: true
        {{- end }}
        {{- if .Values.webhook.token.secretName }}
        - name: webhook-token
          mountPath: /etc/vigil/webhook-token
          readOnly: true
        {{- end }}
        {{- end }}
  volumes:
    {{- if $daemonset }}
    - name: audit-log
      hostPath:
        path: {{ .Values.auditLog.hostPath }}
        type: Directory
    - name: checkpoint
      hostPath:
        path: {{ .Values.checkpoint.hostPath }}
        type: DirectoryOrCreate
    {{- else }}
    - name: webhook-tls
      secret:
        secretName: {{ required "webhook.tls.secretName is required with mode=webhook: a kubernetes.io/tls Secret whose certificate's SAN matches the Service address the API server uses" .Values.webhook.tls.secretName }}
    {{- with .Values.webhook.clientCA.secretName }}
    - name: webhook-client-ca
      secret:
        secretName: {{ . }}
        items:
          - key: ca.crt
            path: ca.crt
    {{- end }}
    {{- with .Values.webhook.token.secretName }}
    - name: webhook-token
      secret:
        secretName: {{ . }}
        items:
          - key: token
            path: token
    {{- end }}
    {{- end }}
{{- end }}
