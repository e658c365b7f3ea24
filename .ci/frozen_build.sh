#!/usr/bin/env bash
# Build the clinic installer and prove the frozen app works:
#   1. pyinstaller --noconfirm --clean build.spec  ->  dist/cxrviewer/  (work files in build/)
#   2. dist/cxrviewer/cxrviewer --selftest <data>/dicom   (every DICOM through loader, model,
#      Grad-CAM; JPEG 2000 / JPEG Baseline / RLE round trips through the bundled plugins)
#   3. QT_QPA_PLATFORM=offscreen dist/cxrviewer/cxrviewer --smoke-test   (window shows, quits)
# Prints the build time and the app size. Exit status: 0 only if all three passed.
#
# Usage: .ci/frozen_build.sh [DICOM_FOLDER]     (default: ${CXR_DATA:-../shared/data}/dicom)
# Env:   PYTHON                 interpreter with the project's dependencies (default .venv/bin/python)
#        CXRVIEWER_REUSE_BUILD=1  keep an existing dist/cxrviewer whose build stamp matches the
#                                 current sources and packages (the slow test sets it)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
data=${1:-${CXR_DATA:-../shared/data}/dicom}
app=dist/cxrviewer/cxrviewer
export TF_CPP_MIN_LOG_LEVEL=2

# --- 1. build ------------------------------------------------------------------------
start=$SECONDS
if [[ "${CXRVIEWER_REUSE_BUILD:-0}" == 1 ]] && "$py" packaging/build_stamp.py --check dist/cxrviewer; then
  echo "frozen build: reusing dist/cxrviewer (its build stamp matches the sources and packages)"
else
  "$py" -m PyInstaller --noconfirm --clean --log-level WARN build.spec
  echo "frozen build: built in $((SECONDS - start)) s"
  rm -rf build/build  # PyInstaller's work folder (named after build.spec); the app does not need it
fi
echo "frozen build: app size $(du -sh dist/cxrviewer | cut -f1) (dist/cxrviewer, $(find dist/cxrviewer -type f | wc -l) files)"

# --- 2. self-test ------------------------------------------------------------------------
model_args=()
if [[ ! -f models/cxr14-densenet121.keras ]]; then
  echo "frozen build: WARNING: no shipped model in models/; the self-test and smoke test use a"
  echo "frozen build: randomly initialised DenseNet121 stand-in (packaging/standin_model.py)"
  standin=$("$py" packaging/standin_model.py build/standin-model 2>/dev/null | tail -n 1)
  model_args=(--model "$standin")
fi
"$app" --selftest "$data" "${model_args[@]}" || { echo "frozen build: self-test FAILED"; exit 1; }

# --- 3. window smoke test (offscreen) ---------------------------------------------------------
config=$(mktemp -d)  # the viewer's settings go here, not into the CI user's home
trap 'rm -rf "$config"' EXIT
rc=0
launched=$(date +%s.%N)
smoke=$(QT_QPA_PLATFORM=offscreen XDG_CONFIG_HOME="$config" timeout 300 "$app" --smoke-test "${model_args[@]}" 2>&1) || rc=$?
if (( rc != 0 )); then
  echo "$smoke"; echo "frozen build: smoke test FAILED (exit $rc)"; exit 1
fi
echo "$smoke" | grep -v '^CXRVIEWER_WINDOW_SHOWN' || true
if ! grep -q '^CXRVIEWER_WINDOW_SHOWN' <<<"$smoke"; then
  echo "frozen build: smoke test FAILED: the window never reported that it was shown"; exit 1
fi
shown=$(grep '^CXRVIEWER_WINDOW_SHOWN' <<<"$smoke" | head -n 1 | cut -d' ' -f2)
echo "frozen build: smoke test passed (window shown offscreen $(awk -v a="$launched" -v b="$shown" 'BEGIN { printf "%.2f", b - a }') s after launch, app quit)"
echo "frozen build: all checks passed in $((SECONDS - start)) s"
