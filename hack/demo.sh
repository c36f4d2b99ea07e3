#!/usr/bin/env bash
# The main job end to end: a real kube-apiserver (with etcd), the KMS emulator with two seeded
# keys, the operator, and examples/kmsalias.yaml applied with kubectl. Creates, re-points and
# deletes the alias, shows KMS's view at each step, then stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

KEY1=key-hzz630494463ejqjx1111
KEY2=key-hzz630494463ejqjx2222
ALIAS=alias/test_kms_alias
REGION=cn-hangzhou

bin=$(hack/build-control-plane.sh)
target=${CARGO_TARGET_DIR:-target}/debug
work=$(mktemp -d -t kms-demo.XXXXXX)
pids=()

cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$status" -ne 0 ]; then
    echo "demo failed; last operator log lines:" >&2
    tail -n 30 "$work/operator.log" >&2 2>/dev/null || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT INT TERM

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

# Waits until a command succeeds, up to a deadline in seconds.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "timed out waiting for: $*" >&2; return 1; fi
    sleep 0.2
  done
}

step "Starting etcd and kube-apiserver (built from pinned Go modules)"
KMS_TESTENV_BIN_DIR=$bin "$target/kms-testenv" up --dir "$work/cluster" >"$work/testenv.log" 2>&1 &
pids+=($!)
wait_for 120 test -s "$work/cluster/kubeconfig"
wait_for 120 grep -q "kms-testenv ready" "$work/testenv.log"
export KUBECONFIG=$work/cluster/kubeconfig
kubectl() { "$bin/kubectl" "$@"; }
kubectl version | grep "Server Version"

step "Starting the KMS emulator with keys $KEY1 and $KEY2"
"$target/kms-emulator" --listen 127.0.0.1:0 --port-file "$work/emulator.port" \
  --region "$REGION" --access-key demo-id:demo-secret \
  --seed-key "$KEY1" --seed-key "$KEY2" >"$work/emulator.log" 2>&1 &
pids+=($!)
wait_for 30 test -s "$work/emulator.port"
kms="http://127.0.0.1:$(cat "$work/emulator.port")"

# The emulator's own view of the alias, from its inspection endpoint.
show_kms() {
  curl -fsS "$kms/_emulator/state" | python3 -c '
import json, sys
alias = sys.argv[1]
state = json.load(sys.stdin)
found = []
def walk(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "aliases" and isinstance(value, dict) and alias in value:
                found.append(value[alias])
            walk(value)
    elif isinstance(node, list):
        for item in node:
            walk(item)
walk(state)
print(f"KMS: {alias} -> {found[0]}" if found else f"KMS: {alias} does not exist")
' "$ALIAS"
}

step "Installing the KmsAlias CRD"
kubectl apply -f crds/
kubectl wait --for=condition=Established crd/kmsaliases.kms.aliasoperator.dev --timeout=60s

step "Starting the operator"
ALIBABA_CLOUD_ACCESS_KEY_ID=demo-id ALIBABA_CLOUD_ACCESS_KEY_SECRET=demo-secret \
  "$target/kms-alias-operator" run --region "$REGION" --kms-endpoint "$kms" --allow-insecure-http \
  --http-addr 127.0.0.1:0 >"$work/operator.log" 2>&1 &
pids+=($!)

step "kubectl apply -f examples/kmsalias.yaml"
kubectl apply -f examples/kmsalias.yaml
kubectl wait --for=condition=Ready kmsalias/test-kms-alias --timeout=60s
kubectl get kmsaliases -o wide
show_kms

step "Re-pointing the alias to $KEY2"
kubectl patch kmsalias test-kms-alias --type=merge -p "{\"spec\":{\"keyId\":\"$KEY2\"}}"
kubectl wait --for=jsonpath='{.status.keyId}'="$KEY2" kmsalias/test-kms-alias --timeout=60s
kubectl wait --for=condition=Ready kmsalias/test-kms-alias --timeout=60s
kubectl get kmsaliases -o wide
show_kms

step "Deleting the KmsAlias"
kubectl delete -f examples/kmsalias.yaml --timeout=60s
kubectl get kmsaliases
show_kms
kubectl get events --field-selector involvedObject.name=test-kms-alias \
  -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message 2>/dev/null || true

step "Demo finished; stopping the operator, the emulator and the control plane"
