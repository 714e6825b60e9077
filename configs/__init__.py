"""YAML presets shipped with vidx."""
