"""The Proxmox VE API stand-in's HTTPS front: ``/api2/json``, auth, privilege checks, schema checks, routing.

As pveproxy does: an API token (``Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET``) or a ticket
(cookie ``PVEAuthCookie`` from POST /access/ticket, plus header ``CSRFPreventionToken`` on writes);
401 without valid credentials, 403 "Permission check failed (PATH, PRIV)" when the endpoint's
``permissions.check`` (from the schema) is not met, 400 "Parameter verification failed." with an
``errors`` object, 501 for a path/method the API does not have; every answer is ``{"data": ...}``.
"""

from __future__ import annotations

import json
import secrets
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.standins.pve.cluster import ApiError, Cluster
from tests.standins.pve.rules import AuthUser
from tests.standins.pve.schema import ApiSchema, ValidationFailed, answer_problems
from tests.standins.pve.tls import write_self_signed

PREFIX = "/api2/json"
ALL_PRIVILEGES = frozenset(
    ["Sys.Audit", "Sys.Modify", "Sys.PowerMgmt", "Mapping.Audit", "Mapping.Modify", "Mapping.Use", "Datastore.Audit",
     "Datastore.AllocateSpace", "VM.Allocate", "VM.Clone", "VM.Audit", "VM.PowerMgmt", "VM.Config.Disk",
     "VM.Config.CDROM", "VM.Config.CPU", "VM.Config.Memory", "VM.Config.Network", "VM.Config.HWType",
     "VM.Config.Options", "VM.Config.Cloudinit", "VM.GuestAgent.Audit", "VM.GuestAgent.Unrestricted"]
)  # fmt: skip


def _routes() -> dict:
    """(method, schema path) -> handler(cluster, params, user)."""
    c = Cluster
    return {
        ("GET", "/version"): lambda cl, p, u: {"version": "8.4.1", "release": "8.4", "repoid": "2a5fa54a8503f96d"},
        ("GET", "/nodes"): lambda cl, p, u: cl.node_list(p),
        ("GET", "/nodes/{node}/status"): lambda cl, p, u: cl.node_status(p),
        ("GET", "/nodes/{node}/storage"): lambda cl, p, u: cl.storage_list(p),
        ("GET", "/nodes/{node}/hardware/pci"): lambda cl, p, u: cl.pci_list(p),
        ("GET", "/nodes/{node}/hardware/pci/{pci-id-or-mapping}"): lambda cl, p, u: cl.pci_get(p),
        ("GET", "/cluster/resources"): lambda cl, p, u: cl.resources(p),
        ("GET", "/cluster/nextid"): lambda cl, p, u: cl.nextid(p),
        ("GET", "/cluster/mapping/pci"): lambda cl, p, u: cl.mapping_list(p),
        ("POST", "/cluster/mapping/pci"): lambda cl, p, u: cl.mapping_create(p),
        ("GET", "/cluster/mapping/pci/{id}"): lambda cl, p, u: cl.mapping_get(p),
        ("PUT", "/cluster/mapping/pci/{id}"): lambda cl, p, u: cl.mapping_update(p),
        ("DELETE", "/cluster/mapping/pci/{id}"): lambda cl, p, u: cl.mapping_delete(p),
        ("GET", "/nodes/{node}/qemu"): lambda cl, p, u: cl.vm_list(p),
        ("POST", "/nodes/{node}/qemu"): c.vm_create,
        ("GET", "/nodes/{node}/qemu/{vmid}"): lambda cl, p, u: cl.vm_index(p),
        ("DELETE", "/nodes/{node}/qemu/{vmid}"): c.vm_destroy,
        ("GET", "/nodes/{node}/qemu/{vmid}/config"): lambda cl, p, u: cl.vm_config(p),
        ("PUT", "/nodes/{node}/qemu/{vmid}/config"): lambda cl, p, u: cl.vm_update(p, u, asynchronous=False),
        ("POST", "/nodes/{node}/qemu/{vmid}/config"): lambda cl, p, u: cl.vm_update(p, u, asynchronous=True),
        ("PUT", "/nodes/{node}/qemu/{vmid}/resize"): c.vm_resize,
        ("POST", "/nodes/{node}/qemu/{vmid}/clone"): c.vm_clone,
        ("POST", "/nodes/{node}/qemu/{vmid}/template"): c.vm_template,
        ("GET", "/nodes/{node}/qemu/{vmid}/status/current"): lambda cl, p, u: cl.vm_status(p),
        ("POST", "/nodes/{node}/qemu/{vmid}/status/start"): c.vm_start,
        ("POST", "/nodes/{node}/qemu/{vmid}/status/stop"): lambda cl, p, u: cl.vm_stop(p, u, "qmstop"),
        ("POST", "/nodes/{node}/qemu/{vmid}/status/shutdown"): lambda cl, p, u: cl.vm_stop(p, u, "qmshutdown"),
        ("POST", "/nodes/{node}/qemu/{vmid}/status/reboot"): c.vm_reboot,
        ("POST", "/nodes/{node}/qemu/{vmid}/agent/ping"): lambda cl, p, u: cl.agent_ping(p),
        ("GET", "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces"): lambda cl, p, u: cl.agent_interfaces(p),
        ("GET", "/nodes/{node}/tasks/{upid}/status"): lambda cl, p, u: cl.task_status(p),
        ("GET", "/nodes/{node}/tasks/{upid}/log"): lambda cl, p, u: cl.task_log(p),
    }


