"""The Textual front end: screens, widgets and workers (the only package besides cli/ that may import UI libraries)."""
