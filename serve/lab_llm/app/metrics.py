"""Prometheus counters of the gate, exposed at /metrics next to Ray's own metrics."""

from prometheus_client import Counter

LOGINS = Counter("lab_llm_logins_total", "Password logins by outcome.", ["outcome"])
AUTH_DECISIONS = Counter(
    "lab_llm_auth_decisions_total", "Authentication/authorization decisions on API requests.", ["credential", "outcome"]
)
API_KEY_CHANGES = Counter(
    "lab_llm_api_key_changes_total", "API keys created or revoked through the admin API.", ["action"]
)
