#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: llm_fit_plan
short_description: Fit a model to the GPUs - a vLLM layout that fits, or why it does not
version_added: "0.1.0"
description:
  - Plans how vLLM runs a model on the GPU inventory, before anything is deployed. Chooses
    C(tensor_parallel_size) (inside a node unless O(limits.allow_tp_over_network=true)) and
    C(pipeline_parallel_size), which GPUs form each pipeline stage, an uneven layer split
    (C(VLLM_PP_LAYER_PARTITION)) when the cards differ, C(gpu_memory_utilization), C(max_model_len) and the KV cache
    it leaves, and C(cpu_offload_gb) when allowed and needed. Among the layouts that fit it picks the fastest
    single-stream decode (a memory-bandwidth estimate); within 3% of it, the one with fewer GPUs.
  - Weights and KV cache per token are exact arithmetic from the model's C(config.json); activations, CUDA graphs
    and runtime memory are estimates with margins (see the C(lab_llm.plan) package and the README's Fit planner).
  - Fails with the reasons and the cheapest changes that would fit (shorter context, fp8 KV cache, 4-bit weights,
    CPU offload, one more GPU) when nothing fits, so a playbook stops before it deploys.
  - Runs where the C(lab-llm) Python package is installed, normally the controller (C(delegate_to=localhost)).
    Changes nothing.
author:
  - lab-llm developers (@lab-llm)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
requirements:
  - lab-llm (the project's Python package, C(pip install lab-llm) or C(pip install -e .) in a checkout) on the
    host that runs the module
attributes:
  check_mode:
    support: full
    details: The module only computes; it behaves the same in check mode.
  diff_mode:
    support: none
    details: Nothing changes, so there is nothing to diff.
  platform:
    platforms: posix
options:
  model:
    description: The model, as C(lab_llm_model) in the inventory.
    type: dict
    required: true
    suboptions:
      name:
        description: What vLLM loads (a hub id, or a path on the GPU nodes); becomes C(engine_config.model).
        type: str
      served_model_name:
        description: Name clients use; default the last part of O(model.name).
        type: str
      config:
        description:
          - The fields of the model's C(config.json) (C(num_hidden_layers), C(hidden_size), C(num_attention_heads),
            C(num_key_value_heads), C(head_dim), C(intermediate_size), C(vocab_size), C(tie_word_embeddings),
            C(num_local_experts), C(num_experts_per_tok), C(max_position_embeddings), ...).
          - Exactly one of O(model.config) and O(model.config_path).
        type: dict
      config_path:
        description: A C(config.json), or its directory, on the host that runs the module.
        type: path
      weights:
        description: How the checkpoint stores weights. Default the checkpoint's C(quantization_config), else C(bf16).
        type: str
        choices: [fp16, bf16, fp8, awq, gptq]
      group_size:
        description: AWQ/GPTQ group size. Default the checkpoint's, else 128.
        type: int
      kv_cache_dtype:
        description: KV cache element type; C(auto) is the activation type (16-bit).
        type: str
        choices: [auto, fp16, bf16, fp8]
        default: auto
      context_length:
        description: Wanted C(max_model_len). Default the longest that fits (at least 4096).
        type: int
      concurrency:
        description: How many requests of O(model.context_length) tokens the KV cache must hold at once.
        type: int
        default: 1
  inventory:
    description: The GPUs, as C(lab_llm_gpu_inventory) in the inventory.
    type: dict
    required: true
    suboptions:
      nodes:
        description: Hosts (or VMs) with GPUs. PP stages may span nodes; TP groups stay inside one.
        type: list
        elements: dict
        required: true
        suboptions:
          name:
            description: Node name.
            type: str
            required: true
          gpus:
            description:
              - Cards of the node, each C(class) (for example C(rtx-3090); known classes need nothing else) and,
                for other classes, C(memory_gib) (marketing size) and C(bandwidth_gbs).
            type: list
            elements: dict
            required: true
          link:
            description: Link between the node's GPUs, C(pcie) when not given, or C(nvlink), or a dict with
              C(name), C(bandwidth_gbs), C(latency_us).
            type: raw
      network:
        description: Link between nodes, C(10gbe) when not given; C(1gbe), C(25gbe), C(100gbe), C(infiniband), or a
          dict with C(name), C(bandwidth_gbs), C(latency_us).
        type: raw
  limits:
    description: What the plan may use.
    type: dict
    default: {}
    suboptions:
      gpu_memory_utilization:
        description: Ceiling of vLLM's C(gpu_memory_utilization); lowered further so each card keeps room for its
          CUDA context.
        type: float
        default: 0.95
      cpu_offload_gib:
        description: CPU RAM per GPU the plan may offload weights to (vLLM C(cpu_offload_gb)); 0 never offloads.
        type: float
        default: 0
      allow_tp_over_network:
        description: Let a tensor-parallel group span nodes (two all-reduces per layer over the network).
        type: bool
        default: false
      max_num_seqs:
        description: vLLM C(max_num_seqs); sizes the sampler's memory.
        type: int
        default: 256
      max_num_batched_tokens:
        description: vLLM C(max_num_batched_tokens); sizes the activation memory of the profiling pass.
        type: int
        default: 2048
      enforce_eager:
        description: No CUDA graphs (saves their memory, costs speed).
        type: bool
        default: false
notes:
  - The plan is returned and also set as the fact C(lab_llm_fit_plan).
seealso:
  - name: vLLM parallelism and scaling
    description: TP inside a node, PP across nodes.
    link: https://docs.vllm.ai/en/latest/serving/parallelism_scaling.html
"""

EXAMPLES = r"""
- name: Fit the seed's model to the reference lab
  lab.llm.llm_fit_plan:
    model:
      name: cognitivecomputations/Dolphin3.0-R1-Mistral-24B-AWQ
      weights: awq
      context_length: 32768
      config:
        hidden_size: 5120
        intermediate_size: 32768
        num_hidden_layers: 40
        num_attention_heads: 32
        num_key_value_heads: 8
        head_dim: 128
        vocab_size: 131072
        max_position_embeddings: 32768
    inventory:
      network: 10gbe
      nodes:
        - name: gpu-3060-1
          gpus: [{class: rtx-3060}]
        - name: gpu-3090-1
          gpus: [{class: rtx-3090}]
    limits:
      gpu_memory_utilization: 0.97
  delegate_to: localhost
  run_once: true
  register: fit

- name: Use the engine config
  ansible.builtin.debug:
    msg: "{{ fit.plan.engine_config }}"

- name: From the inventory variables, with a config.json on the controller
  lab.llm.llm_fit_plan:
    model: "{{ lab_llm_model | combine({'config_path': playbook_dir ~ '/../models/config.json'}) }}"
    inventory: "{{ lab_llm_gpu_inventory }}"
  delegate_to: localhost
"""

RETURN = r"""
plan:
  description: The plan; see the C(lab_llm.plan) package docstring for every field.
  returned: success
  type: dict
  contains:
    tensor_parallel_size:
      description: TP size.
      type: int
      sample: 1
    pipeline_parallel_size:
      description: PP size.
      type: int
      sample: 2
    stages:
      description: Per stage, its GPUs (C(node), C(index), C(gpu_class)) and layers.
      type: list
      elements: dict
    layer_partition:
      description: Layers per stage, as C(VLLM_PP_LAYER_PARTITION) has them.
      type: list
      elements: int
      sample: [20, 20]
    gpu_memory_utilization:
      description: One value for every worker.
      type: float
      sample: 0.97
    max_model_len:
      description: Context length the engine is configured with.
      type: int
      sample: 32768
    kv_cache_tokens:
      description: Tokens the KV cache holds (the most constrained worker's blocks times 16).
      type: int
      sample: 185952
    gpus:
      description: Per GPU, GiB of C(total), C(weights), C(kv_cache), C(activations), C(overhead), C(free).
      type: list
      elements: dict
    decode:
      description: Estimated single-stream decode speed, C(tokens_per_s), and its parts in ms.
      type: dict
    engine_config:
      description: Fields of the serving app's C(engine) config (lab_llm.config.EngineConfig).
      type: dict
      sample:
        model: cognitivecomputations/Dolphin3.0-R1-Mistral-24B-AWQ
        tensor_parallel_size: 1
        pipeline_parallel_size: 2
        gpu_memory_utilization: 0.97
        max_model_len: 32768
        env: {VLLM_PP_LAYER_PARTITION: "20,20"}
    worker_groups:
      description: RayService worker groups, C(gpu_class), C(replicas), C(gpus_per_worker).
      type: list
      elements: dict
      sample: [{gpu_class: rtx-3090, replicas: 2, gpus_per_worker: 1}]
    ray_placement_bundles:
      description: One Ray bundle per rank in rank order, with a custom resource named after the GPU class.
      type: list
      elements: dict
    alternatives:
      description: Other layouts that fit, fastest first.
      type: list
      elements: dict
    notes:
      description: Things to know about the plan.
      type: list
      elements: str
ansible_facts:
  description: Facts set by the module.
  returned: success
  type: dict
  contains:
    lab_llm_fit_plan:
      description: The same as RV(plan).
      type: dict
reasons:
  description: Why the model does not fit.
  returned: when the model does not fit
  type: list
  elements: str
suggestions:
  description: Changes that would make it fit, cheapest first, each C(change), C(description), C(cost_rank), C(layout).
  returned: when the model does not fit
  type: list
  elements: dict
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

LAB_LLM_IMPORT_ERROR = None
try:
    from lab_llm.plan import DoesNotFitError, PlanInputError
    from lab_llm.plan.spec import plan_from_spec
except ImportError:
    LAB_LLM_IMPORT_ERROR = traceback.format_exc()


def argument_spec():
    link = dict(type="raw")
    return dict(
        model=dict(
            type="dict",
            required=True,
            options=dict(
                name=dict(type="str"),
                served_model_name=dict(type="str"),
                config=dict(type="dict"),
                config_path=dict(type="path"),
                weights=dict(type="str", choices=["fp16", "bf16", "fp8", "awq", "gptq"]),
                group_size=dict(type="int"),
                kv_cache_dtype=dict(type="str", choices=["auto", "fp16", "bf16", "fp8"], default="auto"),
                context_length=dict(type="int"),
                concurrency=dict(type="int", default=1),
            ),
            mutually_exclusive=[["config", "config_path"]],
            required_one_of=[["config", "config_path"]],
        ),
        inventory=dict(
            type="dict",
            required=True,
            options=dict(
                nodes=dict(
                    type="list",
                    elements="dict",
                    required=True,
                    options=dict(
                        name=dict(type="str", required=True),
                        gpus=dict(type="list", elements="dict", required=True),
                        link=link,
                    ),
                ),
                network=link,
            ),
        ),
        limits=dict(
            type="dict",
            default={},
            options=dict(
                gpu_memory_utilization=dict(type="float", default=0.95),
                cpu_offload_gib=dict(type="float", default=0.0),
                allow_tp_over_network=dict(type="bool", default=False),
                max_num_seqs=dict(type="int", default=256),
                max_num_batched_tokens=dict(type="int", default=2048, no_log=False),
                enforce_eager=dict(type="bool", default=False),
            ),
        ),
    )


def without_none(value):
    """Ansible fills unset suboptions with None; the planner treats absent and unset alike only if absent."""
    if isinstance(value, dict):
        return dict((key, without_none(item)) for key, item in value.items() if item is not None)
    if isinstance(value, list):
        return [without_none(item) for item in value]
    return value


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if LAB_LLM_IMPORT_ERROR is not None:
        module.fail_json(
            msg=missing_required_lib("lab-llm", reason="to plan on the host that runs lab.llm.llm_fit_plan"),
            exception=LAB_LLM_IMPORT_ERROR,
        )
    params = without_none(module.params)
    try:
        plan = plan_from_spec(params["model"], params["inventory"], params.get("limits") or {})
    except PlanInputError as error:
        module.fail_json(msg="lab.llm.llm_fit_plan: bad input: %s" % error)
    except DoesNotFitError as error:
        details = error.as_dict()
        module.fail_json(msg=str(error), reasons=details["reasons"], suggestions=details["suggestions"])
    result = plan.model_dump(mode="json")
    module.exit_json(changed=False, plan=result, ansible_facts=dict(lab_llm_fit_plan=result))


if __name__ == "__main__":
    main()
