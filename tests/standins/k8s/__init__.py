"""A Kubernetes API server stand-in (see server.py for what it implements and from which facts)."""
