#!/usr/bin/env python3
"""Checks everything under deploy/ against the schemas it must meet and the
service it deploys (`make deploy-check`, run by scripts/deploy-check.sh):

- every Kubernetes object validates strictly against pinned Kubernetes
  versions (kubernetes-validate); the operator and External Secrets objects,
  which those schemas do not cover, are checked structurally; the objects
  refer to each other correctly and keep the rules of the Deployment
  (probes, security context, grace period, spread, secrets only from Secrets);
- the Dockerfile passes hadolint and builds what production needs;
- the compose file parses and names only files, stages and services that exist;
  the HAProxy configuration is valid for compose and for `make cluster`;
- Prometheus's configuration and rules pass promtool, and the PrometheusRule
  carries the same groups as deploy/prometheus/alerts.yml;
- every metric the Grafana dashboard and the alerts query is one that a
  running instance exports, every exported metric is documented in
  docs/operations/metrics.md and every alert in docs/operations/alerts.md.

Prints one line per check and exits 1 when any fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

# --- YAML ----------------------------------------------------------------------


class UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (PyYAML
    would silently keep the last one)."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *anchor` (compose's extension fields); written keys override it
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_documents(path: Path) -> list:
    with open(path) as f:
        return [doc for doc in yaml.load_all(f, Loader=UniqueKeyLoader) if doc is not None]


def load_yaml(path: Path):
    docs = load_yaml_documents(path)
    if len(docs) != 1:
        raise ValueError(f"{path}: expected one YAML document, found {len(docs)}")
    return docs[0]


# --- PromQL ----------------------------------------------------------------------

PROMQL_KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan", "atan2",
}
# Prometheus's own series, not the service's.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (not functions, keywords,
    label names, label values or durations)."""
    s = re.sub(r"\$\{[^}]*\}|\$__\w+|\$\w+", "5m", expr)  # Grafana variables
    s = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', s)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        word = m.group(0)
        before = s[m.start() - 1] if m.start() > 0 else " "
        if before.isdigit() or before == ".":
            continue  # the exponent of a number such as 1e-9
        if s[m.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        if word.lower() in PROMQL_KEYWORDS:
            continue
        names.add(word)
    return names


def exported_names(metrics_text: str) -> tuple[set[str], set[str]]:
    """(queryable series names, family names) of a /metrics page. The
    `# TYPE` lines name every registered family, even one without samples
    yet; counters are queried with `_total`, histograms with `_bucket`,
    `_sum` and `_count`."""
    names, families = set(), set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) < 4:
                continue
            name, kind = parts[2], parts[3]
            families.add(name)
            if kind == "counter":
                names.add(name if name.endswith("_total") else name + "_total")
            elif kind in ("histogram", "gaugehistogram"):
                names.update({name + "_bucket", name + "_sum", name + "_count"})
            elif kind == "summary":
                names.update({name, name + "_sum", name + "_count"})
            elif kind == "info":
                names.add(name + "_info")
            else:
                names.add(name)
        elif line and not line.startswith("#"):
            m = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line)
            if m:
                names.add(m.group(0))
    return names, families


def registered_families(metrics_rs: str) -> dict[str, str]:
    """Family name → type of every metric src/metrics.rs registers.
    prometheus-client leaves a family without samples out of /metrics
    entirely (no `# TYPE` line either), so a fresh instance shows only some
    of them; the registrations name them all."""
    prefix = re.search(r'sub_registry_with_prefix\("([^"]+)"\)', metrics_rs)
    kinds = {}
    for field, kind in re.findall(
        r"pub (\w+): (?:Family<\w+, )?(Counter|Gauge|Histogram)>?,", metrics_rs
    ):
        kinds[field] = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram"}[kind]
    families = {}
    for name, field in re.findall(
        r'\.register\(\s*"([^"]+)",\s*"(?:[^"\\]|\\.)*",\s*m\.(\w+)\.clone\(\)', metrics_rs
    ):
        if field not in kinds:
            raise RuntimeError(f"src/metrics.rs: the type of field {field} was not found")
        families[f"{prefix.group(1)}_{name}" if prefix else name] = kinds[field]
    calls = len(re.findall(r"\.register\(", metrics_rs))
    if calls != len(families):
        raise RuntimeError(f"src/metrics.rs: {calls} register calls, but {len(families)} could be read")
    return families


def series_of(families: dict[str, str]) -> set[str]:
    text = "\n".join(f"# TYPE {name} {kind}" for name, kind in families.items())
    return exported_names(text)[0]


def live_types(metrics_text: str) -> dict[str, str]:
    return dict(re.findall(r"^# TYPE (\S+) (\S+)", metrics_text, flags=re.MULTILINE))


def unknown_metrics(exprs: dict[str, str], exported: set[str]) -> list[str]:
    """`where: name` for every metric an expression names that is not exported."""
    problems = []
    for where, expr in exprs.items():
        for name in sorted(promql_metric_names(expr)):
            if name not in exported and name not in PROMETHEUS_SERIES:
                problems.append(f"{where}: {name} is not a metric the service exports")
    return problems


def dashboard_exprs(dashboard: dict) -> dict[str, str]:
    """Every query of a Grafana dashboard, keyed by panel title and refId."""
    exprs = {}

    def walk(panels):
        for panel in panels or []:
            for target in panel.get("targets") or []:
                if "expr" in target:
                    exprs[f"panel {panel.get('title')!r} {target.get('refId', '?')}"] = target["expr"]
            walk(panel.get("panels"))

    walk(dashboard.get("panels"))
    return exprs


def rule_exprs(groups: list) -> dict[str, str]:
    exprs = {}
    for group in groups:
        for rule in group.get("rules") or []:
            exprs[f"rule {rule.get('alert') or rule.get('record')}"] = str(rule.get("expr", ""))
    return exprs


# --- Kubernetes ---------------------------------------------------------------------

DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def _check_keys(where, obj, allowed, problems):
    if not isinstance(obj, dict):
        problems.append(f"{where}: must be a mapping")
        return False
    for key in obj:
        if key not in allowed:
            problems.append(f"{where}: unknown field {key!r}")
    return True


def _check_metadata(kind, doc, problems):
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        problems.append(f"{kind}: metadata.name is required")


def check_service_monitor(doc) -> list[str]:
    p = []
    _check_keys("ServiceMonitor", doc, {"apiVersion", "kind", "metadata", "spec"}, p)
    _check_metadata("ServiceMonitor", doc, p)
    spec = doc.get("spec")
    if not _check_keys("ServiceMonitor.spec", spec, {
        "selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels", "podTargetLabels",
        "sampleLimit", "targetLimit", "labelLimit", "labelNameLengthLimit", "labelValueLengthLimit",
        "attachMetadata", "scrapeProtocols", "fallbackScrapeProtocol", "keepDroppedTargets", "bodySizeLimit",
        "scrapeClass",
    }, p):
        return p
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        p.append("ServiceMonitor.spec.selector: matchLabels or matchExpressions is required")
    endpoints = spec.get("endpoints")
    if not isinstance(endpoints, list) or not endpoints:
        p.append("ServiceMonitor.spec.endpoints: at least one endpoint is required")
        return p
    for i, ep in enumerate(endpoints):
        where = f"ServiceMonitor.spec.endpoints[{i}]"
        _check_keys(where, ep, {
            "port", "targetPort", "path", "scheme", "interval", "scrapeTimeout", "honorLabels",
            "honorTimestamps", "relabelings", "metricRelabelings", "params", "tlsConfig", "authorization",
            "basicAuth", "oauth2", "bearerTokenSecret", "followRedirects", "enableHttp2", "filterRunning",
            "proxyUrl", "trackTimestampsStaleness", "scrapeProtocols",
        }, p)
        if not isinstance(ep, dict):
            continue
        if not isinstance(ep.get("port"), str) and "targetPort" not in ep:
            p.append(f"{where}: a named port (or targetPort) is required")
        if "path" in ep and not str(ep["path"]).startswith("/"):
            p.append(f"{where}.path: must start with /")
        for field in ("interval", "scrapeTimeout"):
            if field in ep and not DURATION.match(str(ep[field])):
                p.append(f"{where}.{field}: {ep[field]!r} is not a duration")
    return p


def check_prometheus_rule(doc) -> list[str]:
    p = []
    _check_keys("PrometheusRule", doc, {"apiVersion", "kind", "metadata", "spec"}, p)
    _check_metadata("PrometheusRule", doc, p)
    spec = doc.get("spec")
    if not _check_keys("PrometheusRule.spec", spec, {"groups"}, p):
        return p
    p.extend(check_rule_groups(spec.get("groups"), "PrometheusRule.spec"))
    return p


def check_rule_groups(groups, where) -> list[str]:
    p = []
    if not isinstance(groups, list) or not groups:
        return [f"{where}.groups: at least one group is required"]
    names = set()
    for i, group in enumerate(groups):
        gw = f"{where}.groups[{i}]"
        if not _check_keys(gw, group, {"name", "interval", "rules", "partial_response_strategy", "limit",
                                       "query_offset", "labels"}, p):
            continue
        if not group.get("name"):
            p.append(f"{gw}.name is required")
        elif group["name"] in names:
            p.append(f"{gw}.name {group['name']!r} is used twice")
        names.add(group.get("name"))
        rules = group.get("rules")
        if not isinstance(rules, list) or not rules:
            p.append(f"{gw}.rules: at least one rule is required")
            continue
        for j, rule in enumerate(rules):
            rw = f"{gw}.rules[{j}]"
            if not _check_keys(rw, rule, {"alert", "record", "expr", "for", "keep_firing_for", "labels",
                                          "annotations"}, p):
                continue
            if ("alert" in rule) == ("record" in rule):
                p.append(f"{rw}: exactly one of alert and record is required")
            if not isinstance(rule.get("expr"), str) or not rule["expr"].strip():
                p.append(f"{rw}.expr is required")
            for field in ("for", "keep_firing_for"):
                if field in rule and not DURATION.match(str(rule[field])):
                    p.append(f"{rw}.{field}: {rule[field]!r} is not a duration")
            for field in ("labels", "annotations"):
                value = rule.get(field, {})
                if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                    p.append(f"{rw}.{field}: must map names to strings")
    return p


def check_external_secret(doc) -> list[str]:
    p = []
    _check_keys("ExternalSecret", doc, {"apiVersion", "kind", "metadata", "spec"}, p)
    _check_metadata("ExternalSecret", doc, p)
    spec = doc.get("spec")
    if not _check_keys("ExternalSecret.spec", spec, {"refreshInterval", "secretStoreRef", "target", "data",
                                                     "dataFrom", "refreshPolicy"}, p):
        return p
    ref = spec.get("secretStoreRef")
    if not isinstance(ref, dict) or not ref.get("name") or ref.get("kind") not in ("SecretStore", "ClusterSecretStore"):
        p.append("ExternalSecret.spec.secretStoreRef: name and kind (SecretStore or ClusterSecretStore) are required")
    if not isinstance(spec.get("target"), dict) or not spec["target"].get("name"):
        p.append("ExternalSecret.spec.target.name is required")
    if not spec.get("data") and not spec.get("dataFrom"):
        p.append("ExternalSecret.spec: data or dataFrom is required")
    if "refreshInterval" in spec and not DURATION.match(str(spec["refreshInterval"])):
        p.append(f"ExternalSecret.spec.refreshInterval: {spec['refreshInterval']!r} is not a duration")
    return p


CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): check_service_monitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): check_prometheus_rule,
    ("external-secrets.io/v1", "ExternalSecret"): check_external_secret,
}


