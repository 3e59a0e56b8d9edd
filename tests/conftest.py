"""Shared by every test: the plugin authors' kit (its fixtures and markers), opted in."""

pytest_plugins = ["taskloom.testing"]
