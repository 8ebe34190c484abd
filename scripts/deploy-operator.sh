#!/usr/bin/env bash
# Install the MultiNic operator: namespace (Pod Security restricted), CRDs, the operator's ServiceAccount and RBAC,
# its Deployment, the webhook Service and the NetworkPolicies (manifests/kustomization.yaml), then wait until the
# operator is available. Idempotent: run it again to upgrade or repair. See --help.
set -euo pipefail

# shellcheck source=scripts/operator-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/operator-lib.sh"

usage() {
  cat <<USAGE
Usage: $(basename "$0") [--image IMAGE] [--namespace NS] [--kubeconfig FILE] [--dry-run] [--timeout DURATION]
                         [--skip-image-check]

  --image IMAGE        operator image (default ${DEFAULT_IMAGE}; the controller's image is set per
                       MultiNicOperator in spec.controller.image)
  --namespace NS       install into NS instead of ${DEFAULT_NAMESPACE} (the operator's ClusterRole/Binding are then
                       named multinic-operator-NS)
  --kubeconfig FILE    kubeconfig to use (default: \$KUBECONFIG or ~/.kube/config)
  --dry-run            send everything as a server-side dry run: validated by the apiserver, nothing changes
  --timeout DURATION   how long to wait for the operator to become available (default 300s)
  --skip-image-check   do not look for the image in the local containerd

The protection webhook's ValidatingWebhookConfiguration (${WEBHOOK_CONFIGURATION}) is created by the operator
itself once the first MultiNicOperator exists, so this script waits for the Deployment to be Available (its
readiness probe is /readyz: caches synced, webhook certificate valid) and, only if a MultiNicOperator exists
already, for the configuration.

Exit codes: 0 installed; ${EXIT_FAILED} an apply failed; ${EXIT_USAGE} usage; ${EXIT_NO_CLUSTER} no cluster reachable;
${EXIT_NO_PERMISSION} no permission; ${EXIT_NO_IMAGE} image not given or not found; ${EXIT_TIMEOUT} not available within --timeout.
USAGE
}

IMAGE="$DEFAULT_IMAGE"
NAMESPACE="$DEFAULT_NAMESPACE"
DRY_RUN=false
TIMEOUT=300s
CHECK_IMAGE=true
while [[ $# -gt 0 ]]; do
  case "$1" in
    --image) [[ $# -ge 2 ]] || die "$EXIT_NO_IMAGE" "--image needs a value"; IMAGE="$2"; shift 2 ;;
    --image=*) IMAGE="${1#*=}"; shift ;;
    --namespace | -n) [[ $# -ge 2 ]] || die "$EXIT_USAGE" "--namespace needs a value"; NAMESPACE="$2"; shift 2 ;;
    --namespace=*) NAMESPACE="${1#*=}"; shift ;;
    --kubeconfig) [[ $# -ge 2 ]] || die "$EXIT_USAGE" "--kubeconfig needs a value"; KUBECTL_ARGS=(--kubeconfig "$2"); shift 2 ;;
    --kubeconfig=*) KUBECTL_ARGS=(--kubeconfig "${1#*=}"); shift ;;
    --dry-run) DRY_RUN=true; shift ;;
    --timeout) [[ $# -ge 2 ]] || die "$EXIT_USAGE" "--timeout needs a value"; TIMEOUT="$2"; shift 2 ;;
    --timeout=*) TIMEOUT="${1#*=}"; shift ;;
    --skip-image-check) CHECK_IMAGE=false; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "$EXIT_USAGE" "unknown option: $1" ;;
  esac
done
[[ -n "$IMAGE" ]] || die "$EXIT_NO_IMAGE" "no image given (--image IMAGE, e.g. ${DEFAULT_IMAGE}; build it with 'make docker-build')"
[[ "$NAMESPACE" =~ ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$ ]] || die "$EXIT_USAGE" "not a namespace name: ${NAMESPACE}"
[[ "$TIMEOUT" =~ ^[0-9]+[smh]?$ ]] || die "$EXIT_USAGE" "--timeout wants a duration like 300s or 5m: ${TIMEOUT}"
[[ "$TIMEOUT" =~ [smh]$ ]] || TIMEOUT="${TIMEOUT}s"
if [[ -n "${KUBECTL_ARGS[*]:-}" && ! -r "${KUBECTL_ARGS[1]}" ]]; then
  die "$EXIT_NO_CLUSTER" "kubeconfig ${KUBECTL_ARGS[1]} does not exist or is not readable"
