"""A Kubernetes API stand-in on loopback that speaks the real REST protocol, for tests only.

What it implements, and the facts it follows (Kubernetes API concepts,
https://kubernetes.io/docs/reference/using-api/api-concepts/ and .../server-side-apply/):
- discovery: /version, /api, /apis, /api/v1, /apis/GROUP/VERSION (APIResourceList with `x/status` subresources);
- CRUD on /api/v1[/namespaces/NS]/PLURAL[/NAME] and /apis/G/V[/namespaces/NS]/PLURAL[/NAME]; namespaced objects
  need their Namespace (404 otherwise, as the real server);
- PATCH: `application/apply-patch+yaml` (server-side apply with field managers: fields a manager applied before
  and leaves out are removed, conflicts with another manager's values are 409 unless `force=true`),
  `application/merge-patch+json` (RFC 7386) and `application/strategic-merge-patch+json` (handled as a merge patch:
  lists replaced whole — the manifests here never rely on strategic list merging);
- `dryRun=All` answers without storing; the status subresource (`/status`): writes to the main resource keep the
  stored status, writes to /status change only status; `metadata.generation` grows when anything but
  metadata/status changes; resourceVersion is one global counter;
- watch (`?watch=true`, fieldSelector `metadata.name=`, labelSelector equality, resourceVersion, timeoutSeconds;
  an ERROR event with Status 410 from before `compacted_rv`):
  newline-delimited WatchEvent JSON until the timeout;
- the Eviction API (POST pods/NAME/eviction deletes the pod; there are no PodDisruptionBudgets);
- every write is validated (see schemas.py): 422 with `details.causes[].field`, unknown fields included;
- and then passes the rules the real server and its admission add (admission.py, each with its source): name and
  label syntax, immutable fields, CRD stored versions, Deckhouse's pod security policy (403 like a webhook denial).

Not implemented (not used by lab.llm): the service proxy (it could not carry the app's bearer token anyway: the
real API server deletes the Authorization header once it has authenticated a request), JSON patch, strategic list
merging, finalizers, defaulting, admission beyond admission.py, authorization (RBAC).
Authentication: a bearer token only, the one `kubeconfig()` writes; any other request gets 401 Unauthorized with
the Status body the API server sends (kube-apiserver with anonymous auth off; Kubernetes docs, "Authenticating",
"Anonymous requests").
Controllers do not exist here: tests play them by calling `set_status()` / `put()` / `on_write` hooks.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.standins.k8s import admission, schemas


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    validator: jsonschema.Validator
    status_subresource: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


CORE_KINDS = [
    # (group, version, kind, plural, namespaced, status subresource)
    ("", "v1", "Namespace", "namespaces", False, True),
    ("", "v1", "Node", "nodes", False, True),
    ("", "v1", "Secret", "secrets", True, False),
    ("", "v1", "ConfigMap", "configmaps", True, False),
    ("", "v1", "Service", "services", True, True),
    ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, True),
    ("", "v1", "Pod", "pods", True, True),
    ("apps", "v1", "Deployment", "deployments", True, True),
    ("networking.k8s.io", "v1", "Ingress", "ingresses", True, True),
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", False, True),
]


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, causes: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.causes = code, reason, message, causes or []

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.causes:
            body["details"] = {"causes": self.causes}
        return body


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _leaves(obj: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Leaf paths of an applied configuration (maps recurse; lists and scalars are atomic)."""
    if isinstance(obj, dict) and obj:
        found: dict[tuple[str, ...], Any] = {}
        for key, value in obj.items():
            found.update(_leaves(value, (*prefix, key)))
        return found
    return {prefix: obj}


def _remove_path(obj: dict[str, Any], path: tuple[str, ...]) -> None:
    node = obj
    for key in path[:-1]:
        node = node.get(key)
        if not isinstance(node, dict):
            return
    node.pop(path[-1], None)


def _prune_empty(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _prune_empty(v) for k, v in obj.items() if not (isinstance(v, dict) and not _prune_empty(v))}
    return obj


