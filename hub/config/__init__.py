"""The configuration directory: targets, endpoints and mappings, loaded and validated."""
