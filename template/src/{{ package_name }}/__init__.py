"""The service: app factory, settings, command line and resources."""
