"""Pong matches between a host and a challenger (specs/match.md)."""
