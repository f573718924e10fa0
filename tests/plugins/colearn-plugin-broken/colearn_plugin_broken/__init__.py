"""A plugin whose import fails: colearn must report it and load the others."""

raise RuntimeError("boom: colearn-plugin-broken cannot be imported")
