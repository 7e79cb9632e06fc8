"""Tests of the Home Assistant integration against the real add-on service."""
