"""The package version, in a module of its own so that the modules ``snnse/__init__.py`` imports can
read it without importing the package back (``snnse.__version__`` is this)."""

__version__ = "0.1.0"