fi
require_kubectl

# The image's name as the kubelet resolves it: docker.io/library/NAME:latest for a bare NAME.
normalized_image() {
  local ref="$1" first="${1%%/*}"
  if [[ "$ref" != */* ]]; then
    ref="docker.io/library/${ref}"
  elif [[ "$first" != *.* && "$first" != *:* && "$first" != localhost ]]; then
    ref="docker.io/${ref}"
  fi
  local last="${ref##*/}"
  [[ "$last" == *:* || "$ref" == *@* ]] || ref="${ref}:latest"
  printf '%s' "$ref"
}

# 0: in the local containerd (namespace k8s.io), 1: not there, 2: cannot tell (no ctr/crictl, no access).
local_image_state() {
  local want norm listed
  want="$IMAGE"
  norm="$(normalized_image "$IMAGE")"
  if command -v ctr >/dev/null 2>&1; then
    listed="$(ctr -n k8s.io images ls -q 2>/dev/null)" || return 2
    grep -qxF -e "$want" -e "$norm" <<<"$listed" && return 0
    return 1
  fi
  if command -v crictl >/dev/null 2>&1; then
    crictl info >/dev/null 2>&1 || return 2
    crictl inspecti "$norm" >/dev/null 2>&1 && return 0
    return 1
  fi
  return 2
}

check_image() {
  if [[ "$CHECK_IMAGE" != true ]]; then
    say "image: ${IMAGE} (not checked: --skip-image-check)"
    return
  fi
  local state=0 first="${IMAGE%%/*}"
  local_image_state || state=$?
  case "$state" in
    0) say "image: ${IMAGE} is in this node's containerd (k8s.io)" ;;
    1)
      if [[ "$IMAGE" == */* && ( "$first" == *.* || "$first" == *:* ) && "$first" != localhost* ]]; then
        say "image: ${IMAGE} is not in this node's containerd; the kubelet will pull it from ${first}"
      else
        die "$EXIT_NO_IMAGE" "image ${IMAGE} is not in this node's containerd (namespace k8s.io, looked for $(normalized_image "$IMAGE")) and has no registry to pull it from.
  Build and import it: make docker-build, then podman save --format oci-archive ${IMAGE} -o img.tar && ctr -n k8s.io images import img.tar
  (or pass --image REGISTRY/multinic:TAG, or --skip-image-check if the nodes are elsewhere)."
      fi
      ;;
    *) warn "cannot inspect a local containerd (no ctr/crictl, or no access): not checking that ${IMAGE} exists; pods stay in ImagePullBackOff if it does not" ;;
  esac
}

MODE=""
[[ "$DRY_RUN" == true ]] && MODE=" (dry run: nothing is changed)"
step "MultiNic operator into namespace ${NAMESPACE}, image ${IMAGE}${MODE}"
check_cluster
check_permissions "$NAMESPACE" \
  "create customresourcedefinitions" "create clusterroles" "create clusterrolebindings" "create namespaces" \
  "create deployments namespaced" "create services namespaced" "create serviceaccounts namespaced" \
  "create roles namespaced" "create rolebindings namespaced" "create networkpolicies namespaced"
check_image

MANIFEST="$(render "$NAMESPACE" "$IMAGE")"

# apply KIND...: server-side apply (idempotent; one field manager) of those documents.
apply() {
  local docs
  docs="$(pick "$@" <<<"$MANIFEST")"
  [[ -n "$docs" ]] || return 0
  if [[ "$DRY_RUN" == true ]]; then
    k apply --server-side --force-conflicts --field-manager=multinic-deploy --dry-run=server -f - <<<"$docs" ||
      die "$EXIT_FAILED" "the apiserver rejected: $*"
  else
    k apply --server-side --force-conflicts --field-manager=multinic-deploy -f - <<<"$docs" ||
      die "$EXIT_FAILED" "applying $* failed"
  fi
}

# Step 4 applies every kind the earlier steps do not (Service, NetworkPolicy, Deployment, and whatever is added).
mapfile -t WORKLOAD_KINDS < <(kinds_except Namespace CustomResourceDefinition ServiceAccount Role RoleBinding \
  ClusterRole ClusterRoleBinding <<<"$MANIFEST")
NAMESPACED_KINDS=(ServiceAccount Role RoleBinding "${WORKLOAD_KINDS[@]}")

step "1/5 namespace ${NAMESPACE} (Pod Security restricted)"
apply Namespace
NAMESPACE_EXISTS=true
k get namespace "$NAMESPACE" >/dev/null 2>&1 || NAMESPACE_EXISTS=false

step "2/5 CustomResourceDefinitions"
apply CustomResourceDefinition
if [[ "$DRY_RUN" != true ]]; then
  for crd in $(pick CustomResourceDefinition <<<"$MANIFEST" | awk '/^metadata:/{m=1} m && /^  name: /{print $2; m=0}'); do
    k wait --for=condition=Established --timeout="$TIMEOUT" "crd/${crd}" || die "$EXIT_TIMEOUT" "CRD ${crd} not Established within ${TIMEOUT}"
  done
fi

if [[ "$DRY_RUN" == true && "$NAMESPACE_EXISTS" != true ]]; then
  # A server dry run cannot place objects into a namespace that does not exist yet.
  step "3-4/5 RBAC, operator, webhook Service, NetworkPolicies"
  warn "namespace ${NAMESPACE} does not exist yet: its objects are checked client-side only; the cluster-wide ones server-side"
  apply ClusterRole ClusterRoleBinding
  k apply --dry-run=client -f - <<<"$(pick "${NAMESPACED_KINDS[@]}" <<<"$MANIFEST")" ||
    die "$EXIT_FAILED" "the namespaced objects are invalid"
else
  step "3/5 ServiceAccount and RBAC"
  apply ServiceAccount Role RoleBinding ClusterRole ClusterRoleBinding
  step "4/5 operator Deployment, webhook Service, NetworkPolicies"
  apply "${WORKLOAD_KINDS[@]}"
fi

if [[ "$DRY_RUN" == true ]]; then
  step "dry run complete: every object was accepted; nothing was changed"
  exit 0
fi

step "5/5 waiting (up to ${TIMEOUT}) for deployment/multinic-operator to be available"
if ! k -n "$NAMESPACE" rollout status deployment/multinic-operator --timeout="$TIMEOUT" ||
  ! k -n "$NAMESPACE" wait --for=condition=Available --timeout=10s deployment/multinic-operator >/dev/null; then
  k -n "$NAMESPACE" get pods -l app.kubernetes.io/name=multinic-operator -o wide >&2 || true
  die "$EXIT_TIMEOUT" "the operator is not available after ${TIMEOUT}. The objects are installed; see
  kubectl -n ${NAMESPACE} describe pods -l app.kubernetes.io/name=multinic-operator   (Pending: no node fits; ErrImagePull: image)
  kubectl -n ${NAMESPACE} logs deployment/multinic-operator
  and run this script again (it is idempotent)."
fi
say "operator available (ready replicas passed /readyz)"

if [[ -n "$(k get multinicoperators -A -o name 2>/dev/null)" ]]; then
  say "a MultiNicOperator exists: waiting for the webhook configuration ${WEBHOOK_CONFIGURATION}"
  deadline=$((SECONDS + ${TIMEOUT%[smh]} * $(case "$TIMEOUT" in *m) echo 60 ;; *h) echo 3600 ;; *) echo 1 ;; esac)))
  until k get validatingwebhookconfiguration "$WEBHOOK_CONFIGURATION" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$EXIT_TIMEOUT" "no ValidatingWebhookConfiguration ${WEBHOOK_CONFIGURATION} after ${TIMEOUT}: kubectl -n ${NAMESPACE} logs deployment/multinic-operator"
    sleep 2
  done
  say "webhook configuration ${WEBHOOK_CONFIGURATION} present"
else
  say "the webhook configuration ${WEBHOOK_CONFIGURATION} appears with the first MultiNicOperator"
fi

step "done. Next: kubectl apply -n ${NAMESPACE} -f manifests/samples/multinicoperator.yaml; kubectl get mno -n ${NAMESPACE}"
