#!/usr/bin/env python3
"""Policy checks on the rendered egress-guard manifests.

Used by deploy/validate.sh after schema validation. The schemas say the manifests are
well-formed; this says they are the deployment we mean: a hardened pod with a pinned
image, webhook entries that fail closed, see exactly their kinds and spare the
namespaces and writers they must (matchConditions are evaluated with a CEL
interpreter), least-privilege RBAC, a NetworkPolicy that isolates the pods, an
autoscaler that never goes below two, the alerts, tenant egress examples that leave
no path out but the egress gateway, and overlays that change only what they claim to
change. check_security_test.py shows that each check can fail.

Every check prints PASS or FAIL with what it looked at; any FAIL exits 1.
"""

from __future__ import annotations

import argparse
import json
import copy
import ipaddress
import re
import sys
from pathlib import Path
from typing import Any, Callable

import celpy
import yaml

NS = "egress-guard"
APP = "egress-guard"
ALLOWLIST_CM = "egress-guard-allowlist"
TLS_SECRET = "egress-guard-tls"
READ_VERBS = {"get", "list", "watch"}
WEBHOOK_KINDS = {"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}
CU = frozenset({"CREATE", "UPDATE"})
ISTIO_NETWORKING = [
    "serviceentries", "virtualservices", "destinationrules", "gateways",
    "sidecars", "workloadentries", "workloadgroups", "envoyfilters", "proxyconfigs",
]
# The writers the endpoints entry never calls the webhook for; the server's default
# `trustedWriters` must be the same list (docs/deploy.md).
TRUSTED_WRITERS = [
    "system:serviceaccount:kube-system:endpoint-controller",
    "system:serviceaccount:kube-system:endpointslice-controller",
    "system:serviceaccount:kube-system:endpointslicemirroring-controller",
    "system:kube-controller-manager",
    "system:apiserver",
]
# Writers that must still reach the webhook: tenants, admins, and control-plane
# identities that are not endpoint writers (or only look like one).
UNTRUSTED_WRITERS = [
    "alice@example.com",
    "kubernetes-admin",
    "system:admin",
    "system:serviceaccount:team-a:deployer",
    "system:serviceaccount:team-a:endpoint-controller",
    "system:serviceaccount:kube-system:replicaset-controller",
    "system:serviceaccount:kube-system:default",
    "system:serviceaccount:kube-system:endpoint-controller-x",
    "system:kube-scheduler",
]
# What `egress-guard audit` lists: the ClusterRole egress-guard-audit grants get/list on
# exactly these (apiGroup, resource) pairs.
AUDIT_RESOURCES = {("networking.istio.io", r) for r in ISTIO_NETWORKING} | {
    ("extensions.istio.io", "wasmplugins"),
    ("extensions.istio.io", "trafficextensions"),
    ("security.istio.io", "requestauthentications"),
    ("networking.k8s.io", "networkpolicies"),
    ("gateway.networking.x-k8s.io", "xbackends"),
    ("", "services"), ("", "endpoints"), ("", "pods"), ("", "replicationcontrollers"),
    ("discovery.k8s.io", "endpointslices"),
    ("apps", "deployments"), ("apps", "statefulsets"), ("apps", "daemonsets"), ("apps", "replicasets"),
    ("batch", "jobs"), ("batch", "cronjobs"),
}


def use_kinds_table(path: Path | None) -> None:
    """Takes the judged kinds from `egress-guard schema --kinds` (the binary's one kinds
    table) instead of the list above, which must then say the same."""
    global AUDIT_RESOURCES
    if path is None:
        return
    rows = json.loads(Path(path).read_text())
    # audit lists every judged kind but ConfigMaps (src/audit/scope.rs): only the
    # allowlist's own is judged, when it is written.
    table = {(r["group"], r["plural"]) for r in rows if (r["group"], r["plural"]) != ("", "configmaps")}
    if table != AUDIT_RESOURCES:
        print(f"note: check_security.py's kinds differ from the binary's: missing {sorted(table - AUDIT_RESOURCES)}, "
              f"extra {sorted(AUDIT_RESOURCES - table)}; the binary's are used")
    AUDIT_RESOURCES = table


AUDIT_ROLE = "egress-guard-audit"
# The continuous audit (deploy/audit-watch): its Deployment, ServiceAccount and roles.
AUDITOR = "egress-guard-auditor"
POLICYREPORTS = ("wgpolicyk8s.io", "policyreports")
AUDITOR_REPORT_VERBS = {"list", "create", "patch", "delete"}
REPORTS_VIEW = "egress-guard-policyreports-view"
ALLOWLIST_READER = "egress-guard-allowlist-reader"
SYSTEM_NAMESPACES = ["kube-system", "kube-public", "kube-node-lease", "istio-system", NS]
TENANT_NAMESPACES = ["default", "team-a", "monitoring", "cert-manager"]


class Hook:
    """What one webhook entry must be: its path, rules, namespaces, matchConditions."""

    def __init__(self, kind: str, path: str, rules: dict, excluded: list[str], included: list[str],
                 conditions: str | None = None) -> None:
        self.kind = kind
        self.path = path
        # (apiGroup, apiVersion, resource) -> operations
        self.rules = rules
        self.excluded = excluded
        self.included = included
        # None: the entry must have no matchConditions; else which test table applies.
        self.conditions = conditions


HOOKS = {
    "validate.egress-guard.io": Hook(
        "ValidatingWebhookConfiguration", "/validate",
        {("networking.istio.io", "*", r): CU for r in ISTIO_NETWORKING}
        | {("extensions.istio.io", "*", r): CU for r in ("wasmplugins", "trafficextensions")}
        | {("security.istio.io", "*", "requestauthentications"): CU,
           ("", "v1", "services"): CU,
           ("networking.k8s.io", "v1", "networkpolicies"): CU | {"DELETE"},
           ("gateway.networking.x-k8s.io", "*", "xbackends"): CU},
        excluded=["kube-system", NS], included=["istio-system", *TENANT_NAMESPACES],
    ),
    "endpoints.validate.egress-guard.io": Hook(
        "ValidatingWebhookConfiguration", "/validate",
        {("", "v1", "endpoints"): CU, ("discovery.k8s.io", "v1", "endpointslices"): CU},
        excluded=["kube-system", NS], included=["istio-system", *TENANT_NAMESPACES],
        conditions="writers",
    ),
    "workloads.validate.egress-guard.io": Hook(
        "ValidatingWebhookConfiguration", "/validate",
        {("", "v1", "pods"): CU, ("", "v1", "replicationcontrollers"): CU,
         ("", "v1", "pods/ephemeralcontainers"): frozenset({"UPDATE"}),
         ("", "v1", "pods/exec"): frozenset({"CONNECT"}),
         ("", "v1", "pods/attach"): frozenset({"CONNECT"})}
        | {("apps", "v1", r): CU for r in ("deployments", "statefulsets", "daemonsets", "replicasets")}
        | {("batch", "v1", r): CU for r in ("jobs", "cronjobs")},
        excluded=SYSTEM_NAMESPACES, included=TENANT_NAMESPACES,
    ),
    "allowlist.validate.egress-guard.io": Hook(
        "ValidatingWebhookConfiguration", "/validate",
        {("", "v1", "configmaps"): CU},
        excluded=["kube-system", "istio-system", *TENANT_NAMESPACES], included=[NS],
        conditions="allowlist",
    ),
    "mutate.egress-guard.io": Hook(
        "MutatingWebhookConfiguration", "/mutate",
        {("networking.istio.io", "*", "virtualservices"): CU},
        excluded=["kube-system", NS], included=["istio-system", *TENANT_NAMESPACES],
    ),
}
INJECT_CA = "cert-manager.io/inject-ca-from"
# The webhook configurations ship as this generated ConfigMap (key webhooks.yaml) and the
# server registers them; load() expands them and marks each with this key.
WEBHOOKS_CM = "egress-guard-webhooks"
WEBHOOKS_KEY = "webhooks.yaml"
FROM_CM = "x-rendered-from-configmap"
WEBHOOKS_DIR = "/etc/egress-guard/webhooks"
REGISTER = "egress-guard-register"
# The register ClusterRole's rules, exactly: (apiGroup, resource, resourceName) -> verbs.
REGISTER_RULES = {
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations", APP): {"get", "create", "patch"},
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations", APP): {"get", "create", "patch"},
    ("rbac.authorization.k8s.io", "clusterroles", REGISTER): {"get"},
}
# The allowlist's keys, from the JSON Schema generated from the Rust model.
_SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "docs" / "allowlist.schema.json").read_text())
ALLOWLIST_KEYS = set(_SCHEMA["properties"])
NAMESPACE_KEYS = set(_SCHEMA["$defs"]["NamespaceDoc"]["properties"])
ALERTS = {
    "EgressGuardDown": "up",
    "EgressGuardWebhookErrors": "egress_guard_requests_total",
    "EgressGuardHighLatency": "egress_guard_request_duration_seconds_bucket",
    "EgressGuardAllowlistReloadFailing": "egress_guard_allowlist_reloads_total",
    "EgressGuardAllowlistEntriesExpiring": "egress_guard_allowlist_entries_expiring",
    "EgressGuardReviewBudgetExceeded": "egress_guard_review_budget_exceeded_total",
    "EgressGuardConnectionCapReached": "egress_guard_connections_rejected_total",
    "EgressGuardLiveViolations": "egress_guard_audit_live_violations",
    "EgressGuardAuditDown": "up",
    "EgressGuardAuditReportWritesFailing": "egress_guard_audit_report_writes_total",
    "EgressGuardAuditWatchFailing": "egress_guard_audit_watch_errors_total",
}


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []
        self.group = ""

    def section(self, name: str) -> None:
        self.group = name
        print(f"\n[{name}]")

    def check(self, what: str, test: Callable[[], Any], detail: Callable[[], str] | None = None) -> bool:
        """Run one check; a missing field or a wrong type is a failure, not a crash."""
        try:
            ok = bool(test())
            why = "" if ok or detail is None else detail()
        except Exception as e:  # noqa: BLE001 - any error in a check is that check failing
            ok, why = False, f"{type(e).__name__}: {e}"
        if ok:
            self.passed += 1
            print(f"  PASS {what}")
        else:
            line = f"{self.group}: {what}" + (f" ({why})" if why else "")
            self.failed.append(line)
            print(f"  FAIL {what}" + (f" ({why})" if why else ""))
        return ok

    def note(self, text: str) -> None:
        print(f"  note {text}")


# === helpers ===


