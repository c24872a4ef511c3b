"""The command-line front end: one command group per file, output, and the error boundary."""
