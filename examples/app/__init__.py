"""Demo job classes for spoold: the ones ``config/spoold.toml`` allows."""
