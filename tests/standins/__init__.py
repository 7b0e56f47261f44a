"""Protocol stand-ins for peers that cannot run in tests (Proxmox VE API, Kubernetes API)."""
