"""``python -m dslocal`` runs the CLI."""

from dslocal.cli.main import main

if __name__ == "__main__":
    main()
