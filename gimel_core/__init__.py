"""Gimel: a tiny, private A/B-testing backend for Alephbet, on AWS Lambda and Redis."""

from .app import create_app

__all__ = ["create_app"]
