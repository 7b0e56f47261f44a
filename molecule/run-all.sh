#!/usr/bin/env bash
# Run every molecule scenario (molecule/<scenario>/molecule.yml) against the locally built Debian 12
# image; exit non-zero when any scenario fails. `make molecule` runs setup-host.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -x .venv/bin/molecule ]]; then
  PATH="$PWD/.venv/bin:$PATH"
fi

started=$SECONDS
LAB_LLM_MOLECULE_IMAGE=$(bash molecule/build-image.sh)
export LAB_LLM_MOLECULE_IMAGE
# Scenario ray_cluster mounts the project's .venv into its containers; the venv's Python must be there too, at the
# same path. A Python from /usr is the image's own (Debian 12's 3.11), so then mount something harmless instead.
export LAB_LLM_MODEL_DIR=${LAB_LLM_MODEL_DIR:-$HOME/.cache/lab-llm/models/tiny-llama}
python_home=$(.venv/bin/python -c 'import sys; print(sys.base_prefix)' 2>/dev/null || echo /usr)
if [[ $python_home == /usr ]]; then
  export LAB_LLM_PYTHON_MOUNT="$PWD/molecule/ray_cluster:/opt/lab-llm-unused"
else
  export LAB_LLM_PYTHON_MOUNT="$python_home:$python_home"
fi
echo "run-all: image $LAB_LLM_MOLECULE_IMAGE ready after $((SECONDS - started)) s"

scenarios=()
for config in molecule/*/molecule.yml; do
  scenario=$(basename "$(dirname "$config")")
  # ray_cluster (two hosts, real Ray + vLLM, the longest scenario) runs by default; LAB_LLM_MOLECULE_RAY_CLUSTER=0
  # leaves it out.
  if [[ $scenario == ray_cluster && ${LAB_LLM_MOLECULE_RAY_CLUSTER:-1} == 0 ]]; then
    continue
  fi
  scenarios+=("$scenario")
done
if (($# > 0)); then
  scenarios=("$@")
fi

failed=()
for scenario in "${scenarios[@]}"; do
  scenario_started=$SECONDS
  if molecule test -s "$scenario"; then
    echo "run-all: $scenario passed in $((SECONDS - scenario_started)) s"
  else
    echo "run-all: $scenario FAILED after $((SECONDS - scenario_started)) s"
    failed+=("$scenario")
  fi
done

echo "run-all: ${#scenarios[@]} scenario(s) in $((SECONDS - started)) s; failed: ${failed[*]:-none}"
((${#failed[@]} == 0))
