"""Tests of cookbook.utils."""