ROUTES = _routes()


def check_permission(check, privileges: frozenset, params: dict) -> tuple[bool, str]:
    """Evaluate a schema ``permissions.check`` expression; on refusal say which (path, privilege)."""
    if not check:
        return True, ""
    operator = check[0]
    if operator in ("and", "or"):
        outcomes = [check_permission(part, privileges, params) for part in check[1:]]
        if operator == "and":
            failed = next((outcome for outcome in outcomes if not outcome[0]), None)
            return (True, "") if failed is None else failed
        return (True, "") if any(ok for ok, _ in outcomes) else outcomes[0]
    if operator == "perm":
        path = check[1]
        for name, value in params.items():
            path = path.replace(f"{{{name}}}", str(value))
        wanted = check[2]
        options = dict(zip(check[3::2], check[4::2], strict=False))
        if "require_param" in options and options["require_param"] not in params:
            return False, f"{path}, {wanted[0]}"
        missing = [privilege for privilege in wanted if privilege not in privileges]
        if options.get("any"):
            return (len(missing) < len(wanted)), "{}, {}".format(path, "|".join(wanted))
        return (not missing), "{}, {}".format(path, missing[0] if missing else "")
    return True, ""  # userid-param, userid-group: not used by the endpoints we serve


class PveStandin:
    """A running stand-in: ``with PveStandin(subset_file, tmp_dir) as pve: pve.url, pve.ca_file, pve.cluster``."""

    def __init__(self, subset_file: Path, workdir: Path, task_seconds: float = 0.3, agent_seconds: float = 0.5):
        self.schema = ApiSchema.load(subset_file)
        self.cluster = Cluster(task_seconds=task_seconds, agent_seconds=agent_seconds)
        self.workdir = Path(workdir)
        self.users = {"root@pam": {"password": secrets.token_hex(8), "privileges": ALL_PRIVILEGES}}
        self.tokens: dict[str, dict] = {}
        self.tickets: dict[str, dict] = {}
        self._server: ThreadingHTTPServer | None = None

    def add_token(self, user: str, token_id: str, privileges=ALL_PRIVILEGES) -> str:
        """Create an API token (``user!token_id``) with these privileges; return its secret."""
        secret = secrets.token_hex(16)
        # pve-manager PVE/HTTPServer.pm: "the token-ID `<user>@<realm>!<tokenname>` is the user for token
        # based authentication", so qemu-server's `$authuser eq 'root@pam'` is false for every token.
        full_id = f"{user}!{token_id}"
        self.tokens[full_id] = {"secret": secret, "privileges": frozenset(privileges),
                                "user": AuthUser.of(full_id, privileges)}  # fmt: skip
        return secret

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}{PREFIX}"

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    def __enter__(self) -> PveStandin:
        cert, key = write_self_signed(self.workdir)
        self.ca_file = cert
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        standin = self

        class Handler(_Handler):
            owner = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- one request -------------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers, raw: dict) -> tuple[int, str, object, dict | None]:
        """-> (status, reason, data, errors)."""
        if path == "/access/ticket" and method == "POST":
            return self._ticket(raw)
        principal = self._authenticate(method, headers)
        match = self.schema.match(method, path)
        if match is None or (method, match[0].path) not in ROUTES:
            return 501, f"Method '{method} {path}' not implemented", None, None
        endpoint, path_params = match
        for name, value in path_params.items():
            raw.setdefault(name, [value])
        try:
            params = endpoint.validate(raw)
        except ValidationFailed as exc:
            return 400, "Parameter verification failed.", None, exc.errors
        allowed, missing = check_permission(
            endpoint.info.get("permissions", {}).get("check"), principal["privileges"], params
        )
        if not allowed:
            raise ApiError(403, f"Permission check failed ({missing})")
        with self.cluster.lock:
            self.cluster.requests.append((method, path))
            data = ROUTES[(method, endpoint.path)](self.cluster, params, principal["user"])
        problems = answer_problems(endpoint.info.get("returns", {}), data)
        if problems:  # the stand-in drifted from the API: fail the test loudly rather than answer wrongly
            raise ApiError(500, "stand-in answer does not match the schema: " + "; ".join(problems[:5]))
        return 200, "OK", data, None

    def _ticket(self, raw: dict) -> tuple:
        username = (raw.get("username") or [""])[0]
        realm = (raw.get("realm") or [""])[0]
        if realm and "@" not in username:
            username = f"{username}@{realm}"
        user = self.users.get(username)
        if user is None or (raw.get("password") or [""])[0] != user["password"]:
            raise ApiError(401, "authentication failure")
        ticket = f"PVE:{username}:{0x6700_0000:08X}::{secrets.token_urlsafe(32)}"
        csrf = f"{0x6700_0000:08X}:{secrets.token_urlsafe(16)}"
        self.tickets[ticket] = {"user": AuthUser.of(username, user["privileges"]), "csrf": csrf,
                                "privileges": user["privileges"]}  # fmt: skip
        return 200, "OK", {"username": username, "ticket": ticket, "CSRFPreventionToken": csrf}, None

    def _authenticate(self, method: str, headers) -> dict:
        authorization = headers.get("Authorization", "")
        if authorization.startswith("PVEAPIToken="):
            token_id, _, secret = authorization[len("PVEAPIToken=") :].partition("=")
            token = self.tokens.get(token_id)
            if token is None or not secrets.compare_digest(token["secret"], secret):
                raise ApiError(401, "invalid token value!")
            return token
        cookies = dict(part.strip().split("=", 1) for part in headers.get("Cookie", "").split(";") if "=" in part)
        session = self.tickets.get(cookies.get("PVEAuthCookie", ""))
        if session is None:
            raise ApiError(401, "No ticket")
        if method != "GET" and headers.get("CSRFPreventionToken") != session["csrf"]:
            raise ApiError(401, "Permission denied - invalid csrf token")
        return session


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class _Handler(BaseHTTPRequestHandler):
    owner: PveStandin
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:
        return

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        if self.headers.get("Content-Type", "").startswith("application/json") and body:
            raw = {key: [_text(v) for v in (value if isinstance(value, list) else [value])]
                   for key, value in json.loads(body).items()}  # fmt: skip
        else:
            raw = parse_qs(body if method in ("POST", "PUT") else url.query, keep_blank_values=True)
        if not url.path.startswith(PREFIX):
            self._reply(404, "Not Found", None, None)
            return
        try:
            status, reason, data, errors = self.owner.handle(method, url.path[len(PREFIX) :] or "/", self.headers, raw)
        except ApiError as exc:
            status, reason, data, errors = exc.status, exc.message, None, exc.errors
        self._reply(status, reason, data, errors)

    def _reply(self, status: int, reason: str, data, errors) -> None:
        document: dict = {"data": data}
        if errors:
            document["errors"] = errors
        if status != 200:
            document["message"] = reason + "\n"
        body = json.dumps(document).encode()
        self.send_response(status, reason.replace("\n", " ").encode("latin-1", "replace").decode("latin-1"))
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")
