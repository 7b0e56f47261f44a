"""The rules a real API server (and the admission in front of it) applies on top of the schema, for the kinds the
collection writes. Each rule names its source; the stand-in runs them on every write (`check`), after the schema.

Kubernetes (kubernetes/kubernetes, release-1.33):
- object names: Namespace a DNS-1123 label, Service a DNS-1035 label, every other kind here (custom resources too) a
  DNS-1123 subdomain (pkg/apis/core/validation/validation.go ValidateNamespaceName, ValidateServiceName,
  NameIsDNSSubdomain; staging/src/k8s.io/apiextensions-apiserver/pkg/registry/customresource/validator.go);
- label keys are qualified names, label values at most 63 characters of `[A-Za-z0-9_.-]` starting and ending
  alphanumeric (staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/validation/validation.go ValidateLabels,
  staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go IsQualifiedName, IsValidLabelValue);
- immutable on update: a PersistentVolumeClaim's spec except `resources.requests` (ValidatePersistentVolumeClaimUpdate:
  "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"), and
  its storage request never shrinks ("field can not be less than previous value"); a Secret's `type`, and its data
  once `immutable: true` (ValidateSecretUpdate); a Deployment's `spec.selector` (pkg/apis/apps/validation/
  validation.go ValidateDeploymentUpdate, apps/v1); a Service's `spec.clusterIP` once set (ValidateServiceUpdate);
- CustomResourceDefinition: exactly one version is the storage version, and every version in `status.storedVersions`
  stays in `spec.versions` (staging/src/k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation/
  validation.go ValidateCustomResourceDefinitionSpec, ValidateCustomResourceDefinitionStoredVersions); the server
  records the storage version in `status.storedVersions` (pkg/apiserver/customresource_handler.go and the CRD
  strategy's PrepareForCreate/Update). A KubeRay upgrade whose CRDs drop a version still stored fails this way.

Deckhouse (deckhouse/deckhouse, modules/015-admission-policy-engine/docs/README.md):
- Pods are checked against the Pod Security Standards level named by their namespace's label
  `security.deckhouse.io/pod-policy`; without it the default applies, Baseline on clusters installed with 1.55 or
  later, and the request is denied (enforcement action Deny). The upstream label `pod-security.kubernetes.io/enforce`
  does not change Deckhouse's decision. The checks are the Pod Security Standards' (kubernetes.io/docs/concepts/
  security/pod-security-standards/): Baseline forbids privileged containers, host namespaces, hostPath volumes,
  host ports, capabilities beyond the default set, and Unconfined seccomp; Restricted also requires
  runAsNonRoot, allowPrivilegeEscalation false, all capabilities dropped and a RuntimeDefault/Localhost seccomp
  profile.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

DECKHOUSE_POLICY_LABEL = "security.deckhouse.io/pod-policy"
DECKHOUSE_DEFAULT_POLICY = "baseline"
# Pod Security Standards, Baseline: capabilities a container may add.
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
}


class Rejected(Exception):
    """A write the real server refuses: HTTP `code`, `reason`, and (path, message) causes."""

    def __init__(self, code: int, reason: str, message: str, causes: list[tuple[str, str]]):
        super().__init__(message)
        self.code, self.reason, self.message, self.causes = code, reason, message, causes


def _name_problems(kind: str, name: str) -> list[tuple[str, str]]:
    if kind == "Namespace":
        pattern, limit, what = DNS1123_LABEL, 63, "a lowercase RFC 1123 label"
    elif kind == "Service":
        pattern, limit, what = DNS1035_LABEL, 63, "a DNS-1035 label (lowercase, starting with a letter)"
    else:
        pattern, limit, what = DNS1123_SUBDOMAIN, 253, "a lowercase RFC 1123 subdomain"
    if len(name) > limit or not pattern.match(name):
        return [("metadata.name", f"Invalid value: {name!r}: must be {what} of at most {limit} characters")]
    return []


def _label_problems(labels: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if (
            len(name) > 63
            or not QUALIFIED_NAME.match(name)
            or (prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)))
        ):
            found.append((f"metadata.labels[{key}]", f"Invalid value: {key!r}: not a qualified name"))
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            found.append((f"metadata.labels[{key}]", f"Invalid value: {value!r}: not a valid label value"))
    return found


def _quantity(value: str | None) -> Decimal | None:
    """A resource.Quantity as a number (the kubernetes client's parser); None when there is none."""
    if not value:
        return None
    try:
        return parse_quantity(value)
    except ValueError:
        return None


def _same(left: Any, right: Any) -> bool:
    return json.dumps(left, sort_keys=True) == json.dumps(right, sort_keys=True)


def _update_problems(kind: str, old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    if kind == "PersistentVolumeClaim":
        strip = [dict(spec, resources=None) for spec in (old_spec, new_spec)]
        if not _same(*strip):
            found.append(
                (
                    "spec",
                    "Forbidden: spec is immutable after creation except resources.requests and "
                    "volumeAttributesClassName for bound claims",
                )
            )
        before = ((old_spec.get("resources") or {}).get("requests") or {}).get("storage")
        after = ((new_spec.get("resources") or {}).get("requests") or {}).get("storage")
        old_size, new_size = _quantity(before), _quantity(after)
        if old_size is not None and new_size is not None and new_size < old_size:
            found.append(("spec.resources.requests.storage", "Forbidden: field can not be less than previous value"))
    elif kind == "Secret":
        if old.get("type", "Opaque") != new.get("type", "Opaque"):
            found.append(("type", "Invalid value: field is immutable"))
        if old.get("immutable") and not (
            _same(old.get("data"), new.get("data")) and new.get("immutable") and not new.get("stringData")
        ):
            found.append(("data", "Forbidden: field is immutable when `immutable` is set"))
    elif kind == "Deployment" and not _same(old_spec.get("selector"), new_spec.get("selector")):
        found.append(("spec.selector", "Invalid value: field is immutable"))
    elif kind == "Service" and old_spec.get("clusterIP") and new_spec.get("clusterIP") != old_spec.get("clusterIP"):
        found.append(("spec.clusterIP", "Invalid value: field is immutable"))
    return found


def _crd_problems(new: dict[str, Any], old: dict[str, Any] | None) -> list[tuple[str, str]]:
    versions = (new.get("spec") or {}).get("versions") or []
    found = []
    if sum(1 for version in versions if version.get("storage")) != 1:
        found.append(("spec.versions", "Invalid value: must have exactly one version marked as storage version"))
    names = {version.get("name") for version in versions}
    stored = ((old or new).get("status") or {}).get("storedVersions") or []
    for index, version in enumerate(stored):
        if version not in names:
            found.append(
                (f"status.storedVersions[{index}]", f"Invalid value: {version!r}: must appear in spec.versions")
            )
    return found


def record_stored_versions(new: dict[str, Any], old: dict[str, Any] | None) -> None:
    """The API server adds the storage version to `status.storedVersions` on every write of a CRD."""
    stored = list(((old or {}).get("status") or {}).get("storedVersions") or [])
    for version in (new.get("spec") or {}).get("versions") or []:
        if version.get("storage") and version.get("name") not in stored:
            stored.append(version["name"])
    new.setdefault("status", {})["storedVersions"] = stored


def _containers(pod_spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for section in ("initContainers", "containers", "ephemeralContainers"):
        for index, container in enumerate(pod_spec.get(section) or []):
            yield f"spec.{section}[{index}]", container


def pod_security_problems(pod_spec: dict[str, Any], level: str) -> list[tuple[str, str]]:
    """What the Pod Security Standards level (privileged, baseline, restricted) forbids in a pod spec."""
    if level == "privileged":
        return []
    found = []
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(host):
            found.append((f"spec.{host}", "host namespaces are not allowed"))
    for index, volume in enumerate(pod_spec.get("volumes") or []):
        if "hostPath" in volume:
            found.append((f"spec.volumes[{index}].hostPath", "hostPath volumes are not allowed"))
    pod_context = pod_spec.get("securityContext") or {}
    if (pod_context.get("seccompProfile") or {}).get("type") == "Unconfined":
        found.append(("spec.securityContext.seccompProfile.type", "Unconfined seccomp is not allowed"))
    for path, container in _containers(pod_spec):
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            found.append((f"{path}.securityContext.privileged", "privileged containers are not allowed"))
        added = set((context.get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:
            found.append((f"{path}.securityContext.capabilities.add", f"capabilities {sorted(added)} are not allowed"))
        for port_index, port in enumerate(container.get("ports") or []):
            if port.get("hostPort"):
                found.append((f"{path}.ports[{port_index}].hostPort", "host ports are not allowed"))
        if (context.get("seccompProfile") or {}).get("type") == "Unconfined":
            found.append((f"{path}.securityContext.seccompProfile.type", "Unconfined seccomp is not allowed"))
        if level == "restricted":
            if not (context.get("runAsNonRoot") or pod_context.get("runAsNonRoot")):
                found.append((f"{path}.securityContext.runAsNonRoot", "must be true"))
            if context.get("allowPrivilegeEscalation") is not False:
                found.append((f"{path}.securityContext.allowPrivilegeEscalation", "must be false"))
            if "ALL" not in ((context.get("capabilities") or {}).get("drop") or []):
                found.append((f"{path}.securityContext.capabilities.drop", "must include ALL"))
            profile = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get("type")
            if profile not in ("RuntimeDefault", "Localhost"):
                found.append((f"{path}.securityContext.seccompProfile.type", "must be RuntimeDefault or Localhost"))
    return found


def deckhouse_pod_policy(namespace: dict[str, Any] | None) -> str:
    """The Pod Security Standards level Deckhouse enforces in a namespace."""
    labels = ((namespace or {}).get("metadata") or {}).get("labels") or {}
    return str(labels.get(DECKHOUSE_POLICY_LABEL, DECKHOUSE_DEFAULT_POLICY)).lower()


def check(kind: str, old: dict[str, Any] | None, new: dict[str, Any], namespace: dict[str, Any] | None = None) -> None:
    """Raise Rejected as the real server would for this write (`old` is None on create)."""
    metadata = new.get("metadata") or {}
    causes = []
    if old is None:
        causes += _name_problems(kind, metadata.get("name", ""))
    causes += _label_problems(metadata.get("labels") or {})
    if old is not None:
        causes += _update_problems(kind, old, new)
    if kind == "CustomResourceDefinition":
        causes += _crd_problems(new, old)
    ref = f"{kind} {metadata.get('name', '?')}"
    if causes:
        raise Rejected(422, "Invalid", f"{ref} is invalid: " + "; ".join(f"{p}: {m}" for p, m in causes), causes)
    if kind == "Pod" and old is None:
        level = deckhouse_pod_policy(namespace)
        if problems := pod_security_problems(new.get("spec") or {}, level):
            raise Rejected(
                403,
                "Forbidden",
                f'admission webhook "admission-policy-engine.deckhouse.io" denied the request: {ref} violates the '
                f"{level} pod policy: " + "; ".join(f"{p}: {m}" for p, m in problems),
                problems,
            )
