"""Desktop launchers for Linux, macOS and Windows, rendered from the templates in ``packaging/``.

The templates ship inside the wheel (``dslocal/_data/packaging``, see dslocal/resources.py); each
renderer fills in the absolute path of the ``dslocal`` executable so that a launcher started from a
desktop menu, which does not read the shell's PATH, still finds it.
"""
