"""Resumable training runs and their reports."""
