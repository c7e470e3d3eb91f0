"""Web-layer tests: routes, scheduler, futures, auth and CLI of server_stub."""
