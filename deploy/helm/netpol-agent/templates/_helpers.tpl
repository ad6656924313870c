{{/* The agent's namespace (values namespace.name). */}}
{{- define "netpol-agent.namespace" -}}
{{- .Values.namespace.name -}}
{{- end -}}

{{/* The agent image: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "netpol-agent.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* Labels every object carries (deploy/base's, from its kustomization). */}}
{{- define "netpol-agent.labels" -}}
app.kubernetes.io/name: netpol-agent
app.kubernetes.io/part-of: netpol-agent
{{- end -}}

{{/* The `netpol-agent run` arguments: deploy/base's, then the optional flags set. */}}
{{- define "netpol-agent.args" -}}
- run
- --node-name=$(NODE_NAME)
- --backend={{ .Values.agent.backend }}
- --resync-interval={{ .Values.agent.resyncInterval }}
- --drop-action={{ .Values.agent.dropAction }}
- --metrics-bind-address=0.0.0.0:{{ .Values.agent.metricsPort }}
- --log-format={{ .Values.agent.logFormat }}
- --log-level={{ .Values.agent.logLevel }}
{{- with .Values.agent.enforcement }}
- --enforcement={{ . }}
{{- end }}
{{- with .Values.agent.newPods }}
- --new-pods={{ . }}
{{- end }}
{{- if not (kindIs "invalid" .Values.agent.revokeEstablished) }}
- --revoke-established={{ .Values.agent.revokeEstablished }}
{{- end }}
{{- if not (kindIs "invalid" .Values.agent.nflogGroup) }}
- --nflog-group={{ .Values.agent.nflogGroup }}
{{- end }}
{{- with .Values.agent.markBit }}
- --mark-bit={{ . }}
{{- end }}
{{- with .Values.agent.connmarkBit }}
- --connmark-bit={{ . }}
{{- end }}
{{- range .Values.agent.allowCIDRs }}
- --allow-cidr={{ . }}
{{- end }}
{{- range .Values.agent.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/* The container securityContext of everything that programs the kernel. */}}
{{- define "netpol-agent.kernelSecurityContext" -}}
privileged: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
# iptables and ipset need root with these two capabilities;
# capabilities granted to a non-root user would not be effective.
runAsUser: 0
runAsGroup: 0
capabilities:
  drop: ["ALL"]
  add: ["NET_ADMIN", "NET_RAW"]
{{- end -}}
