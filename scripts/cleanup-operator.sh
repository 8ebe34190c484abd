#!/usr/bin/env bash
# Remove what scripts/deploy-operator.sh installed, in reverse order: every MultiNicOperator first (while the
# operator still runs, its finalizer uninstalls the controller, the database and their RBAC), then the operator
# Deployment, the webhook configuration if one is left, Service, NetworkPolicies, RBAC, and the CRDs.
# Data - the database PVCs and the credentials Secrets, and the namespace holding them - is kept unless
# --delete-data. Idempotent: running it again finds nothing and succeeds. See --help.
set -euo pipefail

# shellcheck source=scripts/operator-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/operator-lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--namespace NS] [--kubeconfig FILE] [--delete-data] [--keep-crds] [--timeout DURATION]

  --namespace NS      the namespace deploy-operator.sh installed into (default ${DEFAULT_NAMESPACE})
  --kubeconfig FILE   kubeconfig to use (default: \$KUBECONFIG or ~/.kube/config)
  --delete-data       also delete the data: PVCs and Secrets labelled ${DATA_LABEL} (all namespaces) and the
                      namespace NS
  --keep-crds         keep the CRDs (and with them every OpenstackConfig); otherwise the OpenstackConfigs are
                      deleted with their CRD, and since the controllers are gone by then, the controller's
                      finalizer is released first: their rows stay in the database (part of the data)
  --timeout DURATION  how long to wait for MultiNicOperators' finalizers and deletions (default 300s)

MultiNicOperators are deleted in every namespace: the operator serves all of them, and once it is gone their
finalizers could no longer be removed.

Exit codes: 0 removed; ${EXIT_FAILED} a delete failed; ${EXIT_USAGE} usage; ${EXIT_NO_CLUSTER} no cluster reachable;
${EXIT_NO_PERMISSION} no permission; ${EXIT_TIMEOUT} MultiNicOperators or CRDs not gone within --timeout.
USAGE
}

