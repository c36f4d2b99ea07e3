#!/usr/bin/env bash
# Lints the Helm chart and checks that its CRD is the generated one under crds/.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(hack/build-control-plane.sh)
chart=charts/kms-alias-operator
if ! diff -r crds "$chart/crds" >/dev/null; then
  echo "the chart's CRDs differ from crds/: run 'make crds'" >&2
  exit 1
fi
"$bin/helm" lint "$chart"
"$bin/helm" template test "$chart" >/dev/null
echo "chart: lint and CRD check passed"