def validate_object(doc, versions) -> list[str]:
    """Strict schema validation of one object against every pinned version,
    or the structural check of a custom resource we use."""
    from kubernetes_validate import utils as kv

    if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
        return ["not a Kubernetes object (apiVersion and kind are required)"]
    custom = CUSTOM_KINDS.get((doc["apiVersion"], doc["kind"]))
    if custom:
        return custom(doc)
    problems = []
    for version in versions:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as e:
            path = ".".join(str(x) for x in e.path) or "(top level)"
            problems.append(f"Kubernetes {version}: {path}: {e.message}")
        except kv.SchemaNotFoundError as e:
            problems.append(f"Kubernetes {version}: {e.message}")
    return problems


def check_kustomization(path: Path) -> list[str]:
    p = []
    doc = load_yaml(path)
    _check_keys(str(path), doc, {"apiVersion", "kind", "resources", "images", "namespace", "labels",
                                 "commonLabels", "patches", "configMapGenerator", "secretGenerator"}, p)
    if doc.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or doc.get("kind") != "Kustomization":
        p.append(f"{path}: apiVersion kustomize.config.k8s.io/v1beta1, kind Kustomization expected")
    resources = doc.get("resources") or []
    for r in resources:
        if not (path.parent / r).exists():
            p.append(f"{path}: resource {r} does not exist")
    listed = {str(Path(r)) for r in resources}
    for f in sorted(path.parent.iterdir()):
        if f.suffix in (".yaml", ".yml", ".json") and f.name not in listed:
            p.append(f"{path}: {f.name} is applied by `kubectl apply -f` but not listed in resources")
    return p


def _matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _duration_seconds(raw: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m)?", raw.strip())
    if not m:
        raise ValueError(f"not a duration: {raw!r}")
    n, unit = int(m.group(1)), m.group(2) or "s"
    return n / 1000 if unit == "ms" else n * 60 if unit == "m" else float(n)


SECRET_NAMES = re.compile(r"SECRET|PASSWORD|TOKEN_ENCRYPTION_KEY|DATABASE_URL|REDIS_URL")


