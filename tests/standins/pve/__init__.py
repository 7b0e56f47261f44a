"""A Proxmox VE API stand-in for tests: HTTPS ``/api2/json`` checked against the real API schema (see README.md)."""

from tests.standins.pve.cluster import ApiError, Cluster
from tests.standins.pve.server import ALL_PRIVILEGES, PveStandin

__all__ = ["ALL_PRIVILEGES", "ApiError", "Cluster", "PveStandin"]
