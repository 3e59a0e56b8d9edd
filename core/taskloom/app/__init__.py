"""The application layer: configuration files and the command line."""
