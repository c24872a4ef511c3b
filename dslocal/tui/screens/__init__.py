"""One module per screen; each takes (services, state) and calls only the services."""
