#!/usr/bin/env python3
"""Each check in check_security.py can fail: break the rendered manifests one way at a
time and require that the check meant to catch it does.

Used by deploy/validate.sh after check_security.py, with the same renderings. Every
case copies the renderings, applies one mutation, runs all checks, and passes if some
failing check's line contains the expected text. The unchanged renderings must pass
every check first, or the cases prove nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import sys
import tempfile
from pathlib import Path
from typing import Callable

sys.dont_write_bytecode = True  # no __pycache__ in deploy/
import check_security as cs  # noqa: E402 - after the line above

Renders = dict[str, list[dict]]


def obj(objs: list[dict], kind: str, name: str) -> dict:
    return cs.one(objs, kind, name)


def hook(objs: list[dict], name: str) -> dict:
    for kind in sorted(cs.WEBHOOK_KINDS):
        for w in obj(objs, kind, cs.APP)["webhooks"]:
            if w["name"] == name:
                return w
    raise LookupError(name)


def container(objs: list[dict]) -> dict:
    return obj(objs, "Deployment", cs.APP)["spec"]["template"]["spec"]["containers"][0]


def netpol(objs: list[dict], name: str = cs.APP) -> dict:
    return obj(objs, "NetworkPolicy", name)["spec"]


def alert(objs: list[dict], name: str) -> dict:
    rules = [rule for g in obj(objs, "PrometheusRule", cs.APP)["spec"]["groups"] for rule in g["rules"]]
    return next(rule for rule in rules if rule.get("alert") == name)


def drop_alert(objs: list[dict], name: str) -> None:
    for g in obj(objs, "PrometheusRule", cs.APP)["spec"]["groups"]:
        g["rules"] = [rule for rule in g["rules"] if rule.get("alert") != name]


def auditor(objs: list[dict]) -> dict:
    return obj(objs, "Deployment", cs.AUDITOR)["spec"]["template"]["spec"]["containers"][0]


def set_flag(c: dict, flag: str, value: str) -> None:
    c["args"] = [f"--{flag}={value}" if a.startswith(f"--{flag}=") else a for a in c["args"]]


def registered_hook(objs: list[dict], name: str) -> dict:
    """The entry as the ConfigMap holds it (what the server registers)."""
    for o in objs:
        if o.get("kind") in cs.WEBHOOK_KINDS and cs.FROM_CM in o:
            for w in o["webhooks"]:
                if w["name"] == name:
                    return w
    raise LookupError(name)


WORKLOADS = "workloads.validate.egress-guard.io"
ENDPOINTS = "endpoints.validate.egress-guard.io"
ALLOWLIST = "allowlist.validate.egress-guard.io"
VALIDATE = "validate.egress-guard.io"
MUTATE = "mutate.egress-guard.io"

# (what is broken, rendering, mutation, text of the failing check expected to catch it)
CASES: list[tuple[str, str, Callable[[list[dict]], None], str]] = [
    # --- webhook entries
    ("workloads entry fails open", "base",
     lambda o: hook(o, WORKLOADS).update(failurePolicy="Ignore"), f"{WORKLOADS}: failurePolicy Fail"),
    ("endpoints entry fails open", "base",
     lambda o: hook(o, ENDPOINTS).update(failurePolicy="Ignore"), f"{ENDPOINTS}: failurePolicy Fail"),
    ("allowlist entry fails open", "base",
     lambda o: hook(o, ALLOWLIST).update(failurePolicy="Ignore"), f"{ALLOWLIST}: failurePolicy Fail"),
    ("a fifth validating entry", "base",
     lambda o: obj(o, "ValidatingWebhookConfiguration", cs.APP)["webhooks"].append(
         dict(copy.deepcopy(hook(o, VALIDATE)), name="extra.egress-guard.io")),
     "Validating: exactly the entries"),
    ("wasmplugins no longer checked", "base",
     lambda o: hook(o, VALIDATE)["rules"].pop(1), f"{VALIDATE}: rules match exactly"),
    ("running pods not checked on UPDATE", "base",
     lambda o: hook(o, WORKLOADS)["rules"][0].update(operations=["CREATE"]),
     f"{WORKLOADS}: rules match exactly"),
    ("ephemeral containers not checked", "base",
     lambda o: hook(o, WORKLOADS)["rules"].pop(1), f"{WORKLOADS}: rules match exactly"),
    ("cronjobs not checked", "base",
     lambda o: hook(o, WORKLOADS)["rules"][3].update(resources=["jobs"]), f"{WORKLOADS}: rules match exactly"),
    ("mutating entry back on five kinds", "base",
     lambda o: hook(o, MUTATE)["rules"][0].update(
         resources=["serviceentries", "virtualservices", "destinationrules", "gateways", "sidecars"]),
     f"{MUTATE}: rules match exactly"),
    ("workloads entry calls for istio-system", "base",
     lambda o: hook(o, WORKLOADS)["namespaceSelector"]["matchExpressions"][0]["values"].remove("istio-system"),
     f"{WORKLOADS}: namespaceSelector skips"),
    ("workloads entry skips a tenant namespace", "base",
     lambda o: hook(o, WORKLOADS)["namespaceSelector"]["matchExpressions"][0]["values"].append("team-a"),
     f"{WORKLOADS}: namespaceSelector calls for"),
    ("allowlist entry on every namespace", "base",
     lambda o: hook(o, ALLOWLIST).update(namespaceSelector={"matchExpressions": [
         {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}]}),
     f"{ALLOWLIST}: namespaceSelector skips"),
    ("allowlist entry on every ConfigMap", "base",
     lambda o: hook(o, ALLOWLIST).pop("matchConditions"), f"{ALLOWLIST}: matchConditions skip every other"),
    ("allowlist entry never called", "base",
     lambda o: hook(o, ALLOWLIST)["matchConditions"][0].update(expression='object.metadata.name == "allowlist"'),
     f"{ALLOWLIST}: matchConditions call for the ConfigMap"),
    ("one control-plane writer goes through the webhook", "base",
     lambda o: hook(o, ENDPOINTS)["matchConditions"][0].update(
         expression='!(request.userInfo.username in ["system:kube-controller-manager"])'),
     f"{ENDPOINTS}: matchConditions skip the 5"),
    ("a fifth writer skipped", "base",
     lambda o: hook(o, ENDPOINTS)["matchConditions"][0].update(
         expression=hook(o, ENDPOINTS)["matchConditions"][0]["expression"].replace(
             "]", ', "system:serviceaccount:kube-system:job-controller"]')),
     f"{ENDPOINTS}: matchConditions name exactly those writers"),
    ("every system identity skipped", "base",
     lambda o: hook(o, ENDPOINTS)["matchConditions"][0].update(
         expression='!request.userInfo.username.startsWith("system:")'),
     f"{ENDPOINTS}: matchConditions still call"),
    ("a matchCondition that does not compile", "base",
     lambda o: hook(o, ENDPOINTS)["matchConditions"][0].update(expression="request.userInfo.username in ["),
     f"{ENDPOINTS}: matchConditions skip the 5"),
    ("a matchCondition on the Istio entry", "base",
     lambda o: hook(o, VALIDATE).update(matchConditions=[{"name": "x", "expression": "true"}]),
     f"{VALIDATE}: no matchConditions"),
    ("cert-manager: an entry calls a Service the certificate does not name", "cert-manager",
     lambda o: hook(o, WORKLOADS)["clientConfig"]["service"].update(name="other"),
     "every webhook entry calls a Service that Certificate"),
    # --- RBAC
    ("the ServiceAccount bound cluster-wide again", "base",
     lambda o: o.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                         "metadata": {"name": "x", "labels": obj(o, "Role", cs.APP)["metadata"]["labels"]},
                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                     "name": cs.AUDIT_ROLE},
                         "subjects": [{"kind": "ServiceAccount", "name": cs.APP, "namespace": cs.NS}]}),
     "exactly one ClusterRoleBinding, egress-guard-register"),
    ("the register binding names another ServiceAccount", "base",
     lambda o: obj(o, "ClusterRoleBinding", cs.REGISTER)["subjects"][0].update(name="default"),
     "exactly one ClusterRoleBinding, egress-guard-register, and it names"),
    ("the server may delete its configurations", "base",
     lambda o: obj(o, "ClusterRole", cs.REGISTER)["rules"][0]["verbs"].append("delete"),
     "ClusterRole egress-guard-register: no delete"),
    ("the server may write any webhook configuration", "base",
     lambda o: obj(o, "ClusterRole", cs.REGISTER)["rules"][0].pop("resourceNames"),
     "ClusterRole egress-guard-register: get/create/patch on the two"),
    ("the register ClusterRole on every resource", "base",
     lambda o: obj(o, "ClusterRole", cs.REGISTER)["rules"][1].update(resources=["*"]),
     "ClusterRole egress-guard-register: get/create/patch on the two"),
    ("the server cannot create its configurations", "base",
     lambda o: obj(o, "ClusterRole", cs.REGISTER)["rules"][0].update(verbs=["get", "patch"]),
     "ClusterRole egress-guard-register: get/create/patch on the two"),
    ("the webhook Role watches every EndpointSlice", "base",
     lambda o: obj(o, "Role", cs.APP)["rules"][1]["verbs"].append("watch"),
     "list on endpointslices, nothing else"),
    # --- registration by the server
    ("a webhook configuration applied directly again", "base",
     lambda o: o.append({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                         "metadata": {"name": "egress-guard-direct"}, "webhooks": []}),
     "base: no Validating/MutatingWebhookConfiguration applied directly"),
    ("the webhooks ConfigMap not mounted", "base",
     lambda o: container(o)["volumeMounts"].pop(1), "mounts that ConfigMap read-only"),
    ("--webhook-owner missing", "base",
     lambda o: container(o).update(args=[a for a in container(o)["args"] if not a.startswith("--webhook-owner")]),
     "--webhook-owner=egress-guard-register"),
    ("--webhook-ca-bundle outside the TLS secret", "base",
     lambda o: container(o).update(args=[("--webhook-ca-bundle=/tmp/ca.crt" if a.startswith("--webhook-ca-bundle")
                                          else a) for a in container(o)["args"]]),
     "--webhook-ca-bundle=<egress-guard-tls>/ca.crt"),
    ("cert-manager: --webhook-ca-bundle not the Certificate's", "cert-manager",
     lambda o: container(o).update(args=[("--webhook-ca-bundle=/tmp/ca.crt" if a.startswith("--webhook-ca-bundle")
                                          else a) for a in container(o)["args"]]),
     "the secret the Deployment mounts is Certificate"),
    ("cert-manager: cainjector annotation back", "cert-manager",
     lambda o: obj(o, "ValidatingWebhookConfiguration", cs.APP)["metadata"].update(
         annotations={cs.INJECT_CA: f"{cs.NS}/{cs.TLS_SECRET}"}),
     "no webhook configuration asks cainjector"),
    # --- the base allowlist
    ("the base allowlist grants a host", "base",
     lambda o: obj(o, "ConfigMap", cs.ALLOWLIST_CM)["data"].update(
         {"allowlist.yaml": obj(o, "ConfigMap", cs.ALLOWLIST_CM)["data"]["allowlist.yaml"].replace(
             "hosts: []", "hosts: [api.github.com]")}),
     "the base allowlist grants nothing"),
    ("the base allowlist does not parse under the schema", "base",
     lambda o: obj(o, "ConfigMap", cs.ALLOWLIST_CM)["data"].update(
         {"allowlist.yaml": obj(o, "ConfigMap", cs.ALLOWLIST_CM)["data"]["allowlist.yaml"].replace(
             "mode: enforce", "mode: block")}),
     "the base allowlist is valid under"),
    ("audit ClusterRole can watch", "base",
     lambda o: obj(o, "ClusterRole", cs.AUDIT_ROLE)["rules"][0]["verbs"].append("watch"),
     "only get and list"),
    ("audit ClusterRole misses pods", "base",
     lambda o: obj(o, "ClusterRole", cs.AUDIT_ROLE)["rules"][3].update(resources=["services", "endpoints"]),
     "exactly the 25 kinds"),
    ("audit ClusterRole reads secrets", "base",
     lambda o: obj(o, "ClusterRole", cs.AUDIT_ROLE)["rules"][3]["resources"].append("secrets"),
     "exactly the 25 kinds"),
    ("audit Role lists every ConfigMap", "base",
     lambda o: obj(o, "Role", cs.AUDIT_ROLE)["rules"][0].update(verbs=["get", "list"]),
     "only get on configmaps"),
    ("audit roles bound in the install", "base",
     lambda o: o.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                         "metadata": {"name": "x", "namespace": cs.NS},
                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": cs.AUDIT_ROLE},
                         "subjects": [{"kind": "Group", "name": "everyone"}]}),
     "nothing in the install binds"),
    # --- image and resources
    ("image latest", "base", lambda o: container(o).update(image="egress-guard:latest"), "base: images"),
    ("image untagged in an overlay", "cert-manager",
     lambda o: container(o).update(image="registry.example.com/egress-guard"), "cert-manager: images"),
    ("memory limit equal to the request", "base",
     lambda o: container(o)["resources"]["limits"].update(memory="64Mi"), "memory limit at least twice"),
    # --- autoscaling and disruption
    ("HPA allows one replica", "base",
     lambda o: obj(o, "HorizontalPodAutoscaler", cs.APP)["spec"].update(minReplicas=1), "HPA minReplicas 2"),
    ("HPA on 90% cpu", "base",
     lambda o: obj(o, "HorizontalPodAutoscaler", cs.APP)["spec"]["metrics"][0]["resource"]["target"].update(
         averageUtilization=90), "cpu Utilization 70%"),
    ("HPA scales down after a minute", "base",
     lambda o: obj(o, "HorizontalPodAutoscaler", cs.APP)["spec"]["behavior"]["scaleDown"].update(
         stabilizationWindowSeconds=60), "stabilization window"),
    ("HPA missing", "base",
     lambda o: o.remove(obj(o, "HorizontalPodAutoscaler", cs.APP)), "exactly one HorizontalPodAutoscaler"),
    ("PDB back to minAvailable", "base",
     lambda o: obj(o, "PodDisruptionBudget", cs.APP).update(spec=dict(
         obj(o, "PodDisruptionBudget", cs.APP)["spec"], minAvailable=1)), "PDB maxUnavailable 1"),
    # --- egress-guard's own NetworkPolicy
    ("metrics open to every namespace", "base",
     lambda o: netpol(o)["ingress"][1]["from"][0].update(namespaceSelector={}), "metrics (9090) only from"),
    ("ssh open", "base",
     lambda o: netpol(o)["ingress"].append({"ports": [{"port": 22, "protocol": "TCP"}]}), "ingress only on"),
    ("egress on every port", "base", lambda o: netpol(o)["egress"].append({}), "egress only to DNS"),
    ("egress not isolated", "base", lambda o: netpol(o).update(policyTypes=["Ingress"]), "policyTypes Ingress"),
    ("DNS to every pod", "base",
     lambda o: netpol(o)["egress"][0].update(to=[{"namespaceSelector": {}}]), "DNS only to kube-dns"),
    ("8443 only from pods", "base",
     lambda o: netpol(o)["ingress"][0].update({"from": [{"namespaceSelector": {}}]}),
     "admission calls (8443) from any source"),
    ("restricted: 8443 from everywhere", "restricted-apiserver",
     lambda o: netpol(o)["ingress"][0]["from"][0]["ipBlock"].update(cidr="0.0.0.0/0"),
     "admission calls (8443) only from ipBlocks"),
    ("restricted: API egress anywhere", "restricted-apiserver",
     lambda o: netpol(o)["egress"][1].pop("to"), "Kubernetes API egress (443, 6443) only to ipBlocks"),
    ("restricted: DNS rule drifted", "restricted-apiserver",
     lambda o: netpol(o)["egress"][0]["to"][0]["podSelector"]["matchLabels"].update({"k8s-app": "coredns"}),
     "metrics (9090) and DNS (53) rules identical"),
    ("restricted: another object changed", "restricted-apiserver",
     lambda o: container(o).update(image="egress-guard:0.1.9"), "overlay restricted-apiserver: every other object"),
    # --- tenant examples
    ("tenant: direct egress to the internet", "networkpolicy",
     lambda o: netpol(o, "egress-in-cluster-only")["egress"].append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}),
     "tenant: internet addresses"),
    ("tenant: a rule without destinations", "networkpolicy",
     lambda o: netpol(o, "egress-in-cluster-only")["egress"].append({"ports": [{"port": 443}]}),
     "tenant: no ipBlock and no rule without destinations"),
    ("tenant: gateway unreachable", "networkpolicy",
     lambda o: netpol(o, "egress-in-cluster-only")["egress"][0].update(ports=[{"port": 8080, "protocol": "TCP"}]),
     "tenant: the egress gateway is reachable"),
    ("tenant: some pods exempt", "networkpolicy",
     lambda o: netpol(o, "egress-in-cluster-only").update(podSelector={"matchLabels": {"egress": "restricted"}}),
     "tenant: selects every pod"),
    ("gateway: metadata service reachable", "networkpolicy",
     lambda o: netpol(o, "egress-gateway-internet")["egress"][0]["to"][0]["ipBlock"].pop("except"),
     "gateway: link-local addresses"),
    ("gateway policy selects every pod in istio-system", "networkpolicy",
     lambda o: netpol(o, "egress-gateway-internet").update(podSelector={}), "gateway: in istio-system, selects"),
    ("gateway: IPv6 internet unreachable", "networkpolicy",
     lambda o: netpol(o, "egress-gateway-internet")["egress"][0]["to"].pop(1), "gateway: internet addresses"),
    ("gateway: istiod unreachable", "networkpolicy",
     lambda o: netpol(o, "egress-gateway-internet")["egress"].pop(1), "gateway: istiod (15012)"),
    # --- alerts
    ("expiry alert on the 30-day window", "monitoring",
     lambda o: alert(o, "EgressGuardAllowlistEntriesExpiring").update(
         expr='max by (namespace) (egress_guard_allowlist_entries_expiring{window="30d"}) > 0'),
     'window="7d" above 0 for 1h'),
    ("expiry alert without a for", "monitoring",
     lambda o: alert(o, "EgressGuardAllowlistEntriesExpiring").pop("for"), 'window="7d" above 0 for 1h'),
    ("budget alert over an hour", "monitoring",
     lambda o: alert(o, "EgressGuardReviewBudgetExceeded").update(
         expr="sum by (namespace) (increase(egress_guard_review_budget_exceeded_total[1h])) > 0"),
     "EgressGuardReviewBudgetExceeded: any increase"),
    ("connection cap alert missing", "monitoring",
     lambda o: drop_alert(o, "EgressGuardConnectionCapReached"), "alert EgressGuardConnectionCapReached exists"),
    ("live violations alert on audit-mode warnings", "monitoring",
     lambda o: alert(o, "EgressGuardLiveViolations").update(
         expr='sum by (namespace, code) (egress_guard_audit_live_violations{mode="audit"}) > 0'),
     'EgressGuardLiveViolations: mode="enforce"'),
    ("dashboard queries a metric nobody documents", "monitoring",
     lambda o: obj(o, "ConfigMap", "egress-guard-dashboard")["data"].update(
         {"egress-guard.json": obj(o, "ConfigMap", "egress-guard-dashboard")["data"]["egress-guard.json"].replace(
             "egress_guard_audit_objects_violating", "egress_guard_audit_objects_violated")}),
     "every metric the dashboard queries"),
    # --- the continuous audit
    ("two auditors rolling", "audit-watch",
     lambda o: obj(o, "Deployment", cs.AUDITOR)["spec"].update(replicas=2, strategy={"type": "RollingUpdate"}),
     "one replica, replaced with Recreate"),
    ("auditor runs as root", "audit-watch",
     lambda o: obj(o, "Deployment", cs.AUDITOR)["spec"]["template"]["spec"]["containers"][0][
         "securityContext"].update(runAsNonRoot=False, allowPrivilegeEscalation=True),
     "audit-watch: Deployment: hardened"),
    ("auditor can update what it judges", "audit-watch",
     lambda o: obj(o, "ClusterRole", cs.AUDITOR)["rules"][0]["verbs"].append("update"),
     "list and watch on exactly the 25 kinds"),
    ("auditor reads secrets", "audit-watch",
     lambda o: obj(o, "ClusterRole", cs.AUDITOR)["rules"][3]["resources"].append("secrets"),
     "list and watch on exactly the 25 kinds"),
    ("auditor may delete every report at once", "audit-watch",
     lambda o: obj(o, "ClusterRole", cs.AUDITOR)["rules"][-1]["verbs"].append("deletecollection"),
     "writes PolicyReports only"),
    ("auditor reads every ConfigMap of its namespace", "audit-watch",
     lambda o: obj(o, "Role", cs.AUDITOR)["rules"][0].pop("resourceNames"), "get/list/watch on configmaps"),
    ("tenants can change reports", "audit-watch",
     lambda o: obj(o, "ClusterRole", cs.REPORTS_VIEW)["rules"][0]["verbs"].append("patch"),
     "only get/list/watch on policyreports"),
    ("report read not in edit", "audit-watch",
     lambda o: obj(o, "ClusterRole", cs.REPORTS_VIEW)["metadata"]["labels"].pop(
         "rbac.authorization.k8s.io/aggregate-to-edit"), "aggregated into view, edit and admin"),
    ("the allowlist readable anonymously", "audit-watch",
     lambda o: obj(o, "RoleBinding", cs.ALLOWLIST_READER)["subjects"][0].update(name="system:unauthenticated"),
     "to the group system:authenticated"),
    ("every ConfigMap readable by tenants", "audit-watch",
     lambda o: obj(o, "Role", cs.ALLOWLIST_READER)["rules"][0].pop("resourceNames"),
     f"only get on configmaps with resourceNames"),
    ("auditor metrics open to every namespace", "audit-watch",
     lambda o: netpol(o, cs.AUDITOR)["ingress"][0]["from"][0].update(namespaceSelector={}),
     "ingress only on 9090"),
    ("auditor egress on every port", "audit-watch",
     lambda o: netpol(o, cs.AUDITOR)["egress"].append({}), "egress only to DNS and the Kubernetes API"),
    # --- the install in another namespace (deploy/overlays/other-namespace)
    ("base: the allowlist flag names a namespace, not the pod's", "base",
     lambda o: set_flag(container(o), "allowlist-configmap", f"{cs.NS}/{cs.ALLOWLIST_CM}"),
     "is in the pod's own namespace"),
    ("audit-watch: POD_NAMESPACE no longer set", "audit-watch",
     lambda o: auditor(o).update(env=[e for e in auditor(o)["env"] if e["name"] != "POD_NAMESPACE"]),
     "--allowlist-configmap names the base's ConfigMap"),
    ("other-namespace: the server's allowlist flag still names egress-guard", "other-namespace",
     lambda o: set_flag(container(o), "allowlist-configmap", f"{cs.NS}/{cs.ALLOWLIST_CM}"),
     "Deployment egress-guard: --allowlist-configmap is platform-egress/"),
    ("other-namespace: the auditor's allowlist flag still names egress-guard", "other-namespace",
     lambda o: set_flag(auditor(o), "allowlist-configmap", f"{cs.NS}/{cs.ALLOWLIST_CM}"),
     "Deployment egress-guard-auditor: --allowlist-configmap is platform-egress/"),
    ("other-namespace: the server told to run as egress-guard", "other-namespace",
     lambda o: container(o)["args"].append(f"--namespace={cs.NS}"), "the server's --namespace is its pod's"),
    ("other-namespace: replacements dropped, the certificate names egress-guard's Service", "other-namespace",
     lambda o: obj(o, "Certificate", cs.TLS_SECRET)["spec"].update(
         dnsNames=[f"{cs.APP}.{cs.NS}.svc", f"{cs.APP}.{cs.NS}.svc.cluster.local"]),
     "Certificate egress-guard-tls names egress-guard.platform-egress.svc"),
    ("other-namespace: a binding's subject left in egress-guard", "other-namespace",
     lambda o: obj(o, "ClusterRoleBinding", cs.REGISTER)["subjects"][0].update(namespace=cs.NS),
     "ServiceAccount subject"),
    ("other-namespace: an entry calls a Service the server does not retarget", "other-namespace",
     lambda o: registered_hook(o, WORKLOADS)["clientConfig"]["service"].update(namespace="elsewhere"),
     "every NotIn exclusion spares platform-egress"),
    ("other-namespace: a ServiceMonitor-style selector of egress-guard's namespace", "other-namespace",
     lambda o: netpol(o)["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"].update(
         {"kubernetes.io/metadata.name": cs.NS}),
     "names egress-guard any more"),
    ("other-namespace: more than the namespace changed", "other-namespace",
     lambda o: obj(o, "Deployment", cs.APP)["spec"].update(revisionHistoryLimit=9),
     "apart from the namespace, identical"),
    ("monitoring: an alert pinned to namespace egress-guard", "monitoring",
     lambda o: alert(o, "EgressGuardDown").update(expr='absent(up{job="egress-guard", namespace="egress-guard"} == 1)'),
     "beyond metadata.namespace nothing names"),
    ("monitoring: a ServiceMonitor looks in egress-guard by name", "monitoring",
     lambda o: obj(o, "ServiceMonitor", cs.APP)["spec"].update(namespaceSelector={"matchNames": [cs.NS]}),
     "ServiceMonitor selects the egress-guard Service in its own namespace"),
    # --- the image from your registry (deploy/overlays/registry)
    ("registry: the auditor left on the base's image", "registry",
     lambda o: auditor(o).update(image="egress-guard:0.2.0"), "both Deployments run"),
    ("registry: more than the image changed", "registry",
     lambda o: obj(o, "Deployment", cs.APP)["spec"].update(revisionHistoryLimit=9),
     "apart from the image, identical"),
]

def failures(renders: Renders, repo: Path) -> list[str]:
    with contextlib.redirect_stdout(io.StringIO()):
        return cs.run(renders, repo).failed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", required=True, type=Path, help="repository root")
    for name in cs.RENDERINGS:
        p.add_argument(f"--{name}", required=True, metavar="FILE", help=f"the rendering of {name}")
    p.add_argument("--kinds", type=Path, metavar="FILE", help="`egress-guard schema --kinds` output")
    a = p.parse_args()
    cs.use_kinds_table(a.kinds)
    renders = {name: cs.load(getattr(a, name.replace("-", "_"))) for name in cs.RENDERINGS}

    base_failures = failures(renders, a.repo)
    if base_failures:
        print("check_security_test: the unchanged renderings already fail; fix those first:")
        for line in base_failures:
            print(f"  - {line}")
        return 1

    missed = 0
    for what, name, mutate, expected in CASES:
        mutated = copy.deepcopy(renders)
        mutate(mutated[name])
        failed = failures(mutated, a.repo)
        if any(expected in line for line in failed):
            print(f"  caught  {what}")
        else:
            missed += 1
            print(f"  MISSED  {what}: no failing check mentions {expected!r}"
                  + (f" (failed instead: {failed})" if failed else " (nothing failed)"))
    # The server-side list is read from src/: a stand-in repository whose defaults lack
    # one writer the webhook skips.
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "src").mkdir()
        (Path(tmp) / "src/trusted.rs").write_text(
            "const DEFAULT: &[&str] = &[" + ", ".join(f'"{u}"' for u in cs.TRUSTED_WRITERS[1:]) + "];\n")
        failed = failures(renders, Path(tmp))
        what = "the server does not trust a writer the webhook skips"
        if any("is a default trusted writer" in line for line in failed):
            print(f"  caught  {what}")
        else:
            missed += 1
            print(f"  MISSED  {what}: failed {failed}")

    total = len(CASES) + 1
    if missed:
        print(f"check_security_test: {missed} of {total} broken manifests not caught")
        return 1
    print(f"check_security_test: {total} broken manifests, each caught by its check")
    return 0


if __name__ == "__main__":
    sys.exit(main())
