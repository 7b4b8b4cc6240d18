"""Serving over HTTP: `serving.app.create_app` (the OpenAI-compatible API) and `serving.engine.Engine` (continuous
batching)."""

__all__: list[str] = []