def _deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _matches(obj: dict[str, Any], field_selector: str | None, label_selector: str | None) -> bool:
    metadata = obj.get("metadata", {})
    for term in filter(None, (field_selector or "").split(",")):
        key, _, value = term.partition("=")
        if key == "metadata.name" and metadata.get("name") != value.lstrip("="):
            return False
        if key == "metadata.namespace" and metadata.get("namespace") != value.lstrip("="):
            return False
        if key == "spec.nodeName" and (obj.get("spec") or {}).get("nodeName") != value.lstrip("="):
            return False
    labels = metadata.get("labels") or {}
    for term in filter(None, (label_selector or "").split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key) != value.lstrip("="):
                return False
        elif term not in labels:
            return False
    return True


@dataclass
class Stored:
    obj: dict[str, Any]
    managers: dict[str, set[tuple[str, ...]]] = field(default_factory=dict)


class KubeApiStandIn:
    """The API server: start() it, point a kubeconfig at `url`, stop() it."""

    def __init__(self, crd_files: list[Path] | None = None):
        self.kinds: dict[tuple[str, str, str], Kind] = {}  # (group, version, plural)
        self.objects: dict[tuple[str, str, str, str], Stored] = {}  # (group, plural, namespace, name)
        self.events: list[tuple[int, str, tuple[str, str, str, str], dict[str, Any]]] = []
        self.resource_version = 0
        self.lock = threading.Condition()
        self.on_write: list[Callable[[str, Kind, dict[str, Any]], None]] = []
        self.requests: list[tuple[str, str]] = []
        # The bearer token the API accepts (the kubeconfig() it writes carries it).
        self.token = "standin-token"
        # Watches from a resourceVersion older than this get `410 Gone` (an etcd compaction, played by tests).
        self.compacted_rv = 0
        for group, version, kind, plural, namespaced, status in CORE_KINDS:
            api_version = f"{group}/{version}" if group else version
            self.kinds[(group, version, plural)] = Kind(
                group, version, kind, plural, namespaced, schemas.core_validator(api_version, kind), status
            )
        for path in crd_files or []:
            for spec, version, validator in schemas.served_versions(path):
                self.kinds[(spec["group"], version["name"], spec["names"]["plural"])] = Kind(
                    spec["group"],
                    version["name"],
                    spec["names"]["kind"],
                    spec["names"]["plural"],
                    spec["scope"] == "Namespaced",
                    validator,
                    "status" in (version.get("subresources") or {}),
                )
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> KubeApiStandIn:
        handler = type("Handler", (_Handler,), {"api": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "standin",
                    "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
                    "users": [{"name": "standin", "user": {"token": self.token}}],
                    "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "standin"}}],
                }
            ),
            encoding="utf-8",
        )
        return path

    # ----- what tests call (playing controllers) --------------------------------------------------------------
    def kind_for(self, api_version: str, kind: str) -> Kind:
        for candidate in self.kinds.values():
            if candidate.api_version == api_version and candidate.kind == kind:
                return candidate
        raise KeyError(f"{api_version} {kind} not served")

    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        k = self.kind_for(api_version, kind)
        with self.lock:
            stored = self.objects.get((k.group, k.plural, namespace if k.namespaced else "", name))
            return self._view(stored.obj, k) if stored else None

    def put(self, manifest: dict[str, Any], manager: str = "test-controller") -> dict[str, Any]:
        """Create or replace an object as a controller would (status included), validated."""
        k = self.kind_for(manifest["apiVersion"], manifest["kind"])
        namespace = manifest.get("metadata", {}).get("namespace", "")
        with self.lock:
            view = self._write(k, namespace, manifest, manager, "replace")
        if "status" in manifest and view.get("status") != manifest["status"]:
            self.set_status(k.api_version, k.kind, view["metadata"]["name"], manifest["status"], namespace)
            view = self.get(k.api_version, k.kind, view["metadata"]["name"], namespace) or view
        return view

    def set_status(self, api_version: str, kind: str, name: str, status: dict[str, Any], namespace: str = "") -> None:
        k = self.kind_for(api_version, kind)
        with self.lock:
            key = (k.group, k.plural, namespace if k.namespaced else "", name)
            stored = self.objects[key]
            updated = copy.deepcopy(stored.obj)
            updated["status"] = status
            self._store(k, key, stored, updated, "MODIFIED", dry_run=False)

    def names(self, api_version: str, kind: str) -> list[str]:
        k = self.kind_for(api_version, kind)
        with self.lock:
            return sorted(key[3] for key in self.objects if key[:2] == (k.group, k.plural))

    # ----- request handling -----------------------------------------------------------------------------------
    def _view(self, obj: dict[str, Any], k: Kind) -> dict[str, Any]:
        view = copy.deepcopy(obj)
        view["apiVersion"], view["kind"] = k.api_version, k.kind
        return view

    def _validate(self, k: Kind, obj: dict[str, Any]) -> None:
        found = schemas.problems(k.validator, obj)
        if found:
            ref = "{} {}".format(k.kind, obj.get("metadata", {}).get("name", "?"))
            raise ApiError(
                422,
                "Invalid",
                "{} is invalid: {}".format(ref, "; ".join("{}: {}".format(*p) for p in found)),
                [{"reason": "FieldValueInvalid", "field": path, "message": msg} for path, msg in found],
            )

    def _admit(self, k: Kind, old: dict[str, Any] | None, obj: dict[str, Any]) -> None:
        """The rules the real server and admission apply beyond the schema (admission.py, each with its source)."""
        if k.kind == "CustomResourceDefinition":
            admission.record_stored_versions(obj, old)
        namespace = self.objects.get(("", "namespaces", "", obj.get("metadata", {}).get("namespace", "")))
        try:
            admission.check(k.kind, old, obj, namespace.obj if namespace else None)
        except admission.Rejected as rejected:
            raise ApiError(
                rejected.code,
                rejected.reason,
                rejected.message,
                [{"reason": "FieldValueInvalid", "field": path, "message": msg} for path, msg in rejected.causes],
            ) from None

    def _store(self, k: Kind, key, stored: Stored | None, obj: dict[str, Any], event: str, dry_run: bool):
        self._validate(k, obj)
        self._admit(k, stored.obj if stored else None, obj)
        if dry_run:
            return self._view(obj, k)
        self.resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self.resource_version)
        if stored is None:
            stored = Stored(obj)
            self.objects[key] = stored
        stored.obj = obj
        self.events.append((self.resource_version, event, key, copy.deepcopy(obj)))
        self.lock.notify_all()
        view = self._view(obj, k)
        for hook in self.on_write:
            hook(event, k, copy.deepcopy(view))
        return view

    def _write(
        self,
        k: Kind,
        namespace: str,
        body: dict[str, Any],
        manager: str,
        mode: str,
        name: str | None = None,
        subresource: str = "",
        dry_run: bool = False,
        force: bool = False,
        content_type: str = "",
    ) -> dict[str, Any]:
        name = name or body.get("metadata", {}).get("name")
        if not name:
            raise ApiError(
                422,
                "Invalid",
                f"{k.kind}: metadata.name: Required value",
                [{"reason": "FieldValueRequired", "field": "metadata.name", "message": "Required value"}],
            )
        if k.namespaced and not namespace:
            raise ApiError(400, "BadRequest", f"{k.kind} {name}: a namespace is required")
        if k.namespaced and ("", "namespaces", "", namespace) not in self.objects:
            raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found')
        key = (k.group, k.plural, namespace if k.namespaced else "", name)
        stored = self.objects.get(key)
        if mode == "apply":
            return self._apply(k, key, stored, body, manager, namespace, subresource, dry_run, force)
        if mode == "create":
            if stored is not None:
                raise ApiError(409, "AlreadyExists", f'{k.plural} "{name}" already exists')
            return self._create(k, key, body, manager, namespace, dry_run)
        if stored is None:
            if mode == "replace" and not subresource:
                return self._create(k, key, body, manager, namespace, dry_run)
            raise ApiError(404, "NotFound", f'{k.plural} "{name}" not found')
        if mode == "merge":
            if "json-patch" in content_type:
                raise ApiError(415, "UnsupportedMediaType", "JSON patch is not implemented by the stand-in")
            desired = _merge_patch(stored.obj, body)
        else:
            desired = copy.deepcopy(body)
        return self._update(k, key, stored, desired, subresource, dry_run)

    def _create(self, k: Kind, key, body: dict[str, Any], manager: str, namespace: str, dry_run: bool):
        obj = copy.deepcopy(body)
        obj["apiVersion"], obj["kind"] = k.api_version, k.kind
        # ObjectMeta's maps are `omitempty`: an empty labels/annotations map is not stored.
        obj["metadata"] = _prune_empty(obj.get("metadata") or {})
        metadata = obj["metadata"]
        metadata.update({"name": key[3], "uid": str(uuid.uuid4()), "creationTimestamp": _now(), "generation": 1})
        if k.namespaced:
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        if k.status_subresource and manager != "test-controller":
            obj.pop("status", None)
        stored = Stored(obj, {manager: set(_leaves({kk: v for kk, v in body.items() if kk != "status"}))})
        view = self._store(k, key, None, obj, "ADDED", dry_run)
        if not dry_run:
            self.objects[key].managers = stored.managers
        return view

    def _update(self, k: Kind, key, stored: Stored, desired: dict[str, Any], subresource: str, dry_run: bool):
        old = stored.obj
        desired["apiVersion"], desired["kind"] = k.api_version, k.kind
        metadata = desired.setdefault("metadata", {})
        for fixed in ("name", "namespace", "uid", "creationTimestamp", "generation"):
            if fixed in old["metadata"]:
                metadata[fixed] = old["metadata"][fixed]
        if subresource == "status":
            updated = copy.deepcopy(old)
            updated["status"] = desired.get("status", {})
        else:
            updated = desired
            if k.status_subresource:
                updated.pop("status", None)
                if "status" in old:
                    updated["status"] = copy.deepcopy(old["status"])

            def body_of(obj: dict[str, Any]) -> dict[str, Any]:
                return {kk: v for kk, v in obj.items() if kk not in ("metadata", "status", "apiVersion", "kind")}

            if body_of(updated) != body_of(old):
                updated["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        if updated == old:
            return self._view(old, k)
        return self._store(k, key, stored, updated, "MODIFIED", dry_run)

    def _apply(
        self,
        k: Kind,
        key,
        stored: Stored | None,
        body: dict[str, Any],
        manager: str,
        namespace: str,
        subresource: str,
        dry_run: bool,
        force: bool,
    ):
        if body.get("apiVersion") != k.api_version or body.get("kind") != k.kind:
            raise ApiError(
                400,
                "BadRequest",
                "apply: apiVersion/kind {}/{} do not match the URL ({} {})".format(
                    body.get("apiVersion"), body.get("kind"), k.api_version, k.kind
                ),
            )
        applied = {kk: v for kk, v in body.items() if kk not in ("apiVersion", "kind")}
        if subresource != "status":
            applied.pop("status", None)
        new_leaves = _leaves(applied)
        if stored is None:
            return self._create(k, key, body, manager, namespace, dry_run)
        conflicts = []
        current = _leaves(stored.obj)
        for other, owned in stored.managers.items():
            if other == manager:
                continue
            for path in owned & set(new_leaves):
                if path[:1] != ("metadata",) and current.get(path) != new_leaves[path]:
                    conflicts.append((other, ".".join(path)))
        if conflicts and not force:
            raise ApiError(
                409,
                "Conflict",
                f"Apply failed with {len(conflicts)} conflicts: "
                + "; ".join(f'conflict with "{other}": .{path}' for other, path in conflicts),
                [
                    {"reason": "FieldManagerConflict", "field": "." + path, "message": f'conflict with "{other}"'}
                    for other, path in conflicts
                ],
            )
        desired = copy.deepcopy(stored.obj)
        owned_elsewhere = (
            set().union(*(p for m, p in stored.managers.items() if m != manager)) if len(stored.managers) > 1 else set()
        )
        for path in stored.managers.get(manager, set()) - set(new_leaves) - owned_elsewhere:
            _remove_path(desired, path)
        desired = _prune_empty(_deep_merge(desired, applied))
        desired.setdefault("metadata", {})
        view = self._update(k, key, stored, desired, subresource, dry_run)
        if not dry_run:
            managers = self.objects[key].managers
            managers[manager] = set(new_leaves)
            for other in list(managers):
                if other != manager:
                    managers[other] -= set(new_leaves)
        return view

    def _delete(self, k: Kind, namespace: str, name: str, dry_run: bool) -> dict[str, Any]:
        key = (k.group, k.plural, namespace if k.namespaced else "", name)
        stored = self.objects.get(key)
        if stored is None:
            raise ApiError(404, "NotFound", f'{k.plural} "{name}" not found')
        if dry_run:
            return self._view(stored.obj, k)
        del self.objects[key]
        self.resource_version += 1
        self.events.append((self.resource_version, "DELETED", key, copy.deepcopy(stored.obj)))
        self.lock.notify_all()
        view = self._view(stored.obj, k)
        for hook in self.on_write:
            hook("DELETED", k, copy.deepcopy(view))
        return view

    def _list(self, k: Kind, namespace: str, query: dict[str, str]) -> dict[str, Any]:
        items = [
            self._view(s.obj, k)
            for key, s in sorted(self.objects.items())
            if key[:2] == (k.group, k.plural)
            and (not namespace or key[2] == namespace)
            and _matches(s.obj, query.get("fieldSelector"), query.get("labelSelector"))
        ]
        return {
            "apiVersion": k.api_version,
            "kind": k.kind + "List",
            "metadata": {"resourceVersion": str(self.resource_version)},
            "items": items,
        }

    def _watch(self, k: Kind, namespace: str, query: dict[str, str], write: Callable[[bytes], None]) -> None:
        timeout = float(query.get("timeoutSeconds", "30"))
        deadline = time.monotonic() + timeout
        start = query.get("resourceVersion")
        with self.lock:
            if start and start != "0" and int(start) < self.compacted_rv:
                gone = ApiError(410, "Expired", f"too old resource version: {start} ({self.compacted_rv})")
                write(json.dumps({"type": "ERROR", "object": gone.status()}).encode() + b"\n")
                return
            if not start or start == "0":
                for item in self._list(k, namespace, query)["items"]:
                    write(json.dumps({"type": "ADDED", "object": item}).encode() + b"\n")
                seen = self.resource_version
            else:
                seen = int(start)
            while True:
                for rv, event, key, obj in self.events:
                    if rv <= seen or key[:2] != (k.group, k.plural) or (namespace and key[2] != namespace):
                        continue
                    if _matches(obj, query.get("fieldSelector"), query.get("labelSelector")):
                        write(json.dumps({"type": event, "object": self._view(obj, k)}).encode() + b"\n")
                seen = self.resource_version
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self.lock.wait(min(remaining, 0.5))

    def discovery(self, path: str) -> dict[str, Any] | None:
        # kube-apiserver serves /version and /version/ alike (the client's VersionApi asks for the latter).
        if path in ("/version", "/version/"):
            return {
                "major": "1",
                "minor": schemas.KUBERNETES_VERSION.split(".")[1],
                "gitVersion": f"v{schemas.KUBERNETES_VERSION}.0-standin",
                # The rest of version.Info (k8s.io/apimachinery/pkg/version/types.go); the client requires them.
                "gitCommit": "0" * 40,
                "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.25.0",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        if path == "/api":
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
            }
        if path == "/apis":
            groups: dict[str, list[str]] = {}
            for group, version, _ in self.kinds:
                if group:
                    groups.setdefault(group, [])
                    if version not in groups[group]:
                        groups[group].append(version)
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                        "preferredVersion": {"groupVersion": f"{g}/{vs[-1]}", "version": vs[-1]},
                    }
                    for g, vs in sorted(groups.items())
                ],
            }
        parts = path.strip("/").split("/")
        if parts == ["api", "v1"] or (len(parts) == 3 and parts[0] == "apis"):
            group, version = ("", "v1") if parts[0] == "api" else (parts[1], parts[2])
            resources = []
            for (g, v, plural), k in sorted(self.kinds.items()):
                if (g, v) != (group, version):
                    continue
                verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
                resources.append(
                    {
                        "name": plural,
                        "singularName": k.kind.lower(),
                        "namespaced": k.namespaced,
                        "kind": k.kind,
                        "verbs": verbs,
                    }
                )
                if k.kind == "Pod":
                    resources.append(
                        {
                            "name": "pods/eviction",
                            "singularName": "",
                            "namespaced": True,
                            "kind": "Eviction",
                            "group": "policy",
                            "version": "v1",
                            "verbs": ["create"],
                        }
                    )
                if k.status_subresource:
                    resources.append(
                        {
                            "name": plural + "/status",
                            "singularName": "",
                            "namespaced": k.namespaced,
                            "kind": k.kind,
                            "verbs": ["get", "patch", "update"],
                        }
                    )
            if not resources:
                return None
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": resources,
            }
        return None

    def route(self, path: str) -> tuple[Kind, str, str, str]:
        """(kind, namespace, name, subresource) for a resource URL."""
        parts = path.strip("/").split("/")
        if parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        elif len(rest) == 2 and rest[0] == "namespaces" and group == "":
            rest = ["namespaces", rest[1]]
        k = self.kinds.get((group, version, rest[0]))
        if k is None:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
        name = rest[1] if len(rest) > 1 else ""
        subresource = rest[2] if len(rest) > 2 else ""
        return k, namespace, name, subresource


