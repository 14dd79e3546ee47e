"""The `greeter` example module. The updater imports this directory as a package."""
