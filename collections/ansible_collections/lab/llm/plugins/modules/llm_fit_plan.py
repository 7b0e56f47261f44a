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
  - The model comes as a Hugging Face Hub id or local path in O(model.name) (the planner reads its C(config.json),
    quantization config and safetensors index, honouring C(HF_HOME), C(HF_TOKEN), C(HF_HUB_OFFLINE)), or as
    C(config.json) fields in O(model.config), or as a file in O(model.config_path).
  - The GPUs come from what Stages 1-2 found (O(discovered_gpus), PCI device ids mapped to GPU classes by one table;
    an unknown id is an error naming it); O(inventory) overrides nodes by name and sets the network. Without
    discovered GPUs, O(inventory) lists them all.
  - Runs where the C(lab-llm) Python package is installed, normally the controller (C(delegate_to=localhost)), and
    fails when that package is older than the collection needs. Changes nothing.
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
        description:
          - What vLLM loads (a Hugging Face Hub id C(ORG/NAME), or a path on the GPU nodes); becomes
            C(engine_config.model).
          - Without O(model.config) and O(model.config_path), the planner reads the model from here (the Hub, or a
            local directory on the host that runs the module).
        type: str
      revision:
        description: Branch, tag or commit of a Hub model. Default the Hub's default branch.
        type: str
      served_model_name:
        description: Name clients use; default the last part of O(model.name).
        type: str
      config:
        description:
          - The fields of the model's C(config.json) (C(num_hidden_layers), C(hidden_size), C(num_attention_heads),
            C(num_key_value_heads), C(head_dim), C(intermediate_size), C(vocab_size), C(tie_word_embeddings),
            C(num_local_experts), C(num_experts_per_tok), C(max_position_embeddings), ...).
          - At most one of O(model.config) and O(model.config_path).
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
        description: KV cache element type; C(auto) (the planner's default) is the activation type (16-bit).
        type: str
        choices: [auto, fp16, bf16, fp8]
      context_length:
        description:
          - Wanted C(max_model_len).
          - Default the longest the chosen layout holds at O(model.concurrency) (at least 4096). Layouts are ranked by
            speed and GPU count first, so a larger layout with a longer context is not preferred; ask for a context
            to get one.
        type: int
      concurrency:
        description: How many requests of O(model.context_length) tokens the KV cache must hold at once (planner
          default 1).
        type: int
  discovered_gpus:
    description:
      - What Stages 1-2 found, one entry per GPU VM (or host) with its cards. C(playbooks/fit_plan.yml) builds it
        from C(hostvars[pve_node].lab_llm_gpus) (role C(lab.llm.proxmox_gpu_host)) or C(gpu_vm_gpus).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The node (GPU VM) that got the cards.
        type: str
        required: true
      host:
        description: The Proxmox node the cards sit in, for messages.
        type: str
      gpus:
        description:
          - The cards, as C(lab_llm_gpus) items (C(address), C(functions[].vendor_id), C(functions[].device_id),
            C(functions[].class)) or C(gpu_vm_gpus) items (C(path), C(id) as C(VENDOR:DEVICE)).
        type: list
        elements: dict
        required: true
  inventory:
    description:
      - The GPUs, as C(lab_llm_gpu_inventory) in the inventory. With O(discovered_gpus), its nodes replace the
        discovered node of the same name (a difference is reported in the plan's notes) or add nodes.
    type: dict
    default: {}
    suboptions:
      nodes:
        description: Hosts (or VMs) with GPUs. PP stages may span nodes; TP groups stay inside one.
        type: list
        elements: dict
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
    description:
      - What the plan may use. An option left out takes the planner's default (C(lab_llm.plan.Limits), the one
        place they are defined; C(lab-llm plan --help) prints them).
    type: dict
    default: {}
    suboptions:
      gpu_memory_utilization:
        description: Ceiling of vLLM's C(gpu_memory_utilization) (planner default 0.95); lowered further so each
          card keeps room for its CUDA context.
        type: float
      cpu_offload_gib:
        description: CPU RAM per GPU the plan may offload weights to (vLLM C(cpu_offload_gb)); 0 (the default) never
          offloads.
        type: float
      allow_tp_over_network:
        description: Let a tensor-parallel group span nodes (two all-reduces per layer over the network); default no.
        type: bool
      max_num_seqs:
        description: vLLM C(max_num_seqs) (default 256); sizes the sampler's memory.
        type: int
      max_num_batched_tokens:
        description: vLLM C(max_num_batched_tokens) (default 2048); sizes the activation memory of the profiling
          pass.
        type: int
      enforce_eager:
        description: No CUDA graphs (saves their memory, costs speed); default no.
        type: bool
notes:
  - The plan is returned and also set as the fact C(lab_llm_fit_plan).
seealso:
  - name: vLLM parallelism and scaling
    description: TP inside a node, PP across nodes.
    link: https://docs.vllm.ai/en/latest/serving/parallelism_scaling.html
"""

EXAMPLES = r"""
- name: Fit the reference lab's model (Dolphin3.0-R1-Mistral-24B-AWQ) to its GPUs
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

- name: A Hub model on the GPUs Stage 1 found (one entry per GPU VM)
  lab.llm.llm_fit_plan:
    model:
      name: Qwen/Qwen2.5-32B-Instruct-AWQ
      context_length: 32768
    discovered_gpus:
      - name: gpu-3090-1
        host: pve2
        gpus: "{{ hostvars['pve2'].lab_llm_gpus }}"
    inventory:
      network: 10gbe
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
    weights_check:
      description: The weight arithmetic against the checkpoint's safetensors index (C(checkpoint_gib),
        C(computed_gib), C(difference_percent), C(agrees)), or null without an index.
      type: dict
