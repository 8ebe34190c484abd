"""Shared test support code (real-component harnesses), importable from every test tier."""