class _Handler(BaseHTTPRequestHandler):
    api: KubeApiStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: dict[str, Any] | bytes, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self, method: str) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        path = parsed.path
        self.api.requests.append((method, self.path))
        try:
            if self.headers.get("Authorization") != f"Bearer {self.api.token}":
                self._body()
                raise ApiError(401, "Unauthorized", "Unauthorized")
            if method == "GET":
                found = self.api.discovery(path)
                if found is not None:
                    return self._send(200, found)
            k, namespace, name, subresource = self.api.route(path)
            dry_run = query.get("dryRun") == "All"
            manager = query.get("fieldManager", "unknown")
            if method == "GET" and query.get("watch") in ("true", "1"):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True

                def write(data: bytes) -> None:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()

                try:
                    self.api._watch(k, namespace, query, write)
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass
                return None
            with self.api.lock:
                if method == "GET" and not name:
                    return self._send(200, self.api._list(k, namespace, query))
                if method == "GET":
                    key = (k.group, k.plural, namespace if k.namespaced else "", name)
                    stored = self.api.objects.get(key)
                    if stored is None:
                        raise ApiError(404, "NotFound", f'{k.plural} "{name}" not found')
                    return self._send(200, self.api._view(stored.obj, k))
                if method == "DELETE":
                    return self._send(200, self.api._delete(k, namespace, name, dry_run))
                if method == "POST" and k.kind == "Pod" and subresource == "eviction":
                    # The Eviction API: no PodDisruptionBudgets here, so an eviction deletes the pod at once.
                    self._body()
                    self.api._delete(k, namespace, name, dry_run)
                    return self._send(201, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
                raw = self._body()
                content_type = self.headers.get("Content-Type", "application/json")
                try:
                    body = yaml.safe_load(raw) if "yaml" in content_type else json.loads(raw or b"{}")
                except (ValueError, yaml.YAMLError) as error:
                    raise ApiError(400, "BadRequest", f"cannot decode the body: {error}") from None
                if not isinstance(body, dict):
                    raise ApiError(400, "BadRequest", "the body must be an object")
                mode = {"POST": "create", "PUT": "replace"}.get(method)
                if method == "PATCH":
                    mode = "apply" if content_type.startswith("application/apply-patch") else "merge"
                if mode is None:
                    raise ApiError(405, "MethodNotAllowed", method)
                result = self.api._write(
                    k,
                    namespace,
                    body,
                    manager,
                    mode,
                    name=name or None,
                    subresource=subresource,
                    dry_run=dry_run,
                    # strconv.ParseBool, as the API server does.
                    force=query.get("force", "").lower() in ("true", "1"),
                    content_type=content_type,
                )
                return self._send(201 if mode == "create" else 200, result)
        except ApiError as error:
            return self._send(error.code, error.status())

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")
