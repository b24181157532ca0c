#!/usr/bin/env bash
# Regenerate the committed collector sources (go.mod, go.sum, main*.go, components.go)
# from builder-config.yaml with the OpenTelemetry Collector Builder at the pinned release.
# Only needed when builder-config.yaml changes; build-tools.sh never runs this.
#
# The builder writes the replace for the local servicegraph connector as
# "=> servicegraphconnector", which go rejects (it needs "./"), so its own `go mod tidy`
# fails; go.mod is already written by then, so that line is fixed here and module
# resolution is finished with go mod tidy, then every pinned version is checked.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
# shellcheck source-path=SCRIPTDIR source=../tools/versions.env
source "$here/../tools/versions.env"
ocb_dir="${EXAI_TOOLS_DIR:-$HOME/.cache/exai/tools}/ocb-${OTELCOL_VERSION}"
if [[ ! -x "$ocb_dir/builder" ]]; then
  echo "[otelcol] installing builder v${OTELCOL_VERSION} into $ocb_dir"
  GOBIN="$ocb_dir" GOFLAGS=-mod=mod go install "go.opentelemetry.io/collector/cmd/builder@v${OTELCOL_VERSION}"
fi
rm -f go.mod go.sum
"$ocb_dir/builder" --config builder-config.yaml --skip-compilation >/dev/null 2>&1 || true
[[ -f go.mod ]] || { echo "[otelcol] builder did not write go.mod" >&2; exit 1; }
sed -i -E 's#=> (servicegraphconnector)$#=> ./\1#' go.mod
(cd servicegraphconnector && GOFLAGS=-mod=mod go mod tidy)
GOFLAGS=-mod=mod go mod tidy -compat=1.25
# Strict versioning: every module named in builder-config.yaml resolves to exactly its version.
bad=0
while read -r mod ver; do
  got="$(go list -m -f '{{.Version}}' "$mod")"
  if [[ "$got" != "$ver" ]]; then echo "[otelcol] $mod resolved to $got, want $ver" >&2; bad=1; fi
done < <(sed -n -E 's/^ *(- )?gomod: *([^ ]+) +(v[^ ]+) *$/\2 \3/p' builder-config.yaml)
[[ $bad == 0 ]] || exit 1
echo "[otelcol] regenerated; now check: go build ./... && ../build-tools.sh path otelcol"
