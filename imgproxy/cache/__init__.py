"""In-process caching: the memory tier and single-flight."""
