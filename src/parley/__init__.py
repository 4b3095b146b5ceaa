"""Parley: a self-hosted server that speaks the OpenAI Realtime API."""

__version__ = "0.1.0"
