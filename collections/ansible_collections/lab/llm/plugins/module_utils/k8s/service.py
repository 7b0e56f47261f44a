# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find, apply (server-side, field manager `lab-llm`), delete and diff Kubernetes objects."""

from __future__ import annotations

import copy
import json
from typing import Any

from ansible_collections.lab.llm.plugins.module_utils.k8s.exceptions import K8sError, object_ref

try:
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError
except ImportError:  # reported by client.connect()
    ApiException = DynamicApiError = ResourceNotFoundError = Exception  # type: ignore[misc,assignment]

FIELD_MANAGER = "lab-llm"
# Fields the server owns: they change without anyone changing what we asked for.
_SERVER_METADATA = ("managedFields", "resourceVersion", "generation", "creationTimestamp", "uid", "selfLink")


def comparable(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of an object a user sets: metadata without server bookkeeping, no status."""
    if obj is None:
        return None
    view = copy.deepcopy(obj)
    view.pop("status", None)
    metadata = view.get("metadata", {})
    for key in _SERVER_METADATA:
        metadata.pop(key, None)
    annotations = metadata.get("annotations")
    if annotations is not None:
        annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
        if not annotations:
            metadata.pop("annotations")
    return view


_STATUS_WORDS = {409: "conflict", 422: "rejected as invalid", 403: "forbidden", 404: "not found"}


def _api_error(error: Exception, kind: str, name: str | None, namespace: str | None) -> K8sError:
    """A K8sError naming the object and, for invalid objects, each field the API server rejected."""
    status = getattr(error, "status", None)
    body = getattr(error, "body", None) or ""
    try:
        details = json.loads(body)
    except (TypeError, ValueError):
        details = {}
    message = details.get("message") or getattr(error, "reason", None) or str(error)
    causes = (details.get("details") or {}).get("causes") or []
    fields = ", ".join(cause.get("field", "") for cause in causes if cause.get("field"))
    prefix = _STATUS_WORDS.get(status or 0, "failed")
    return K8sError(
        "%s (HTTP %s): %s" % (prefix, status, message),
        kind=kind,
        name=name,
        namespace=namespace,
        field=fields or None,
        status=status,
    )


class K8sService:
    """Operations on objects given as plain manifests (dicts)."""

    def __init__(self, client: Any, check_mode: bool = False, field_manager: str = FIELD_MANAGER) -> None:
        self.client = client
        self.check_mode = check_mode
        self.field_manager = field_manager
        # Things check mode could not ask the server about; modules pass them on as warnings.
        self.warnings: list[str] = []

    def resource(self, api_version: str, kind: str) -> Any:
        """The DynamicClient resource of a kind; K8sError when the cluster does not serve it."""
        try:
            return self.client.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            raise K8sError(
                "the cluster does not serve kind %s in %s (is its CRD or Deckhouse module installed?)"
                % (kind, api_version)
            ) from None

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object as a dict, or None when it does not exist."""
        resource = self.resource(api_version, kind)
        try:
            return self.client.get(resource, name=name, namespace=namespace).to_dict()
        except (ApiException, DynamicApiError) as error:
            if getattr(error, "status", None) == 404:
                return None
            raise _api_error(error, kind, name, namespace) from None

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        """The objects of a kind (in a namespace, or all), filtered by label and field selectors."""
        resource = self.resource(api_version, kind)
        try:
            listing = self.client.get(
                resource, namespace=namespace, label_selector=label_selector, field_selector=field_selector
            )
        except (ApiException, DynamicApiError) as error:
            raise _api_error(error, kind, None, namespace) from None
        return list(listing.to_dict().get("items", []))

    def apply(self, manifest: dict[str, Any]) -> tuple[bool, dict[str, Any] | None, dict[str, Any] | None]:
        """Server-side apply (a dry run in check mode). Returns (changed, before, after), compared without status."""
        kind = manifest["kind"]
        metadata = manifest["metadata"]
        name, namespace = metadata["name"], metadata.get("namespace")
        try:
            resource = self.resource(manifest["apiVersion"], kind)
        except K8sError as error:
            if not self.check_mode:
                raise
            # Check mode on a fresh cluster: the CRD comes with an operator an earlier stage only pretends to install.
            return self._unverifiable(manifest, str(error))
        before = self.get(manifest["apiVersion"], kind, name, namespace)
        try:
            applied = self.client.server_side_apply(
                resource,
                body=manifest,
                name=name,
                namespace=namespace,
                field_manager=self.field_manager,
                force_conflicts=True,
                dry_run="All" if self.check_mode else None,
            ).to_dict()
        except (ApiException, DynamicApiError) as error:
            problem = _api_error(error, kind, name, namespace)
            if self.check_mode and problem.status == 404 and before is None and namespace:
                # The namespace is created by an earlier task that check mode did not run.
                return self._unverifiable(manifest, str(problem))
            raise problem from None
        before_view, after_view = comparable(before), comparable(applied)
        return before_view != after_view, before_view, after_view

    def _unverifiable(
        self, manifest: dict[str, Any], reason: str
    ) -> tuple[bool, dict[str, Any] | None, dict[str, Any] | None]:
        self.warnings.append(
            "check mode: %s would be created; the server could not check it (%s)"
            % (
                object_ref(manifest["kind"], manifest["metadata"]["name"], manifest["metadata"].get("namespace")),
                reason,
            )
        )
        return True, None, comparable(manifest)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete if present (not in check mode). Returns whether the object existed."""
        resource = self.resource(api_version, kind)
        if self.get(api_version, kind, name, namespace) is None:
            return False
        if self.check_mode:
            return True
        try:
            self.client.delete(resource, name=name, namespace=namespace)
        except (ApiException, DynamicApiError) as error:
            if getattr(error, "status", None) == 404:
                return False
            raise _api_error(error, kind, name, namespace) from None
        return True
