"""The standard plugins. Each subpackage is one entry point in the ``taskloom`` group."""
