#!/usr/bin/env bash
# Build the peers' own venvs for bench/sense.py, never in the project's venv:
#   bench/work/venv-imagededup  imagededup 0.3.3.post2 with torch 2.14.1 / torchvision 0.29.1
#                               (the pinned pair pip finds as local wheels; ~5.5 GB)
#   bench/work/venv-fastdup     fastdup 2.54 (pins numpy<2 and scikit-learn==1.5.0; ships
#                               its ONNX model)
#   bench/work/venv-cleanvision cleanvision 0.3.7 (only with --cleanvision: not a speed peer)
# A venv that already imports its tool is kept. Usage:
#   bash bench/peers/setup.sh [--cleanvision]
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=bench/work
mkdir -p "$WORK"

make_venv() {  # name, import check, pip args...
    local name=$1 check=$2
    shift 2
    local venv="$WORK/venv-$name"
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$check" 2>/dev/null; then
        echo "$name: $venv is ready"
        return
    fi
    echo "+ python3 -m venv $venv && pip install $*"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "$@"
    "$venv/bin/python" -c "$check"
    echo "$name: $venv installed"
}

make_venv imagededup "import imagededup, torch, psutil" \
    imagededup==0.3.3.post2 torch==2.14.1 torchvision==0.29.1 psutil
make_venv fastdup "import fastdup, psutil" fastdup==2.54 psutil
if [ "${1:-}" = "--cleanvision" ]; then
    make_venv cleanvision "import cleanvision, psutil" cleanvision==0.3.7 psutil
fi
