"""Layer families, one per module; re-exported flat by `jaxlayers`."""
