#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: k8s_wait
short_description: Wait, by watching, until a Kubernetes object the lab depends on is ready
version_added: "0.1.0"
description:
  - Watches one object until it reaches the state of O(condition), or fails after O(timeout) naming the object and
    the state it was last seen in.
  - C(node_ready) waits for a Node's C(Ready) condition; C(node_gpus) for O(gpus) C(nvidia.com/gpu) in a Node's
    capacity (the device plugin runs); C(deployment_available) for all replicas of a Deployment updated and
    available; C(cluster_policy_ready) for the NVIDIA GPU Operator's ClusterPolicy C(status.state=ready).
  - Never changes anything.
  - In check mode it does not wait, as C(kubernetes.core.k8s) does not wait in check mode (the objects a check run
    would create are not there). It reads the object once and says what a real run would wait for, and whether that
    already holds (RV(ready)).
author:
  - lab-llm developers (@lab-llm)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - lab.llm.k8s_auth
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  condition:
    description: What to wait for.
    type: str
    required: true
    choices: [node_ready, node_gpus, deployment_available, cluster_policy_ready]
  name:
    description: Name of the object.
    type: str
    required: true
  namespace:
    description: Namespace, for C(deployment_available).
    type: str
  gpus:
    description: Minimum C(nvidia.com/gpu) capacity for C(node_gpus).
    type: int
    default: 1
  timeout:
    description: Seconds to wait.
    type: int
    default: 600
"""

EXAMPLES = r"""
- name: Wait for the GPU of gpu-3090-1 to be schedulable
  lab.llm.k8s_wait:
    condition: node_gpus
    name: gpu-3090-1
    timeout: 900
  delegate_to: localhost
"""

RETURN = r"""
state:
  description: How the object was seen when the wait ended (in check mode, when it was read).
  returned: success
  type: str
  sample: capacity nvidia.com/gpu=1
ready:
  description: Whether the object is in the state of O(condition); always true after a real run that did not fail.
  returned: success
  type: bool
  sample: true
msg:
  description: In check mode, what a real run would wait for and how the object is now.
  returned: check mode
  type: str
  sample: "check mode, not waited: a real run waits up to 600s for Node gpu-1 (node_gpus); now: Node not registered yet"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.lab.llm.plugins.module_utils.k8s.client import AUTH_ARG_SPEC
from ansible_collections.lab.llm.plugins.module_utils.k8s.exceptions import K8sError
from ansible_collections.lab.llm.plugins.module_utils.k8s.wait_runner import WaitRunner
from ansible_collections.lab.llm.plugins.module_utils.k8s.waiter import CONDITIONS


def argument_spec() -> dict:
    spec = dict(
        condition=dict(type="str", required=True, choices=sorted(CONDITIONS)),
        name=dict(type="str", required=True),
        namespace=dict(type="str"),
        gpus=dict(type="int", default=1),
        timeout=dict(type="int", default=600),
    )
    spec.update(AUTH_ARG_SPEC)
    return spec


def main() -> None:
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        required_if=[("condition", name, ("namespace",)) for name, found in CONDITIONS.items() if found.namespaced],
    )
    try:
        result = WaitRunner(module.params, module.check_mode).run()
    except K8sError as error:
        module.fail_json(msg=str(error))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