vllm_serve:
  description: The same engine as a C(vllm serve) command line (environment first).
  returned: success
  type: str
  sample: VLLM_PP_LAYER_PARTITION=20,20 vllm serve org/model --tensor-parallel-size 1 --pipeline-parallel-size 2
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

from typing import Any

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lab.llm.plugins.module_utils.fit_plan import (
    KV_CACHE_DTYPES,
    LAB_LLM_IMPORT_ERROR,
    WEIGHT_DTYPES,
    FitPlanError,
    FitPlanRunner,
)
from ansible_collections.lab.llm.plugins.module_utils.requirements import missing_library


def argument_spec() -> dict[str, Any]:
    link = dict(type="raw")
    return dict(
        model=dict(
            type="dict",
            required=True,
            options=dict(
                name=dict(type="str"),
                revision=dict(type="str"),
                served_model_name=dict(type="str"),
                config=dict(type="dict"),
                config_path=dict(type="path"),
                weights=dict(type="str", choices=list(WEIGHT_DTYPES)),
                group_size=dict(type="int"),
                kv_cache_dtype=dict(type="str", choices=list(KV_CACHE_DTYPES)),
                context_length=dict(type="int"),
                concurrency=dict(type="int"),
            ),
            mutually_exclusive=[["config", "config_path"]],
            required_one_of=[["name", "config", "config_path"]],
        ),
        discovered_gpus=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(
                name=dict(type="str", required=True),
                host=dict(type="str"),
                gpus=dict(type="list", elements="dict", required=True),
            ),
        ),
        inventory=dict(
            type="dict",
            default={},
            options=dict(
                nodes=dict(
                    type="list",
                    elements="dict",
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
                gpu_memory_utilization=dict(type="float"),
                cpu_offload_gib=dict(type="float"),
                allow_tp_over_network=dict(type="bool"),
                max_num_seqs=dict(type="int"),
                max_num_batched_tokens=dict(type="int", no_log=False),
                enforce_eager=dict(type="bool"),
            ),
        ),
    )


def main() -> None:
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if LAB_LLM_IMPORT_ERROR is not None:
        module.fail_json(
            msg=missing_library("lab-llm", reason="to plan on the host that runs lab.llm.llm_fit_plan"),
            exception=LAB_LLM_IMPORT_ERROR,
        )
    try:
        result = FitPlanRunner(module.params).run()
    except FitPlanError as error:
        module.fail_json(msg=str(error), **error.details)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
