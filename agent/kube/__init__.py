"""The Kubernetes API edge: the only package that imports the `kubernetes` client."""
