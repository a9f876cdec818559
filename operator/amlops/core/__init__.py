"""The pure core: manifests with source positions, schemas, policies, cross-references, plans."""
