"""Widgets the screens share or that make a screen's module too long."""
