#!/usr/bin/env bash
# Render and check every kustomization under deploy/. Called by CI; runs offline once
# its Python tools are installed (the Kubernetes schemas ship inside kubernetes-validate).
#
#   bash deploy/validate.sh
#
# 1. kubectl kustomize: deploy/, deploy/cert-manager, deploy/overlays/audit,
#    deploy/overlays/restricted-apiserver, deploy/networkpolicy (examples), deploy/monitoring,
#    deploy/audit-watch, deploy/audit-watch/crd, deploy/overlays/other-namespace and
#    deploy/overlays/registry
# 2. validate_schemas.py: every object in strict mode against the Kubernetes versions
#    in KUBE_VERSIONS, and the webhook configurations inside the ConfigMap
#    egress-guard-webhooks (the server registers them; no rendering applies them); the
#    CRD kinds we ship (cert-manager, Prometheus Operator) are allowed only in their own
#    directories
# 3. check_security.py: hardening, webhook (on the configurations the server registers),
#    registration and its RBAC, network policy, autoscaling, alert and overlay checks; the
#    base allowlist grants nothing; the install moved to another namespace names
#    egress-guard's nowhere (flags, Certificate DNS names, RBAC subjects, the
#    configurations as the server registers them); the registry overlay sets both images
# 4. check_security_test.py: breaks the renderings one way at a time and requires the
#    check meant for each break to fail
# 5. check_allowlist_schema.py: the shipped allowlists against docs/allowlist.schema.json
# 6. promtool: the PrometheusRule's groups checked and unit-tested
#    (deploy/monitoring/tests/alerts.yaml); promtool comes with Debian's `prometheus`
#
# Environment:
#   KUBECTL        kubectl to use (default: kubectl on PATH); needs built-in kustomize
#   KUBE_VERSIONS  Kubernetes versions to validate against (default below): the oldest we
#                  support (1.30: webhook matchConditions are GA there, and the preStop
#                  sleep action), the one the binary's k8s-openapi targets, and the newest
#                  schemas in the pinned kubernetes-validate. A version below MIN_KUBE is
#                  refused: the manifests do not support it, so passing there means nothing
#   VENV           Python virtualenv for the tools (created if missing)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

KUBECTL="${KUBECTL:-kubectl}"
# The oldest Kubernetes the manifests support; docs/deploy.md says the same.
MIN_KUBE=1.30
KUBE_VERSIONS="${KUBE_VERSIONS:-$MIN_KUBE.0 1.33.0 1.37.0}"
VENV="${VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/egress-guard/deploy-venv}"
# Pinned: the schemas a run validates against come from this wheel.
PY_REQUIREMENTS=(kubernetes-validate==1.37.0 PyYAML==6.0.3 cel-python==0.5.0 jsonschema==4.23.0)

die() {
    echo "deploy/validate.sh: $*" >&2
    exit 1
}

command -v "$KUBECTL" >/dev/null 2>&1 \
    || die "kubectl not found (looked for '$KUBECTL'); install kubectl 1.27 or newer (it has kustomize v5 built in) or set KUBECTL"
command -v python3 >/dev/null 2>&1 || die "python3 not found"
PROMTOOL="${PROMTOOL:-promtool}"
command -v "$PROMTOOL" >/dev/null 2>&1 \
    || die "promtool not found (looked for '$PROMTOOL'); install Debian's prometheus package (apt-get install prometheus) or set PROMTOOL"

minor() { local v="${1#v}"; v="${v#*.}"; echo "${v%%.*}"; }
for v in $KUBE_VERSIONS; do
    [[ "${v#v}" == 1.* && "$(minor "$v")" =~ ^[0-9]+$ ]] || die "KUBE_VERSIONS: cannot read '$v' as 1.MINOR[.PATCH]"
    (( $(minor "$v") >= $(minor "$MIN_KUBE") )) \
        || die "KUBE_VERSIONS: $v is older than $MIN_KUBE, the oldest Kubernetes these manifests support (matchConditions, preStop sleep)"
done