def check_k8s_references(objects: list[tuple[str, dict]], secret_template: dict | None, webhook_limit: int) -> list[str]:
    """The objects of deploy/k8s/ (top level) fit together and keep the
    Deployment's rules."""
    p = []
    by_kind: dict[str, list[dict]] = {}
    for _, doc in objects:
        by_kind.setdefault(doc["kind"], []).append(doc)

    def one(kind):
        found = by_kind.get(kind, [])
        if len(found) != 1:
            p.append(f"exactly one {kind} expected, found {len(found)}")
            return None
        return found[0]

    namespace = one("Namespace")
    deployment = one("Deployment")
    service = one("Service")
    configmap = one("ConfigMap")
    account = one("ServiceAccount")
    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "Ingress"):
        if not by_kind.get(kind):
            p.append(f"a {kind} is required")
    if not (namespace and deployment and service and configmap and account):
        return p
    ns = namespace["metadata"]["name"]
    for path, doc in objects:
        if doc["kind"] != "Namespace" and doc["metadata"].get("namespace") != ns:
            p.append(f"{path}: {doc['kind']} {doc['metadata']['name']} is not in namespace {ns}")
    if account.get("automountServiceAccountToken") is not False:
        p.append("ServiceAccount: automountServiceAccountToken must be false")

    config = configmap.get("data") or {}
    for key in config:
        if SECRET_NAMES.search(key):
            p.append(f"ConfigMap: {key} is a secret and belongs in the Secret")

    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"].get("labels") or {}
    if not _matches(spec["selector"].get("matchLabels") or {}, pod_labels):
        p.append("Deployment: selector does not match the pod template's labels")
    if spec.get("replicas", 1) < 3:
        p.append("Deployment: at least 3 replicas")
    if pod.get("serviceAccountName") != account["metadata"]["name"]:
        p.append("Deployment: serviceAccountName must name the ServiceAccount")
    if pod.get("automountServiceAccountToken") is not False:
        p.append("Deployment: automountServiceAccountToken must be false")
    pod_sc = pod.get("securityContext") or {}
    if pod_sc.get("runAsNonRoot") is not True or (pod_sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        p.append("Deployment: pod securityContext needs runAsNonRoot and seccompProfile RuntimeDefault")
    keys = {c.get("topologyKey") for c in pod.get("topologySpreadConstraints") or []}
    for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone"):
        if key not in keys:
            p.append(f"Deployment: no topologySpreadConstraint over {key}")
    containers = pod.get("containers") or []
    if len(containers) != 1:
        p.append("Deployment: one container expected")
        return p
    c = containers[0]
    sc = c.get("securityContext") or {}
    if sc.get("allowPrivilegeEscalation") is not False or sc.get("readOnlyRootFilesystem") is not True:
        p.append("Deployment: container needs allowPrivilegeEscalation false and readOnlyRootFilesystem true")
    if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
        p.append("Deployment: container must drop ALL capabilities")
    for probe, path in (("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live")):
        if ((c.get(probe) or {}).get("httpGet") or {}).get("path") != path:
            p.append(f"Deployment: {probe} must GET {path}")
    if not c.get("startupProbe"):
        p.append("Deployment: a startupProbe is required")
    ports = {port.get("name"): port.get("containerPort") for port in c.get("ports") or []}
    if "http" not in ports or "metrics" not in ports:
        p.append("Deployment: container ports named http and metrics are required")
    resources = c.get("resources") or {}
    for part in ("requests", "limits"):
        if "memory" not in (resources.get(part) or {}):
            p.append(f"Deployment: resources.{part}.memory is required")
    for env in c.get("env") or []:
        if SECRET_NAMES.search(env.get("name", "")) and "valueFrom" not in env:
            p.append(f"Deployment: {env['name']} must come from a Secret (secretKeyRef)")
    secret_names = set()
    for source in c.get("envFrom") or []:
        if "configMapRef" in source and source["configMapRef"].get("name") != configmap["metadata"]["name"]:
            p.append(f"Deployment: envFrom names an unknown ConfigMap {source['configMapRef'].get('name')}")
        if "secretRef" in source:
            secret_names.add(source["secretRef"].get("name"))
    for env in c.get("env") or []:
        ref = (env.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            secret_names.add(ref.get("name"))
    if secret_template is None:
        p.append("deploy/k8s/secrets/secret.yaml: the Secret template is missing")
    else:
        template_name = secret_template["metadata"]["name"]
        for name in secret_names:
            if name != template_name:
                p.append(f"Deployment: Secret {name} has no template in deploy/k8s/secrets/")
        for key, value in (secret_template.get("stringData") or {}).items():
            if value not in ("", None):
                p.append(f"deploy/k8s/secrets/secret.yaml: {key} must be empty in the template")
        if secret_template.get("data"):
            p.append("deploy/k8s/secrets/secret.yaml: the template must not carry data")
    # Grace: preStop pause + SHUTDOWN_TIMEOUT must fit inside the grace period.
    try:
        shutdown = _duration_seconds(str(config.get("SHUTDOWN_TIMEOUT", "30s")))
        command = ((c.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command") or []
        sleep = (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds")
        if sleep is None and len(command) == 2 and command[0] == "sleep":
            sleep = int(command[1])
        if sleep is None:
            p.append("Deployment: a preStop pause (sleep) is required")
        elif pod.get("terminationGracePeriodSeconds", 30) <= shutdown + sleep:
            p.append(f"Deployment: terminationGracePeriodSeconds must exceed preStop ({sleep} s) + SHUTDOWN_TIMEOUT ({shutdown:g} s)")
    except ValueError as e:
        p.append(f"ConfigMap SHUTDOWN_TIMEOUT: {e}")
    mounts = {m.get("mountPath"): m.get("name") for m in c.get("volumeMounts") or []}
    empty_dirs = {v["name"] for v in pod.get("volumes") or [] if "emptyDir" in v}
    for path in ("/tmp", config.get("DATA_DIR", "/data")):
        if mounts.get(path) not in empty_dirs:
            p.append(f"Deployment: {path} must be an emptyDir (the root filesystem is read-only)")

    svc_ports = {port.get("name"): port for port in service["spec"].get("ports") or []}
    if not _matches(service["spec"].get("selector") or {}, pod_labels):
        p.append("Service: selector does not match the Deployment's pods")
    for name, port in svc_ports.items():
        if port.get("targetPort") not in ports:
            p.append(f"Service: port {name} targets {port.get('targetPort')}, not a container port name")
    if set(svc_ports) != {"http", "metrics"}:
        p.append("Service: ports http and metrics expected")

    for ingress in by_kind.get("Ingress", []):
        name = ingress["metadata"]["name"]
        notes = ingress["metadata"].get("annotations") or {}
        if not ingress["spec"].get("tls"):
            p.append(f"Ingress {name}: TLS is required (Twitch delivers only to HTTPS)")
        size = notes.get("nginx.ingress.kubernetes.io/proxy-body-size", "")
        if size.lower() != f"{webhook_limit // 1024}k":
            p.append(f"Ingress {name}: proxy-body-size {size!r} must match the webhook's limit ({webhook_limit // 1024}k)")
        for rule in ingress["spec"].get("rules") or []:
            for path in (rule.get("http") or {}).get("paths") or []:
                backend = path["backend"]["service"]
                if backend["name"] != service["metadata"]["name"] or backend["port"].get("name") != "http":
                    p.append(f"Ingress {name}: {path.get('path')} must go to Service port http only")
                if path.get("path") == "/":
                    for t in ("proxy-read-timeout", "proxy-send-timeout"):
                        value = notes.get(f"nginx.ingress.kubernetes.io/{t}", "0")
                        if int(value) < 3600:
                            p.append(f"Ingress {name}: {t} must be at least 3600 s (overlays stay connected)")
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        target = hpa["spec"]["scaleTargetRef"]
        if target.get("kind") != "Deployment" or target.get("name") != deployment["metadata"]["name"]:
            p.append("HorizontalPodAutoscaler: scaleTargetRef must name the Deployment")
        if hpa["spec"].get("minReplicas", 1) < 3:
            p.append("HorizontalPodAutoscaler: minReplicas at least 3")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        if not _matches(pdb["spec"]["selector"].get("matchLabels") or {}, pod_labels):
            p.append("PodDisruptionBudget: selector does not match the Deployment's pods")
    for policy in by_kind.get("NetworkPolicy", []):
        if not _matches(policy["spec"]["podSelector"].get("matchLabels") or {}, pod_labels):
            p.append("NetworkPolicy: podSelector does not match the Deployment's pods")
        for rule in policy["spec"].get("ingress") or []:
            for port in rule.get("ports") or []:
                if isinstance(port.get("port"), str) and port["port"] not in ports:
                    p.append(f"NetworkPolicy: port {port['port']} is not a container port name")
    return p


def check_monitoring_references(monitor: dict | None, service: dict | None) -> list[str]:
    if monitor is None or service is None:
        return ["deploy/k8s/monitoring/servicemonitor.yaml and the Service are required"]
    p = []
    selector = monitor["spec"]["selector"].get("matchLabels") or {}
    if not _matches(selector, service["metadata"].get("labels") or {}):
        p.append("ServiceMonitor: selector does not match the Service's labels")
    names = {port.get("name") for port in service["spec"].get("ports") or []}
    for ep in monitor["spec"]["endpoints"]:
        if ep.get("port") not in names:
            p.append(f"ServiceMonitor: port {ep.get('port')} is not a Service port")
        if ep.get("port") != "metrics":
            p.append("ServiceMonitor: scrape the `metrics` port, not the public one")
    return p


# --- Docker ------------------------------------------------------------------------


def _docker_pattern(pattern: str) -> str:
    """A .dockerignore pattern as a regular expression (Go's filepath.Match
    with `**` for any number of directories)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether .dockerignore `patterns` leave `path` (relative, with /) out of
    the build context. The last matching pattern wins; `!` re-includes; a
    pattern that matches a directory covers everything below it."""
    excluded = False
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        regex = _docker_pattern((line[1:] if negate else line).strip().strip("/"))
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def dockerfile_stages(text: str) -> list[str]:
    return re.findall(r"^FROM\s+\S+(?:\s+AS\s+(\S+))?", text, flags=re.MULTILINE | re.IGNORECASE)


def check_dockerfile(root: Path, dockerfile: Path) -> list[str]:
    p = []
    text = dockerfile.read_text()
    stages = dockerfile_stages(text)
    if not stages or stages[-1] != "production":
        p.append("Dockerfile: the last stage (the default target) must be `production`")
    if "dev" not in stages:
        p.append("Dockerfile: a `dev` stage (default features, the simulator) is required")
    production = text.split("AS production", 1)[-1]
    build = re.findall(r"cargo build[^\n\\]*", text)
    if "cargo build --release --locked --no-default-features --bin chatpulse" not in build:
        p.append("Dockerfile: production must be built with cargo build --release --locked --no-default-features --bin chatpulse")
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    if not users or users[-1].split(":")[0] in ("root", "0") or not users[-1].split(":")[0].isdigit():
        p.append("Dockerfile: the image must run as a fixed numeric non-root UID")
    if not re.search(r"^EXPOSE\s+8080\b", text, flags=re.MULTILINE):
        p.append("Dockerfile: EXPOSE 8080")
    for m in re.finditer(r"^(?:ENV|ARG)\s+(.*)$", text, flags=re.MULTILINE):
        if SECRET_NAMES.search(m.group(1)):
            p.append(f"Dockerfile: no secret in the image: {m.group(0).strip()}")
    if "COPY --from=build " not in production:
        p.append("Dockerfile: production must copy the binary of the production build")
    ignore = (root / ".dockerignore").read_text().splitlines() if (root / ".dockerignore").exists() else []
    for m in re.finditer(r"^COPY\s+(?!--from)(.+)$", text, flags=re.MULTILINE):
        sources = m.group(1).split()[:-1]
        for source in sources:
            if source.startswith("--"):
                continue
            source = source.rstrip("/")
            if source in (".", ""):
                continue
            if not (root / source).exists():
                p.append(f"Dockerfile: COPY {source}: no such file in the repository")
            elif dockerignore_excludes(ignore, source):
                p.append(f"Dockerfile: COPY {source}: .dockerignore leaves it out of the context")
    for used in re.findall(r"/context/(\S+\.sh)", text):
        if not (root / used).exists() or dockerignore_excludes(ignore, used):
            p.append(f"Dockerfile: {used} must exist and be in the build context")
    for needed in ("src/main.rs", "Cargo.toml", "Cargo.lock", "migrations", "redis-functions", "templates", "static"):
        if dockerignore_excludes(ignore, needed):
            p.append(f".dockerignore: {needed} is needed by the build")
    for leak in (".env", "target", ".git", "data"):
        if not dockerignore_excludes(ignore, leak):
            p.append(f".dockerignore: {leak} must stay out of the build context")
    return p


# --- Compose ----------------------------------------------------------------------


def check_compose(compose_path: Path) -> list[str]:
    p = []
    doc = load_yaml(compose_path)
    base = compose_path.parent
    services = doc.get("services")
    if not isinstance(services, dict) or not services:
        return [f"{compose_path}: no services"]
    volumes = set((doc.get("volumes") or {}).keys())
    networks = set((doc.get("networks") or {}).keys())
    for name, svc in services.items():
        where = f"compose service {name}"
        if not isinstance(svc, dict):
            p.append(f"{where}: not a mapping")
            continue
        if "image" not in svc and "build" not in svc:
            p.append(f"{where}: image or build is required")
        build = svc.get("build")
        if isinstance(build, str):
            build = {"context": build}
        if isinstance(build, dict):
            context = (base / build.get("context", ".")).resolve()
            if not context.is_dir():
                p.append(f"{where}: build context {build.get('context')} does not exist")
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not dockerfile.is_file():
                p.append(f"{where}: Dockerfile {build.get('dockerfile')} does not exist")
            elif build.get("target") and build["target"] not in dockerfile_stages(dockerfile.read_text()):
                p.append(f"{where}: build target {build['target']} is not a stage of {dockerfile.name}")
        for volume in svc.get("volumes") or []:
            if isinstance(volume, str):
                source = volume.split(":")[0]
                kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            else:
                source, kind = volume.get("source", ""), volume.get("type", "volume")
            if kind == "bind" and not (base / source).exists():
                p.append(f"{where}: mounted file {source} does not exist")
            elif kind == "volume" and source and source not in volumes:
                p.append(f"{where}: volume {source} is not declared")
        for env_file in ([svc["env_file"]] if isinstance(svc.get("env_file"), str) else svc.get("env_file") or []):
            path = env_file if isinstance(env_file, str) else env_file.get("path")
            required = True if isinstance(env_file, str) else env_file.get("required", True)
            if required and not (base / path).exists():
                p.append(f"{where}: env_file {path} does not exist")
        depends = svc.get("depends_on") or []
        for dep in depends if isinstance(depends, list) else depends.keys():
            if dep not in services:
                p.append(f"{where}: depends_on {dep}, which is not a service")
        mode = svc.get("network_mode", "")
        if mode.startswith("service:") and mode.split(":", 1)[1] not in services:
            p.append(f"{where}: network_mode names an unknown service")
        nets = svc.get("networks") or []
        for net in nets if isinstance(nets, list) else nets.keys():
            if net not in networks:
                p.append(f"{where}: network {net} is not declared")
    profiles: dict[str, set] = {}
    for name, svc in services.items():
        for profile in svc.get("profiles") or []:
            profiles.setdefault(profile, set()).add(name)
    demo = [services[s] for s in profiles.get("demo", set())]
    if not any("twitch-sim" in (s.get("command") or []) and (s.get("build") or {}).get("target") == "dev" for s in demo):
        p.append("compose: the demo profile must run `chatpulse twitch-sim` from the dev target")
    if not {"prometheus", "grafana"} <= profiles.get("monitoring", set()):
        p.append("compose: the monitoring profile must run prometheus and grafana")
    replicas = [s for s in services.values() if (s.get("build") or {}).get("target") == "production" and not s.get("profiles")]
    if len(replicas) < 3:
        p.append(f"compose: three ChatPulse replicas expected, found {len(replicas)}")
    return p


def mounted(service: dict, base: Path, container_path: str) -> Path | None:
    """The host file a compose service mounts at `container_path`."""
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            parts = volume.split(":")
            if len(parts) >= 2 and parts[1] == container_path:
                return base / parts[0]
    return None


# --- Running the service -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DEV_WEBHOOK_SECRET = "chatpulse-dev-webhook-secret"


def post_chat_delivery(base: str) -> int:
    """POSTs one `channel.chat.message` notification signed with the
    development secret, as Twitch would; returns the status."""
    import hashlib
    import hmac
    import uuid
    from datetime import datetime, timezone

    message_id = str(uuid.uuid4())
    timestamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = json.dumps({
        "subscription": {"id": str(uuid.uuid4()), "status": "enabled", "type": "channel.chat.message", "version": "1",
                         "condition": {"broadcaster_user_id": "1234", "user_id": "5678"},
                         "transport": {"method": "conduit", "conduit_id": str(uuid.uuid4())},
                         "created_at": timestamp, "cost": 0},
        "event": {"broadcaster_user_id": "1234", "broadcaster_user_login": "check", "broadcaster_user_name": "Check",
                  "chatter_user_id": "4321", "chatter_user_login": "viewer", "chatter_user_name": "Viewer",
                  "message_id": str(uuid.uuid4()),
                  "message": {"text": "yes", "fragments": [{"type": "text", "text": "yes", "cheermote": None,
                                                             "emote": None, "mention": None}]},
                  "message_type": "text", "badges": [], "cheer": None, "color": "", "reply": None,
                  "channel_points_custom_reward_id": None, "source_broadcaster_user_id": None,
                  "source_broadcaster_user_login": None, "source_broadcaster_user_name": None,
                  "source_message_id": None, "source_badges": None},
    }).encode()
    mac = hmac.new(DEV_WEBHOOK_SECRET.encode(), message_id.encode() + timestamp.encode() + body, hashlib.sha256)
    request = urllib.request.Request(f"{base}/webhooks/eventsub", data=body, method="POST", headers={
        "Content-Type": "application/json",
        "Twitch-Eventsub-Message-Id": message_id,
        "Twitch-Eventsub-Message-Retry": "0",
        "Twitch-Eventsub-Message-Type": "notification",
        "Twitch-Eventsub-Message-Signature": "sha256=" + mac.hexdigest(),
        "Twitch-Eventsub-Message-Timestamp": timestamp,
        "Twitch-Eventsub-Subscription-Type": "channel.chat.message",
        "Twitch-Eventsub-Subscription-Version": "1",
    })
    with urllib.request.urlopen(request, timeout=5) as r:
        return r.status


def scrape_running_instance(binary: Path, timeout: float = 60) -> str:
    """Starts `chatpulse serve` (embedded, on free ports, in a scratch
    directory), returns its /metrics page (from its metrics port when it has
    one), stops it."""
    port, metrics_port, sim_port = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as scratch:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": scratch,
            "APP_ENV": "development",
            "PORT": str(port),
            "METRICS_PORT": str(metrics_port),
            "TWITCH_SIM_PORT": str(sim_port),
            "DATA_DIR": str(Path(scratch) / "data"),
            "LOG_LEVEL": "warn",
        }
        log = open(Path(scratch) / "serve.log", "w+")
        proc = subprocess.Popen([str(binary.resolve()), "serve"], cwd=scratch, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"chatpulse serve exited with {proc.returncode}: {log.read()[-2000:]}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=2) as r:
                        if r.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("chatpulse serve did not answer /health/live in time")
                time.sleep(0.2)
            # One signed chat delivery (a channel without an overlay: counted,
            # not applied), so the vote and webhook families show samples.
            post_chat_delivery(f"http://127.0.0.1:{port}")
            for p in (metrics_port, port):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=5) as r:
                        if r.status == 200:
                            return r.read().decode()
                except (urllib.error.URLError, ConnectionError, OSError):
                    continue
            raise RuntimeError("the running instance serves no /metrics")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


# --- External tools -----------------------------------------------------------------


def run(cmd: list[str], **kwargs) -> tuple[int, str]:
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
    return out.returncode, out.stdout


def promtool_rules(path: Path) -> list[str]:
    code, out = run(["promtool", "check", "rules", str(path)])
    return [] if code == 0 else [f"promtool check rules {path.name}: {out.strip()}"]


def promtool_expressions(exprs: dict[str, str]) -> list[str]:
    """PromQL syntax of arbitrary expressions (Grafana variables replaced),
    through promtool, as recording rules."""
    rules = [{"record": f"check:expr_{i}", "expr": re.sub(r"\$\{[^}]*\}|\$__\w+|\$\w+", "5m", e)}
             for i, e in enumerate(exprs.values())]
    names = list(exprs)
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
    try:
        code, out = run(["promtool", "check", "rules", f.name])
    finally:
        os.unlink(f.name)
    if code == 0:
        return []
    problems = []
    for m in re.finditer(r"check:expr_(\d+)[^\n]*", out):
        problems.append(f"{names[int(m.group(1))]}: {m.group(0)}")
    return problems or [f"dashboard queries: {out.strip()}"]


def haproxy_check(config: Path, env: dict[str, str]) -> list[str]:
    code, out = run(["haproxy", "-c", "-f", str(config)], env={**os.environ, **env})
    return [] if code == 0 else [f"haproxy -c {config.name}: {out.strip()}"]


# --- The whole check ---------------------------------------------------------------------


class Report:
    def __init__(self):
        self.failed = False

    def __call__(self, name: str, problems: list[str]):
        if problems:
            self.failed = True
            print(f"FAIL {name}")
            for problem in problems:
                print(f"     - {problem}")
        else:
            print(f"ok   {name}")


def webhook_body_limit(root: Path) -> int:
    text = (root / "src/http/mod.rs").read_text()
    m = re.search(r"WEBHOOK_BODY_LIMIT: usize = (\d+) \* 1024;", text)
    if not m:
        raise RuntimeError("src/http/mod.rs: WEBHOOK_BODY_LIMIT not found")
    return int(m.group(1)) * 1024


def check_all(root: Path, versions: list[str], metrics_text: str, hadolint: str) -> bool:
    report = Report()
    deploy = root / "deploy"
    k8s = deploy / "k8s"

    # Kubernetes objects, each against the schemas.
    top_level: list[tuple[str, dict]] = []
    everything: dict[str, dict] = {}
    manifest_files = sorted(f for f in k8s.rglob("*") if f.suffix in (".yaml", ".yml"))
    for path in manifest_files:
        rel = str(path.relative_to(root))
        problems = []
        try:
            docs = load_yaml_documents(path)
        except (yaml.YAMLError, ValueError) as e:
            report(rel, [str(e)])
            continue
        if not docs:
            problems.append("no objects")
        for doc in docs:
            for problem in validate_object(doc, versions):
                problems.append(f"{doc.get('kind')} {doc.get('metadata', {}).get('name')}: {problem}")
            if isinstance(doc, dict) and "kind" in doc:
                everything[f"{rel}#{doc['kind']}/{doc.get('metadata', {}).get('name')}"] = doc
                if path.parent == k8s:
                    top_level.append((rel, doc))
        report(f"{rel}: valid against Kubernetes {', '.join(versions)}", problems)
    for kustomization in sorted(k8s.rglob("Kustomization")):
        report(f"{kustomization.relative_to(root)}: lists exactly the manifests beside it",
               check_kustomization(kustomization))

    secrets = [d for k, d in everything.items() if "/secrets/" in k and d["kind"] == "Secret"]
    report("deploy/k8s: the objects fit together (Deployment rules, references, Ingress limits)",
           check_k8s_references(top_level, secrets[0] if secrets else None, webhook_body_limit(root)))
    monitors = [d for k, d in everything.items() if d["kind"] == "ServiceMonitor"]
    services = [d for _, d in top_level if d["kind"] == "Service"]
    report("deploy/k8s/monitoring: the ServiceMonitor scrapes the Service's metrics port",
           check_monitoring_references(monitors[0] if monitors else None, services[0] if services else None))
    top = load_yaml(k8s / "Kustomization") if (k8s / "Kustomization").exists() else {}
    report("deploy/k8s/monitoring and deploy/k8s/secrets stay out of the top-level Kustomization",
           [f"Kustomization lists {r}" for r in top.get("resources") or [] if "/" in str(r)])

    # The image.
    dockerfile = deploy / "docker/Dockerfile"
    code, out = run([hadolint, "--failure-threshold", "warning", str(dockerfile)])
    report("deploy/docker/Dockerfile: hadolint (warnings fail)", [] if code == 0 else out.strip().splitlines())
    report("deploy/docker/Dockerfile: stages, user, build command, context", check_dockerfile(root, dockerfile))

    # Compose, HAProxy, Prometheus, Grafana.
    compose_path = deploy / "compose.yaml"
    try:
        compose = load_yaml(compose_path)
        report("deploy/compose.yaml: parses, names only files, stages and services that exist",
               check_compose(compose_path))
    except (yaml.YAMLError, ValueError) as e:
        report("deploy/compose.yaml: parses", [str(e)])
        compose = {"services": {}}
    lb = compose["services"].get("lb", {})
    haproxy_cfg = mounted(lb, deploy, "/usr/local/etc/haproxy/haproxy.cfg") or deploy / "haproxy/haproxy.cfg"
    compose_env = {k: str(v) for k, v in (lb.get("environment") or {}).items()}
    report("deploy/haproxy/haproxy.cfg: valid with compose's settings", haproxy_check(haproxy_cfg, compose_env))
    cluster_env = {
        "CHATPULSE_LB_BIND": "127.0.0.1:18080", "CHATPULSE_STATS_BIND": "127.0.0.1:18088",
        "CHATPULSE_SERVER_1": "127.0.0.1:18081", "CHATPULSE_SERVER_2": "127.0.0.1:18082",
        "CHATPULSE_SERVER_3": "127.0.0.1:18083",
    }
    report("deploy/haproxy/haproxy.cfg: valid with make cluster's settings", haproxy_check(haproxy_cfg, cluster_env))

    prometheus = compose["services"].get("prometheus", {})
    prom_config = mounted(prometheus, deploy, "/etc/prometheus/prometheus.yml")
    alerts_path = deploy / "prometheus/alerts.yml"
    problems = []
    if prom_config is None or not prom_config.exists():
        problems.append("compose mounts no prometheus.yml")
    else:
        config = load_yaml(prom_config)
        with tempfile.TemporaryDirectory() as scratch:
            local_rules = []
            for rule_file in config.get("rule_files") or []:
                host = mounted(prometheus, deploy, rule_file)
                if host is None or not host.exists():
                    problems.append(f"rule file {rule_file} is not mounted from an existing file")
                else:
                    local_rules.append(str(host.resolve()))
            config["rule_files"] = local_rules
            copy = Path(scratch) / "prometheus.yml"
            copy.write_text(yaml.safe_dump(config))
            code, out = run(["promtool", "check", "config", str(copy)])
            if code != 0:
                problems.append(out.strip())
    report("deploy/prometheus/prometheus.yml: promtool check config", problems)
    report("deploy/prometheus/alerts.yml: promtool check rules", promtool_rules(alerts_path))
    alert_groups = load_yaml(alerts_path)["groups"]
    report("deploy/prometheus/alerts.yml: the rules' structure", check_rule_groups(alert_groups, "alerts.yml"))
    rule_objects = [d for d in everything.values() if d["kind"] == "PrometheusRule"]
    same = rule_objects and rule_objects[0]["spec"]["groups"] == alert_groups
    report("deploy/k8s/monitoring/prometheusrule.yaml: the same groups as deploy/prometheus/alerts.yml",
           [] if same else ["the PrometheusRule's groups differ from alerts.yml (copy them over)"])

    grafana = compose["services"].get("grafana", {})
    problems = []
    provisioning = mounted(grafana, deploy, "/etc/grafana/provisioning")
    if provisioning is None or not provisioning.is_dir():
        problems.append("compose mounts no provisioning directory")
    else:
        for provider in load_yaml(provisioning / "dashboards/chatpulse.yaml").get("providers") or []:
            folder = provider["options"]["path"]
            host = mounted(grafana, deploy, f"{folder}/chatpulse.json")
            if host is None or not host.exists():
                problems.append(f"nothing mounts a dashboard into {folder}")
        for source in load_yaml(provisioning / "datasources/prometheus.yaml").get("datasources") or []:
            if source.get("type") != "prometheus" or not source.get("url"):
                problems.append(f"data source {source.get('name')}: a prometheus url is required")
    report("deploy/grafana/provisioning: data source and dashboard provider point at what compose mounts", problems)

    # Queries against what a running instance exports: the families it
    # shows, and those src/metrics.rs registers (shown once they have a
    # sample); every family it shows must be registered there with its type.
    live = live_types(metrics_text)
    registered = registered_families((root / "src/metrics.rs").read_text())
    problems = [f"{name} ({kind}) is on /metrics but not registered in src/metrics.rs as such"
                for name, kind in sorted(live.items()) if name.startswith("chatpulse_") and registered.get(name) != kind]
    if not any(name.startswith("chatpulse_") for name in live):
        problems.append("the running instance shows no chatpulse_ metric family")
    report(f"/metrics of the running instance: {sum(n.startswith('chatpulse_') for n in live)} families shown, "
           f"all among the {len(registered)} src/metrics.rs registers", problems)
    exported = exported_names(metrics_text)[0] | series_of(registered)
    families = set(live) | set(registered)
    dashboard = json.loads((deploy / "grafana/chatpulse.json").read_text())
    d_exprs = dashboard_exprs(dashboard)
    report(f"deploy/grafana/chatpulse.json: {len(d_exprs)} queries name only exported metrics",
           unknown_metrics(d_exprs, exported) or ([] if d_exprs else ["no queries"]))
    report("deploy/grafana/chatpulse.json: every query is valid PromQL (promtool)", promtool_expressions(d_exprs))
    queried = set().union(*(promql_metric_names(e) for e in d_exprs.values())) if d_exprs else set()
    wanted = {
        "chatpulse_votes_total", "chatpulse_webhook_messages_total", "chatpulse_http_request_duration_seconds_bucket",
        "chatpulse_broadcast_tick_duration_seconds_bucket", "chatpulse_websocket_clients",
        "chatpulse_store_call_errors_total", "chatpulse_circuit_breaker_state", "chatpulse_leader",
        "chatpulse_eventsub_ready", "chatpulse_eventsub_subscription_calls_total", "chatpulse_dependency_up",
    }
    report("deploy/grafana/chatpulse.json: shows votes, webhooks, ticks, overlays, stores, breaker, leader, EventSub",
           [f"no panel queries {m}" for m in sorted(wanted - queried)])
    report(f"deploy/prometheus/alerts.yml: {len(rule_exprs(alert_groups))} expressions name only exported metrics",
           unknown_metrics(rule_exprs(alert_groups), exported))

    # The operations book covers every metric and every alert.
    def read(path: Path) -> str:
        if not path.exists():
            report(str(path.relative_to(root)), ["missing"])
            return ""
        return path.read_text()

    metrics_doc = read(root / "docs/operations/metrics.md")
    report("docs/operations/metrics.md: documents every exported metric",
           [f"{f} is not documented" for f in sorted(families) if f.startswith("chatpulse_") and f not in metrics_doc])
    alerts_doc = read(root / "docs/operations/alerts.md")
    alert_names = [r["alert"] for g in alert_groups for r in g["rules"] if "alert" in r]
    report("docs/operations/alerts.md: documents every alert",
           [f"{a} is not documented" for a in alert_names if not re.search(rf"^#+ .*\b{a}\b", alerts_doc, re.MULTILINE)])
    return not report.failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--kubernetes-version", action="append", dest="versions", required=True)
    parser.add_argument("--binary", type=Path, help="chatpulse to run for its /metrics")
    parser.add_argument("--metrics-file", type=Path, help="a saved /metrics page instead of --binary")
    parser.add_argument("--save-metrics", type=Path, help="where to keep the scraped page")
    parser.add_argument("--hadolint", default=shutil.which("hadolint") or "hadolint")
    args = parser.parse_args()
    if args.metrics_file:
        metrics_text = args.metrics_file.read_text()
    elif args.binary:
        metrics_text = scrape_running_instance(args.binary)
        print(f"ok   started {args.binary.name} serve and read its /metrics")
        if args.save_metrics:
            args.save_metrics.parent.mkdir(parents=True, exist_ok=True)
            args.save_metrics.write_text(metrics_text)
    else:
        parser.error("--binary or --metrics-file is required")
    return 0 if check_all(args.root.resolve(), args.versions, metrics_text, args.hadolint) else 1


if __name__ == "__main__":
    sys.exit(main())
