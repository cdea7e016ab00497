#!/usr/bin/env python3
"""Validate rendered kustomize output against the Kubernetes OpenAPI schemas.

Used by deploy/validate.sh. Each argument is NAME=FILE (one rendered kustomization).
Every object is validated in strict mode (unknown fields are errors) with the schemas
that ship inside the kubernetes-validate wheel, for each --kubernetes-version.

Why not the kubernetes-validate CLI: it only warns (and exits 0) on a kind it has no
schema for, so a typo in apiVersion or kind would pass. Here a kind without a schema
fails, unless it is a custom resource listed in CRD_KINDS for that rendering; those get
a basic structural check instead, since their schemas are not available offline.
"""

from __future__ import annotations

import argparse
import sys

import kubernetes_validate
import kubernetes_validate.utils as kv
import yaml

# Custom resources expected in each rendering: (apiVersion, kind). Anything else
# without a core schema is an error.
CRD_KINDS: dict[str, set[tuple[str, str]]] = {
    "cert-manager": {
        ("cert-manager.io/v1", "Certificate"),
        ("cert-manager.io/v1", "Issuer"),
    },
    # Both overlays build on deploy/cert-manager.
    "other-namespace": {
        ("cert-manager.io/v1", "Certificate"),
        ("cert-manager.io/v1", "Issuer"),
    },
    "registry": {
        ("cert-manager.io/v1", "Certificate"),
        ("cert-manager.io/v1", "Issuer"),
    },
    "monitoring": {
        ("monitoring.coreos.com/v1", "ServiceMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
    },
}

CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "CustomResourceDefinition",
}


def ident(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    name = meta.get("name", "<no name>")
    return f"{obj.get('kind', '<no kind>')} {ns + '/' if ns else ''}{name}"


def check_crd_shape(obj: dict) -> list[str]:
    """What can be checked of a custom resource without its CRD schema."""
    errors = []
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        errors.append("metadata.name is missing")
    elif not meta.get("namespace"):
        errors.append("metadata.namespace is missing (all our custom resources are namespaced)")
    if not isinstance(obj.get("spec"), dict) or not obj["spec"]:
        errors.append("spec is missing or empty")
    unknown = set(obj) - {"apiVersion", "kind", "metadata", "spec"}
    if unknown:
        errors.append(f"unexpected top-level fields {sorted(unknown)}")
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-k",
        "--kubernetes-version",
        action="append",
        required=True,
        help="Kubernetes version to validate against (repeatable), e.g. 1.33.0",
    )
    parser.add_argument("renders", nargs="+", metavar="NAME=FILE")
    args = parser.parse_args()

    supported = kv.all_versions()
    for version in args.kubernetes_version:
        if kv.major_minor(version) not in {kv.major_minor(v) for v in supported}:
            print(
                f"FATAL: kubernetes-validate {kubernetes_validate.__version__} has no schemas "
                f"for Kubernetes {version} (it has {supported[0]}..{supported[-1]})"
            )
            return 2

    failures = 0
    validated = 0
    crd_checked = 0
    for spec in args.renders:
        name, _, path = spec.partition("=")
        if not path:
            parser.error(f"expected NAME=FILE, got {spec!r}")
        with open(path, encoding="utf-8") as f:
            objects = [o for o in yaml.safe_load_all(f) if o]
        # The webhook configurations the server registers live in a generated ConfigMap;
        # validate them as the apiserver will see them.
        for o in list(objects):
            if o.get("kind") == "ConfigMap" and o.get("metadata", {}).get("name", "").startswith("egress-guard-webhooks"):
                objects += [d for d in yaml.safe_load_all((o.get("data") or {}).get("webhooks.yaml", "")) if d]
        if not objects:
            print(f"FAIL {name}: rendered no objects")
            failures += 1
            continue
        allowed_crds = CRD_KINDS.get(name, set())
        for obj in objects:
            what = f"{name}: {ident(obj)}"
            if not isinstance(obj, dict) or "apiVersion" not in obj or "kind" not in obj:
                print(f"FAIL {what}: not a Kubernetes object")
                failures += 1
                continue
            meta = obj.get("metadata") or {}
            if obj["kind"] not in CLUSTER_SCOPED and (obj["apiVersion"], obj["kind"]) not in allowed_crds:
                if not meta.get("namespace"):
                    print(f"FAIL {what}: namespaced object without metadata.namespace")
                    failures += 1
            if (obj["apiVersion"], obj["kind"]) in allowed_crds:
                errors = check_crd_shape(obj)
                for e in errors:
                    print(f"FAIL {what}: {e}")
                failures += len(errors)
                if not errors:
                    print(f"ok   {what} (custom resource: no core schema; shape checked)")
                crd_checked += 1
                continue
            ok = True
            for version in args.kubernetes_version:
                try:
                    kv.validate(obj, version, strict=True)
                except kv.SchemaNotFoundError as e:
                    print(f"FAIL {what}: {e.message} (not an expected custom resource here)")
                    ok = False
                except kv.ValidationError as e:
                    field = ".".join(str(p) for p in e.path) or "<root>"
                    print(f"FAIL {what}: Kubernetes {e.version} (strict): {field}: {e.message}")
                    ok = False
            if ok:
                print(f"ok   {what}")
                validated += 1
            else:
                failures += 1

    versions = ", ".join(args.kubernetes_version)
    if failures:
        print(f"schemas: {failures} problem(s); fix the manifests above")
        return 1
    print(
        f"schemas: {validated} objects validated (strict) against Kubernetes {versions}; "
        f"{crd_checked} custom resources shape-checked"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
