# -*- coding: utf-8 -*-
# Copyright: lab-llm developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The flow of lab.llm.k8s_wait: watch one object until it is in the state of a named condition, or, in check
mode, read it once and say what a real run would wait for.

The conditions and their predicates come from ``waiter.py``. Check mode does not wait, as kubernetes.core.k8s skips
its wait in check mode (the objects a check run would create are not there).
"""

from __future__ import annotations

from typing import Any

from ansible_collections.lab.llm.plugins.module_utils.k8s import waiter
from ansible_collections.lab.llm.plugins.module_utils.k8s.client import connect
from ansible_collections.lab.llm.plugins.module_utils.k8s.exceptions import object_ref
from ansible_collections.lab.llm.plugins.module_utils.k8s.service import K8sService


class WaitRunner:
    """Waits for ``params["condition"]`` (a name of ``waiter.CONDITIONS``) on one object; changes nothing.

    ``params`` are the module's (``condition``, ``name``, ``namespace``, ``gpus``, ``timeout`` in seconds, and the
    connection options); ``namespace`` is used only for a namespaced condition's kind.
    """

    def __init__(self, params: dict[str, Any], check_mode: bool) -> None:
        self.params = params
        self.check_mode = check_mode
        self.condition = waiter.CONDITIONS[params["condition"]]
        self.predicate = self.condition.predicate(params)
        self.namespace = params["namespace"] if self.condition.namespaced else None

    def run(self) -> dict[str, Any]:
        """The module result: ``changed`` (always False), ``ready`` and ``state`` (the predicate's account of the
        object); in check mode also ``msg``. Raises K8sError (WaitTimeout, WaitFailed) naming the object when the
        cluster cannot be reached, does not serve the kind, or the wait ends without the condition holding."""
        service = K8sService(connect(self.params))
        if self.check_mode:
            return self.look(service)
        api_version, kind = self.condition.api_version, self.condition.kind
        obj = waiter.wait_for(
            service, api_version, kind, self.params["name"], self.namespace, self.predicate, self.params["timeout"]
        )
        return dict(changed=False, ready=True, state=self.predicate(obj)[2])

    def look(self, service: K8sService) -> dict[str, Any]:
        """One read, no wait: whether the condition already holds, and what a real run would wait for."""
        condition, params = self.condition, self.params
        done, failure, state = waiter.look_once(
            service, condition.api_version, condition.kind, params["name"], self.namespace, self.predicate
        )
        return dict(
            changed=False,
            ready=done,
            state=failure or state,
            msg="check mode, not waited: a real run waits up to %ss for %s (%s); now: %s"
            % (
                params["timeout"],
                object_ref(condition.kind, params["name"], self.namespace),
                params["condition"],
                failure or state,
            ),
        )
