"""The embedded default backend: SQLite catalog, artifact store, runner, local scoring."""
