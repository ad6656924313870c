"""Reading Kubernetes manifests (YAML/JSON files, directories, Lists) into the domain model."""
