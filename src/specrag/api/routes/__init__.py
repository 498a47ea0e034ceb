"""Thin REST routes: parse, call the service, return its pydantic model."""
