"""HTTP serving of a model file: ``create_app(model_path)`` (needs the ``serve`` extra)."""

from churnguard.serving.app import create_app

__all__ = ["create_app"]