# --- Python tools --------------------------------------------------------------------
stamp="$VENV/.egress-guard-requirements"
if [[ ! -x "$VENV/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "${PY_REQUIREMENTS[*]}" ]]; then
    echo "==> installing ${PY_REQUIREMENTS[*]} into $VENV"
    python3 -m venv "$VENV" || die "could not create a virtualenv at $VENV (is python3-venv installed?)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_REQUIREMENTS[@]}" \
        || die "pip install ${PY_REQUIREMENTS[*]} failed"
    echo "${PY_REQUIREMENTS[*]}" >"$stamp"
fi
py="$VENV/bin/python"

# --- render ----------------------------------------------------------------------------
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

# Rendering name -> kustomization. The names are the ones validate_schemas.py and
# check_security.py know.
names=(base cert-manager audit restricted-apiserver networkpolicy monitoring audit-watch policyreport-crd
       other-namespace registry)
declare -A dirs=(
    [base]="$here"
    [cert-manager]="$here/cert-manager"
    [audit]="$here/overlays/audit"
    [restricted-apiserver]="$here/overlays/restricted-apiserver"
    [networkpolicy]="$here/networkpolicy"
    [monitoring]="$here/monitoring"
    [audit-watch]="$here/audit-watch"
    [policyreport-crd]="$here/audit-watch/crd"
    [other-namespace]="$here/overlays/other-namespace"
    [registry]="$here/overlays/registry"
)
echo "==> rendering with $("$KUBECTL" version --client 2>/dev/null | grep -i kustomize || echo "$KUBECTL kustomize")"
for name in "${names[@]}"; do
    "$KUBECTL" kustomize "${dirs[$name]}" >"$out/$name.yaml" \
        || die "kubectl kustomize ${dirs[$name]#"$repo"/} failed"
    echo "    ${dirs[$name]#"$repo"/}: $(grep -c '^kind:' "$out/$name.yaml") objects"
done

# --- schemas ---------------------------------------------------------------------------
echo "==> validating against Kubernetes schemas (strict): $KUBE_VERSIONS"
kargs=()
for v in $KUBE_VERSIONS; do kargs+=(-k "$v"); done
renders=()
for name in "${names[@]}"; do renders+=("$name=$out/$name.yaml"); done
"$py" "$here/validate_schemas.py" "${kargs[@]}" "${renders[@]}" | tee "$out/schemas.log"
objects="$(sed -n 's/^schemas: \([0-9]*\) objects validated.*/\1/p' "$out/schemas.log")"
crds="$(sed -n 's/.*; \([0-9]*\) custom resources shape-checked$/\1/p' "$out/schemas.log")"

# --- security and consistency ----------------------------------------------------------
echo "==> security and consistency checks"
rargs=()
for name in "${names[@]}"; do rargs+=("--$name" "$out/$name.yaml"); done
# The judged kinds come from the binary's kinds table when cargo is here (CI).
if command -v cargo >/dev/null 2>&1; then
    (cd "$repo" && cargo run --quiet --locked -- schema --kinds) >"$out/kinds.json" \
        || die "egress-guard schema --kinds failed"
    rargs+=(--kinds "$out/kinds.json")
fi
"$py" "$here/check_security.py" --repo "$repo" "${rargs[@]}" | tee "$out/security.log"
checks="$(sed -n 's/^security: \([0-9]*\) checks passed$/\1/p' "$out/security.log")"

# --- the checks can fail -----------------------------------------------------------------
echo "==> breaking the manifests one way at a time: each break must fail its check"
"$py" "$here/check_security_test.py" --repo "$repo" "${rargs[@]}" | tee "$out/mutations.log"
mutations="$(sed -n 's/^check_security_test: \([0-9]*\) broken manifests, each caught.*/\1/p' "$out/mutations.log")"

# --- the allowlist schema ----------------------------------------------------------------
echo "==> shipped allowlists against docs/allowlist.schema.json"
"$py" "$here/check_allowlist_schema.py" --repo "$repo" "$out/base.yaml" "$out/audit.yaml"

# --- alert rules ---------------------------------------------------------------------------
echo "==> alert rules: promtool check rules and test rules"
mkdir -p "$out/rules"
"$py" - "$out/monitoring.yaml" "$out/rules/rules.yaml" <<'PY'
import sys, yaml
rules = [o for o in yaml.safe_load_all(open(sys.argv[1])) if o and o["kind"] == "PrometheusRule"]
yaml.safe_dump({"groups": [g for r in rules for g in r["spec"]["groups"]]}, open(sys.argv[2], "w"))
PY
cp "$here/monitoring/tests/alerts.yaml" "$out/rules/"
"$PROMTOOL" check rules "$out/rules/rules.yaml" || die "promtool check rules failed"
(cd "$out/rules" && "$PROMTOOL" test rules alerts.yaml) || die "promtool test rules failed (deploy/monitoring/tests/alerts.yaml)"

[[ -n "$objects" && -n "$checks" && -n "$mutations" ]] || die "could not read the checkers' summaries"
echo "deploy: ${#names[@]} kustomizations rendered, $objects objects validated ($crds custom resources shape-checked), $checks security checks passed, $mutations broken manifests caught"