def load(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return expand_webhooks([o for o in yaml.safe_load_all(f) if o])


def is_webhooks_cm(o: dict) -> bool:
    """The generated ConfigMap egress-guard-webhooks-<hash>."""
    name = o.get("metadata", {}).get("name", "")
    return o.get("kind") == "ConfigMap" and re.fullmatch(rf"{WEBHOOKS_CM}(-[a-z0-9]+)?", name) is not None


def expand_webhooks(objs: list[dict], mark: bool = True) -> list[dict]:
    """The objects, plus the webhook configurations inside the webhooks ConfigMap.

    The server applies what that ConfigMap holds, so every webhook check runs on it; the
    expanded objects carry FROM_CM (unless mark is False) to tell them from objects the
    rendering applies itself.
    """
    out = list(objs)
    for o in objs:
        if is_webhooks_cm(o):
            for doc in yaml.safe_load_all((o.get("data") or {}).get(WEBHOOKS_KEY, "")):
                if doc:
                    if mark:
                        doc[FROM_CM] = o["metadata"]["name"]
                    out.append(doc)
    return out


def applied_webhooks(objs: list[dict]) -> list[dict]:
    """Webhook configurations a rendering applies directly (not from the ConfigMap)."""
    return [o for o in objs if o.get("kind") in WEBHOOK_KINDS and FROM_CM not in o]


def find(objs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objs if o.get("kind") == kind and (name is None or o["metadata"].get("name") == name)]


def one(objs: list[dict], kind: str, name: str) -> dict:
    found = find(objs, kind, name)
    if len(found) != 1:
        raise LookupError(f"expected exactly one {kind} {name}, found {len(found)}")
    return found[0]


def first(objs: list[dict], kind: str, name: str) -> dict:
    """The object, or an empty stand-in whose fields fail the checks that read them."""
    found = find(objs, kind, name)
    return found[0] if found else {"kind": kind, "metadata": {}, "spec": {}}


def key(o: dict) -> tuple[str, str, str]:
    m = o.get("metadata", {})
    return (o.get("kind", ""), m.get("namespace", ""), m.get("name", ""))


def selects(selector: dict, labels: dict) -> bool:
    """matchLabels/matchExpressions semantics, enough for our selectors."""
    if not selector:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        k, op, vals = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and labels.get(k) in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def parse_seconds(d: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", d)
    if not m:
        raise ValueError(f"unparseable duration {d!r}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def flags(args: list[str]) -> dict[str, str]:
    """--name=value and --name value, both accepted by clap."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--"):
            if "=" in a:
                k, v = a[2:].split("=", 1)
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                k, v = a[2:], args[i + 1]
                i += 1
            else:
                k, v = a[2:], ""
            out[k] = v
        i += 1
    return out


def kubelet_args(objs: list[dict], name: str) -> dict[str, str]:
    """The flags of Deployment `name`'s first container as the kubelet passes them: each
    $(VAR) replaced by the container's env value, a fieldRef to metadata.namespace by the
    Deployment's namespace (the pod's). An unknown $(VAR) stays as written, as it does
    for the kubelet."""
    dep = one(objs, "Deployment", name)
    c = dep["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for e in c.get("env") or []:
        if "value" in e:
            env[e["name"]] = e["value"]
        elif (e.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[e["name"]] = dep["metadata"]["namespace"]
    expanded = [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), a)
                for a in c.get("args") or []]
    return flags(expanded)


def own_namespace_flag(objs: list[dict], name: str) -> bool:
    """--allowlist-configmap names the pod's namespace through $(POD_NAMESPACE), set from
    the pod's metadata.namespace: kustomize `namespace:` moves it with the install."""
    c = one(objs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c.get("env") or []}
    return (flags(c.get("args") or []).get("allowlist-configmap") == f"$(POD_NAMESPACE)/{ALLOWLIST_CM}"
            and env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace")


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


def allowlist_from(objs: list[dict]) -> dict:
    cm = one(objs, "ConfigMap", ALLOWLIST_CM)
    return yaml.safe_load(cm["data"]["allowlist.yaml"])


def without_modes(allowlist: dict) -> dict:
    a = copy.deepcopy(allowlist)
    a.pop("mode", None)
    for ns in (a.get("namespaces") or {}).values():
        if isinstance(ns, dict):
            ns.pop("mode", None)
    return a


def expand_rules(rules: list[dict]) -> dict[tuple[str, str, str], frozenset[str]]:
    """Every (apiGroup, apiVersion, resource) a webhook's rules match, with its operations."""
    out: dict[tuple[str, str, str], frozenset[str]] = {}
    for rule in rules:
        for g in rule["apiGroups"]:
            for v in rule["apiVersions"]:
                for res in rule["resources"]:
                    out[(g, v, res)] = out.get((g, v, res), frozenset()) | frozenset(rule["operations"])
    return out


def conditions_call(hook: dict, request: dict, obj: dict) -> bool:
    """Whether the apiserver would call the webhook: every matchCondition is true.

    Evaluated with cel-python, which agrees with the apiserver's cel-go on the plain
    comparisons and list membership used here. An expression that fails to compile or
    evaluate raises, and the check that asked fails.
    """
    env = celpy.Environment()
    activation = {
        "request": celpy.json_to_cel(request),
        "object": celpy.json_to_cel(obj),
        "oldObject": celpy.json_to_cel(None),
    }
    for cond in hook.get("matchConditions") or []:
        result = env.program(env.compile(cond["expression"])).evaluate(activation)
        if not isinstance(result, celpy.celtypes.BoolType):
            raise TypeError(f"matchCondition {cond['name']} returned {type(result).__name__}, not a bool")
        if not result:
            return False
    return True


def cel_strings(conditions: list[dict]) -> set[str]:
    """Every string literal in a list of matchConditions (CEL quotes with " or ')."""
    text = " ".join(c["expression"] for c in conditions)
    return {a or b for a, b in re.findall(r'"([^"\\]*)"|\'([^\'\\]*)\'', text)}


def mk_request(username: str, resource: str = "endpointslices", name: str = "x",
               namespace: str = "team-a") -> dict:
    return {
        "operation": "CREATE",
        "namespace": namespace,
        "name": name,
        "resource": {"group": "", "version": "v1", "resource": resource},
        "userInfo": {"username": username, "groups": ["system:authenticated"]},
    }


def image_problem(image: str) -> str | None:
    """Why an image reference is not pinned, or None: a tag other than latest, or a digest."""
    name, _, digest = image.partition("@")
    if digest:
        return None if re.fullmatch(r"sha256:[0-9a-f]{64}", digest) else f"bad digest {digest!r}"
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        return "no tag (means latest)"
    tag = last.rsplit(":", 1)[1]
    return "tag latest" if tag == "latest" else None


def pod_specs(objs: list[dict]) -> list[tuple[str, dict]]:
    out = []
    for o in objs:
        spec = o.get("spec") or {}
        if o["kind"] == "Pod":
            out.append(("/".join(key(o)), spec))
        elif o["kind"] == "CronJob":
            out.append(("/".join(key(o)), spec["jobTemplate"]["spec"]["template"]["spec"]))
        elif "template" in spec and isinstance(spec["template"], dict) and "spec" in spec["template"]:
            out.append(("/".join(key(o)), spec["template"]["spec"]))
    return out


def quantity(q: str | int | float) -> float:
    """A Kubernetes resource quantity as a number (cores or bytes)."""
    m = re.fullmatch(r"([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", str(q))
    if not m:
        raise ValueError(f"unparseable quantity {q!r}")
    scale = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}[m.group(2)]
    return float(m.group(1)) * scale


def rule_ports(rule: dict) -> set[tuple[int | str, str]]:
    """(port, protocol) pairs of one NetworkPolicy rule; a rule without ports is every port."""
    if not rule.get("ports"):
        return {("*", "*")}
    return {(p["port"], p.get("protocol", "TCP")) for p in rule["ports"]}


def policy_ports(rules: list[dict]) -> set[tuple[int | str, str]]:
    return {pp for rule in rules for pp in rule_ports(rule)}


def rules_with(rules: list[dict], port: int, protocol: str = "TCP") -> list[dict]:
    return [rule for rule in rules if (port, protocol) in rule_ports(rule) or ("*", "*") in rule_ports(rule)]


def peers(rule: dict) -> list[dict]:
    return rule.get("from", rule.get("to")) or []


def only_namespace(peer: dict, ns: str) -> bool:
    """A peer that selects pods only in the namespace named ns, and no addresses."""
    sel = peer.get("namespaceSelector")
    return (
        "ipBlock" not in peer and sel is not None
        and selects(sel, {"kubernetes.io/metadata.name": ns})
        and not any(selects(sel, {"kubernetes.io/metadata.name": other})
                    for other in ("default", "team-a", "kube-system", "istio-system", NS) if other != ns)
    )


def narrow_cidr(peer: dict) -> bool:
    """An ipBlock peer with a valid CIDR that is not all addresses."""
    cidr = (peer.get("ipBlock") or {}).get("cidr")
    return set(peer) == {"ipBlock"} and cidr is not None and ipaddress.ip_network(cidr).prefixlen > 0


def label_selects(selector: dict | None, labels: dict) -> bool:
    """A label selector; an empty one ({}) selects everything."""
    return selector == {} or (selector is not None and selects(selector, labels))


def egress_allows(np: dict, port: int, protocol: str, *, ns: str | None = None,
                  pod: dict | None = None, ip: str | None = None) -> bool:
    """Whether a NetworkPolicy's egress rules let its pods reach one destination.

    The destination is a pod (ns + its labels) or an address outside the pod network
    (ip). An ipBlock is taken to match addresses outside the pod network only, which is
    the reading every CNI agrees on.
    """
    def peer_matches(peer: dict) -> bool:
        if "ipBlock" in peer:
            if ip is None:
                return False
            block = peer["ipBlock"]
            addr = ipaddress.ip_address(ip)
            net = ipaddress.ip_network(block["cidr"])
            return (addr.version == net.version and addr in net
                    and not any(addr in ipaddress.ip_network(e) for e in block.get("except") or []
                                if ipaddress.ip_network(e).version == addr.version))
        if pod is None:
            return False
        ns_ok = (label_selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": ns})
                 if "namespaceSelector" in peer else ns == np["metadata"]["namespace"])
        pod_ok = label_selects(peer["podSelector"], pod) if "podSelector" in peer else True
        return ns_ok and pod_ok

    for rule in np["spec"].get("egress") or []:
        ports = rule_ports(rule)
        if ("*", "*") not in ports and (port, protocol) not in ports:
            continue
        if "to" not in rule or not rule["to"] or any(peer_matches(p) for p in rule["to"]):
            return True
    return False


# === checks ===


def check_base(r: Report, objs: list[dict]) -> None:
    r.section("base: labels and namespace")
    r.check(
        f"every object is labelled app.kubernetes.io/name={APP} and part-of={APP}",
        lambda: all(
            o["metadata"].get("labels", {}).get("app.kubernetes.io/name") == APP
            and o["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == APP
            for o in objs
        ),
        lambda: ", ".join("/".join(key(o)) for o in objs
                          if o["metadata"].get("labels", {}).get("app.kubernetes.io/name") != APP),
    )
    r.check(
        f"every namespaced object is in namespace {NS}",
        lambda: all(
            o["metadata"].get("namespace") == NS
            for o in objs
            if o["kind"] not in {"Namespace", "ClusterRole", "ClusterRoleBinding", *WEBHOOK_KINDS}
        ),
    )
    ns = one(objs, "Namespace", NS)
    r.check(
        "Namespace enforces Pod Security 'restricted'",
        lambda: ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted",
    )

    r.section("base: Deployment")
    dep = one(objs, "Deployment", APP)
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    containers = pod["containers"]
    c = containers[0]
    psc = pod.get("securityContext") or {}
    csc = c.get("securityContext") or {}

    def effective(field: str) -> Any:
        return csc.get(field, psc.get(field))

    r.check("replicas == 2", lambda: spec["replicas"] == 2, lambda: f"replicas={spec.get('replicas')}")
    r.check(
        "rolling update never reduces serving replicas (maxUnavailable 0)",
        lambda: spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0,
    )
    r.check("selector matches the pod template labels", lambda: selects(spec["selector"], pod_labels))
    r.check("exactly one container, no init containers",
            lambda: len(containers) == 1 and not pod.get("initContainers"))
    r.check(
        f"serviceAccountName {APP} exists in the rendering",
        lambda: pod["serviceAccountName"] == APP and one(objs, "ServiceAccount", APP),
    )
    r.check("runAsNonRoot true", lambda: effective("runAsNonRoot") is True)
    r.check("runAsUser 65532 (non-zero)", lambda: effective("runAsUser") == 65532,
            lambda: f"runAsUser={effective('runAsUser')}")
    r.check("readOnlyRootFilesystem true", lambda: csc["readOnlyRootFilesystem"] is True)
    r.check("allowPrivilegeEscalation false", lambda: csc["allowPrivilegeEscalation"] is False)
    r.check("not privileged", lambda: csc.get("privileged", False) is False)
    r.check(
        "capabilities: drop ALL, add none",
        lambda: "ALL" in csc["capabilities"]["drop"] and not csc["capabilities"].get("add"),
    )
    r.check("seccompProfile RuntimeDefault",
            lambda: (effective("seccompProfile") or {}).get("type") == "RuntimeDefault")
    r.check(
        "no host namespaces or hostPath volumes",
        lambda: not any(pod.get(f) for f in ("hostNetwork", "hostPID", "hostIPC"))
        and not any("hostPath" in v for v in pod.get("volumes", [])),
    )
    res = c.get("resources") or {}
    r.check(
        "resource requests cpu+memory and a memory limit are set",
        lambda: res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"],
        lambda: f"resources={res}",
    )
    r.check(
        "memory limit at least twice the request (a reload holds two allowlists at once)",
        lambda: quantity(res["limits"]["memory"]) >= 2 * quantity(res["requests"]["memory"]),
        lambda: f"requests={res['requests'].get('memory')} limits={res['limits'].get('memory')}",
    )
    r.check(
        "cpu request 100m, limit 1",
        lambda: quantity(res["requests"]["cpu"]) == 0.1 and quantity(res["limits"]["cpu"]) == 1,
        lambda: f"requests={res['requests'].get('cpu')} limits={res['limits'].get('cpu')}",
    )
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    r.check("container ports https=8443 and metrics=9090",
            lambda: ports.get("https") == 8443 and ports.get("metrics") == 9090,
            lambda: f"ports={ports}")
    r.check(
        "liveness probe: GET /healthz on port metrics",
        lambda: c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        and c["livenessProbe"]["httpGet"]["port"] == "metrics",
    )
    r.check(
        "readiness probe: GET /readyz on port metrics",
        lambda: c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        and c["readinessProbe"]["httpGet"]["port"] == "metrics",
    )

    def spread_on_hostname() -> bool:
        for t in pod.get("topologySpreadConstraints") or []:
            if t["topologyKey"] == "kubernetes.io/hostname" and selects(t["labelSelector"], pod_labels):
                return True
        aa = (pod.get("affinity") or {}).get("podAntiAffinity") or {}
        terms = list(aa.get("requiredDuringSchedulingIgnoredDuringExecution") or [])
        terms += [w["podAffinityTerm"] for w in aa.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
        return any(
            t["topologyKey"] == "kubernetes.io/hostname" and selects(t["labelSelector"], pod_labels)
            for t in terms
        )

    r.check("replicas spread across nodes (topology spread or anti-affinity on hostname)", spread_on_hostname)

    args = c.get("args") or []
    f = flags(args)
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    r.check("runs `serve`", lambda: (c.get("command", [])[1:] + args)[0] == "serve")
    r.check(
        "--listen and --metrics-listen ports are the https and metrics container ports",
        lambda: port_of(f["listen"]) == ports["https"] and port_of(f["metrics-listen"]) == ports["metrics"],
    )
    r.check(
        f"--allowlist-configmap names the rendered ConfigMap {NS}/{ALLOWLIST_CM} (as the kubelet expands it)",
        lambda: kubelet_args(objs, APP)["allowlist-configmap"] == f"{NS}/{ALLOWLIST_CM}"
        and one(objs, "ConfigMap", ALLOWLIST_CM),
        lambda: f"--allowlist-configmap={kubelet_args(objs, APP).get('allowlist-configmap')}",
    )
    r.check("--allowlist-configmap is in the pod's own namespace: $(POD_NAMESPACE), from metadata.namespace",
            lambda: own_namespace_flag(objs, APP))

    def tls_from_secret() -> bool:
        for name, m in mounts.items():
            v = volumes[name]
            if (
                v.get("secret", {}).get("secretName") == TLS_SECRET
                and m.get("readOnly") is True
                and "subPath" not in m
                and f["tls-cert"] == m["mountPath"].rstrip("/") + "/tls.crt"
                and f["tls-key"] == m["mountPath"].rstrip("/") + "/tls.key"
            ):
                return True
        return False

    r.check(f"--tls-cert/--tls-key come from secret {TLS_SECRET}, mounted read-only without subPath",
            tls_from_secret)
    r.check(
        "terminationGracePeriodSeconds covers preStop sleep + --shutdown-grace",
        lambda: pod["terminationGracePeriodSeconds"]
        > parse_seconds(f["shutdown-grace"])
        + (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0),
        lambda: f"grace={pod.get('terminationGracePeriodSeconds')} shutdown-grace={f.get('shutdown-grace')}",
    )
    ann = spec["template"]["metadata"].get("annotations") or {}
    r.check(
        "pod annotated prometheus.io/scrape=true, prometheus.io/port=<metrics port>",
        lambda: ann["prometheus.io/scrape"] == "true" and int(ann["prometheus.io/port"]) == ports["metrics"],
    )
    r.check("no Istio sidecar injected into the webhook pod",
            lambda: pod_labels["sidecar.istio.io/inject"] == "false")

    r.section("base: PodDisruptionBudget, HorizontalPodAutoscaler and Service")
    pdb = one(objs, "PodDisruptionBudget", APP)
    r.check("PDB maxUnavailable 1 and no minAvailable (one eviction at a time at any scale)",
            lambda: pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"],
            lambda: f"spec={pdb['spec']}")
    r.check("exactly one HorizontalPodAutoscaler", lambda: len(find(objs, "HorizontalPodAutoscaler")) == 1)
    hpa = first(objs, "HorizontalPodAutoscaler", APP)
    hspec = hpa["spec"]
    r.check(
        f"HPA scales Deployment {APP} (apps/v1) in its namespace",
        lambda: hspec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP}
        and hpa["metadata"]["namespace"] == dep["metadata"]["namespace"],
    )
    r.check(
        "HPA minReplicas 2 (the Deployment's replicas), maxReplicas 6",
        lambda: hspec["minReplicas"] == spec["replicas"] == 2 and hspec["maxReplicas"] == 6,
        lambda: f"min={hspec.get('minReplicas')} max={hspec.get('maxReplicas')} replicas={spec.get('replicas')}",
    )
    r.check(
        "HPA's one metric: cpu Utilization 70% of the request (and the container requests cpu)",
        lambda: hspec["metrics"] == [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]
        and quantity(res["requests"]["cpu"]) > 0,
        lambda: f"metrics={hspec.get('metrics')}",
    )
    r.check(
        "HPA scale-down stabilization window at least 300s",
        lambda: hspec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300,
    )
    r.check("HPA scale-down not disabled", lambda: hspec["behavior"]["scaleDown"].get("selectPolicy") != "Disabled")
    r.check("PDB selects the webhook pods", lambda: selects(pdb["spec"]["selector"], pod_labels))
    svc = one(objs, "Service", APP)
    sports = {p["name"]: p for p in svc["spec"]["ports"]}
    r.check("Service selects the webhook pods",
            lambda: selects({"matchLabels": svc["spec"]["selector"]}, pod_labels))
    r.check("Service port 443 'https' -> container port https",
            lambda: sports["https"]["port"] == 443 and sports["https"]["targetPort"] == "https")
    r.check("Service port 9090 'metrics' -> container port metrics",
            lambda: sports["metrics"]["port"] == 9090 and sports["metrics"]["targetPort"] == "metrics")

    r.section("base: allowlist ConfigMap")
    r.check(f"ConfigMap {ALLOWLIST_CM} keeps its name (no hash suffix) and has allowlist.yaml",
            lambda: "allowlist.yaml" in one(objs, "ConfigMap", ALLOWLIST_CM)["data"])
    al = allowlist_from(objs)
    r.check("allowlist has only known top-level keys", lambda: set(al) <= ALLOWLIST_KEYS,
            lambda: f"unknown: {sorted(set(al) - ALLOWLIST_KEYS)}")
    r.check(
        "allowlist namespace entries have only known keys",
        lambda: all(set(v or {}) <= NAMESPACE_KEYS for v in (al.get("namespaces") or {}).values()),
    )
    r.check("base allowlist mode is enforce", lambda: al.get("mode", "enforce") == "enforce")

    check_webhooks(r, objs, svc)

    check_rbac(r, objs)



def check_rbac(r: Report, objs: list[dict]) -> None:
    r.section("base: RBAC")
    sa = {"kind": "ServiceAccount", "name": APP, "namespace": NS}
    bindings = find(objs, "RoleBinding") + find(objs, "ClusterRoleBinding")
    sa_bindings = [b for b in bindings if sa in (b.get("subjects") or [])]
    r.check(
        f"ServiceAccount {NS}/{APP}: exactly two bindings, RoleBinding {APP} to Role {APP} "
        f"and ClusterRoleBinding {REGISTER} to ClusterRole {REGISTER}",
        lambda: sorted((b["kind"], b["metadata"]["name"], b["roleRef"]["kind"], b["roleRef"]["name"])
                       for b in sa_bindings)
        == [("ClusterRoleBinding", REGISTER, "ClusterRole", REGISTER), ("RoleBinding", APP, "Role", APP)]
        and all(b["subjects"] == [sa] for b in sa_bindings)
        and one(objs, "RoleBinding", APP)["metadata"]["namespace"] == NS,
        lambda: "bindings: " + ", ".join("/".join(key(b)) for b in sa_bindings),
    )
    r.check(f"exactly one ClusterRoleBinding, {REGISTER}, and it names the webhook's ServiceAccount",
            lambda: [(o["metadata"]["name"], o["subjects"]) for o in find(objs, "ClusterRoleBinding")]
            == [(REGISTER, [{"kind": "ServiceAccount", "name": APP, "namespace": NS}])]
            and pod_service_account(objs) == APP,
            lambda: ", ".join(o["metadata"]["name"] for o in find(objs, "ClusterRoleBinding")))
    reg = first(objs, "ClusterRole", REGISTER)
    reg_rules = {(g, res, n): set(rule["verbs"]) for rule in reg.get("rules") or []
                 for g in rule["apiGroups"] for res in rule["resources"] for n in rule.get("resourceNames") or ["*"]}
    r.check(
        f"ClusterRole {REGISTER}: get/create/patch on the two configurations named {APP}, get on itself, nothing else",
        lambda: reg_rules == REGISTER_RULES and not reg.get("aggregationRule")
        and all(rule.get("resourceNames") and not rule.get("nonResourceURLs")
                and not any("*" in rule.get(x, []) for x in ("verbs", "resources", "apiGroups", "resourceNames"))
                for rule in reg["rules"]),
        lambda: f"rules={reg.get('rules')}",
    )
    r.check(f"ClusterRole {REGISTER}: no delete, deletecollection, update or list",
            lambda: not any({"delete", "deletecollection", "update", "list", "watch", "*"} & set(rule["verbs"])
                            for rule in reg["rules"]))
    role = one(objs, "Role", APP)
    r.check(
        f"Role {APP}: get/list/watch on configmaps with resourceNames [{ALLOWLIST_CM}], list on endpointslices, nothing else",
        lambda: sorted((tuple(rule["apiGroups"]), tuple(rule["resources"]), tuple(rule.get("resourceNames") or []),
                        tuple(sorted(rule["verbs"]))) for rule in role["rules"])
        == [(("",), ("configmaps",), (ALLOWLIST_CM,), ("get", "list", "watch")),
            (("discovery.k8s.io",), ("endpointslices",), (), ("list",))],
        lambda: f"rules={role['rules']}",
    )
    r.check(f"exactly two Roles: {APP} and {AUDIT_ROLE}",
            lambda: sorted(o["metadata"]["name"] for o in find(objs, "Role")) == sorted([APP, AUDIT_ROLE]))
    r.check(f"exactly two ClusterRoles: {AUDIT_ROLE} and {REGISTER}",
            lambda: sorted(o["metadata"]["name"] for o in find(objs, "ClusterRole")) == sorted([AUDIT_ROLE, REGISTER]))

    cr = one(objs, "ClusterRole", AUDIT_ROLE)
    granted = {(g, res) for rule in cr["rules"] for g in rule["apiGroups"] for res in rule["resources"]}
    r.check(
        f"ClusterRole {AUDIT_ROLE}: only get and list, no wildcards, no resourceNames",
        lambda: cr["rules"] and all(
            set(rule["verbs"]) <= {"get", "list"} and not rule.get("resourceNames")
            and not rule.get("nonResourceURLs")
            and not any("*" in rule.get(f, []) for f in ("verbs", "resources", "apiGroups"))
            for rule in cr["rules"]
        ),
        lambda: f"rules={cr['rules']}",
    )
    r.check(
        f"ClusterRole {AUDIT_ROLE}: exactly the {len(AUDIT_RESOURCES)} kinds `egress-guard audit` lists",
        lambda: granted == AUDIT_RESOURCES,
        lambda: f"missing {sorted(AUDIT_RESOURCES - granted)}, extra {sorted(granted - AUDIT_RESOURCES)}",
    )
    r.check(
        f"ClusterRole {AUDIT_ROLE}: no aggregation (its rules are exactly the ones written)",
        lambda: not cr.get("aggregationRule"),
    )
    audit_role = one(objs, "Role", AUDIT_ROLE)
    r.check(
        f"Role {NS}/{AUDIT_ROLE}: only get on configmaps with resourceNames [{ALLOWLIST_CM}]",
        lambda: audit_role["metadata"]["namespace"] == NS and audit_role["rules"] and all(
            rule["apiGroups"] == [""] and rule["resources"] == ["configmaps"]
            and rule.get("resourceNames") == [ALLOWLIST_CM] and rule["verbs"] == ["get"]
            for rule in audit_role["rules"]
        ),
        lambda: f"rules={audit_role['rules']}",
    )
    r.check(
        f"nothing in the install binds {AUDIT_ROLE} (people bind it to themselves)",
        lambda: not any(b["roleRef"]["name"] == AUDIT_ROLE for b in bindings),
    )


def check_webhooks(r: Report, objs: list[dict], svc: dict) -> None:
    r.section("base: webhook configurations")
    for kind in sorted(WEBHOOK_KINDS):
        cfg = one(objs, kind, APP)
        label = kind.replace("WebhookConfiguration", "")
        want = sorted(name for name, h in HOOKS.items() if h.kind == kind)
        got = [w["name"] for w in cfg["webhooks"]]
        r.check(f"{label}: exactly the entries {', '.join(want)}", lambda: sorted(got) == want,
                lambda: f"entries={got}")

    hooks = {w["name"]: (kind, w) for kind in WEBHOOK_KINDS for w in one(objs, kind, APP)["webhooks"]}
    for name, spec in HOOKS.items():
        r.section(f"base: webhook {name}")
        if name not in hooks or hooks[name][0] != spec.kind:
            r.check(f"present in the {spec.kind}", lambda: False)
            continue
        w = hooks[name][1]
        svc_ref = w["clientConfig"].get("service") or {}
        r.check(
            f"calls service {NS}/{APP} port 443 path {spec.path}",
            lambda: (svc_ref["namespace"], svc_ref["name"], svc_ref.get("port", 443), svc_ref["path"])
            == (NS, APP, 443, spec.path) and 443 in [p["port"] for p in svc["spec"]["ports"]],
        )
        r.check("no url and no caBundle in the base (injected later)",
                lambda: "url" not in w["clientConfig"] and not w["clientConfig"].get("caBundle"))
        r.check("failurePolicy Fail", lambda: w["failurePolicy"] == "Fail")
        r.check("sideEffects None", lambda: w["sideEffects"] == "None")
        r.check("timeoutSeconds <= 5", lambda: 1 <= w["timeoutSeconds"] <= 5,
                lambda: f"timeoutSeconds={w.get('timeoutSeconds')}")
        r.check("matchPolicy Equivalent", lambda: w["matchPolicy"] == "Equivalent")
        r.check("admissionReviewVersions v1 and v1beta1",
                lambda: {"v1", "v1beta1"} <= set(w["admissionReviewVersions"]))
        got = expand_rules(w["rules"])
        r.check(
            f"rules match exactly {len(spec.rules)} (group, version, resource) with their operations",
            lambda: got == spec.rules,
            lambda: "; ".join(
                f"{'/'.join(k) or k}: want {sorted(spec.rules.get(k, []))} got {sorted(got.get(k, []))}"
                for k in sorted(set(got) | set(spec.rules)) if got.get(k) != spec.rules.get(k)
            ),
        )
        r.check("every rule has scope Namespaced", lambda: all(rule.get("scope") == "Namespaced" for rule in w["rules"]))

        def excluded(ns: str) -> bool:
            return not selects(w["namespaceSelector"], {"kubernetes.io/metadata.name": ns})

        r.check(
            f"namespaceSelector skips {', '.join(spec.excluded)}",
            lambda: all(excluded(ns) for ns in spec.excluded),
            lambda: "calls for " + ", ".join(ns for ns in spec.excluded if not excluded(ns)),
        )
        r.check(
            f"namespaceSelector calls for {', '.join(spec.included)}",
            lambda: not any(excluded(ns) for ns in spec.included),
            lambda: "skips " + ", ".join(ns for ns in spec.included if excluded(ns)),
        )
        r.check("no objectSelector", lambda: not w.get("objectSelector"))
        if spec.conditions is None:
            r.check("no matchConditions (nothing in scope is skipped)", lambda: not w.get("matchConditions"))
        elif spec.conditions == "writers":
            def still_called() -> list[str]:
                return [u for u in TRUSTED_WRITERS if conditions_call(w, mk_request(u), {})]

            r.check(
                f"matchConditions skip the {len(TRUSTED_WRITERS)} control-plane endpoint writers",
                lambda: w["matchConditions"] and not still_called(),
                lambda: "still calls for " + ", ".join(still_called()),
            )
            r.check(
                "matchConditions name exactly those writers, no others",
                lambda: cel_strings(w["matchConditions"]) == set(TRUSTED_WRITERS),
                lambda: f"names {sorted(cel_strings(w['matchConditions']))}",
            )
            r.check(
                "matchConditions still call for tenants, admins and other system identities",
                lambda: all(conditions_call(w, mk_request(u), {}) for u in UNTRUSTED_WRITERS),
                lambda: "skips " + ", ".join(u for u in UNTRUSTED_WRITERS
                                             if not conditions_call(w, mk_request(u), {})),
            )
        elif spec.conditions == "allowlist":
            def called(cm_name: str) -> bool:
                return conditions_call(
                    w, mk_request("alice@example.com", "configmaps", cm_name, NS),
                    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": cm_name, "namespace": NS}},
                )

            r.check(f"matchConditions call for the ConfigMap {ALLOWLIST_CM}", lambda: called(ALLOWLIST_CM))
            others = ["kube-root-ca.crt", f"{ALLOWLIST_CM}-old", "allowlist", "egress-guard"]
            r.check(
                "matchConditions skip every other ConfigMap in the namespace",
                lambda: not any(called(n) for n in others),
                lambda: "calls for " + ", ".join(n for n in others if called(n)),
            )
        if spec.kind == "MutatingWebhookConfiguration":
            r.check("reinvocationPolicy IfNeeded", lambda: w["reinvocationPolicy"] == "IfNeeded")


def check_images(r: Report, name: str, objs: list[dict]) -> None:
    r.section(f"{name}: images")
    pods = pod_specs(objs)
    for where, pod in pods:
        for c in (pod.get("initContainers") or []) + pod["containers"]:
            r.check(
                f"{where} container {c['name']}: image {c.get('image')} is pinned (tag other than latest, or digest)",
                lambda: image_problem(c["image"]) is None,
                lambda: image_problem(c["image"]) or "",
            )
    if not pods:
        r.note("no pod templates in this rendering")


def check_own_network_policy(r: Report, name: str, objs: list[dict], restricted: bool) -> dict:
    r.section(f"{name}: NetworkPolicy for egress-guard's pods")
    r.check("exactly one NetworkPolicy", lambda: len(find(objs, "NetworkPolicy")) == 1)
    np = first(objs, "NetworkPolicy", APP)
    spec = np["spec"]
    dep = one(objs, "Deployment", APP)
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"]: p["containerPort"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
    ingress, egress = spec.get("ingress") or [], spec.get("egress") or []
    r.check(f"in namespace {NS}, selects the webhook pods",
            lambda: np["metadata"]["namespace"] == NS and selects(spec["podSelector"], pod_labels))
    r.check("policyTypes Ingress and Egress (both directions isolated)",
            lambda: set(spec["policyTypes"]) == {"Ingress", "Egress"})
    r.check(
        "ingress only on the https and metrics container ports (8443, 9090 TCP), every rule names ports",
        lambda: policy_ports(ingress) == {(ports["https"], "TCP"), (ports["metrics"], "TCP")}
        and (8443, 9090) == (ports["https"], ports["metrics"]),
        lambda: f"ingress ports {sorted(map(str, policy_ports(ingress)))}",
    )
    r.check(
        "metrics (9090) only from the namespace `monitoring`",
        lambda: all(peers(rule) and all(only_namespace(p, "monitoring") for p in peers(rule))
                    for rule in rules_with(ingress, 9090)),
        lambda: f"rules={rules_with(ingress, 9090)}",
    )
    r.check(
        "egress only to DNS (53 UDP+TCP) and the Kubernetes API (443, 6443 TCP), every rule names ports",
        lambda: policy_ports(egress) == {(53, "UDP"), (53, "TCP"), (443, "TCP"), (6443, "TCP")},
        lambda: f"egress ports {sorted(map(str, policy_ports(egress)))}",
    )

    def to_kube_dns(rule: dict) -> bool:
        return bool(peers(rule)) and all(
            only_namespace(p, "kube-system") and selects(p.get("podSelector") or {}, {"k8s-app": "kube-dns"})
            and not selects(p.get("podSelector") or {}, {"k8s-app": "other"})
            for p in peers(rule)
        )

    r.check(
        "DNS only to kube-dns pods in kube-system",
        lambda: all(to_kube_dns(rule) for rule in rules_with(egress, 53, "UDP") + rules_with(egress, 53, "TCP")),
    )
    api_in = rules_with(ingress, 8443)
    api_out = rules_with(egress, 443) + rules_with(egress, 6443)
    if not restricted:
        r.check(
            "admission calls (8443) from any source: the apiserver may be outside the pod network",
            lambda: any(not peers(rule) for rule in api_in),
        )
    else:
        r.check(
            "admission calls (8443) only from ipBlocks narrower than everything",
            lambda: api_in and all(peers(rule) and all(narrow_cidr(p) for p in peers(rule)) for rule in api_in),
            lambda: f"rules={api_in}",
        )
        r.check(
            "Kubernetes API egress (443, 6443) only to ipBlocks narrower than everything",
            lambda: api_out and all(peers(rule) and all(narrow_cidr(p) for p in peers(rule)) for rule in api_out),
            lambda: f"rules={api_out}",
        )
    return np


def check_restricted_apiserver(r: Report, base: list[dict], restricted: list[dict]) -> None:
    base_np = check_own_network_policy(r, "base", base, restricted=False)
    np = check_own_network_policy(r, "overlay restricted-apiserver", restricted, restricted=True)
    r.section("overlay restricted-apiserver")

    def same_rules(direction: str, port: int, protocol: str) -> bool:
        return (rules_with(np["spec"][direction], port, protocol)
                == rules_with(base_np["spec"][direction], port, protocol))

    r.check("metrics (9090) and DNS (53) rules identical to the base's",
            lambda: same_rules("ingress", 9090, "TCP") and same_rules("egress", 53, "UDP")
            and same_rules("egress", 53, "TCP"))
    base_rest = {key(o): o for o in base if o["kind"] != "NetworkPolicy"}
    rest = {key(o): o for o in restricted if o["kind"] != "NetworkPolicy"}
    r.check(
        "every other object is identical to the base",
        lambda: base_rest == rest,
        lambda: "differs: " + ", ".join("/".join(k) for k in set(base_rest) | set(rest)
                                        if base_rest.get(k) != rest.get(k)),
    )


def check_networkpolicy_examples(r: Report, objs: list[dict], base: list[dict]) -> None:
    r.section("networkpolicy examples")
    r.check("only NetworkPolicies, exactly two",
            lambda: [o["kind"] for o in objs] == ["NetworkPolicy", "NetworkPolicy"])
    r.check("none of them is in the base install",
            lambda: not {key(o) for o in objs} & {key(o) for o in base})
    kube_dns = {"ns": "kube-system", "pod": {"k8s-app": "kube-dns"}}
    gateway = {"ns": "istio-system", "pod": {"istio": "egressgateway", "app": "istio-egressgateway"}}
    internet = ["203.0.113.10", "198.51.100.7", "192.0.2.44", "2001:db8::10"]

    tenant = first(objs, "NetworkPolicy", "egress-in-cluster-only")
    ts = tenant["spec"]
    r.check("tenant: selects every pod in its namespace, egress isolated",
            lambda: ts["podSelector"] == {} and "Egress" in ts["policyTypes"])
    r.check("tenant: no ipBlock and no rule without destinations (no direct path out)",
            lambda: all(rule.get("to") and not any("ipBlock" in p for p in rule["to"]) for rule in ts["egress"]))
    r.check(
        "tenant: internet addresses, the cloud metadata service and node addresses are unreachable",
        lambda: not any(egress_allows(tenant, port, "TCP", ip=ip)
                        for ip in internet + ["169.254.169.254", "10.0.0.5"] for port in (80, 443, 5432))
        and not any(egress_allows(tenant, 443, "UDP", ip=ip) for ip in internet),
    )
    r.check("tenant: the egress gateway is reachable (443 and 80)",
            lambda: egress_allows(tenant, 443, "TCP", **gateway) and egress_allows(tenant, 80, "TCP", **gateway))
    r.check("tenant: pods in other namespaces are reachable",
            lambda: egress_allows(tenant, 8080, "TCP", ns="team-b", pod={"app": "api"}))
    r.check("tenant: DNS (kube-dns, 53 UDP and TCP) is reachable",
            lambda: egress_allows(tenant, 53, "UDP", **kube_dns) and egress_allows(tenant, 53, "TCP", **kube_dns))

    gw = first(objs, "NetworkPolicy", "egress-gateway-internet")
    gs = gw["spec"]
    r.check(
        "gateway: in istio-system, selects pods labelled istio: egressgateway and not istiod or ingress gateways",
        lambda: gw["metadata"]["namespace"] == "istio-system"
        and label_selects(gs["podSelector"], gateway["pod"])
        and not label_selects(gs["podSelector"], {"app": "istiod", "istio": "pilot"})
        and not label_selects(gs["podSelector"], {"istio": "ingressgateway"}),
    )
    r.check("gateway: egress isolated", lambda: "Egress" in gs["policyTypes"])
    r.check("gateway: internet addresses reachable, IPv4 and IPv6",
            lambda: all(egress_allows(gw, 443, "TCP", ip=ip) for ip in internet))
    r.check("gateway: link-local addresses (cloud metadata service) unreachable",
            lambda: not egress_allows(gw, 80, "TCP", ip="169.254.169.254")
            and not egress_allows(gw, 80, "TCP", ip="fe80::1"))
    r.check("gateway: istiod (15012) and DNS (53 UDP and TCP) reachable",
            lambda: egress_allows(gw, 15012, "TCP", ns="istio-system", pod={"app": "istiod"})
            and egress_allows(gw, 53, "UDP", **kube_dns) and egress_allows(gw, 53, "TCP", **kube_dns))


def check_trusted_writers(r: Report, repo: Path) -> None:
    """The endpoints entry may skip only writers the server trusts by default.

    A writer the webhook skips but the server does not trust would be trusted in effect,
    without the server's say; the other way round only costs latency. So every skipped
    writer must appear in the server's source, in the file that holds its defaults.
    """
    r.section("endpoints entry and the server's trustedWriters")
    files = [f for f in sorted((repo / "src").rglob("*.rs"))
             if any(f'"{u}"' in f.read_text(encoding="utf-8") for u in TRUSTED_WRITERS)]
    if not files:
        r.note("no file under src/ names the default trusted writers yet; compare by hand")
        return
    text = "\n".join(f.read_text(encoding="utf-8") for f in files)
    r.check(
        f"every writer the webhook skips is a default trusted writer in {', '.join(str(f.relative_to(repo)) for f in files)}",
        lambda: all(f'"{u}"' in text for u in TRUSTED_WRITERS),
        lambda: "missing from the server: " + ", ".join(u for u in TRUSTED_WRITERS if f'"{u}"' not in text),
    )


def grants(allowlist: dict) -> list[str]:
    """What an allowlist grants: hosts, CIDRs, per-namespace grants and opt-ins."""
    out = [f"hosts: {h}" for h in allowlist.get("hosts") or []]
    out += [f"cidrs: {c}" for c in allowlist.get("cidrs") or []]
    for ns, v in (allowlist.get("namespaces") or {}).items():
        v = v or {}
        out += [f"namespaces.{ns}.{k}" for k in ("hosts", "cidrs") if v.get(k)]
        out += [f"namespaces.{ns}.{k}" for k in ("allowAnyOutbound", "allowCaptureOptOut", "allowEnvoyFilter")
                if v.get(k)]
    return out


def check_allowlist_files(r: Report, repo: Path, base: list[dict]) -> None:
    r.section("allowlist files")
    import jsonschema  # only here: the other checks run without it

    validator = jsonschema.Draft202012Validator(_SCHEMA)
    example = repo / "examples/allowlist.yaml"
    r.check("examples/allowlist.yaml is valid under docs/allowlist.schema.json",
            lambda: validator.is_valid(yaml.safe_load(example.read_text(encoding="utf-8"))))
    al = allowlist_from(base)
    r.check("the base allowlist is valid under docs/allowlist.schema.json", lambda: validator.is_valid(al),
            lambda: next(iter(validator.iter_errors(al))).message)
    r.check("the base allowlist grants nothing (no hosts, CIDRs, namespace grants or opt-ins)",
            lambda: not grants(al), lambda: ", ".join(grants(al)))
    r.check("the base allowlist exempts only istio-system",
            lambda: (al.get("exemptNamespaces") or []) == ["istio-system"])


def check_audit(r: Report, base: list[dict], audit: list[dict]) -> None:
    r.section("overlay audit")
    al = allowlist_from(audit)
    r.check("allowlist mode is audit", lambda: al["mode"] == "audit", lambda: f"mode={al.get('mode')}")
    r.check(
        "no namespace overrides mode back to enforce",
        lambda: all((v or {}).get("mode", "audit") == "audit" for v in (al.get("namespaces") or {}).values()),
    )
    r.check(
        "allowlist otherwise identical to the base allowlist",
        lambda: without_modes(al) == without_modes(allowlist_from(base)),
        lambda: "deploy/overlays/audit/allowlist.yaml has drifted from deploy/base/allowlist.yaml",
    )
    base_rest = {key(o): o for o in base if key(o) != ("ConfigMap", NS, ALLOWLIST_CM)}
    audit_rest = {key(o): o for o in audit if key(o) != ("ConfigMap", NS, ALLOWLIST_CM)}
    r.check(
        "every other object is identical to the base",
        lambda: base_rest == audit_rest,
        lambda: "differs: " + ", ".join("/".join(k) for k in set(base_rest) | set(audit_rest)
                                        if base_rest.get(k) != audit_rest.get(k)),
    )


def check_cert_manager(r: Report, base: list[dict], cm: list[dict]) -> None:
    r.section("overlay cert-manager")
    certs = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in find(cm, "Certificate")}
    issuers = {o["metadata"]["name"]: o for o in find(cm, "Issuer")}
    dep = one(cm, "Deployment", APP)
    tls_secrets = {v["secret"]["secretName"] for v in dep["spec"]["template"]["spec"]["volumes"] if "secret" in v}
    cert = certs[(NS, TLS_SECRET)]
    cspec = cert["spec"]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    f = flags(c.get("args") or [])
    mounts = {m["name"]: m["mountPath"].rstrip("/") for m in c.get("volumeMounts") or []}
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    r.check(
        f"the secret the Deployment mounts is Certificate {TLS_SECRET}'s, and --webhook-ca-bundle is its ca.crt",
        lambda: any(volumes[n].get("secret", {}).get("secretName") == cspec["secretName"]
                    and f["webhook-ca-bundle"] == f"{path}/ca.crt" for n, path in mounts.items()),
        lambda: f"--webhook-ca-bundle={f.get('webhook-ca-bundle')} mounts={mounts}",
    )
    r.check(
        f"no webhook configuration asks cainjector ({INJECT_CA}): the server sets the caBundle",
        lambda: not any(INJECT_CA in (o["metadata"].get("annotations") or {})
                        for o in cm if o["kind"] in WEBHOOK_KINDS),
    )

    def uncovered() -> list[str]:
        # cainjector fills in every entry of an annotated configuration; each entry must
        # then call a Service whose name the injected CA's certificate was issued for.
        out = []
        for kind in sorted(WEBHOOK_KINDS):
            for w in one(cm, kind, APP)["webhooks"]:
                ref = w["clientConfig"].get("service") or {}
                if f"{ref.get('name')}.{ref.get('namespace')}.svc" not in cspec["dnsNames"]:
                    out.append(w["name"])
        return out

    r.check(
        f"every webhook entry calls a Service that Certificate {TLS_SECRET} names",
        lambda: not uncovered(),
        lambda: "not covered: " + ", ".join(uncovered()),
    )
    r.check(f"Certificate {TLS_SECRET} writes the secret the Deployment mounts",
            lambda: cspec["secretName"] == TLS_SECRET and TLS_SECRET in tls_secrets)
    r.check(
        "Certificate DNS names are the Service's in-cluster names",
        lambda: {f"{APP}.{NS}.svc", f"{APP}.{NS}.svc.cluster.local"} <= set(cspec["dnsNames"]),
    )
    r.check("Certificate duration 2160h, renewBefore 360h",
            lambda: (cspec["duration"], cspec["renewBefore"]) == ("2160h", "360h"))
    r.check("Certificate private key rotationPolicy Always",
            lambda: cspec["privateKey"]["rotationPolicy"] == "Always")

    def ca_chain() -> bool:
        issuer = issuers[cspec["issuerRef"]["name"]]
        ca_secret = issuer["spec"]["ca"]["secretName"]
        ca_cert = next(c for c in certs.values() if c["spec"]["secretName"] == ca_secret)
        root = issuers[ca_cert["spec"]["issuerRef"]["name"]]
        return ca_cert["spec"]["isCA"] is True and "selfSigned" in root["spec"]

    r.check("issuer chain: serving cert <- CA Issuer <- CA Certificate <- self-signed Issuer", ca_chain)
    base_map = {key(o): o for o in base}
    cm_core = {key(o): o for o in cm if o["apiVersion"].split("/")[0] != "cert-manager.io"}
    r.check(
        "apart from cert-manager objects, identical to the base",
        lambda: cm_core == base_map,
        lambda: "differs: " + ", ".join("/".join(k) for k in set(cm_core) | set(base_map)
                                        if cm_core.get(k) != base_map.get(k)),
    )


def check_monitoring(r: Report, base: list[dict], mon: list[dict]) -> None:
    r.section("monitoring")
    svc = one(base, "Service", APP)
    sm = one(mon, "ServiceMonitor", APP)
    r.check(
        "ServiceMonitor selects the egress-guard Service in its own namespace (no namespaceSelector)",
        lambda: selects(sm["spec"]["selector"], svc["metadata"]["labels"])
        and "namespaceSelector" not in sm["spec"] and sm["metadata"]["namespace"] == svc["metadata"]["namespace"],
    )

    def pinned() -> list[str]:
        placed = copy.deepcopy([o for o in mon if FROM_CM not in o])
        for o in placed:
            o["metadata"].pop("namespace", None)
        return names_base_namespace(placed)

    r.check(
        f"beyond metadata.namespace nothing names {NS} (ServiceMonitors, rules, dashboard): "
        "kustomize `namespace:` moves it whole",
        lambda: not pinned(), lambda: "; ".join(pinned()[:8]),
    )
    r.check(
        "ServiceMonitor scrapes the Service port named metrics",
        lambda: [e["port"] for e in sm["spec"]["endpoints"]] == ["metrics"]
        and "metrics" in {p["name"] for p in svc["spec"]["ports"]},
    )
    rules = [rule for g in one(mon, "PrometheusRule", APP)["spec"]["groups"] for rule in g["rules"]]
    alerts = {rule["alert"]: rule for rule in rules if "alert" in rule}
    for alert, metric in ALERTS.items():
        r.check(
            f"alert {alert} exists and queries {metric}",
            lambda: re.search(rf"\b{metric}\b", alerts[alert]["expr"]) is not None
            and alerts[alert]["labels"]["severity"] in {"critical", "warning"},
        )
    r.check(
        'EgressGuardAllowlistEntriesExpiring: window="7d" above 0 for 1h, warning',
        lambda: re.search(r'egress_guard_allowlist_entries_expiring\{window="7d"\}\)?\s*>\s*0\s*$',
                          alerts["EgressGuardAllowlistEntriesExpiring"]["expr"]) is not None
        and alerts["EgressGuardAllowlistEntriesExpiring"]["for"] == "1h"
        and alerts["EgressGuardAllowlistEntriesExpiring"]["labels"]["severity"] == "warning",
    )
    for alert, metric in (("EgressGuardReviewBudgetExceeded", "egress_guard_review_budget_exceeded_total"),
                          ("EgressGuardConnectionCapReached", "egress_guard_connections_rejected_total")):
        r.check(
            f"{alert}: any increase of {metric} over 10m, warning",
            lambda: re.search(rf"increase\({metric}\[10m\]\)\)?\s*>\s*0\s*$", alerts[alert]["expr"]) is not None
            and alerts[alert]["labels"]["severity"] == "warning",
            lambda: f"expr={alerts[alert]['expr']!r}",
        )


def documented_metrics(repo: Path) -> set[str]:
    """The metric names in README's Operations table (none without a README)."""
    readme = repo / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    return set(re.findall(r"^\| `(egress_guard_[a-z_]+)`", text, re.M))


def check_dashboard(r: Report, repo: Path, mon: list[dict]) -> None:
    r.section("monitoring: Grafana dashboard")
    cm = first(mon, "ConfigMap", "egress-guard-dashboard")
    r.check("dashboard ConfigMap labelled grafana_dashboard=1 for Grafana's sidecar",
            lambda: cm["metadata"]["labels"]["grafana_dashboard"] == "1")
    dash = json.loads(next(iter((cm.get("data") or {}).values()), "{}"))
    exprs = [t["expr"] for p in dash.get("panels", []) for t in p.get("targets", [])]
    used = {m for e in exprs for m in re.findall(r"\b(egress_guard_[a-z_]+?)(?:_bucket)?\b", e)}
    known = documented_metrics(repo)
    r.check(
        "every metric the dashboard queries is one README's Operations table documents",
        lambda: used and used <= known,
        lambda: f"undocumented: {sorted(used - known)}",
    )
    titles = {p.get("title") for p in dash.get("panels", [])}
    r.check(
        "panels for decisions, latency, live violations and expiring entries",
        lambda: {"Decisions", "Latency", "Live violations by code", "Expiring entries"} <= titles,
        lambda: f"titles={sorted(t for t in titles if t)}",
    )
    r.check("dashboard queries take the data source and namespace as variables",
            lambda: exprs and all('namespace="$namespace"' in e for e in exprs)
            and {v["name"] for v in dash["templating"]["list"]} == {"datasource", "namespace"})
    sm = first(mon, "ServiceMonitor", AUDITOR)
    r.check(
        f"ServiceMonitor {AUDITOR} scrapes the auditor's metrics port",
        lambda: sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "auditor"
        and [e["port"] for e in sm["spec"]["endpoints"]] == ["metrics"],
    )
    rules = [rule for g in one(mon, "PrometheusRule", APP)["spec"]["groups"] for rule in g["rules"]]
    live = next((x for x in rules if x.get("alert") == "EgressGuardLiveViolations"), {})
    r.check(
        'EgressGuardLiveViolations: mode="enforce" results above 0 for 15m, warning',
        lambda: re.search(r'egress_guard_audit_live_violations\{mode="enforce"\}\)?\s*>\s*0\s*$', live["expr"])
        is not None and live["for"] == "15m" and live["labels"]["severity"] == "warning",
        lambda: f"rule={live}",
    )


def check_audit_watch(r: Report, base: list[dict], aw: list[dict], crd: list[dict]) -> None:
    r.section("audit-watch: Deployment")
    dep = first(aw, "Deployment", AUDITOR)
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    c = (pod.get("containers") or [{}])[0]
    csc = c.get("securityContext") or {}
    psc = pod.get("securityContext") or {}
    f = flags(c.get("args") or [])
    ports = {p["name"]: p["containerPort"] for p in c.get("ports") or []}
    r.check("one replica, replaced with Recreate (no two auditors write at once)",
            lambda: spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"},
            lambda: f"replicas={spec.get('replicas')} strategy={spec.get('strategy')}")
    r.check("selector matches the pod template labels (component auditor)",
            lambda: selects(spec["selector"], spec["template"]["metadata"]["labels"])
            and spec["selector"]["matchLabels"]["app.kubernetes.io/component"] == "auditor")
    r.check("runs `audit --watch`", lambda: (c.get("args") or [])[:2] == ["audit", "--watch"])
    r.check(
        f"--allowlist-configmap names the base's ConfigMap {NS}/{ALLOWLIST_CM} (as the kubelet expands it)",
        lambda: kubelet_args(aw, AUDITOR)["allowlist-configmap"] == f"{NS}/{ALLOWLIST_CM}"
        and one(base, "ConfigMap", ALLOWLIST_CM),
        lambda: f"--allowlist-configmap={kubelet_args(aw, AUDITOR).get('allowlist-configmap')}",
    )
    r.check("--allowlist-configmap is in the pod's own namespace: $(POD_NAMESPACE), from metadata.namespace",
            lambda: own_namespace_flag(aw, AUDITOR))
    r.check("--metrics-listen is the metrics container port",
            lambda: port_of(f["metrics-listen"]) == ports["metrics"])
    r.check("liveness /healthz and readiness /readyz on port metrics",
            lambda: c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
            and c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"})
    r.check(
        "hardened: non-root, read-only root, no privilege escalation, drop ALL, RuntimeDefault seccomp",
        lambda: csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True
        and csc["readOnlyRootFilesystem"] is True and csc["allowPrivilegeEscalation"] is False
        and csc["capabilities"]["drop"] == ["ALL"] and not csc["capabilities"].get("add")
        and (csc.get("seccompProfile") or psc.get("seccompProfile"))["type"] == "RuntimeDefault"
        and not any(pod.get(x) for x in ("hostNetwork", "hostPID", "hostIPC")),
    )
    r.check("requests cpu and memory, limits memory",
            lambda: c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
            and c["resources"]["limits"]["memory"])
    r.check("the webhook's image", lambda: c["image"] == container_of(base)["image"],
            lambda: f"{c.get('image')} vs {container_of(base).get('image')}")
    r.check("no Istio sidecar", lambda: spec["template"]["metadata"]["labels"]["sidecar.istio.io/inject"] == "false")
    r.check(f"serviceAccountName {AUDITOR} exists in the rendering",
            lambda: pod["serviceAccountName"] == AUDITOR and one(aw, "ServiceAccount", AUDITOR))

    r.section("audit-watch: RBAC")
    sa = {"kind": "ServiceAccount", "name": AUDITOR, "namespace": NS}
    bindings = find(aw, "RoleBinding") + find(aw, "ClusterRoleBinding")
    sa_refs = sorted((b["kind"], b["roleRef"]["kind"], b["roleRef"]["name"]) for b in bindings if sa in (b.get("subjects") or []))
    r.check(
        f"ServiceAccount {AUDITOR}: bound to ClusterRole {AUDITOR} and Role {AUDITOR} only",
        lambda: sa_refs == [("ClusterRoleBinding", "ClusterRole", AUDITOR), ("RoleBinding", "Role", AUDITOR)],
        lambda: f"bindings={sa_refs}",
    )
    cr = first(aw, "ClusterRole", AUDITOR)
    grants = {(g, res): set(rule["verbs"]) for rule in cr.get("rules") or []
              for g in rule["apiGroups"] for res in rule["resources"]}
    r.check(
        f"ClusterRole {AUDITOR}: list and watch on exactly the {len(AUDIT_RESOURCES)} kinds audit judges",
        lambda: {k for k in grants if k != POLICYREPORTS} == AUDIT_RESOURCES
        and all(v == {"list", "watch"} for k, v in grants.items() if k != POLICYREPORTS),
        lambda: f"missing {sorted(AUDIT_RESOURCES - set(grants))}, extra "
        f"{sorted(set(grants) - AUDIT_RESOURCES - {POLICYREPORTS})}, verbs "
        f"{ {k: sorted(v) for k, v in grants.items() if v != {'list', 'watch'}} }",
    )
    r.check(
        f"ClusterRole {AUDITOR}: writes PolicyReports only ({', '.join(sorted(AUDITOR_REPORT_VERBS))})",
        lambda: grants[POLICYREPORTS] == AUDITOR_REPORT_VERBS,
        lambda: f"verbs={sorted(grants.get(POLICYREPORTS, []))}",
    )
    r.check(
        f"ClusterRole {AUDITOR}: no wildcards, no resourceNames, no aggregation",
        lambda: cr["rules"] and not cr.get("aggregationRule") and all(
            not rule.get("resourceNames") and not any("*" in rule.get(x, []) for x in ("verbs", "resources", "apiGroups"))
            for rule in cr["rules"]),
    )
    role = first(aw, "Role", AUDITOR)
    r.check(
        f"Role {NS}/{AUDITOR}: get/list/watch on configmaps with resourceNames [{ALLOWLIST_CM}] only",
        lambda: role["metadata"]["namespace"] == NS and role["rules"] and all(
            rule["apiGroups"] == [""] and rule["resources"] == ["configmaps"]
            and rule.get("resourceNames") == [ALLOWLIST_CM] and set(rule["verbs"]) <= READ_VERBS
            for rule in role["rules"]),
        lambda: f"rules={role.get('rules')}",
    )
    view = first(aw, "ClusterRole", REPORTS_VIEW)
    labels = view["metadata"].get("labels") or {}
    r.check(
        f"ClusterRole {REPORTS_VIEW}: aggregated into view, edit and admin",
        lambda: all(labels.get(f"rbac.authorization.k8s.io/aggregate-to-{x}") == "true" for x in ("view", "edit", "admin")),
    )
    r.check(
        f"ClusterRole {REPORTS_VIEW}: only get/list/watch on policyreports",
        lambda: view["rules"] and all(
            rule["apiGroups"] == [POLICYREPORTS[0]] and rule["resources"] == [POLICYREPORTS[1]]
            and set(rule["verbs"]) <= READ_VERBS for rule in view["rules"]),
        lambda: f"rules={view.get('rules')}",
    )
    reader = first(aw, "Role", ALLOWLIST_READER)
    reader_binding = first(aw, "RoleBinding", ALLOWLIST_READER)
    r.check(
        f"Role {NS}/{ALLOWLIST_READER}: only get on configmaps with resourceNames [{ALLOWLIST_CM}]",
        lambda: reader["metadata"]["namespace"] == NS and reader["rules"] and all(
            rule["apiGroups"] == [""] and rule["resources"] == ["configmaps"]
            and rule.get("resourceNames") == [ALLOWLIST_CM] and rule["verbs"] == ["get"]
            for rule in reader["rules"]),
        lambda: f"rules={reader.get('rules')}",
    )
    r.check(
        f"RoleBinding {ALLOWLIST_READER}: Role {ALLOWLIST_READER} to the group system:authenticated",
        lambda: reader_binding["roleRef"]["name"] == ALLOWLIST_READER and reader_binding["roleRef"]["kind"] == "Role"
        and reader_binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                            "name": "system:authenticated"}],
    )
    r.check("nothing else is bound",
            lambda: len(bindings) == 3,
            lambda: ", ".join("/".join(key(b)) for b in bindings))

    r.section("audit-watch: Service and NetworkPolicy")
    svc = first(aw, "Service", AUDITOR)
    r.check("Service selects the auditor pods on port metrics",
            lambda: selects({"matchLabels": svc["spec"]["selector"]}, spec["template"]["metadata"]["labels"])
            and [p["targetPort"] for p in svc["spec"]["ports"]] == ["metrics"])
    np = first(aw, "NetworkPolicy", AUDITOR)
    ns_ = np["spec"]
    r.check("NetworkPolicy selects the auditor pods, isolates both directions",
            lambda: selects(ns_["podSelector"], spec["template"]["metadata"]["labels"])
            and set(ns_["policyTypes"]) == {"Ingress", "Egress"})
    r.check("ingress only on 9090, only from the monitoring namespace",
            lambda: policy_ports(ns_["ingress"]) == {(9090, "TCP")}
            and all(peers(rule) and all(only_namespace(p, "monitoring") for p in peers(rule)) for rule in ns_["ingress"]))
    r.check("egress only to DNS and the Kubernetes API (443, 6443)",
            lambda: policy_ports(ns_["egress"]) == {(53, "UDP"), (53, "TCP"), (443, "TCP"), (6443, "TCP")})
    r.check("the base's webhook policy does not select the auditor (and the other way round)",
            lambda: not selects(one(base, "NetworkPolicy", APP)["spec"]["podSelector"], spec["template"]["metadata"]["labels"])
            and not selects(ns_["podSelector"], one(base, "Deployment", APP)["spec"]["template"]["metadata"]["labels"]))
    r.check("every namespaced object in namespace egress-guard, none in the base",
            lambda: all(o["metadata"].get("namespace") == NS for o in aw
                        if o["kind"] not in {"ClusterRole", "ClusterRoleBinding"})
            and not {key(o) for o in aw} & {key(o) for o in base})

    r.section("audit-watch: PolicyReport CRD")
    c_ = first(crd, "CustomResourceDefinition", "policyreports.wgpolicyk8s.io")
    r.check("the CRD serves wgpolicyk8s.io/v1alpha2 PolicyReport, namespaced, and nothing else is in it",
            lambda: c_["spec"]["group"] == "wgpolicyk8s.io" and c_["spec"]["names"]["kind"] == "PolicyReport"
            and c_["spec"]["scope"] == "Namespaced"
            and [v["name"] for v in c_["spec"]["versions"] if v["served"]] == ["v1alpha2"] and len(crd) == 1)


def pod_service_account(objs: list[dict]) -> str:
    return one(objs, "Deployment", APP)["spec"]["template"]["spec"]["serviceAccountName"]


def check_registration(r: Report, objs: list[dict]) -> None:
    r.section("base: the server registers the webhook configurations")
    c = container_of(objs)
    pod = one(objs, "Deployment", APP)["spec"]["template"]["spec"]
    f = flags(c.get("args") or [])
    mounts = {m["name"]: m for m in c.get("volumeMounts") or []}
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    cms = [o for o in objs if is_webhooks_cm(o)]
    r.check(f"exactly one ConfigMap {WEBHOOKS_CM}, with a hash suffix, holding {WEBHOOKS_KEY}",
            lambda: len(cms) == 1 and cms[0]["metadata"]["name"] != WEBHOOKS_CM
            and cms[0]["metadata"]["namespace"] == NS and WEBHOOKS_KEY in cms[0]["data"])

    def mounted() -> bool:
        return any(volumes[n].get("configMap", {}).get("name") == cms[0]["metadata"]["name"]
                   and m.get("readOnly") is True and "subPath" not in m
                   and m["mountPath"].rstrip("/") == WEBHOOKS_DIR for n, m in mounts.items())

    r.check(f"the Deployment mounts that ConfigMap read-only at {WEBHOOKS_DIR}", mounted)
    tls = next((m["mountPath"].rstrip("/") for n, m in mounts.items()
                if volumes[n].get("secret", {}).get("secretName") == TLS_SECRET), None)
    r.check(
        f"--register-webhooks={WEBHOOKS_DIR}/{WEBHOOKS_KEY}, --webhook-ca-bundle=<{TLS_SECRET}>/ca.crt, "
        f"--webhook-owner={REGISTER}",
        lambda: f["register-webhooks"] == f"{WEBHOOKS_DIR}/{WEBHOOKS_KEY}"
        and f["webhook-ca-bundle"] == f"{tls}/ca.crt" and f["webhook-owner"] == REGISTER
        and one(objs, "ClusterRole", REGISTER),
        lambda: f"flags={ {k: f.get(k) for k in ('register-webhooks', 'webhook-ca-bundle', 'webhook-owner')} }",
    )


def check_no_applied_webhooks(r: Report, renders: dict[str, list[dict]]) -> None:
    r.section("no rendering applies a webhook configuration")
    for name, objs in renders.items():
        r.check(
            f"{name}: no Validating/MutatingWebhookConfiguration applied directly (the server registers them)",
            lambda: not applied_webhooks(objs),
            lambda: ", ".join("/".join(key(o)) for o in applied_webhooks(objs)),
        )


NAME_LABEL = "kubernetes.io/metadata.name"
CLUSTER_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def as_registered(objs: list[dict], ns: str) -> list[dict]:
    """The webhook configurations of the rendering's ConfigMap as a server in `ns`
    registers them (src/registration/desired.rs): each entry calls the Service in `ns`,
    and `ns` replaces the file's Service namespace in the In/NotIn namespace-name
    expressions."""
    out = []
    for o in objs:
        if o.get("kind") not in WEBHOOK_KINDS or FROM_CM not in o:
            continue
        o = copy.deepcopy(o)
        for w in o["webhooks"]:
            svc = w["clientConfig"].get("service")
            if not svc:
                continue
            old, svc["namespace"] = svc["namespace"], ns
            for e in (w.get("namespaceSelector") or {}).get("matchExpressions") or []:
                if e["key"] == NAME_LABEL and e["operator"] in ("In", "NotIn"):
                    e["values"] = [ns if v == old else v for v in e["values"]]
        out.append(o)
    return out


def strings(v: Any, path: str = "") -> list[tuple[str, str]]:
    """(path, string) for every string in v, keys included."""
    if isinstance(v, dict):
        return [x for k, x2 in v.items() for x in [(f"{path}.{k}", str(k))] + strings(x2, f"{path}.{k}")]
    if isinstance(v, list):
        return [x for i, x2 in enumerate(v) for x in strings(x2, f"{path}[{i}]")]
    return [(path, v)] if isinstance(v, str) else []


def names_base_namespace(objs: list[dict]) -> list[str]:
    """Where a rendering still names the base's namespace: a namespace field, a
    NAMESPACE/NAME reference, a Service DNS name, a namespace-name selector or a
    ServiceMonitor's namespaces. The webhooks ConfigMap is left out (the server rewrites
    it, see as_registered); file paths like /etc/egress-guard/... are not references."""
    ref = re.compile(rf"(^|[^\w/.$()-]){NS}/|\.{NS}\.svc|^{NS}$|namespace=~?\\?\"{NS}\\?\"")
    out = []
    for o in objs:
        if FROM_CM in o:
            continue
        data_free = {k: v for k, v in o.items() if not (is_webhooks_cm(o) and k == "data")}
        for path, v in strings(data_free):
            if ref.search(v) and (v != NS or re.search(r"namespace$|matchNames\[\d+\]$|values\[\d+\]$|\.kubernetes\.io/metadata\.name$", path)):
                out.append(f"{'/'.join(key(o))}{path}={v}")
    return out


def moved_back(o: dict, ns: str) -> dict:
    """Object o of a rendering in namespace ns, with what `namespace:` and the overlay's
    replacements change put back to the base's namespace."""
    o = copy.deepcopy(o)
    m = o["metadata"]
    if m.get("namespace") == ns:
        m["namespace"] = NS
    if o["kind"] == "Namespace" and m.get("name") == ns:
        m["name"] = NS
    for sub in o.get("subjects") or []:
        if sub.get("namespace") == ns:
            sub["namespace"] = NS
    if o["kind"] == "Certificate" and "dnsNames" in o["spec"]:
        o["spec"]["dnsNames"] = [d.replace(f".{ns}.", f".{NS}.") for d in o["spec"]["dnsNames"]]
    return o


def check_other_namespace(r: Report, cm: list[dict], aw: list[dict], other: list[dict]) -> None:
    r.section("overlay other-namespace: the install moved to another namespace")
    spaces = [o["metadata"]["name"] for o in find(other, "Namespace")]
    ns = spaces[0] if len(spaces) == 1 else ""
    r.check(f"exactly one Namespace, not {NS}", lambda: ns and ns != NS, lambda: f"namespaces: {spaces}")
    r.check(
        f"every namespaced object is in {ns}",
        lambda: all(o["metadata"]["namespace"] == ns for o in other
                    if FROM_CM not in o and o["kind"] not in CLUSTER_KINDS),
        lambda: ", ".join("/".join(key(o)) for o in other if o["metadata"].get("namespace") not in (ns, None)),
    )
    r.check(
        f"every ServiceAccount subject of a (Cluster)RoleBinding is in {ns}",
        lambda: all(sub["namespace"] == ns for o in other if o["kind"] in ("RoleBinding", "ClusterRoleBinding")
                    for sub in o.get("subjects") or [] if sub["kind"] == "ServiceAccount"),
    )
    for name in (APP, AUDITOR):
        r.check(
            f"Deployment {name}: --allowlist-configmap is {ns}/{ALLOWLIST_CM} as the kubelet expands it",
            lambda: kubelet_args(other, name)["allowlist-configmap"] == f"{ns}/{ALLOWLIST_CM}",
            lambda: f"--allowlist-configmap={kubelet_args(other, name).get('allowlist-configmap')}",
        )
    dep = one(other, "Deployment", APP)
    r.check("the server's --namespace is its pod's (POD_NAMESPACE from metadata.namespace, no flag)",
            lambda: "namespace" not in kubelet_args(other, APP) and own_namespace_flag(other, APP)
            and dep["metadata"]["namespace"] == ns)
    dns = set(one(other, "Certificate", TLS_SECRET)["spec"]["dnsNames"])
    r.check(f"Certificate {TLS_SECRET} names egress-guard.{ns}.svc and its cluster.local form, only",
            lambda: dns == {f"{APP}.{ns}.svc", f"{APP}.{ns}.svc.cluster.local"}, lambda: f"dnsNames={sorted(dns)}")
    registered = as_registered(other, ns)
    entries = [w for c in registered for w in c["webhooks"]]

    def uncovered() -> list[str]:
        return [w["name"] for w in entries
                if f"{w['clientConfig']['service']['name']}.{w['clientConfig']['service']['namespace']}.svc" not in dns]

    r.check(f"as the server registers them, the five entries call a Service Certificate {TLS_SECRET} names",
            lambda: len(entries) == 5 and not uncovered(), lambda: f"not covered: {uncovered()}")

    def names(w: dict, op: str) -> set[str]:
        return {v for e in (w.get("namespaceSelector") or {}).get("matchExpressions") or []
                if e["key"] == NAME_LABEL and e["operator"] == op for v in e["values"]}

    r.check(f"as registered, every NotIn exclusion spares {ns} and not {NS}, the allowlist entry judges only {ns}",
            lambda: all((names(w, "NotIn") >= {ns} and NS not in names(w, "NotIn")) if names(w, "NotIn")
                        else names(w, "In") == {ns} for w in entries))
    left = names_base_namespace(other)
    r.check(f"no namespace field, reference, DNS name or selector names {NS} any more",
            lambda: not left, lambda: "; ".join(left[:8]))
    before = {key(o): o for o in cm + aw if FROM_CM not in o}
    after = {key(moved_back(o, ns)): moved_back(o, ns) for o in other if FROM_CM not in o}
    r.check(
        "apart from the namespace, identical to cert-manager and audit-watch",
        lambda: before == after,
        lambda: "differs: " + ", ".join("/".join(k) for k in set(before) | set(after) if before.get(k) != after.get(k)),
    )


def cargo_version(repo: Path) -> str:
    """The package version, "" without a Cargo.toml (the image check then fails)."""
    try:
        m = re.search(r'^version = "([^"]+)"', (repo / "Cargo.toml").read_text(), re.M)
    except OSError:
        return ""
    return m[1] if m else ""


def check_registry(r: Report, repo: Path, cm: list[dict], aw: list[dict], reg: list[dict]) -> None:
    r.section("overlay registry: the image from your own registry")
    want = f"registry.example.com/platform/egress-guard:{cargo_version(repo)}"
    images = {(where, c["name"]): c["image"] for where, pod in pod_specs(reg)
              for c in (pod.get("initContainers") or []) + pod["containers"]}
    r.check(f"both Deployments run {want} (Cargo.toml's version)",
            lambda: len(images) == 2 and set(images.values()) == {want}, lambda: f"images={images}")

    def without_images(objs: list[dict]) -> dict:
        out = {}
        for o in objs:
            if FROM_CM in o:
                continue
            o = copy.deepcopy(o)
            for _, pod in pod_specs([o]):
                for c in pod["containers"]:
                    c.pop("image", None)
            out[key(o)] = o
        return out

    r.check("apart from the image, identical to cert-manager and audit-watch",
            lambda: without_images(reg) == without_images(cm + aw))


def container_of(objs: list[dict]) -> dict:
    return one(objs, "Deployment", APP)["spec"]["template"]["spec"]["containers"][0]


RENDERINGS = ["base", "cert-manager", "audit", "restricted-apiserver", "networkpolicy", "monitoring",
              "audit-watch", "policyreport-crd", "other-namespace", "registry"]


def run(renders: dict[str, list[dict]], repo: Path) -> Report:
    """Every check over the renderings named in RENDERINGS."""
    base = renders["base"]
    r = Report()
    check_base(r, base)
    check_registration(r, base)
    check_no_applied_webhooks(r, renders)
    for name in ("base", "audit", "cert-manager", "restricted-apiserver"):
        check_images(r, name, renders[name])
    check_allowlist_files(r, repo, base)
    check_trusted_writers(r, repo)
    check_audit(r, base, renders["audit"])
    check_cert_manager(r, base, renders["cert-manager"])
    check_restricted_apiserver(r, base, renders["restricted-apiserver"])
    check_networkpolicy_examples(r, renders["networkpolicy"], base)
    check_monitoring(r, base, renders["monitoring"])
    check_dashboard(r, repo, renders["monitoring"])
    check_images(r, "audit-watch", renders["audit-watch"])
    check_audit_watch(r, base, renders["audit-watch"], renders["policyreport-crd"])
    check_other_namespace(r, renders["cert-manager"], renders["audit-watch"], renders["other-namespace"])
    for name in ("other-namespace", "registry"):
        check_images(r, name, renders[name])
    check_registry(r, repo, renders["cert-manager"], renders["audit-watch"], renders["registry"])
    return r


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", required=True, type=Path, help="repository root")
    for name in RENDERINGS:
        p.add_argument(f"--{name}", required=True, metavar="FILE", help=f"the rendering of {name}")
    p.add_argument("--kinds", type=Path, metavar="FILE", help="`egress-guard schema --kinds` output")
    a = p.parse_args()
    use_kinds_table(a.kinds)

    r = run({name: load(getattr(a, name.replace("-", "_"))) for name in RENDERINGS}, a.repo)
    print()
    if r.failed:
        print(f"security: {len(r.failed)} check(s) FAILED, {r.passed} passed:")
        for line in r.failed:
            print(f"  - {line}")
        return 1
    print(f"security: {r.passed} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
