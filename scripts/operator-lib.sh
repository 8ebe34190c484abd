# shellcheck shell=bash disable=SC2034  # the constants are used by the scripts that source this file
# Shared by scripts/deploy-operator.sh and scripts/cleanup-operator.sh: rendering manifests/ for a namespace and
# an image, picking documents by kind, and the cluster/permission checks. Sourced, not run.

# Exit codes (both scripts)
readonly EXIT_FAILED=1        # an apply/delete failed (kubectl's message is shown)
readonly EXIT_USAGE=2         # bad option, or kubectl missing
readonly EXIT_NO_CLUSTER=3    # the apiserver cannot be reached (kubeconfig, network, certificate)
readonly EXIT_NO_PERMISSION=4 # reachable, but the credentials are refused or lack the rights needed
readonly EXIT_NO_IMAGE=5      # no image given, or a local image that the node's containerd does not have
readonly EXIT_TIMEOUT=6       # not ready / not gone within --timeout

readonly DEFAULT_NAMESPACE=multinic-system
readonly DEFAULT_IMAGE=multinic:v1alpha1
readonly WEBHOOK_CONFIGURATION=vprotection.multinic.example.com
readonly DATA_LABEL=multinic.example.com/managed-by-operator
readonly ROWS_FINALIZER=multinic.example.com/interface-rows # the controller's, on every OpenstackConfig

LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly MANIFESTS="${LIB_DIR}/../manifests"
KUBECTL="${KUBECTL:-kubectl}"
KUBECTL_ARGS=()

say() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*"; }
step() { printf '\n==> %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() { # die CODE MESSAGE...
  local code="$1"
  shift
  printf 'ERROR: %s\n' "$*" >&2
  exit "$code"
}

k() { "$KUBECTL" "${KUBECTL_ARGS[@]}" "$@"; }

require_kubectl() {
  command -v "$KUBECTL" >/dev/null 2>&1 ||
    die "$EXIT_USAGE" "kubectl not found (set KUBECTL=/path/to/kubectl or put it on PATH)"
}

# The apiserver answers (GET /version is open to every authenticated and anonymous user).
check_cluster() {
  local out
  if ! out="$(k get --raw /version --request-timeout=15s 2>&1)"; then
    if grep -qiE 'unauthorized|forbidden' <<<"$out"; then
      die "$EXIT_NO_PERMISSION" "the cluster refused these credentials: ${out}"
    fi
    die "$EXIT_NO_CLUSTER" "no cluster reachable with $(kubeconfig_name): ${out}
  Check KUBECONFIG/--kubeconfig and that the apiserver is up ('kubectl cluster-info')."
  fi
  say "cluster reachable: $(k config view --minify -o jsonpath='{.clusters[0].cluster.server}' 2>/dev/null || echo '?')"
}

kubeconfig_name() {
  if [[ ${#KUBECTL_ARGS[@]} -gt 0 ]]; then
    printf '%s' "${KUBECTL_ARGS[*]}"
  else
    printf 'KUBECONFIG=%s' "${KUBECONFIG:-~/.kube/config}"
  fi
}

# check_permissions NAMESPACE "VERB RESOURCE [namespaced]"...: every check must answer yes.
check_permissions() {
  local ns="$1" check verb resource scope missing=()
  shift
  for check in "$@"; do
    read -r verb resource scope <<<"$check"
    if [[ "$scope" == namespaced ]]; then
      k auth can-i "$verb" "$resource" -n "$ns" >/dev/null 2>&1 || missing+=("$verb $resource (namespace $ns)")
    else
      k auth can-i "$verb" "$resource" >/dev/null 2>&1 || missing+=("$verb $resource (cluster-wide)")
    fi
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    local user
    user="$(k auth whoami -o jsonpath='{.status.userInfo.username}' 2>/dev/null || echo 'this user')"
    die "$EXIT_NO_PERMISSION" "${user} may not do what this needs; missing:
$(printf '  - %s\n' "${missing[@]}")
  Run it as a cluster admin (it installs CRDs and cluster-wide RBAC)."
  fi
  say "permissions: ok"
}

# render NAMESPACE IMAGE: `kubectl kustomize manifests/` with the namespace and the operator image replaced.
# Another namespace also renames the operator's ClusterRole and ClusterRoleBinding to multinic-operator-NAMESPACE
# (like the operator's multinic-controller-NAMESPACE), so two installations never share cluster-scoped names.
render() {
  local ns="$1" image="$2" built
  built="$(k kustomize "$MANIFESTS")" || die "$EXIT_FAILED" "kubectl kustomize ${MANIFESTS} failed"
  awk -v ns="$ns" -v dns="$DEFAULT_NAMESPACE" -v img="$image" -v dimg="$DEFAULT_IMAGE" '
    /^---$/ { kind = ""; insub = 0; print; next }
    /^kind: / { kind = $2 }
    /^[A-Za-z]/ { insub = ($0 ~ /^subjects:/) }
    {
      if (ns != dns) {
        if ($0 ~ ("^ *namespace: " dns "$")) { $0 = substr($0, 1, index($0, "namespace:") - 1) "namespace: " ns }
        if (kind == "Namespace" && $0 == "  name: " dns) { $0 = "  name: " ns }
        if ((kind == "ClusterRole" || kind == "ClusterRoleBinding") && !insub && $0 == "  name: multinic-operator") {
          $0 = "  name: multinic-operator-" ns
        }
      }
      if (kind == "Deployment" && $0 ~ ("^ *image: " dimg "$")) { $0 = substr($0, 1, index($0, "image:") - 1) "image: " img }
      print
    }'  <<<"$built"
}

# pick KIND... < manifests: only the documents of those kinds (kustomize output: "kind:" at column 0).
pick() {
  awk -v kinds=" $* " '
    function flush() { if (doc != "" && keep) printf "---\n%s", doc; doc = ""; keep = 0 }
    /^---$/ { flush(); next }
    { doc = doc $0 "\n" }
    /^kind: / { keep = index(kinds, " " $2 " ") > 0 }
    END { flush() }'
}

# kinds_except KIND... < manifests: the other kinds present, one per line (so that no kind added to
# manifests/kustomization.yaml is left out by the scripts' steps).
kinds_except() {
  awk -v kinds=" $* " '/^kind: / && !index(kinds, " " $2 " ") && !seen[$2]++ { print $2 }'
}
