#!/usr/bin/env bash
# The README's main job: run the example workflow.
set -euo pipefail
cd "$(dirname "$0")/.."
python examples/quickstart/pipeline.py