NAMESPACE="$DEFAULT_NAMESPACE"
DELETE_DATA=false
KEEP_CRDS=false
TIMEOUT=300s
while [[ $# -gt 0 ]]; do
  case "$1" in
    --namespace | -n) [[ $# -ge 2 ]] || die "$EXIT_USAGE" "--namespace needs a value"; NAMESPACE="$2"; shift 2 ;;
    --namespace=*) NAMESPACE="${1#*=}"; shift ;;
    --kubeconfig) [[ $# -ge 2 ]] || die "$EXIT_USAGE" "--kubeconfig needs a value"; KUBECTL_ARGS=(--kubeconfig "$2"); shift 2 ;;
    --kubeconfig=*) KUBECTL_ARGS=(--kubeconfig "${1#*=}"); shift ;;
    --delete-data) DELETE_DATA=true; shift ;;
    --keep-crds) KEEP_CRDS=true; shift ;;
    --timeout) [[ $# -ge 2 ]] || die "$EXIT_USAGE" "--timeout needs a value"; TIMEOUT="$2"; shift 2 ;;
    --timeout=*) TIMEOUT="${1#*=}"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "$EXIT_USAGE" "unknown option: $1" ;;
  esac
done
[[ "$NAMESPACE" =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$ ]] || die "$EXIT_USAGE" "not a namespace name: ${NAMESPACE}"
[[ "$TIMEOUT" =~ ^[0-9]+[smh]?$ ]] || die "$EXIT_USAGE" "--timeout wants a duration like 300s or 5m: ${TIMEOUT}"
[[ "$TIMEOUT" =~ [smh]$ ]] || TIMEOUT="${TIMEOUT}s"
if [[ -n "${KUBECTL_ARGS[*]:-}" && ! -r "${KUBECTL_ARGS[1]}" ]]; then
  die "$EXIT_NO_CLUSTER" "kubeconfig ${KUBECTL_ARGS[1]} does not exist or is not readable"
fi
require_kubectl

step "removing the MultiNic operator from namespace ${NAMESPACE}$([[ "$DELETE_DATA" == true ]] && echo ', data included' || echo ', data kept')"
check_cluster
checks=("delete deployments namespaced" "delete services namespaced" "delete serviceaccounts namespaced"
  "delete roles namespaced" "delete rolebindings namespaced" "delete networkpolicies namespaced"
  "delete clusterroles" "delete clusterrolebindings" "delete validatingwebhookconfigurations"
  "delete multinicoperators.multinic.example.com")
[[ "$KEEP_CRDS" == true ]] || checks+=("delete customresourcedefinitions")
[[ "$DELETE_DATA" != true ]] || checks+=("delete persistentvolumeclaims" "delete secrets" "delete namespaces")
check_permissions "$NAMESPACE" "${checks[@]}"

MANIFEST="$(render "$NAMESPACE" "$DEFAULT_IMAGE")"

# remove KIND...: delete those documents of the rendered installation (missing ones are fine).
remove() {
  local docs
  docs="$(pick "$@" <<<"$MANIFEST")"
  [[ -n "$docs" ]] || return 0
  k delete --ignore-not-found --wait=true --timeout="$TIMEOUT" -f - <<<"$docs" || die "$EXIT_FAILED" "deleting $* failed"
}

# The OpenstackConfigs go with their CRD. The controllers that put ROWS_FINALIZER on them were uninstalled in step 1,
# so nothing would ever remove it and the CRD's deletion would hang: remove exactly that finalizer (a `test` op
# guards the index). Their rows stay in the database - data, like the PVCs - and no node agent is told to drop
# its NICs by an uninstall.
release_openstackconfigs() {
  local configs ns name finalizers i
  k get crd openstackconfigs.multinic.example.com >/dev/null 2>&1 || return 0
  configs="$(k get openstackconfigs -A --no-headers -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name 2>/dev/null || true)"
  [[ -n "$configs" ]] || return 0
  say "$(wc -l <<<"$configs") OpenstackConfig(s) go with their CRD; releasing the controller's finalizer ${ROWS_FINALIZER} (their rows stay in the database)"
  while read -r ns name; do
    mapfile -t finalizers < <(k -n "$ns" get openstackconfig "$name" -o jsonpath='{range .metadata.finalizers[*]}{@}{"\n"}{end}' 2>/dev/null || true)
    for i in "${!finalizers[@]}"; do
      [[ "${finalizers[$i]}" == "$ROWS_FINALIZER" ]] || continue
      k -n "$ns" patch openstackconfig "$name" --type=json \
        -p "[{\"op\":\"test\",\"path\":\"/metadata/finalizers/${i}\",\"value\":\"${ROWS_FINALIZER}\"},{\"op\":\"remove\",\"path\":\"/metadata/finalizers/${i}\"}]" \
        >/dev/null || die "$EXIT_FAILED" "could not remove the finalizer ${ROWS_FINALIZER} from openstackconfig ${ns}/${name}"
      say "openstackconfig ${ns}/${name}: finalizer released"
    done
  done <<<"$configs"
}

step "1/6 MultiNicOperators (all namespaces; their finalizers uninstall what the operator created)"
if k get crd multinicoperators.multinic.example.com >/dev/null 2>&1; then
  mnos="$(k get multinicoperators -A --no-headers -o custom-columns=NS:.metadata.namespace,NAME:.metadata.name 2>/dev/null || true)"
  if [[ -z "$mnos" ]]; then
    say "none"
  else
    while read -r ns name; do
      say "deleting multinicoperator ${ns}/${name}"
      k -n "$ns" delete multinicoperator "$name" --ignore-not-found --wait=false >/dev/null
    done <<<"$mnos"
    while read -r ns name; do
      if ! k -n "$ns" wait --for=delete "multinicoperator/${name}" --timeout="$TIMEOUT" 2>/dev/null; then
        k -n "$ns" get multinicoperator "$name" >/dev/null 2>&1 || continue
        die "$EXIT_TIMEOUT" "multinicoperator ${ns}/${name} still exists after ${TIMEOUT}: its finalizer waits for the
  operator (kubectl -n ${NAMESPACE} get pods; kubectl -n ${NAMESPACE} logs deployment/multinic-operator).
  If the operator cannot run any more, remove what it installed by hand and then the finalizer:
  kubectl -n ${ns} patch multinicoperator ${name} --type=json -p '[{\"op\":\"remove\",\"path\":\"/metadata/finalizers\"}]'"
      fi
      say "multinicoperator ${ns}/${name} gone"
    done <<<"$mnos"
  fi
else
  say "CRD multinicoperators.multinic.example.com not installed: nothing to do"
fi

step "2/6 operator Deployment"
remove Deployment
step "3/6 webhook configuration ${WEBHOOK_CONFIGURATION} (if the operator left one)"
k delete validatingwebhookconfiguration "$WEBHOOK_CONFIGURATION" --ignore-not-found || die "$EXIT_FAILED" "deleting the webhook configuration failed"
step "4/6 webhook Service, NetworkPolicies, the operator's TLS Secret and Lease"
mapfile -t OTHER_KINDS < <(kinds_except Namespace CustomResourceDefinition ServiceAccount Role RoleBinding \
  ClusterRole ClusterRoleBinding Deployment <<<"$MANIFEST")
remove "${OTHER_KINDS[@]}"
if k get namespace "$NAMESPACE" >/dev/null 2>&1; then
  k -n "$NAMESPACE" delete secret multinic-operator-webhook-tls --ignore-not-found || die "$EXIT_FAILED" "deleting the webhook TLS Secret failed"
  k -n "$NAMESPACE" delete lease multinic-operator --ignore-not-found 2>/dev/null || warn "could not delete Lease multinic-operator (harmless)"
fi
step "5/6 ServiceAccount and RBAC"
remove RoleBinding Role ClusterRoleBinding ClusterRole ServiceAccount
step "6/6 CustomResourceDefinitions"
if [[ "$KEEP_CRDS" == true ]]; then
  say "kept (--keep-crds)"
else
  release_openstackconfigs
  remove CustomResourceDefinition
fi

if [[ "$DELETE_DATA" == true ]]; then
  step "data: PVCs and Secrets labelled ${DATA_LABEL}, namespace ${NAMESPACE}"
  k delete persistentvolumeclaims,secrets -A -l "$DATA_LABEL" --ignore-not-found --wait=false || die "$EXIT_FAILED" "deleting the data failed"
  k delete namespace "$NAMESPACE" --ignore-not-found --wait=false || die "$EXIT_FAILED" "deleting namespace ${NAMESPACE} failed"
else
  step "data kept (--delete-data removes it):"
  kept="$(k get persistentvolumeclaims,secrets -A -l "$DATA_LABEL" --no-headers -o custom-columns=KIND:.kind,NS:.metadata.namespace,NAME:.metadata.name 2>/dev/null || true)"
  if [[ -n "$kept" ]]; then while IFS= read -r line; do printf '  %s\n' "$line"; done <<<"$kept"; else say "no PVCs or Secrets labelled ${DATA_LABEL}"; fi
  say "namespace ${NAMESPACE} kept"
fi
step "done"
