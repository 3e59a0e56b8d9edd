#!/usr/bin/env bash
# The README's main job: run the ETL example workflow.
set -euo pipefail
cd "$(dirname "$0")/.."
taskloom run examples/etl/taskloom.toml
