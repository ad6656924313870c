"""Reading Kubernetes manifests (YAML/JSON files, directories, Lists) into the domain model."""

from agent.manifests.loader import KINDS, Loaded, build_state, load, manifest_files

__all__ = ["KINDS", "Loaded", "build_state", "load", "manifest_files"]
